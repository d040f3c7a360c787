"""Apply the OCI runtime-spec ``linux.seccomp`` object with libseccomp (through ctypes).

libseccomp compiles the filter to BPF for us (arch checks, x32, socketcall multiplexing...), so
nothing here writes BPF by hand.  Behaviour follows runc where the spec leaves room:

* unknown syscall names are skipped silently (a profile lists syscalls newer than the host);
* a rule whose action equals the default action is skipped (libseccomp rejects it with EACCES);
* if one argument index has several comparisons, every comparison of that entry becomes a rule
  of its own (libseccomp refuses two comparisons on the same argument in one rule);
* ``flags`` absent (not merely empty) means SECCOMP_FILTER_FLAG_SPEC_ALLOW when supported;
* an object with neither ``defaultAction`` nor ``syscalls`` means "no seccomp".

Use: :func:`compile_bpf` checks a profile and compiles it, before the runtime forks (through
budu.runtime.seccomp_filter, which keeps the program); the container's process loads the
program with seccomp_filter.load, without libseccomp, as late as possible before ``execve``.

Imported only when a profile is compiled, not on a start that finds its program kept: ctypes,
os and errno (plus budu.errors), and libseccomp is loaded on first use.
"""

from __future__ import annotations

import ctypes
import errno
import os

from budu.errors import ConfigError, KernelError

# --- libseccomp constants (seccomp.h, libseccomp 2.5) -------------------------------------------

# Action base values; ERRNO and TRACE carry a 16-bit datum in their low bits.
_ACTIONS: dict[str, int] = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
    "SCMP_ACT_NOTIFY": 0x7FC00000,
}
_ERRNO_ACTIONS = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
# Actions libseccomp only accepts from API level 3 on (kernel >= 4.14).
_API3_ACTIONS = ("SCMP_ACT_LOG", "SCMP_ACT_KILL_PROCESS")
_NOTIFY_MESSAGE = (
    "linux.seccomp: SCMP_ACT_NOTIFY needs listenerPath, which budu-runtime does not support yet"
)

_OPERATORS: dict[str, int] = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# The runtime-spec SeccompArch enum; libseccomp's token name is the lower-case suffix.
_ARCHES = (
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_SH",
    "SCMP_ARCH_SHEB",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
)

# scmp_filter_attr values.
_ATTR_CTL_NNP = 3
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_CTL_OPTIMIZE = 8
_ATTR_API_SYSRAWRC = 9

# Filter flags of the runtime-spec and the libseccomp attribute that sets each.  WAIT_KILLABLE_RECV
# only matters for SCMP_ACT_NOTIFY (unsupported) and needs libseccomp 2.6: known, never supported.
_KNOWN_FLAGS = (
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
)
_FLAG_ATTRS: dict[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": _ATTR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": _ATTR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _ATTR_CTL_SSB,
}
_DEFAULT_FLAG = "SECCOMP_FILTER_FLAG_SPEC_ALLOW"
# The seccomp(2) flag bit each of those attributes becomes when the filter is loaded.
_KERNEL_FLAGS: dict[int, int] = {_ATTR_CTL_TSYNC: 1, _ATTR_CTL_LOG: 2, _ATTR_CTL_SSB: 4}

_NR_SCMP_ERROR = -1  # seccomp_syscall_resolve_name: unknown name
_MAX_ARGS = 6  # a Linux syscall has at most six arguments
_MAX_ERRNO_RET = 0xFFFF  # SECCOMP_RET_DATA is 16 bits
_UINT64_MAX = (1 << 64) - 1
# runc's threshold for libseccomp's binary-tree optimisation (<= 2.5.4 misbehaves with no rules).
_OPTIMIZE_MIN_RULES = 32

# --- lazy libseccomp binding -------------------------------------------------------------------

_lib: ctypes.CDLL | None = None
_ArgCmp: type | None = None
_flag_support: dict[str, bool] = {}


