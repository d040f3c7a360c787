"""Tests for budu.runtime.seccomp against the real kernel and libseccomp.

Every filter is loaded in a fresh child interpreter, which then makes a harmless syscall and
prints what happened.  The denied syscalls only touch files in a tmp dir or the child itself,
so a filter that failed to load could not change the host.  Children are made non-dumpable so
that SIGSYS kills leave no core file.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from budu.errors import ConfigError
from budu.runtime import seccomp

# Docker's default profile, as budu ships it for the engine (from moby/profiles, Apache-2.0)
DOCKER_PROFILE = Path(__file__).resolve().parents[2] / "src" / "budu" / "data" / "seccomp-default.json"

_PRELUDE = """\
import ctypes, errno, json, os, resource, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no core file when SIGSYS kills us
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
if os.geteuid() != 0:
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS, needed without CAP_SYS_ADMIN
from budu.runtime import seccomp, seccomp_filter
profile = json.loads(sys.argv[1])

def apply(profile):  # the runtime's way: compiled before the fork, loaded in the child
    compiled = seccomp.compile_bpf(profile)
    if compiled is not None:
        seccomp_filter.load(compiled)
tmp = sys.argv[2]

def attempt(label, fn, *args):
    try:
        fn(*args)
    except OSError as exc:
        print(label, "errno", exc.errno, flush=True)
    else:
        print(label, "ok", flush=True)

def personality(persona):
    libc.personality.restype = ctypes.c_int
    libc.personality.argtypes = [ctypes.c_ulong]
    ctypes.set_errno(0)
    rc = libc.personality(persona)
    if rc == -1:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return rc
"""


def run_child(profile: dict, body: str, tmp_path: Path, before: str = "apply(profile)\n"):
    """Run `before` then `body` in a fresh interpreter; return the CompletedProcess."""
    code = _PRELUDE + before + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", code, json.dumps(profile), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def lines(proc: subprocess.CompletedProcess) -> dict[str, str]:
    """The child's 'label result' lines as a dict; fail with its stderr if it did not exit 0."""
    assert proc.returncode == 0, f"child exited {proc.returncode}: {proc.stderr}"
    out = {}
    for line in proc.stdout.splitlines():
        label, _, rest = line.partition(" ")
        out[label] = rest
    return out


MKDIR = ["mkdir", "mkdirat"]


def test_errno_rule_with_errno_ret_and_default_eperm(tmp_path):
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": MKDIR, "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"},
        ],
    }
    out = lines(
        run_child(
            profile,
            """
            attempt("mkdir", os.mkdir, os.path.join(tmp, "d"))
            attempt("getcwd", os.getcwd)
            attempt("uname", os.uname)
            """,
            tmp_path,
        )
    )
    assert out == {"mkdir": f"errno {errno.ENOSYS}", "getcwd": f"errno {errno.EPERM}", "uname": "ok"}
    assert not (tmp_path / "d").exists()


def test_without_seccomp_the_probes_succeed(tmp_path):
    """Control: the same probes succeed when no filter is loaded."""
    out = lines(
        run_child(
            {},
            """
            attempt("mkdir", os.mkdir, os.path.join(tmp, "d"))
            attempt("getcwd", os.getcwd)
            attempt("personality", personality, 0xFFFFFFFF)
            """,
            tmp_path,
            before="",
        )
    )
    assert out == {"mkdir": "ok", "getcwd": "ok", "personality": "ok"}


# Enough for this interpreter to run the probes and exit; anything else gets the default action.
PYTHON_ALLOW_LIST = [
    "read", "write", "readv", "writev", "pread64", "pwrite64", "close", "fstat", "newfstatat",
    "statx", "lseek", "ioctl", "fcntl", "dup", "dup2", "dup3", "mmap", "mprotect", "munmap",
    "mremap", "madvise", "brk", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
    "futex", "getpid", "gettid", "getuid", "geteuid", "getgid", "getegid", "getrandom",
    "clock_gettime", "clock_nanosleep", "exit", "exit_group", "uname", "getcwd", "openat",
    "getdents64", "readlink", "sysinfo", "set_robust_list", "rseq", "prlimit64",
]


