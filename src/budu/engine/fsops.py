"""A container's files from outside it: docker's cp, diff, export and commit.

A container is untrusted.  Its symlinks may point anywhere (`/etc/evil -> /`,
`-> ../../../../tmp/x`), and while it runs it may swap a directory for a symlink between two of
our calls.  So no path inside a container ever reaches the host's own path resolution:

* a path the user names is resolved by the kernel, openat2(RESOLVE_IN_ROOT) relative to a
  directory fd of the container's root: symlinks, absolute or climbing with `..`, resolve as they
  would inside the container and cannot leave it (RESOLVE_NO_MAGICLINKS: nor through its /proc);
* everything below that is reached one name at a time from directory fds, with O_NOFOLLOW;
* an entry is held as an O_PATH fd and fstat'ed; a file is reopened for reading (through
  /proc/self/fd) only once fstat says it is a regular file, so a fifo or device swapped in is
  never opened;
* new entries are made with the *at calls on directory fds, files with O_CREAT|O_EXCL (an
  existing one is unlinked first, as tar does), and owners, modes and times are set on fds or by
  name without following.

The host side of `cp` runs the same code with "/" as its root, so both directions share one set
of docker's rules: a trailing `/.` copies a directory's contents, a directory onto an existing
directory nests, a file onto a directory goes inside it, the destination's parent must exist.
Ownership follows docker's documentation: what is copied into a container belongs to root,
what is copied out to the user running budu, and `archive` keeps the source's uid/gid.  As budu
copies out as root (`sudo docker cp`), a container's device nodes are not made on the host and
setuid/setgid bits are dropped unless `archive` keeps the owner too.

`diff` and `commit` read the overlay upper directory: diff tells A from C by looking each path up
in the image's layers (whiteouts and opaque directories honoured); commit makes the upper one
more layer (layers.diff_overlay) on top of the image's and records a new image.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import posixpath
import stat
import tarfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

from budu.errors import BuduError, NotFound, StateError
from budu.images.layers import _header as tar_header  # the project's one tar header writer

# -- openat2 --------------------------------------------------------------------------------------

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
_SYS_OPENAT2 = 437  # the same number on every architecture (added after the syscall tables were unified)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def openat2(dirfd: int, path: str | bytes, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): an fd for `path` relative to `dirfd`, resolved under the `resolve` rules.
    Always O_CLOEXEC.  EAGAIN (a rename raced a RESOLVE_IN_ROOT walk) is retried."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    raw = os.fsencode(path)
    for _ in range(32):
        fd = _libc.syscall(_SYS_OPENAT2, ctypes.c_int(dirfd), ctypes.c_char_p(raw), ctypes.byref(how),
                           ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err not in (errno.EINTR, errno.EAGAIN):
            break
    raise OSError(err, os.strerror(err), os.fsdecode(raw))


_PSEUDO_FS = {0x9FA0, 0x62656572, 0x27E0EB, 0x63677270, 0x1CD1, 0x19800202, 0x64626720, 0x73636673,
              0xCAFE4A11, 0x74726163, 0x42494E4D, 0x6165676C, 0x62656570, 0x65735543, 0xDE5E81E4,
              0xF97CFF8C, 0x6E736673}  # proc sysfs cgroup cgroup2 devpts mqueue debugfs securityfs bpf ...


def _pseudo_fs(fd: int) -> bool:
    """Is `fd` on one of the kernel's pseudo filesystems (proc, sys, cgroup, devpts...)?  A copy
    never walks into them: reading some of their files blocks or has side effects."""
    buf = ctypes.create_string_buffer(256)
    if _libc.fstatfs(ctypes.c_int(fd), buf) != 0:
        return False
    return int.from_bytes(buf.raw[:8], "little") in _PSEUDO_FS


# -- errors -----------------------------------------------------------------------------------------

class CopyError(BuduError):
    """cp cannot do what it was asked; the message is docker's."""

    def __init__(self, message: str, daemon_style: bool = False) -> None:
        super().__init__(message)
        self.daemon_style = daemon_style


class PathNotFound(NotFound):
    """A path named to cp does not exist (in the container, or on the host)."""

    def __init__(self, message: str, daemon_style: bool = False) -> None:
        super().__init__(message)
        self.daemon_style = daemon_style


# -- a tree with a root of its own -----------------------------------------------------------------

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_O_DIR_NOFOLLOW = _O_DIR | os.O_NOFOLLOW
_O_NODE = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20
_MAX_LINKS = 40
_KEEP = "keep"  # owner: the source's uid/gid


class Tree:
    """A directory that paths are resolved in as if it were `/`: a container's root (`container`
    is the name the user gave it, for messages) or the host's "/"."""

    def __init__(self, path: str, container: str | None = None, read_only: bool = False) -> None:
        self.fd = os.open(path, _O_DIR)
        self.container = container
        self.read_only = read_only

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self, path: str, flags: int) -> int:
        return openat2(self.fd, path or "/", flags, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)

    def where(self, path: str) -> str:
        return f"{self.container}:{path}" if self.container is not None else path

    # docker's messages: the daemon's for a container, the CLI's for the host
    def not_found(self, path: str) -> BuduError:
        if self.container is not None:
            return PathNotFound(f"Could not find the file {path} in container {self.container}", daemon_style=True)
        return PathNotFound(f"lstat {path}: no such file or directory")

    def no_parent(self, parent: str) -> BuduError:
        if self.container is not None:
            return self.not_found(parent)
        return CopyError(f'invalid output path: directory "{parent}" does not exist')

    def error(self, message: str) -> CopyError:
        return CopyError(message, daemon_style=self.container is not None)


def container_path(path: str) -> str:
    """A path as the container sees it: relative to its root, trailing `/` or `/.` kept (docker's
    filepath.Join("/", path) + PreserveTrailingDotOrSeparator)."""
    return _preserve_trailing(posixpath.normpath(posixpath.join("/", path)), path)


def host_path(path: str) -> str:
    """An absolute host path, trailing `/` or `/.` kept (docker's resolveLocalPath)."""
    return _preserve_trailing(os.path.abspath(path), path)


