"""Linux capabilities by name, and applying the five OCI capability sets to the calling process."""

from __future__ import annotations

from budu.errors import ConfigError
from budu.kernel import syscalls as sc

NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
NUMBERS = {name: i for i, name in enumerate(NAMES)}
SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")


def validate(caps: object, where: str = "process.capabilities") -> None:
    if caps is None:
        return
    if not isinstance(caps, dict):
        raise ConfigError(f"{where}: must be an object")
    for key, names in caps.items():
        if key not in SETS:
            raise ConfigError(f"{where}.{key}: unknown capability set")
        if not isinstance(names, list):
            raise ConfigError(f"{where}.{key}: must be a list of capability names")
        for i, name in enumerate(names):
            if not isinstance(name, str) or name not in NUMBERS:
                raise ConfigError(f"{where}.{key}[{i}]: unknown capability {name!r}")


def mask(names: list[str] | None, last: int) -> int:
    """Bit mask of the names this kernel knows (newer names are ignored, as runc does)."""
    m = 0
    for name in names or ():
        n = NUMBERS[name]
        if n <= last:
            m |= 1 << n
    return m


def drop_bounding(caps: dict | None) -> None:
    """Drop what the bounding set does not keep; needs CAP_SETPCAP, so it runs before setuid."""
    last = sc.last_cap()
    bounding = mask((caps or {}).get("bounding"), last)
    for n in range(last + 1):
        if not bounding & (1 << n):
            try:
                sc.prctl(sc.PR_CAPBSET_DROP, n)
            except OSError as e:
                if e.errno != 22:  # EINVAL: the kernel does not know this cap
                    raise OSError(e.errno, f"cannot drop {NAMES[n]} from the bounding set: {e.strerror}") from None


def apply_sets(caps: dict | None) -> None:
    """Set effective/permitted/inheritable, then raise ambient; after setuid (with PR_SET_KEEPCAPS)."""
    caps = caps or {}
    last = sc.last_cap()
    sc.capset(mask(caps.get("effective"), last), mask(caps.get("permitted"), last), mask(caps.get("inheritable"), last))
    sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
    for name in caps.get("ambient") or ():
        n = NUMBERS[name]
        if n <= last:
            try:
                sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_RAISE, n)
            except OSError as e:
                raise OSError(e.errno, f"cannot raise ambient {name} (it must be permitted and inheritable): "
                                       f"{e.strerror}") from None
