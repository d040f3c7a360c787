"""The rest of `budu run`'s flags, each checked where a user would look: inside, or in inspect."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time


def test_env_file_and_label_file(budu, tmp_path):
    (tmp_path / "env").write_text("# comment\nA=1\n\nB=two words\n")
    (tmp_path / "labels").write_text("team=core\n# x\nowner=ops\n")
    out = budu("run", "--rm", "--env-file", str(tmp_path / "env"), "busybox", "sh", "-c", 'echo "$A|$B"').stdout
    assert out == "1|two words\n"
    budu("create", "--name", "labelled", "--label-file", str(tmp_path / "labels"), "-l", "extra=1", "busybox", "true")
    labels = budu.inspect("labelled")["Config"]["Labels"]
    assert labels == {"team": "core", "owner": "ops", "extra": "1"}
    p = budu("run", "--rm", "--env-file", str(tmp_path / "missing"), "busybox", "true", ok=False)
    assert p.returncode == 125 and "missing" in p.stderr


def test_stop_signal_and_timeout(budu):
    budu("run", "-d", "--name", "sig", "--stop-signal", "USR2", "--stop-timeout", "5", "busybox", "sh", "-c",
         "trap 'echo got-usr2; exit 7' USR2; while true; do sleep 0.1; done")
    time.sleep(0.3)
    t0 = time.monotonic()
    budu("stop", "sig")
    assert time.monotonic() - t0 < 4
    assert budu.inspect("sig")["State"]["ExitCode"] == 7
    assert budu("logs", "sig").stdout == "got-usr2\n"
    cfg = budu.inspect("sig")["Config"]
    assert cfg["StopSignal"] == "USR2" and cfg["StopTimeout"] == 5


def test_cpu_and_cpuset(budu):
    out = budu("run", "--rm", "--cpu-shares", "512", "--cpuset-cpus", "0", "busybox", "sh", "-c",
               "cat /sys/fs/cgroup/cpu,cpuacct/cpu.shares 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.shares; "
               "cat /sys/fs/cgroup/cpuset/cpuset.cpus 2>/dev/null || cat /sys/fs/cgroup/cpuset.cpus").stdout.split()
    assert out == ["512", "0"]


def test_memory_swap(budu):
    out = budu("run", "--rm", "--memory", "32m", "--memory-swap", "64m", "busybox", "sh", "-c",
               "cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes 2>/dev/null || echo no-swap-accounting").stdout
    assert out.strip() in (str(64 << 20), "no-swap-accounting")
    p = budu("run", "--rm", "--memory-swap", "64m", "busybox", "true", ok=False)
    assert p.returncode == 125


def test_sysctl_and_device(budu):
    with open("/proc/sys/kernel/msgmax") as f:
        host_msgmax = f.read().strip()
    out = budu("run", "--rm", "--sysctl", "net.ipv4.ip_forward=1", "--sysctl", "kernel.msgmax=65536",
               "busybox", "sh", "-c", "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/msgmax").stdout.split()
    assert out == ["1", "65536"]
    with open("/proc/sys/kernel/msgmax") as f:
        assert f.read().strip() == host_msgmax  # untouched: the container has its own IPC namespace
    p = budu("run", "--rm", "--sysctl", "kernel.hostname=x", "busybox", "true", ok=False)
    assert p.returncode == 125 and "kernel.hostname" in p.stderr
    out = budu("run", "--rm", "--device", "/dev/fuse:/dev/myfuse", "busybox", "ls", "-l", "/dev/myfuse").stdout
    assert out.startswith("crw") and "10," in out
    p = budu("run", "--rm", "--device", "/dev/no-such-device", "busybox", "true", ok=False)
    assert p.returncode == 125 and "/dev/no-such-device" in p.stderr


def test_seccomp_profile_file(budu, tmp_path):
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    (tmp_path / "p.json").write_text(json.dumps(profile))
    p = budu("run", "--rm", "--security-opt", f"seccomp={tmp_path / 'p.json'}", "busybox", "mkdir", "/tmp/x", ok=False)
    assert p.returncode != 0 and "not permitted" in p.stderr.lower()
    assert budu("run", "--rm", "busybox", "mkdir", "/tmp/x").returncode == 0


def test_mount_volume_and_tmpfs(budu):
    budu("run", "--rm", "--mount", "type=volume,source=mvol,target=/m", "busybox", "sh", "-c", "echo v > /m/f")
    out = budu("run", "--rm", "--mount", "source=mvol,target=/m,readonly", "--mount",
               "type=tmpfs,target=/t,tmpfs-size=2m", "busybox", "sh", "-c",
               "cat /m/f; touch /m/g 2>/dev/null || echo ro; df -k /t | tail -1").stdout.splitlines()
    assert out[0] == "v" and out[1] == "ro" and out[2].split()[1] == "2048"
    budu("volume", "rm", "mvol")


def test_image_volume_copy_up_and_rm_v(budu):
    """A VOLUME over a path with files: the new volume starts with the image's files (docker's copy-up)."""
    budu("run", "--name", "cu", "-v", "/etc", "busybox", "sh", "-c", "ls /etc/passwd")
    (m,) = budu.inspect("cu")["Mounts"]
    assert os.path.exists(os.path.join(m["Source"], "passwd"))
    budu("rm", "-v", "cu")
    assert m["Name"] not in budu("volume", "ls", "-q").stdout


def test_pull_policies(budu):
    p = budu("run", "--rm", "--pull", "never", "busybox", "true")
    assert p.returncode == 0
    p = budu("run", "--rm", "--pull", "sometimes", "busybox", "true", ok=False)
    assert p.returncode == 125 and "pull" in p.stderr


def test_health_checks(budu):
    budu("run", "-d", "--name", "healthy", "--health-cmd", "test -f /tmp/ok", "--health-interval", "200ms",
         "--health-retries", "2", "busybox", "sh", "-c", "touch /tmp/ok; sleep 300")
    budu.wait_for("healthy", "{{.State.Health.Status}}", "healthy")
    assert "(healthy)" in budu("ps", "--format", "{{.Status}}").stdout
    assert budu("ps", "--filter", "health=healthy", "--format", "{{.Names}}").stdout == "healthy\n"
    budu("exec", "healthy", "rm", "/tmp/ok")
    budu.wait_for("healthy", "{{.State.Health.Status}}", "unhealthy")
    log = budu.inspect("healthy")["State"]["Health"]["Log"]
    assert log[-1]["ExitCode"] == 1
    budu("run", "-d", "--name", "no-check", "--no-healthcheck", "busybox", "sleep", "300")
    assert "Health" not in budu.inspect("no-check")["State"]


def test_exec_with_tty(budu):
    budu("run", "-d", "--name", "termhost", "busybox", "sleep", "300")
    master, slave = pty.openpty()
    proc = subprocess.Popen(["budu", "exec", "-it", "termhost", "sh", "-c", "tty; echo done"], stdin=slave,
                            stdout=slave, stderr=slave, env=budu.env, start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 15
    while b"done" not in out and time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                out += os.read(master, 4096)
            except OSError:
                break
    proc.wait(timeout=15)
    os.close(master)
    assert b"/dev/pts/" in out and b"done" in out and proc.returncode == 0


def test_attach_and_detach_keys(budu):
    budu("run", "-dit", "--name", "attachable", "busybox", "sh")
    master, slave = pty.openpty()
    proc = subprocess.Popen(["budu", "attach", "attachable"], stdin=slave, stdout=slave, stderr=slave,
                            env=budu.env, start_new_session=True)
    os.close(slave)
    out = b""

    def read_until(token: bytes, timeout: float = 10) -> None:
        nonlocal out
        deadline = time.monotonic() + timeout
        while token not in out and time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    out += os.read(master, 4096)
                except OSError:
                    return

    time.sleep(0.5)
    os.write(master, b"echo attached-$((40+2))\r")
    read_until(b"attached-42")
    os.write(master, b"\x10\x11")  # ctrl-p ctrl-q
    proc.wait(timeout=10)
    os.close(master)
    assert b"attached-42" in out
    assert proc.returncode == 0
    assert budu("inspect", "--format", "{{.State.Status}}", "attachable").stdout == "running\n"
