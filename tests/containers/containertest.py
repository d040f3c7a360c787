"""Helpers of the container tests: the `budu` command on a root of its own, and what budu left."""

from __future__ import annotations

import os
import signal
import subprocess
import time


TEST_SUBNET = "10.196.0.0/16"
TEST_BRIDGE = "budutc"


class Budu:
    def __init__(self, root: str) -> None:
        self.root = root
        # a default network of the tests' own, so that a real budu on this host is never touched
        self.env = dict(os.environ, BUDU_ROOT=root, BUDU_DEFAULT_SUBNET=TEST_SUBNET, BUDU_DEFAULT_BRIDGE=TEST_BRIDGE)

    def __call__(self, *args: str, ok: bool = True, input: str | None = None, timeout: float = 60,
                 env: dict | None = None) -> subprocess.CompletedProcess:
        p = subprocess.run(["budu", *args], capture_output=True, text=True, timeout=timeout, input=input,
                           env=dict(self.env, **(env or {})))
        if ok:
            assert p.returncode == 0, f"budu {' '.join(args)} exited {p.returncode}: {p.stderr}"
        return p

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(["budu", *args], env=self.env, **kw)

    def inspect(self, ref: str) -> dict:
        import json

        return json.loads(self("inspect", "--type", "container", ref).stdout)[0]

    def wait_for(self, ref: str, template: str, want: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        got = ""
        while time.monotonic() < deadline:
            p = self("inspect", "--format", template, ref, ok=False)
            got = p.stdout.strip()
            if got == want:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{ref}: {template} is {got!r}, wanted {want!r}")


def monitors(root: str) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"budu-monitor") and any(a.startswith(root.encode()) for a in args):
            out.append(int(pid))
    return out


def mounts_under(root: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(root + "/")]
