"""`budu run` as a docker user types it: output, exit codes, and what the kernel sees inside."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time

import pytest

DOCKER_DEFAULT_CAPS = "00000000a80425fb"


def test_run_prints_and_leaves_nothing(budu):
    p = budu("run", "--rm", "busybox", "echo", "hello from budu")
    assert p.stdout == "hello from budu\n"
    assert budu("ps", "-aq").stdout == ""


def test_exit_codes_are_dockers(budu):
    assert budu("run", "--rm", "busybox", "sh", "-c", "exit 3", ok=False).returncode == 3
    p = budu("run", "--rm", "busybox", "no-such-command", ok=False)
    assert p.returncode == 127, p.stderr
    assert "no-such-command" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = budu("run", "--rm", "busybox", "/etc/passwd", ok=False)
    assert p.returncode == 126, p.stderr
    p = budu("run", "--rm", "--pull", "never", "no-such-image", "true", ok=False)
    assert p.returncode == 125 and "no-such-image" in p.stderr
    p = budu("run", "--rm", "--memory", "lots", "busybox", "true", ok=False)
    assert p.returncode == 125 and "memory" in p.stderr and "Traceback" not in p.stderr
    assert budu("ps", "-aq").stdout == ""  # no half-made container from any of these


def test_stdout_and_stderr_stay_apart(budu):
    p = budu("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert p.stdout == "out\n" and p.stderr == "err\n"


def test_stdin_with_i(budu):
    p = budu("run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z", input="shout\n")
    assert p.stdout == "SHOUT\n"


def test_tty_with_t(budu):
    """-it under a real terminal: the container's stdin is a tty and its output comes back."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))  # the user's window
    proc = subprocess.Popen(["budu", "run", "--rm", "-it", "busybox", "sh", "-c", "tty; stty size; read x; echo got-$x"],
                            stdin=slave, stdout=slave, stderr=slave, env=budu.env, start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 20
    sent = False
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if not sent and b"/dev/pts/" in out and b"33 101" in out:
            os.write(master, b"yes\r")
            sent = True
        if b"got-yes" in out or proc.poll() is not None:
            break
    proc.wait(timeout=20)
    os.close(master)
    assert b"/dev/pts/0" in out, out
    assert b"got-yes" in out, out
    assert proc.returncode == 0


def test_environment_workdir_user_hostname(budu):
    p = budu("run", "--rm", "-e", "GREETING=hi there", "-w", "/tmp", "-u", "nobody", "--hostname", "box",
             "busybox", "sh", "-c", 'echo "$GREETING|$(pwd)|$(id -u)|$(hostname)|$HOME|$PATH"')
    greeting, cwd, uid, host, _home, path = p.stdout.strip().split("|")
    assert (greeting, cwd, uid, host) == ("hi there", "/tmp", "65534", "box")
    assert "/usr/bin" in path


def test_entrypoint_and_cmd(budu):
    assert budu("run", "--rm", "--entrypoint", "echo", "busybox", "a", "b").stdout == "a b\n"


def test_isolated_by_default(budu):
    """Docker's default security: its capability set, seccomp, masked and read-only /proc."""
    script = ("grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status; echo pid=$$; "
              "cat /proc/timer_list | wc -c; touch /proc/sys/kernel/domainname 2>&1 || echo ro-sys; "
              "ls /proc | grep -cE '^[0-9]+$'")
    out = budu("run", "--rm", "busybox", "sh", "-c", script).stdout
    fields = dict(line.split(":\t") for line in out.splitlines() if ":\t" in line)
    assert fields["CapEff"] == DOCKER_DEFAULT_CAPS and fields["CapBnd"] == DOCKER_DEFAULT_CAPS
    assert fields["Seccomp"] == "2"
    assert "pid=1" in out
    assert "\n0\n" in out  # /proc/timer_list is masked
    assert "ro-sys" in out or "Read-only" in out


def test_privileged_and_capabilities(budu):
    with open("/proc/self/status") as f:
        host_bnd = next(line.split()[1] for line in f if line.startswith("CapBnd:"))
    out = budu("run", "--rm", "--privileged", "busybox", "grep", "-E", "^(CapEff|Seccomp):", "/proc/self/status").stdout
    assert f"CapEff:\t{host_bnd}" in out and "Seccomp:\t0" in out
    out = budu("run", "--rm", "--cap-drop", "ALL", "--cap-add", "NET_ADMIN", "busybox",
               "grep", "^CapEff:", "/proc/self/status").stdout
    assert out.split()[1] == f"{1 << 12:016x}"
    out = budu("run", "--rm", "--cap-drop", "CHOWN", "busybox", "chown", "1:1", "/tmp", ok=False)
    assert out.returncode != 0
    out = budu("run", "--rm", "--security-opt", "no-new-privileges", "--security-opt", "seccomp=unconfined",
               "busybox", "grep", "-E", "^(NoNewPrivs|Seccomp):", "/proc/self/status").stdout
    assert "NoNewPrivs:\t1" in out and "Seccomp:\t0" in out


def test_read_only_and_tmpfs(budu):
    out = budu("run", "--rm", "--read-only", "--tmpfs", "/scratch:size=1m", "busybox", "sh", "-c",
               "touch /x 2>/dev/null && echo rootfs-writable; touch /scratch/y && echo tmpfs-ok; "
               "touch /dev/shm/z && echo shm-ok; df -k /scratch | tail -1").stdout
    assert "rootfs-writable" not in out and "tmpfs-ok" in out and "shm-ok" in out
    assert out.splitlines()[-1].split()[1] == "1024"


def test_limits_reach_the_kernel(budu):
    out = budu("run", "--rm", "--memory", "64m", "--pids-limit", "50", "--cpus", "0.5", "--ulimit", "nofile=256:512",
               "--shm-size", "8m", "busybox", "sh", "-c",
               "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; "
               "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; "
               "cat /sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us "
               "2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max; "
               "ulimit -n; ulimit -Hn; df -k /dev/shm | tail -1").stdout.split("\n")
    assert out[0] == str(64 << 20)
    assert out[1] == "50"
    assert out[2] == "50000"
    assert out[3:5] == ["256", "512"]
    assert out[5].split()[1] == "8192"


def test_memory_limit_oom_kills_inside(budu):
    p = budu("run", "--name", "oom", "--memory", "32m", "--memory-swap", "32m", "busybox", "sh", "-c",
             "tail /dev/zero", ok=False, timeout=60)
    assert p.returncode == 137
    state = budu.inspect("oom")["State"]
    assert state["OOMKilled"] is True and state["ExitCode"] == 137


def test_init_reaps_as_pid_1(budu):
    out = budu("run", "--rm", "--init", "busybox", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$").stdout
    first, second = out.splitlines()
    assert first.startswith("/sbin/docker-init") and second != "1"


def test_network_none_and_host(budu):
    out = budu("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link").stdout
    names = [line.split(":")[1].strip() for line in out.splitlines()]
    assert names == ["lo"]
    host_netns = os.readlink("/proc/self/ns/net")
    out = budu("run", "--rm", "--network", "host", "busybox", "readlink", "/proc/self/ns/net").stdout
    assert out.strip() == host_netns
    out = budu("run", "--rm", "busybox", "readlink", "/proc/self/ns/net").stdout
    assert out.strip() != host_netns


def test_hosts_and_resolv_conf(budu):
    out = budu("run", "--rm", "--hostname", "web", "--add-host", "db:10.1.2.3", "--dns", "10.9.9.9",
               "busybox", "sh", "-c", "cat /etc/hostname /etc/hosts /etc/resolv.conf").stdout
    assert out.startswith("web\n")
    assert "10.1.2.3\tdb" in out and "127.0.0.1\tlocalhost" in out
    assert "nameserver 10.9.9.9" in out


def test_name_conflict_and_bad_names(budu):
    budu("create", "--name", "twin", "busybox", "true")
    p = budu("create", "--name", "twin", "busybox", "true", ok=False)
    assert p.returncode == 125 and 'The container name "/twin" is already in use' in p.stderr
    p = budu("create", "--name", "bad name!", "busybox", "true", ok=False)
    assert p.returncode == 125 and "Invalid container name" in p.stderr
    assert budu("ps", "-a", "--format", "{{.Names}}").stdout == "twin\n"


def test_volumes_outlive_containers(budu):
    budu("volume", "create", "keep")
    budu("run", "--rm", "-v", "keep:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    assert budu("run", "--rm", "-v", "keep:/data:ro", "busybox", "cat", "/data/f").stdout == "kept\n"
    p = budu("run", "--rm", "-v", "keep:/data:ro", "busybox", "touch", "/data/g", ok=False)
    assert p.returncode != 0
    assert "keep" in budu("volume", "ls", "-q").stdout.split()
    budu("volume", "rm", "keep")


def test_bind_mounts(budu, tmp_path):
    (tmp_path / "in.txt").write_text("from host\n")
    out = budu("run", "--rm", "-v", f"{tmp_path}:/host", "busybox", "sh", "-c", "cat /host/in.txt; echo back > /host/out.txt")
    assert out.stdout == "from host\n"
    assert (tmp_path / "out.txt").read_text() == "back\n"
    out = budu("run", "--rm", "--mount", f"type=bind,source={tmp_path},target=/ro,readonly", "busybox",
               "sh", "-c", "touch /ro/x 2>/dev/null || echo denied").stdout
    assert out == "denied\n"
    p = budu("run", "--rm", "--mount", "type=bind,source=/no/such/dir,target=/x", "busybox", "true", ok=False)
    assert p.returncode == 125 and "/no/such/dir" in p.stderr
    assert budu("ps", "-aq").stdout == ""


def test_runc_and_crun_as_runtime(budu):
    for rt in ("runc", "crun"):
        assert budu("run", "--rm", "--runtime", rt, "busybox", "echo", rt).stdout == f"{rt}\n"
    budu("run", "-d", "--name", "by-runc", "--runtime", "runc", "busybox", "sleep", "60")
    assert budu("exec", "by-runc", "echo", "in").stdout == "in\n"
    budu("rm", "-f", "by-runc")


def test_detached_container_survives_its_cli(budu):
    proc = budu.popen("run", "--name", "survivor", "busybox", "sleep", "300",
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    budu.wait_for("survivor", "{{.State.Status}}", "running")
    proc.kill()
    proc.wait()
    time.sleep(0.3)
    assert budu("inspect", "--format", "{{.State.Status}}", "survivor").stdout == "running\n"
    budu("rm", "-f", "survivor")


def test_run_detached_ps_logs_stop(budu):
    cid = budu("run", "-d", "--name", "web", "-l", "tier=front", "busybox", "sh", "-c",
               "echo started; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    table = budu("ps").stdout.splitlines()
    assert re.match(r"CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES", table[0])
    row = table[1]
    assert row.startswith(cid[:12]) and "busybox" in row and row.endswith("web") and "Up " in row
    assert '"sh -c \'echo started…"' in row
    deadline = time.monotonic() + 10
    while "started" not in budu("logs", "web").stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    budu("stop", "web")
    assert budu("logs", "web").stdout == "started\nbye\n"
    assert re.match(r"Exited \(0\) ", budu("ps", "-a", "--format", "{{.Status}}").stdout)
    info = budu.inspect("web")
    assert info["Name"] == "/web" and info["Id"] == cid and info["State"]["Status"] == "exited"
    assert info["Config"]["Labels"]["tier"] == "front"
    assert info["Config"]["Image"] == "busybox"
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "no"


def test_stop_kills_after_timeout(budu):
    budu("run", "-d", "--name", "stubborn", "busybox", "sleep", "300")  # PID 1 ignores SIGTERM
    t0 = time.monotonic()
    budu("stop", "-t", "1", "stubborn")
    assert 0.9 < time.monotonic() - t0 < 8
    assert budu.inspect("stubborn")["State"]["ExitCode"] == 137


def test_start_attach_restart_rm(budu):
    budu("create", "--name", "again", "busybox", "sh", "-c", "echo run")
    assert budu("ps", "-a", "--format", "{{.Status}}").stdout == "Created\n"
    assert budu("start", "-a", "again").stdout == "run\n"
    budu("start", "again")
    budu("wait", "again")
    assert budu("logs", "again").stdout == "run\nrun\n"
    budu("restart", "again")
    budu("wait", "again")
    assert budu("logs", "again").stdout == "run\nrun\nrun\n"
    p = budu("rm", "no-such-container", ok=False)
    assert p.returncode == 1 and "No such container: no-such-container" in p.stderr


def test_rm_running_needs_force(budu):
    budu("run", "-d", "--name", "busy", "busybox", "sleep", "300")
    p = budu("rm", "busy", ok=False)
    assert p.returncode == 1 and "stop the container before removing or force remove" in p.stderr
    budu("rm", "-f", "busy")
    assert budu("ps", "-aq").stdout == ""


def test_kill_signal_pause_wait(budu):
    budu("run", "-d", "--name", "kk", "busybox", "sh", "-c", "trap 'exit 42' USR1; while true; do sleep 0.1; done")
    budu("pause", "kk")
    assert budu("ps", "--format", "{{.Status}}").stdout.strip().endswith("(Paused)")
    budu("unpause", "kk")
    budu("kill", "-s", "USR1", "kk")
    assert budu("wait", "kk").stdout == "42\n"
    p = budu("kill", "kk", ok=False)
    assert p.returncode == 1 and "is not running" in p.stderr
