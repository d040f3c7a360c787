#!/usr/bin/env python3
"""Container start-up: create, start, wait for and delete a container running /bin/true.

budu-runtime, runc and crun run the same busybox bundle, alternating, N runs each; `run` does the
whole lifecycle in one call for all three (create + start + wait + delete).  crun 1.8 refuses the
hybrid cgroup layout, so on such a host it runs in a private mount namespace with the cgroup2 mount
hidden (the cost of that `unshare` wrapper is measured alone and subtracted).

    python3 bench/runtime_start.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile

import benchlib
from benchlib import busybox_bundle, medians


def hybrid() -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(" /sys/fs/cgroup/unified " in line for line in f)


def timed(cmd: list[str]) -> float:
    """A failure names the tool alone (its command line is long and the same every run)."""
    return benchlib.timed(cmd, label=cmd[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="budu-bench-")
    try:
        bundle = os.path.join(work, "bundle")
        busybox_bundle(bundle, ["/bin/true"])
        wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"', "sh"] if hybrid() else []
        tools = {
            "budu-runtime": lambda i: ["budu-runtime", "--root", f"{work}/budu", "run", "-b", bundle, f"b{i}"],
            "runc": lambda i: ["runc", "--root", f"{work}/runc", "run", "-b", bundle, f"r{i}"],
        }
        if shutil.which("crun"):
            tools["crun"] = lambda i: wrap + ["crun", "--root", f"{work}/crun", "run", "-b", bundle, f"c{i}"]
        times: dict[str, list[float]] = {name: [] for name in tools}
        wrapper: list[float] = []
        for i in range(3):  # warm-up: page cache, bytecode, cgroup hierarchy
            for name, cmd in tools.items():
                timed(cmd(f"w{i}"))
        for i in range(args.runs):
            for name, cmd in tools.items():
                times[name].append(timed(cmd(i)))
            if wrap:
                wrapper.append(timed(wrap + ["true"]))
        wrap_ms = statistics.median(wrapper) * 1000 if wrapper else 0.0
        med = medians(times, 1000)
        if "crun" in med:
            med["crun"] -= wrap_ms
        print(f"container start-up, `run` of /bin/true, median of {args.runs} alternating runs")
        for name, ms in med.items():
            note = f"  (unshare wrapper {wrap_ms:.1f} ms subtracted)" if name == "crun" and wrap_ms else ""
            print(f"  {name:13s} {ms:7.1f} ms   {ms / med['runc']:.2f}x runc{note}")
        print(f"  ratio budu-runtime/runc = {med['budu-runtime'] / med['runc']:.2f}"
              + (f", budu-runtime/crun = {med['budu-runtime'] / med['crun']:.2f}" if "crun" in med else ""))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
