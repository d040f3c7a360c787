"""Layers: apply (with OCI -> overlay whiteouts), diff an overlay upper, and refuse hostile tars.

Every layer is built here with tarfile, byte by byte what a registry could serve.  The malicious
ones are applied into a directory nested a few levels inside tmp_path, next to a sentinel
directory, and the whole of tmp_path outside dest is checked to be unchanged afterwards.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import socket
import stat
import subprocess
import tarfile
import zlib

import pytest
import zstandard

from budu.errors import BuduError
from budu.images.content import DigestMismatch
from budu.images.layers import (
    MEDIA_TYPE_GZIP,
    MEDIA_TYPE_TAR,
    MEDIA_TYPE_ZSTD,
    InvalidLayer,
    LayerError,
    UnsafeLayer,
    apply_layer,
    diff_overlay,
)

# layers keep ownership and make devices: the suite runs as root (CI does)
assert os.geteuid() == 0, "tests/images/test_image_layers.py needs root"

MTIME = 1_600_000_000


# -- building layers ------------------------------------------------------------------------------

def ti(name: str, type=tarfile.REGTYPE, mode: int = 0o644, uid: int = 0, gid: int = 0, mtime: int = MTIME,
       linkname: str = "", pax: dict[str, str] | None = None, devmajor: int = 0, devminor: int = 0) -> tarfile.TarInfo:
    t = tarfile.TarInfo(name)
    t.type, t.mode, t.uid, t.gid, t.mtime, t.linkname = type, mode, uid, gid, mtime, linkname
    t.devmajor, t.devminor = devmajor, devminor
    if pax:
        t.pax_headers = dict(pax)
    return t


def make_tar(*entries: tarfile.TarInfo | tuple[tarfile.TarInfo, bytes], format=tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=format) as tf:
        for e in entries:
            info, data = e if isinstance(e, tuple) else (e, b"")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def f(name: str, data: bytes = b"", **kw) -> tuple[tarfile.TarInfo, bytes]:
    return ti(name, **kw), data


def d(name: str, mode: int = 0o755, **kw) -> tarfile.TarInfo:
    return ti(name, tarfile.DIRTYPE, mode, **kw)


def sym(name: str, target: str, **kw) -> tarfile.TarInfo:
    return ti(name, tarfile.SYMTYPE, 0o777, linkname=target, **kw)


def hard(name: str, target: str, **kw) -> tarfile.TarInfo:
    return ti(name, tarfile.LNKTYPE, 0o644, linkname=target, **kw)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def apply(dest, data: bytes, **kw):
    os.makedirs(dest, exist_ok=True)
    return apply_layer(io.BytesIO(data), str(dest), **kw)


def read_tar(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
        return tf.getmembers()


def tar_entries(data: bytes) -> dict[str, tuple]:
    """name -> (type, mode, uid, gid, mtime, size, linkname, dev, xattrs) for comparing tars."""
    out = {}
    for m in read_tar(data):
        xattrs = {k: v for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")}
        out[m.name.rstrip("/")] = (m.type, m.mode, m.uid, m.gid, int(m.mtime), m.size, m.linkname,
                                   (m.devmajor, m.devminor) if m.ischr() or m.isblk() else None, xattrs)
    return out


def tree(root) -> dict[str, tuple]:
    """Everything an apply decides about a tree, by relative path."""
    out = {}
    root = str(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            kind = stat.S_IFMT(st.st_mode)
            content = None
            if kind == stat.S_IFREG:
                content = hashlib.sha256(open(p, "rb").read()).hexdigest()
            elif kind == stat.S_IFLNK:
                content = os.readlink(p)
            xattrs = {a: os.getxattr(p, a, follow_symlinks=False) for a in os.listxattr(p, follow_symlinks=False)
                      if not a.startswith("trusted.overlay.") or a == "trusted.overlay.opaque"}
            dev = (os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in (stat.S_IFCHR, stat.S_IFBLK) else None
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, content, dev, xattrs)
    return out


# -- apply: what lands on disk --------------------------------------------------------------------

def test_apply_every_kind_of_entry(tmp_path):
    big = os.urandom(3 << 20) + b"end"
    layer = make_tar(
        d("etc", 0o755, mtime=MTIME + 1),
        f("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", mode=0o644, mtime=MTIME + 2),
        f("etc/shadow", b"secret", mode=0o640, gid=42),
        f("usr/bin/su", b"\x7fELF", mode=0o4755),  # parents implied, setuid kept
        f("usr/bin/wall", b"\x7fELF", mode=0o2755, gid=5),
        d("tmp", 0o1777),
        f("home/user/file", b"mine", uid=1000, gid=1000, mode=0o600),
        d("home/user", 0o700, uid=1000, gid=1000, mtime=MTIME + 3),  # after its contents
        f("big.bin", big),
        f("empty", b""),
        sym("etc/localtime", "/usr/share/zoneinfo/UTC", uid=7, gid=8, mtime=MTIME + 4),
        hard("usr/bin/passwd-link", "etc/passwd"),
        ti("dev/null", tarfile.CHRTYPE, 0o666, devmajor=1, devminor=3),
        ti("dev/sda", tarfile.BLKTYPE, 0o660, gid=6, devmajor=8, devminor=0),
        ti("run/fifo", tarfile.FIFOTYPE, 0o620),
    )
    dest = tmp_path / "dest"
    r = apply(dest, layer)
    assert r.diff_id == sha(layer) and r.size == len(layer)

    def st(p):
        return os.lstat(dest / p)

    assert (dest / "etc/passwd").read_bytes() == b"root:x:0:0::/root:/bin/sh\n"
    assert stat.S_IMODE(st("etc/passwd").st_mode) == 0o644 and st("etc/passwd").st_mtime == MTIME + 2
    assert stat.S_IMODE(st("etc/shadow").st_mode) == 0o640 and st("etc/shadow").st_gid == 42
    assert stat.S_IMODE(st("usr/bin/su").st_mode) == 0o4755
    assert stat.S_IMODE(st("usr/bin/wall").st_mode) == 0o2755 and st("usr/bin/wall").st_gid == 5
    assert stat.S_IMODE(st("tmp").st_mode) == 0o1777 and stat.S_ISDIR(st("tmp").st_mode)
    assert (st("home/user/file").st_uid, st("home/user/file").st_gid) == (1000, 1000)
    assert stat.S_IMODE(st("home/user").st_mode) == 0o700 and st("home/user").st_uid == 1000
    # directory mtimes are set after their contents were created
    assert st("etc").st_mtime == MTIME + 1 and st("home/user").st_mtime == MTIME + 3
    assert stat.S_IMODE(st("usr").st_mode) == 0o755  # implied parents: 0755, like docker's
    assert (dest / "big.bin").read_bytes() == big
    assert st("empty").st_size == 0
    assert os.readlink(dest / "etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert (st("etc/localtime").st_uid, st("etc/localtime").st_gid, st("etc/localtime").st_mtime) == (7, 8, MTIME + 4)
    assert st("usr/bin/passwd-link").st_ino == st("etc/passwd").st_ino and st("etc/passwd").st_nlink == 2
    assert stat.S_ISCHR(st("dev/null").st_mode) and st("dev/null").st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(st("dev/null").st_mode) == 0o666
    assert stat.S_ISBLK(st("dev/sda").st_mode) and st("dev/sda").st_rdev == os.makedev(8, 0)
    assert st("dev/sda").st_gid == 6
    assert stat.S_ISFIFO(st("run/fifo").st_mode) and stat.S_IMODE(st("run/fifo").st_mode) == 0o620


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_long_names_in_every_format(tmp_path, fmt):
    deep = "/".join(["component%02d" % i for i in range(12)])  # > 100 bytes; ustar needs its prefix field
    long_file = "x" * 90 + "/" + "y" * 99 if fmt == tarfile.USTAR_FORMAT else "n" * 200 + "/" + "f" * 250
    long_target = ("t" * 99) if fmt == tarfile.USTAR_FORMAT else "/" + "t" * 300
    link_to = "short" if fmt == tarfile.USTAR_FORMAT else deep + "/file"  # ustar: 100 bytes at most
    layer = make_tar(f(deep + "/file", b"deep"), f("short", b"s"), f(long_file, b"long"), sym("ln", long_target),
                     hard(deep + "/hard", link_to), format=fmt)
    dest = tmp_path / "dest"
    apply(dest, layer)
    assert (dest / deep / "file").read_bytes() == b"deep"
    assert (dest / long_file).read_bytes() == b"long"
    assert os.readlink(dest / "ln") == long_target
    assert os.lstat(dest / deep / "hard").st_ino == os.lstat(dest / link_to).st_ino


def test_non_ascii_and_dot_slash_names(tmp_path):
    layer = make_tar(d("./"), d("./données"), f("./données/日本語.txt", b"utf8"), f(".//a//b", b"b"))
    dest = tmp_path / "dest"
    apply(dest, layer)
    assert (dest / "données" / "日本語.txt").read_bytes() == b"utf8"
    assert (dest / "a" / "b").read_bytes() == b"b"


def test_big_uid_and_pax_times(tmp_path):
    layer = make_tar(f("gnu", b"x", uid=2_000_000_000, gid=3_000_000_000), format=tarfile.GNU_FORMAT)
    dest = tmp_path / "dest"
    apply(dest, layer)
    assert (os.lstat(dest / "gnu").st_uid, os.lstat(dest / "gnu").st_gid) == (2_000_000_000, 3_000_000_000)
    layer = make_tar(f("pax", b"x", pax={"mtime": "1600000000.123456789", "atime": "1500000000.5",
                                         "uid": "4000000000", "gid": "12"}))
    dest = tmp_path / "dest2"
    apply(dest, layer)
    st = os.lstat(dest / "pax")
    assert st.st_mtime_ns == 1_600_000_000_123_456_789 and st.st_atime_ns == 1_500_000_000_500_000_000
    assert (st.st_uid, st.st_gid) == (4_000_000_000, 12)


def test_global_pax_header_applies_to_following_entries(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"uid": "4242"}) as tf:
        tf.addfile(ti("a"), None)
        tf.addfile(ti("b", uid=1), None)
    dest = tmp_path / "dest"
    apply(dest, buf.getvalue())
    assert os.lstat(dest / "a").st_uid == 4242 and os.lstat(dest / "b").st_uid == 4242


def test_xattrs(tmp_path):
    cap = bytes.fromhex("01000002" "00200000" "00000000" "00000000" "00000000")  # cap_net_raw+ep
    layer = make_tar(
        f("bin/ping", b"\x7fELF", mode=0o755, uid=0, gid=0, pax={
            "SCHILY.xattr.security.capability": cap.decode("latin-1"),
            "SCHILY.xattr.user.comment": "hello",
            "SCHILY.xattr.trusted.overlay.opaque": "y",  # forged overlay metadata: dropped
            "SCHILY.xattr.trusted.overlay.redirect": "/etc",
            "SCHILY.xattr.security.selinux": "system_u:object_r:bin_t:s0",  # the host's business
        }),
        d("dir", pax={"SCHILY.xattr.trusted.note": "dir note"}),
        sym("link", "bin/ping", pax={"SCHILY.xattr.trusted.note": "link note"}),
        f("bsd", b"", pax={"LIBARCHIVE.xattr.user.b%20sd": "dmFsdWU"}),  # bsdtar: %-name, base64 value
    )
    dest = tmp_path / "dest"
    apply(dest, layer)
    ping = str(dest / "bin/ping")
    assert sorted(os.listxattr(ping)) == ["security.capability", "user.comment"]
    assert os.getxattr(ping, "user.comment") == b"hello"
    assert os.getxattr(ping, "security.capability") == cap
    assert os.getxattr(dest / "dir", "trusted.note") == b"dir note"
    assert os.getxattr(dest / "link", "trusted.note", follow_symlinks=False) == b"link note"
    assert os.getxattr(dest / "bsd", "user.b sd") == b"value"


def test_file_capability_survives_chown(tmp_path):
    """chown(2) clears security.capability: the xattr must be set after ownership."""
    cap = bytes.fromhex("01000002" "00200000" "00000000" "00000000" "00000000")
    tar = make_tar(f("bin/ping", b"x", uid=1000, gid=1000, mode=0o4755,
                     pax={"SCHILY.xattr.security.capability": cap.decode("latin-1")}))
    dest = tmp_path / "dest"
    apply(dest, tar)
    assert stat.S_IMODE(os.lstat(dest / "bin/ping").st_mode) == 0o4755
    assert os.getxattr(dest / "bin/ping", "security.capability") == cap
    assert os.lstat(dest / "bin/ping").st_uid == 1000


def test_later_entries_replace_earlier_ones(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    layer = make_tar(
        f("a", b"file first"), d("a"), f("a/inner", b"in dir"),   # file -> dir
        d("b"), f("b/x", b"gone"), f("b", b"file now"),          # dir (with contents) -> file
        sym("c", str(outside)), f("c", b"not through the link"),  # a symlink is replaced, not followed
        f("e", b"1"), f("e", b"2"),                                # same name twice: the last wins
        d("g", 0o700), d("g", 0o755),                              # dir over dir merges, metadata updated
    )
    dest = tmp_path / "dest"
    apply(dest, layer)
    assert (dest / "a/inner").read_bytes() == b"in dir"
    assert (dest / "b").read_bytes() == b"file now"
    assert not os.path.islink(dest / "c") and (dest / "c").read_bytes() == b"not through the link"
    assert os.listdir(outside) == []
    assert (dest / "e").read_bytes() == b"2"
    assert stat.S_IMODE(os.lstat(dest / "g").st_mode) == 0o755


def test_many_directories_and_replaced_directories(tmp_path):
    """More directories than the cache of open dir fds holds, and a directory replaced midway."""
    entries: list = []
    for i in range(600):
        entries += [d(f"d{i:03}", 0o750, mtime=MTIME + i), f(f"d{i:03}/f", b"%d" % i)]
    entries += [f(f"d{i:03}/late", b"late") for i in range(0, 600, 7)]  # back into evicted dirs
    entries += [d("a/b/c"), f("a/b/c/x", b"x"), f("a/y", b"y"), f("a/b", b"b is a file now"), f("a/z", b"z"),
                f("d000/after", b"after the replace")]
    dest = tmp_path / "dest"
    fds = len(os.listdir("/proc/self/fd"))
    apply(dest, make_tar(*entries))
    assert len(os.listdir("/proc/self/fd")) == fds  # every dir fd closed
    for i in range(600):
        assert (dest / f"d{i:03}/f").read_bytes() == b"%d" % i
        st = os.lstat(dest / f"d{i:03}")
        assert st.st_mtime == MTIME + i and stat.S_IMODE(st.st_mode) == 0o750
    assert (dest / "d007/late").read_bytes() == b"late"
    assert (dest / "a/b").read_bytes() == b"b is a file now" and (dest / "a/z").read_bytes() == b"z"
    assert (dest / "d000/after").read_bytes() == b"after the replace"


def test_no_fd_or_thread_left_after_errors(tmp_path):
    import threading

    fds, threads = len(os.listdir("/proc/self/fd")), threading.active_count()
    for i, layer in enumerate([make_tar(d("a"), d("a/b"), sym("x", "/"), f("x/evil")),
                               gzip.compress(make_tar(f("a", os.urandom(3 << 20))))[:1 << 20]]):
        with pytest.raises(LayerError):
            apply(tmp_path / f"d{i}", layer)
    assert len(os.listdir("/proc/self/fd")) == fds and threading.active_count() == threads


def test_symlink_inside_layer_is_followed_for_parents(tmp_path):
    layer = make_tar(d("real"), sym("alias", "real"), f("alias/file", b"via alias"),
                     d("x/y"), sym("x/up", "../real"), f("x/up/two", b"two"))
    dest = tmp_path / "dest"
    apply(dest, layer)
    assert (dest / "real/file").read_bytes() == b"via alias"
    assert (dest / "real/two").read_bytes() == b"two"
    assert os.path.islink(dest / "alias")


def test_old_style_directory_and_volume_label(tmp_path):
    vol = ti("label", b"V")  # type: ignore[arg-type]
    old = ti("olddir/", tarfile.AREGTYPE, 0o750)
    layer = make_tar(vol, old, format=tarfile.GNU_FORMAT)
    dest = tmp_path / "dest"
    apply(dest, layer)
    assert stat.S_ISDIR(os.lstat(dest / "olddir").st_mode) and os.listdir(dest) == ["olddir"]


def test_no_end_of_archive_marker_is_accepted(tmp_path):
    layer = make_tar(f("a", b"x" * 600))
    body = layer[:512 * 3]  # header + 2 data blocks, no zero blocks
    assert apply(tmp_path / "dest", body).diff_id == sha(body)
    assert (tmp_path / "dest/a").read_bytes() == b"x" * 600


@pytest.mark.parametrize("compress", ["gzip", "zstd", "none", "gzip-multimember", "zstd-multiframe"])
def test_compressions_and_diff_id(tmp_path, compress):
    layer = make_tar(f("a", os.urandom(100_000)), f("b", b"hello" * 100_000))
    blob = {
        "gzip": lambda: gzip.compress(layer),
        "zstd": lambda: zstd(layer),
        "none": lambda: layer,
        "gzip-multimember": lambda: gzip.compress(layer[:70_000]) + gzip.compress(layer[70_000:]),
        "zstd-multiframe": lambda: zstd(layer[:70_000]) + zstd(layer[70_000:]),
    }[compress]()
    r = apply(tmp_path / "dest", blob)
    assert r.diff_id == sha(layer) and r.size == len(layer)
    assert (tmp_path / "dest/b").read_bytes() == b"hello" * 100_000


def test_trailing_padding_is_part_of_the_diff_id(tmp_path):
    layer = make_tar(f("a", b"x")) + bytes(4096)  # some writers pad to a record size
    assert apply(tmp_path / "dest", gzip.compress(layer)).diff_id == sha(layer)


def test_media_type(tmp_path):
    layer = make_tar(f("a", b"x"))
    # The magic bytes decide (registries mislabel layers); the type only has to be a layer type.
    assert apply(tmp_path / "d1", gzip.compress(layer), media_type=MEDIA_TYPE_TAR).diff_id == sha(layer)
    assert apply(tmp_path / "d2", layer, media_type=MEDIA_TYPE_GZIP).diff_id == sha(layer)
    assert apply(tmp_path / "d3", zstd(layer), media_type=MEDIA_TYPE_ZSTD).diff_id == sha(layer)
    with pytest.raises(InvalidLayer, match="unsupported layer media type"):
        apply(tmp_path / "d4", layer, media_type="application/vnd.oci.image.layer.v1.tar+encrypted")


def test_expected_diff_id(tmp_path):
    layer = make_tar(f("a", b"x"))
    assert apply(tmp_path / "ok", gzip.compress(layer), expected_diff_id=sha(layer)).diff_id == sha(layer)
    with pytest.raises(DigestMismatch) as e:
        apply(tmp_path / "bad", gzip.compress(layer), expected_diff_id=sha(b"something else"))
    assert sha(layer) in str(e.value) and sha(b"something else") in str(e.value)
    assert isinstance(e.value, BuduError)


# -- apply: broken input --------------------------------------------------------------------------

def test_truncated_gzip(tmp_path):
    blob = gzip.compress(make_tar(f("a", os.urandom(200_000))))
    for cut in (len(blob) - 4, len(blob) // 2, 20):
        with pytest.raises(InvalidLayer, match="truncated"):
            apply(tmp_path / f"d{cut}", blob[:cut])


def test_truncated_gzip_after_the_tar_end(tmp_path):
    """The tar is complete but the gzip trailer (CRC) is missing: still refused."""
    layer = make_tar(f("a", b"x"))
    blob = gzip.compress(layer)[:-8]
    with pytest.raises(InvalidLayer, match="truncated"):
        apply(tmp_path / "d", blob)


def test_truncated_zstd(tmp_path):
    blob = zstd(make_tar(f("a", os.urandom(200_000))))
    for cut in (len(blob) - 3, len(blob) // 2):
        with pytest.raises(InvalidLayer, match="truncated"):
            apply(tmp_path / f"d{cut}", blob[:cut])


def test_truncated_tar(tmp_path):
    layer = make_tar(f("a", os.urandom(5000)))
    with pytest.raises(InvalidLayer, match="truncated.*'a'"):
        apply(tmp_path / "d1", layer[:2048])
    with pytest.raises(InvalidLayer, match="truncated"):
        apply(tmp_path / "d2", layer[:300])  # inside the first header


def test_zstd_with_trailing_garbage(tmp_path):
    blob = zstd(make_tar(f("a", b"x")))
    with pytest.raises(InvalidLayer, match="not valid zstd"):
        apply(tmp_path / "d", blob + b"garbage!")


class Trickle(io.RawIOBase):
    """A stream that hands out a few bytes per read, like a slow socket."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step = data, step

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        out, self.data = self.data[:self.step], self.data[self.step:]
        return out


