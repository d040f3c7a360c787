"""The host side: running the tools (ip, iptables, plugins), the host's own routes and addresses,
links and sysctls, and the lock that serialises changes to host networking."""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import json
import os
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from budu.errors import KernelError

TOOL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run(argv: Sequence[str], input: str | None = None, env: dict | None = None,
        check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a tool, never through a shell; a failure becomes a KernelError naming the command."""
    try:
        p = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout,
                           env=env if env is not None else {"PATH": TOOL_PATH, "LC_ALL": "C"})
    except FileNotFoundError:
        raise KernelError(f"{argv[0]} not found: install it (budu needs it for networking)") from None
    except subprocess.TimeoutExpired:
        raise KernelError(f"{' '.join(argv[:3])} did not finish in {timeout:g}s") from None
    if check and p.returncode != 0:
        msg = (p.stderr.strip() or p.stdout.strip()).splitlines()
        raise KernelError(f"{' '.join(argv[:4])}: {msg[0] if msg else f'exit status {p.returncode}'}")
    return p


# --- links ---------------------------------------------------------------------------------------

def link_exists(name: str) -> bool:
    return bool(name) and os.path.exists(f"/sys/class/net/{name}")


def is_bridge(name: str) -> bool:
    return bool(name) and os.path.isdir(f"/sys/class/net/{name}/bridge")


def delete_bridge(name: str) -> None:
    """Delete a bridge budu made (its ports go with it); a missing one is fine."""
    if not is_bridge(name):
        return
    p = run(["ip", "link", "delete", "dev", name, "type", "bridge"], check=False)
    if p.returncode != 0 and link_exists(name):
        raise KernelError(f"cannot delete bridge {name}: {p.stderr.strip()}")


def sysctl(path: str, value: str) -> bool:
    """Write /proc/sys/<path>; False if it does not exist (the link went away meanwhile)."""
    try:
        with open(os.path.join("/proc/sys", path), "w") as f:
            f.write(value)
        return True
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENODEV):
            return False
        raise KernelError(f"cannot set {path.replace('/', '.')}: {e.strerror}") from None


# --- the host's own address space ----------------------------------------------------------------

@dataclass(frozen=True)
class HostNet:
    net: ipaddress.IPv4Network
    dev: str
    what: str     # "route" or "address"

    def __str__(self) -> str:
        return f"{self.net} ({'an address' if self.what == 'address' else 'a route'} on {self.dev})"


def host_networks(exclude_devs: Sequence[str] = ()) -> list[HostNet]:
    """Every IPv4 network the host routes to or has an address in (the main table, not the default
    route), except on `exclude_devs` (budu's own bridges)."""
    out: list[HostNet] = []
    routes = json.loads(run(["ip", "-j", "-4", "route", "show"]).stdout or "[]")
    for r in routes:
        dst, dev = r.get("dst", ""), r.get("dev", "")
        if dst in ("", "default") or dev in exclude_devs:
            continue
        try:
            out.append(HostNet(ipaddress.ip_network(dst, strict=False), dev, "route"))
        except ValueError:
            continue
    links = json.loads(run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]")
    for link in links:
        dev = link.get("ifname", "")
        if dev in exclude_devs or dev == "lo":
            continue
        for a in link.get("addr_info", []):
            if a.get("family") == "inet" and a.get("local"):
                net = ipaddress.ip_network(f"{a['local']}/{a.get('prefixlen', 32)}", strict=False)
                out.append(HostNet(net, dev, "address"))
    return out


def overlapping(subnet: str, nets: Sequence[HostNet]) -> HostNet | None:
    s = ipaddress.ip_network(subnet)
    for h in nets:
        if s.overlaps(h.net):
            return h
    return None


# --- the lock ------------------------------------------------------------------------------------

class HostLock:
    """An exclusive flock held while budu changes host networking (netfilter chains are shared by
    every budu root on the host, so the lock is host-wide).  Reentrant within one process."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self.depth = 0
        self.threads = threading.RLock()   # flock is per process: threads queue here first

    @contextmanager
    def held(self) -> Iterator[None]:
        with self.threads:
            if self.depth == 0:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self.fd = fd
            self.depth += 1
            try:
                yield
            finally:
                self.depth -= 1
                if self.depth == 0:
                    os.close(self.fd)
                    self.fd = -1
