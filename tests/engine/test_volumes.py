"""engine.volumes (named volumes, docker's local driver) and engine.mounts (planning a container's
mounts, copy-up), on a real database and real directories; tmpfs-option volumes really mount."""

from __future__ import annotations

import os
import re
import stat

import pytest

from budu.engine.mounts import copy_up, plan_mounts, public
from budu.engine.volumes import ANONYMOUS_LABEL, Volumes, _is_mountpoint
from budu.errors import ConfigError, NotFound, StateError
from budu.metadata import Database


def names(vols) -> list[str]:
    return [v.name for v in vols]


# -- volumes -------------------------------------------------------------------------------------


def test_create_get_inspect(volumes):
    v = volumes.create("data", labels={"a": "1"})
    assert v.mountpoint == os.path.join(volumes.root, "data", "_data") and os.path.isdir(v.mountpoint)
    assert volumes.get("data") == v
    i = v.inspect()
    assert i["Name"] == "data" and i["Driver"] == "local" and i["Scope"] == "local"
    assert i["Labels"] == {"a": "1"} and i["Options"] is None and i["Mountpoint"] == v.mountpoint
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", i["CreatedAt"])
    with pytest.raises(NotFound, match="no such volume: nope"):
        volumes.get("nope")


def test_create_is_idempotent_and_names_are_checked(volumes):
    v = volumes.create("same", labels={"first": "1"})
    with open(os.path.join(v.mountpoint, "f"), "w") as f:
        f.write("x")
    again = volumes.create("same", labels={"second": "2"})
    assert again == v and os.path.exists(os.path.join(v.mountpoint, "f"))
    anon = volumes.create()
    assert re.fullmatch(r"[0-9a-f]{64}", anon.name) and not anon.anonymous
    for bad in ("a", "-x", "a/b", "../x", "with space", ".hidden"):
        with pytest.raises(ConfigError, match="includes invalid characters for a local volume name"):
            volumes.create(bad)
    with pytest.raises(ConfigError, match='invalid option: "bogus"'):
        volumes.create("o1", options={"bogus": "1"})
    with pytest.raises(ConfigError, match='missing required option: "device"'):
        volumes.create("o2", options={"type": "tmpfs"})
    with pytest.raises(ConfigError, match="plugin"):
        volumes.create("o3", driver="nfs-plugin")


def test_list_filters(volumes):
    volumes.create("web-data", labels={"app": "web", "tier": "front"})
    volumes.create("db-data", labels={"app": "db"})
    anon = volumes.create(anonymous=True)
    assert names(volumes.list()) == sorted(["web-data", "db-data", anon.name])
    assert names(volumes.list({"name": ["web"]})) == ["web-data"]
    assert names(volumes.list({"name": ["^db-"]})) == ["db-data"]
    assert names(volumes.list({"label": ["app"]})) == ["db-data", "web-data"]
    assert names(volumes.list({"label": ["app=web", "tier=front"]})) == ["web-data"]
    assert names(volumes.list({"label": ["app=web", "tier=back"]})) == []
    assert names(volumes.list({"label": [ANONYMOUS_LABEL]})) == [anon.name]
    assert names(volumes.list({"driver": ["local"]})) == names(volumes.list())
    assert names(volumes.list({"dangling": ["true"]}, in_use={"web-data"})) == sorted(["db-data", anon.name])
    assert names(volumes.list({"dangling": ["false"]}, in_use={"web-data"})) == ["web-data"]
    with pytest.raises(ConfigError, match="invalid filter 'colour'"):
        volumes.list({"colour": ["red"]})
    with pytest.raises(ConfigError, match="invalid filter 'dangling=maybe'"):
        volumes.list({"dangling": ["maybe"]})
    assert anon.inspect()["Labels"] == {ANONYMOUS_LABEL: ""}