@pytest.mark.parametrize("compress", ["none", "gzip", "zstd"])
def test_stream_that_returns_short_reads(tmp_path, compress):
    layer = make_tar(f("a", os.urandom(5000)), d("b"), f("b/c", b"c" * 3000))
    blob = {"none": layer, "gzip": gzip.compress(layer), "zstd": zstd(layer)}[compress]
    r = apply_layer(Trickle(blob, 3), str(tmp_path))
    assert r.diff_id == sha(layer) and (tmp_path / "b/c").read_bytes() == b"c" * 3000


def test_corrupt_gzip(tmp_path):
    blob = bytearray(gzip.compress(make_tar(f("a", b"hello" * 10_000))))
    blob[30:40] = b"\xff" * 10
    with pytest.raises(InvalidLayer, match="gzip"):
        apply(tmp_path / "d", bytes(blob))


def test_not_a_tar(tmp_path):
    with pytest.raises(InvalidLayer, match="bad header checksum at its start"):
        apply(tmp_path / "d1", b"this is not a tar archive" * 100)
    layer = bytearray(make_tar(f("a", b"x"), f("b", b"y")))
    layer[1024 + 10] ^= 0xFF  # the second header
    with pytest.raises(InvalidLayer, match="bad header checksum after entry 'a'"):
        apply(tmp_path / "d2", bytes(layer))