def test_default_errno_with_allow_list(tmp_path):
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.ENXIO,
        "syscalls": [{"names": PYTHON_ALLOW_LIST, "action": "SCMP_ACT_ALLOW"}],
    }
    out = lines(
        run_child(
            profile,
            """
            attempt("uname", os.uname)
            attempt("getcwd", os.getcwd)
            attempt("mkdir", os.mkdir, os.path.join(tmp, "d"))
            attempt("personality", personality, 0xFFFFFFFF)
            """,
            tmp_path,
        )
    )
    assert out == {
        "uname": "ok",
        "getcwd": "ok",
        "mkdir": f"errno {errno.ENXIO}",
        "personality": f"errno {errno.ENXIO}",
    }
    assert not (tmp_path / "d").exists()


def test_default_errno_defaults_to_eperm(tmp_path):
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": PYTHON_ALLOW_LIST, "action": "SCMP_ACT_ALLOW"}],
    }
    out = lines(run_child(profile, 'attempt("mkdir", os.mkdir, os.path.join(tmp, "d"))\n', tmp_path))
    assert out == {"mkdir": f"errno {errno.EPERM}"}


def test_arg_compare_eq_on_personality_query(tmp_path):
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"}],
            }
        ],
    }
    out = lines(
        run_child(
            profile,
            """
            attempt("query", personality, 0xFFFFFFFF)
            attempt("set", personality, 0)  # PER_LINUX, what the child already runs with
            """,
            tmp_path,
        )
    )
    assert out == {"query": f"errno {errno.EPERM}", "set": "ok"}


FCHMOD_PROBE = """
fd = os.open(os.path.join(tmp, "f"), os.O_RDONLY | os.O_CREAT, 0o600)
for mode in MODES:
    attempt(oct(mode), os.fchmod, fd, mode)
"""
MODES = [0o600, 0o640, 0o644, 0o666, 0o700]


def fchmod_results(tmp_path: Path, args: list[dict]) -> dict[str, str]:
    """Deny fchmod with the given arg comparisons; report which MODES were denied."""
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["fchmod"], "action": "SCMP_ACT_ERRNO", "args": args}],
    }
    return lines(run_child(profile, f"MODES = {MODES!r}\n" + FCHMOD_PROBE, tmp_path))


@pytest.mark.parametrize(
    "op, value, value_two, denied",
    [
        ("SCMP_CMP_EQ", 0o644, None, {0o644}),
        ("SCMP_CMP_NE", 0o644, None, {0o600, 0o640, 0o666, 0o700}),
        ("SCMP_CMP_LT", 0o644, None, {0o600, 0o640}),
        ("SCMP_CMP_LE", 0o644, None, {0o600, 0o640, 0o644}),
        ("SCMP_CMP_GE", 0o644, None, {0o644, 0o666, 0o700}),
        ("SCMP_CMP_GT", 0o644, None, {0o666, 0o700}),
        # value is the mask, valueTwo the expected result: deny group-readable modes
        ("SCMP_CMP_MASKED_EQ", 0o040, 0o040, {0o640, 0o644, 0o666}),
        # deny world-writable modes
        ("SCMP_CMP_MASKED_EQ", 0o002, 0o002, {0o666}),
    ],
)
def test_arg_compare_operators(tmp_path, op, value, value_two, denied):
    arg = {"index": 1, "value": value, "op": op}
    if value_two is not None:
        arg["valueTwo"] = value_two
    out = fchmod_results(tmp_path, [arg])
    expected = {oct(m): (f"errno {errno.EPERM}" if m in denied else "ok") for m in MODES}
    assert out == expected


def test_same_arg_index_twice_is_split_into_rules_like_runc(tmp_path):
    # libseccomp refuses two comparisons on one argument in one rule; runc adds one rule per
    # comparison, so the comparisons OR together.
    out = fchmod_results(
        tmp_path,
        [
            {"index": 1, "value": 0o600, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 0o700, "op": "SCMP_CMP_EQ"},
        ],
    )
    denied = {0o600, 0o700}
    assert out == {oct(m): (f"errno {errno.EPERM}" if m in denied else "ok") for m in MODES}


