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
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def timed(argv: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed: {p.stderr.decode(errors='replace').strip()}")
    return dt


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pids_named(name: str, marker: str) -> list[int]:
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--ps-containers", type=int, default=100)
    a = ap.parse_args()
    for tool in ("budu", "podman", "runc", "budu-runtime"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed (scripts/install.sh installs everything)")
    work = tempfile.mkdtemp(prefix="budu-bench-")
    root = os.path.join(work, "root")
    env = dict(os.environ, BUDU_ROOT=root)
    rt_roots = {t: os.path.join(work, t) for t in ("budu-runtime", "runc")}
    try:
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
        bundle = os.path.join(work, "bundle")
        subprocess.run([os.path.join(HERE, "..", "scripts", "busybox-bundle.sh"), bundle], check=True,
                       stdout=subprocess.DEVNULL)
        import json

        with open(os.path.join(bundle, "config.json")) as f:
            spec = json.load(f)
        spec["process"].update(terminal=False, args=["true"])
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(spec, f)
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
        for f in cases.values():  # warm caches once
            f()
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(a.runs):
            for k, f in cases.items():
                times[k].append(f())
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
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
