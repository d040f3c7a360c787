"""Preparing the container's root filesystem from inside its mount namespace.

The order follows the runtime-spec and runc: propagation, bind of the rootfs onto itself, the
config's mounts in order, devices and /dev links, then (after hooks) pivot_root, masked and
read-only paths, and a read-only root last.  Every path inside the rootfs is resolved the way the
container would see it (symlinks followed relative to the rootfs), so a symlink in an image can
never redirect a mount onto the host.
"""

from __future__ import annotations

import errno
import os
import stat

from budu.errors import ConfigError, KernelError
from budu.kernel import syscalls as sc

_FLAGS = {
    "ro": (sc.MS_RDONLY, True), "rw": (sc.MS_RDONLY, False),
    "nosuid": (sc.MS_NOSUID, True), "suid": (sc.MS_NOSUID, False),
    "nodev": (sc.MS_NODEV, True), "dev": (sc.MS_NODEV, False),
    "noexec": (sc.MS_NOEXEC, True), "exec": (sc.MS_NOEXEC, False),
    "sync": (sc.MS_SYNCHRONOUS, True), "async": (sc.MS_SYNCHRONOUS, False),
    "dirsync": (sc.MS_DIRSYNC, True), "remount": (sc.MS_REMOUNT, True),
    "mand": (sc.MS_MANDLOCK, True), "nomand": (sc.MS_MANDLOCK, False),
    "noatime": (sc.MS_NOATIME, True), "atime": (sc.MS_NOATIME, False),
    "nodiratime": (sc.MS_NODIRATIME, True), "diratime": (sc.MS_NODIRATIME, False),
    "relatime": (sc.MS_RELATIME, True), "norelatime": (sc.MS_RELATIME, False),
    "strictatime": (sc.MS_STRICTATIME, True), "nostrictatime": (sc.MS_STRICTATIME, False),
    "lazytime": (sc.MS_LAZYTIME, True), "nolazytime": (sc.MS_LAZYTIME, False),
    "nosymfollow": (sc.MS_NOSYMFOLLOW, True), "symfollow": (sc.MS_NOSYMFOLLOW, False),
    "bind": (sc.MS_BIND, True), "rbind": (sc.MS_BIND | sc.MS_REC, True),
}
_PROPAGATION = {
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED, "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}
_IGNORED = frozenset(("tmpcopyup", "defaults", "_netdev", "auto", "noauto", "user", "nouser"))

DEFAULT_DEVICES = (
    # path, type, major, minor, mode
    ("/dev/null", "c", 1, 3, 0o666),
    ("/dev/zero", "c", 1, 5, 0o666),
    ("/dev/full", "c", 1, 7, 0o666),
    ("/dev/random", "c", 1, 8, 0o666),
    ("/dev/urandom", "c", 1, 9, 0o666),
    ("/dev/tty", "c", 5, 0, 0o666),
)
DEV_LINKS = (("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
             ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"))


class MountSpec:
    __slots__ = ("flags", "clear", "propagation", "data", "recursive_ro")

    def __init__(self, options: list[str]) -> None:
        self.flags = 0
        self.clear = 0
        self.propagation: list[int] = []
        data: list[str] = []
        for opt in options:
            if opt in _FLAGS:
                bit, on = _FLAGS[opt]
                if on:
                    self.flags |= bit
                else:
                    self.flags &= ~bit
                    self.clear |= bit
            elif opt in _PROPAGATION:
                self.propagation.append(_PROPAGATION[opt])
            elif opt in _IGNORED:
                continue
            elif opt in ("idmap", "ridmap") or opt.startswith("X-"):
                if opt.startswith("X-"):
                    continue
                raise ConfigError(f"mount option {opt!r} is not supported by budu-runtime")
            else:
                data.append(opt)
        self.data = ",".join(data)


def secure_join(root: str, path: str) -> str:
    """Resolve `path` inside `root` as if `root` were `/`: symlinks cannot leave it."""
    parts = [p for p in path.split("/") if p and p != "."]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        full = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 255:
                raise ConfigError(f"{path}: too many levels of symbolic links")
            target = os.readlink(full)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _mkdir_in(root: str, path: str) -> None:
    """mkdir -p for a path already resolved inside root, refusing symlinks on the way."""
    rel = os.path.relpath(path, root)
    cur = root
    for part in rel.split("/"):
        if part in ("", "."):
            continue
        cur = os.path.join(cur, part)
        try:
            os.mkdir(cur, 0o755)
        except FileExistsError:
            if os.path.islink(cur):
                raise ConfigError(f"{cur}: symlink appeared during mount setup") from None


def _ensure_target(root: str, dest: str, is_dir: bool) -> str:
    target = secure_join(root, dest)
    if os.path.lexists(target):
        return target
    _mkdir_in(root, os.path.dirname(target))
    if is_dir:
        os.mkdir(target, 0o755)
    else:
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    return target


def prepare_root(rootfs: str, propagation: str) -> None:
    """Make the new mount namespace private enough for pivot_root, then bind the rootfs to itself."""
    flag = _PROPAGATION.get(propagation) or (sc.MS_SLAVE | sc.MS_REC)
    sc.mount(None, "/", None, flag)
    if not flag & sc.MS_REC or flag & sc.MS_SHARED:
        _make_parent_private(rootfs)  # else the recursive change above left no shared mount
    sc.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC)


def _make_parent_private(path: str) -> None:
    """pivot_root refuses a new root whose parent mount is shared: make that mount private."""
    mountpoint = _mountpoint_of(path)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if fields[4] == mountpoint and "shared:" in line.split(" - ")[0]:
                    sc.mount(None, mountpoint, None, sc.MS_PRIVATE)
                    return
    except OSError:
        pass


def _mountpoint_of(path: str) -> str:
    path = os.path.realpath(path)
    while path != "/" and not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def mount_all(rootfs: str, mounts: list[dict], cgroup_path: str | None, in_userns: bool) -> None:
    for m in mounts:
        mount_one(rootfs, m, cgroup_path, in_userns)


def mount_one(rootfs: str, m: dict, cgroup_path: str | None, in_userns: bool) -> None:
    dest = m["destination"]
    mtype = m.get("type") or ""
    source = m.get("source") or mtype or "none"
    opts = MountSpec(m.get("options") or [])
    where = f"mount {dest}"
    if mtype == "bind":
        opts.flags |= sc.MS_BIND
    if opts.flags & sc.MS_BIND:
        if not os.path.exists(source):
            raise ConfigError(f"{where}: source {source!r} does not exist")
        target = _ensure_target(rootfs, dest, os.path.isdir(source))
        sc.mount(source, target, None, opts.flags & (sc.MS_BIND | sc.MS_REC))
        rest = opts.flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
        if rest or opts.clear:
            _remount_bind(target, rest)
    elif mtype == "cgroup":
        target = _ensure_target(rootfs, dest, True)
        _mount_cgroup(target, opts, cgroup_path)
    else:
        target = _ensure_target(rootfs, dest, True)
        flags = opts.flags
        if mtype == "sysfs" and in_userns:
            # sysfs in a user namespace without its own netns is refused: bind the host's instead
            try:
                sc.mount("sysfs", target, "sysfs", flags, opts.data or None)
            except OSError:
                sc.mount("/sys", target, None, sc.MS_BIND | sc.MS_REC)
                _remount_bind(target, flags)
        elif mtype == "mqueue":
            try:
                sc.mount(source, target, mtype, flags, opts.data or None)
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.EINVAL):
                    raise
                sc.mount("/dev/mqueue", target, None, sc.MS_BIND | sc.MS_REC)
        else:
            sc.mount(source, target, mtype or None, flags, opts.data or None)
    for prop in opts.propagation:
        sc.mount(None, target, None, prop)


def _remount_bind(target: str, flags: int) -> None:
    try:
        sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | flags)
    except OSError as e:
        if e.errno != errno.EPERM:
            raise
        # locked flags (nosuid, nodev, noexec...) from the source mount must be kept
        sv = os.statvfs(target)
        sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | flags | _statvfs_flags(sv.f_flag))