def test_remove(volumes):
    v = volumes.create("gone")
    volumes.remove("gone", in_use={"other"})
    assert not os.path.exists(os.path.dirname(v.mountpoint))
    with pytest.raises(NotFound):
        volumes.get("gone")
    with pytest.raises(NotFound):
        volumes.remove("gone")
    volumes.remove("gone", force=True)  # force: a missing volume is not an error
    volumes.create("busy")
    with pytest.raises(StateError, match=r"remove busy: volume is in use - \[c1, c2\]"):
        volumes.remove("busy", force=True, in_use={"busy": ["c2", "c1"]})
    with pytest.raises(StateError, match="remove busy: volume is in use"):
        volumes.remove("busy", in_use={"busy"})
    assert volumes.get("busy")


def test_prune_removes_unused_anonymous_volumes_only(volumes):
    named = volumes.create("keepme")
    a1 = volumes.create(anonymous=True)
    a2 = volumes.create(anonymous=True, labels={"x": "y"})
    a3 = volumes.create(anonymous=True)
    with open(os.path.join(a1.mountpoint, "blob"), "wb") as f:
        f.write(b"\0" * 5000)
    removed, reclaimed = volumes.prune(in_use={a3.name})
    assert sorted(removed) == sorted([a1.name, a2.name]) and reclaimed == 5000
    assert names(volumes.list()) == sorted([named.name, a3.name])
    removed, _ = volumes.prune(in_use={a3.name}, filters={"label!": ["keep"]}, all_volumes=True)
    assert removed == ["keepme"]
    assert names(volumes.list()) == [a3.name]


def test_crash_leftovers(volumes):
    # a directory without a row (a crash between mkdir and commit, or after the row went): prune
    # clears it, and a new volume of the same name starts empty
    orphan = os.path.join(volumes.root, "orphan", "_data")
    os.makedirs(orphan)
    with open(os.path.join(orphan, "old"), "w"):
        pass
    v = volumes.create("orphan")
    assert os.listdir(v.mountpoint) == []
    os.makedirs(os.path.join(volumes.root, "stray", "_data"))
    os.makedirs(os.path.join(volumes.root, ".trash", "half-deleted-1234", "_data"))
    volumes.prune(in_use=set())
    assert sorted(os.listdir(volumes.root)) == [".trash", "orphan"]
    assert os.listdir(os.path.join(volumes.root, ".trash")) == []


def test_state_is_shared_between_processes(tmp_path):
    root = str(tmp_path / "r")
    one, two = Volumes(root, Database(root)), Volumes(root, Database(root))
    one.create("shared")
    assert two.get("shared").name == "shared"
    two.remove("shared")
    assert one.list() == []


def test_tmpfs_option_volume_mounts_and_unmounts(volumes):
    v = volumes.create("scratch", options={"type": "tmpfs", "device": "tmpfs", "o": "size=1m,mode=0750,noexec"})
    assert v.inspect()["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m,mode=0750,noexec"}
    assert not _is_mountpoint(v.mountpoint)
    try:
        assert volumes.mount_source(v) == v.mountpoint
        assert volumes.mount_source(v) == v.mountpoint  # a second start finds it mounted
        with open("/proc/self/mountinfo") as f:
            lines = [line for line in f if f" {v.mountpoint} " in line]
        assert len(lines) == 1 and " - tmpfs tmpfs " in lines[0] and "noexec" in lines[0] and "size=1024k" in lines[0]
        assert stat.S_IMODE(os.stat(v.mountpoint).st_mode) == 0o750
    finally:
        volumes.unmount(v)
    assert not _is_mountpoint(v.mountpoint)
    volumes.unmount(v)  # not mounted: nothing to do
    volumes.mount_source(v)
    volumes.remove("scratch")  # remove unmounts first
    assert not os.path.exists(os.path.dirname(v.mountpoint))
    with open("/proc/self/mountinfo") as f:
        assert v.mountpoint not in f.read()


def test_plain_volume_is_never_mounted(volumes):
    v = volumes.create("plain")
    assert volumes.mount_source(v) == v.mountpoint and not _is_mountpoint(v.mountpoint)


# -- planning a container's mounts ---------------------------------------------------------------


