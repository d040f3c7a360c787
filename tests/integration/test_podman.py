"""Podman (with conmon) driving budu-runtime as its OCI runtime: `podman --runtime budu-runtime`.

Real podman, real conmon, real containers from a locally imported busybox image; runc, driven the
same way, is the referee wherever the expected output is not obvious.
"""

from __future__ import annotations

import os
import re
import socket
import time

import pytest

pytestmark = pytest.mark.podman

TTY_SCRIPT = b"tty; echo $((6*7)); exit\r"


def _status(podman, runtime, name):
    return podman(runtime, "inspect", name, "--format", "{{.State.Status}} {{.State.ExitCode}}").stdout.split()


def _wait_for_log(podman, runtime, name, text, timeout=10.0):
    deadline = time.monotonic() + timeout
    while text not in podman(runtime, "logs", name).stdout and time.monotonic() < deadline:
        time.sleep(0.1)


def _wait_for_file(path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path) as f:
                return f.read()
        except FileNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_run_echo_hello(podman, budu_runtime):
    p = podman.run(budu_runtime, "--rm", podman.image, "echo", "hello")
    assert p.returncode == 0
    assert p.stdout == "hello\n"
    assert podman.container_ids() == []


def test_exit_code_propagates(podman, budu_runtime):
    p = podman.run(budu_runtime, "--rm", podman.image, "sh", "-c", "echo before; exit 3", check=False)
    assert (p.returncode, p.stdout) == (3, "before\n"), p.stderr
    assert podman.container_ids() == []


def test_missing_command_is_127_and_leaves_nothing(podman, budu_runtime, runc):
    codes = {}
    for rt in (runc, budu_runtime):
        p = podman.run(rt, "--rm", podman.image, "no-such-command", check=False)
        codes[rt] = p.returncode
        assert "executable file not found" in p.stderr, p.stderr
        # after a failed create podman runs `delete --force`, which must not complain
        assert "does not exist" not in p.stderr, p.stderr
    assert codes == {runc: 127, budu_runtime: 127}
    assert podman.container_ids() == []


def test_inside_the_container(podman, budu_runtime):
    p = podman.run(budu_runtime, "--rm", podman.image, "sh", "-c", 'hostname; echo "pid $$"; cat /proc/1/cmdline; true')
    hostname, pid, cmdline = p.stdout.split("\n", 2)
    assert re.fullmatch(r"[0-9a-f]{12}", hostname), hostname  # podman's default: the short id
    assert hostname != socket.gethostname()
    assert pid == "pid 1"
    assert cmdline.split("\0")[:2] == ["sh", "-c"]
    p = podman.run(budu_runtime, "--rm", "--hostname", "budu-host", podman.image, "hostname")
    assert p.stdout == "budu-host\n"


def test_default_capabilities_match_runc(podman, budu_runtime, runc, it):
    status = {rt: podman.run(rt, "--rm", podman.image, "grep", "^Cap", "/proc/self/status").stdout
              for rt in (runc, budu_runtime)}
    assert status[budu_runtime] == status[runc]
    caps = it.capabilities(status[budu_runtime])
    assert caps["CapEff"] == it.PODMAN_DEFAULT_CAPS
    assert caps["CapPrm"] == caps["CapBnd"] == it.PODMAN_DEFAULT_CAPS
    assert caps["CapInh"] == caps["CapAmb"] == set()


def test_interactive_tty(podman, budu_runtime, it):
    argv = podman.run_argv(budu_runtime, "--rm", "-it", podman.image)  # the image's CMD: /bin/sh
    code, out = it.run_in_pty(argv, TTY_SCRIPT, env=podman.env)
    lines = it.pty_lines(out)
    assert code == 0, out
    assert "/dev/pts/0" in lines, out
    assert "42" in lines, out
    assert podman.container_ids() == []


