"""Supervision without a daemon: restart policies, crashes of budu itself, many budu at once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from containertest import monitors, mounts_under


def _restart_count(budu, name: str) -> int:
    return int(budu("inspect", "--format", "{{.RestartCount}}", name).stdout)


def test_on_failure_restarts_up_to_its_limit(budu):
    budu("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo try; exit 1")
    budu.wait_for("flaky", "{{.State.Status}}", "exited", timeout=20)
    assert _restart_count(budu, "flaky") == 2
    assert budu("logs", "flaky").stdout == "try\ntry\ntry\n"
    assert budu.inspect("flaky")["State"]["ExitCode"] == 1


def test_on_failure_leaves_a_success_alone(budu):
    budu("run", "-d", "--name", "fine", "--restart", "on-failure", "busybox", "true")
    budu.wait_for("fine", "{{.State.Status}}", "exited")
    time.sleep(0.5)
    assert _restart_count(budu, "fine") == 0


def test_always_restarts_until_stopped(budu):
    budu("run", "-d", "--name", "phoenix", "--restart", "always", "busybox", "sh", "-c", "sleep 0.2; exit 3")
    deadline = time.monotonic() + 20
    while _restart_count(budu, "phoenix") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _restart_count(budu, "phoenix") >= 2
    budu("stop", "phoenix")
    assert budu("inspect", "--format", "{{.State.Status}}", "phoenix").stdout == "exited\n"
    count = _restart_count(budu, "phoenix")
    time.sleep(1)
    assert _restart_count(budu, "phoenix") == count  # a user's stop is final


def test_killing_the_container_process_restarts_it(budu):
    budu("run", "-d", "--name", "hardy", "--restart", "unless-stopped", "busybox", "sleep", "300")
    pid = int(budu("inspect", "--format", "{{.State.Pid}}", "hardy").stdout)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        st = budu.inspect("hardy")["State"]
        if st["Status"] == "running" and st["Pid"] != pid:
            break
        time.sleep(0.05)
    assert st["Status"] == "running" and st["Pid"] != pid
    assert _restart_count(budu, "hardy") == 1


def test_reboot_brings_back_always_and_unless_stopped(budu):
    """A reboot, simulated: every monitor and container process dies and the runtime's state
    (tmpfs in /run) is gone.  `budu system restore` (the boot unit) starts what docker would."""
    budu("run", "-d", "--name", "r-always", "--restart", "always", "busybox", "sleep", "300")
    budu("run", "-d", "--name", "r-unless", "--restart", "unless-stopped", "busybox", "sleep", "300")
    budu("run", "-d", "--name", "r-stopped", "--restart", "unless-stopped", "busybox", "sleep", "300")
    budu("run", "-d", "--name", "r-no", "busybox", "sleep", "300")
    budu("stop", "-t", "0", "r-stopped")
    pids = [int(budu("inspect", "--format", "{{.State.Pid}}", n).stdout) for n in ("r-always", "r-unless", "r-no")]
    for m in monitors(budu.root):
        os.kill(m, signal.SIGKILL)
    for p in pids:
        os.kill(p, signal.SIGKILL)
    rt_root = os.path.join(budu.root, "run", "runtime", "budu-runtime")
    for cid in os.listdir(rt_root):
        subprocess.run(["budu-runtime", "--root", rt_root, "delete", "--force", cid], capture_output=True)
    for m in [m for m in mounts_under(budu.root) if m.endswith("/rootfs")]:
        subprocess.run(["umount", "-l", m], check=True)
    time.sleep(0.2)
    status = {n: budu("inspect", "--format", "{{.State.Status}}", n).stdout.strip()
              for n in ("r-always", "r-unless", "r-stopped", "r-no")}
    assert status == {"r-always": "exited", "r-unless": "exited", "r-stopped": "exited", "r-no": "exited"}
    restored = budu("system", "restore").stdout.split()
    assert sorted(restored) == ["r-always", "r-unless"]
    for n in ("r-always", "r-unless"):
        assert budu("inspect", "--format", "{{.State.Status}}", n).stdout == "running\n"
    assert budu("inspect", "--format", "{{.State.Status}}", "r-no").stdout == "exited\n"


def test_twenty_containers_in_parallel(budu):
    def run(i: int) -> subprocess.CompletedProcess:
        return budu("run", "-d", "--name", f"par{i}", "busybox", "sh", "-c", f"echo {i}; sleep 300", ok=False)

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(run, range(20)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results if r.returncode]
    names = budu("ps", "--format", "{{.Names}}").stdout.split()
    assert sorted(names) == sorted(f"par{i}" for i in range(20))
    for i in range(20):
        budu.wait_for(f"par{i}", "{{.State.Running}}", "true")
    assert all(budu("logs", f"par{i}").stdout == f"{i}\n" for i in range(20))
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda i: budu("rm", "-f", f"par{i}", ok=False), range(20)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results if r.returncode]
    assert budu("ps", "-aq").stdout == ""


def _query(budu, sql: str) -> list[tuple]:
    import sqlite3

    db = sqlite3.connect(os.path.join(budu.root, "budu.db"))
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _consistent(budu) -> None:
    """What a user must be able to rely on after any crash: every container listed is inspectable
    and removable, and then nothing of them is left."""
    ids = budu("ps", "-aq", "--no-trunc").stdout.split()
    for cid in ids:
        info = budu.inspect(cid)
        assert info["Id"] == cid
    if ids:
        budu("rm", "-f", *ids)
    assert budu("ps", "-aq").stdout == ""
    assert not monitors(budu.root)
    assert not [m for m in mounts_under(budu.root) if "/containers/" in m]
    assert _query(budu, "SELECT key FROM snapshots WHERE key LIKE 'container-%'") == []


def test_sigkill_mid_run_and_mid_rm(budu):
    rng = random.Random(7)
    for i in range(12):
        p = budu.popen("run", "-d", "--name", f"crash{i}", "busybox", "sleep", "300",
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, 0.25))
        p.kill()
        p.wait()
    time.sleep(0.3)
    names = budu("ps", "-a", "--format", "{{.Names}}").stdout.split()
    for n in names:
        budu("inspect", n)
    running = [n for n in names if budu("inspect", "--format", "{{.State.Status}}", n).stdout.strip() == "running"]
    for i, n in enumerate(running):
        p = budu.popen("rm", "-f", n, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, 0.15))
        p.kill()
        p.wait()
    time.sleep(0.3)
    _consistent(budu)


def test_monitor_killed_is_noticed(budu):
    budu("run", "-d", "--name", "orphan", "busybox", "sleep", "300")
    (mon,) = monitors(budu.root)
    os.kill(mon, signal.SIGKILL)
    time.sleep(0.2)
    state = budu.inspect("orphan")["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 255
    assert "monitor" in state["Error"]
    budu("rm", "orphan")


def test_state_lives_in_sqlite(budu):
    budu("create", "--name", "rec", "-e", "A=1", "busybox", "true")
    ((name, config),) = _query(budu, "SELECT name, config FROM containers")
    assert name == "rec" and "A=1" in json.loads(config)["Env"]
