"""cp, diff, export and commit on a real engine: a tmp root with the bootstrapped busybox image,
containers created (not started: their files are read and written through the mounted overlay
and the upper directory), every mount checked gone at the end."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import tarfile

import pytest
from budutest import make_busybox_rootfs

from budu.engine import fsops
from budu.engine.engine import Engine
from budu.errors import BuduError, ConfigError, NotFound
from budu.images.bootstrap import bootstrap_busybox

HOST_SECRET = b"HOST FILE - must never be read or written by cp\n"


def _mounts_under(root: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(root + "/")]


@pytest.fixture
def engine(tmp_path):
    e = Engine(root=str(tmp_path / "root"))
    bootstrap_busybox(e.images)
    try:
        yield e
    finally:
        for c in e.store.list():
            try:
                e.remove(c, force=True)
            except BuduError:
                pass
        e.close()
        left = _mounts_under(str(tmp_path / "root"))
        assert not left, f"mounts left behind: {left}"


@pytest.fixture
def ctr(engine):
    return engine.create("busybox:latest", config={"Cmd": ["sh"]}, host_config={}, name="box")


@pytest.fixture
def host(tmp_path):
    """A host directory with a secret file that the container's symlinks will aim at."""
    d = tmp_path / "host"
    d.mkdir()
    (d / "host-file").write_bytes(HOST_SECRET)
    return d


def read(engine, c, path: str) -> bytes:
    with engine.rootfs(c) as root:
        with open(root + path, "rb") as f:
            return f.read()


def lstat(engine, c, path: str) -> os.stat_result:
    with engine.rootfs(c) as root:
        return os.lstat(root + path)


def exists(engine, c, path: str) -> bool:
    with engine.rootfs(c) as root:
        return os.path.lexists(root + path)


def climb(host_path) -> str:
    """A relative symlink target that, followed on the host from anywhere in the container's
    root, would reach `host_path` — and inside the container reaches the container's copy."""
    return "../" * 40 + str(host_path).lstrip("/")


# -- cp into a container ----------------------------------------------------------------------------

def test_cp_file_into_container(engine, ctr, tmp_path):
    src = tmp_path / "a.txt"
    src.write_bytes(b"hello\n")
    os.chown(src, 1234, 2345)
    os.chmod(src, 0o640)
    os.utime(src, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))

    assert fsops.copy_to_container(engine, ctr, str(src), "/tmp") == 6  # an existing dir: goes inside
    assert fsops.copy_to_container(engine, ctr, str(src), "tmp/renamed.txt") == 6  # a new name; relative to /
    with engine.rootfs(ctr) as root:
        for p in ("/tmp/a.txt", "/tmp/renamed.txt"):
            st = os.lstat(root + p)
            assert open(root + p, "rb").read() == b"hello\n"
            assert (st.st_uid, st.st_gid) == (0, 0)  # root's unless -a
            assert stat.S_IMODE(st.st_mode) == 0o640
            assert st.st_mtime_ns == 1_600_000_000_000_000_000
        os.symlink("renamed.txt", root + "/tmp/link")

    src.write_bytes(b"second\n")
    fsops.copy_to_container(engine, ctr, str(src), "/tmp/renamed.txt")  # an existing file: replaced
    assert read(engine, ctr, "/tmp/renamed.txt") == b"second\n"
    fsops.copy_to_container(engine, ctr, str(src), "/tmp/link")  # a symlink: its target is written
    assert read(engine, ctr, "/tmp/renamed.txt") == b"second\n"
    assert stat.S_ISLNK(lstat(engine, ctr, "/tmp/link").st_mode)


def test_cp_archive_keeps_owner(engine, ctr, tmp_path):
    src = tmp_path / "d"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("x")
    for p in (src, src / "sub", src / "sub" / "f"):
        os.chown(p, 1234, 2345)
    fsops.copy_to_container(engine, ctr, str(src), "/tmp", archive=True)
    fsops.copy_to_container(engine, ctr, str(src), "/root")
    with engine.rootfs(ctr) as root:
        for p in ("/tmp/d", "/tmp/d/sub", "/tmp/d/sub/f"):
            assert (os.lstat(root + p).st_uid, os.lstat(root + p).st_gid) == (1234, 2345)
        for p in ("/root/d", "/root/d/sub", "/root/d/sub/f"):
            assert (os.lstat(root + p).st_uid, os.lstat(root + p).st_gid) == (0, 0)


def test_cp_dir_rules_into_container(engine, ctr, tmp_path):
    src = tmp_path / "d"
    (src / "sub").mkdir(parents=True)
    (src / "top").write_text("top")
    (src / "sub" / "inner").write_text("inner")
    os.symlink("top", src / "link")
    os.link(src / "top", src / "hard")
    os.chmod(src, 0o750)

    fsops.copy_to_container(engine, ctr, str(src), "/tmp")  # onto an existing dir: nested
    fsops.copy_to_container(engine, ctr, str(src), "/new")  # not there: created with the contents
    fsops.copy_to_container(engine, ctr, str(src) + "/.", "/root")  # `/.`: the contents only
    fsops.copy_to_container(engine, ctr, str(src), "/tmp")  # again: merged, files replaced
    with engine.rootfs(ctr) as root:
        for base in ("/tmp/d", "/new", "/root"):
            assert sorted(os.listdir(root + base)) == ["hard", "link", "sub", "top"]
            assert open(root + base + "/sub/inner").read() == "inner"
            assert os.readlink(root + base + "/link") == "top"
            a, b = os.lstat(root + base + "/top"), os.lstat(root + base + "/hard")
            assert (a.st_ino, a.st_nlink) == (b.st_ino, 2)  # a hard link stays one
            assert stat.S_IMODE(os.lstat(root + base).st_mode) == 0o750
        assert not os.path.exists(root + "/tmp/d/d")