def _seccomp() -> ctypes.CDLL:
    """Load libseccomp on first use (not at import: the import is on the start hot path)."""
    global _lib, _ArgCmp
    if _lib is not None:
        return _lib
    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError as exc:
        raise KernelError(f"linux.seccomp: cannot load libseccomp.so.2 (install libseccomp2): {exc}") from None

    class ArgCmp(ctypes.Structure):
        """struct scmp_arg_cmp: one comparison on one syscall argument."""

        _fields_ = [
            ("arg", ctypes.c_uint),
            ("op", ctypes.c_int),
            ("datum_a", ctypes.c_uint64),
            ("datum_b", ctypes.c_uint64),
        ]

    class Version(ctypes.Structure):
        """struct scmp_version."""

        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    ctx = ctypes.c_void_p
    u32 = ctypes.c_uint32
    for name, restype, argtypes in (
        ("seccomp_init", ctx, [u32]),
        ("seccomp_release", None, [ctx]),
        ("seccomp_arch_resolve_name", u32, [ctypes.c_char_p]),
        ("seccomp_arch_add", ctypes.c_int, [ctx, u32]),
        ("seccomp_attr_set", ctypes.c_int, [ctx, ctypes.c_int, u32]),
        ("seccomp_syscall_resolve_name", ctypes.c_int, [ctypes.c_char_p]),
        (
            "seccomp_rule_add_array",
            ctypes.c_int,
            [ctx, u32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ArgCmp)],
        ),
        ("seccomp_export_bpf", ctypes.c_int, [ctx, ctypes.c_int]),
        ("seccomp_api_get", ctypes.c_uint, []),
        ("seccomp_version", ctypes.POINTER(Version), []),
    ):
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    _ArgCmp = ArgCmp
    _lib = lib
    return lib


def _version() -> str:
    """libseccomp's version, for error messages."""
    v = _seccomp().seccomp_version().contents
    return f"{v.major}.{v.minor}.{v.micro}"


def _arch_token(name: str) -> int:
    """libseccomp's token for an OCI architecture name, 0 if this libseccomp lacks it."""
    return _seccomp().seccomp_arch_resolve_name(name[len("SCMP_ARCH_"):].lower().encode())


def _flag_supported(flag: str) -> bool:
    """Whether libseccomp and the kernel accept the flag (libseccomp probes the kernel)."""
    if flag not in _flag_support:
        attr = _FLAG_ATTRS.get(flag)
        ok = False
        if attr is not None:
            lib = _seccomp()
            ctx = lib.seccomp_init(_ACTIONS["SCMP_ACT_ALLOW"])
            if ctx:
                try:
                    ok = lib.seccomp_attr_set(ctx, attr, 1) == 0
                finally:
                    lib.seccomp_release(ctx)
        _flag_support[flag] = ok
    return _flag_support[flag]


def _supported_actions() -> list[str]:
    """Actions budu-runtime can load here: NOTIFY is not (no listenerPath support)."""
    level = _seccomp().seccomp_api_get()
    return sorted(
        a for a in _ACTIONS if a != "SCMP_ACT_NOTIFY" and (level >= 3 or a not in _API3_ACTIONS)
    )


# --- validation / compilation ------------------------------------------------------------------


def _is_uint(value: object, limit: int) -> bool:
    """An integer in [0, limit]; JSON booleans are not integers here."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit


def _show(value: object) -> str:
    """A value as it would look in config.json, for messages."""
    if isinstance(value, str):
        return '"' + value + '"'
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    return repr(value)


def _list(profile: dict, key: str, path: str) -> list:
    """An optional array field (absent or null means empty)."""
    value = profile.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{path}: must be an array, got {_show(value)}")
    return value


def _action(name: object, errno_ret: object, path: str, errno_path: str, api: list[int]) -> int:
    """Check an action name (and its errnoRet) and return libseccomp's action value."""
    if not isinstance(name, str):
        raise ConfigError(f"{path}: must be a string, got {_show(name)}")
    if name not in _ACTIONS:
        raise ConfigError(f"{path}: unknown action {_show(name)}")
    if name == "SCMP_ACT_NOTIFY":
        raise ConfigError(_NOTIFY_MESSAGE)
    if name in _API3_ACTIONS:
        if not api:
            api.append(_seccomp().seccomp_api_get())
        if api[0] < 3:
            raise ConfigError(
                f"{path}: {name} is not supported by this kernel and libseccomp {_version()}"
            )
    value = _ACTIONS[name]
    if errno_ret is not None:
        if name not in _ERRNO_ACTIONS:
            raise ConfigError(
                f"{errno_path}: not valid with action {_show(name)} "
                "(only SCMP_ACT_ERRNO and SCMP_ACT_TRACE return an errno)"
            )
        if not _is_uint(errno_ret, _MAX_ERRNO_RET):
            raise ConfigError(f"{errno_path}: must be an integer from 0 to 65535, got {_show(errno_ret)}")
        value |= errno_ret
    elif name in _ERRNO_ACTIONS:
        value |= errno.EPERM  # runc's default for both ERRNO and TRACE
    return value