def test_bad_numbers(tmp_path):
    layer = bytearray(make_tar(f("a", b"x"), format=tarfile.USTAR_FORMAT))
    layer[124:136] = b"-0000000001\0"  # a negative size
    layer[148:156] = b"%06o\0 " % (sum(layer[:148]) + 256 + sum(layer[156:512]))
    with pytest.raises(InvalidLayer, match="bad number"):
        apply(tmp_path / "d", bytes(layer))


def test_sparse_files_are_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as fh:
        fh.truncate(10 << 20)
        fh.write(b"data")
    for i, fmt in enumerate(("gnu", "posix")):
        out = tmp_path / f"sparse-{fmt}.tar"
        subprocess.run(["tar", "--sparse", f"--format={fmt}", "-C", str(src), "-cf", str(out), "sparse"], check=True)
        with pytest.raises(InvalidLayer, match="sparse files are not supported"):
            apply(tmp_path / f"d{i}", out.read_bytes())


def test_hard_link_to_missing_target(tmp_path):
    with pytest.raises(InvalidLayer, match="not in the layer"):
        apply(tmp_path / "d", make_tar(hard("a", "nowhere")))


def test_dest_must_exist(tmp_path):
    with pytest.raises(LayerError, match="cannot apply a layer"):
        apply_layer(io.BytesIO(make_tar(f("a"))), str(tmp_path / "missing"))