def test_cp_follow_link(engine, ctr, tmp_path):
    (tmp_path / "real").write_text("real data")
    os.symlink("real", tmp_path / "alias")
    fsops.copy_to_container(engine, ctr, str(tmp_path / "alias"), "/tmp")
    fsops.copy_to_container(engine, ctr, str(tmp_path / "alias"), "/root", follow_link=True)
    with engine.rootfs(ctr) as root:
        assert os.readlink(root + "/tmp/alias") == "real"
        assert not os.path.islink(root + "/root/alias")
        assert open(root + "/root/alias").read() == "real data"


def test_cp_into_container_errors(engine, ctr, tmp_path):
    f = tmp_path / "f"
    f.write_text("f")
    d = tmp_path / "d"
    d.mkdir()
    with pytest.raises(NotFound, match=r"^Could not find the file /nodir in container box$"):
        fsops.copy_to_container(engine, ctr, str(f), "/nodir/x", name="box")
    with pytest.raises(BuduError, match=r'"box:/newdir/": no such directory'):
        fsops.copy_to_container(engine, ctr, str(f), "/newdir/", name="box")
    with pytest.raises(BuduError, match="cannot copy directory"):
        fsops.copy_to_container(engine, ctr, str(d), "/etc/passwd", name="box")
    with pytest.raises(NotFound, match=r"lstat .*/missing: no such file or directory"):
        fsops.copy_to_container(engine, ctr, str(tmp_path / "missing"), "/tmp")
    (tmp_path / "tmp").write_text("a file called tmp")
    with pytest.raises(BuduError, match=r'^cannot overwrite directory "/tmp" with non-directory "/tmp"$'):
        fsops.copy_to_container(engine, ctr, str(tmp_path / "tmp"), "/")
    (tmp_path / "dirs" / "passwd").mkdir(parents=True)
    with pytest.raises(BuduError, match=r'^cannot overwrite non-directory "/etc/passwd" with directory'):
        fsops.copy_to_container(engine, ctr, str(tmp_path / "dirs" / "passwd"), "/etc")
    assert not exists(engine, ctr, "/nodir")


def test_cp_into_read_only_stopped_container(engine, tmp_path):
    c = engine.create("busybox:latest", config={"Cmd": ["sh"]}, host_config={"ReadonlyRootfs": True})
    (tmp_path / "f").write_text("f")
    with pytest.raises(BuduError, match="container rootfs is marked read-only"):
        fsops.copy_to_container(engine, c, str(tmp_path / "f"), "/tmp")
    assert not exists(engine, c, "/tmp/f")


# -- cp out of a container ----------------------------------------------------------------------------

def test_cp_from_container(engine, ctr, tmp_path):
    with engine.rootfs(ctr) as root:
        os.makedirs(root + "/data/sub")
        with open(root + "/data/sub/f", "w") as f:
            f.write("inside")
        os.chown(root + "/data/sub/f", 42, 43)
        os.chmod(root + "/data", 0o705)
    out = tmp_path / "out"
    out.mkdir()
    assert fsops.copy_from_container(engine, ctr, "/etc/passwd", str(out)) == len(read(engine, ctr, "/etc/passwd"))
    fsops.copy_from_container(engine, ctr, "/data", str(out / "new"))  # created, with the contents
    fsops.copy_from_container(engine, ctr, "/data", str(out))  # nested
    fsops.copy_from_container(engine, ctr, "/data/.", str(out / "flat"))
    fsops.copy_from_container(engine, ctr, "/data", str(out / "kept"), archive=True)
    assert (out / "passwd").read_bytes().startswith(b"root:x:0:0:")
    for base in ("new", "data", "flat"):
        assert (out / base / "sub" / "f").read_text() == "inside"
        st = os.lstat(out / base / "sub" / "f")
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())  # the user running budu's
    assert stat.S_IMODE(os.lstat(out / "new").st_mode) == 0o705
    st = os.lstat(out / "kept" / "sub" / "f")
    assert (st.st_uid, st.st_gid) == (42, 43)  # -a: the container's


