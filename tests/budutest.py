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

    shared = _shared_chains_kept()
    # lifetimes count down, and a new address is "tentative" until duplicate detection is done
    addrs = [re.sub(r"(valid|preferred)_lft \S+", r"\1_lft -", ln).replace(" tentative", "")
             for ln in lines("ip", "-o", "addr")]
    return {
        "links": [re.sub(r"\s+", " ", ln) for ln in lines("ip", "-o", "link")],
        "addrs": addrs,
        "routes": lines("ip", "route") + lines("ip", "-6", "route"),
        "iptables": _without_shared(no_counters(lines("iptables-save")), shared),
        "ip6tables": _without_shared(no_counters(lines("ip6tables-save")), shared),
        "nft": _without_shared(no_counters(lines("nft", "list", "ruleset")), shared),
        "netns": [n for n in os.listdir("/run/netns") if n.startswith("budu-")] if os.path.isdir("/run/netns") else [],
    }


# The portmap plugin's chains are shared by every budu root on the host, and budu removes them only
# when no budu network of any root is up (budu.network.manager._sweep_if_idle).  While a network
# that is not the tests' is up (a user's default bridge, say), the tests may leave them behind by
# design; only then are they left out of the comparison.  Every rule that names a bridge stays in.
SHARED_CHAIN = "CNI-HOSTPORT-"
TEST_BRIDGE_PREFIX = "budut"  # budut0, budut1 (tests/network), budutc (tests/containers)


def _shared_chains_kept() -> bool:
    try:
        return any(not name.startswith(TEST_BRIDGE_PREFIX) for name in os.listdir("/run/lock/budu-network.d"))
    except FileNotFoundError:
        return False


def _without_shared(rules: list[str], shared: bool) -> list[str]:
    """Rules without the shared chains' lines (nft: their whole `chain ... { }` blocks), and
    without a table those leave empty (the portmap plugin makes ip6tables' nat table)."""
    if not shared:
        return rules
    return _without_empty_tables(_without_shared_chains(rules))


def _without_empty_tables(rules: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(rules):
        ln = rules[i]
        if ln.startswith("table ") and ln.endswith("{") and i + 1 < len(rules) and rules[i + 1] == "}":
            i += 2  # nft: `table ip6 nat {` `}`
            continue
        if ln.startswith("*"):  # iptables-save: *TABLE, the built-in chains' policies, COMMIT
            end = rules.index("COMMIT", i) if "COMMIT" in rules[i:] else len(rules)
            if all(re.fullmatch(r":[A-Z]+ ACCEPT \[0:0\]", x) for x in rules[i + 1:end]):
                i = end + 1
                continue
        out.append(ln)
        i += 1
    return out


def _without_shared_chains(rules: list[str]) -> list[str]:
    out, skip_to = [], None
    for ln in rules:
        if skip_to is not None:
            if ln == skip_to:
                skip_to = None
            continue
        if SHARED_CHAIN in ln:
            stripped = ln.lstrip()
            if stripped.startswith("chain ") and ln.endswith("{"):
                skip_to = ln[: len(ln) - len(stripped)] + "}"  # the block's closing brace
            continue
        out.append(ln)
    return out


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
