"""budu.runtime.cgroups against the real kernel of this host (cgroup v1 or hybrid).

Each test works only in its own cgroup, /budu-test-<random>, and removes it in every hierarchy
even when the test fails.  Skipped when not root or when the host is pure cgroup v2 (the v2 logic
is covered on a fake tree in test_cgroups_v2_fake.py).
"""

from __future__ import annotations

import errno
import os
import secrets
import signal
import subprocess
import time

import pytest

from budu.errors import KernelError
from budu.runtime.cgroups import Cgroup, detect_mode

MiB = 1024 * 1024



def _host_mode() -> str | None:
    try:
        return detect_mode()
    except (KernelError, OSError):
        return None


# This machine (and CI) is a cgroup v1 hybrid host, what these tests exercise on the real kernel;
# v2 is covered by test_cgroups_v2_fake and, end to end, by tests/runtime/test_cgroup_layouts.
assert _host_mode() in ("v1", "hybrid"), "these tests need a cgroup v1 or hybrid host"


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def cg():
    """A Cgroup named /budu-test-<random>; killed and removed afterwards whatever happened."""
    group = Cgroup("/budu-test-" + secrets.token_hex(6))
    try:
        yield group
    finally:
        try:
            if group.exists():
                group.kill_all(signal.SIGKILL)
        finally:
            group.destroy()
        assert not any(os.path.exists(d) for d in group.paths.values())


@pytest.fixture
def sleeper(cg):
    """Start helper processes; afterwards they are killed and reaped, frozen or not."""
    procs: list[subprocess.Popen] = []

    def start(*argv: str, **kw) -> subprocess.Popen:
        p = subprocess.Popen(list(argv) or ["sleep", "60"], **kw)
        procs.append(p)
        return p

    try:
        yield start
    finally:
        # A frozen v1 task only dies once thawed: kill through the cgroup (which thaws) first.
        try:
            if cg.exists():
                cg.kill_all(signal.SIGKILL)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.wait(timeout=30)


