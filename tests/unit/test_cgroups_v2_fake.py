"""cgroup v2 logic of budu.runtime.cgroups on a fake cgroupfs (a plain directory tree).

The fake root has the files cgroup2 would have (cgroup.controllers, cgroup.subtree_control) and a
fake mountinfo whose cgroup2 line points at it, so the same code path as on a real v2 host runs.
The expected file contents are what runc writes for the same OCI resources.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess

import pytest

from budu.errors import ConfigError, KernelError
from budu.runtime import cgroups
from budu.runtime.cgroups import Cgroup, detect_mode, resolve_path

MiB = 1024 * 1024

HYBRID_MOUNTINFO = """\
22 28 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
"""

V2_MOUNTINFO = """\
22 28 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw
29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""

V1_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
"""

CONTROLLERS = "cpuset cpu io memory hugetlb pids rdma misc"


def write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def fake(tmp_path):
    """A fake cgroup2 root plus a mountinfo that mounts it; returns (root, mountinfo path)."""
    root = tmp_path / "cgroup"
    root.mkdir()
    write(root / "cgroup.controllers", CONTROLLERS + "\n")
    write(root / "cgroup.subtree_control", "")
    write(root / "cgroup.procs", "1\n")
    mountinfo = write(
        tmp_path / "mountinfo",
        "22 28 0:21 / /proc rw,nosuid - proc proc rw\n"
        f"29 23 0:26 / {root} rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
    )
    return root, str(mountinfo)


def cg_for(fake, path="/budu/c1"):
    root, mountinfo = fake
    return Cgroup(path, root=str(root), mountinfo=mountinfo)


def read(root, rel):
    return (root / rel.lstrip("/")).read_text()


@pytest.fixture
def fake_v1(tmp_path):
    """Cgroup factory on fake v1 hierarchies (plain directories under tmp_path/v1)."""
    lines = []
    for i, ctrl in enumerate(("cpu,cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids")):
        mnt = tmp_path / "v1" / ctrl
        mnt.mkdir(parents=True)
        lines.append(f"{40 + i} 31 0:{40 + i} / {mnt} rw,relatime - cgroup cgroup rw,{ctrl}\n")
    write(tmp_path / "v1" / "cpuset" / "cpuset.cpus", "0-3\n")
    write(tmp_path / "v1" / "cpuset" / "cpuset.mems", "0\n")
    mi = write(tmp_path / "mountinfo-v1", "".join(lines))

    def make(path):
        return Cgroup(path, mountinfo=str(mi))

    return make


# ----------------------------------------------------------------------------- detect_mode


@pytest.mark.parametrize(
    "text, mode",
    [(V2_MOUNTINFO, "v2"), (HYBRID_MOUNTINFO, "hybrid"), (V1_MOUNTINFO, "v1")],
)
def test_detect_mode(tmp_path, text, mode):
    assert detect_mode(str(write(tmp_path / "mi", text))) == mode


def test_detect_mode_fake_root(fake):
    root, mountinfo = fake
    assert detect_mode(mountinfo, root=str(root)) == "v2"
    assert cg_for(fake).mode == "v2"


def test_detect_mode_no_cgroups(tmp_path):
    mi = write(tmp_path / "mi", "22 28 0:21 / /proc rw - proc proc rw\n")
    with pytest.raises(KernelError, match="no cgroup filesystem"):
        detect_mode(str(mi))


def test_detect_mode_escaped_mount_point(tmp_path):
    root = tmp_path / "my cgroup"
    root.mkdir()
    mi = write(tmp_path / "mi", f"29 23 0:26 / {str(root).replace(' ', chr(92) + '040')} rw - cgroup2 none rw\n")
    assert detect_mode(str(mi), root=str(root)) == "v2"


def test_cgroup_v1_paths_follow_mountinfo(tmp_path):
    mi = write(tmp_path / "mi", HYBRID_MOUNTINFO)
    cg = Cgroup("/x/y", mountinfo=str(mi))
    assert cg.mode == "hybrid"
    assert cg.paths == {
        "cpu": "/sys/fs/cgroup/cpu,cpuacct/x/y",
        "cpuacct": "/sys/fs/cgroup/cpu,cpuacct/x/y",
        "cpuset": "/sys/fs/cgroup/cpuset/x/y",
        "memory": "/sys/fs/cgroup/memory/x/y",
        "pids": "/sys/fs/cgroup/pids/x/y",
        "name=systemd": "/sys/fs/cgroup/systemd/x/y",
        "": "/sys/fs/cgroup/unified/x/y",
    }


# ----------------------------------------------------------------------------- resolve_path


@pytest.fixture
def proc_cgroup(tmp_path):
    def make(text):
        return str(write(tmp_path / "proc-cgroup", text))

    return make


@pytest.mark.parametrize(
    "spec, systemd, expected",
    [
        (None, False, "/abc"),
        ("", True, "/abc"),
        ("/abs/path", False, "/abs/path"),
        ("/abs/../other//x/", False, "/other/x"),
        ("/../../escape", False, "/escape"),
        ("machine.slice:libpod:abc", True, "/machine.slice/libpod-abc.scope"),
        ("system.slice:containerd:abc", True, "/system.slice/containerd-abc.scope"),
        (":runc:abc", True, "/system.slice/runc-abc.scope"),
        (
            "kubepods-besteffort-pod12.slice:cri-containerd:abc",
            True,
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-abc.scope",
        ),
        ("user-1000.slice:podman:abc", True, "/user.slice/user-1000.slice/podman-abc.scope"),
        ("-.slice:budu:abc", True, "/budu-abc.scope"),
        ("machine.slice::machine-abc.slice", True, "/machine.slice/machine-abc.slice"),
        # not the slice:prefix:name form: a plain path even with systemd=True
        ("/plain/path", True, "/plain/path"),
        ("/a:b:c", True, "/a:b:c"),
    ],
)
def test_resolve_path(spec, systemd, expected):
    assert resolve_path(spec, "abc", systemd) == expected


def test_resolve_path_relative_v2(proc_cgroup):
    pc = proc_cgroup("0::/user.slice/user-0.slice/session-1.scope\n")
    assert resolve_path("budu/abc", "abc", False, proc_cgroup=pc) == "/user.slice/user-0.slice/session-1.scope/budu/abc"
    # systemd form not requested: "machine.slice:libpod:abc" is just a relative name
    assert resolve_path("m.slice:p:n", "abc", False, proc_cgroup=pc) == "/user.slice/user-0.slice/session-1.scope/m.slice:p:n"


def test_resolve_path_relative_hybrid_uses_systemd_hierarchy(proc_cgroup):
    pc = proc_cgroup("4:memory:/mem\n1:name=systemd:/system.slice/x.service\n0::/system.slice/x.service\n")
    assert resolve_path("sub", "abc", False, proc_cgroup=pc) == "/system.slice/x.service/sub"


@pytest.mark.parametrize("spec", ["a--b.slice:p:n", "-a.slice:p:n", "a-.slice:p:n", "machine.slice:p:", "m.slice:a/b:n"])
def test_resolve_path_bad_systemd_form(spec):
    with pytest.raises(ConfigError):
        resolve_path(spec, "abc", True)


@pytest.mark.parametrize("spec", ["/", "/a/..", "//"])
def test_resolve_path_refuses_root(spec):
    with pytest.raises(ConfigError, match="cgroup root"):
        resolve_path(spec, "abc", False)


def test_relative_path_resolved_against_own_cgroup(fake, proc_cgroup, monkeypatch):
    monkeypatch.setattr(cgroups, "PROC_SELF_CGROUP", proc_cgroup("0::/parent\n"))
    root, _ = fake
    assert cg_for(fake, "child").paths == {"": f"{root}/parent/child"}


# ----------------------------------------------------------------------------- create / update

FULL = {
    "memory": {"limit": 64 * MiB, "reservation": 32 * MiB, "swap": 128 * MiB, "kernel": 1, "swappiness": 60},
    "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
    "pids": {"limit": 100},
    "blockIO": {
        "weight": 500,
        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
        "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 0}],
    },
    "hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MiB}],
    "devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}],
    "unified": {"memory.high": "50000000", "cgroup.max.descendants": "10"},
}


def test_create_full_resources(fake):
    root, _ = fake
    cg = cg_for(fake)
    cg.create(FULL)
    leaf = root / "budu" / "c1"
    assert leaf.is_dir()
    # Every ancestor enables the needed controllers it has (cgroup.controllers order); "budu" had
    # no cgroup.controllers file, so it gets what its parent enabled.
    assert read(root, "cgroup.subtree_control") == "+cpuset +cpu +io +memory +hugetlb +pids"
    assert read(root, "budu/cgroup.subtree_control") == "+cpuset +cpu +io +memory +hugetlb +pids"
    assert not (leaf / "cgroup.subtree_control").exists()
    expected = {
        "memory.max": str(64 * MiB),
        "memory.low": str(32 * MiB),
        "memory.swap.max": str(64 * MiB),  # swap is memory+swap in OCI, swap alone in v2
        "cpu.weight": "39",  # 1 + (1024-2)*9999/262142
        "cpu.max": "50000 100000",
        "cpuset.cpus": "0-1",
        "cpuset.mems": "0",
        "pids.max": "100",
        "io.weight": "4950",  # 1 + (500-10)*9999/990
        "io.max": "8:0 rbps=1048576",  # zero rates are skipped
        "hugetlb.2MB.max": str(4 * MiB),
        "memory.high": "50000000",
        "cgroup.max.descendants": "10",
    }
    for name, value in expected.items():
        assert (leaf / name).read_text() == value, name
    # v1-only knobs have no v2 file
    for name in ("memory.swappiness", "memory.kmem.limit_in_bytes", "devices.allow", "cpu.idle"):
        assert not (leaf / name).exists()
    # devices are kept for the eBPF program, not written
    assert cg.devices == FULL["devices"]
    assert cg.exists()


def test_create_only_enables_available_controllers(fake):
    root, _ = fake
    (root / "parent").mkdir()
    write(root / "parent" / "cgroup.controllers", "cpu memory pids\n")
    write(root / "parent" / "cgroup.subtree_control", "cpu\n")
    cg_for(fake, "/parent/c").create({"pids": {"limit": 5}})
    assert read(root, "cgroup.subtree_control") == "+cpuset +cpu +io +memory +pids"
    # cpu already enabled: only the missing ones are written
    assert read(root, "parent/cgroup.subtree_control") == "+memory +pids"
    assert read(root, "parent/c/pids.max") == "5"


def test_create_enables_unified_controllers(fake):
    root, _ = fake
    cg_for(fake, "/c").create({"unified": {"misc.max": "res_a 1"}})
    assert read(root, "cgroup.subtree_control") == "+cpuset +cpu +io +memory +pids +misc"
    assert read(root, "c/misc.max") == "res_a 1"


def test_create_is_idempotent(fake):
    root, _ = fake
    cg = cg_for(fake)
    cg.create({"pids": {"limit": 7}})
    cg.create({"pids": {"limit": 8}})
    assert read(root, "budu/c1/pids.max") == "8"


def test_create_without_resources(fake):
    root, _ = fake
    cg_for(fake).create(None)
    assert (root / "budu" / "c1").is_dir()
    assert sorted(p.name for p in (root / "budu" / "c1").iterdir()) == []


@pytest.mark.parametrize(
    "memory, files",
    [
        ({"limit": 100, "swap": -1}, {"memory.max": "100", "memory.swap.max": "max"}),
        ({"limit": 100, "swap": 100}, {"memory.max": "100", "memory.swap.max": "0"}),
        ({"limit": 100, "swap": 250}, {"memory.max": "100", "memory.swap.max": "150"}),
        ({"limit": -1}, {"memory.max": "max", "memory.swap.max": "max"}),
        ({"limit": 100}, {"memory.max": "100", "memory.swap.max": None}),
        ({"reservation": -1}, {"memory.low": "max", "memory.max": None}),
    ],
)
def test_memory_v2_translation(fake, memory, files):
    root, _ = fake
    cg_for(fake, "/c").create({"memory": memory})
    for name, value in files.items():
        path = root / "c" / name
        assert (path.read_text() if path.exists() else None) == value, name


@pytest.mark.parametrize(
    "memory, message",
    [({"swap": 100}, "needs a memory.limit"), ({"limit": 200, "swap": 100}, "must be >= memory.limit")],
)
def test_memory_v2_invalid_swap(fake, memory, message):
    with pytest.raises(ConfigError, match=message):
        cg_for(fake, "/c").create({"memory": memory})


@pytest.mark.parametrize(
    "cpu, files",
    [
        ({"quota": -1, "period": 100000}, {"cpu.max": "max 100000"}),
        ({"period": 50000}, {"cpu.max": "max 50000"}),
        ({"quota": 20000}, {"cpu.max": "20000 100000"}),
        ({"shares": 2}, {"cpu.weight": "1", "cpu.max": None}),
        ({"shares": 262144}, {"cpu.weight": "10000"}),
        ({"shares": 512, "idle": 1}, {"cpu.idle": "1", "cpu.weight": None}),
        ({"shares": 512, "idle": 0}, {"cpu.idle": "0", "cpu.weight": "20"}),
        ({"quota": 20000, "burst": 1000}, {"cpu.max": "20000 100000", "cpu.max.burst": "1000"}),
    ],
)
def test_cpu_v2_translation(fake, cpu, files):
    root, _ = fake
    cg_for(fake, "/c").create({"cpu": cpu})
    for name, value in files.items():
        path = root / "c" / name
        assert (path.read_text() if path.exists() else None) == value, name


def test_cpu_v2_realtime_refused(fake):
    with pytest.raises(ConfigError, match="realtime"):
        cg_for(fake, "/c").create({"cpu": {"realtimeRuntime": 950000}})


def test_weight_formulas():
    assert cgroups.shares_to_weight(2) == 1
    assert cgroups.shares_to_weight(1024) == 39
    assert cgroups.shares_to_weight(262144) == 10000
    assert cgroups.blkio_to_io_weight(10) == 1
    assert cgroups.blkio_to_io_weight(500) == 4950
    assert cgroups.blkio_to_io_weight(1000) == 10000


@pytest.mark.parametrize("limit, value", [(-1, "max"), (0, None), (42, "42")])
def test_pids_v2(fake, limit, value):
    root, _ = fake
    cg_for(fake, "/c").create({"pids": {"limit": limit}})
    path = root / "c" / "pids.max"
    assert (path.read_text() if path.exists() else None) == value


def test_io_v2_prefers_bfq(fake):
    root, _ = fake
    cg = cg_for(fake, "/c")
    cg.create(None)
    write(root / "c" / "io.bfq.weight", "default 100\n")
    cg.update({"blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 300}]}})
    # weight goes to BFQ unconverted, then the per-device weight (last write wins in the fake)
    assert read(root, "c/io.bfq.weight") == "8:0 300"
    assert not (root / "c" / "io.weight").exists()


def test_unified_bad_keys(fake):
    cg = cg_for(fake, "/c")
    with pytest.raises(ConfigError, match="file name"):
        cg.create({"unified": {"../escape": "1"}})


def test_unified_on_v1_refused(fake_v1):
    cg = fake_v1("/c")
    assert cg.mode == "v1"
    with pytest.raises(ConfigError, match="needs cgroup v2"):
        cg.create({"unified": {"memory.high": "1"}})
    cg.create({"unified": {}})  # empty is fine


def test_write_error_names_file_and_value(fake):
    root, _ = fake
    cg = cg_for(fake, "/c")
    cg.create(None)
    (root / "c" / "memory.max").mkdir()  # writing it now fails (EISDIR)
    with pytest.raises(KernelError) as info:
        cg.update({"memory": {"limit": 1024}})
    assert str(info.value) == "cgroup: cannot set memory.max to 1024: Is a directory"


def test_invalid_hugepage_size(fake):
    with pytest.raises(ConfigError, match="pageSize"):
        cg_for(fake, "/c").create({"hugepageLimits": [{"pageSize": "2XB", "limit": 1}]})


# ----------------------------------------------------------------------------- v1 write order


@pytest.fixture
def writes(monkeypatch):
    """Record every control-file write as (file name, value) in order."""
    log = []
    real = cgroups._write

    def recording(path, value):
        log.append((path.rsplit("/", 1)[1], value))
        real(path, value)

    monkeypatch.setattr(cgroups, "_write", recording)
    return log


def test_v1_create_dirs_and_cpuset_copy(fake_v1, tmp_path, writes):
    cpuset = tmp_path / "v1" / "cpuset"
    (cpuset / "a" / "b").mkdir(parents=True)
    write(cpuset / "a" / "cpuset.cpus", "")  # a cgroup budu did not make: never touched
    write(cpuset / "a" / "cpuset.mems", "")
    write(cpuset / "a" / "b" / "cpuset.cpus", "\n")  # the container's own, still empty
    write(cpuset / "a" / "b" / "cpuset.mems", "\n")
    write(cpuset / "cpuset.cpus", "0-3\n")
    cg = fake_v1("/a/b")
    cg.create({"cpu": {"mems": "0"}})
    for ctrl in ("cpu,cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"):
        assert (tmp_path / "v1" / ctrl / "a" / "b").is_dir()
    # "a" has no cpus to copy and budu never fills a parent it did not make; the requested mems
    # are written by update, not copied
    assert (cpuset / "a" / "cpuset.cpus").read_text() == ""
    assert writes == [("cpuset.mems", "0")]
    cg.destroy()
    assert not cg.exists()
    assert (cpuset / "a").is_dir()


def test_v1_cpuset_copy_into_new_dirs(fake_v1, tmp_path, writes, monkeypatch):
    cpuset = tmp_path / "v1" / "cpuset"
    write(cpuset / "cpuset.cpus", "0-3\n")
    write(cpuset / "cpuset.mems", "0\n")
    real_mkdir = os.mkdir

    def mkdir_with_files(path, mode=0o777):
        # a new v1 cpuset cgroup starts with empty cpuset.cpus / cpuset.mems
        real_mkdir(path, mode)
        if str(path).startswith(str(cpuset)):
            write(pathlib.Path(path) / "cpuset.cpus", "\n")
            write(pathlib.Path(path) / "cpuset.mems", "\n")

    monkeypatch.setattr(os, "mkdir", mkdir_with_files)
    fake_v1("/x/y").create({"cpu": {"cpus": "1"}})
    monkeypatch.undo()
    assert (cpuset / "x" / "cpuset.cpus").read_text() == "0-3"
    assert (cpuset / "x" / "cpuset.mems").read_text() == "0"
    assert (cpuset / "x" / "y" / "cpuset.cpus").read_text() == "1"
    assert (cpuset / "x" / "y" / "cpuset.mems").read_text() == "0"
    assert writes == [
        ("cpuset.cpus", "0-3"),
        ("cpuset.mems", "0"),
        ("cpuset.mems", "0"),
        ("cpuset.cpus", "1"),
    ]


def test_v1_memory_swap_order(fake_v1, tmp_path, writes):
    cg = fake_v1("/c")
    cg.create(None)
    mem = tmp_path / "v1" / "memory" / "c"
    write(mem / "memory.memsw.limit_in_bytes", "9223372036854771712\n")
    write(mem / "memory.limit_in_bytes", "9223372036854771712\n")
    writes.clear()
    cg.update({"memory": {"limit": 100, "swap": 200}})  # lowering from unlimited: memory first
    write(mem / "memory.limit_in_bytes", "100\n")
    cg.update({"memory": {"limit": 300, "swap": 600}})  # raising: memsw first
    cg.update({"memory": {"limit": -1}})  # unlimited memory: unlimited memsw too, memsw first
    assert writes == [
        ("memory.limit_in_bytes", "100"),
        ("memory.memsw.limit_in_bytes", "200"),
        ("memory.memsw.limit_in_bytes", "600"),
        ("memory.limit_in_bytes", "300"),
        ("memory.memsw.limit_in_bytes", "-1"),
        ("memory.limit_in_bytes", "-1"),
    ]


def test_v1_swap_skipped_without_memsw(fake_v1, writes):
    cg = fake_v1("/c")
    cg.create(None)
    writes.clear()
    cg.update({"memory": {"limit": 100, "swap": 200, "reservation": 50, "swappiness": 10, "disableOOMKiller": True}})
    assert writes == [
        ("memory.limit_in_bytes", "100"),
        ("memory.soft_limit_in_bytes", "50"),
        ("memory.oom_control", "1"),
        ("memory.swappiness", "10"),
    ]
    with pytest.raises(ConfigError, match="swappiness"):
        cg.update({"memory": {"swappiness": 101}})


def test_v1_devices_deny_all_then_rules_in_order(fake_v1, writes):
    cg = fake_v1("/c")
    cg.create(None)
    writes.clear()
    cg.update(
        {
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                {"allow": True, "type": "c", "major": 136, "access": "rwm"},
                {"allow": False, "type": "b", "major": 8, "minor": -1},
            ]
        }
    )
    assert writes == [
        ("devices.deny", "a"),
        ("devices.deny", "a *:* rwm"),
        ("devices.allow", "c 1:3 rwm"),
        ("devices.allow", "c 136:* rwm"),
        ("devices.deny", "b 8:* rwm"),
    ]


@pytest.mark.parametrize("dev", [{"allow": True, "type": "x"}, {"allow": True, "access": "rwx"}])
def test_v1_invalid_device_rule(fake_v1, writes, dev):
    cg = fake_v1("/c")
    cg.create(None)
    writes.clear()
    with pytest.raises(ConfigError, match="devices"):
        cg.update({"devices": [dev]})
    assert writes == []  # validated before deny-all, so a bad rule never locks the container out


def test_v1_cpu_and_blkio_files(fake_v1, tmp_path, writes):
    cg = fake_v1("/c")
    cg.create(None)
    write(tmp_path / "v1" / "blkio" / "c" / "blkio.bfq.weight", "100\n")
    writes.clear()
    cg.update(
        {
            "cpu": {"shares": 512, "quota": 20000, "period": 50000, "realtimeRuntime": 1000, "realtimePeriod": 10000},
            "pids": {"limit": -1},
            "blockIO": {
                "weight": 300,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 200}],
                "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 0}],
            },
        }
    )
    assert writes == [
        ("cpu.shares", "512"),
        ("cpu.cfs_period_us", "50000"),
        ("cpu.cfs_quota_us", "20000"),
        ("cpu.rt_period_us", "10000"),
        ("cpu.rt_runtime_us", "1000"),
        ("pids.max", "max"),
        ("blkio.bfq.weight", "300"),
        ("blkio.bfq.weight_device", "8:0 200"),
        ("blkio.throttle.write_bps_device", "8:0 0"),
    ]


# ----------------------------------------------------------------------------- processes


def test_add_and_pids(fake):
    root, _ = fake
    cg = cg_for(fake)
    cg.create(None)
    cg.add(1234)
    assert read(root, "budu/c1/cgroup.procs") == "1234"
    (root / "budu" / "c1" / "nested").mkdir()
    write(root / "budu" / "c1" / "nested" / "cgroup.procs", "5678\n1234\n")
    assert cg.pids() == [1234, 5678]


def test_add_to_missing_cgroup(fake):
    with pytest.raises(KernelError, match="does not exist"):
        cg_for(fake).add(1)


def test_freeze_thaw(fake):
    root, _ = fake
    cg = cg_for(fake)
    cg.create(None)
    leaf = root / "budu" / "c1"
    write(leaf / "cgroup.events", "populated 1\nfrozen 1\n")
    cg.freeze()
    assert read(root, "budu/c1/cgroup.freeze") == "1"
    assert cg.frozen()
    cg.thaw()
    assert read(root, "budu/c1/cgroup.freeze") == "0"
    assert not cg.frozen()


def test_freeze_timeout_thaws_back(fake):
    root, _ = fake
    cg = cg_for(fake)
    cg.create(None)
    write(root / "budu" / "c1" / "cgroup.events", "populated 1\nfrozen 0\n")
    cg.freeze_timeout = 0.05
    with pytest.raises(KernelError, match="not frozen after"):
        cg.freeze()
    assert read(root, "budu/c1/cgroup.freeze") == "0"
    assert not cg.frozen()


def test_kill_all_uses_cgroup_kill(fake):
    root, _ = fake
    cg = cg_for(fake)
    cg.create(None)
    write(root / "budu" / "c1" / "cgroup.kill", "")
    cg.kill_all(signal.SIGKILL)
    assert read(root, "budu/c1/cgroup.kill") == "1"


def test_kill_all_signals_listed_pids(fake):
    root, _ = fake
    cg = cg_for(fake)
    cg.create(None)
    proc = subprocess.Popen(["sleep", "60"])
    try:
        write(root / "budu" / "c1" / "cgroup.procs", f"{proc.pid}\n999999999\n")  # a gone pid is fine
        cg.kill_all(signal.SIGTERM)
        assert proc.wait(timeout=10) == -signal.SIGTERM
        assert not (root / "budu" / "c1" / "cgroup.freeze").exists()  # no freeze for SIGTERM
    finally:
        proc.kill()
        proc.wait()


def test_stats(fake):
    root, _ = fake
    cg = cg_for(fake)
    cg.create(None)
    leaf = root / "budu" / "c1"
    write(leaf / "memory.current", "4096\n")
    write(leaf / "memory.max", "max\n")
    write(leaf / "memory.peak", "8192\n")
    write(leaf / "cpu.stat", "usage_usec 150\nuser_usec 100\nsystem_usec 50\n")
    write(leaf / "pids.current", "3\n")
    write(leaf / "pids.max", "100\n")
    assert cg.stats() == {
        "memory": {"usage": 4096, "limit": None, "max_usage": 8192},
        "cpu": {"usage_ns": 150000},
        "pids": {"current": 3, "limit": 100},
    }


def test_stats_missing_files(fake):
    cg = cg_for(fake)
    cg.create(None)
    assert cg.stats() == {
        "memory": {"usage": 0, "limit": None, "max_usage": None},
        "cpu": {"usage_ns": 0},
        "pids": {"current": 0, "limit": None},
    }


def test_destroy(fake):
    root, _ = fake
    cg = cg_for(fake)
    cg.create(FULL)
    (root / "budu" / "c1" / "nested" / "deeper").mkdir(parents=True)
    write(root / "budu" / "c1" / "nested" / "cgroup.procs", "")
    cg.destroy()
    assert not (root / "budu" / "c1").exists()
    assert not cg.exists()
    # parents are left alone (other containers may live there), the root is untouched
    assert (root / "budu").is_dir()
    assert read(root, "cgroup.procs") == "1\n"
    cg.destroy()  # idempotent


def test_constructor_refuses_root(fake):
    with pytest.raises(ConfigError, match="cgroup root"):
        cg_for(fake, "/")