def _preserve_trailing(clean: str, original: str) -> str:
    if original.endswith("/.") and not clean.endswith("/."):
        return clean.rstrip("/") + "/."
    if original.endswith("/") and not clean.endswith("/"):
        return clean + "/"
    return clean


def _split(path: str) -> tuple[str, str]:
    """("/a/b/", "/a/b/.", "/a/b") -> ("/a", "b"); "/" -> ("/", "")."""
    clean = path
    if clean.endswith("/."):
        clean = clean[:-2]
    clean = clean.rstrip("/")
    if not clean:
        return "/", ""
    parent, _, name = clean.rpartition("/")
    return parent or "/", name


def _reopen(fd: int, flags: int) -> int:
    """Open what the O_PATH fd `fd` holds, the very same inode (never a path lookup)."""
    return os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC | os.O_NOCTTY)


# -- what to copy -----------------------------------------------------------------------------------

@dataclass
class _Source:
    fd: int  # O_PATH; the symlink itself unless followed
    st: os.stat_result
    name: str  # the name the copy takes: the path's last component ("-L" keeps the link's name)
    contents: bool  # `dir/.`: what is inside the directory, not the directory

    def close(self) -> None:
        os.close(self.fd)


def _source(tree: Tree, path: str, follow: bool) -> _Source:
    contents = path.endswith("/.")
    _, name = _split(path)
    if not name:  # the root itself: its contents
        contents = True
    follow = follow or contents or path.endswith("/")
    try:
        fd = tree.open(path, os.O_PATH | (0 if follow else os.O_NOFOLLOW))
    except FileNotFoundError:
        raise tree.not_found(path) from None
    except NotADirectoryError:
        raise tree.error(f"lstat {path}: not a directory") from None
    except OSError as e:
        raise tree.error(f"lstat {path}: {e.strerror}") from None
    st = os.fstat(fd)
    if contents and not stat.S_ISDIR(st.st_mode):
        os.close(fd)
        raise tree.error(f"lstat {path}: not a directory")
    return _Source(fd, st, "." if contents else name, contents)


def stat_path(tree: Tree, path: str, follow: bool = False) -> os.stat_result:
    """docker's ContainerStatPath: the entry at `path` (a symlink itself unless `follow`)."""
    s = _source(tree, path, follow)
    s.close()
    return s.st


# -- where to copy it -------------------------------------------------------------------------------

@dataclass
class _Dest:
    path: str  # as resolved (a symlink's target once followed), for messages
    exists: bool
    is_dir: bool
    fd: int  # the directory itself if it is one, else its parent
    name: str  # in the parent (unless it is an existing directory)
    asserts_dir: bool  # written with a trailing `/` or `/.`

    def close(self) -> None:
        os.close(self.fd)


def _destination(tree: Tree, path: str) -> _Dest:
    """Resolve the destination as docker's cp does: a symlink at the end is followed (its target
    joined to the link's directory by name, as docker does), the parent must exist."""
    asserts_dir = path.endswith(("/", "/."))
    for _ in range(_MAX_LINKS):
        parent, name = _split(path)
        if not name:
            return _Dest(path, True, True, tree.open("/", _O_DIR), "", asserts_dir)
        try:
            pfd = tree.open(parent, _O_DIR)
        except (FileNotFoundError, NotADirectoryError):
            raise tree.no_parent(parent) from None
        except OSError as e:  # ELOOP: too many links, or a magic link (/proc/self/root...) refused
            raise tree.error(f"lstat {parent}: {e.strerror}") from None
        try:
            try:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                return _Dest(path, False, False, pfd, name, asserts_dir)
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(name, dir_fd=pfd)
                os.close(pfd)
                path = target if target.startswith("/") else posixpath.join(parent, target)
                continue
            if stat.S_ISDIR(st.st_mode):
                fd = os.open(name, _O_DIR_NOFOLLOW, dir_fd=pfd)
                os.close(pfd)
                return _Dest(path, True, True, fd, "", asserts_dir)
            if not stat.S_ISREG(st.st_mode):
                raise tree.error(f'destination "{tree.where(path)}" must be a directory or a regular file')
            if asserts_dir:
                raise tree.error(f"lstat {path}: not a directory")
            return _Dest(path, True, False, pfd, name, asserts_dir)
        except BaseException:
            try:
                os.close(pfd)
            except OSError:
                pass
            raise
    raise tree.error(f"{path}: too many levels of symbolic links")


# -- writing a tree -----------------------------------------------------------------------------------

class _Meta(NamedTuple):
    """What an entry carries, whether from lstat or from a tar header."""

    st_mode: int
    st_uid: int
    st_gid: int
    st_size: int
    st_atime_ns: int
    st_mtime_ns: int
    st_rdev: int = 0


_MAX_LINK_DIRS = 512  # directory fds kept to hard-link later entries to earlier ones