def _statvfs_flags(f: int) -> int:
    # ST_* bits coincide with MS_* bits for these
    out = 0
    for st_bit, ms_bit in ((1, sc.MS_RDONLY), (2, sc.MS_NOSUID), (4, sc.MS_NODEV), (8, sc.MS_NOEXEC),
                           (1024, sc.MS_NOATIME), (2048, sc.MS_NODIRATIME), (4096, sc.MS_RELATIME)):
        if f & st_bit:
            out |= ms_bit
    return out


def _mount_cgroup(target: str, opts: MountSpec, cgroup_path: str | None) -> None:
    """cgroup v2: a cgroup2 mount (scoped by the cgroup namespace).  v1: a tmpfs with one
    bind mount per controller of the container's own cgroup, as runc and Docker lay it out."""
    flags = opts.flags | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
    hierarchies = _cgroup_mounts()
    if "" in hierarchies and hierarchies[""] == "/sys/fs/cgroup":
        try:
            sc.mount("cgroup2", target, "cgroup2", flags)
        except OSError:
            sc.mount(os.path.join("/sys/fs/cgroup", (cgroup_path or "/").lstrip("/")), target, None,
                     sc.MS_BIND | sc.MS_REC)
            _remount_bind(target, flags)
        return
    sc.mount("tmpfs", target, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, "mode=755")
    for name, host_mp in sorted(hierarchies.items()):
        sub_name = os.path.basename(host_mp)
        sub = os.path.join(target, sub_name)
        try:
            os.mkdir(sub, 0o755)  # in the tmpfs just mounted
        except FileExistsError:
            pass
        src = os.path.join(host_mp, (cgroup_path or "/").lstrip("/"))
        if not os.path.isdir(src):
            src = host_mp
        sc.mount(src, sub, None, sc.MS_BIND | sc.MS_REC)
        _remount_bind(sub, flags)
        if "," in sub_name:
            for part in sub_name.split(","):
                link = os.path.join(target, part)
                if not os.path.lexists(link):
                    os.symlink(sub_name, link)
    if opts.flags & sc.MS_RDONLY:
        sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)


