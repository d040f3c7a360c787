#!/usr/bin/env python3
"""What the engine costs, side by side with what a user would use instead.

  budu run --rm --network none busybox true  vs  podman run --rm --network none busybox true
  budu-runtime run (same bundle)  vs  runc run            (what the engine adds on top)
  budu --version, budu ps with 100 containers
  the monitor's memory per running container vs conmon's

Runs alternate between tools so that a noisy moment hurts both; medians and ratios are printed.
Uses its own budu root and podman's default storage (the image is loaded from `budu save`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from benchlib import alternate, busybox_bundle, medians, pids_named, podman_busybox, require, rss_kib, timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--ps-containers", type=int, default=100)
    a = ap.parse_args()
    require("budu", "podman", "runc", "budu-runtime")
    work = tempfile.mkdtemp(prefix="budu-bench-")
    root = os.path.join(work, "root")
    env = dict(os.environ, BUDU_ROOT=root)
    rt_roots = {t: os.path.join(work, t) for t in ("budu-runtime", "runc")}
    try:
        podman_image, podman_opts = podman_busybox(env)
        bundle = os.path.join(work, "bundle")
        busybox_bundle(bundle, ["true"])
        cases = {
            "budu run --rm --network none": lambda: timed(["budu", "run", "--rm", "--network", "none", "busybox", "true"], env),
            "podman run --rm --network none": lambda: timed(
                ["podman", "run", "--rm", "--network", "none", *podman_opts, podman_image, "true"]),
        }
        n = [0]

        def runtime_run(tool: str) -> float:
            n[0] += 1
            return timed([tool, "--root", rt_roots[tool], "run", "--bundle", bundle, f"b{n[0]}"])

        cases["budu-runtime run"] = lambda: runtime_run("budu-runtime")
        cases["runc run"] = lambda: runtime_run("runc")
        med = medians(alternate(cases, a.runs, warm=1), 1000)  # caches warmed once
        print(f"start-up of a container running /bin/true, median of {a.runs} alternating runs (ms):")
        for k, v in med.items():
            print(f"  {k:<34} {v:7.1f}")
        print(f"  ratio budu/podman run --rm        {med['budu run --rm --network none'] / med['podman run --rm --network none']:.2f}"
              "   (target <= 0.50)")
        print(f"  engine overhead over its runtime  {med['budu run --rm --network none'] - med['budu-runtime run']:.1f} ms")
        print(f"  ratio budu-runtime/runc           {med['budu-runtime run'] / med['runc run']:.2f}")

        version = statistics.median(timed(["budu", "--version"], env) for _ in range(a.runs)) * 1000
        for i in range(a.ps_containers):
            subprocess.run(["budu", "create", "--name", f"ps{i}", "busybox", "true"], env=env, check=True,
                           stdout=subprocess.DEVNULL)
        ps = statistics.median(timed(["budu", "ps", "-a"], env) for _ in range(a.runs)) * 1000
        print(f"\nbudu --version {version:.1f} ms; budu ps -a with {a.ps_containers} containers {ps:.1f} ms (target < 100)")
        subprocess.run(["sh", "-c", "budu ps -aq | xargs -r budu rm -f"], env=env, stdout=subprocess.DEVNULL)

        subprocess.run(["budu", "run", "-d", "--name", "mem", "--network", "none", "busybox", "sleep", "60"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        pod = subprocess.run(["podman", "run", "-d", "--network", "none", *podman_opts, podman_image, "sleep", "60"],
                             check=True, capture_output=True, text=True).stdout.strip()
        time.sleep(0.5)
        (mon,) = pids_named("budu-monitor", root)
        (conmon,) = pids_named("conmon", pod)
        m, c = rss_kib(mon), rss_kib(conmon)
        print(f"\nmonitor memory per running container: budu-monitor {m / 1024:.2f} MiB, conmon {c / 1024:.2f} MiB,"
              f" ratio {m / c:.2f} (target <= 1.0)")
        subprocess.run(["budu", "rm", "-f", "mem"], env=env, stdout=subprocess.DEVNULL)
        subprocess.run(["podman", "rm", "-f", "-t", "0", pod], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        subprocess.run(["sh", "-c", "budu ps -aq | xargs -r budu rm -f"], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        for tool, r in rt_roots.items():
            if os.path.isdir(r):
                for cid in os.listdir(r):
                    subprocess.run([tool, "--root", r, "delete", "--force", cid], capture_output=True)
        subprocess.run(["umount", "-R", "-l", root], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