def test_comparisons_on_different_args_all_must_match(tmp_path):
    # lseek(fd, offset, whence): denied only when offset == 5 AND whence == SEEK_SET.
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": ["lseek"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.EINVAL,
                "args": [
                    {"index": 1, "value": 5, "op": "SCMP_CMP_EQ"},
                    {"index": 2, "value": os.SEEK_SET, "op": "SCMP_CMP_EQ"},
                ],
            }
        ],
    }
    out = lines(
        run_child(
            profile,
            """
            fd = os.open(os.path.join(tmp, "f"), os.O_RDWR | os.O_CREAT, 0o600)
            attempt("5_set", os.lseek, fd, 5, os.SEEK_SET)
            attempt("5_cur", os.lseek, fd, 5, os.SEEK_CUR)
            attempt("0_set", os.lseek, fd, 0, os.SEEK_SET)
            """,
            tmp_path,
        )
    )
    assert out == {"5_set": f"errno {errno.EINVAL}", "5_cur": "ok", "0_set": "ok"}


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"])
def test_kill_actions_kill_the_child_with_sigsys(tmp_path, action):
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getppid"], "action": action}]}
    proc = run_child(profile, 'print("before", flush=True)\nos.getppid()\nprint("survived", flush=True)\n', tmp_path)
    assert proc.returncode == -signal.SIGSYS, proc.stderr
    assert proc.stdout == "before\n"
    assert not list(tmp_path.glob("core*"))


def test_trap_sends_sigsys(tmp_path):
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_TRAP"}]}
    out = lines(
        run_child(
            profile,
            """
            import signal
            signal.signal(signal.SIGSYS, lambda *a: print("trapped", "yes", flush=True))
            os.getppid()
            print("after", "yes", flush=True)
            """,
            tmp_path,
            before="import signal\napply(profile)\n",
        )
    )
    assert out == {"trapped": "yes", "after": "yes"}


def test_trace_without_tracer_fails_with_enosys(tmp_path):
    # With no ptrace tracer attached the kernel fails a SECCOMP_RET_TRACE syscall with ENOSYS.
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": MKDIR, "action": "SCMP_ACT_TRACE", "errnoRet": 7}],
    }
    out = lines(run_child(profile, 'attempt("mkdir", os.mkdir, os.path.join(tmp, "d"))\n', tmp_path))
    assert out == {"mkdir": f"errno {errno.ENOSYS}"}
    assert not (tmp_path / "d").exists()


def test_unknown_syscall_names_are_skipped(tmp_path):
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["no_such_syscall_budu"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["mkdir", "not_a_syscall_either", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
        ],
    }
    seccomp.compile_bpf(profile)
    out = lines(run_child(profile, 'attempt("mkdir", os.mkdir, os.path.join(tmp, "d"))\n', tmp_path))
    assert out == {"mkdir": f"errno {errno.EPERM}"}


def test_rule_equal_to_default_action_is_skipped(tmp_path):
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EPERM,
        "syscalls": [
            {"names": PYTHON_ALLOW_LIST, "action": "SCMP_ACT_ALLOW"},
            # Same as the default (ERRNO with EPERM): libseccomp would refuse it with EACCES.
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
            # ERRNO with another errno is a different action: kept.
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
        ],
    }
    out = lines(
        run_child(
            profile,
            """
            attempt("mkdir", os.mkdir, os.path.join(tmp, "d"))
            attempt("personality", personality, 0xFFFFFFFF)
            """,
            tmp_path,
        )
    )
    assert out == {"mkdir": f"errno {errno.EPERM}", "personality": f"errno {errno.ENOSYS}"}


def test_allow_rule_with_allow_default_is_skipped(tmp_path):
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getcwd"], "action": "SCMP_ACT_ALLOW"},
            {"names": MKDIR, "action": "SCMP_ACT_ERRNO"},
        ],
    }
    out = lines(
        run_child(
            profile,
            'attempt("getcwd", os.getcwd)\nattempt("mkdir", os.mkdir, os.path.join(tmp, "d"))\n',
            tmp_path,
        )
    )
    assert out == {"getcwd": "ok", "mkdir": f"errno {errno.EPERM}"}


