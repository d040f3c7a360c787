"""budu-runtime on pure cgroup v2 and pure v1 layouts (the host itself is hybrid).

This host is hybrid (v1 controllers, cgroup2 at /sys/fs/cgroup/unified).  In a private mount
namespace the v1 hierarchies are unmounted and the one cgroup2 hierarchy is mounted at
/sys/fs/cgroup, which is what a pure-v2 host looks like (without controllers, which stay bound to
v1 here).  The host's mounts are untouched; the cgroups made are budu's own and are removed.
"""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

SETUP = ("set -e; umount -R /sys/fs/cgroup; mount -t cgroup2 cgroup2 /sys/fs/cgroup; "
         'exec "$@"')


def in_v2(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", SETUP, "sh", *cmd],
                          capture_output=True, timeout=timeout)


@pytest.fixture
def v2_root(tmp_path):
    root = str(tmp_path / "v2-root")
    yield root
    # whatever a failed test left: delete it from the same v2 view
    if os.path.isdir(root):
        for cid in os.listdir(root):
            in_v2("budu-runtime", "--root", root, "delete", "-f", cid)


def test_detects_v2_and_runs_a_container(v2_root, bundle):
    p = in_v2("/opt/budu/venv/bin/python", "-c",
              "from budu.runtime import cgroups; print(cgroups.detect_mode())")
    assert p.stdout.decode().strip() == "v2", p.stderr.decode()
    cgpath = f"/budu-v2-test-{uuid.uuid4().hex[:8]}"
    bundle.config["linux"]["cgroupsPath"] = cgpath
    bundle.sh("grep '^0::' /proc/self/cgroup; grep ' /sys/fs/cgroup ' /proc/mounts | cut -d' ' -f3")
    cid = f"v2-{uuid.uuid4().hex[:8]}"
    p = in_v2("budu-runtime", "--root", v2_root, "run", "-b", bundle.path, cid)
    assert p.returncode == 0, p.stderr.decode()
    # the container at the root of its cgroup namespace, /sys/fs/cgroup a cgroup2 mount
    # (/proc/self/cgroup still lists the kernel's v1 hierarchies, mounted or not)
    assert p.stdout.decode().split() == ["0::/", "cgroup2"]
    assert not os.path.exists(f"/sys/fs/cgroup/unified{cgpath}")


def test_pause_resume_and_kill_on_v2(v2_root, bundle):
    cgpath = f"/budu-v2-test-{uuid.uuid4().hex[:8]}"
    bundle.config["linux"]["cgroupsPath"] = cgpath
    bundle.sh("sleep 30 & sleep 30")
    cid = f"v2-{uuid.uuid4().hex[:8]}"
    script = (f"budu-runtime --root {v2_root} run -d -b {bundle.path} {cid} && sleep 0.2 && "
              f"budu-runtime --root {v2_root} pause {cid} && "
              f"budu-runtime --root {v2_root} state {cid} | grep -o '\"status\": \"[a-z]*\"' && "
              f"cat /sys/fs/cgroup{cgpath}/cgroup.freeze && "
              f"budu-runtime --root {v2_root} resume {cid} && "
              f"budu-runtime --root {v2_root} state {cid} | grep -o '\"status\": \"[a-z]*\"' && "
              f"budu-runtime --root {v2_root} ps --format json {cid} && "
              f"budu-runtime --root {v2_root} delete -f {cid} && "
              f"test ! -e /sys/fs/cgroup{cgpath} && echo cgroup-removed")
    p = in_v2("sh", "-c", script)
    out = p.stdout.decode().split("\n")
    assert p.returncode == 0, p.stderr.decode() + p.stdout.decode()
    assert out[0] == '"status": "paused"'
    assert out[1] == "1"
    assert out[2] == '"status": "running"'
    assert len(out[3].strip("[]").split(",")) == 2
    assert out[4] == "cgroup-removed"


def test_pure_v1(tmp_path, bundle):
    """Without the cgroup2 mount this host is pure v1: limits still apply, nothing is left."""
    root = str(tmp_path / "v1-root")
    cid = f"v1-{uuid.uuid4().hex[:8]}"
    bundle.config["linux"]["resources"]["pids"] = {"limit": 33}
    bundle.sh("cat /sys/fs/cgroup/pids/pids.max; ls /sys/fs/cgroup | grep -c unified || true")
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                        'umount /sys/fs/cgroup/unified && exec "$@"', "sh",
                        "budu-runtime", "--root", root, "run", "-b", bundle.path, cid],
                       capture_output=True, timeout=60)
    assert p.returncode == 0 and p.stdout.decode().split() == ["33", "0"], p.stderr.decode()
    assert not os.path.exists(f"/sys/fs/cgroup/pids/{cid}")