def test_binds_as_docker_inspect_shows_them(volumes, tmp_path):
    host = tmp_path / "host"
    missing = tmp_path / "created-for-v"
    host.mkdir()
    mounts = plan_mounts({}, {"Binds": [f"{host}:/h:ro", f"{missing}:/m", "named:/n", "nc:/nc:ro,nocopy", "/anon"]},
                         {}, volumes)
    assert public(mounts) == [
        {"Type": "bind", "Source": str(host), "Destination": "/h", "Mode": "ro", "RW": False,
         "Propagation": "rprivate"},
        {"Type": "bind", "Source": str(missing), "Destination": "/m", "Mode": "", "RW": True,
         "Propagation": "rprivate"},
        {"Type": "volume", "Name": "named", "Source": volumes.get("named").mountpoint, "Destination": "/n",
         "Driver": "local", "Mode": "z", "RW": True, "Propagation": ""},
        {"Type": "volume", "Name": "nc", "Source": volumes.get("nc").mountpoint, "Destination": "/nc",
         "Driver": "local", "Mode": "ro,nocopy", "RW": False, "Propagation": ""},
        {"Type": "volume", "Name": mounts[4]["Name"], "Source": volumes.get(mounts[4]["Name"]).mountpoint,
         "Destination": "/anon", "Driver": "local", "Mode": "z", "RW": True, "Propagation": ""},
    ]
    assert missing.is_dir()  # docker creates a missing -v source
    assert mounts[2]["_copy_up"] and not mounts[3].get("_copy_up") and mounts[4]["_anonymous"]
    assert not volumes.get("named").anonymous and volumes.get(mounts[4]["Name"]).anonymous


def test_mounts_api(volumes, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    spec = {"Mounts": [
        {"Type": "bind", "Source": str(src), "Target": "/b", "ReadOnly": True, "BindOptions": {"NonRecursive": True}},
        {"Type": "volume", "Source": "mv", "Target": "/v", "VolumeOptions": {
            "NoCopy": True, "Labels": {"l": "1"},
            "DriverConfig": {"Name": "local", "Options": {"type": "tmpfs", "device": "tmpfs"}}}},
        {"Type": "volume", "Target": "/anon"},
        {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 3 << 20, "Mode": 0o1777,
                                                            "Options": [["exec"]]}},
    ]}
    m = plan_mounts({}, spec, {}, volumes)
    assert public(m)[0] == {"Type": "bind", "Source": str(src), "Destination": "/b", "Mode": "", "RW": False,
                            "Propagation": "rprivate"}
    assert m[0]["_nonrecursive"]
    assert public(m)[1]["Mode"] == "z" and "_copy_up" not in m[1] and "_create" not in m[1]
    assert volumes.get("mv").labels == {"l": "1"} and volumes.get("mv").options == {"type": "tmpfs", "device": "tmpfs"}
    assert m[2]["_anonymous"] and m[2]["_copy_up"] and volumes.get(m[2]["Name"]).anonymous
    assert public(m)[3] == {"Type": "tmpfs", "Source": "", "Destination": "/t", "Mode": "", "RW": True,
                            "Propagation": ""}
    assert m[3]["_tmpfs"] == "mode=1777,size=3m,exec"