def test_log_action_and_flags_load(tmp_path):
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [
            {"names": ["uname"], "action": "SCMP_ACT_LOG"},
            {"names": MKDIR, "action": "SCMP_ACT_ERRNO"},
        ],
    }
    out = lines(
        run_child(
            profile,
            """
            attempt("uname", os.uname)
            attempt("mkdir", os.mkdir, os.path.join(tmp, "d"))
            """,
            tmp_path,
        )
    )
    assert out == {"uname": "ok", "mkdir": f"errno {errno.EPERM}"}


def _native_archs() -> list[str]:
    return {
        "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    }.get(platform.machine(), [])


def test_architectures_including_native_load(tmp_path):
    archs = _native_archs()
    if not archs:
        pytest.fail(f"no architecture list for {platform.machine()}")
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": archs,
        "syscalls": [{"names": MKDIR, "action": "SCMP_ACT_ERRNO"}],
    }
    out = lines(run_child(profile, 'attempt("mkdir", os.mkdir, os.path.join(tmp, "d"))\n', tmp_path))
    assert out == {"mkdir": f"errno {errno.EPERM}"}


def test_seccomp_stays_active_in_exec_child(tmp_path):
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": MKDIR, "action": "SCMP_ACT_ERRNO"}]}
    body = """
    import subprocess
    rc = subprocess.run([sys.executable, "-c", "import os, sys; os.mkdir(sys.argv[1])", os.path.join(tmp, "d")],
                        capture_output=True).returncode
    print("exec_child", rc, flush=True)
    """
    out = lines(run_child(profile, body, tmp_path))
    assert out == {"exec_child": "1"}
    assert not (tmp_path / "d").exists()


def test_load_works_after_root_change_when_compiled_first(tmp_path):
    # The runtime compiles before forking and loads after pivot_root, when the host's
    # libseccomp.so.2 is no longer reachable: loading must not need it.
    empty_root = tmp_path / "root"
    empty_root.mkdir()
    if os.geteuid() != 0:
        pytest.fail("chroot needs root")
    before = ('compiled = seccomp.compile_bpf(profile)\nos.chroot(sys.argv[2] + "/root")\nos.chdir("/")\n'
              'seccomp_filter.load(compiled)\n')
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": MKDIR, "action": "SCMP_ACT_ERRNO"}]}
    out = lines(run_child(profile, 'attempt("mkdir", os.mkdir, "/d")\n', tmp_path, before=before))
    assert out == {"mkdir": f"errno {errno.EPERM}"}
    assert not (empty_root / "d").exists()


