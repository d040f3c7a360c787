"""budu-runtime's C front door (src/budu/runtime/front/): start, state, kill and delete in their
common case without Python, everything else handed over to budu-runtime-py unchanged.

Each test runs a copy of the installed front next to a budu-runtime-py that notes its arguments,
then runs the real one: so a test sees both what the user sees and which side answered.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest
from conftest import BUDU_RUNTIME, Runtime


@pytest.fixture
def front(tmp_path):
    """(runtime through a copy of the front, the file where the Python side notes each call)."""
    real = os.path.realpath(BUDU_RUNTIME)
    real_py = os.path.join(os.path.dirname(real), "budu-runtime-py")
    d = tmp_path / "front"
    d.mkdir()
    shutil.copy(real, d / "budu-runtime")
    calls = tmp_path / "handed-over"
    calls.write_text("")
    (d / "budu-runtime-py").write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$*" >> {calls}\nexec {real_py} "$@"\n')
    os.chmod(d / "budu-runtime-py", 0o755)
    root = tmp_path / "root"
    root.mkdir()
    rt = Runtime("budu", str(d / "budu-runtime"), str(root))
    yield rt, calls
    rt.cleanup()


def python_side(rt: Runtime, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([os.path.join(os.path.dirname(os.path.realpath(BUDU_RUNTIME)), "budu-runtime-py"),
                           "--root", rt.root, *args], capture_output=True)


def handed_over(calls) -> list[str]:
    lines = calls.read_text().splitlines()
    calls.write_text("")
    return lines


def cgroup_dirs(rt: Runtime, cid: str) -> list[str]:
    with open(os.path.join(rt.root, cid, "state.json")) as f:
        return sorted(set(json.load(f)["cgroupPaths"].values()))


def wait_for(cond, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_lifecycle_without_python(front, bundle):
    rt, calls = front
    bundle.config["annotations"] = {"org.example/q": 'say "hi" \\ café', "b": "2"}
    bundle.sh("trap 'echo got-usr1 > /tmp/usr1' USR1; while :; do sleep 0.05; done")
    cid = rt.new_id()
    rt.ok("create", "--bundle", bundle.path, cid)
    assert handed_over(calls) == [f"--root {rt.root} create --bundle {bundle.path} {cid}"]
    dirs = cgroup_dirs(rt, cid)
    assert dirs and all(os.path.isdir(d) for d in dirs)

    def same_state(status: str) -> None:
        mine = rt.ok("state", cid).stdout
        assert json.loads(mine)["status"] == status
        assert mine == python_side(rt, "state", cid).stdout  # byte for byte

    same_state("created")
    rt.ok("start", cid)
    same_state("running")
    rt.ok("kill", cid, "usr1")
    wait_for(lambda: os.path.exists(os.path.join(bundle.rootfs, "tmp/usr1")))
    rt.ok("kill", cid, "SIGKILL")
    wait_for(lambda: json.loads(rt.ok("state", cid).stdout)["status"] == "stopped")
    same_state("stopped")
    assert json.loads(rt.ok("state", cid).stdout)["pid"] == 0
    rt.ok("delete", cid)
    assert handed_over(calls) == []  # none of it needed Python
    assert not os.path.exists(os.path.join(rt.root, cid))
    assert [d for d in dirs if os.path.exists(d)] == []
    p = rt.cmd("state", cid)
    assert p.returncode == 1 and p.stderr.decode() == f"budu-runtime: container '{cid}' does not exist\n"


def test_paused_state_and_log_flags(front, bundle):
    rt, calls = front
    bundle.args("sleep", "30")
    cid = rt.new_id()
    rt.ok("run", "-d", "--bundle", bundle.path, cid)
    rt.ok("pause", cid)
    log = os.path.join(rt.root, "log.json")
    # containerd's way of calling: --log and --log-format before the verb
    out = rt.ok("--log", log, "--log-format", "json", "state", cid).stdout
    assert json.loads(out)["status"] == "paused" and out == python_side(rt, "state", cid).stdout
    rt.ok("resume", cid)
    assert json.loads(rt.ok("--log=" + log, "state", cid).stdout)["status"] == "running"
    assert handed_over(calls) == [f"--root {rt.root} run -d --bundle {bundle.path} {cid}",
                                  f"--root {rt.root} pause {cid}", f"--root {rt.root} resume {cid}"]
    assert not os.path.exists(log)  # nothing went wrong, nothing was logged


@pytest.mark.parametrize("case", ["unknown id", "debug", "kill --all", "delete running", "start running",
                                  "bad signal", "rt signal", "help"])
def test_handed_over_to_python(front, bundle, case):
    """Whatever is not the plain case is the Python runtime's: same arguments, its answer."""
    rt, calls = front
    bundle.args("sleep", "30")
    cid = rt.new_id()
    rt.ok("run", "-d", "--bundle", bundle.path, cid)
    handed_over(calls)
    args, rc, err = {
        "unknown id": (["state", "nope"], 1, "budu-runtime: container 'nope' does not exist\n"),
        "debug": (["--debug", "state", cid], 0, None),
        "kill --all": (["kill", "--all", cid, "KILL"], 0, ""),
        "delete running": (["delete", cid], 1, f"budu-runtime: cannot delete container {cid} that is not stopped: running\n"),
        "start running": (["start", cid], 1, f"budu-runtime: cannot start container {cid}: it is running, not created\n"),
        "bad signal": (["kill", cid, "NOPE"], 1, "budu-runtime: invalid signal 'NOPE'\n"),
        "rt signal": (["kill", cid, "RTMIN+1"], 0, ""),
        "help": (["state", "--help"], 0, ""),
    }[case]
    p = rt.cmd(*args)
    assert (p.returncode, handed_over(calls)) == (rc, [" ".join(["--root", rt.root, *args])]), p.stderr
    if err is not None:
        assert p.stderr.decode() == err


