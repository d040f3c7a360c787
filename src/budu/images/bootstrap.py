"""Base images made on this host, without a registry.

`bootstrap_busybox` builds a busybox image from the host's static busybox (Debian's busybox-static):
the binary, a symlink per applet, passwd/group and the usual empty directories.  It needs no
network and is reproducible: the same busybox gives the same image id (every time stamp is the
binary's mtime, or $SOURCE_DATE_EPOCH).

`bootstrap_debian` runs `debootstrap --variant=minbase` into a private directory, trims what a
container image does not carry (apt lists and caches, device nodes, the host's resolv.conf and
hostname) and stores the tree as one layer.  The mirror is read from the host's apt sources, so it
goes wherever this machine's apt goes.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tarfile
import tempfile
from collections import deque
from typing import TextIO
from urllib.parse import urlsplit

from budu.errors import BuduError, ConfigError, NotFound
from budu.images.archive import create_image, now_rfc3339
from budu.images.service import Images, host_platform
from budu.images.store import Image

BUSYBOX = "/bin/busybox"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
GROUP = "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"
_PT_INTERP = 3


def _tmp_dir(images: Images) -> str:
    d = os.path.join(images.root, "tmp")
    os.makedirs(d, mode=0o700, exist_ok=True)
    return d


# ---------------------------------------------------------------------------------------------
# busybox
# ---------------------------------------------------------------------------------------------

def is_static(path: str) -> bool:
    """Whether the ELF executable at `path` needs no dynamic loader (has no PT_INTERP)."""
    try:
        with open(path, "rb") as f:
            ident = f.read(64)
            if len(ident) < 52 or ident[:4] != b"\x7fELF":
                raise ConfigError(f"{path} is not an ELF executable")
            bits64, order = ident[4] == 2, "<" if ident[5] == 1 else ">"
            if bits64:
                phoff, = struct.unpack_from(order + "Q", ident, 32)
                phentsize, phnum = struct.unpack_from(order + "HH", ident, 54)
            else:
                phoff, = struct.unpack_from(order + "I", ident, 28)
                phentsize, phnum = struct.unpack_from(order + "HH", ident, 42)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except FileNotFoundError:
        raise NotFound(f"{path} does not exist (apt-get install busybox-static)") from None
    if len(table) < phentsize * phnum:
        raise ConfigError(f"{path} is a truncated ELF file")
    return not any(struct.unpack_from(order + "I", table, i * phentsize)[0] == _PT_INTERP for i in range(phnum))


def _busybox_tar(out, busybox: str, applets: list[str], mtime: int) -> None:  # noqa: ANN001
    def entry(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.size, info.mtime, info.linkname = kind, mode, size, mtime, link
        return info

    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(entry("bin", tarfile.DIRTYPE, 0o755))
        with open(busybox, "rb") as f:
            tar.addfile(entry("bin/busybox", tarfile.REGTYPE, 0o755, os.fstat(f.fileno()).st_size), f)
        for applet in applets:
            tar.addfile(entry(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox"))
        for d, mode in (("dev", 0o755), ("etc", 0o755)):
            tar.addfile(entry(d, tarfile.DIRTYPE, mode))
        for name, text in (("etc/group", GROUP), ("etc/passwd", PASSWD)):
            data = text.encode()
            tar.addfile(entry(name, tarfile.REGTYPE, 0o644, len(data)), _bytes(data))
        for d, mode in (("home", 0o755), ("proc", 0o555), ("root", 0o700), ("sys", 0o555), ("tmp", 0o1777)):
            tar.addfile(entry(d, tarfile.DIRTYPE, mode))


def _bytes(data: bytes):  # noqa: ANN202
    import io

    return io.BytesIO(data)


def bootstrap_busybox(images: Images, ref: str = "busybox:latest", busybox: str = BUSYBOX) -> Image:
    """A busybox image from the host's static busybox: /bin/busybox and its applet links,
    /etc/passwd and /etc/group, /tmp (1777), /root, /home, /proc, /sys, /dev; Cmd ["sh"]."""
    if not is_static(busybox):
        raise ConfigError(f"{busybox} is dynamically linked: it would not run in an image of its own "
                          "(apt-get install busybox-static)")
    try:
        listed = subprocess.run([busybox, "--list"], capture_output=True, text=True, timeout=30, check=True)
        banner = subprocess.run([busybox], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise BuduError(f"cannot run {busybox} --list: {e}") from None
    applets = sorted({a for a in listed.stdout.split() if a and "/" not in a and a != "busybox"})
    if "sh" not in applets:
        raise ConfigError(f"{busybox} has no sh applet")
    version = (banner.stdout or banner.stderr).splitlines()[0].strip() if (banner.stdout or banner.stderr) else "BusyBox"
    version = version.removesuffix(" multi-call binary.")
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    mtime = int(epoch) if epoch and epoch.isdigit() else int(os.stat(busybox).st_mtime)
    created = now_rfc3339(mtime)
    config = {
        "architecture": host_platform().architecture, "os": "linux", "created": created,
        "config": {"Env": [PATH_ENV], "Cmd": ["sh"]},
        "history": [{"created": created, "created_by": f"budu image bootstrap busybox: {version}"}],
    }
    with tempfile.TemporaryFile(dir=_tmp_dir(images)) as tar:
        _busybox_tar(tar, busybox, applets, mtime)
        tar.seek(0)
        return create_image(images, [tar], config, ref)


# ---------------------------------------------------------------------------------------------
# Debian
# ---------------------------------------------------------------------------------------------

def _deb822(text: str) -> list[dict[str, str]]:
    stanzas, cur, key = [], {}, None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if cur:
                stanzas.append(cur)
            cur, key = {}, None
            continue
        if line[0] in " \t" and key:
            cur[key] += " " + line.strip()
            continue
        k, sep, v = line.partition(":")
        if sep:
            key = k.strip().lower()
            cur[key] = v.strip()
    if cur:
        stanzas.append(cur)
    return stanzas


_ONE_LINE = re.compile(r"^\s*(deb|deb-src)\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)")


def apt_sources(apt_root: str = "/") -> list[tuple[tuple[str, ...], str, tuple[str, ...]]]:
    """The host's apt sources as (types, uri, suites), in apt's reading order: sources.list, then
    sources.list.d/*.list and *.sources by name.  Disabled deb822 stanzas are left out."""
    etc = os.path.join(apt_root, "etc", "apt")
    paths = [os.path.join(etc, "sources.list")]
    d = os.path.join(etc, "sources.list.d")
    if os.path.isdir(d):
        paths += [os.path.join(d, n) for n in sorted(os.listdir(d)) if n.endswith((".list", ".sources"))]
    out: list[tuple[tuple[str, ...], str, tuple[str, ...]]] = []
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        if path.endswith(".sources"):
            for s in _deb822(text):
                if s.get("enabled", "yes").lower() in ("no", "false", "0"):
                    continue
                types = tuple(s.get("types", "").split())
                for uri in s.get("uris", "").split():
                    out.append((types, uri, tuple(s.get("suites", "").split())))
        else:
            for line in text.splitlines():
                m = _ONE_LINE.match(line.split("#", 1)[0])
                if m:
                    out.append(((m.group(1),), m.group(2), (m.group(3),)))
    return out


def detect_mirror(apt_root: str = "/") -> str:
    """The Debian mirror the host's apt uses (the first http(s) `deb` source with a `debian` path
    component: deb.debian.org/debian, a country mirror, snapshot.debian.org/archive/debian/...);
    deb.debian.org if there is none."""
    for types, uri, _ in apt_sources(apt_root):
        if "deb" not in types:
            continue
        u = urlsplit(uri)
        if u.scheme in ("http", "https") and "debian" in [s for s in u.path.split("/") if s]:
            return uri.rstrip("/")
    return DEFAULT_MIRROR


def debootstrap_command(suite: str, target: str, mirror: str, arch: str | None = None) -> list[str]:
    if not re.fullmatch(r"[a-z][a-z0-9.-]*", suite):
        raise ConfigError(f"invalid Debian suite {suite!r} (e.g. bookworm, trixie, stable)")
    if urlsplit(mirror).scheme not in ("http", "https", "file"):
        raise ConfigError(f"invalid mirror {mirror!r}: want an http(s) URL, e.g. {DEFAULT_MIRROR}")
    return ["debootstrap", "--variant=minbase", *([f"--arch={arch}"] if arch else []), suite, target, mirror]


def _mounts_below(path: str) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == path or mp.startswith(path + "/"):
                out.append(mp)
    return out


def _unmount_below(path: str) -> None:
    """What a failed debootstrap may leave mounted (proc, sys, device binds), deepest first."""
    from budu.kernel import syscalls

    for mp in sorted(_mounts_below(path), key=len, reverse=True):
        try:
            syscalls.umount(mp, syscalls.MNT_DETACH)
        except OSError:
            pass


def _trim_rootfs(root: str) -> None:
    """Leave out what an image does not carry: apt lists and caches, device nodes (the runtime
    makes /dev), the host's hostname and resolver config (the engine provides both)."""
    def clear(d: str, keep: tuple[str, ...] = ()) -> None:
        p = os.path.join(root, d)
        if not os.path.isdir(p):
            return
        for name in os.listdir(p):
            if name in keep:
                continue
            full = os.path.join(p, name)
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.unlink(full)

    clear("var/lib/apt/lists", keep=("lock", "partial"))
    clear("var/cache/apt/archives", keep=("lock", "partial"))
    for name in ("pkgcache.bin", "srcpkgcache.bin"):
        try:
            os.unlink(os.path.join(root, "var/cache/apt", name))
        except FileNotFoundError:
            pass
    clear("dev")
    for name in ("etc/hostname", "etc/resolv.conf"):
        p = os.path.join(root, name)
        if os.path.lexists(p):
            os.unlink(p)
            with open(p, "w"):
                pass


def bootstrap_debian(images: Images, suite: str = "bookworm", ref: str | None = None, mirror: str | None = None,
                     log: TextIO | None = None, arch: str | None = None) -> Image:
    """A Debian image of one layer, made by `debootstrap --variant=minbase` from `mirror` (the
    host's apt mirror by default); tagged `ref`, `debian:<suite>` by default.  debootstrap's
    output goes to `log` as it runs."""
    if shutil.which("debootstrap") is None:
        raise NotFound("debootstrap is not installed (apt-get install debootstrap)")
    mirror = mirror or detect_mirror()
    ref = ref or f"debian:{suite}"
    tmp = tempfile.mkdtemp(prefix=f"debootstrap-{os.getpid()}-", dir=_tmp_dir(images))
    target = os.path.join(tmp, "rootfs")
    cmd = debootstrap_command(suite, target, mirror, arch)
    try:
        tail: deque[str] = deque(maxlen=20)
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              text=True, errors="replace") as p:
            for line in p.stdout:
                tail.append(line.rstrip("\n"))
                if log is not None:
                    log.write(line)
                    log.flush()
        if p.returncode != 0:
            errors = [t for t in tail if t.startswith(("E:", "W: Failure"))] or [t for t in tail if t.strip()]
            why = errors[-1] if errors else "no output"
            raise BuduError(f"debootstrap {suite} from {mirror} failed (exit status {p.returncode}): {why}")
        _trim_rootfs(target)
        from budu.images.layers import diff_overlay

        created = now_rfc3339()
        config = {
            "architecture": arch or host_platform().architecture, "os": "linux", "created": created,
            "config": {"Env": [PATH_ENV], "Cmd": ["bash"]},
            "history": [{"created": created, "created_by": " ".join(cmd[:-2] + ["<rootfs>", mirror])}],
        }
        with tempfile.TemporaryFile(dir=tmp) as layer:
            diff_overlay(target, layer, compress="gzip")
            layer.seek(0)
            return create_image(images, [layer], config, ref)
    finally:
        _unmount_below(target)
        shutil.rmtree(tmp, ignore_errors=True)
