"""Bad input: one line naming the problem, a non-zero exit, and nothing left behind."""

from __future__ import annotations

import json
import os
import resource
import subprocess

import pytest


def leftovers(rt, cid: str) -> list[str]:
    """Everything a failed create might leak: state, cgroups, processes, mounts."""
    found = []
    if os.path.exists(os.path.join(rt.root, cid)):
        found.append(f"state dir {rt.root}/{cid}")
    for ctrl in ("pids", "memory", "cpu", "unified"):
        if os.path.exists(f"/sys/fs/cgroup/{ctrl}/{cid}"):
            found.append(f"cgroup {ctrl}/{cid}")
    with open("/proc/self/mountinfo") as f:
        if cid in f.read():
            found.append("a mount")
    return found


def one_line_error(p: subprocess.CompletedProcess) -> str:
    err = p.stderr.decode().strip()
    assert p.returncode != 0
    assert err, "no error message"
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    return err


def create(budu, bundle_path: str) -> tuple[str, subprocess.CompletedProcess]:
    cid = budu.new_id()
    return cid, budu.cmd("create", "--bundle", bundle_path, cid)


def test_missing_bundle(budu, tmp_path):
    cid, p = create(budu, str(tmp_path / "nope"))
    assert "not a directory" in one_line_error(p)
    assert leftovers(budu, cid) == []


def test_missing_config(budu, tmp_path):
    cid, p = create(budu, str(tmp_path))
    assert "config.json" in one_line_error(p)


def test_invalid_json(budu, bundle):
    with open(os.path.join(bundle.path, "config.json"), "w") as f:
        f.write("{not json")
    cid, p = create(budu, bundle.path)
    assert "invalid JSON" in one_line_error(p)
    assert leftovers(budu, cid) == []


@pytest.mark.parametrize("mutate, field", [
    (lambda c: c["process"].update(args=[]), "process.args"),
    (lambda c: c["process"].update(cwd="relative"), "process.cwd"),
    (lambda c: c["root"].update(path="no-such-rootfs"), "root.path"),
    (lambda c: c.pop("ociVersion"), "ociVersion"),
    (lambda c: c["linux"]["namespaces"].append({"type": "bogus"}), "linux.namespaces[6].type"),
    (lambda c: c["process"]["capabilities"]["bounding"].append("CAP_BOGUS"), "process.capabilities.bounding[3]"),
    (lambda c: c["process"]["rlimits"].append({"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}), "process.rlimits[1].type"),
    (lambda c: c["mounts"].append({"destination": "relative/path", "type": "tmpfs"}), "mounts[7].destination"),
    (lambda c: c["linux"].update(seccomp={"defaultAction": "SCMP_ACT_BOGUS"}), "linux.seccomp.defaultAction"),
    (lambda c: c["process"]["user"].update(uid=-1), "process.user.uid"),
    (lambda c: c["linux"]["resources"].update(memory={"limit": "lots"}), "linux.resources.memory.limit"),
])
def test_invalid_field_is_named(budu, bundle, mutate, field):
    mutate(bundle.config)
    bundle.write()
    cid, p = create(budu, bundle.path)
    assert field in one_line_error(p)
    assert leftovers(budu, cid) == []


def test_invalid_id(budu, bundle):
    p = budu.cmd("create", "--bundle", bundle.path, "../escape")
    assert "invalid" in one_line_error(p)
    assert not os.path.exists(os.path.join(os.path.dirname(budu.root), "escape"))


def test_missing_executable(budu, bundle):
    bundle.args("/no/such/program")
    cid, p = create(budu, bundle.path)
    assert "/no/such/program" in one_line_error(p)
    assert leftovers(budu, cid) == []
    bundle.args("no-such-program")
    cid, p = create(budu, bundle.path)
    assert "executable file not found" in one_line_error(p)
    assert leftovers(budu, cid) == []


def test_missing_bind_source(budu, bundle, tmp_path):
    bundle.config["mounts"].append({"destination": "/x", "type": "bind", "source": str(tmp_path / "gone"),
                                    "options": ["bind"]})
    bundle.write()
    cid, p = create(budu, bundle.path)
    assert "does not exist" in one_line_error(p)
    assert leftovers(budu, cid) == []


def test_rlimit_above_hard_limit_explains_itself(budu, bundle):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": hard + 1, "hard": hard + 1}]
    bundle.write()
    cid, p = create(budu, bundle.path)
    err = one_line_error(p)
    if os.geteuid() == 0 and _has_cap_sys_resource():
        assert p.returncode == 0 or err
    else:
        assert "RLIMIT_NOFILE" in err and "CAP_SYS_RESOURCE" in err
    assert leftovers(budu, cid) == []


def _has_cap_sys_resource() -> bool:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << 24))
    return False


def test_failed_create_kills_its_process(budu, bundle, tmp_path):
    # fail late: in a prestart hook, after the init process exists
    bundle.config["hooks"] = {"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 9"]}]}
    bundle.write()
    cid, p = create(budu, bundle.path)
    assert "exited with status 9" in one_line_error(p)
    assert leftovers(budu, cid) == []
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert bundle.path not in out


def test_log_format_json(budu, tmp_path):
    log = tmp_path / "runtime.log"
    p = subprocess.run([budu.binary, "--root", budu.root, "--log", str(log), "--log-format", "json",
                        "state", "no-such"], capture_output=True)
    assert p.returncode != 0
    entry = json.loads(log.read_text().strip().splitlines()[-1])
    assert entry["level"] == "error" and "no-such" in entry["msg"] and entry["time"]


def test_unknown_flag_and_command(budu):
    assert "unknown flag --bogus" in one_line_error(budu.cmd("create", "--bogus", "x"))
    assert "unknown command" in one_line_error(budu.cmd("frobnicate"))


def test_delete_force_cleans_a_killed_create(budu, bundle):
    # a create killed half-way leaves a state directory without a state file: delete -f removes it
    cid = budu.new_id()
    os.makedirs(os.path.join(budu.root, cid))
    p = budu.cmd("delete", "-f", cid)
    assert p.returncode == 0
    assert not os.path.exists(os.path.join(budu.root, cid))
