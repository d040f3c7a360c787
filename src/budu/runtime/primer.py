"""Start the kernel's slow part of moving a process between cgroups, before anything else.

The first write to any cgroup.procs after a quiet spell waits for an RCU grace period (8-25 ms on
a small VM with HZ=250) before the kernel takes its global lock for migrations, and that lock
(with cgroup_mutex, held meanwhile) also gates the mkdir of the container's cgroup.  Writes
within about a grace period of the last one do not wait.  So `create`, `run` and `exec` start a
child that moves itself into the cgroup it is already in (a no-op) as the very first thing they
do: it pays that wait while the runtime imports its modules, reads the config and forks the
container's init, and repeats the no-op every 2 ms until `release()`, so that the real attach
finds the lock warm however long the way to it took.

The child is a bare clone sharing our memory (start_primer in kernel/_budukernel.c): a fork of
this interpreter would cost ~0.5 ms and make every page this process writes afterwards a
copy-on-write fault, and a spawned shell would reach its write ~1 ms later.  This module runs
before even `os` is imported (that alone takes ~2 ms): it uses the builtin posix module and the
C extension only.
"""

import posix

try:
    from budu.kernel import _budukernel
except ImportError:  # a source tree that was never built: budu.kernel.syscalls says what to do
    _budukernel = None

PROC_SELF_CGROUP = "/proc/self/cgroup"
CGROUP_ROOT = "/sys/fs/cgroup"


def procs_file(proc_self_cgroup: str) -> str | None:
    """The cgroup.procs file of our own cgroup: v1's pids hierarchy, else the unified one."""
    path = None
    for line in proc_self_cgroup.splitlines():
        _, ctrls, rel = line.split(":", 2)
        if ctrls == "":
            path = f"{CGROUP_ROOT}{rel.rstrip('/')}/cgroup.procs" if path is None else path
        elif "pids" in ctrls.split(","):
            path = f"{CGROUP_ROOT}/{ctrls}{rel.rstrip('/')}/cgroup.procs"
    return path


def prime_attach() -> int:
    """Start the primer child; returns its pid (reap it with waitpid), or 0 if it could not start."""
    if _budukernel is None:
        return 0
    try:
        fd = posix.open(PROC_SELF_CGROUP, posix.O_RDONLY | posix.O_CLOEXEC)
        try:
            text = posix.read(fd, 65536).decode()
        finally:
            posix.close(fd)
    except OSError:
        return 0
    path = procs_file(text)
    if path is None:
        return 0
    pid = _budukernel.start_primer(path)
    return pid if pid > 0 else 0  # -errno: an architecture it has no raw syscalls for; the attach waits


def release() -> None:
    """The runtime has made its own move (or will make none): let the primer child exit."""
    if _budukernel is not None:
        _budukernel.stop_primer()
