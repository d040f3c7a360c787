"""What the benches share: timed runs of a command, alternating runs and their medians, the busybox
image and bundle they all start from, and the /proc scans that find a tool's processes.

Standard library only; the benches import it as `benchlib` (their own folder is on sys.path when
run as `python3 bench/NAME.py`).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))


def require(*tools: str) -> None:
    """Stop, saying so, unless every tool is on PATH."""
    for tool in tools:
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed (scripts/install.sh installs everything)")


def timed(argv: list[str], env: dict | None = None, label: str | None = None) -> float:
    """Seconds one run of argv takes (its output dropped); a failed run stops the bench, its
    stderr and `label` (default: the whole command) in the message."""
    t0 = time.perf_counter()
    p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{label or ' '.join(argv)} failed: {p.stderr.decode(errors='replace').strip()}")
    return dt


def alternate(cases: dict[str, Callable[[], float]], runs: int, warm: int = 0,
              swap: bool = False) -> dict[str, list[float]]:
    """Each case's results over `runs` rounds, the cases taking turns within a round so that a
    noisy moment hurts them all (with swap, every other round in reverse order, so that none
    always goes first), after `warm` untimed rounds (caches, bytecode)."""
    for _ in range(warm):
        for f in cases.values():
            f()
    results: dict[str, list[float]] = {k: [] for k in cases}
    order = list(cases)
    for i in range(runs):
        for k in order[::-1] if swap and i % 2 else order:
            results[k].append(cases[k]())
    return results


def medians(results: dict[str, list[float]], scale: float = 1.0) -> dict[str, float]:
    """Each case's median, times `scale` (1000: seconds to ms)."""
    return {k: statistics.median(v) * scale for k, v in results.items()}


def free_port(host: str = "") -> int:
    """A TCP port nothing listens on at the moment (the kernel's pick)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def podman_busybox(env: dict) -> tuple[str, list[str]]:
    """busybox made in the budu root of `env` and loaded into podman's default storage, so that both
    run the same image: podman's name for it, and the `podman run` options both benches use."""
    subprocess.run(["budu", "image", "bootstrap", "busybox"], env=env, check=True, stdout=subprocess.DEVNULL)
    save = subprocess.run(["budu", "save", "busybox"], env=env, check=True, capture_output=True).stdout
    subprocess.run(["podman", "load"], input=save, check=True, capture_output=True)
    podman_image = "localhost/busybox:latest"
    if subprocess.run(["podman", "image", "exists", podman_image]).returncode != 0:
        podman_image = "docker.io/library/busybox:latest"
    # podman's crun refuses hybrid cgroup hosts, and podman asks for rlimits above what a
    # process without CAP_SYS_RESOURCE may give: runc, with this process's own limits
    podman_opts = ["--runtime", "runc"]
    for flag, num, want in (("nofile", resource.RLIMIT_NOFILE, 20000), ("nproc", resource.RLIMIT_NPROC, 32768)):
        hard = resource.getrlimit(num)[1]
        value = want if hard == resource.RLIM_INFINITY else min(want, hard)
        podman_opts += ["--ulimit", f"{flag}={value}:{value}"]
    return podman_image, podman_opts


def busybox_bundle(path: str, args: list[str]) -> None:
    """An OCI bundle of the host's busybox at `path` (scripts/busybox-bundle.sh) that runs `args`
    without a terminal."""
    subprocess.run([os.path.join(HERE, "..", "scripts", "busybox-bundle.sh"), path], check=True,
                   stdout=subprocess.DEVNULL)
    cfg_path = os.path.join(path, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = args
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)


def rss_kib(pid: int) -> int:
    """A process's resident memory (VmRSS), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pids_named(name: str, marker: str) -> list[int]:
    """The processes whose program is called `name` and whose command line holds `marker`."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if args and os.path.basename(args[0].decode(errors="replace")) == name and marker.encode() in b" ".join(args):
            out.append(int(pid))
    return out