def test_filter_is_loaded_without_setting_no_new_privs(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("without CAP_SYS_ADMIN the child sets no_new_privs itself")
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": MKDIR, "action": "SCMP_ACT_ERRNO"}]}
    body = """
    status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
    print("Seccomp", status["Seccomp"].strip(), flush=True)
    print("NoNewPrivs", status["NoNewPrivs"].strip(), flush=True)
    """
    out = lines(run_child(profile, body, tmp_path))
    assert out == {"Seccomp": "2", "NoNewPrivs": "0"}


def test_load_without_privilege_or_no_new_privs_is_a_clear_kernel_error(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("needs root to drop to another uid")
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": MKDIR, "action": "SCMP_ACT_ERRNO"}]}
    before = """
compiled = seccomp.compile_bpf(profile)
os.setresuid(65534, 65534, 65534)  # drops every capability; no_new_privs stays unset
try:
    seccomp_filter.load(compiled)
except Exception as exc:
    print(type(exc).__name__, exc, flush=True)
"""
    out = lines(run_child(profile, "", tmp_path, before=before))
    assert out["KernelError"] == (
        "linux.seccomp: loading the filter failed: Permission denied "
        "(loading a filter needs CAP_SYS_ADMIN or no_new_privs)"
    )


def test_empty_object_means_no_seccomp(tmp_path):
    seccomp.compile_bpf({})
    out = lines(run_child({}, 'attempt("getcwd", os.getcwd)\n', tmp_path))
    assert out == {"getcwd": "ok"}


# --- Docker's default profile, converted to OCI form the way an engine would ------------------

DOCKER_CAPS = {
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}


def _kernel_at_least(version: str) -> bool:
    def parse(v: str) -> tuple[int, ...]:
        return tuple(int("".join(ch for ch in part if ch.isdigit()) or 0) for part in v.split(".")[:2])

    return parse(platform.release()) >= parse(version)


GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def docker_default_as_oci() -> dict:
    """Docker's profile for this arch and Docker's default capabilities, in OCI form."""
    src = json.loads(DOCKER_PROFILE.read_text())
    native = _native_archs()
    go_arch = GO_ARCH.get(platform.machine(), platform.machine())
    archs: list[str] = []
    for entry in src.get("archMap") or []:
        if native and entry["architecture"] == native[0]:
            archs = [entry["architecture"], *entry.get("subArchitectures", [])]
    syscalls = []
    for entry in src["syscalls"]:
        inc, exc = entry.get("includes") or {}, entry.get("excludes") or {}
        if inc.get("arches") and go_arch not in inc["arches"]:
            continue
        if go_arch in exc.get("arches", []):
            continue
        if not set(inc.get("caps", [])) <= DOCKER_CAPS or set(exc.get("caps", [])) & DOCKER_CAPS:
            continue
        if inc.get("minKernel") and not _kernel_at_least(inc["minKernel"]):
            continue
        syscalls.append({k: entry[k] for k in ("names", "action", "errnoRet", "args") if entry.get(k) is not None})
    profile = {"defaultAction": src["defaultAction"], "syscalls": syscalls}
    if "defaultErrnoRet" in src:
        profile["defaultErrnoRet"] = src["defaultErrnoRet"]
    if archs:
        profile["architectures"] = archs
    return profile


def test_docker_default_profile(tmp_path):
    profile = docker_default_as_oci()
    seccomp.compile_bpf(profile)
    out = lines(
        run_child(
            profile,
            """
            attempt("query", personality, 0xFFFFFFFF)
            attempt("addr_no_randomize", personality, 0x0040000)
            attempt("mkdir", os.mkdir, os.path.join(tmp, "d"))
            import subprocess
            print("exec", subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True).returncode)
            """,
            tmp_path,
        )
    )
    assert out == {
        "query": "ok",
        "addr_no_randomize": f"errno {errno.EPERM}",  # only a few personalities are allowed
        "mkdir": "ok",
        "exec": "0",
    }


# --- validate(): one-line errors naming the field ---------------------------------------------


def ok_profile(**overrides) -> dict:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["fchmod"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}]},
            {"names": ["getppid"], "action": "SCMP_ACT_LOG"},
        ],
    }
    profile.update(overrides)
    return profile


def test_validate_accepts_a_good_profile():
    seccomp.compile_bpf(ok_profile())
    seccomp.compile_bpf({"defaultAction": "SCMP_ACT_KILL_PROCESS"})


def with_syscall(index: int, **fields) -> dict:
    profile = ok_profile()
    entry = dict(profile["syscalls"][index])
    for key, value in fields.items():
        if value is ...:
            entry.pop(key, None)
        else:
            entry[key] = value
    profile["syscalls"][index] = entry
    return profile