def test_cp_special_files(engine, ctr, tmp_path):
    """Out to the host: no device nodes, no setuid unless -a; into a container: as they are."""
    with engine.rootfs(ctr) as root:
        os.makedirs(root + "/data")
        os.mknod(root + "/data/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(root + "/data/fifo", stat.S_IFIFO | 0o640)
        with open(root + "/data/suid", "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(root + "/data/suid", 0o4755)
        with open(root + "/data/sock-like", "w") as f:
            f.write("x")
    fsops.copy_from_container(engine, ctr, "/data", str(tmp_path / "plain"))
    fsops.copy_from_container(engine, ctr, "/data", str(tmp_path / "kept"), archive=True)
    for d, suid in (("plain", 0o755), ("kept", 0o4755)):
        assert sorted(os.listdir(tmp_path / d)) == ["fifo", "sock-like", "suid"]
        assert stat.S_ISFIFO(os.lstat(tmp_path / d / "fifo").st_mode)
        assert stat.S_IMODE(os.lstat(tmp_path / d / "fifo").st_mode) == 0o640
        assert stat.S_IMODE(os.lstat(tmp_path / d / "suid").st_mode) == suid
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("zero")
        info.type, info.mode, info.devmajor, info.devminor = tarfile.CHRTYPE, 0o600, 1, 5
        t.addfile(info)
    buf.seek(0)
    fsops.extract_to_container(engine, ctr, "/data", buf)
    st = lstat(engine, ctr, "/data/zero")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 5) and stat.S_IMODE(st.st_mode) == 0o600
    fsops.copy_to_container(engine, ctr, str(tmp_path / "kept"), "/copy")
    assert stat.S_IMODE(lstat(engine, ctr, "/copy/suid").st_mode) == 0o4755  # into a container: kept


def test_cp_from_container_errors(engine, ctr, tmp_path):
    with pytest.raises(NotFound, match=r"^Could not find the file /nope in container box$"):
        fsops.copy_from_container(engine, ctr, "/nope", str(tmp_path), name="box")
    with pytest.raises(BuduError, match=r'invalid output path: directory ".*/nodir" does not exist'):
        fsops.copy_from_container(engine, ctr, "/etc/passwd", str(tmp_path / "nodir" / "x"))
    with pytest.raises(BuduError, match="not a directory"):
        fsops.copy_from_container(engine, ctr, "/etc/passwd/.", str(tmp_path))
    (tmp_path / "file").write_text("x")
    with pytest.raises(BuduError, match="cannot copy directory"):
        fsops.copy_from_container(engine, ctr, "/etc", str(tmp_path / "file"))


# -- cp with tar streams ---------------------------------------------------------------------------

def _tar(entries: list[tuple]) -> io.BytesIO:
    """A tar of (name, kind, payload, uid): kind f (payload bytes), d, l (symlink: payload
    target), h (hard link: payload target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, payload, uid in entries:
            info = tarfile.TarInfo(name)
            info.uid = info.gid = uid
            info.mtime = 1_500_000_000
            if kind == "f":
                info.size, info.mode = len(payload), 0o644
                t.addfile(info, io.BytesIO(payload))
                continue
            info.type, info.mode = {"d": (tarfile.DIRTYPE, 0o755), "l": (tarfile.SYMTYPE, 0o777),
                                    "h": (tarfile.LNKTYPE, 0o644)}[kind]
            info.linkname = payload or ""
            t.addfile(info)
    buf.seek(0)
    return buf


def test_cp_tar_out(engine, ctr):
    with engine.rootfs(ctr) as root:
        os.makedirs(root + "/data/sub")
        with open(root + "/data/sub/f", "w") as f:
            f.write("payload")
        os.chown(root + "/data/sub/f", 42, 43)
        os.symlink("sub/f", root + "/data/link")
    out = io.BytesIO()
    fsops.archive_from_container(engine, ctr, "/data", out)
    out.seek(0)
    with tarfile.open(fileobj=out) as t:
        names = t.getnames()
        assert names == ["data", "data/link", "data/sub", "data/sub/f"]
        f = t.getmember("data/sub/f")
        assert (f.uid, f.gid, f.size) == (42, 43, 7)
        assert t.extractfile(f).read() == b"payload"
        assert t.getmember("data/link").linkname == "sub/f"
    out = io.BytesIO()
    fsops.archive_from_container(engine, ctr, "/data/.", out)
    out.seek(0)
    with tarfile.open(fileobj=out) as t:
        assert t.getnames() == [".", "link", "sub", "sub/f"]
    with pytest.raises(NotFound, match="Could not find the file /nope"):
        fsops.archive_from_container(engine, ctr, "/nope", io.BytesIO())


def test_cp_tar_in(engine, ctr):
    stream = _tar([("d", "d", None, 7), ("d/f", "f", b"file data", 7), ("d/link", "l", "f", 7),
                   ("d/hard", "h", "d/f", 7), ("implicit/parent/g", "f", b"g", 7)])
    fsops.extract_to_container(engine, ctr, "/tmp", stream)
    with engine.rootfs(ctr) as root:
        assert open(root + "/tmp/d/f", "rb").read() == b"file data"
        assert os.readlink(root + "/tmp/d/link") == "f"
        assert os.lstat(root + "/tmp/d/hard").st_ino == os.lstat(root + "/tmp/d/f").st_ino
        assert open(root + "/tmp/implicit/parent/g").read() == "g"
        for p in ("/tmp/d", "/tmp/d/f", "/tmp/implicit", "/tmp/implicit/parent/g"):
            assert os.lstat(root + p).st_uid == 0  # root's unless -a
        assert os.lstat(root + "/tmp/d/f").st_mtime == 1_500_000_000
    fsops.extract_to_container(engine, ctr, "/root", _tar([("f", "f", b"x", 7)]), archive=True)
    assert lstat(engine, ctr, "/root/f").st_uid == 7
    with pytest.raises(BuduError, match=r'destination "box:/etc/passwd" must be a directory'):
        fsops.extract_to_container(engine, ctr, "/etc/passwd", _tar([("f", "f", b"x", 0)]), name="box")
    with pytest.raises(BuduError, match=r'destination "box:/nodir" must be a directory'):
        fsops.extract_to_container(engine, ctr, "/nodir", _tar([("f", "f", b"x", 0)]), name="box")
    with pytest.raises(BuduError, match="climbs out"):
        fsops.extract_to_container(engine, ctr, "/tmp", _tar([("../../../escaped", "f", b"x", 0)]))
    assert not exists(engine, ctr, "/escaped")


# -- symlinks in the container never reach the host ---------------------------------------------

def _plant_links(engine, c, host) -> None:
    with engine.rootfs(c) as root:
        os.symlink("/", root + "/etc/evil")
        os.symlink(climb(host / "host-file"), root + "/etc/rel")
        os.symlink(climb(host), root + "/etc/reldir")
        os.symlink(str(host), root + "/etc/absdir")


def test_symlinks_do_not_escape_reading(engine, ctr, host, tmp_path):
    _plant_links(engine, ctr, host)
    out = tmp_path / "out"
    out.mkdir()
    # through `/etc/evil -> /`: the container's /etc/passwd, not the host's
    fsops.copy_from_container(engine, ctr, "/etc/evil/etc/passwd", str(out))
    assert (out / "passwd").read_bytes() == read(engine, ctr, "/etc/passwd")
    # a relative link that climbs out on the host stays in the container: nothing there
    for path, follow in (("/etc/rel", True), ("/etc/reldir/host-file", False), ("/etc/absdir/host-file", False)):
        with pytest.raises(NotFound, match="Could not find the file"):
            fsops.copy_from_container(engine, ctr, path, str(out / "x"), follow_link=follow)
        with pytest.raises(NotFound, match="Could not find the file"):
            fsops.archive_from_container(engine, ctr, path, io.BytesIO(), follow_link=follow)
    assert not (out / "x").exists()
    # once the container has a file at that path, that is what is read
    with engine.rootfs(ctr) as root:
        os.makedirs(root + str(host))
        with open(root + str(host / "host-file"), "wb") as f:
            f.write(b"the container's own\n")
    fsops.copy_from_container(engine, ctr, "/etc/rel", str(out / "y"), follow_link=True)
    assert (out / "y").read_bytes() == b"the container's own\n"
    # without -L the link itself is copied, as a link
    fsops.copy_from_container(engine, ctr, "/etc/rel", str(out / "z"))
    assert os.readlink(out / "z") == climb(host / "host-file")
    # a whole directory holding the links: copied as links, never followed
    buf = io.BytesIO()
    fsops.archive_from_container(engine, ctr, "/etc", buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as t:
        assert t.getmember("etc/evil").issym() and t.getmember("etc/absdir").issym()
        assert HOST_SECRET not in buf.getvalue()


def test_symlinks_do_not_escape_writing(engine, ctr, host, tmp_path):
    _plant_links(engine, ctr, host)
    src = tmp_path / "payload"
    src.write_bytes(b"payload\n")
    # into `/etc/evil/tmp` = the container's /tmp
    marker = f"written-{os.urandom(6).hex()}"  # what would appear on the host if a link were followed there
    fsops.copy_to_container(engine, ctr, str(src), f"/etc/evil/tmp/{marker}")
    assert read(engine, ctr, f"/tmp/{marker}") == b"payload\n"
    # onto a dangling link aimed at the host file: followed inside the container
    with pytest.raises(NotFound, match="Could not find the file"):
        fsops.copy_to_container(engine, ctr, str(src), "/etc/rel")  # its directory is not in the container
    with pytest.raises(NotFound, match="Could not find the file"):
        fsops.copy_to_container(engine, ctr, str(src), "/etc/absdir/host-file")
    with engine.rootfs(ctr) as root:
        os.makedirs(root + str(host))
    fsops.copy_to_container(engine, ctr, str(src), "/etc/rel")
    fsops.copy_to_container(engine, ctr, str(src), "/etc/absdir/other")
    fsops.copy_to_container(engine, ctr, str(src), "/etc/reldir")  # a dir (via the link): goes inside
    with engine.rootfs(ctr) as root:
        assert open(root + str(host / "host-file"), "rb").read() == b"payload\n"
        assert open(root + str(host / "other"), "rb").read() == b"payload\n"
        assert open(root + str(host / "payload"), "rb").read() == b"payload\n"
    # tar streams: into the link, through a link in an entry's path, and a link then a file through it
    fsops.extract_to_container(engine, ctr, "/etc/evil", _tar([(f"{marker}-tar", "f", b"t", 0)]))
    fsops.extract_to_container(engine, ctr, "/etc", _tar([("absdir/via-link", "f", b"t", 0)]))
    fsops.extract_to_container(engine, ctr, "/root", _tar([
        ("esc", "l", str(host), 0), ("esc/pwned", "f", b"t", 0),
        ("esc2", "l", climb(host), 0), ("esc2/pwned2", "f", b"t", 0)]))
    with engine.rootfs(ctr) as root:
        assert open(root + f"/{marker}-tar").read() == "t"
        assert open(root + str(host / "via-link")).read() == "t"
        assert open(root + str(host / "pwned")).read() == "t"
        assert open(root + str(host / "pwned2")).read() == "t"
    # the host was never touched
    assert sorted(os.listdir(host)) == ["host-file"]
    assert (host / "host-file").read_bytes() == HOST_SECRET
    assert not os.path.exists(f"/tmp/{marker}") and not os.path.exists(f"/{marker}-tar")


# -- a running container's root: /proc/PID/root, with its own mounts ---------------------------

@pytest.fixture
def jail(tmp_path):
    """A process chrooted into a busybox root in a mount namespace of its own, a tmpfs "volume"
    on /data and proc on /proc: what /proc/PID/root of a running container is.  Yields a Tree
    of it and the root's path on the host."""
    root = make_busybox_rootfs(str(tmp_path / "jail"))
    os.makedirs(root + "/data")
    script = (f"mount -t tmpfs tmpfs {root}/data && echo in-volume > {root}/data/v && "
              f"mount -t proc proc {root}/proc && exec chroot {root} /bin/sleep 600")
    p = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script])
    try:
        deadline = 200
        while not os.path.exists(f"/proc/{p.pid}/root/data/v") or os.readlink(f"/proc/{p.pid}/root") == "/":
            assert p.poll() is None and deadline, "the jail did not come up"
            deadline -= 1
            import time

            time.sleep(0.05)
        with fsops.Tree(f"/proc/{p.pid}/root", container="jail") as tree:
            yield tree, root
    finally:
        p.kill()
        p.wait()


