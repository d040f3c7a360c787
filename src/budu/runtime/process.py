"""The last steps before the user's program runs, shared by container init and `exec`.

Order (as crun and youki do it): rlimits → supplementary groups, gid, uid (keeping capabilities
across the uid change) → capability sets → no_new_privs → seccomp, as close to execve as possible.
"""

from __future__ import annotations

import os
# _signal, not signal: the builtin needs no import after pivot_root (the container's root has no
# stdlib), and signal's enums cost ~8 ms to import on a small VM
import _signal

from budu.errors import BuduError, ConfigError
from budu.kernel import caps as capslib
from budu.kernel import syscalls as sc
from budu.runtime.spec import RLIMITS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from budu.runtime import seccomp_filter


def apply_rlimits(rlimits: list[dict] | None) -> None:
    if not rlimits:
        return
    for r in rlimits:
        num = RLIMITS[r["type"]]
        soft, hard = _lim(r["soft"]), _lim(r["hard"])
        try:
            sc.prlimit(num, soft, hard)
        except OSError as e:
            if hard != -1 and (soft == -1 or soft > hard):
                raise ConfigError(f"process.rlimits: {r['type']} soft {r['soft']} exceeds hard {r['hard']}") from None
            _soft, cur_hard = sc.getrlimit(num)
            raise ConfigError(
                f"process.rlimits: cannot set {r['type']} to {r['soft']}:{r['hard']}: {os.strerror(e.errno).lower()}"
                f" (the runtime's hard limit is {_fmt(cur_hard)} and raising it needs CAP_SYS_RESOURCE)"
            ) from None


_RLIM_INFINITY = 2**64 - 1


def _lim(v: int) -> int:
    return -1 if v >= _RLIM_INFINITY or v < 0 else v


def _fmt(v: int) -> str:
    return "unlimited" if v < 0 or v >= _RLIM_INFINITY else str(v)


def find_executable(args0: str, env: list[str], cwd: str) -> str:
    """Resolve argv[0] the way execvp would, so a missing program is reported at create."""
    if "/" in args0:
        path = args0 if args0.startswith("/") else os.path.join(cwd, args0)
        if not os.path.exists(path):
            raise ExecNotFound(f'exec: "{args0}": stat {args0}: no such file or directory')
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise ExecDenied(f'exec: "{args0}": permission denied')
        return path
    search = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    for item in env:
        if item.startswith("PATH="):
            search = item[5:]
    denied = False
    for d in search.split(":"):
        candidate = os.path.join(d or ".", args0)
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            denied = True
    if denied:
        raise ExecDenied(f'exec: "{args0}": permission denied')
    raise ExecNotFound(f'exec: "{args0}": executable file not found in $PATH')


class ExecNotFound(BuduError):
    exit_code = 127


class ExecDenied(BuduError):
    exit_code = 126


def set_user(user: dict) -> None:
    uid = user.get("uid", 0)
    gid = user.get("gid", 0)
    groups = user.get("additionalGids") or []
    sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    try:
        os.setgroups(groups)
    except PermissionError:
        # setgroups is denied in a user namespace whose gid_map was written without it
        if groups:
            raise
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    sc.prctl(sc.PR_SET_KEEPCAPS, 0)
    if "umask" in user:
        os.umask(user["umask"])
    else:
        os.umask(0o022)


def finalize(process: dict, seccomp: seccomp_filter.Compiled | None) -> None:
    """Drop to the process's user and privileges; seccomp (compiled by seccomp_filter.prepare
    before the fork) as late as it can be loaded.

    Without no_new_privs the kernel only accepts a filter from a process holding CAP_SYS_ADMIN,
    so it is loaded before the capabilities go (as runc does); with it, just before execve.
    """
    nnp = bool(process.get("noNewPrivileges"))
    if seccomp:
        # imported before the fork by whoever compiled the filter (after pivot_root no module could be)
        from budu.runtime import seccomp_filter

        if not nnp:
            seccomp_filter.load(seccomp)
    capslib.drop_bounding(process.get("capabilities"))
    set_user(process.get("user") or {})
    capslib.apply_sets(process.get("capabilities"))
    if nnp:
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
        if seccomp:
            seccomp_filter.load(seccomp)


def prepare(process: dict) -> str:
    """Enter the working directory, complete the environment, find the program, set rlimits:
    everything that can fail for the user's reasons before privileges go.  Returns the path."""
    cwd = process.get("cwd", "/")
    try:
        os.chdir(cwd)
    except OSError as e:
        raise ExecNotFound(f"process.cwd {cwd!r}: {e.strerror}") from None
    ensure_home(process)
    exe = find_executable(process["args"][0], process.get("env") or [], cwd)
    apply_rlimits(process.get("rlimits"))
    return exe


def ensure_home(process: dict) -> None:
    """Set HOME from the container's /etc/passwd when the config does not (runc does the same)."""
    env = process.setdefault("env", [])
    if any(e.startswith("HOME=") for e in env):
        return
    uid = (process.get("user") or {}).get("uid", 0)
    home = "/"
    try:
        with open("/etc/passwd") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 6 and fields[2] == str(uid):
                    home = fields[5] or "/"
                    break
    except OSError:
        pass
    env.append(f"HOME={home}")


def build_env(env: list[str] | None) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for item in env or ():
        k, _, v = item.partition("=")
        out[k.encode()] = v.encode()
    return out


def exec_process(path: str, process: dict, preserve_fds: int = 0) -> None:
    """execve, with only stdio and the `preserve_fds` descriptors after it (3, 4, ...) open:
    nothing the caller leaked reaches the container."""
    os.closerange(3 + preserve_fds, 1 << 20)
    # Python ignores SIGPIPE and SIGXFSZ; an ignored signal stays ignored across execve, and a
    # container's `yes | head` would never end.  The container starts with the defaults.
    _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)
    _signal.signal(_signal.SIGXFSZ, _signal.SIG_DFL)
    os.execve(path, process["args"], build_env(process.get("env")))
