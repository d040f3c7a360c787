"""budu-monitor, the per-container supervisor: real containers (busybox bundles), real runtimes,
checked through what a user of the engine sees — the status file, the json-file log, the attach
socket, the events file, and what is left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time

import pytest

STDOUT, STDERR, STDIN, CLEANUP = 1, 2, 4, 8  # attach HELLO flags
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# ---------------------------------------------------------------------------------------------
# The lifecycle, with each runtime


def test_lifecycle(monitor, runtime, bundle):
    bundle.sh("echo out; echo err >&2; sleep 0.3; exit 3")
    m = monitor(runtime, bundle)
    reply = m.launch()
    assert m.launched.returncode == 0 and m.launched.stderr == b""
    assert m.launch_seconds < 1, "the caller's wait must return at once"
    # no terminal: the runtime's `run --detach` creates and starts it at once, on `start`
    assert reply == {"ready": True}
    assert m.id not in runtime.list()
    assert not os.path.exists(m.path("status")), "created: no status file yet"
    assert os.path.exists(m.path("attach"))

    m.start()
    st = m.status()
    assert st["status"] == "running" and alive(st["pid"])
    pid = st["pid"]
    assert alive(st["monitor_pid"]) and os.getsid(st["monitor_pid"]) == st["monitor_pid"]
    assert TIME_RE.match(st["started_at"]) and st["finished_at"] == "0001-01-01T00:00:00Z"
    assert "health" not in st

    st = m.wait_exited()
    assert st["status"] == "exited" and st["exit_code"] == 3 and st["pid"] == 0
    assert st["oom_killed"] is False and st["restart_count"] == 0 and st["error"] == ""
    assert TIME_RE.match(st["finished_at"]) and st["finished_at"] > st["started_at"]
    log = m.log()
    assert [(e["log"], e["stream"]) for e in log] == [("out\n", "stdout"), ("err\n", "stderr")]
    assert all(TIME_RE.match(e["time"]) and list(e) == ["log", "stream", "time"] for e in log)
    assert m.id not in runtime.list(), "the runtime's container is deleted"
    assert not os.path.exists(m.path("attach"))
    assert not alive(pid)


def test_events_are_docker_shaped(monitor, budu, bundle):
    bundle.sh("exit 2")
    m = monitor(budu, bundle)
    m.run()
    m.wait_exited()
    with open(m.events) as f:
        raw = f.read().splitlines()
    assert len(raw) == 2
    start, die = (json.loads(r) for r in raw)
    assert list(start) == ["status", "id", "from", "Type", "Action", "Actor", "scope", "time", "timeNano"]
    assert start["status"] == start["Action"] == "start" and start["Type"] == "container"
    assert start["id"] == start["Actor"]["ID"] == m.id and start["from"] == "busybox:latest"
    assert start["Actor"]["Attributes"] == {"image": "busybox:latest", "name": "test-" + m.id}
    assert start["scope"] == "local" and start["timeNano"] // 10**9 == start["time"]
    assert abs(start["time"] - time.time()) < 60
    assert die["Action"] == "die"
    assert die["Actor"]["Attributes"] == {"exitCode": "2", "image": "busybox:latest", "name": "test-" + m.id}
    assert die["timeNano"] >= start["timeNano"]


def test_bad_flag(monitor_bin):
    ours, theirs = socket.socketpair()
    with ours, theirs:
        p = subprocess.run([monitor_bin, "--id", "x", "--bundle", "/", "--runtime", "runc", "--bogus",
                            "--sync-fd", str(theirs.fileno())], pass_fds=[theirs.fileno()], capture_output=True)
        assert p.returncode == 125
        assert p.stderr.count(b"\n") == 1 and b"--bogus" in p.stderr
        ours.settimeout(5)
        assert "--bogus" in json.loads(ours.recv(4096))["error"]
    p = subprocess.run([monitor_bin, "--id", "x", "--bundle", "/", "--runtime", "runc", "--sync-fd", "99"],
                       capture_output=True)
    assert p.returncode == 125 and b"--sync-fd 99" in p.stderr


def test_runtime_missing(monitor, budu, bundle):
    m = monitor(budu, bundle)
    m.rt = type(budu)("missing", "/nonexistent/runtime", budu.root)
    assert m.launch() == {"ready": True}
    reply = m.start(expect_error=True)
    assert "/nonexistent/runtime" in reply["error"]
    m.wait_gone()
    assert not os.path.exists(m.path("attach"))


# ---------------------------------------------------------------------------------------------
# The json-file log


def test_log_lines_are_escaped_like_docker(monitor, budu, bundle):
    script = r"""
        printf 'a "q" \\ b\tt <>&\r\n'
        printf '\001\033[1m\n'
        printf '\377 bad \303\251 ok \342\200\250\n'
        head -c 20000 /dev/zero | tr '\0' x; echo
        printf 'no newline at the end'
    """
    bundle.sh(textwrap.dedent(script))
    m = monitor(budu, bundle)
    m.run()
    m.wait_exited()
    with open(m.log_path(), "rb") as f:
        raw = f.read()
    entries = [json.loads(line) for line in raw.splitlines()]
    logs = [e["log"] for e in entries]
    assert logs[0] == 'a "q" \\ b\tt <>&\r\n'
    assert logs[1] == "\x01\x1b[1m\n"
    assert logs[2] == "\ufffd bad \u00e9 ok \u2028\n"
    assert logs[3] == "x" * 16384, "a line longer than 16 KiB is split like docker does"
    assert logs[4] == "x" * (20000 - 16384) + "\n"
    assert logs[5] == "no newline at the end"
    assert len(logs) == 6 and all(e["stream"] == "stdout" for e in entries)
    # byte for byte docker's escaping
    first = raw.splitlines()[0]
    assert first.startswith(rb'{"log":"a \"q\" \\ b\u0009t \u003c\u003e\u0026\r\n","stream":"stdout","time":"')
    assert b"\\u2028" in raw.splitlines()[2] and b"\\ufffd" in raw.splitlines()[2]


def test_log_rotation(monitor, budu, bundle):
    bundle.sh("i=1; while [ $i -le 200 ]; do echo line $i; i=$((i+1)); done")
    m = monitor(budu, bundle)
    m.run("--log-max-size", "1024", "--log-max-file", "3")
    m.wait_exited()
    files = sorted(f for f in os.listdir(m.dir) if f.startswith(m.id + "-json.log"))
    assert files == [f"{m.id}-json.log", f"{m.id}-json.log.1", f"{m.id}-json.log.2"]
    numbers = []
    for name in reversed(files):  # oldest first
        path = m.path(name)
        assert os.path.getsize(path) <= 1024
        numbers += [int(e["log"].split()[1]) for e in m.log(path)]
    assert numbers[-1] == 200
    assert numbers == list(range(numbers[0], 201)), "the three files hold the newest lines, in order"


def test_log_rotation_single_file_truncates(monitor, budu, bundle):
    bundle.sh("i=1; while [ $i -le 100 ]; do echo line $i; i=$((i+1)); done")
    m = monitor(budu, bundle)
    m.run("--log-max-size", "1024")
    m.wait_exited()
    assert [f for f in os.listdir(m.dir) if "json.log" in f] == [f"{m.id}-json.log"]
    assert os.path.getsize(m.log_path()) <= 1024
    assert m.log()[-1]["log"] == "line 100\n"


def test_log_driver_none_and_log_path(monitor, budu, bundle, tmp_path):
    bundle.sh("echo hi")
    m = monitor(budu, bundle)
    m.run("--log-driver", "none")
    m.wait_exited()
    assert not [f for f in os.listdir(m.dir) if "json.log" in f]

    m2 = monitor(budu, bundle)
    m2.run("--log-path", str(tmp_path / "elsewhere.log"))
    m2.wait_exited()
    assert [e["log"] for e in m2.log(str(tmp_path / "elsewhere.log"))] == ["hi\n"]


def test_stderr_goes_on_after_stdout_closes(monitor, budu, bundle):
    bundle.sh("echo first; exec 1>&-; sleep 0.2; echo late >&2")
    m = monitor(budu, bundle)
    m.run()
    m.wait_exited()
    assert [(e["log"], e["stream"]) for e in m.log()] == [("first\n", "stdout"), ("late\n", "stderr")]


def test_survives_its_caller(monitor, budu, bundle):
    """The engine that started it is killed -9 right after start: the container runs on, the log
    keeps filling, the monitor ignores SIGTERM, and the end is still recorded."""
    bundle.sh("i=0; while [ $i -lt 20 ]; do echo tick $i; i=$((i+1)); sleep 0.05; done")
    m = monitor(budu, bundle)
    caller = textwrap.dedent(f"""
        import os, socket, subprocess, sys
        ours, theirs = socket.socketpair()
        argv = {m.argv(fd=0)!r}
        argv[argv.index("--sync-fd") + 1] = str(theirs.fileno())
        subprocess.run(argv, pass_fds=[theirs.fileno()], check=True)
        theirs.close()
        assert b"ready" in ours.recv(100)
        ours.sendall(b"start\\n")
        assert ours.recv(100) == b'{{"started": true}}\\n'
        os.kill(os.getpid(), 9)
    """)
    p = subprocess.run([sys.executable, "-c", caller], capture_output=True, timeout=30)
    assert p.returncode == -9, p.stderr
    st = m.status()
    mon = st["monitor_pid"]
    assert os.getsid(mon) == mon, "the monitor is in a session of its own"
    os.kill(mon, signal.SIGTERM)  # the engine stops containers through the runtime, not this
    time.sleep(0.2)
    assert alive(mon)
    st = m.wait_exited()
    assert st["exit_code"] == 0
    assert [e["log"] for e in m.log()] == [f"tick {i}\n" for i in range(20)]


# ---------------------------------------------------------------------------------------------
# Attach


def test_attach_streams_and_exit_code(monitor, attach, budu, bundle):
    bundle.sh("echo hello; echo oops >&2; sleep 0.1; echo bye; exit 7")
    m = monitor(budu, bundle)
    m.launch()
    both = attach(m.dir, STDOUT | STDERR)
    errs = attach(m.dir, STDERR)
    m.start()
    assert both.until_exit() == (b"hello\nbye\n", b"oops\n", 7)
    assert errs.until_exit() == (b"", b"oops\n", 7)
    assert both.sock.recv(1) == b"", "the monitor closes a client after EXIT"
    assert m.status()["status"] == "exited", "status is final by the time EXIT arrives"
    both.close()
    errs.close()


def test_stdin_once(monitor, attach, budu, bundle):
    bundle.sh("cat; echo done")
    m = monitor(budu, bundle)
    m.launch("--stdin", "--stdin-once")
    a = attach(m.dir, STDOUT | STDIN)
    m.start()
    a.send(0x00, b"hello\n")
    a.send(0x00, b"world\n")
    a.send(0x01)
    assert a.until_exit() == (b"hello\nworld\ndone\n", b"", 0)
    a.close()


def test_slow_client_does_not_block(monitor, attach, budu, bundle):
    """A client that never reads is dropped; the container and its log are not held up."""
    bundle.sh("head -c 3000000 /dev/zero | tr '\\0' x; echo; echo end")
    m = monitor(budu, bundle)
    m.launch()
    a = attach(m.dir, STDOUT)
    a.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    m.start()
    st = m.wait_exited()
    assert st["exit_code"] == 0
    logs = [e["log"] for e in m.log()]
    assert "".join(logs) == "x" * 3000000 + "\nend\n"
    # what the client got ends before EXIT: it was dropped
    got, kinds = 0, set()
    for kind, data in a.frames():
        kinds.add(kind)
        got += len(data)
    assert 3 not in kinds and got < 3000000
    a.close()


def test_terminal(monitor, attach, runtime, bundle):
    bundle.config["process"]["terminal"] = True
    bundle.sh('read line; echo "got $line"; '
              'for i in $(seq 100); do [ "$(stty size)" = "30 100" ] && { echo size ok; exit 0; }; sleep 0.05; done; '
              'stty size; exit 1')
    m = monitor(runtime, bundle)
    m.launch("--terminal", "--stdin")
    a = attach(m.dir, STDOUT | STDIN)
    m.start()
    a.send(0x00, b"ping\n")
    a.send(0x02, struct.pack(">HH", 30, 100))
    out, err, code = a.until_exit()
    assert code == 0, out
    assert b"got ping\r\n" in out and b"size ok\r\n" in out and err == b""
    text = "".join(e["log"] for e in m.log())
    assert "got ping\r\n" in text and all(e["stream"] == "stdout" for e in m.log())
    a.close()


def test_long_bundle_path(monitor, attach, budu, bundle, tmp_path):
    """DIR longer than a unix socket path may be: attach and the console socket still work."""
    deep = tmp_path / ("d" * 100) / ("e" * 100)
    os.makedirs(deep.parent)
    os.rename(bundle.path, deep)
    b = type(bundle)(str(deep))
    b.config["process"]["terminal"] = True
    b.sh("echo through the pty")
    m = monitor(budu, b)
    m.launch("--terminal")
    a = attach(m.dir, STDOUT)
    m.start()
    out, _, code = a.until_exit()
    assert code == 0 and out == b"through the pty\r\n"
    a.close()


# ---------------------------------------------------------------------------------------------
# Sync protocol failures: nothing is left behind


def test_create_failure(monitor, runtime, bundle):
    bundle.args("/nonexistent-binary")
    m = monitor(runtime, bundle)
    assert m.launch() == {"ready": True}
    reply = m.start(expect_error=True)
    assert set(reply) == {"error"} and "nonexistent-binary" in reply["error"]
    assert "level=" not in reply["error"] and '"msg"' not in reply["error"]
    m.wait_gone()
    assert m.id not in runtime.list()
    assert not os.path.exists(m.path("status")) and not os.path.exists(m.path("attach"))


def test_engine_gone_before_start(monitor, budu, bundle):
    bundle.config["process"]["terminal"] = True
    bundle.args("sleep", "30")
    subprocess.run(["mount", "--bind", bundle.rootfs, bundle.rootfs], check=True)
    m = monitor(budu, bundle)
    pid = m.launch("--terminal")["pid"]  # with a terminal the container is created before `start`
    assert m.rootfs_mounted()
    m.sync.close()  # EOF before `start`
    m.sync = None
    m.wait_gone()
    assert not alive(pid)
    assert m.id not in budu.list()
    assert not os.path.exists(m.path("status"))
    assert not m.rootfs_mounted()


# ---------------------------------------------------------------------------------------------
# Restart policies


def test_restart_on_failure_max_retries(monitor, budu, bundle):
    bundle.sh("echo run; exit 1")
    m = monitor(budu, bundle)
    m.run("--restart", "on-failure", "--max-retries", "2")
    st = m.wait_exited()
    assert st["exit_code"] == 1 and st["restart_count"] == 2
    assert [e["log"] for e in m.log()] == ["run\n"] * 3, "ran exactly 3 times"
    actions = [e["Action"] for e in m.event_lines()]
    assert actions == ["start", "die"] * 3


@pytest.mark.parametrize("policy", ["always", "unless-stopped"])
def test_restart_until_stopped(monitor, attach, budu, bundle, policy):
    bundle.sh("echo run; sleep 30")
    m = monitor(budu, bundle)
    st = m.run("--restart", policy)
    first, mon = st["pid"], st["monitor_pid"]
    fds = len(os.listdir(f"/proc/{mon}/fd"))
    a = attach(m.dir, STDOUT)
    budu.cmd("kill", m.id, "KILL")
    assert a.until_exit()[2] == 137
    st = m.wait(lambda s: s["status"] == "running" and s["restart_count"] == 1, what="restarted")
    assert st["pid"] != first and alive(st["pid"]) and st["monitor_pid"] == mon
    assert len(os.listdir(f"/proc/{mon}/fd")) == fds, "no fd leaks across a restart"
    open(m.path("stop-requested"), "w").close()  # what `budu stop` does before killing
    budu.cmd("kill", m.id, "KILL")
    st = m.wait_exited()
    assert st["exit_code"] == 137 and st["restart_count"] == 1
    assert [e["log"] for e in m.log()] == ["run\n", "run\n"]


def test_stop_requested_prevents_restart(monitor, budu, bundle):
    bundle.sh("sleep 0.3; exit 1")
    m = monitor(budu, bundle)
    m.run("--restart", "always")
    open(m.path("stop-requested"), "w").close()
    st = m.wait_exited()
    assert st["restart_count"] == 0 and st["exit_code"] == 1


def test_restart_count_carries_on(monitor, budu, bundle):
    bundle.sh("exit 1")
    m = monitor(budu, bundle)
    m.run("--restart", "on-failure:3", "--restart-count", "2")
    st = m.wait_exited()
    assert st["restart_count"] == 3, "one more restart, the third"


# ---------------------------------------------------------------------------------------------
# OOM, rootfs, exit command


def test_oom_killed(monitor, budu, bundle):
    bundle.config["linux"]["resources"]["memory"] = {"limit": 32 * 1024 * 1024}
    bundle.sh("tail /dev/zero")  # buffers a line that never ends
    m = monitor(budu, bundle)
    m.run()
    st = m.wait_exited(timeout=30)
    assert st["exit_code"] == 137 and st["oom_killed"] is True
    assert [e["Action"] for e in m.event_lines()] == ["start", "oom", "die"]


def test_rootfs_unmounted_at_the_end(monitor, budu, bundle):
    subprocess.run(["mount", "--bind", bundle.rootfs, bundle.rootfs], check=True)
    bundle.sh("sleep 0.2")
    m = monitor(budu, bundle)
    m.run()
    assert m.rootfs_mounted()
    m.wait_exited()
    assert not m.rootfs_mounted()


def _exit_command(tmp_path) -> tuple[str, str]:
    marker = str(tmp_path / "exit-command-ran")
    script = tmp_path / "exit-command"
    script.write_text(f'#!/bin/sh\necho "$@" > {marker}\n')
    script.chmod(0o755)
    return str(script), marker


def test_exit_command(monitor, budu, bundle, tmp_path):
    cmd, marker = _exit_command(tmp_path)
    bundle.sh("exit 0")
    m = monitor(budu, bundle)
    m.run("--exit-command", cmd, "--exit-command-arg", "cleanup", "--exit-command-arg", m.id)
    m.wait_exited()
    assert open(marker).read() == f"cleanup {m.id}\n"


def test_exit_command_waits_for_cleanup_client(monitor, attach, budu, bundle, tmp_path):
    cmd, marker = _exit_command(tmp_path)
    bundle.sh("echo hi")
    m = monitor(budu, bundle)
    m.launch("--exit-command", cmd)
    a = attach(m.dir, STDOUT | CLEANUP)
    m.start()
    assert a.until_exit() == (b"hi\n", b"", 0)
    time.sleep(0.3)
    assert not os.path.exists(marker), "not while the cleanup client is connected"
    assert m.pids(), "the monitor waits for it"
    a.close()  # it did not remove the container: the exit command runs
    deadline = time.monotonic() + 10
    while not os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert os.path.exists(marker)


def test_exit_command_skipped_when_cleanup_client_removed_it(monitor, attach, budu, bundle, tmp_path):
    cmd, marker = _exit_command(tmp_path)
    bundle.sh("echo hi")
    m = monitor(budu, bundle)
    m.launch("--exit-command", cmd)
    a = attach(m.dir, STDOUT | CLEANUP)
    m.start()
    assert a.until_exit()[2] == 0
    os.unlink(m.path("config.json"))  # `run --rm` removed the container
    a.close()
    m.wait_gone()
    assert not os.path.exists(marker)


# ---------------------------------------------------------------------------------------------
# Health checks


def test_health_unhealthy_then_healthy(monitor, budu, bundle):
    bundle.args("sleep", "30")
    m = monitor(budu, bundle)
    st = m.run("--health-arg", "sh", "--health-arg", "-c", "--health-arg", "echo probing; test -f /ok",
               "--health-interval", "200", "--health-retries", "2")
    assert st["health"] == {"Status": "starting", "FailingStreak": 0, "Log": []}
    st = m.wait(lambda s: s["health"]["Status"] == "unhealthy", what="unhealthy")
    assert st["health"]["FailingStreak"] >= 2
    entry = st["health"]["Log"][-1]
    assert entry["ExitCode"] == 1 and entry["Output"] == "probing\n"
    assert TIME_RE.match(entry["Start"]) and entry["End"] >= entry["Start"]
    open(os.path.join(bundle.rootfs, "ok"), "w").close()
    st = m.wait(lambda s: s["health"]["Status"] == "healthy", what="healthy")
    assert st["health"]["FailingStreak"] == 0 and st["health"]["Log"][-1]["ExitCode"] == 0
    m.wait(lambda s: len(s["health"]["Log"]) == 5 and s["health"]["Log"][0]["ExitCode"] == 1, what="5 entries")
    time.sleep(0.5)
    assert len(m.status()["health"]["Log"]) == 5, "the last 5 are kept"
    health = [e["Action"] for e in m.event_lines() if e["Action"].startswith("health_status")]
    assert health == ["health_status: unhealthy", "health_status: healthy"]
    budu.cmd("kill", m.id, "KILL")
    m.wait_exited()


def test_health_start_period_and_timeout(monitor, budu, bundle):
    bundle.args("sleep", "30")
    m = monitor(budu, bundle)
    m.run("--health-arg", "sleep", "--health-arg", "5", "--health-interval", "100", "--health-timeout", "300",
          "--health-retries", "1", "--health-start-period", "60000")
    st = m.wait(lambda s: len(s["health"]["Log"]) >= 2, what="2 probes")
    assert st["health"]["Status"] == "starting" and st["health"]["FailingStreak"] == 0, "in the start period"
    entry = st["health"]["Log"][0]
    assert entry["ExitCode"] == -1 and "timeout" in entry["Output"]
    budu.cmd("kill", m.id, "KILL")
    m.wait_exited()


# ---------------------------------------------------------------------------------------------
# Footprint


def test_rss(monitor, attach, budu, bundle):
    bundle.sh("head -c 200000 /dev/zero | tr '\\0' '\\n'; sleep 30")  # chatty, then running
    m = monitor(budu, bundle)
    m.launch()
    a = attach(m.dir, STDOUT)
    m.start()
    mon = m.status()["monitor_pid"]
    m.wait(lambda s: os.path.getsize(m.log_path()) > 200000 * 50, what="the log written")
    a.close()
    with open(f"/proc/{mon}/status") as f:
        rss = int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))
    print(f"budu-monitor VmRSS: {rss} kB")
    assert rss <= 2048
    budu.cmd("kill", m.id, "KILL")
    m.wait_exited()
