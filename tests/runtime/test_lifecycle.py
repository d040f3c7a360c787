"""runtime.md: the lifecycle and the operations, tested against budu-runtime and runc alike."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest


def wait_status(rt, cid: str, want: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = rt.state(cid)
        if st["status"] == want or time.monotonic() > deadline:
            return st
        time.sleep(0.02)


def test_create_leaves_process_waiting_until_start(runtime, bundle):
    # runtime.md: create MUST NOT run the user-specified program; start MUST run it.
    marker = os.path.join(bundle.rootfs, "tmp/ran")
    bundle.sh("echo yes > /tmp/ran; sleep 30")
    cid = runtime.new_id()
    runtime.ok("create", "--bundle", bundle.path, cid)
    st = runtime.state(cid)
    assert st["status"] == "created"
    assert st["id"] == cid and st["pid"] > 0
    assert os.path.realpath(st["bundle"]) == os.path.realpath(bundle.path)
    assert st["ociVersion"]
    time.sleep(0.3)
    assert not os.path.exists(marker), "the program ran before start"
    runtime.ok("start", cid)
    deadline = time.monotonic() + 5
    while not os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert open(marker).read() == "yes\n"
    assert runtime.state(cid)["status"] == "running"


def test_state_of_running_and_stopped(runtime, bundle):
    bundle.args("sleep", "30")
    cid = runtime.new_id()
    runtime.ok("run", "-d", "--bundle", bundle.path, cid)
    st = runtime.state(cid)
    assert st["status"] == "running"
    pid = st["pid"]
    assert os.path.exists(f"/proc/{pid}")
    runtime.ok("kill", cid, "KILL")
    st = wait_status(runtime, cid, "stopped")
    assert st["status"] == "stopped"
    runtime.ok("delete", cid)
    p = runtime.cmd("state", cid)
    assert p.returncode != 0  # runtime.md: state of an unknown container MUST error


def test_start_twice_fails(runtime, bundle):
    bundle.args("sleep", "30")
    cid = runtime.new_id()
    runtime.ok("create", "--bundle", bundle.path, cid)
    runtime.ok("start", cid)
    p = runtime.cmd("start", cid)
    assert p.returncode != 0  # start on a running container MUST error


def test_start_stopped_fails(runtime, bundle):
    bundle.args("true")
    cid = runtime.new_id()
    runtime.ok("run", "-d", "--bundle", bundle.path, cid)
    wait_status(runtime, cid, "stopped")
    assert runtime.cmd("start", cid).returncode != 0


def test_create_duplicate_id_fails(runtime, bundle):
    bundle.args("sleep", "30")
    cid = runtime.new_id()
    runtime.ok("create", "--bundle", bundle.path, cid)
    p = runtime.cmd("create", "--bundle", bundle.path, cid)
    assert p.returncode != 0  # the id MUST be unique
    assert runtime.state(cid)["status"] == "created"  # and the first one is untouched


def test_delete_running_needs_force(runtime, bundle):
    bundle.args("sleep", "30")
    cid = runtime.new_id()
    runtime.ok("run", "-d", "--bundle", bundle.path, cid)
    pid = runtime.state(cid)["pid"]
    assert runtime.cmd("delete", cid).returncode != 0  # delete of a running container MUST error
    assert runtime.state(cid)["status"] == "running"
    runtime.ok("delete", "--force", cid)
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(pid)
    assert runtime.cmd("state", cid).returncode != 0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_delete_created_container(runtime, bundle):
    bundle.args("sleep", "30")
    cid = runtime.new_id()
    runtime.ok("create", "--bundle", bundle.path, cid)
    pid = runtime.state(cid)["pid"]
    runtime.ok("delete", cid)
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(pid)


def test_kill_signal_by_name_and_number(runtime, bundle):
    bundle.sh("trap 'echo got-usr1 > /tmp/sig' USR1; while true; do sleep 0.05; done")
    cid = runtime.new_id()
    runtime.ok("run", "-d", "--bundle", bundle.path, cid)
    time.sleep(0.3)
    runtime.ok("kill", cid, "SIGUSR1")
    sig = os.path.join(bundle.rootfs, "tmp/sig")
    deadline = time.monotonic() + 5
    while not os.path.exists(sig) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert open(sig).read() == "got-usr1\n"
    runtime.ok("kill", cid, str(int(signal.SIGKILL)))
    assert wait_status(runtime, cid, "stopped")["status"] == "stopped"


def test_kill_stopped_fails(runtime, bundle):
    bundle.args("true")
    cid = runtime.new_id()
    runtime.ok("run", "-d", "--bundle", bundle.path, cid)
    wait_status(runtime, cid, "stopped")
    assert runtime.cmd("kill", cid, "KILL").returncode != 0


def test_run_returns_exit_code(runtime, bundle):
    bundle.sh("exit 3")
    assert runtime.run(bundle).returncode == 3


def test_run_killed_by_signal_exit_code(runtime, bundle):
    bundle.sh("kill -TERM $$; sleep 5")
    # the shell is pid 1 and ignores TERM from itself inside its pid namespace; KILL from outside works
    bundle.sh("sleep 30")
    cid = runtime.new_id()
    import subprocess

    proc = subprocess.Popen([runtime.binary, "--root", runtime.root, "run", "-b", bundle.path, cid])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        p = runtime.cmd("state", cid)
        if p.returncode == 0 and json.loads(p.stdout)["status"] == "running":
            break
        time.sleep(0.02)
    runtime.ok("kill", cid, "KILL")
    assert proc.wait(10) == 137


def test_run_stdio(runtime, bundle):
    bundle.sh("cat; echo out; echo err >&2")
    p = runtime.run(bundle, input=b"from stdin\n")
    assert p.returncode == 0
    assert p.stdout == b"from stdin\nout\n"
    assert p.stderr.endswith(b"err\n")


def test_pid_file(runtime, bundle, tmp_path):
    bundle.args("sleep", "30")
    cid = runtime.new_id()
    pidfile = tmp_path / "pid"
    runtime.ok("create", "--bundle", bundle.path, "--pid-file", str(pidfile), cid)
    assert int(pidfile.read_text()) == runtime.state(cid)["pid"]


def test_list(runtime, bundle):
    bundle.args("sleep", "30")
    ids = [runtime.new_id(), runtime.new_id()]
    runtime.ok("create", "--bundle", bundle.path, ids[0])
    runtime.ok("run", "-d", "--bundle", bundle.path, ids[1])
    listed = {s["id"]: s["status"] for s in json.loads(runtime.ok("list", "--format", "json").stdout)}
    assert listed == {ids[0]: "created", ids[1]: "running"}
    table = runtime.ok("list").stdout.decode().splitlines()
    assert table[0].split()[:3] == ["ID", "PID", "STATUS"]
    assert sorted(line.split()[0] for line in table[1:]) == sorted(ids)
    assert runtime.ok("list", "-q").stdout.decode().split() == sorted(ids)


def test_ps(runtime, bundle):
    bundle.sh("sleep 30 & sleep 31 & wait")
    cid = runtime.new_id()
    runtime.ok("run", "-d", "--bundle", bundle.path, cid)
    time.sleep(0.3)
    pids = json.loads(runtime.ok("ps", "--format", "json", cid).stdout)
    assert len(pids) == 3
    assert runtime.state(cid)["pid"] in pids
    table = runtime.ok("ps", cid).stdout.decode()
    assert "sleep 31" in table and "PID" in table.splitlines()[0]


def test_pause_resume(runtime, bundle):
    counter = os.path.join(bundle.rootfs, "tmp/count")
    bundle.sh("i=0; while true; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.02; done")
    cid = runtime.new_id()
    runtime.ok("run", "-d", "--bundle", bundle.path, cid)
    time.sleep(0.3)
    runtime.ok("pause", cid)
    assert runtime.state(cid)["status"] == "paused"
    a = open(counter).read()
    time.sleep(0.3)
    assert open(counter).read() == a, "a paused container kept running"
    assert runtime.cmd("pause", cid).returncode != 0
    runtime.ok("resume", cid)
    assert runtime.state(cid)["status"] == "running"
    time.sleep(0.3)
    assert open(counter).read() != a
    assert runtime.cmd("resume", cid).returncode != 0


def test_delete_paused_with_force(runtime, bundle):
    bundle.args("sleep", "30")
    cid = runtime.new_id()
    runtime.ok("run", "-d", "--bundle", bundle.path, cid)
    runtime.ok("pause", cid)
    runtime.ok("delete", "-f", cid)
    assert runtime.cmd("state", cid).returncode != 0


def test_exec(runtime, bundle):
    bundle.sh("echo $$ > /tmp/initpid; hostname > /tmp/h; sleep 30")
    bundle.config["hostname"] = "exec-test"
    bundle.write()
    cid = runtime.new_id()
    runtime.ok("run", "-d", "--bundle", bundle.path, cid)
    time.sleep(0.2)
    p = runtime.ok("exec", cid, "sh", "-c", "hostname; cat /tmp/initpid; ps -o pid,comm | grep -c sleep")
    assert p.stdout.decode().split() == ["exec-test", "1", "1"]
    assert runtime.cmd("exec", cid, "sh", "-c", "exit 7").returncode == 7
    p = runtime.ok("exec", "-e", "FOO=bar", "--cwd", "/tmp", "-u", "65534:65534", cid, "sh", "-c",
                   "echo $FOO; pwd; id -u; id -g")
    assert p.stdout.decode().split() == ["bar", "/tmp", "65534", "65534"]


def test_exec_process_file(runtime, bundle, tmp_path):
    bundle.args("sleep", "30")
    cid = runtime.new_id()
    runtime.ok("run", "-d", "--bundle", bundle.path, cid)
    proc = {"args": ["sh", "-c", "echo $X; pwd; grep CapEff /proc/self/status"], "env": ["X=from-file", "PATH=/bin"],
            "cwd": "/etc", "user": {"uid": 0, "gid": 0},
            "capabilities": {k: ["CAP_KILL"] for k in ("bounding", "effective", "permitted")}}
    f = tmp_path / "process.json"
    f.write_text(json.dumps(proc))
    out = runtime.ok("exec", "--process", str(f), cid).stdout.decode().split()
    assert out[:2] == ["from-file", "/etc"]
    assert out[3] == f"{1 << 5:016x}"  # CAP_KILL is capability 5


def test_exec_detached_pid_file(runtime, bundle, tmp_path):
    bundle.args("sleep", "30")
    cid = runtime.new_id()
    runtime.ok("run", "-d", "--bundle", bundle.path, cid)
    pidfile = tmp_path / "exec.pid"
    runtime.ok("exec", "-d", "--pid-file", str(pidfile), cid, "sleep", "20")
    pid = int(pidfile.read_text())
    assert _alive(pid)
    pids = json.loads(runtime.ok("ps", "--format", "json", cid).stdout)
    assert pid in pids


def test_exec_missing_command(runtime, bundle):
    bundle.args("sleep", "30")
    cid = runtime.new_id()
    runtime.ok("run", "-d", "--bundle", bundle.path, cid)
    p = runtime.cmd("exec", cid, "no-such-command")
    assert p.returncode != 0
    assert b"no-such-command" in p.stderr and b"not found" in p.stderr


def test_exec_in_stopped_container_fails(runtime, bundle):
    bundle.args("true")
    cid = runtime.new_id()
    runtime.ok("run", "-d", "--bundle", bundle.path, cid)
    wait_status(runtime, cid, "stopped")
    assert runtime.cmd("exec", cid, "true").returncode != 0


def test_run_keep(budu, bundle):
    bundle.args("true")
    cid = budu.new_id()
    p = budu.cmd("run", "--keep", "-b", bundle.path, cid)
    assert p.returncode == 0
    assert budu.state(cid)["status"] == "stopped"


@pytest.mark.parametrize("verb", ["start", "state", "kill", "delete", "pause", "resume", "ps"])
def test_unknown_container(runtime, verb):
    p = runtime.cmd(verb, "no-such-container")
    assert p.returncode != 0
    assert p.stderr.strip(), "an error must say what went wrong"


def test_preserve_fds_and_no_leaks(runtime, bundle, tmp_path):
    """Only stdio and --preserve-fds descriptors reach the container; nothing else leaks in."""
    bundle.sh("ls /proc/self/fd | sort -n | tr '\\n' ' '; cat <&3")
    f1 = open(tmp_path / "three", "w+")
    f1.write("fd three\n")
    f1.flush()
    f1.seek(0)
    leak = open(tmp_path / "leak", "w")
    import subprocess

    cid = runtime.new_id()
    r, w = os.pipe()

    def arrange() -> None:  # the caller hands fd 3 on purpose and leaks fd 5 (ls itself takes 4)
        os.dup2(f1.fileno(), 3)
        os.dup2(leak.fileno(), 5)

    proc = subprocess.Popen([runtime.binary, "--root", runtime.root, "run", "--preserve-fds", "1", "-b",
                             bundle.path, cid], stdout=w, close_fds=False, preexec_fn=arrange)
    os.close(w)
    out = b""
    while chunk := os.read(r, 4096):
        out += chunk
    os.close(r)
    assert proc.wait(30) == 0
    listed = out.decode().split("fd three")[0].split()
    assert listed[:4] == ["0", "1", "2", "3"], out
    assert "5" not in listed, f"a leaked descriptor reached the container: {listed}"
    assert "fd three" in out.decode()


def test_kill_all_without_pid_namespace(runtime, bundle):
    """Without its own pid namespace a container's processes outlive its init unless the runtime
    finds them through the cgroup: kill --all and delete must reach every one."""
    bundle.config["linux"]["namespaces"] = [n for n in bundle.config["linux"]["namespaces"] if n["type"] != "pid"]
    bundle.sh("sleep 31 & sleep 32 & sleep 33")
    cid = runtime.new_id()
    runtime.ok("run", "-d", "-b", bundle.path, cid)
    time.sleep(0.3)
    pids = json.loads(runtime.ok("ps", "--format", "json", cid).stdout)
    assert len(pids) == 3  # two in the background, the shell exec'd into the third
    runtime.ok("kill", "--all", cid, "KILL")
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(_alive(p) for p in pids)
    runtime.ok("delete", cid)


def test_features(runtime):
    doc = json.loads(runtime.ok("features").stdout)
    assert doc["ociVersionMin"].startswith("1.0")
    assert {"prestart", "createRuntime", "poststop"} <= set(doc["hooks"])
    assert {"bind", "rbind", "ro", "nosuid"} <= set(doc["mountOptions"])
    linux = doc["linux"]
    assert {"pid", "network", "mount", "user", "cgroup"} <= set(linux["namespaces"])
    assert "CAP_SYS_ADMIN" in linux["capabilities"]
    assert linux["seccomp"]["enabled"] is True
    assert "SCMP_ACT_ERRNO" in linux["seccomp"]["actions"]


def test_spec_writes_a_usable_config(runtime, tmp_path, bundle):
    d = tmp_path / "spec-out"
    d.mkdir()
    runtime.ok("spec", "--bundle", str(d))
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["root"]["path"] == "rootfs" and cfg["process"]["args"] == ["sh"]
    assert runtime.cmd("spec", "--bundle", str(d)).returncode != 0  # never overwrite
    # and the runtime can run it (with busybox as its rootfs and no terminal)
    os.rename(bundle.rootfs, d / "rootfs")
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["true"]
    (d / "config.json").write_text(json.dumps(cfg))
    assert runtime.cmd("run", "-b", str(d), runtime.new_id()).returncode == 0
