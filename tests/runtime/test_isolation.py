"""budu's own isolation checks.  Each one is harmless to the host even if isolation were broken:
it reads capability bits, mount flags and error codes; it never sets the clock, loads a module or
writes a sysctl that would stick."""

from __future__ import annotations

import os
import subprocess
import time
import uuid


def probe(rt, bundle, script: str) -> str:
    bundle.sh(script)
    p = rt.run(bundle)
    assert p.returncode == 0, f"exit {p.returncode}: {p.stderr.decode()}"
    return p.stdout.decode(errors="replace")


def test_pid_1_and_no_host_processes(budu, bundle):
    out = probe(budu, bundle, "echo $$; ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '")
    first, pids = out.split("\n", 1)
    assert first == "1"
    seen = [int(p) for p in pids.split()]
    assert max(seen) < 10, f"the container sees host pids: {seen}"
    assert os.getpid() not in seen or os.getpid() < 10


def test_host_mount_after_start_is_invisible(budu, bundle, tmp_path):
    bundle.args("sleep", "30")
    cid = budu.new_id()
    budu.ok("run", "-d", "-b", bundle.path, cid)
    pid = budu.state(cid)["pid"]
    target = tmp_path / "late-mount"
    target.mkdir()
    tag = f"budu-late-{uuid.uuid4().hex[:8]}"
    subprocess.run(["mount", "-t", "tmpfs", tag, str(target)], check=True)
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            assert tag not in f.read()
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_proc_sys_and_sys_are_read_only(budu, bundle):
    # kernel/hostname is per-uts-namespace and the container has its own: harmless even if writable
    out = probe(budu, bundle, "exec 2>&1; echo x > /proc/sys/kernel/hostname; touch /sys/budu-probe; "
                              "grep -E ' /(sys|proc/sys) ' /proc/mounts | cut -d' ' -f2,4")
    assert out.count("Read-only file system") == 2, out
    mounts = dict(line.split(" ", 1) for line in out.strip().split("\n") if line.startswith("/"))
    assert mounts["/sys"].split(",")[0] == "ro"
    assert mounts["/proc/sys"].split(",")[0] == "ro"


def test_masked_paths_read_empty(budu, bundle):
    out = probe(budu, bundle, "wc -c < /proc/timer_list; wc -c < /proc/keys; ls -A /sys/firmware | wc -l; "
                              "ls -A /proc/acpi | wc -l")
    assert out.split() == ["0", "0", "0", "0"]


def test_dropped_capabilities_are_really_dropped(budu, bundle):
    # default spec: only CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE
    out = probe(budu, bundle, "exec 2>&1; grep CapEff /proc/self/status; mkdir -p /tmp/m; "
                              "mount -t tmpfs none /tmp/m; echo mount=$?; touch /tmp/f; chown 1234 /tmp/f; "
                              "echo chown=$?; stat -c %u /tmp/f; mknod /tmp/n c 1 3; echo mknod=$?")
    capeff = int(out.split("CapEff:")[1].split()[0], 16)
    assert capeff == (1 << 29) | (1 << 5) | (1 << 10)
    assert "mount=1" in out or "mount=255" in out
    assert "chown=1" in out
    assert "\n0\n" in out  # still owned by root
    assert "mknod=1" in out


def test_seccomp_denies_with_configured_errno(budu, bundle):
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}],
    }
    bundle.write()
    out = probe(budu, bundle, "exec 2>&1; mkdir /tmp/denied; echo rc=$?; test -d /tmp/denied || echo absent")
    assert "Function not implemented" in out and "rc=1" in out and "absent" in out


def test_memory_limit_oom_kills_inside_only(budu, bundle):
    limit = 32 * 1024 * 1024
    bundle.config["linux"]["resources"]["memory"] = {"limit": limit, "swap": limit}
    # grow a shell variable to ~64 MiB: the kernel must kill it inside the container's cgroup
    bundle.sh("x=a; while true; do x=$x$x; done")
    t = time.monotonic()
    p = budu.run(bundle)
    assert p.returncode == 137, f"exit {p.returncode}: {p.stderr.decode()[-300:]}"
    assert time.monotonic() - t < 60
    # and the host is fine: this process and the runtime lived to tell
    assert os.path.exists(f"/proc/{os.getpid()}")


def test_pids_limit_stops_fork_bomb(budu, bundle):
    import json

    bundle.config["linux"]["resources"]["pids"] = {"limit": 20}
    bundle.sh("i=0; while [ $i -lt 60 ]; do (sleep 30 &) 2>/dev/null; i=$((i+1)); done; echo done > /tmp/bomb; sleep 30")
    cid = budu.new_id()
    budu.ok("run", "-d", "-b", bundle.path, cid)
    marker = os.path.join(bundle.rootfs, "tmp/bomb")
    deadline = time.monotonic() + 20
    while not os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.path.exists(marker), "the fork loop never finished"
    pids = json.loads(budu.ok("ps", "--format", "json", cid).stdout)
    assert 5 <= len(pids) <= 20, f"{len(pids)} processes despite pids.limit 20"