def _cgroup_mounts() -> dict[str, str]:
    """Controller-list (e.g. 'cpu', 'name=systemd', '' for v2) → host mount point."""
    out: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fstype, _src, superopts = (post.split() + ["", "", ""])[:3]
            mp = pre.split()[4]
            if fstype == "cgroup2":
                out[""] = mp
            elif fstype == "cgroup":
                ctrls = [o for o in superopts.split(",") if o not in ("rw", "ro") and not o.startswith("release_agent")]
                out[",".join(ctrls)] = mp
    return out


def covers_dev(rootfs: str, mounts: list[dict]) -> bool:
    """Whether any of `mounts` could hide /dev's nodes: a destination at /dev, below it or above
    it, as written or as it resolves inside the rootfs now."""
    dev = secure_join(rootfs, "/dev")
    for m in mounts:
        for target in (os.path.normpath(rootfs + "/" + m["destination"]), secure_join(rootfs, m["destination"])):
            if target == dev or target.startswith(dev + "/") or dev.startswith(target.rstrip("/") + "/"):
                return True
    return False


def create_devices(rootfs: str, devices: list[dict], in_userns: bool, bind_dev: bool) -> None:
    """Default devices unless /dev comes from the host, then the config's own devices."""
    todo: list[tuple[str, str, int, int, int, int, int]] = []
    if not bind_dev:
        for path, typ, major, minor, mode in DEFAULT_DEVICES:
            todo.append((path, typ, major, minor, mode, 0, 0))
    for d in devices:
        mode = d.get("fileMode", 0o666)
        todo.append((d["path"], d["type"], d.get("major", 0), d.get("minor", 0), mode, d.get("uid", 0), d.get("gid", 0)))
    made: set[str] = set()
    for path, typ, major, minor, mode, uid, gid in todo:
        target = secure_join(rootfs, path)
        parent = os.path.dirname(target)
        if parent not in made:  # most devices share /dev
            _mkdir_in(rootfs, parent)
            made.add(parent)
        if in_userns:
            # mknod is never allowed in a user namespace: bind the host's node instead
            if not os.path.lexists(target):
                os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
            sc.mount(path, target, None, sc.MS_BIND)
            continue
        kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[typ]
        if os.path.lexists(target):
            os.unlink(target)
        try:
            os.mknod(target, kind | (mode & 0o7777), os.makedev(major, minor))
            os.chmod(target, mode & 0o7777)
            os.chown(target, uid, gid)
        except OSError as e:
            raise KernelError(f"device {path} ({typ} {major}:{minor}): {e.strerror}") from None


def setup_dev_links(rootfs: str) -> None:
    for src, dst in DEV_LINKS:
        target = os.path.join(rootfs, dst.lstrip("/"))
        if not os.path.lexists(target):
            os.symlink(src, target)
    if os.path.exists("/proc/kcore"):
        core = os.path.join(rootfs, "dev/core")
        if not os.path.lexists(core):
            os.symlink("/proc/kcore", core)
    ptmx = os.path.join(rootfs, "dev/ptmx")
    if os.path.isdir(os.path.join(rootfs, "dev/pts")):
        if os.path.lexists(ptmx):
            os.unlink(ptmx)
        os.symlink("pts/ptmx", ptmx)


def pivot(rootfs: str) -> None:
    """pivot_root(".", ".") and detach the old root: no directory for it is left in the rootfs."""
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new)
        sc.pivot_root(".", ".")
        os.fchdir(old)
        sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
        sc.umount(".", sc.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old)
        os.close(new)


def mask_paths(paths: list[str]) -> None:
    for p in paths:
        try:
            if os.path.isdir(p) and not os.path.islink(p):
                sc.mount("tmpfs", p, "tmpfs", sc.MS_RDONLY)
            else:
                sc.mount("/dev/null", p, None, sc.MS_BIND)
        except FileNotFoundError:
            continue
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                raise


def readonly_paths(paths: list[str]) -> None:
    for p in paths:
        try:
            sc.mount(p, p, None, sc.MS_BIND | sc.MS_REC)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                continue
            raise
        _remount_bind(p, sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)


def finish_root(readonly: bool, propagation: str) -> None:
    if readonly:
        _remount_bind("/", sc.MS_RDONLY)
    if propagation in _PROPAGATION and propagation not in ("slave", "rslave"):
        sc.mount(None, "/", None, _PROPAGATION[propagation])