def _conditions(entry: dict, path: str) -> list[list[tuple[int, int, int, int]]]:
    """Check an entry's args; return the comparison groups, one group per libseccomp rule."""
    args = _list(entry, "args", path + ".args")
    comparisons = []
    per_index = [0] * _MAX_ARGS
    for i, arg in enumerate(args):
        apath = f"{path}.args[{i}]"
        if not isinstance(arg, dict):
            raise ConfigError(f"{apath}: must be an object, got {_show(arg)}")
        for key in ("index", "value", "op"):
            if arg.get(key) is None:
                raise ConfigError(f"{apath}.{key}: required")
        index = arg["index"]
        if not _is_uint(index, _MAX_ARGS - 1):
            raise ConfigError(f"{apath}.index: must be an integer from 0 to 5, got {_show(index)}")
        value = arg["value"]
        if not _is_uint(value, _UINT64_MAX):
            raise ConfigError(f"{apath}.value: must be an unsigned 64-bit integer, got {_show(value)}")
        value_two = arg.get("valueTwo")
        if value_two is None:
            value_two = 0
        elif not _is_uint(value_two, _UINT64_MAX):
            raise ConfigError(
                f"{apath}.valueTwo: must be an unsigned 64-bit integer, got {_show(value_two)}"
            )
        op = arg["op"]
        if not isinstance(op, str):
            raise ConfigError(f"{apath}.op: must be a string, got {_show(op)}")
        if op not in _OPERATORS:
            raise ConfigError(f"{apath}.op: unknown operator {_show(op)}")
        per_index[index] += 1
        # For MASKED_EQ libseccomp reads datum_a as the mask and datum_b as the expected value,
        # which is the OCI order (value = mask, valueTwo = expected).
        comparisons.append((index, _OPERATORS[op], value, value_two))
    if not comparisons:
        return [[]]
    if max(per_index) > 1:
        # Same argument compared twice: like runc, one rule per comparison (they OR together).
        return [[c] for c in comparisons]
    return [comparisons]


def _compile(profile: object) -> tuple | None:
    """Check the whole object and turn it into what apply() feeds libseccomp (None: no seccomp).

    Returns (default action, arch tokens, flag attributes, rules) where each rule is
    (field path, syscall name, action, comparison groups).
    """
    if not isinstance(profile, dict):
        raise ConfigError(f"linux.seccomp: must be an object, got {_show(profile)}")
    syscalls = _list(profile, "syscalls", "linux.seccomp.syscalls")
    default_name = profile.get("defaultAction")
    if default_name is None:
        if not syscalls:
            return None  # runc: no default action and no rules means seccomp is off
        raise ConfigError("linux.seccomp.defaultAction: required")
    api: list[int] = []
    default = _action(
        default_name,
        profile.get("defaultErrnoRet"),
        "linux.seccomp.defaultAction",
        "linux.seccomp.defaultErrnoRet",
        api,
    )

    for key in ("listenerPath", "listenerMetadata"):
        value = profile.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"linux.seccomp.{key}: must be a string, got {_show(value)}")

    arches = []
    for i, arch in enumerate(_list(profile, "architectures", "linux.seccomp.architectures")):
        path = f"linux.seccomp.architectures[{i}]"
        if not isinstance(arch, str):
            raise ConfigError(f"{path}: must be a string, got {_show(arch)}")
        if arch not in _ARCHES:
            raise ConfigError(f"{path}: unknown architecture {_show(arch)}")
        token = _arch_token(arch)
        if not token:
            raise ConfigError(f"{path}: architecture {_show(arch)} is not supported by libseccomp {_version()}")
        arches.append(token)

    flag_attrs = []
    if profile.get("flags") is None:
        if _flag_supported(_DEFAULT_FLAG):
            flag_attrs.append(_FLAG_ATTRS[_DEFAULT_FLAG])
    else:
        for i, flag in enumerate(_list(profile, "flags", "linux.seccomp.flags")):
            path = f"linux.seccomp.flags[{i}]"
            if not isinstance(flag, str):
                raise ConfigError(f"{path}: must be a string, got {_show(flag)}")
            if flag not in _KNOWN_FLAGS:
                raise ConfigError(f"{path}: unknown flag {_show(flag)}")
            if not _flag_supported(flag):
                raise ConfigError(
                    f"{path}: {flag} is not supported by budu-runtime with this kernel and libseccomp {_version()}"
                )
            flag_attrs.append(_FLAG_ATTRS[flag])

    rules = []
    for i, entry in enumerate(syscalls):
        path = f"linux.seccomp.syscalls[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: must be an object, got {_show(entry)}")
        names = entry.get("names")
        if names is None:
            raise ConfigError(f"{path}.names: required")
        if not isinstance(names, list) or not names:
            raise ConfigError(f"{path}.names: must be a non-empty array of syscall names, got {_show(names)}")
        for j, name in enumerate(names):
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{path}.names[{j}]: must be a non-empty string, got {_show(name)}")
        if entry.get("action") is None:
            raise ConfigError(f"{path}.action: required")
        action = _action(entry["action"], entry.get("errnoRet"), path + ".action", path + ".errnoRet", api)
        groups = _conditions(entry, path)
        if action == default:
            continue  # redundant, and libseccomp would refuse it (EACCES)
        for name in names:
            rules.append((path, name, action, groups))
    return default, arches, flag_attrs, rules


