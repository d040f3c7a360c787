"""`budu run` must feel instant: what its Python process imports is part of what the user waits for.

On a small VM `import dataclasses` costs ~16 ms, `typing` ~16, `json` ~11 (it pulls in `re`),
`socket` ~12, `signal` ~8: together more than half of a whole `budu run --rm busybox true`.
(sqlite3 stays: it is budu's state, and it brings `collections` and `datetime` along.)
These tests run the real CLI with `-X importtime` and fail if one of them is back on the path of
an everyday command.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

# stdlib modules too slow to import on every container start; they stay behind lazy imports
HEAVY = {
    "argparse", "ast", "contextlib", "dataclasses", "enum", "hashlib", "http", "inspect",
    "json", "platform", "re", "selectors", "shutil", "signal", "socket", "subprocess", "tempfile",
    "threading", "typing", "urllib",
}


def imported(budu, *args: str) -> set[str]:
    """The modules a `budu ARGS` process imported (top-level package names), from -X importtime."""
    p = subprocess.run([sys.executable, "-X", "importtime", "-IS", shutil.which("budu"), *args],
                       capture_output=True, text=True, timeout=60, env=budu.env)
    assert p.returncode == 0, f"budu {' '.join(args)}: {p.stderr[-2000:]}"
    names = set()
    for line in p.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip())
    assert "budu.cli.main" in names  # it did run the CLI
    return names


@pytest.mark.parametrize("args", [
    ("run", "--rm", "--network", "none", "busybox", "true"),
    ("run", "--rm", "--network", "none", "-e", "A=1", "-w", "/tmp", "-u", "1000", "--memory", "64m",
     "--cap-drop", "NET_RAW", "--read-only", "--tmpfs", "/run", "busybox", "true"),
], ids=["plain", "with-flags"])
def test_run_imports_nothing_slow(budu, args):
    slow = imported(budu, *args) & HEAVY
    assert not slow, f"`budu {' '.join(args)}` imported {sorted(slow)}"


def test_create_imports_nothing_slow(budu):
    slow = imported(budu, "create", "--name", "lean", "--network", "none", "busybox", "true") & HEAVY
    budu("rm", "lean")
    assert not slow, f"`budu create` imported {sorted(slow)}"