def with_arg(**fields) -> dict:
    arg = {"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}
    for key, value in fields.items():
        if value is ...:
            arg.pop(key)
        else:
            arg[key] = value
    return with_syscall(1, args=[{"index": 0, "value": 3, "op": "SCMP_CMP_EQ"}, arg])


@pytest.mark.parametrize(
    "profile, message",
    [
        (with_syscall(2, action="SCMP_ACT_FOO"), 'linux.seccomp.syscalls[2].action: unknown action "SCMP_ACT_FOO"'),
        (ok_profile(defaultAction="ALLOW"), 'linux.seccomp.defaultAction: unknown action "ALLOW"'),
        (ok_profile(defaultAction=None, syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]), "linux.seccomp.defaultAction: required"),
        (ok_profile(architectures=["SCMP_ARCH_BAR"]), 'linux.seccomp.architectures[0]: unknown architecture "SCMP_ARCH_BAR"'),
        (ok_profile(architectures=["SCMP_ARCH_X86", 64]), "linux.seccomp.architectures[1]: must be a string, got 64"),
        (ok_profile(architectures="SCMP_ARCH_X86"), 'linux.seccomp.architectures: must be an array, got "SCMP_ARCH_X86"'),
        (with_arg(op="SCMP_CMP_FOO"), 'linux.seccomp.syscalls[1].args[1].op: unknown operator "SCMP_CMP_FOO"'),
        (with_arg(op=...), "linux.seccomp.syscalls[1].args[1].op: required"),
        (with_arg(value=...), "linux.seccomp.syscalls[1].args[1].value: required"),
        (with_arg(index=6), "linux.seccomp.syscalls[1].args[1].index: must be an integer from 0 to 5, got 6"),
        (with_arg(index=True), "linux.seccomp.syscalls[1].args[1].index: must be an integer from 0 to 5, got true"),
        (with_arg(value=-1), "linux.seccomp.syscalls[1].args[1].value: must be an unsigned 64-bit integer, got -1"),
        (with_arg(value=1 << 64), f"linux.seccomp.syscalls[1].args[1].value: must be an unsigned 64-bit integer, got {1 << 64}"),
        (with_arg(valueTwo="0"), 'linux.seccomp.syscalls[1].args[1].valueTwo: must be an unsigned 64-bit integer, got "0"'),
        (with_syscall(0, names=...), "linux.seccomp.syscalls[0].names: required"),
        (with_syscall(0, names=[]), "linux.seccomp.syscalls[0].names: must be a non-empty array of syscall names, got []"),
        (with_syscall(0, names="mkdir"), 'linux.seccomp.syscalls[0].names: must be a non-empty array of syscall names, got "mkdir"'),
        (with_syscall(0, names=["mkdir", 3]), "linux.seccomp.syscalls[0].names[1]: must be a non-empty string, got 3"),
        (with_syscall(0, names=["mkdir", ""]), 'linux.seccomp.syscalls[0].names[1]: must be a non-empty string, got ""'),
        (with_syscall(0, action=...), "linux.seccomp.syscalls[0].action: required"),
        (with_syscall(0, errnoRet=-1), "linux.seccomp.syscalls[0].errnoRet: must be an integer from 0 to 65535, got -1"),
        (with_syscall(0, errnoRet=70000), "linux.seccomp.syscalls[0].errnoRet: must be an integer from 0 to 65535, got 70000"),
        (with_syscall(2, errnoRet=1), 'linux.seccomp.syscalls[2].errnoRet: not valid with action "SCMP_ACT_LOG" (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE return an errno)'),
        (ok_profile(defaultErrnoRet=1), 'linux.seccomp.defaultErrnoRet: not valid with action "SCMP_ACT_ALLOW" (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE return an errno)'),
        (ok_profile(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": "x"}]), 'linux.seccomp.syscalls[0].args: must be an array, got "x"'),
        (ok_profile(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": [1]}]), "linux.seccomp.syscalls[0].args[0]: must be an object, got 1"),
        (ok_profile(syscalls=["mkdir"]), 'linux.seccomp.syscalls[0]: must be an object, got "mkdir"'),
        (ok_profile(syscalls={"names": ["mkdir"]}), "linux.seccomp.syscalls: must be an array, got {'names': ['mkdir']}"),
        (ok_profile(flags=["SECCOMP_FILTER_FLAG_FOO"]), 'linux.seccomp.flags[0]: unknown flag "SECCOMP_FILTER_FLAG_FOO"'),
        (ok_profile(listenerPath=3), "linux.seccomp.listenerPath: must be a string, got 3"),
        (with_syscall(0, action="SCMP_ACT_NOTIFY"), "linux.seccomp: SCMP_ACT_NOTIFY needs listenerPath, which budu-runtime does not support yet"),
        (ok_profile(defaultAction="SCMP_ACT_NOTIFY"), "linux.seccomp: SCMP_ACT_NOTIFY needs listenerPath, which budu-runtime does not support yet"),
        ("SCMP_ACT_ALLOW", 'linux.seccomp: must be an object, got "SCMP_ACT_ALLOW"'),
    ],
)
def test_validate_errors(profile, message):
    with pytest.raises(ConfigError) as info:
        seccomp.compile_bpf(profile)
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_validate_reports_the_first_bad_entry_even_after_skippable_ones():
    # A rule equal to the default action is skipped by apply(), but still checked.
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 9, "value": 0, "op": "SCMP_CMP_EQ"}]}],
    }
    with pytest.raises(ConfigError, match=r"syscalls\[0\]\.args\[0\]\.index"):
        seccomp.compile_bpf(profile)


