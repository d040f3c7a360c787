"""A container's seccomp filter as a compiled BPF program: kept per runtime root, loaded with one
system call.

On a small VM libseccomp takes ~20 ms to compile Docker's default profile (and ctypes ~5 ms to
import), on every container start.  The program it produces depends only on the profile, the
kernel and libseccomp itself, so the runtime compiles a profile once, keeps the program under
``<root>/.seccomp/`` named by a SHA-256 of those three, and a start that finds it there never
loads libseccomp at all.  (crun keeps such a cache too.)  Loading is a raw seccomp(2) call, which
also works in the container's process after pivot_root, where the host's libraries are gone.

Only os, errno and the builtin _sha256 are imported: this is on every start's path.
"""

from __future__ import annotations

import _sha256
import errno
import os

from budu.errors import KernelError
from budu.kernel import fastjson
from budu.kernel import syscalls as sc

CACHE_DIR = ".seccomp"  # under the runtime's root; state.check_id keeps it from being a container id
_LIB_FILE = "libseccomp"  # the path of the libseccomp that compiled the programs here
_MAGIC = b"budu-bpf1\n"
_MAX_ENTRIES = 128  # distinct profiles kept; past that the cache starts over

Compiled = tuple[bytes, int]  # (struct sock_filter[] as bytes, SECCOMP_FILTER_FLAG_* bits)


def prepare(root: str, profile: dict) -> Compiled | None:
    """The compiled filter for ``profile`` (None: the profile asks for no seccomp).

    A profile found in the cache was checked when it was compiled; any other one is checked now
    (ConfigError naming the field), so call this before forking.
    """
    cache = os.path.join(root, CACHE_DIR)
    key = _key(cache, profile)
    if key is not None:
        found = _read(os.path.join(cache, key))
        if found is not None:
            return found
    from budu.runtime import seccomp

    compiled = seccomp.compile_bpf(profile)
    if compiled is not None:
        try:
            _store(cache, profile, compiled)
        except OSError:
            pass  # a read-only or full root: every start compiles, nothing worse
    return compiled


def load(compiled: Compiled) -> None:
    """Load the filter into the calling thread (CAP_SYS_ADMIN or no_new_privs needed)."""
    prog, flags = compiled
    try:
        sc.seccomp_set_filter(prog, flags)
    except OSError as e:
        hint = " (loading a filter needs CAP_SYS_ADMIN or no_new_privs)" if e.errno == errno.EACCES else ""
        raise KernelError(f"linux.seccomp: loading the filter failed: {os.strerror(e.errno or 0)}{hint}") from None


def _key(cache: str, profile: dict) -> str | None:
    """SHA-256 of the profile, the kernel and the libseccomp that compiles here; None before the
    first compile has said which libseccomp that is."""
    try:
        with open(os.path.join(cache, _LIB_FILE), "rb") as f:
            lib = f.read().decode()
        st = os.stat(lib)
    except (OSError, UnicodeDecodeError):
        return None
    u = os.uname()
    h = _sha256.sha256(fastjson.dumps(profile).encode())
    h.update(f"\0{u.release}\0{u.version}\0{u.machine}\0{lib}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _read(path: str) -> Compiled | None:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    head = len(_MAGIC) + 4
    prog = data[head:]
    if not data.startswith(_MAGIC) or not prog or len(prog) % 8:
        return None  # not ours, or cut short: compile again
    return prog, int.from_bytes(data[len(_MAGIC):head], "little")


def _store(cache: str, profile: dict, compiled: Compiled) -> None:
    lib = _loaded_libseccomp()
    if lib is None:
        return
    os.makedirs(os.path.dirname(cache), mode=0o711, exist_ok=True)  # the root, as state.new makes it
    try:
        os.mkdir(cache, 0o700)
    except FileExistsError:
        pass
    names = os.listdir(cache)
    if len(names) > _MAX_ENTRIES:
        for name in names:
            _unlink(os.path.join(cache, name))
    _write_atomic(os.path.join(cache, _LIB_FILE), lib.encode())
    key = _key(cache, profile)
    if key is not None:
        prog, flags = compiled
        _write_atomic(os.path.join(cache, key), _MAGIC + flags.to_bytes(4, "little") + prog)


def _loaded_libseccomp() -> str | None:
    """The file of the libseccomp this process loaded (the one that compiled the program)."""
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.rstrip("\n").partition("/")[2]
            if "/libseccomp.so" in f"/{path}":
                return f"/{path}"
    return None


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
