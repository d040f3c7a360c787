"""containerd (through its io.containerd.runc.v2 shim) driving budu-runtime: `ctr run --runc-binary`.

A containerd of the session's own, an OCI image built by hand and imported with `ctr images import`,
real containers; the same commands with `--runc-binary runc` are the referee.
"""

from __future__ import annotations

import os
import re
import time
import uuid

import pytest

pytestmark = pytest.mark.containerd

TTY_SCRIPT = b"tty; echo $((6*7)); exit\r"
# what `ctr run` grants by default (containerd's oci.WithDefaultSpec, Docker's set)
CTR_DEFAULT_CAPS = {
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
}


def _cid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _wait_status(ctd, cid: str, want: str, timeout: float = 10.0) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        got = ctd.tasks().get(cid, (0, "<no task>"))
        if got[1] == want or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def _wait_file(path: str, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path) as f:
                content = f.read()
        except FileNotFoundError:
            content = ""
        if text in content or time.monotonic() > deadline:
            return content
        time.sleep(0.05)


def test_run_echo_hello(containerd, budu_runtime):
    cid = _cid("hello")
    p = containerd.ctr("run", "--rm", *containerd.runtime_opts(budu_runtime), containerd.image, cid, "echo", "hello")
    assert p.stdout == "hello\n"
    assert cid not in containerd.ctr("containers", "ls", "-q").stdout.split()
    assert containerd.tasks() == {}


def test_exit_code_propagates(containerd, budu_runtime):
    cid = _cid("exit")
    p = containerd.ctr("run", "--rm", *containerd.runtime_opts(budu_runtime), containerd.image, cid,
                       "sh", "-c", "echo before; exit 3", check=False)
    assert (p.returncode, p.stdout) == (3, "before\n"), p.stderr
    assert cid not in containerd.ctr("containers", "ls", "-q").stdout.split()


def test_inside_the_container(containerd, budu_runtime, it):
    cid = _cid("inside")
    p = containerd.ctr("run", "--rm", *containerd.runtime_opts(budu_runtime), containerd.image, cid,
                       "sh", "-c", 'echo "pid $$"; grep ^Cap /proc/self/status; cat /proc/1/cmdline; true')
    lines = p.stdout.split("\n")
    assert lines[0] == "pid 1"
    caps = it.capabilities("\n".join(lines[1:6]))
    assert caps["CapEff"] == CTR_DEFAULT_CAPS
    assert lines[6].split("\0")[:2] == ["sh", "-c"]


def test_detached_exec_kill_delete(containerd, budu_runtime, it):
    ctd = containerd
    cid = _cid("detached")
    log = os.path.join(ctd.base, f"{cid}.log")
    script = 'echo started; trap "echo got TERM; exit 143" TERM; while :; do sleep 0.1; done'
    ctd.ctr("run", "-d", "--log-uri", f"file://{log}", *ctd.runtime_opts(budu_runtime), ctd.image, cid,
            "sh", "-c", script)
    pid, status = ctd.tasks()[cid]
    assert status == "RUNNING" and pid > 0
    runtime_root = ctd.runtime_opts(budu_runtime)[3]
    state_dir = os.path.join(runtime_root, it.CTR_NAMESPACE, cid)
    assert os.path.isfile(os.path.join(state_dir, "state.json")), os.listdir(runtime_root)
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:3] == [b"sh", b"-c", script.encode()]

    p = ctd.ctr("task", "exec", "--fifo-dir", ctd.fifo_dir, "--exec-id", "x1", cid, "echo", "hi")
    assert p.stdout == "hi\n"
    p = ctd.ctr("task", "exec", "--fifo-dir", ctd.fifo_dir, "--exec-id", "x2", cid, "sh", "-c", "exit 4", check=False)
    assert p.returncode == 4
    p = ctd.ctr("task", "exec", "--fifo-dir", ctd.fifo_dir, "--exec-id", "x3", "--cwd", "/tmp", "--user", "65534",
                cid, "sh", "-c", 'echo "$(id -u) $PWD $$"')
    uid, cwd, exec_pid = p.stdout.split()
    assert (uid, cwd) == ("65534", "/tmp") and exec_pid != "1"

    # exec -t: a terminal of its own, through the shim's console socket
    code, out = it.run_in_pty(ctd.argv("task", "exec", "--fifo-dir", ctd.fifo_dir, "-t", "--exec-id", "x4", cid, "sh"),
                              TTY_SCRIPT)
    lines = it.pty_lines(out)
    assert code == 0, out
    assert "/dev/pts/0" in lines and "42" in lines, out

    # ps goes through the runtime's `ps --format json`
    pids = [int(line.split()[0]) for line in ctd.ctr("task", "ps", cid).stdout.splitlines()[1:]]
    assert pid in pids

    ctd.ctr("task", "pause", cid)
    assert _wait_status(ctd, cid, "PAUSED")[1] == "PAUSED"
    ctd.ctr("task", "resume", cid)
    assert _wait_status(ctd, cid, "RUNNING")[1] == "RUNNING"

    ctd.ctr("task", "kill", cid)  # SIGTERM
    assert _wait_status(ctd, cid, "STOPPED")[1] == "STOPPED"
    assert _wait_file(log, "got TERM") == "started\ngot TERM\n"  # the shim copies output to --log-uri
    p = ctd.ctr("task", "delete", cid)
    assert "exit code 143" in p.stderr, p.stderr
    assert cid not in ctd.tasks()
    assert not os.path.exists(state_dir)
    ctd.ctr("containers", "delete", cid)
    assert cid not in ctd.ctr("containers", "ls", "-q").stdout.split()