def test_running_root_through_proc(jail, host, tmp_path):
    tree, root = jail
    os.symlink("/", root + "/etc/evil")
    os.symlink("/proc/self/root" + str(host), root + "/etc/magic")
    with fsops.Tree("/") as local:
        out = tmp_path / "out"
        out.mkdir()
        # a volume of the running container counts, both ways
        fsops.copy(tree, "/data/v", local, str(out))
        assert (out / "v").read_text() == "in-volume\n"
        fsops.copy(local, str(out / "v"), tree, "/data/back")
        assert not os.path.exists(root + "/data/back")  # on the volume, not in the root below it
        buf = io.BytesIO()
        fsops.write_tar(tree, "/data/back", buf)
        assert b"in-volume" in buf.getvalue()
        # symlinks: `/` is the jail's; /proc/self/root (a magic link to whoever reads) is refused
        fsops.copy(tree, "/etc/evil/etc/passwd", local, str(out / "passwd"))
        assert (out / "passwd").read_bytes() == open(root + "/etc/passwd", "rb").read()
        for path in ("/etc/magic/host-file", "/proc/self/root" + str(host / "host-file")):
            with pytest.raises(BuduError):
                fsops.copy(tree, path, local, str(out / "stolen"))
            with pytest.raises(BuduError):
                fsops.copy(local, str(out / "v"), tree, path)
        assert not (out / "stolen").exists()
        assert (host / "host-file").read_bytes() == HOST_SECRET and sorted(os.listdir(host)) == ["host-file"]
    # a whole-root copy never walks into /proc; an export leaves out every mount
    buf = io.BytesIO()
    fsops.write_tar(tree, "/", buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as t:
        names = t.getnames()
    assert "proc" in names and not any(n.startswith("proc/") for n in names)
    assert "data/v" in names and "bin/busybox" in names
    buf = io.BytesIO()
    fsops.export_tree(tree, buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as t:
        names = t.getnames()
    assert "data" in names and "proc" in names and "bin/busybox" in names
    assert not any(n.startswith(("data/", "proc/")) for n in names)


# -- a running container -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def monitor(tmp_path_factory) -> str:
    """budu-monitor: the installed one, else built from this tree into a tmp dir."""
    from budu.engine.monitor import monitor_path

    try:
        return monitor_path()
    except BuduError:
        pass
    if not shutil.which(os.environ.get("CC", "cc")):
        pytest.fail("budu-monitor is not installed and there is no C compiler to build it")
    out = str(tmp_path_factory.mktemp("monitor") / "budu-monitor")
    script = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "build-static.sh")
    subprocess.run(["sh", script, "src/budu/monitor", out], check=True, capture_output=True, timeout=300)
    return out


def test_running_container(engine, monitor, host, tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("BUDU_MONITOR", monitor)
    bind = tmp_path / "bind"
    bind.mkdir()
    c = engine.create("busybox:latest", config={"Cmd": ["sleep", "300"]},
                      host_config={"Binds": [f"{bind}:/data"], "NetworkMode": "none"}, name="live")
    engine.start(c)
    deadline = time.monotonic() + 20
    while engine.state(c).status != "running":
        assert time.monotonic() < deadline, "the container did not start"
        time.sleep(0.05)
    with engine.rootfs(c) as root:
        assert root.startswith("/proc/")
        os.symlink("/", root + "/etc/evil")
        os.symlink(climb(host / "host-file"), root + "/etc/rel")
        with open(root + "/tmp/made-here", "w") as f:
            f.write("running\n")
    (tmp_path / "f").write_text("to the bind mount")
    fsops.copy_to_container(engine, c, str(tmp_path / "f"), "/data/")  # a mount of the container counts
    assert (bind / "f").read_text() == "to the bind mount"
    fsops.copy_to_container(engine, c, str(tmp_path / "f"), "/etc/evil/tmp/")
    out = tmp_path / "out"
    out.mkdir()
    fsops.copy_from_container(engine, c, "/etc/evil/tmp/f", str(out))
    assert (out / "f").read_text() == "to the bind mount"
    with pytest.raises(NotFound):
        fsops.copy_from_container(engine, c, "/etc/rel", str(out / "stolen"), follow_link=True)
    assert (host / "host-file").read_bytes() == HOST_SECRET and not (out / "stolen").exists()
    assert [str(ch) for ch in fsops.changes(engine, c)] == [
        "A /data", "C /etc", "A /etc/evil", "A /etc/rel", "C /tmp", "A /tmp/f", "A /tmp/made-here"]
    buf = io.BytesIO()
    fsops.export(engine, c, buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as t:
        names = t.getnames()
    assert "tmp/made-here" in names and "data" in names and not any(n.startswith(("data/", "proc/")) for n in names)

    image = fsops.commit(engine, c, "live:1", message="while running")
    assert engine.state(engine.get(c.id)).status == "running"  # paused for the diff, running again
    actions = [json.loads(line)["Action"] for line in open(os.path.join(engine.root, "events.log"))]
    assert actions[-3:] == ["pause", "unpause", "commit"]
    names = _layer_names(engine, image)
    assert "tmp/made-here" in names and "data" in names and "etc/hostname" in names  # a mount target, as is
    fsops.commit(engine, c, "live:2", pause=False)
    actions = [json.loads(line)["Action"] for line in open(os.path.join(engine.root, "events.log"))]
    assert actions[-2:] == ["commit", "commit"]  # no pause around the second


# -- diff --------------------------------------------------------------------------------------------

def test_diff(engine, ctr):
    assert fsops.changes(engine, ctr) == []
    with engine.rootfs(ctr) as root:
        with open(root + "/etc/new", "w") as f:
            f.write("new")
        with open(root + "/etc/passwd", "a") as f:
            f.write("x:x:1:1::/:/bin/sh\n")
        os.unlink(root + "/bin/ls")
        os.rmdir(root + "/home")
        os.makedirs(root + "/tmp/a/b")
        os.chmod(root + "/root", 0o755)
        open(root + "/etc/hosts", "w").close()  # a mount target the runtime makes: no change
    got = [str(ch) for ch in fsops.changes(engine, ctr)]
    assert got == ["C /bin", "D /bin/ls", "C /etc", "A /etc/new", "C /etc/passwd", "D /home", "C /root",
                   "C /tmp", "A /tmp/a", "A /tmp/a/b"]


def test_diff_opaque_and_whiteout_dirs(engine, ctr):
    with engine.rootfs(ctr) as root:
        shutil.rmtree(root + "/etc")
        os.mkdir(root + "/etc")  # over a deleted dir: overlay makes it opaque
        with open(root + "/etc/only", "w") as f:
            f.write("x")
        with open(root + "/etc/passwd", "w") as f:
            f.write("root:x:0:0::/:/bin/sh\n")
        shutil.rmtree(root + "/bin")
    assert os.getxattr(engine.upper_dir(ctr) + "/etc", "trusted.overlay.opaque") == b"y"
    got = [str(ch) for ch in fsops.changes(engine, ctr)]
    assert got == ["D /bin", "C /etc", "D /etc/group", "A /etc/only", "C /etc/passwd"]


def test_diff_sees_image_whiteouts(engine, ctr):
    """A path an image layer deleted is added again, not changed."""
    cid = fsops.commit(engine, _deleting(engine, ctr), "layered:1").id
    c2 = engine.create(cid, config={"Cmd": ["sh"]}, host_config={})
    assert not exists(engine, c2, "/bin/ls")
    with engine.rootfs(c2) as root:
        with open(root + "/bin/ls", "w") as f:
            f.write("back")
    assert [str(ch) for ch in fsops.changes(engine, c2)] == ["C /bin", "A /bin/ls"]


def _deleting(engine, c):
    with engine.rootfs(c) as root:
        os.unlink(root + "/bin/ls")
        with open(root + "/etc/new", "w") as f:
            f.write("added\n")
    return c


# -- export ------------------------------------------------------------------------------------------

def test_export_import_round_trip(engine, ctr, tmp_path):
    from budu.images.archive import import_rootfs

    _deleting(engine, ctr)
    out = tmp_path / "export.tar"
    with open(out, "wb") as f:
        fsops.export(engine, ctr, f)
    with tarfile.open(out) as t:
        names = t.getnames()
        assert "bin/busybox" in names and "etc/new" in names and "bin/ls" not in names
        assert not any(n.startswith(("/", "./")) or "/.wh." in n for n in names)
        sh = t.getmember("bin/sh")
        assert sh.issym() and sh.linkname == "busybox"
        assert t.getmember("bin/busybox").mode == 0o755
        assert t.getmember("tmp").mode == 0o1777
    with open(out, "rb") as f:
        image = import_rootfs(engine.images, f, "exported:1", changes=['CMD ["sh"]'])
    c2 = engine.create("exported:1", config={}, host_config={})
    with engine.rootfs(c2) as root:
        assert os.access(root + "/bin/busybox", os.X_OK)
        assert os.readlink(root + "/bin/sh") == "busybox"
        assert open(root + "/etc/new").read() == "added\n"
        assert not os.path.lexists(root + "/bin/ls")
    assert engine.images.config(image)["config"]["Cmd"] == ["sh"]
    # the image runs: its busybox, from the unpacked snapshot, works
    (m,) = engine.images.snapshots.view("check-exported", image.chain_id)
    try:
        p = subprocess.run([m.source + "/bin/busybox", "echo", "ran"], capture_output=True, text=True)
        assert p.stdout == "ran\n"
    finally:
        engine.images.snapshots.remove("check-exported")
    events = [json.loads(line) for line in open(os.path.join(engine.root, "events.log"))]
    assert any(e.get("Action") == "export" or e.get("action") == "export" for e in events)


# -- commit ------------------------------------------------------------------------------------------

def _layer_names(engine, image) -> list[str]:
    desc = engine.images.manifest(image)["layers"][-1]
    with engine.images.content.open(desc["digest"]) as f, tarfile.open(fileobj=f, mode="r|gz") as t:
        return [m.name for m in t]


def test_commit(engine, ctr):
    from budu.images.archive import save

    base = engine.images.get("busybox:latest")
    base_cfg = engine.images.config(base)
    _deleting(engine, ctr)
    image = fsops.commit(engine, ctr, "committed:v1", author="Jane <jane@example.com>", message="my change",
                         changes=['CMD ["/bin/echo","hi"]', "ENV A=b"])
    assert image.id.startswith("sha256:")
    assert engine.images.get("committed:v1").id == image.id
    assert image.id in {i.id for i in engine.images.list()}
    cfg = engine.images.config(image)
    assert cfg["config"]["Cmd"] == ["/bin/echo", "hi"]
    assert cfg["config"]["Env"] == [*base_cfg["config"]["Env"], "A=b"]
    assert cfg["author"] == "Jane <jane@example.com>"
    assert cfg["architecture"] == base_cfg["architecture"] and cfg["os"] == "linux"
    assert cfg["rootfs"]["diff_ids"][:-1] == base_cfg["rootfs"]["diff_ids"]
    assert len(cfg["rootfs"]["diff_ids"]) == len(base_cfg["rootfs"]["diff_ids"]) + 1
    last = cfg["history"][-1]
    assert cfg["history"][:-1] == base_cfg["history"]
    assert (last["created_by"], last["comment"], last["author"]) == ("sh", "my change", "Jane <jane@example.com>")
    assert "empty_layer" not in last
    assert len(engine.images.manifest(image)["layers"]) == 2
    names = _layer_names(engine, image)
    assert "etc/new" in names and "bin/.wh.ls" in names and "etc/passwd" not in names
    # a real image: it runs with the changed files, history shows it, it saves
    c2 = engine.create("committed:v1", config={}, host_config={})
    with engine.rootfs(c2) as root:
        assert open(root + "/etc/new").read() == "added\n"
        assert not os.path.lexists(root + "/bin/ls")
        assert os.access(root + "/bin/busybox", os.X_OK)
    assert engine.images.history(image)[0]["comment"] == "my change"
    buf = io.BytesIO()
    save(engine.images, ["committed:v1"], buf)
    assert len(buf.getvalue()) > 1_000_000
    events = [json.loads(line) for line in open(os.path.join(engine.root, "events.log"))]
    mine = [e for e in events if (e.get("Action") or e.get("action")) == "commit"]
    assert mine and json.dumps(mine[-1]).find(image.id) >= 0


def test_commit_config_from_container(engine):
    from budu.images.archive import create_image

    create_image(engine.images, [_tar([("bin/x", "f", b"x", 0)])],
                 {"config": {"Env": ["PATH=/bin", "KEEP=image"], "Cmd": ["img-cmd"],
                             "Labels": {"a": "image", "b": "image"}, "ExposedPorts": {"80/tcp": {}},
                             "WorkingDir": "/srv", "StopSignal": "SIGQUIT"}},
                 "base:1")
    c = engine.create("base:1", config={"Env": ["KEEP=container", "MINE=1"], "Labels": {"a": "container"},
                                        "ExposedPorts": {"443/tcp": {}}, "User": "nobody", "Tty": True,
                                        "Hostname": "h"}, host_config={})
    image = fsops.commit(engine, c, None)
    assert image.tags == ()
    cfg = engine.images.config(image)
    assert cfg["config"] == {
        "Env": ["KEEP=container", "MINE=1", "PATH=/bin"], "Cmd": ["img-cmd"],
        "Labels": {"a": "container", "b": "image"},
        "ExposedPorts": {"443/tcp": {}, "80/tcp": {}}, "WorkingDir": "/srv", "StopSignal": "SIGQUIT", "User": "nobody"}
    last = cfg["history"][-1]
    assert last["created_by"] == "img-cmd" and last["empty_layer"] is True  # nothing changed: no layer
    assert cfg["rootfs"]["diff_ids"] == engine.images.config(engine.images.get("base:1"))["rootfs"]["diff_ids"]
    assert image.chain_id == engine.images.get("base:1").chain_id


def test_commit_refuses_bad_input_before_any_work(engine, ctr):
    before = {i.id for i in engine.images.list()}
    with pytest.raises(ConfigError, match="not a valid change command"):
        fsops.commit(engine, ctr, "x:1", changes=["RUN rm -rf /"])
    with pytest.raises(ConfigError):
        fsops.commit(engine, ctr, "Bad Name")
    assert {i.id for i in engine.images.list()} == before


# -- the CLI --------------------------------------------------------------------------------------------

def budu(engine, *args: str, input: bytes | None = None, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run(["budu", *args], input=input, stdout=stdout, stderr=subprocess.PIPE, timeout=120,
                          env=dict(os.environ, BUDU_ROOT=engine.root))


def test_cli(engine, ctr, tmp_path, host):
    _plant_links(engine, ctr, host)
    (tmp_path / "f").write_text("from host")
    p = budu(engine, "cp", str(tmp_path / "f"), "box:/etc/evil/tmp/")
    assert p.returncode == 0 and p.stderr == b"", p.stderr  # not a terminal: no summary line
    primary, secondary = os.openpty()  # a terminal: docker's summary line on stderr
    try:
        p = budu(engine, "cp", str(tmp_path / "f"), "box:/root/", stdout=secondary)
        q = budu(engine, "cp", "-q", str(tmp_path / "f"), "box:/root/quiet", stdout=secondary)
    finally:
        os.close(primary)
        os.close(secondary)
    assert (p.returncode, p.stderr) == (0, b"Successfully copied 9B to box:/root/\n")
    assert (q.returncode, q.stderr) == (0, b"")
    p = budu(engine, "cp", "box:/tmp/f", "-")
    with tarfile.open(fileobj=io.BytesIO(p.stdout)) as t:
        assert t.extractfile("f").read() == b"from host"
    p = budu(engine, "cp", "-", "box:/root", input=_tar([("in", "f", b"tar in", 0)]).getvalue())
    assert p.returncode == 0, p.stderr
    p = budu(engine, "cp", "-q", "box:/root/in", str(tmp_path / "back"))
    assert p.returncode == 0 and (tmp_path / "back").read_text() == "tar in"
    p = budu(engine, "cp", "box:/nope", str(tmp_path))
    assert (p.returncode, p.stderr) == \
        (1, b"Error response from daemon: Could not find the file /nope in container box\n")
    p = budu(engine, "cp", "nosuch:/x", str(tmp_path))
    assert p.returncode == 1 and p.stderr.startswith(b"Error response from daemon: No such container: nosuch")
    assert budu(engine, "cp", "a", "b").stderr == b"Error: must specify at least one container source\n"
    assert budu(engine, "cp", "a:/x", "b:/y").stderr == b"Error: copying between containers is not supported\n"
    assert budu(engine, "cp", "box:/etc/passwd", "/nodir/x").stderr == \
        b'Error: invalid output path: directory "/nodir" does not exist\n'
    assert (host / "host-file").read_bytes() == HOST_SECRET

    p = budu(engine, "diff", "box")
    assert p.returncode == 0
    assert p.stdout.decode().splitlines() == [
        "C /etc", "A /etc/absdir", "A /etc/evil", "A /etc/rel", "A /etc/reldir",
        "C /root", "A /root/f", "A /root/in", "A /root/quiet", "C /tmp", "A /tmp/f"]

    p = budu(engine, "export", "box")
    with tarfile.open(fileobj=io.BytesIO(p.stdout)) as t:
        assert t.extractfile("tmp/f").read() == b"from host"
    p = budu(engine, "export", "-o", str(tmp_path / "box.tar"), "box")
    assert p.returncode == 0 and tarfile.is_tarfile(tmp_path / "box.tar")
    primary, secondary = os.openpty()
    try:
        p = budu(engine, "export", "box", stdout=secondary)
    finally:
        os.close(primary)
        os.close(secondary)
    assert (p.returncode, p.stderr) == \
        (1, b"Error: cowardly refusing to save to a terminal. Use the -o flag or redirect\n")

    p = budu(engine, "commit", "-c", 'CMD ["/bin/echo","hi"]', "-m", "msg", "-a", "me", "--pause=false",
             "box", "mine:2")
    assert p.returncode == 0, p.stderr
    image_id = p.stdout.decode().strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    listing = budu(engine, "images").stdout.decode()
    assert "mine" in listing and image_id[7:19] in listing
    assert budu(engine, "commit", "nosuch").stderr.startswith(b"Error response from daemon: No such container: nosuch")


def test_split_cp_arg():
    from budu.cli.fsops import split_cp_arg

    assert split_cp_arg("box:/etc") == ("box", "/etc")
    assert split_cp_arg("box:etc/x") == ("box", "etc/x")
    assert split_cp_arg("/abs/with:colon") == ("", "/abs/with:colon")
    assert split_cp_arg("./file:name.txt") == ("", "./file:name.txt")
    assert split_cp_arg("plain") == ("", "plain")
    assert split_cp_arg("-") == ("", "-")
