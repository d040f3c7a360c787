"""The /etc/hostname, /etc/hosts and /etc/resolv.conf a container gets (bind-mounted, as docker does)."""

from __future__ import annotations

import os

HOSTS_BASE = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
              "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
DEFAULT_DNS = ("8.8.8.8", "8.8.4.4")
RESOLVED_UPSTREAM = "/run/systemd/resolve/resolv.conf"  # docker's fallback when the host only has a local resolver


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def hosts(hostname: str, extra_hosts: list[str], addresses: list[str], host_network: bool) -> str:
    if host_network:
        text = _read("/etc/hosts") or HOSTS_BASE
    else:
        text = HOSTS_BASE
    for entry in extra_hosts:  # docker's --add-host host:ip
        name, _, ip = entry.partition(":") if "=" not in entry else entry.partition("=")
        text += f"{ip}\t{name}\n"
    if not host_network:
        short = hostname.split(".")[0]
        names = hostname if short == hostname else f"{hostname} {short}"
        for ip in addresses:
            text += f"{ip}\t{names}\n"
    return text


def resolv_conf(host_network: bool, dns: list[str], search: list[str], options: list[str],
                host_file: str = "/etc/resolv.conf") -> str:
    """The host's resolver configuration, minus loopback nameservers a container cannot reach."""
    text = _read(host_file)
    if not host_network and "nameserver 127.0.0.53" in text and os.path.exists(RESOLVED_UPSTREAM):
        text = _read(RESOLVED_UPSTREAM)  # systemd-resolved's stub is the host's own: use its upstreams
    lines = text.splitlines()
    servers = [ln.split()[1] for ln in lines if ln.startswith("nameserver") and len(ln.split()) > 1]
    searches = [w for ln in lines if ln.startswith(("search", "domain")) for w in ln.split()[1:]]
    opts = [w for ln in lines if ln.startswith("options") for w in ln.split()[1:]]
    if not host_network:
        servers = [s for s in servers if not s.startswith("127.") and s != "::1"]
        if not servers:
            servers = list(DEFAULT_DNS)
    if dns:
        servers = list(dns)
    if search:
        searches = [] if search == ["."] else list(search)
    if options:
        opts = list(options)
    out = "".join(f"nameserver {s}\n" for s in servers)
    if searches:
        out += "search " + " ".join(searches) + "\n"
    if opts:
        out += "options " + " ".join(opts) + "\n"
    return out


def write_atomic(path: str, text: str | bytes, mode: int = 0o644) -> None:
    """Write by rename: a reader sees the old file or the new one.  Not fsynced: these files are
    made again at every start (the record of truth is SQLite), and an fsync each cost up to
    hundreds of ms on a busy disk."""
    data = text.encode() if isinstance(text, str) else text
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)