# -- apply: hostile layers ------------------------------------------------------------------------

def snapshot_outside(base, dest) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(base):
        if os.path.abspath(dirpath).startswith(os.path.abspath(dest)):
            continue
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            if p == str(dest):
                continue
            st = os.lstat(p)
            out[p] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_uid)
    return out


HOSTILE = {
    "dotdot": lambda s: [f("../evil", b"x")],
    "dotdot-deep": lambda s: [f("../../../evil", b"x")],
    "absolute": lambda s: [f("/etc/evil-budu-test", b"x")],
    "absolute-sentinel": lambda s: [f(f"{s}/evil", b"x")],
    "inner-dotdot": lambda s: [f("a/../../evil", b"x")],
    "symlink-root": lambda s: [sym("x", "/"), f("x/evil-budu-test", b"x")],
    "symlink-absolute": lambda s: [sym("x", s), f("x/evil", b"x")],
    "symlink-up": lambda s: [sym("x", "../../.."), f("x/evil", b"x")],
    "symlink-up-dir": lambda s: [sym("x", "../../.."), d("x/evil")],
    "symlink-chain": lambda s: [sym("a", "b"), sym("b", "c/../.."), d("c"), f("a/evil", b"x")],
    "symlink-nested-up": lambda s: [d("p/q"), sym("p/q/up", "../../.."), f("p/q/up/evil", b"x")],
    "symlink-then-deep": lambda s: [sym("x", "../../../sentinel"), f("x/sub/evil", b"x")],
    "symlink-as-dir-later": lambda s: [d("x"), f("x/ok", b"fine"), sym("x", "../.."), f("x/evil", b"x")],
    "hardlink-absolute": lambda s: [hard("evil", "/etc/passwd")],
    "hardlink-sentinel": lambda s: [hard("evil", f"{s}/file")],
    "hardlink-dotdot": lambda s: [hard("evil", "../outside")],
    "hardlink-via-symlink": lambda s: [sym("x", s), hard("evil", "x/file")],
    "hardlink-via-relative-symlink": lambda s: [sym("x", "../../../sentinel"), hard("evil", "x/file")],
    "whiteout-dotdot": lambda s: [f(".wh...", b"")],
    "whiteout-through-symlink": lambda s: [sym("x", s), f("x/.wh.file", b"")],
    "opaque-through-symlink": lambda s: [sym("x", s), f("x/.wh..wh..opq", b"")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("compress", ["none", "gzip"])
def test_hostile_layer_is_refused(tmp_path, case, compress):
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "file").write_bytes(b"precious")
    (tmp_path / "outside").write_bytes(b"outside")
    dest = tmp_path / "l1" / "l2" / "l3" / "dest"
    dest.mkdir(parents=True)
    before = snapshot_outside(tmp_path, dest)
    passwd = os.stat("/etc/passwd")
    layer = make_tar(*HOSTILE[case](str(sentinel)))
    if compress == "gzip":
        layer = gzip.compress(layer)
    with pytest.raises(UnsafeLayer) as e:
        apply_layer(io.BytesIO(layer), str(dest))
    msg = str(e.value)
    assert "layer entry" in msg and "\n" not in msg
    assert snapshot_outside(tmp_path, dest) == before
    assert (sentinel / "file").read_bytes() == b"precious" and os.listdir(sentinel) == ["file"]
    assert not os.path.lexists("/evil") and not os.path.lexists("/etc/evil-budu-test")
    assert not os.path.lexists("/evil-budu-test")
    st = os.stat("/etc/passwd")
    assert (st.st_nlink, st.st_mtime_ns, st.st_ctime_ns) == (passwd.st_nlink, passwd.st_mtime_ns, passwd.st_ctime_ns)


def test_hostile_messages_name_the_entry(tmp_path):
    cases = {
        "../evil": (make_tar(f("../evil")), "'../evil'.*contains '..'"),
        "/etc/x": (make_tar(f("/etc/x")), "absolute path '/etc/x'"),
        "symlink": (make_tar(sym("x", "/"), f("x/evil")), "'x/evil' goes through symlink 'x' -> '/'"),
        "hardlink": (make_tar(hard("h", "/etc/passwd")), "'h'.*absolute hard link target '/etc/passwd'"),
        "escape": (make_tar(sym("x", "../.."), f("x/evil")), "'x/evil' resolves outside the layer"),
    }
    for i, (data, pattern) in enumerate(cases.values()):
        with pytest.raises(UnsafeLayer, match=pattern):
            apply(tmp_path / f"d{i}", data)


def test_symlink_loop_is_an_error_not_a_hang(tmp_path):
    with pytest.raises(InvalidLayer, match="too many levels of symbolic links"):
        apply(tmp_path / "d", make_tar(sym("a", "b"), sym("b", "a"), f("a/x", b"")))


def test_absolute_symlinks_are_fine_as_data(tmp_path):
    """A symlink pointing anywhere is only data; what matters is that nothing goes through it."""
    layer = make_tar(sym("etc/mtab", "/proc/self/mounts"), sym("bin", "usr/bin"), d("usr/bin"),
                     f("usr/bin/sh", b"sh"))
    apply(tmp_path / "d", layer)
    assert os.readlink(tmp_path / "d/etc/mtab") == "/proc/self/mounts"


# -- whiteouts ------------------------------------------------------------------------------------

def test_whiteouts_become_overlay_whiteouts(tmp_path):
    layer = make_tar(
        f(".wh.gone", b"", uid=0, gid=0),
        d("etc"), f("etc/.wh.hosts", b""),
        d("var/cache", 0o700), f("var/cache/.wh..wh..opq", b""), f("var/cache/new", b"new"),
        f(".wh..wh.plnk", b""), d(".wh..wh.orph"),  # aufs bookkeeping: ignored
    )
    dest = tmp_path / "dest"
    apply(dest, layer)
    for p in ("gone", "etc/hosts"):
        st = os.lstat(dest / p)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 and os.major(st.st_rdev) == 0, p
    assert os.getxattr(dest / "var/cache", "trusted.overlay.opaque") == b"y"
    assert stat.S_IMODE(os.lstat(dest / "var/cache").st_mode) == 0o700
    assert (dest / "var/cache/new").read_bytes() == b"new"
    assert sorted(os.listdir(dest)) == ["etc", "gone", "var"]
    assert not any(n.startswith(".wh.") for _, ds, fs in os.walk(dest) for n in ds + fs)


# -- diff -----------------------------------------------------------------------------------------

def make_upper(root) -> None:
    """An overlay upper as the kernel leaves it: whiteouts, an opaque dir, links, devices, xattrs."""
    root = str(root)
    os.makedirs(f"{root}/etc")
    with open(f"{root}/etc/hostname", "w") as fh:
        fh.write("box\n")
    os.chmod(f"{root}/etc/hostname", 0o600)
    os.chown(f"{root}/etc/hostname", 10, 20)
    os.link(f"{root}/etc/hostname", f"{root}/etc/hostname.bak")
    os.mknod(f"{root}/etc/removed", stat.S_IFCHR, os.makedev(0, 0))
    os.chmod(f"{root}/etc/removed", 0)
    os.makedirs(f"{root}/var/lib/opaque")
    os.setxattr(f"{root}/var/lib/opaque", "trusted.overlay.opaque", b"y")
    with open(f"{root}/var/lib/opaque/only", "wb") as fh:
        fh.write(os.urandom(70_000))
    os.symlink("../etc/hostname", f"{root}/var/link")
    os.mknod(f"{root}/var/tty", stat.S_IFCHR | 0o620, os.makedev(5, 0))
    os.mkfifo(f"{root}/var/fifo", 0o640)
    with open(f"{root}/bin-tool", "wb") as fh:
        fh.write(b"\x7fELF")
    os.chmod(f"{root}/bin-tool", 0o4755)
    os.setxattr(f"{root}/bin-tool", "user.origin", b"built here")
    os.setxattr(f"{root}/bin-tool", "trusted.overlay.origin", b"\x00\xfb")  # kernel's: never exported
    os.makedirs(f"{root}/" + "deep/" * 30)
    with open(f"{root}/" + "deep/" * 30 + "f" * 200, "w") as fh:
        fh.write("long name")
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for n in filenames + dirnames:
            os.utime(os.path.join(dirpath, n), (MTIME, MTIME), follow_symlinks=False)


def test_diff_overlay_entries(tmp_path):
    upper = tmp_path / "upper"
    upper.mkdir()
    make_upper(upper)
    out = io.BytesIO()
    r = diff_overlay(str(upper), out, compress="none")
    data = out.getvalue()
    assert r.diff_id == sha(data) and r.digest == sha(data) and r.size == len(data)
    assert r.media_type == MEDIA_TYPE_TAR
    members = read_tar(data)
    names = [m.name for m in members]
    by = {m.name: m for m in members}

    def walk(rel: str) -> list[str]:  # depth-first, names sorted in each directory
        out = []
        for n in sorted(os.listdir(upper / rel if rel else upper)):
            p = f"{rel}/{n}" if rel else n
            if stat.S_ISCHR(os.lstat(upper / p).st_mode) and os.lstat(upper / p).st_rdev == 0:
                out.append(f"{rel}/.wh.{n}" if rel else f".wh.{n}")
                continue
            out.append(p)
            if os.path.isdir(upper / p) and not os.path.islink(upper / p):
                if os.getxattr(upper / p, "trusted.overlay.opaque", follow_symlinks=False) if \
                        "trusted.overlay.opaque" in os.listxattr(upper / p) else False:
                    out.append(f"{p}/.wh..wh..opq")
                out += walk(p)
        return out

    assert names == walk("")
    assert "etc/.wh.removed" in by and by["etc/.wh.removed"].isreg() and by["etc/.wh.removed"].size == 0
    assert "etc/removed" not in by
    assert names.index("var/lib/opaque/.wh..wh..opq") == names.index("var/lib/opaque") + 1
    assert "trusted.overlay.opaque" not in str(by["var/lib/opaque"].pax_headers)
    assert by["etc/hostname.bak"].islnk() and by["etc/hostname.bak"].linkname == "etc/hostname"
    assert (by["etc/hostname"].uid, by["etc/hostname"].gid, by["etc/hostname"].mode) == (10, 20, 0o600)
    assert by["var/link"].issym() and by["var/link"].linkname == "../etc/hostname"
    assert by["var/tty"].ischr() and (by["var/tty"].devmajor, by["var/tty"].devminor) == (5, 0)
    assert by["var/fifo"].isfifo() and by["var/fifo"].mode == 0o640
    assert by["bin-tool"].mode == 0o4755
    assert by["bin-tool"].pax_headers.get("SCHILY.xattr.user.origin") == "built here"
    assert not any("overlay" in k for m in members for k in m.pax_headers)
    assert all(m.mtime == MTIME for m in members)
    assert all(m.uname == "" and m.gname == "" for m in members)
    longest = max(names, key=len)
    assert longest.endswith("f" * 200) and by[longest].size == len("long name")


def test_diff_is_deterministic_and_compressions_agree(tmp_path):
    upper = tmp_path / "upper"
    upper.mkdir()
    make_upper(upper)
    results = {}
    for compress in ("none", "gzip", "zstd"):
        outs = []
        for _ in range(2):
            out = io.BytesIO()
            results[compress] = diff_overlay(str(upper), out, compress=compress)
            outs.append(out.getvalue())
        assert outs[0] == outs[1], compress
        blob = outs[0]
        r = results[compress]
        assert r.digest == sha(blob) and r.size == len(blob)
        raw = {"none": lambda: blob, "gzip": lambda: gzip.decompress(blob),
               "zstd": lambda: zstandard.ZstdDecompressor().decompressobj().decompress(blob)}[compress]()
        assert sha(raw) == r.diff_id
    assert len({r.diff_id for r in results.values()}) == 1
    assert results["gzip"].media_type == MEDIA_TYPE_GZIP and results["zstd"].media_type == MEDIA_TYPE_ZSTD
    with pytest.raises(LayerError, match="unknown layer compression"):
        diff_overlay(str(upper), io.BytesIO(), compress="lz4")


def test_diff_then_apply_round_trip(tmp_path):
    upper = tmp_path / "upper"
    upper.mkdir()
    make_upper(upper)
    out = io.BytesIO()
    r = diff_overlay(str(upper), out)
    dest = tmp_path / "dest"
    a = apply(dest, out.getvalue(), expected_diff_id=r.diff_id)
    assert a.diff_id == r.diff_id
    t_upper, t_dest = tree(upper), tree(dest)
    # The whiteout device comes back with mode 0 as overlayfs makes them; all else is identical.
    assert t_dest == t_upper
    # And diffing the applied tree gives the very same layer.
    out2 = io.BytesIO()
    assert diff_overlay(str(dest), out2) == r and out2.getvalue() == out.getvalue()


def test_apply_then_diff_round_trip(tmp_path):
    """A layer made by another tool (tarfile) survives apply -> diff with the same entries."""
    layer = make_tar(
        d("bin"), f("bin/tool", b"tool", mode=0o755, uid=3, gid=4), hard("bin/tool2", "bin/tool"),
        sym("bin/sh", "busybox"), d("etc", 0o750), f("etc/.wh.motd"), d("opt"), f("opt/.wh..wh..opq"),
        f("opt/new", b"n", pax={"SCHILY.xattr.user.k": "v"}), ti("dev/null", tarfile.CHRTYPE, 0o666, devmajor=1, devminor=3),
        d("dev", 0o755),
    )
    dest = tmp_path / "dest"
    apply(dest, layer)
    out = io.BytesIO()
    diff_overlay(str(dest), out, compress="none")
    got, want = tar_entries(out.getvalue()), tar_entries(layer)
    assert set(got) == set(want)
    for name in want:
        if want[name][0] == tarfile.LNKTYPE:  # a hard link's own metadata is its target's
            assert (got[name][0], got[name][6]) == (want[name][0], want[name][6])
            continue
        if name.rsplit("/", 1)[-1].startswith(".wh."):  # regenerated from the device or the xattr
            assert (got[name][0], got[name][2], got[name][3], got[name][5]) == (tarfile.REGTYPE, 0, 0, 0)
            continue
        assert got[name] == want[name], name


def test_diff_refuses_redirect_dirs(tmp_path):
    upper = tmp_path / "upper"
    (upper / "moved").mkdir(parents=True)
    os.setxattr(upper / "moved", "trusted.overlay.redirect", b"/orig")
    with pytest.raises(LayerError, match="redirect"):
        diff_overlay(str(upper), io.BytesIO())


def test_diff_skips_sockets(tmp_path):
    upper = tmp_path / "upper"
    upper.mkdir()
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(upper / "sock"))
        (upper / "file").write_bytes(b"x")
        out = io.BytesIO()
        diff_overlay(str(upper), out, compress="none")
        assert [m.name for m in read_tar(out.getvalue())] == ["file"]
    finally:
        s.close()