def test_kill_sigkill_all(containerd, budu_runtime):
    ctd = containerd
    cid = _cid("killall")
    ctd.ctr("run", "-d", "--null-io", *ctd.runtime_opts(budu_runtime), ctd.image, cid,
            "sh", "-c", "sleep 1000 & sleep 1000 & wait")
    assert _wait_status(ctd, cid, "RUNNING")[1] == "RUNNING"
    deadline = time.monotonic() + 10
    while len(ctd.ctr("task", "ps", cid).stdout.splitlines()) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    ctd.ctr("task", "kill", "--all", "--signal", "SIGKILL", cid)
    assert _wait_status(ctd, cid, "STOPPED")[1] == "STOPPED"
    p = ctd.ctr("task", "delete", cid)
    assert "exit code 137" in p.stderr, p.stderr
    ctd.ctr("containers", "delete", cid)


def test_run_with_tty(containerd, budu_runtime, it):
    cid = _cid("tty")
    argv = containerd.argv("run", "--rm", "-t", *containerd.runtime_opts(budu_runtime), containerd.image, cid, "sh")
    code, out = it.run_in_pty(argv, TTY_SCRIPT)
    lines = it.pty_lines(out)
    assert code == 0, out
    assert "/dev/pts/0" in lines and "42" in lines, out
    assert cid not in containerd.ctr("containers", "ls", "-q").stdout.split()


def test_missing_command(containerd, budu_runtime, runc):
    results = {}
    for rt in (runc, budu_runtime):
        cid = _cid("missing")
        p = containerd.ctr("run", "--rm", *containerd.runtime_opts(rt), containerd.image, cid, "no-such-command",
                           check=False)
        assert p.returncode != 0
        assert "executable file not found" in p.stderr, p.stderr
        results[rt] = p.returncode
        # ctr leaves the container record when the task cannot be created
        containerd.ctr("containers", "delete", cid, check=False)
    assert results[budu_runtime] == results[runc]
    assert containerd.tasks() == {}


@pytest.mark.parametrize("command", [
    ["echo", "hello"],
    ["sh", "-c", "echo out; exit 3"],
    ["ls", "/nonexistent"],
    ["id", "nobody"],
], ids=["echo", "exit3", "ls-missing", "id"])
def test_outputs_match_runc(containerd, budu_runtime, runc, command):
    results = {}
    for rt in (runc, budu_runtime):
        p = containerd.ctr("run", "--rm", *containerd.runtime_opts(rt), containerd.image, _cid("cmp"), *command,
                           check=False)
        results[rt] = (p.returncode, p.stdout)
    assert results[budu_runtime] == results[runc]


def test_container_environment_matches_runc(containerd, budu_runtime, runc, it):
    out = {}
    for rt in (runc, budu_runtime):
        p = containerd.ctr("run", "--rm", *containerd.runtime_opts(rt), containerd.image, _cid("env"),
                           "sh", "-c", it.COMPARE_SCRIPT)
        out[rt] = p.stdout
    assert out[budu_runtime].splitlines() == out[runc].splitlines()


def test_detached_lifecycle_matches_runc(containerd, budu_runtime, runc):
    """The same detached life under both runtimes: what ctr shows at each step must match."""
    seen = {}
    for rt in (runc, budu_runtime):
        ctd = containerd
        cid = _cid("life")
        steps = []
        ctd.ctr("run", "-d", "--null-io", *ctd.runtime_opts(rt), ctd.image, cid, "sleep", "1000")
        steps.append(ctd.tasks()[cid][1])
        p = ctd.ctr("task", "exec", "--fifo-dir", ctd.fifo_dir, "--exec-id", "e", cid, "sh", "-c", "echo hi; exit 2",
                    check=False)
        steps.append((p.returncode, p.stdout))
        steps.append(len(ctd.ctr("task", "ps", cid).stdout.splitlines()))
        ctd.ctr("task", "kill", "-s", "SIGKILL", cid)
        steps.append(_wait_status(ctd, cid, "STOPPED")[1])
        p = ctd.ctr("task", "delete", cid)
        steps.append(re.sub(r'time="[^"]*"', "", p.stderr).replace(cid, "ID"))
        ctd.ctr("containers", "delete", cid)
        steps.append(cid in ctd.ctr("containers", "ls", "-q").stdout.split())
        seen[rt] = steps
    assert seen[budu_runtime] == seen[runc]
    assert seen[budu_runtime][0] == "RUNNING" and seen[budu_runtime][3] == "STOPPED"