def test_lifecycle(cg, sleeper):
    v = cg.paths
    devices = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rw"},
    ]
    cg.create(
        {
            "memory": {"limit": 64 * MiB, "swap": 128 * MiB, "kernel": 1},
            "pids": {"limit": 50},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
            "devices": devices,
        }
    )
    assert cg.exists()
    # every default hierarchy got a directory (and the unified one on hybrid)
    for key in ("pids", "memory", "cpu", "cpuacct", "cpuset", "freezer", "devices", "blkio", "name=systemd", ""):
        if key in v:
            assert os.path.isdir(v[key]), key

    mem = v["memory"]
    assert int(read(f"{mem}/memory.limit_in_bytes")) == 64 * MiB
    if os.path.exists(f"{mem}/memory.memsw.limit_in_bytes"):
        assert int(read(f"{mem}/memory.memsw.limit_in_bytes")) == 128 * MiB
    assert read(f"{v['pids']}/pids.max") == "50"
    assert read(f"{v['cpu']}/cpu.cfs_quota_us") == "50000"
    assert read(f"{v['cpu']}/cpu.cfs_period_us") == "100000"
    assert read(f"{v['cpu']}/cpu.shares") == "512"
    assert read(f"{v['cpuset']}/cpuset.cpus") == "0"
    assert read(f"{v['cpuset']}/cpuset.mems") == "0"
    assert read(f"{v['devices']}/devices.list").splitlines() == ["c 1:3 rwm", "c 1:5 rw"]

    # blkio weight: CFQ's blkio.weight or BFQ's blkio.bfq.weight, whichever this kernel has
    blk = v["blkio"]
    weight_file = next((f for f in ("blkio.weight", "blkio.bfq.weight") if os.path.exists(f"{blk}/{f}")), None)
    if weight_file:
        cg.update({"blockIO": {"weight": 500}})
        assert read(f"{blk}/{weight_file}").split()[-1] == "500"

    # raising then lowering memory+swap exercises the memsw/limit write order
    cg.update({"memory": {"limit": 256 * MiB, "swap": 512 * MiB}})
    assert int(read(f"{mem}/memory.limit_in_bytes")) == 256 * MiB
    cg.update({"memory": {"limit": 32 * MiB, "swap": 48 * MiB}})
    assert int(read(f"{mem}/memory.limit_in_bytes")) == 32 * MiB
    if os.path.exists(f"{mem}/memory.memsw.limit_in_bytes"):
        assert int(read(f"{mem}/memory.memsw.limit_in_bytes")) == 48 * MiB

    proc = sleeper()
    cg.add(proc.pid)
    assert cg.pids() == [proc.pid]
    # the process is in the container's cgroup in every hierarchy budu made a directory in
    with open(f"/proc/{proc.pid}/cgroup") as f:
        lines = f.read().splitlines()
    joined = 0
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        key = ctrls.split(",")[0]
        if key in v and os.path.isdir(v[key]):
            assert path == cg.path, line
            joined += 1
    assert joined >= 8

    cg.freeze()
    assert cg.frozen()
    assert read(f"{v['freezer']}/freezer.state") == "FROZEN"
    cg.thaw()
    assert not cg.frozen()
    assert read(f"{v['freezer']}/freezer.state") == "THAWED"

    st = cg.stats()
    assert st["memory"]["limit"] == 32 * MiB
    assert isinstance(st["memory"]["usage"], int) and st["memory"]["usage"] >= 0
    assert isinstance(st["memory"]["max_usage"], int)
    assert isinstance(st["cpu"]["usage_ns"], int) and st["cpu"]["usage_ns"] >= 0
    assert st["pids"] == {"current": 1, "limit": 50}

    cg.kill_all(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert wait_for(lambda: cg.pids() == [])
    cg.destroy()
    assert not cg.exists()
    assert not any(os.path.exists(d) for d in v.values())
    cg.destroy()  # idempotent


def test_kill_all_reaches_forked_children(cg, sleeper):
    cg.create({"pids": {"limit": 10}})
    shell = sleeper("sh", "-c", "read _; sleep 60 & sleep 60 & wait", stdin=subprocess.PIPE)
    cg.add(shell.pid)
    shell.stdin.write(b"go\n")
    shell.stdin.flush()
    assert wait_for(lambda: len(cg.pids()) == 3), cg.pids()
    children = [p for p in cg.pids() if p != shell.pid]
    cg.kill_all(signal.SIGKILL)
    assert shell.wait(timeout=10) == -signal.SIGKILL
    assert wait_for(lambda: cg.pids() == [])
    for pid in children:
        assert wait_for(lambda: not os.path.exists(f"/proc/{pid}") or "Z" in read(f"/proc/{pid}/stat").split()[2])
    assert not cg.frozen()  # the kill's freeze was undone
    cg.destroy()
    assert not cg.exists()


def test_sigterm_without_freeze(cg, sleeper):
    cg.create(None)
    proc = sleeper()
    cg.add(proc.pid)
    cg.kill_all(signal.SIGTERM)
    assert proc.wait(timeout=10) == -signal.SIGTERM


def test_pids_limit_is_enforced(cg, sleeper):
    cg.create({"pids": {"limit": 2}})
    shell = sleeper(
        "sh", "-c", "read _; for i in 1 2 3 4; do sleep 60 & done; wait", stdin=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    cg.add(shell.pid)
    shell.stdin.write(b"go\n")
    shell.stdin.flush()
    time.sleep(0.3)
    assert len(cg.pids()) <= 2


def test_invalid_cpuset_raises_and_destroy_cleans_up(cg):
    with pytest.raises(KernelError) as info:
        cg.create({"cpu": {"cpus": "999"}})
    # EINVAL on older kernels, ERANGE ("Numerical result out of range") on newer ones
    assert str(info.value) in (
        f"cgroup: cannot set cpuset.cpus to 999: {os.strerror(errno.EINVAL)}",
        f"cgroup: cannot set cpuset.cpus to 999: {os.strerror(errno.ERANGE)}",
    )
    assert "\n" not in str(info.value)
    assert cg.exists()  # directories made so far stay for the caller to destroy
    cg.destroy()
    assert not cg.exists()
    assert not any(os.path.exists(d) for d in cg.paths.values())


def test_memory_limit_below_usage_is_a_kernel_error(cg, sleeper):
    cg.create(None)
    mem = cg.paths["memory"]
    hog = sleeper(
        "python3", "-c", "import sys,time; sys.stdin.readline(); b=bytearray(32<<20); print(1,flush=True); time.sleep(60)",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    cg.add(hog.pid)
    hog.stdin.write(b"go\n")
    hog.stdin.flush()
    assert hog.stdout.readline().strip() == b"1"
    assert int(read(f"{mem}/memory.usage_in_bytes")) >= 32 * MiB
    if os.path.exists(f"{mem}/memory.memsw.limit_in_bytes"):
        # no swap for it: the kernel cannot reclaim the anonymous memory, so it refuses
        cg.update({"memory": {"limit": 64 * MiB, "swap": 64 * MiB}})
    with pytest.raises(KernelError, match=r"^cgroup: cannot set memory\.limit_in_bytes to 1048576: "):
        cg.update({"memory": {"limit": 1 * MiB}})


def test_missing_cgroup(cg):
    assert not cg.exists()
    with pytest.raises(KernelError, match="does not exist"):
        cg.add(os.getpid())
    assert cg.pids() == []
    cg.destroy()