# --- public API --------------------------------------------------------------------------------


def compile_bpf(profile: dict) -> tuple[bytes, int] | None:
    """Have libseccomp compile ``profile`` into a BPF program, without loading it.

    Returns (struct sock_filter[] as bytes, SECCOMP_FILTER_FLAG_* bits), or None for "no
    seccomp".  The program is what seccomp_load would have loaded; budu.runtime.seccomp_filter
    caches it, since compiling Docker's default profile takes libseccomp ~20 ms and loading the
    result ~0.1 ms.
    """
    plan = _compile(profile)
    if plan is None:
        return None
    default, arches, flag_attrs, rules = plan
    lib = _seccomp()
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise KernelError(
            f"linux.seccomp.defaultAction: libseccomp {_version()} refused default action "
            f"{_show(profile.get('defaultAction'))}"
        )
    try:
        # Raw kernel errnos rather than libseccomp's catch-all ECANCELED (best effort).
        lib.seccomp_attr_set(ctx, _ATTR_API_SYSRAWRC, 1)
        for token in arches:
            rc = lib.seccomp_arch_add(ctx, token)
            if rc < 0 and rc != -errno.EEXIST:
                raise KernelError(f"linux.seccomp.architectures: seccomp_arch_add failed: {os.strerror(-rc)}")
        _attr(lib, ctx, _ATTR_CTL_NNP, 0, "linux.seccomp: cannot clear the no_new_privs attribute")
        for attr in flag_attrs:
            _attr(lib, ctx, attr, 1, "linux.seccomp.flags: cannot set a filter flag")
        if len(rules) > _OPTIMIZE_MIN_RULES:
            lib.seccomp_attr_set(ctx, _ATTR_CTL_OPTIMIZE, 2)  # optional: a faster filter
        arg_cmp = _ArgCmp
        for path, name, action, groups in rules:
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr == _NR_SCMP_ERROR:
                continue  # unknown to libseccomp: a newer syscall, skipped as runc does
            for group in groups:
                count = len(group)
                array = (arg_cmp * count)(*[arg_cmp(*c) for c in group]) if count else None
                rc = lib.seccomp_rule_add_array(ctx, action, nr, count, array)
                if rc < 0:
                    raise KernelError(
                        f'{path}: libseccomp refused the rule for syscall "{name}": {os.strerror(-rc)}'
                    )
        fd = os.memfd_create("budu-seccomp", os.MFD_CLOEXEC)
        try:
            rc = lib.seccomp_export_bpf(ctx, fd)
            if rc < 0:
                raise KernelError(f"linux.seccomp: libseccomp could not compile the filter: {os.strerror(-rc)}")
            size = os.lseek(fd, 0, os.SEEK_END)
            prog = os.pread(fd, size, 0)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)
    return prog, sum(_KERNEL_FLAGS[attr] for attr in flag_attrs)


def _attr(lib: ctypes.CDLL, ctx: int, attr: int, value: int, what: str) -> None:
    """Set a filter attribute or raise KernelError."""
    rc = lib.seccomp_attr_set(ctx, attr, value)
    if rc < 0:
        raise KernelError(f"{what}: {os.strerror(-rc)}")


def features() -> dict:
    """The ``linux.seccomp`` part of the OCI features document, probed on this host."""
    try:
        _seccomp()
    except KernelError:
        return {"enabled": False}
    return {
        "enabled": True,
        "actions": _supported_actions(),
        "operators": sorted(_OPERATORS),
        "archs": sorted(a for a in _ARCHES if _arch_token(a)),
        "knownFlags": list(_KNOWN_FLAGS),
        "supportedFlags": [f for f in _KNOWN_FLAGS if _flag_supported(f)],
    }
