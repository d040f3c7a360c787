"""Helpers shared by every test directory (imported by name: tests/ is on sys.path through the
root conftest)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def make_busybox_rootfs(dest: str) -> str:
    """A minimal root filesystem: static busybox, its applet links, passwd/group."""
    for d in ("bin", "proc", "sys", "dev", "etc", "tmp", "root", "home"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    shutil.copy2(BUSYBOX, os.path.join(dest, "bin/busybox"))
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for a in applets:
        link = os.path.join(dest, "bin", a)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(dest, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/sh\n")
    with open(os.path.join(dest, "etc/group"), "w") as f:
        f.write("root:x:0:\ntty:x:5:\nnogroup:x:65534:\n")
    return dest


# --- the host's network state (shared by tests/network and tests/containers) ----------------------

def sh(*argv: str, check: bool = False, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=timeout)


def host_state() -> dict[str, list[str]]:
    """Links, addresses, routes and netfilter rules, normalised (counters, handles, lifetimes)."""
    def lines(*argv: str) -> list[str]:
        p = sh(*argv)
        return [ln.rstrip() for ln in p.stdout.splitlines() if ln.strip()]

    def no_counters(text: list[str]) -> list[str]:
        out = []
        for ln in text:
            if ln.startswith("#"):
                continue
            ln = re.sub(r"\[\d+:\d+\]", "[0:0]", ln)
            ln = re.sub(r"counter packets \d+ bytes \d+", "counter", ln)
            ln = re.sub(r"\s*# handle \d+", "", ln)
            out.append(ln)
        return out

    addrs = [re.sub(r"(valid|preferred)_lft \S+", r"\1_lft -", ln) for ln in lines("ip", "-o", "addr")]
    return {
        "links": [re.sub(r"\s+", " ", ln) for ln in lines("ip", "-o", "link")],
        "addrs": addrs,
        "routes": lines("ip", "route") + lines("ip", "-6", "route"),
        "iptables": no_counters(lines("iptables-save")),
        "ip6tables": no_counters(lines("ip6tables-save")),
        "nft": no_counters(lines("nft", "list", "ruleset")),
        "netns": [n for n in os.listdir("/run/netns") if n.startswith("budu-")] if os.path.isdir("/run/netns") else [],
    }


def host_ipv4() -> str | None:
    """The host's first global, non-loopback IPv4 address (None if it has none)."""
    for ln in sh("ip", "-o", "-4", "addr").stdout.splitlines():
        m = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/\d+ .*scope global", ln)
        if m and not m.group(1).startswith("127."):
            return m.group(1)
    return None


def port_free(port: int, ip: str = "0.0.0.0") -> bool:
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_for(fn, timeout: float = 5.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)
