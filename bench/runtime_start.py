#!/usr/bin/env python3
"""Container start-up: create, start, wait for and delete a container running /bin/true.

budu-runtime, runc and crun run the same busybox bundle, alternating, N runs each, two ways:
`run` does the whole lifecycle in one call; then `create`, `start` and `delete` as three calls,
waiting for the exit on a pidfd in between, which is how containerd and podman drive a runtime
(each call is a new process, so a runtime's own start-up counts three times).  crun 1.8 refuses the
hybrid cgroup layout, so on such a host it runs in a private mount namespace with the cgroup2 mount
hidden (the cost of that `unshare` wrapper is measured alone and subtracted, once per call).

    python3 bench/runtime_start.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import benchlib
from benchlib import busybox_bundle, medians


def hybrid() -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(" /sys/fs/cgroup/unified " in line for line in f)


def timed(cmd: list[str]) -> float:
    """A failure names the tool alone (its command line is long and the same every run)."""
    return benchlib.timed(cmd, label=cmd[0])


def lifecycle(cmd: list[str], bundle: str, cid: str, work: str) -> dict[str, float]:
    """create, start, wait for the exit (a pidfd), delete: three calls of the runtime `cmd`.
    Returns the whole time and each call's."""
    pid_file = os.path.join(work, f"{cid}.pid")
    t0 = time.perf_counter()
    _call(cmd + ["create", "--bundle", bundle, "--pid-file", pid_file, cid], work)
    t1 = time.perf_counter()
    with open(pid_file) as f:
        fd = os.pidfd_open(int(f.read()))
    try:
        t2 = time.perf_counter()
        _call(cmd + ["start", cid], work)
        t3 = time.perf_counter()
        select.select([fd], [], [])
    finally:
        os.close(fd)
    t4 = time.perf_counter()
    _call(cmd + ["delete", cid], work)
    t5 = time.perf_counter()
    return {"total": t5 - t0, "create": t1 - t0, "start": t3 - t2, "delete": t5 - t4}


def _call(argv: list[str], work: str) -> None:
    """The container keeps the stdio it is created with: a file, not a pipe we would wait on."""
    with open(os.path.join(work, "stderr"), "w+b") as err:
        if subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err).returncode:
            err.seek(0)
            sys.exit(f"{' '.join(argv)} failed: {err.read().decode(errors='replace').strip()}")


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

        roots = {"budu-runtime": ["budu-runtime", "--root", f"{work}/budu"], "runc": ["runc", "--root", f"{work}/runc"]}
        if "crun" in tools:
            roots["crun"] = wrap + ["crun", "--root", f"{work}/crun"]
        steps: dict[str, list[dict[str, float]]] = {name: [] for name in roots}
        for i in range(2):  # warm-up
            for name, cmd in roots.items():
                lifecycle(cmd, bundle, f"lw{name[0]}{i}", work)
        for i in range(args.runs):
            for name, cmd in roots.items():
                steps[name].append(lifecycle(cmd, bundle, f"l{name[0]}{i}", work))
        part = {step: medians({name: [r[step] for r in runs] for name, runs in steps.items()}, 1000)
                for step in ("total", "create", "start", "delete")}
        if "crun" in roots:
            part["total"]["crun"] -= 3 * wrap_ms
            for step in ("create", "start", "delete"):
                part[step]["crun"] -= wrap_ms
        med = part["total"]
        print(f"\nthe same as create + start + (wait) + delete, three calls, median of {args.runs} alternating runs")
        for name, ms in med.items():
            note = f"  (unshare wrapper 3 x {wrap_ms:.1f} ms subtracted)" if name == "crun" and wrap_ms else ""
            each = ", ".join(f"{step} {part[step][name]:.1f}" for step in ("create", "start", "delete"))
            print(f"  {name:13s} {ms:7.1f} ms   {ms / med['runc']:.2f}x runc   ({each}){note}")
        print(f"  ratio budu-runtime/runc = {med['budu-runtime'] / med['runc']:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