def test_validate_rejects_arch_unknown_to_libseccomp():
    unsupported = [a for a in ("SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_SH", "SCMP_ARCH_M68K") if a not in seccomp.features()["archs"]]
    assert unsupported, "Debian 12's libseccomp 2.5.4 lacks these; pick another unknown one"
    with pytest.raises(ConfigError, match=r"^linux\.seccomp\.architectures\[0\]: architecture .* is not supported by libseccomp"):
        seccomp.compile_bpf(ok_profile(architectures=[unsupported[0]]))


def test_validate_rejects_wait_killable_recv():
    with pytest.raises(ConfigError, match=r"^linux\.seccomp\.flags\[1\]: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV is not supported"):
        seccomp.compile_bpf(ok_profile(flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]))


def test_validate_accepts_null_optional_fields():
    seccomp.compile_bpf(
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": None,
            "architectures": None,
            "flags": [],
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ALLOW", "args": None, "errnoRet": None}],
        }
    )


# --- features() ----------------------------------------------------------------------------------


def test_features():
    f = seccomp.features()
    assert set(f) == {"enabled", "actions", "operators", "archs", "knownFlags", "supportedFlags"}
    assert f["enabled"] is True
    assert set(f["actions"]) == {
        "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",
    }  # SCMP_ACT_NOTIFY is left out: no listenerPath support
    assert f["operators"] == sorted(
        ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"]
    )
    for arch in _native_archs():
        assert arch in f["archs"]
    assert "SCMP_ARCH_BAR" not in f["archs"]
    assert set(f["knownFlags"]) == {
        "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
    }
    assert set(f["supportedFlags"]) <= set(f["knownFlags"])
    assert "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" not in f["supportedFlags"]
    assert "SECCOMP_FILTER_FLAG_LOG" in f["supportedFlags"]  # any kernel >= 4.14
    json.dumps(f)  # the features document is JSON


# Architectures of the other byte order: libseccomp knows them, but one filter cannot hold both
# orders (EDOM), with runc as with budu-runtime.
BIG_ENDIAN = {"SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_PARISC",
              "SCMP_ARCH_PARISC64", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
              "SCMP_ARCH_SHEB"}


def test_features_values_are_accepted_by_the_compiler():
    f = seccomp.features()
    for action in f["actions"]:
        seccomp.compile_bpf({"defaultAction": action})
    seccomp.compile_bpf({"defaultAction": "SCMP_ACT_ALLOW", "flags": f["supportedFlags"]})
    same_order = [a for a in f["archs"] if (a in BIG_ENDIAN) == (sys.byteorder == "big")]
    assert len(same_order) >= 3  # the native one, its 32-bit one, x32...
    seccomp.compile_bpf({"defaultAction": "SCMP_ACT_ALLOW", "architectures": same_order})


# --- the hot-path import rule --------------------------------------------------------------------


def test_import_is_light_and_does_not_load_libseccomp():
    code = (
        "import sys; before = set(sys.modules)\n"
        "import budu.runtime.seccomp\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
        "print('libseccomp' in open('/proc/self/maps').read())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    modules, loaded = proc.stdout.split("\n")[:2]
    for heavy in ("json", "re", "enum", "dataclasses", "typing", "signal", "socket"):
        assert heavy not in modules.split(), modules
    assert loaded == "False"