@pytest.mark.parametrize("host_config, message", [
    ({"Mounts": [{"Type": "bind", "Source": "/no/such/dir", "Target": "/x"}]},
     'invalid mount config for type "bind": bind source path does not exist: /no/such/dir'),
    ({"Binds": ["v1:/x"], "Mounts": [{"Type": "volume", "Source": "v2", "Target": "/x/"}]},
     "Duplicate mount point: /x"),
    ({"Binds": ["v1:/x", "/tmp:/x"]}, "Duplicate mount point: /x"),
    ({"Binds": ["v1:/x"], "Tmpfs": {"/x": ""}}, "Duplicate mount point: /x"),
    ({"Binds": ["/tmp:rel"]}, "mount path must be absolute"),
    ({"Binds": ["/tmp:/"]}, "destination can't be '/'"),
    ({"Binds": ["/tmp:/x:rw,ro"]}, "invalid mode: rw,ro"),
    ({"Binds": ["/tmp:/x:bogus"]}, "invalid mode: bogus"),
    ({"Binds": ["/a:/b:ro:extra"]}, "invalid volume specification"),
    ({"Binds": ["/foo:rw"]}, "invalid volume specification: '/foo:rw'"),
    ({"Binds": ["./rel:/x"]}, "includes invalid characters for a local volume name"),
    ({"Binds": ["vol:/x:shared"]}, "field BindOptions must not be specified"),
    ({"Mounts": [{"Type": "volume", "Target": "/x", "ReadOnly": True}]},
     "must not set ReadOnly mode when using anonymous volumes"),
    ({"Mounts": [{"Type": "tmpfs", "Source": "x", "Target": "/x"}]}, "field Source must not be specified"),
    ({"Mounts": [{"Type": "weird", "Target": "/x"}]}, "mount type unknown"),
    ({"Mounts": [{"Type": "bind", "Source": "/tmp", "Target": "/x", "BindOptions": {"Propagation": "odd"}}]},
     "invalid propagation mode: odd"),
])
def test_plan_errors_create_nothing(volumes, host_config, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        plan_mounts({}, host_config, {}, volumes)
    assert volumes.list() == []


def test_declared_volumes_become_anonymous_volumes_unless_covered(volumes, tmp_path):
    m = plan_mounts({"Volumes": {"/data": {}, "/covered": {}, "/tmpfs": {}}},
                    {"Binds": [f"{tmp_path}:/covered"], "Tmpfs": {"/tmpfs": ""}},
                    {"Volumes": {"/var/lib/db": {}, "/data/": {}}}, volumes)
    anon = [x for x in m if x.get("_anonymous")]
    assert [x["Destination"] for x in anon] == ["/data", "/var/lib/db"]
    assert all(x["Mode"] == "" and x["RW"] and x["_copy_up"] for x in anon)
    assert len(volumes.list({"label": [ANONYMOUS_LABEL]})) == 2


def test_copy_up_fills_an_empty_volume_once(volumes, tmp_path):
    rootfs = tmp_path / "rootfs"
    src = rootfs / "var" / "lib" / "app"
    (src / "sub").mkdir(parents=True)
    (src / "file").write_text("image data")
    os.chmod(src / "file", 0o640)
    os.chown(src / "file", 1234, 5678)
    os.link(src / "file", src / "hardlink")
    os.symlink("file", src / "link")
    os.mkfifo(src / "fifo")
    os.chmod(src, 0o750)
    os.chown(src, 42, 43)
    os.utime(src / "file", (1_000_000, 1_000_000))
    os.symlink("/var/lib/app", rootfs / "applink")  # absolute: resolved inside the rootfs
    v = volumes.create("cu")
    assert copy_up(v.mountpoint, str(rootfs), "/applink")
    d = v.mountpoint
    assert sorted(os.listdir(d)) == ["fifo", "file", "hardlink", "link", "sub"]
    st = os.lstat(os.path.join(d, "file"))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), int(st.st_mtime)) == (1234, 5678, 0o640, 1_000_000)
    assert st.st_ino == os.lstat(os.path.join(d, "hardlink")).st_ino
    assert os.readlink(os.path.join(d, "link")) == "file" and stat.S_ISFIFO(os.lstat(os.path.join(d, "fifo")).st_mode)
    root = os.stat(d)
    assert (root.st_uid, root.st_gid, stat.S_IMODE(root.st_mode)) == (42, 43, 0o750)
    (src / "later").write_text("x")
    assert not copy_up(v.mountpoint, str(rootfs), "/var/lib/app")  # not empty any more
    assert not copy_up(volumes.create("cu2").mountpoint, str(rootfs), "/nothing/here")


def test_failed_plan_removes_the_anonymous_volumes_it_made(volumes, monkeypatch):
    real = volumes.create
    calls = []

    def flaky(name=None, **kw):
        calls.append(name)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(name, **kw)

    monkeypatch.setattr(volumes, "create", flaky)
    with pytest.raises(OSError):
        plan_mounts({"Volumes": {"/a": {}, "/b": {}}}, {}, {}, volumes)
    assert volumes.list() == []