def test_state_from_an_older_budu(front, bundle):
    """A state file without the recorded cgroup (budu before the front) is read by Python, right."""
    rt, calls = front
    bundle.args("sleep", "30")
    cid = rt.new_id()
    rt.ok("run", "-d", "--bundle", bundle.path, cid)
    dirs = cgroup_dirs(rt, cid)
    path = os.path.join(rt.root, cid, "state.json")
    with open(path) as f:
        data = json.load(f)
    del data["cgroupMode"], data["cgroupPaths"]
    with open(path, "w") as f:
        json.dump(data, f)
    handed_over(calls)
    assert json.loads(rt.ok("state", cid).stdout)["status"] == "running"
    rt.ok("delete", "-f", cid)
    assert len(handed_over(calls)) == 2
    assert [d for d in dirs if os.path.exists(d)] == []


def test_poststart_hook_is_run_by_python(front, bundle, tmp_path):
    rt, calls = front
    mark = tmp_path / "poststart"
    bundle.config["hooks"] = {"poststart": [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {mark}"]}]}
    bundle.args("sleep", "30")
    cid = rt.new_id()
    rt.ok("create", "--bundle", bundle.path, cid)
    handed_over(calls)
    rt.ok("start", cid)
    assert handed_over(calls) == [f"--root {rt.root} start {cid}"]
    assert json.loads(mark.read_text())["status"] == "running"


def test_delete_hands_over_a_process_left_in_the_cgroup(front, bundle):
    """Without a pid namespace a child outlives init: delete must kill it (Python does)."""
    rt, calls = front
    bundle.config["linux"]["namespaces"] = [ns for ns in bundle.config["linux"]["namespaces"] if ns["type"] != "pid"]
    bundle.sh("sleep 300 & echo $! > /tmp/left; exit 0")
    cid = rt.new_id()
    rt.ok("create", "--bundle", bundle.path, cid)
    dirs = cgroup_dirs(rt, cid)
    rt.ok("start", cid)
    wait_for(lambda: json.loads(rt.ok("state", cid).stdout)["status"] == "stopped")
    procs = next(os.path.join(d, "cgroup.procs") for d in dirs if os.path.exists(os.path.join(d, "cgroup.procs")))
    assert open(procs).read().split(), "the background sleep should still be in the cgroup"
    handed_over(calls)
    rt.ok("delete", cid)
    assert handed_over(calls) == [f"--root {rt.root} delete {cid}"]
    assert [d for d in dirs if os.path.exists(d)] == []
    assert not os.path.exists(os.path.join(rt.root, cid))


def test_front_alone_says_what_is_missing(tmp_path):
    """Installed without its Python side, the front fails in one line, naming the missing file."""
    alone = tmp_path / "budu-runtime"
    shutil.copy(os.path.realpath(BUDU_RUNTIME), alone)
    p = subprocess.run([str(alone), "--version"], capture_output=True, text=True)
    assert p.returncode == 1
    assert p.stderr == f"budu-runtime: cannot run {tmp_path}/budu-runtime-py: No such file or directory\n"
