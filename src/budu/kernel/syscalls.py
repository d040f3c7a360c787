"""Thin, typed wrappers over the Linux syscalls Python 3.11 lacks (mount, unshare, setns, pivot_root...).

Every call raises OSError with errno and a message that names the operation and its arguments, so
that a failure deep in container init can be reported as one clear line.  The calls themselves are
made by the small C extension `_budukernel` (built by scripts/build-runtime-ext.sh): this module is
on the hot path of every container start, and ctypes alone would cost ~4 ms of each.
"""

from __future__ import annotations

import os

try:
    from budu.kernel import _budukernel as _k
except ImportError as e:  # pragma: no cover - a source tree that was never installed
    raise ImportError(f"{e}: build it with scripts/build-runtime-ext.sh (scripts/install.sh does)") from None

# clone(2) / unshare(2) / setns(2) flags
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# mount(2) flags
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25
MNT_DETACH = 2

# prctl(2) options
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4


def _check(ret: int, what: str) -> int:
    if ret < 0:
        raise OSError(-ret, f"{what}: {os.strerror(-ret)}")
    return ret


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    _check(_k.mount(source, target, fstype, flags, data), f"mount {source or fstype or 'none'} on {target}")


def umount(target: str, flags: int = 0) -> None:
    _check(_k.umount2(target, flags), f"umount {target}")


def unshare(flags: int) -> None:
    _check(_k.unshare(flags), f"unshare({flags:#x})")


def setns(fd: int, nstype: int = 0, what: str = "") -> None:
    _check(_k.setns(fd, nstype), f"setns {what or fd}")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_k.pivot_root(new_root, put_old), f"pivot_root {new_root}")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_k.prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


def loopback_up() -> None:
    _check(_k.loopback_up(), "bringing up lo in the new network namespace")


def sethostname(name: str) -> None:
    _check(_k.sethostname(name.encode()), f"sethostname {name!r}")


def setdomainname(name: str) -> None:
    _check(_k.setdomainname(name.encode()), f"setdomainname {name!r}")


def seccomp_set_filter(prog: bytes, flags: int = 0) -> None:
    """Load a compiled seccomp filter (struct sock_filter[]) into the calling thread."""
    _check(_k.seccomp_set_filter(prog, flags), "seccomp(SECCOMP_SET_MODE_FILTER)")


def prlimit(resource: int, soft: int, hard: int) -> None:
    """Set a resource limit of this process (-1: unlimited); without the `resource` module's import."""
    _check(_k.prlimit(resource, soft, hard), f"setrlimit({resource})")


def getrlimit(resource: int) -> tuple[int, int]:
    """(soft, hard) resource limit of this process (-1: unlimited)."""
    ret, soft, hard = _k.getrlimit(resource)
    _check(ret, f"getrlimit({resource})")
    return soft, hard


# capabilities: capget/capset with the v3 ABI, as 64-bit masks

def capget(pid: int = 0) -> tuple[int, int, int]:
    """Return (effective, permitted, inheritable) of a process as 64-bit masks."""
    ret, effective, permitted, inheritable = _k.capget(pid)
    _check(ret, "capget")
    return effective, permitted, inheritable


def capset(effective: int, permitted: int, inheritable: int) -> None:
    _check(_k.capset(effective, permitted, inheritable), "capset")


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40


def ns_flag(kind: str) -> int:
    """CLONE_* flag for an OCI namespace type name."""
    return _NS_FLAGS[kind]


_NS_FLAGS = {
    "pid": CLONE_NEWPID,
    "network": CLONE_NEWNET,
    "mount": CLONE_NEWNS,
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
    "user": CLONE_NEWUSER,
    "cgroup": CLONE_NEWCGROUP,
    "time": CLONE_NEWTIME,
}

# /proc/PID/ns/<name> for each OCI namespace type
NS_PROC_NAMES = {
    "pid": "pid",
    "network": "net",
    "mount": "mnt",
    "ipc": "ipc",
    "uts": "uts",
    "user": "user",
    "cgroup": "cgroup",
    "time": "time",
}