def test_diff_missing_upper(tmp_path):
    with pytest.raises(LayerError, match="diffing"):
        diff_overlay(str(tmp_path / "nope"), io.BytesIO())


def test_gzip_output_is_a_standard_gzip(tmp_path):
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "a").write_bytes(b"a" * 1000)
    out = io.BytesIO()
    r = diff_overlay(str(upper), out)
    blob = out.getvalue()
    assert blob[:2] == b"\x1f\x8b" and blob[4:8] == b"\0\0\0\0"  # no timestamp in the header
    assert sha(zlib.decompress(blob, 31)) == r.diff_id


def test_parallel_gzip_is_one_standard_stream_whatever_the_threads(tmp_path, monkeypatch):
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "random.bin").write_bytes(os.urandom(3 << 20))  # stored blocks
    (upper / "text").write_bytes(b"".join(b"line %d of some text\n" % i for i in range(300_000)))
    for i in range(50):
        (upper / f"small{i}").write_bytes(b"x" * i)
    blobs = []
    for cpus in (1, 2, 7):
        monkeypatch.setattr(os, "cpu_count", lambda: cpus)
        out = io.BytesIO()
        r = diff_overlay(str(upper), out)
        blobs.append(out.getvalue())
    assert blobs[0] == blobs[1] == blobs[2]
    gz = tmp_path / "layer.tar.gz"
    gz.write_bytes(blobs[0])
    subprocess.run(["gzip", "-t", str(gz)], check=True)  # CRC and length checked by gzip itself
    raw = subprocess.run(["gzip", "-dc", str(gz)], check=True, capture_output=True).stdout
    assert sha(raw) == r.diff_id and len(blobs[0]) < len(raw) - (5 << 20)