def test_detached_exec_logs_stop_rm(podman, budu_runtime, name, it):
    rt = budu_runtime
    script = 'echo started; trap "echo got TERM; exit 143" TERM; while :; do sleep 0.1; done'
    cid = podman.run(rt, "-d", "--name", name, "--stop-timeout", "5", podman.image, "sh", "-c", script).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid), cid
    state_dir = os.path.join("/run/budu-runtime", cid)  # podman uses the runtime's default --root
    assert os.path.isfile(os.path.join(state_dir, "state.json"))
    assert '"status": "running"' in it.run([rt, "state", cid]).stdout

    ps = podman(rt, "ps", "--format", "{{.ID}} {{.Names}} {{.Status}}").stdout
    assert re.search(rf"^{cid[:12]} {name} Up ", ps, re.M), ps

    # exec: a new process in the container's namespaces, its exit code, its env and cwd
    p = podman(rt, "exec", name, "sh", "-c", 'echo "in exec $$"; cat /proc/1/cmdline')
    first, pid1 = p.stdout.split("\n", 1)
    assert re.fullmatch(r"in exec \d+", first) and first != "in exec 1", first
    assert pid1.split("\0")[:3] == ["sh", "-c", script]
    assert podman(rt, "exec", name, "sh", "-c", "exit 5", check=False).returncode == 5
    p = podman(rt, "exec", "-e", "FOO=bar", "-w", "/tmp", name, "sh", "-c", 'echo "$FOO $PWD"')
    assert p.stdout == "bar /tmp\n"

    # exec -it: a terminal of its own, through conmon's console socket
    code, out = it.run_in_pty(podman.argv(rt, "exec", "-it", name, "sh"), TTY_SCRIPT, env=podman.env)
    lines = it.pty_lines(out)
    assert code == 0, out
    assert "/dev/pts/0" in lines and "42" in lines, out

    _wait_for_log(podman, rt, name, "started")
    assert podman(rt, "logs", name).stdout == "started\n"

    t0 = time.monotonic()
    podman(rt, "stop", name)
    assert time.monotonic() - t0 < 4, "the TERM trap should have ended the container at once"
    assert _status(podman, rt, name) == ["exited", "143"]
    assert podman(rt, "logs", name).stdout == "started\ngot TERM\n"
    ps = podman(rt, "ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout
    assert re.search(rf"^{name} Exited \(143\)", ps, re.M), ps
    assert podman(rt, "exec", name, "true", check=False).returncode != 0

    podman(rt, "rm", name)
    assert name not in podman(rt, "ps", "-a", "--format", "{{.Names}}").stdout
    assert not os.path.exists(state_dir)


def test_stop_kills_after_timeout(podman, budu_runtime, name):
    rt = budu_runtime
    cid = podman.run(rt, "-d", "--name", name, podman.image, "sleep", "1000").stdout.strip()  # pid 1: no TERM
    assert _status(podman, rt, name) == ["running", "0"]
    t0 = time.monotonic()
    p = podman(rt, "stop", "-t", "1", name)
    elapsed = time.monotonic() - t0
    assert 0.9 < elapsed < 10, elapsed
    assert "resorting to SIGKILL" in p.stderr, p.stderr
    assert _status(podman, rt, name) == ["exited", "137"]
    assert podman(rt, "wait", name).stdout.strip() == "137"
    podman(rt, "rm", name)
    assert podman.container_ids() == []
    assert not os.path.exists(os.path.join("/run/budu-runtime", cid))


def test_pause_unpause_restart_kill(podman, budu_runtime, name, it):
    rt = budu_runtime
    podman.run(rt, "-d", "--name", name, podman.image, "sh", "-c",
               "i=0; while :; do i=$((i+1)); echo $i > /tmp/t.new; mv /tmp/t.new /tmp/t; sleep 0.05; done")
    cid, pid = podman(rt, "inspect", name, "--format", "{{.Id}} {{.State.Pid}}").stdout.split()
    ticks = f"/proc/{pid}/root/tmp/t"  # the container's file, read from the host

    def tick_moves() -> bool:
        before = _wait_for_file(ticks)
        time.sleep(0.3)
        return _wait_for_file(ticks) != before

    assert tick_moves()
    podman(rt, "pause", name)
    assert _status(podman, rt, name)[0] == "paused"
    assert '"status": "paused"' in it.run([rt, "state", cid]).stdout
    assert not tick_moves(), "a paused container went on running"
    podman(rt, "unpause", name)
    assert _status(podman, rt, name)[0] == "running"
    assert tick_moves(), "an unpaused container stayed frozen"
    podman(rt, "restart", "-t", "0", name)
    assert _status(podman, rt, name)[0] == "running"
    podman(rt, "kill", "-s", "KILL", name)
    assert podman(rt, "wait", name).stdout.strip() == "137"
    podman(rt, "rm", name)
    assert not os.path.exists(os.path.join("/run/budu-runtime", cid))


@pytest.mark.parametrize("command", [
    ["echo", "hello"],
    ["sh", "-c", "echo out; exit 3"],
    ["ls", "/nonexistent"],
    ["cat", "/etc/passwd"],
    ["id", "nobody"],
    ["sh", "-c", "cat /proc/self/uid_map /proc/self/loginuid; readlink /proc/self/ns/user"],
], ids=["echo", "exit3", "ls-missing", "cat", "id", "userns"])
def test_outputs_match_runc(podman, budu_runtime, runc, command):
    results = {}
    for rt in (runc, budu_runtime):
        p = podman.run(rt, "--rm", podman.image, *command, check=False)
        results[rt] = (p.returncode, p.stdout)
    assert results[budu_runtime] == results[runc]


def test_container_environment_matches_runc(podman, budu_runtime, runc, name, it):
    """Identity, privileges, devices, mounts, masked and read-only paths, limits, env: as runc."""
    out = {}
    for rt in (runc, budu_runtime):
        p = podman.run(rt, "--rm", "--name", name, "--hostname", "cmp", podman.image, "sh", "-c", it.COMPARE_SCRIPT)
        out[rt] = p.stdout
    assert out[budu_runtime].splitlines() == out[runc].splitlines()


def test_exec_environment_matches_runc(podman, budu_runtime, runc, name, it):
    out = {}
    for rt in (runc, budu_runtime):
        n = f"{name}-{os.path.basename(rt)}"
        podman.run(rt, "-d", "--name", n, "--hostname", "cmp", podman.image, "sleep", "1000")
        p = podman(rt, "exec", n, "sh", "-c", it.COMPARE_SCRIPT)
        # the pid of the exec'd shell depends on how many pids the runtime used up before
        out[rt] = (p.returncode, [line for line in p.stdout.splitlines() if not line.startswith("me: ")])
        podman(rt, "rm", "-f", "-t", "0", n)
    assert out[budu_runtime] == out[runc]