class _TreeWriter:
    """Makes entries under directory fds; never follows a name it writes.  `owner`: (uid, gid)
    to give everything, _KEEP for the source's, None to leave it to whoever creates (budu).

    On the host (where budu writes as root, as `sudo docker cp` would) a container's device
    nodes are not made — a world-readable disk node is the whole host — and files lose
    setuid/setgid unless their owner is kept (`-a`), as cp(1) does."""

    def __init__(self, tree: Tree, owner: tuple[int, int] | str | None) -> None:
        self.tree = tree
        self.owner = owner
        # implicit parents (a tar naming a/b/c without a/): root's in a container, as docker's
        self.parent_owner = (0, 0) if tree.container is not None else None
        self.host = tree.container is None
        self.copied = 0
        self._link_dirs: dict[tuple[int, int], int] = {}

    def close(self) -> None:
        for fd in self._link_dirs.values():
            os.close(fd)
        self._link_dirs.clear()

    def _ids(self, st) -> tuple[int, int] | None:  # noqa: ANN001
        return (st.st_uid, st.st_gid) if self.owner == _KEEP else self.owner

    def _clear(self, pfd: int, name: str, label: str, is_dir: bool) -> bool:
        """Make room for a new `name`: an existing non-directory goes (tar's way), a directory
        stays for a directory to merge into; a type clash is docker's error.  True if a
        directory is there."""
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        there = stat.S_ISDIR(st.st_mode)
        if there and not is_dir:
            raise self.tree.error(f'cannot overwrite directory "{label}" with non-directory "{label}"')
        if is_dir and not there:
            raise self.tree.error(f'cannot overwrite non-directory "{label}" with directory "{label}"')
        if not there:
            os.unlink(name, dir_fd=pfd)
        return there

    def mkdir(self, pfd: int, name: str, label: str) -> int:
        if not self._clear(pfd, name, label, True):
            try:
                os.mkdir(name, 0o700, dir_fd=pfd)
            except FileExistsError:  # raced: whatever is there now is checked by the open
                pass
        try:
            fd = os.open(name, _O_DIR_NOFOLLOW, dir_fd=pfd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise self.tree.error(f'cannot overwrite non-directory "{label}" with directory "{label}"') from None
            raise
        return fd

    def _mode(self, st) -> int:  # noqa: ANN001
        mode = stat.S_IMODE(st.st_mode)
        if self.host and self.owner != _KEEP and not stat.S_ISDIR(st.st_mode):
            mode &= ~(stat.S_ISUID | stat.S_ISGID)
        return mode

    def set_meta(self, fd: int, st, times: bool = True) -> None:  # noqa: ANN001
        ids = self._ids(st)
        if ids is not None:
            os.fchown(fd, *ids)
        os.fchmod(fd, self._mode(st))
        if times:
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))

    def file(self, pfd: int, name: str, label: str, st, src,  # noqa: ANN001
             xattrs: dict[str, bytes] | None = None) -> tuple:
        """A regular file with the data read from `src` (an fd, or a file object; None: empty)."""
        self._clear(pfd, name, label, False)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pfd)
        try:
            read = (lambda n: os.read(src, n)) if isinstance(src, int) else (src.read if src is not None else None)
            while read is not None and (data := read(_CHUNK)):
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                self.copied += len(data)
            self.set_meta(fd, st, times=False)
            for k, v in (xattrs or {}).items():  # after chown, which drops file capabilities
                try:
                    os.setxattr(fd, k, v)
                except OSError as e:
                    if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP) or k == "security.capability":
                        raise
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fd)
        return self._link_key(pfd, name)

    def symlink(self, pfd: int, name: str, label: str, st, target: str) -> tuple:  # noqa: ANN001
        self._clear(pfd, name, label, False)
        os.symlink(target, name, dir_fd=pfd)
        self._node_meta(pfd, name, st, chmod=False)
        return self._link_key(pfd, name)

    def special(self, pfd: int, name: str, label: str, st) -> tuple:  # noqa: ANN001
        """A device node or fifo (on the host: a fifo only)."""
        kind = stat.S_IFMT(st.st_mode)
        if self.host and kind in (stat.S_IFCHR, stat.S_IFBLK):
            return ()
        self._clear(pfd, name, label, False)
        os.mknod(name, kind | 0o600, st.st_rdev if kind in (stat.S_IFCHR, stat.S_IFBLK) else 0, dir_fd=pfd)
        self._node_meta(pfd, name, st, chmod=True)
        return self._link_key(pfd, name)

    def _node_meta(self, pfd: int, name: str, st, chmod: bool) -> None:  # noqa: ANN001
        ids = self._ids(st)
        if ids is not None:
            os.chown(name, *ids, dir_fd=pfd, follow_symlinks=False)
        if chmod:  # Linux has no lchmod: through an O_PATH fd of the node itself
            nfd = os.open(name, _O_NODE, dir_fd=pfd)
            try:
                if stat.S_IFMT(os.fstat(nfd).st_mode) == stat.S_IFMT(st.st_mode):
                    os.chmod(f"/proc/self/fd/{nfd}", self._mode(st))
            finally:
                os.close(nfd)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=pfd, follow_symlinks=False)

    def _link_key(self, pfd: int, name: str) -> tuple:
        """How a later hard link finds this entry: its directory (an fd we keep) and name."""
        dst = os.fstat(pfd)
        key = (dst.st_dev, dst.st_ino)
        if key not in self._link_dirs:
            if len(self._link_dirs) >= _MAX_LINK_DIRS:
                return ()
            self._link_dirs[key] = os.dup(pfd)
        return (self._link_dirs[key], name)

    def link(self, pfd: int, name: str, label: str, key: tuple) -> bool:
        """A hard link to an entry made earlier; False if that one can no longer be linked to."""
        if not key:
            return False
        self._clear(pfd, name, label, False)
        try:
            os.link(key[1], name, src_dir_fd=key[0], dst_dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True


# -- walking a tree -----------------------------------------------------------------------------------

def _capability(fd: int) -> dict[str, bytes]:
    """security.capability: the one xattr docker's cp and export carry."""
    try:
        return {"security.capability": os.getxattr(fd, "security.capability")}
    except OSError:
        return {}


class _Walk:
    """Visits a source tree from O_PATH fds, depth first, names sorted; hard links found by inode.
    `sink` makes what it sees: a tree (_TreeSink) or a tar (_TarSink).  With `no_xdev` (export)
    the walk stays on the root's mount: a mount point is written empty."""

    def __init__(self, sink, no_xdev: bool = False) -> None:  # noqa: ANN001
        self.sink = sink
        self.no_xdev = no_xdev
        self.links: dict[tuple[int, int], object] = {}

    def entry(self, fd: int, st: os.stat_result, parent, name: str, mounted: bool = False) -> None:  # noqa: ANN001
        mode = st.st_mode
        sink = self.sink
        if stat.S_ISDIR(mode):
            handle = sink.dir(parent, name, st)
            if not mounted:
                self.children(fd, st, handle)
            sink.dir_done(handle, st)
            return
        if stat.S_ISSOCK(mode):
            return  # a socket cannot be copied (docker skips them too)
        ino = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and ino in self.links and sink.link(parent, name, st, self.links[ino]):
            return
        if stat.S_ISREG(mode):
            if mounted:
                key = sink.file(parent, name, st, None, None)
            else:
                rfd = _reopen(fd, os.O_RDONLY | os.O_NONBLOCK)
                try:
                    key = sink.file(parent, name, st, rfd, _capability(rfd))
                finally:
                    os.close(rfd)
        elif stat.S_ISLNK(mode):
            key = sink.symlink(parent, name, st, os.readlink("", dir_fd=fd))
        else:
            key = sink.special(parent, name, st)
        if st.st_nlink > 1:
            self.links[ino] = key

    def children(self, fd: int, st: os.stat_result, handle) -> None:  # noqa: ANN001
        dfd = _reopen(fd, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for name in sorted(os.listdir(dfd)):
                mounted = False
                try:
                    if self.no_xdev:
                        cfd = openat2(dfd, name, _O_NODE, 0, RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS)
                    else:
                        cfd = os.open(name, _O_NODE, dir_fd=dfd)
                except FileNotFoundError:
                    continue  # gone meanwhile
                except OSError as e:
                    if e.errno != errno.EXDEV:
                        raise
                    cfd = os.open(name, _O_NODE, dir_fd=dfd)  # a mount point: itself, not what is in it
                    mounted = True
                try:
                    cst = os.fstat(cfd)
                    if stat.S_ISDIR(cst.st_mode) and cst.st_dev != st.st_dev and _pseudo_fs(cfd):
                        mounted = True
                    self.entry(cfd, cst, handle, name, mounted)
                finally:
                    os.close(cfd)
        finally:
            os.close(dfd)


class _TreeSink:
    """A walk written into a tree: handles are (directory fd, path for messages)."""

    def __init__(self, writer: _TreeWriter) -> None:
        self.w = writer

    def dir(self, parent, name: str, st) -> tuple[int, str]:  # noqa: ANN001
        pfd, plabel = parent
        label = posixpath.join(plabel, name)
        return self.w.mkdir(pfd, name, label), label

    def dir_done(self, handle, st) -> None:  # noqa: ANN001
        fd, _ = handle
        try:
            self.w.set_meta(fd, st)
        finally:
            os.close(fd)

    def file(self, parent, name: str, st, fd: int | None, xattrs: dict[str, bytes] | None):  # noqa: ANN001, ANN201
        return self.w.file(parent[0], name, posixpath.join(parent[1], name), st, fd, xattrs)

    def symlink(self, parent, name: str, st, target: str):  # noqa: ANN001, ANN201
        return self.w.symlink(parent[0], name, posixpath.join(parent[1], name), st, target)

    def special(self, parent, name: str, st):  # noqa: ANN001, ANN201
        return self.w.special(parent[0], name, posixpath.join(parent[1], name), st)

    def link(self, parent, name: str, st, key) -> bool:  # noqa: ANN001
        return self.w.link(parent[0], name, posixpath.join(parent[1], name), key)


class _TarSink:
    """A walk written as a tar stream (layers' header writer: ustar, PAX for what does not fit)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.copied = 0

    def _write(self, data: bytes) -> None:
        self.out.write(data)

    def close(self) -> None:
        self._write(bytes(1024))
        self.out.flush()

    @staticmethod
    def _name(prefix: bytes, name: str) -> bytes:
        return prefix + os.fsencode(name)

    @staticmethod
    def _mtime(st) -> int:  # noqa: ANN001
        return st.st_mtime_ns // 1_000_000_000

    def dir(self, prefix: bytes, name: str, st) -> bytes:  # noqa: ANN001
        full = self._name(prefix, name)
        self._write(tar_header(full + b"/", b"5", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, 0, self._mtime(st)))
        return b"" if full == b"." else full + b"/"  # `dir/.`: "./", then "passwd" (docker's names)

    def dir_done(self, handle, st) -> None:  # noqa: ANN001
        pass

    def file(self, prefix: bytes, name: str, st, fd: int | None,  # noqa: ANN001
             xattrs: dict[str, bytes] | None) -> bytes:
        full = self._name(prefix, name)
        size = st.st_size if fd is not None else 0
        self._write(tar_header(full, b"0", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, size, self._mtime(st),
                               xattrs={os.fsencode(k): v for k, v in (xattrs or {}).items()}))
        left = size
        while left:
            data = os.read(fd, min(left, _CHUNK))
            if not data:
                raise CopyError(f"{os.fsdecode(full)}: the file shrank while it was being copied")
            self._write(data)
            left -= len(data)
        self._write(bytes(-size % 512))
        self.copied += size
        return full

    def symlink(self, prefix: bytes, name: str, st, target: str) -> bytes:  # noqa: ANN001
        full = self._name(prefix, name)
        self._write(tar_header(full, b"2", 0o777, st.st_uid, st.st_gid, 0, self._mtime(st), os.fsencode(target)))
        return full

    def special(self, prefix: bytes, name: str, st) -> bytes:  # noqa: ANN001
        full = self._name(prefix, name)
        kind = stat.S_IFMT(st.st_mode)
        flag = {stat.S_IFCHR: b"3", stat.S_IFBLK: b"4", stat.S_IFIFO: b"6"}[kind]
        dev = kind != stat.S_IFIFO
        self._write(tar_header(full, flag, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, 0, self._mtime(st),
                            major=os.major(st.st_rdev) if dev else 0, minor=os.minor(st.st_rdev) if dev else 0))
        return full

    def link(self, prefix: bytes, name: str, st, key: bytes) -> bool:  # noqa: ANN001
        self._write(tar_header(self._name(prefix, name), b"1", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, 0,
                            self._mtime(st), key))
        return True


# -- cp: tree to tree -------------------------------------------------------------------------------

def copy(src: Tree, src_path: str, dst: Tree, dst_path: str, follow_link: bool = False,
         owner: tuple[int, int] | str | None = None) -> int:
    """Copy `src_path` of `src` to `dst_path` of `dst` by docker's cp rules; the bytes of file
    data copied.  Paths are absolute in their trees."""
    if dst.read_only:
        raise dst.error("container rootfs is marked read-only")
    source = _source(src, src_path, follow_link)
    try:
        dest = _destination(dst, dst_path)
        writer = _TreeWriter(dst, owner)
        try:
            walk = _Walk(_TreeSink(writer))
            is_dir = stat.S_ISDIR(source.st.st_mode)
            if dest.exists and dest.is_dir:
                if source.contents:  # into the directory itself, which takes the source's mode (as docker)
                    handle = (os.dup(dest.fd), dest.path)
                    walk.children(source.fd, source.st, handle)
                    walk.sink.dir_done(handle, source.st)
                else:
                    walk.entry(source.fd, source.st, (dest.fd, dest.path), source.name)
            else:
                if dest.exists and is_dir:  # docker's CLI decides these two: plain errors
                    raise CopyError(f'cannot copy directory "{src.where(src_path)}" onto file '
                                    f'"{dst.where(dest.path)}"')
                if not dest.exists and not is_dir and dest.asserts_dir:
                    raise CopyError(f'"{dst.where(dest.path)}": no such directory')
                walk.entry(source.fd, source.st, (dest.fd, _split(dest.path)[0]), dest.name)
        except OSError as e:
            raise _copy_error(dst, e) from None
        finally:
            writer.close()
            dest.close()
    finally:
        source.close()
    return writer.copied


def _copy_error(dst: Tree, e: OSError) -> BuduError:
    """An OSError met while copying, as one line (a read-only container: docker's message)."""
    if e.errno == errno.EROFS and dst.container is not None:
        return dst.error("container rootfs is marked read-only")
    what = f"{os.fsdecode(e.filename)}: " if e.filename else ""
    return dst.error(f"copying to {dst.where('')}: {what}{e.strerror or e}" if dst.container is not None
                     else f"copying: {what}{e.strerror or e}")


# -- cp: tar in, tar out ----------------------------------------------------------------------------

def write_tar(src: Tree, src_path: str, out: BinaryIO, follow_link: bool = False) -> int:
    """`cp CONTAINER:SRC -`: a tar of `src_path` (named by its last component) to `out`."""
    source = _source(src, src_path, follow_link)
    sink = _TarSink(out)
    try:
        walk = _Walk(sink)
        walk.entry(source.fd, source.st, b"", source.name)
        sink.close()
    finally:
        source.close()
    return sink.copied


def _tar_parts(name: str, where: str) -> list[str]:
    parts = [p for p in name.split("/") if p and p != "."]
    if ".." in parts:
        raise CopyError(f"invalid tar entry {name!r}: it climbs out of {where}")
    return parts


def _keep_xattr(name: str) -> bool:
    """As layers: no forged overlay metadata, and of security.* only file capabilities."""
    if name.startswith("trusted.overlay."):
        return False
    return not name.startswith("security.") or name == "security.capability"


class _Extract:
    """Tar entries written under a directory of a tree.  Each entry's parent is reached from the
    destination one name at a time (O_NOFOLLOW); a symlink met on the way is resolved in the tree
    (openat2 RESOLVE_IN_ROOT from its root, as docker's chrooted extraction does)."""

    def __init__(self, tree: Tree, dest: _Dest, writer: _TreeWriter) -> None:
        self.tree, self.w = tree, writer
        self.base = (dest.fd, dest.path.rstrip("/") or "/")
        self.dirs: dict[tuple[str, ...], tuple[int, str]] = {}
        self.dir_times: list[tuple[tuple[str, ...], _Meta]] = []

    def close(self) -> None:
        for fd, _ in self.dirs.values():
            os.close(fd)
        self.dirs.clear()

    def parent(self, parts: list[str]) -> tuple[int, str]:
        """The fd and in-tree path of directory `parts` below the destination, made if missing."""
        key = tuple(parts)
        if not parts:
            return self.base
        got = self.dirs.get(key)
        if got is not None:
            return got
        pfd, ppath = self.parent(parts[:-1])
        name = parts[-1]
        path = posixpath.join(ppath, name)
        for _ in range(_MAX_LINKS):
            try:
                fd = os.open(name, _O_DIR_NOFOLLOW, dir_fd=pfd)
                break
            except FileNotFoundError:
                try:
                    os.mkdir(name, 0o755, dir_fd=pfd)
                    fd = os.open(name, _O_DIR_NOFOLLOW, dir_fd=pfd)
                    if self.w.parent_owner is not None:
                        os.fchown(fd, *self.w.parent_owner)
                    break
                except FileExistsError:
                    continue
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                if not stat.S_ISLNK(os.stat(name, dir_fd=pfd, follow_symlinks=False).st_mode):
                    raise self.tree.error(f'cannot overwrite non-directory "{path}" with directory "{path}"') from None
                target = os.readlink(name, dir_fd=pfd)
                path = posixpath.normpath(target if target.startswith("/") else posixpath.join(ppath, target))
                try:
                    fd = self.tree.open(path, _O_DIR)
                except FileNotFoundError:
                    raise self.tree.not_found(path) from None
                break
        else:
            raise self.tree.error(f"{path}: too many levels of symbolic links")
        self.dirs[key] = (fd, path)
        return fd, path

    def reap(self) -> None:
        """Between entries (never while one holds a parent fd): keep the open dirs bounded."""
        if len(self.dirs) > 256:
            self.close()

    def member(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        self.reap()
        parts = _tar_parts(m.name, self.tree.where(self.base[1]))
        mode = m.mode & 0o7777
        mtime = int(m.mtime * 1_000_000_000)
        kind = (stat.S_IFDIR if m.isdir() else stat.S_IFLNK if m.issym() else stat.S_IFCHR if m.ischr()
                else stat.S_IFBLK if m.isblk() else stat.S_IFIFO if m.isfifo() else stat.S_IFREG)
        meta = _Meta(kind | mode, m.uid, m.gid, m.size, mtime, mtime,
                     os.makedev(m.devmajor, m.devminor) if m.ischr() or m.isblk() else 0)
        if not parts:  # "./": the destination itself takes its mode, as in docker
            if m.isdir():
                self.w.set_meta(self.base[0], meta, times=False)
                self.dir_times.append(((), meta))
            return
        pfd, ppath = self.parent(parts[:-1])
        name, label = parts[-1], posixpath.join(ppath, parts[-1])
        w = self.w
        if m.isdir():
            fd = w.mkdir(pfd, name, label)
            w.set_meta(fd, meta, times=False)
            self.dirs.setdefault(tuple(parts), (fd, label))
            if self.dirs[tuple(parts)][0] != fd:
                os.close(fd)
            self.dir_times.append((tuple(parts), meta))
        elif m.isreg():
            xattrs = {k[13:]: v.encode("utf-8", "surrogateescape") for k, v in m.pax_headers.items()
                      if k.startswith("SCHILY.xattr.") and _keep_xattr(k[13:])}
            w.file(pfd, name, label, meta, tar.extractfile(m), xattrs)
        elif m.issym():
            w.symlink(pfd, name, label, meta, m.linkname)
        elif m.islnk():
            tparts = _tar_parts(m.linkname, self.tree.where(self.base[1]))
            if not tparts:
                raise self.tree.error(f"invalid tar entry {m.name!r}: a hard link to the destination directory")
            tfd, _ = self.parent(tparts[:-1])
            if not w.link(pfd, name, label, (tfd, tparts[-1])):
                raise self.tree.error(f"invalid tar entry {m.name!r}: hard link target {m.linkname!r} "
                                      "is not in the archive before it")
        elif m.ischr() or m.isblk() or m.isfifo():
            w.special(pfd, name, label, meta)
        # other types (GNU volume labels, ...) carry no file

    def finish(self) -> None:
        """Directory times last: what was written into them changed them."""
        for parts, meta in reversed(self.dir_times):
            self.reap()
            fd = self.base[0] if not parts else self.parent(list(parts))[0]
            os.utime(fd, ns=(meta.st_atime_ns, meta.st_mtime_ns))


def extract_tar(dst: Tree, dst_path: str, stream: BinaryIO, owner: tuple[int, int] | str | None = None) -> None:
    """`cp - CONTAINER:DEST`: extract the tar read from `stream` (plain or compressed) into the
    existing directory `dst_path`."""
    if dst.read_only:
        raise dst.error("container rootfs is marked read-only")
    try:
        dest = _destination(dst, dst_path)
    except PathNotFound:
        dest = None
    if dest is None or not (dest.exists and dest.is_dir):
        if dest is not None:
            dest.close()
        raise CopyError(f'destination "{dst.where(dst_path)}" must be a directory')
    writer = _TreeWriter(dst, owner)
    ex = _Extract(dst, dest, writer)
    try:
        try:
            tar = tarfile.open(fileobj=stream, mode="r|*")
        except tarfile.TarError as e:
            raise CopyError(f"the input is not a tar archive: {e}") from None
        try:
            for m in tar:
                ex.member(tar, m)
            ex.finish()
        except tarfile.TarError as e:
            raise CopyError(f"the tar archive is damaged: {e}") from None
        except (EOFError, ValueError) as e:
            raise CopyError(f"the tar archive is truncated or damaged: {e}") from None
        except OSError as e:
            raise _copy_error(dst, e) from None
    finally:
        ex.close()
        writer.close()
        dest.close()


# -- the container's side -------------------------------------------------------------------------

@contextmanager
def container_tree(engine, c, name: str | None = None, write: bool = False) -> Iterator[Tree]:  # noqa: ANN001
    """The container's root as a Tree: through /proc/PID/root while it runs (its volumes count),
    else its overlay, mounted for the duration (and unmounted whatever happens)."""
    if c.removing:
        raise StateError(f"container {c.id} is marked for removal")
    with engine.rootfs(c) as root:
        running = root.startswith("/proc/")
        read_only = write and not running and bool(c.host_config.get("ReadonlyRootfs"))
        try:
            tree = Tree(root, container=name or c.name, read_only=read_only)
        except FileNotFoundError:
            raise StateError(f"container {c.id} stopped while its files were being opened") from None
        with tree:
            yield tree


def copy_from_container(engine, c, src_path: str, dest_path: str, follow_link: bool = False,  # noqa: ANN001
                        archive: bool = False, name: str | None = None) -> int:
    """`cp CONTAINER:SRC DEST`; the bytes of file data copied."""
    with container_tree(engine, c, name) as src, Tree("/") as dst:
        n = copy(src, container_path(src_path), dst, host_path(dest_path), follow_link,
                 owner=_KEEP if archive else None)
    engine.emit(c, "archive-path")
    return n


def copy_to_container(engine, c, src_path: str, dest_path: str, follow_link: bool = False,  # noqa: ANN001
                      archive: bool = False, name: str | None = None) -> int:
    """`cp SRC CONTAINER:DEST`; the bytes of file data copied.  Files copied in belong to root
    unless `archive` keeps their uid/gid."""
    with Tree("/") as src:
        source = _source(src, host_path(src_path), follow_link)  # fail on a missing source first
        source.close()
        with container_tree(engine, c, name, write=True) as dst:
            n = copy(src, host_path(src_path), dst, container_path(dest_path), follow_link,
                     owner=_KEEP if archive else (0, 0))
    engine.emit(c, "extract-to-dir")
    return n


def archive_from_container(engine, c, src_path: str, out: BinaryIO, follow_link: bool = False,  # noqa: ANN001
                           name: str | None = None) -> int:
    """`cp CONTAINER:SRC -`: a tar stream of SRC, uid/gid as in the container."""
    with container_tree(engine, c, name) as src:
        n = write_tar(src, container_path(src_path), out, follow_link)
    engine.emit(c, "archive-path")
    return n


def extract_to_container(engine, c, dest_path: str, stream: BinaryIO, archive: bool = False,  # noqa: ANN001
                         name: str | None = None) -> None:
    """`cp - CONTAINER:DEST`: the tar read from `stream` extracted into directory DEST."""
    with container_tree(engine, c, name, write=True) as dst:
        extract_tar(dst, container_path(dest_path), stream, owner=_KEEP if archive else (0, 0))
    engine.emit(c, "extract-to-dir")


# -- export ---------------------------------------------------------------------------------------

def export_tree(tree: Tree, out: BinaryIO) -> None:
    """A tar of everything in `tree` on its root's own mount: what is mounted on it (volumes,
    /proc...) is left out, its mount points written empty.  Names are relative ("bin/sh")."""
    sink = _TarSink(out)
    root = os.dup(tree.fd)
    try:
        _Walk(sink, no_xdev=True).children(root, os.fstat(root), b"")
    finally:
        os.close(root)
    sink.close()


def export(engine, c, out: BinaryIO) -> None:  # noqa: ANN001
    """docker export: the container's whole filesystem as a tar, its volumes left out."""
    with container_tree(engine, c) as tree:
        export_tree(tree, out)
    engine.emit(c, "export")


# -- diff -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    kind: str  # "A" added, "C" changed, "D" deleted: docker's
    path: str

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


# what the runtime creates as bind-mount targets in the writable layer; docker keeps them in an
# init layer below it, so they are no change of the container's
_MOUNT_TARGETS = frozenset({"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"})
_OPAQUE = "trusted.overlay.opaque"


def _whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(fd: int) -> bool:
    try:
        return os.getxattr(fd, _OPAQUE) == b"y"
    except OSError:
        return False


class _Image:
    """The image's files as the overlay shows them, from its layer dirs (top first)."""

    @staticmethod
    def step(active: list[int], name: str) -> tuple[os.stat_result | None, list[int]]:
        """`name` in the directory whose layer dirs are `active`: its stat in the top layer that
        has it (None if absent or whited out), and, for a directory, its own layer dirs."""
        found: os.stat_result | None = None
        below: list[int] = []
        for lfd in active:
            try:
                st = os.stat(name, dir_fd=lfd, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if _whiteout(st):
                break
            if found is None:
                found = st
            if not stat.S_ISDIR(st.st_mode) or not stat.S_ISDIR(found.st_mode):
                break  # a non-directory hides what is below it
            fd = os.open(name, _O_DIR_NOFOLLOW, dir_fd=lfd)
            below.append(fd)
            if _opaque(fd):
                break
        return found, below

    @staticmethod
    def names(active: list[int]) -> set[str]:
        """What the directory whose layer dirs are `active` lists."""
        seen: dict[str, bool] = {}
        for lfd in active:
            for n in os.listdir(lfd):
                if n not in seen:
                    seen[n] = not _whiteout(os.stat(n, dir_fd=lfd, follow_symlinks=False))
        return {n for n, present in seen.items() if present}


def _layer_dirs(engine, c) -> tuple[str, list[str]]:  # noqa: ANN001
    """The container's upper dir and its image's layer dirs, top first."""
    (m,) = engine.images.snapshots.mounts(c.snapshot)
    if m.type != "overlay":
        return m.source, []
    lowers = next((o[len("lowerdir="):] for o in m.options if o.startswith("lowerdir=")), "")
    return engine.upper_dir(c), [d for d in lowers.split(":") if d]


def changes(engine, c) -> list[Change]:  # noqa: ANN001
    """docker diff: what the container changed in its image, sorted by path; a directory holding
    a change is itself changed."""
    upper, lowers = _layer_dirs(engine, c)
    found: dict[str, str] = {}
    ufd = os.open(upper, _O_DIR)
    active = [os.open(d, _O_DIR) for d in lowers]
    try:
        _diff_dir(ufd, "", active, found)
    finally:
        os.close(ufd)
        for fd in active:
            os.close(fd)
    for path in list(found):
        parent = posixpath.dirname(path)
        while parent != "/" and parent not in found:
            found[parent] = "C"
            parent = posixpath.dirname(parent)
    return [Change(found[p], p) for p in sorted(found, key=lambda p: p.split("/"))]


def _diff_dir(dfd: int, path: str, active: list[int], found: dict[str, str]) -> None:
    try:
        names = sorted(os.listdir(dfd))
    except FileNotFoundError:
        return
    for name in names:
        full = f"{path}/{name}"
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        image_st, below = _Image.step(active, name)
        try:
            if _whiteout(st):
                if image_st is not None:
                    found[full] = "D"
                continue
            if not stat.S_ISDIR(st.st_mode):
                if image_st is None:
                    if not (full in _MOUNT_TARGETS and stat.S_ISREG(st.st_mode) and st.st_size == 0):
                        found[full] = "A"
                else:
                    found[full] = "C"
                continue
            try:
                cfd = os.open(name, _O_DIR_NOFOLLOW, dir_fd=dfd)
            except OSError:  # gone, or swapped for something else by a running container
                continue
            try:
                if image_st is None or not stat.S_ISDIR(image_st.st_mode):
                    found[full] = "A" if image_st is None else "C"
                else:
                    if _opaque(cfd):  # the image's entries in it are gone, save what the upper has again
                        mine = set(os.listdir(cfd))
                        found[full] = "C"
                        for gone in _Image.names(below) - mine:
                            found[f"{full}/{gone}"] = "D"
                    elif (st.st_mode, st.st_uid, st.st_gid) != (image_st.st_mode, image_st.st_uid, image_st.st_gid):
                        found[full] = "C"
                _diff_dir(cfd, full, below, found)
            finally:
                os.close(cfd)
        finally:
            for fd in below:
                os.close(fd)


# -- commit ---------------------------------------------------------------------------------------

_IMAGE_CONFIG_KEYS = ("User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Healthcheck", "ArgsEscaped", "Volumes",
                      "WorkingDir", "Labels", "StopSignal", "OnBuild", "Shell")
EMPTY_LAYER_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"  # 1024 zero bytes


def merge_config(user: dict, image: dict) -> dict:
    """docker's merge(userConf, imageConf): the container's Config with the image's defaults
    filled in, as docker's daemon holds it after create (and commit merges it again)."""
    cfg = json.loads(json.dumps(user))
    image = image or {}
    if not cfg.get("User"):
        cfg["User"] = image.get("User") or ""
    if not cfg.get("ExposedPorts"):
        cfg["ExposedPorts"] = image.get("ExposedPorts")
    else:
        for port in image.get("ExposedPorts") or {}:
            cfg["ExposedPorts"].setdefault(port, {})
    if not cfg.get("Env"):
        cfg["Env"] = image.get("Env")
    else:
        keys = {e.partition("=")[0] for e in cfg["Env"]}
        cfg["Env"] = cfg["Env"] + [e for e in image.get("Env") or [] if e.partition("=")[0] not in keys]
    cfg["Labels"] = dict(image.get("Labels") or {}, **(cfg.get("Labels") or {}))
    if not cfg.get("Entrypoint"):
        if not cfg.get("Cmd"):
            cfg["Cmd"] = image.get("Cmd")
        if cfg.get("Entrypoint") is None:
            cfg["Entrypoint"] = image.get("Entrypoint")
    if image.get("Healthcheck"):
        if not cfg.get("Healthcheck"):
            cfg["Healthcheck"] = image["Healthcheck"]
        else:
            hc = cfg["Healthcheck"]
            for k in ("Test", "Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"):
                if not hc.get(k) and image["Healthcheck"].get(k):
                    hc[k] = image["Healthcheck"][k]
    if not cfg.get("WorkingDir"):
        cfg["WorkingDir"] = image.get("WorkingDir") or ""
    if not cfg.get("Volumes"):
        cfg["Volumes"] = image.get("Volumes")
    else:
        cfg["Volumes"] = dict(cfg["Volumes"], **(image.get("Volumes") or {}))
    if not cfg.get("StopSignal"):
        cfg["StopSignal"] = image.get("StopSignal") or ""
    for k in ("OnBuild", "Shell", "ArgsEscaped"):
        if not cfg.get(k) and image.get(k):
            cfg[k] = image[k]
    return cfg


def _image_config(cfg: dict) -> dict:
    """The fields of a container Config an image config carries, empty ones left out."""
    out = {k: cfg[k] for k in _IMAGE_CONFIG_KEYS if cfg.get(k) not in (None, "", [], {})}
    if out.get("Entrypoint") == [""]:
        del out["Entrypoint"]
    return out


def commit(engine, c, ref: str | None = None, author: str = "", message: str = "",  # noqa: ANN001, ANN201
           changes: list[str] | None = None, pause: bool = True):
    """docker commit: a new image, the container's image plus one layer of what the container
    changed (its overlay upper, whiteouts as `.wh.` entries), with the container's config merged
    over the image's and `changes` (Dockerfile instructions) applied.  A running container is
    paused while its layer is read, unless `pause` is False.  Returns the image."""
    from budu.images.archive import _Additions, apply_changes, docker_manifest, now_rfc3339, tag_for
    from budu.images.layers import diff_overlay
    from budu.images.service import OCI_MANIFEST, host_platform

    images = engine.images
    tag = tag_for(ref)
    base = images.store.get(c.image_id)
    base_cfg = images.config(base)
    base_layers = images.manifest(base).get("layers") or []
    container_cfg = merge_config(c.config, base_cfg.get("config") or {})
    runtime = apply_changes(_image_config(container_cfg), changes or [])  # a bad change fails before any work

    with engine.lock(c) as c:
        if c.removing:
            raise StateError(f"cannot commit container {c.id}: it is being removed")
        st = engine.state(c)
        paused = False
        if pause and st.status == "running":
            engine.pause(c)
            paused = True
        w = images.content.writer(f"commit-{uuid.uuid4().hex}")
        try:
            try:
                result = diff_overlay(engine.upper_dir(c), w, "gzip")
            finally:
                if paused:
                    engine.unpause(engine.store.get(c.id))  # the record pause() updated
            existed = images.content.exists(result.digest)
            if result.diff_id != EMPTY_LAYER_DIFF_ID:
                if w.commit() != result.digest:
                    raise BuduError(f"the layer of container {c.id} changed while it was being stored")
            else:
                w.abort()
        except BaseException:
            w.abort()
            raise

    empty = result.diff_id == EMPTY_LAYER_DIFF_ID
    created = now_rfc3339()
    cfg = {k: base_cfg[k] for k in ("architecture", "os", "variant", "os.version") if base_cfg.get(k)}
    cfg.setdefault("architecture", host_platform().architecture)
    cfg.setdefault("os", "linux")
    author = author or base_cfg.get("author") or ""
    if author:
        cfg["author"] = author
    cfg["config"] = runtime
    cfg["created"] = created
    entry = {"created": created, "created_by": " ".join(container_cfg.get("Cmd") or [])}
    if author:
        entry["author"] = author
    if message:
        entry["comment"] = message
    if empty:
        entry["empty_layer"] = True
    cfg["history"] = [*(base_cfg.get("history") or []), entry]
    diff_ids = list((base_cfg.get("rootfs") or {}).get("diff_ids") or [])
    layers = [(d["digest"], d["size"], d["mediaType"]) for d in base_layers]
    if not empty:
        diff_ids.append(result.diff_id)
        layers.append((result.digest, result.size, result.media_type))
    cfg["rootfs"] = {"type": "layers", "diff_ids": diff_ids}

    with _Additions(images) as add:
        if not empty and not existed:
            add.blobs.append(result.digest)
        config_bytes = json.dumps(cfg, separators=(",", ":")).encode()
        config_digest = add.put_bytes(config_bytes)
        manifest = docker_manifest(config_digest, len(config_bytes), layers)
        manifest_digest = add.put_bytes(manifest)
        chains = add.unpack([(d, m) for d, _, m in layers], diff_ids)
        image = add.record(config_digest, manifest_digest, OCI_MANIFEST, chains,
                           [manifest_digest, config_digest] + [d for d, _, _ in layers], [tag] if tag else [])
    attrs = {"comment": message, "imageID": image.id}
    if tag:
        from budu.images import reference

        attrs["imageRef"] = reference.parse(tag).familiar()
    engine.emit(c, "commit", **attrs)
    return image