# -- a real overlay mount -------------------------------------------------------------------------

def mount_overlay(lower: str, upper, work, merged) -> None:
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged)],
                   check=True, capture_output=True)


def umount(path) -> None:
    subprocess.run(["umount", str(path)], check=False, capture_output=True)


def test_real_overlay_diff(tmp_path):
    base = make_tar(
        d("etc"), f("etc/passwd", b"root\n"), f("etc/motd", b"hello\n"), f("etc/keep", b"k\n"),
        d("var/cache/apt"), f("var/cache/apt/a.bin", b"a"), f("var/cache/apt/b.bin", b"b"),
        d("usr/share/doc"), f("usr/share/doc/README", b"doc"),
    )
    l1, upper, work, merged = (tmp_path / n for n in ("l1", "upper", "work", "merged"))
    for p in (upper, work, merged):
        p.mkdir()
    apply(l1, gzip.compress(base))
    mount_overlay(str(l1), upper, work, merged)
    try:
        os.unlink(merged / "etc/motd")  # a whiteout
        shutil.rmtree(merged / "var/cache/apt")  # removed and remade: an opaque dir
        (merged / "var/cache/apt").mkdir()
        (merged / "var/cache/apt/c.bin").write_bytes(b"c")
        (merged / "etc/passwd").write_bytes(b"root\nuser\n")  # copied up
        shutil.rmtree(merged / "usr/share/doc")  # a whiteout of a whole dir
        (merged / "new").write_bytes(b"new file")
    finally:
        umount(merged)
    assert stat.S_ISCHR(os.lstat(upper / "etc/motd").st_mode)
    out = io.BytesIO()
    r = diff_overlay(str(upper), out)
    by = {m.name: m for m in read_tar(out.getvalue())}
    assert "etc/.wh.motd" in by and "usr/share/.wh.doc" in by
    assert "var/cache/apt/.wh..wh..opq" in by and "var/cache/apt/c.bin" in by
    assert "var/cache/apt/a.bin" not in by and "etc/keep" not in by
    assert "etc/passwd" in by and "new" in by
    assert not any(".wh." in n and m.size for n, m in by.items())

    # The diff applied as a second layer gives the same merged view as the live overlay did.
    l2 = tmp_path / "l2"
    apply(l2, out.getvalue(), media_type=MEDIA_TYPE_GZIP, expected_diff_id=r.diff_id)
    assert stat.S_ISCHR(os.lstat(l2 / "etc/motd").st_mode) and os.lstat(l2 / "etc/motd").st_rdev == 0
    assert os.getxattr(l2 / "var/cache/apt", "trusted.overlay.opaque") == b"y"
    view = tmp_path / "view"
    view.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={l2}:{l1}", str(view)],
                   check=True, capture_output=True)
    try:
        files = sorted(os.path.relpath(os.path.join(dp, n), view)
                       for dp, ds, fs in os.walk(view) for n in fs)
        assert files == ["etc/keep", "etc/passwd", "new", "var/cache/apt/c.bin"]
        assert (view / "etc/passwd").read_bytes() == b"root\nuser\n"
        assert not os.path.exists(view / "usr/share/doc")
    finally:
        umount(view)
