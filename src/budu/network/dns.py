"""Name resolution on user-defined networks with aardvark-dns (podman's DNS server).

One aardvark-dns per budu root serves every network: it reads a directory holding one file per
network (named by the network id) and answers on each network's gateway, port 53:

    10.89.0.1[ upstream,servers]                  the addresses to listen on (+ where to forward)
    <container id> <ipv4> <ipv6> <name,alias,...>[ <upstream,servers>]

Names of the containers on the asking container's networks are answered from the files, others
are forwarded: to the container's own servers (docker's --dns) if it has any, else to the network's
(budu writes the host's /etc/resolv.conf nameservers there; aardvark runs on the host, so a local
resolver at 127.0.0.53 works).  An internal network forwards nowhere.  SIGHUP reloads the
directory; with no network file left aardvark exits.  budu writes the files from budu.db, so they
can always be rebuilt.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

from budu.errors import ConfigError, KernelError
from budu.network.host import TOOL_PATH

SEARCH = ("/usr/libexec/podman/aardvark-dns", "/usr/lib/podman/aardvark-dns")
PID_FILE = "aardvark.pid"
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
# An internal network has no way out, DNS included: its queries for names that are not containers
# go to a loopback address nothing serves (an immediate "refused") instead of the host's resolvers.
NO_UPSTREAM = "127.255.255.254"


def find_aardvark(configured: str | None = None) -> str | None:
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    for p in SEARCH:
        if os.access(p, os.X_OK):
            return p
    return shutil.which("aardvark-dns", path=TOOL_PATH + ":/usr/libexec/podman:/usr/lib/podman")


def nameservers(resolv_conf: str) -> list[str]:
    """The nameserver addresses of a resolv.conf (loopback ones included: aardvark-dns runs on the
    host, so a local resolver such as systemd-resolved's 127.0.0.53 serves it fine)."""
    out = []
    try:
        with open(resolv_conf) as f:
            for line in f:
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver":
                    try:
                        out.append(str(ipaddress.ip_address(words[1].split("%")[0])))
                    except ValueError:
                        continue
    except OSError:
        return []
    return out[:3]


def check_name(name: str) -> str:
    if not NAME_RE.match(name) or len(name) > 253:
        raise ConfigError(f"invalid DNS name {name!r}: use letters, digits, '_', '.' and '-'")
    return name


@dataclass(frozen=True)
class Record:
    container_id: str
    ip: str
    names: Sequence[str]
    upstream: Sequence[str] = ()   # docker's --dns for a container on a user-defined network


class Aardvark:
    def __init__(self, binary: str | None, config_dir: str, port: int = 53) -> None:
        self.binary = binary
        self.dir = config_dir
        self.port = port

    @property
    def available(self) -> bool:
        return self.binary is not None

    # --- the files -------------------------------------------------------------------------------

    def write(self, network_id: str, gateway: str, records: Sequence[Record], internal: bool = False,
              upstream: Sequence[str] = ()) -> None:
        """Replace a network's file (atomically: written beside the directory, then renamed in, so
        aardvark never reads half a file).  `upstream`: where names that are not containers go."""
        servers = [NO_UPSTREAM] if internal else list(upstream)
        head = gateway + (" " + ",".join(servers) if servers else "")
        lines = [head]
        for r in records:
            names = ",".join(dict.fromkeys(n.lower() for n in r.names if n))
            if not names or not r.ip:
                continue
            line = f"{r.container_id} {r.ip}  {names}"
            if r.upstream and not internal:
                line += " " + ",".join(r.upstream)
            lines.append(line)
        os.makedirs(self.dir, mode=0o755, exist_ok=True)
        tmp = os.path.join(os.path.dirname(self.dir), f".{network_id}.{os.getpid()}")
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, os.path.join(self.dir, network_id))

    def remove(self, network_id: str) -> bool:
        try:
            os.unlink(os.path.join(self.dir, network_id))
            return True
        except FileNotFoundError:
            return False

    def networks(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.dir) if n != PID_FILE and not n.startswith("."))
        except FileNotFoundError:
            return []

    # --- the process -----------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The running aardvark-dns serving this directory, if any (the pid file is checked
        against /proc, so a recycled pid is never signalled)."""
        try:
            with open(os.path.join(self.dir, PID_FILE)) as f:
                pid = int(f.read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError):
            return None
        if any(b"aardvark-dns" in a for a in argv[:1]) and self.dir.encode() in argv:
            return pid
        return None

    def reload(self) -> None:
        """Make the running server match the files: start it, SIGHUP it, or stop it."""
        if not self.available:
            return
        pid = self.pid()
        if not self.networks():
            if pid:
                self.stop()
            return
        if pid:
            try:
                os.kill(pid, signal.SIGHUP)
                return
            except ProcessLookupError:
                pass
        self._start()

    def _start(self) -> None:
        assert self.binary
        # aardvark-dns forks: the parent exits once the child serves.  No stdio of ours may leak
        # into the daemon (a caller reading our output would wait for it forever).
        # Its stderr goes to a file, not a pipe: a pipe the daemon kept would never reach EOF.
        with tempfile.TemporaryFile() as errf:
            p = subprocess.run([self.binary, "--config", self.dir, "-p", str(self.port), "run"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf,
                               env={"PATH": TOOL_PATH, "LC_ALL": "C"}, start_new_session=True, timeout=30,
                               cwd="/")
            if p.returncode != 0:
                errf.seek(0)
                err = [e for e in errf.read().decode(errors="replace").splitlines() if e and "syslog" not in e]
                raise KernelError(f"cannot start the DNS server {self.binary}: {err[-1] if err else p.returncode}")

    def serving(self, ip: str, timeout: float = 2.0) -> bool:
        """Whether something listens on ip:port/udp, waiting up to `timeout` (aardvark binds after it
        says it is ready, and rebinds everything on SIGHUP; a port another server took shows
        only in its log)."""
        want = "%08X:%04X" % (struct.unpack("=I", socket.inet_aton(ip))[0], self.port)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open("/proc/net/udp") as f:
                    if any(line.split()[1] == want for line in f.readlines()[1:] if len(line.split()) > 1):
                        return True
            except OSError:
                return True   # cannot tell: do not fail the container for it
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)

    def stop(self, timeout: float = 5) -> None:
        pid = self.pid()
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pid = None
            deadline = time.monotonic() + timeout
            while pid and time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
                if _zombie_or_gone(pid):
                    break
                time.sleep(0.01)
        try:
            os.unlink(os.path.join(self.dir, PID_FILE))
        except FileNotFoundError:
            pass


def _zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True
