"""Docker's seccomp profile format → the OCI `linux.seccomp` object (moby profiles/seccomp).

Docker's format is a superset of OCI's: an `archMap` (native architecture → its sub-
architectures) instead of a flat list, and per-entry `includes`/`excludes` conditions on the
container's capabilities (its bounding set), the host architecture (Go's names: amd64, arm64...)
and the kernel version.  An entry is kept only when its conditions hold for this container, so
`--cap-add SYS_ADMIN` lets mount/unshare/setns through, as it does with docker.
"""

from __future__ import annotations

import os

from budu.errors import ConfigError
from budu.kernel import fastjson

DEFAULT_PROFILE_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "seccomp-default.json")

# uname -m → (Go's GOARCH, the SCMP_ARCH_ of the native architecture)
_ARCHES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "i386": ("386", "SCMP_ARCH_X86"), "i686": ("386", "SCMP_ARCH_X86"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"), "armv6l": ("arm", "SCMP_ARCH_ARM"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
    "mips64": ("mips64", "SCMP_ARCH_MIPS64"),
    "loongarch64": ("loong64", "SCMP_ARCH_LOONGARCH64"),
}


def host_arch() -> tuple[str, str]:
    machine = os.uname().machine
    return _ARCHES.get(machine, (machine, f"SCMP_ARCH_{machine.upper()}"))


def kernel_version(release: str | None = None) -> tuple[int, int]:
    """(major, minor) of a `uname -r` string such as 6.1.0-18-amd64."""
    release = release or os.uname().release
    nums = []
    for part in release.split(".")[:2]:
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        nums.append(int(digits or 0))
    return (nums + [0, 0])[0], (nums + [0, 0])[1]


def _parse_min_kernel(value: str) -> tuple[int, int]:
    parts = value.split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        raise ConfigError(f"seccomp profile: invalid minKernel {value!r} (want MAJOR.MINOR)")
    return int(parts[0]), int(parts[1])


def load_default() -> dict:
    with open(DEFAULT_PROFILE_PATH, "rb") as f:
        return fastjson.loads(f.read())


def parse(text: str) -> dict:
    """A profile as the docker CLI sends it: the JSON text after `seccomp=`."""
    import json  # its error messages say where the text is wrong

    try:
        profile = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"Decoding seccomp profile failed: {e}") from None
    if not isinstance(profile, dict):
        raise ConfigError("Decoding seccomp profile failed: not a JSON object")
    return profile


def _conditions_hold(cond: dict | None, bounding: set[str], goarch: str, kernel: tuple[int, int],
                     include: bool) -> bool:
    """includes: every condition must hold; excludes: any condition that holds drops the entry.
    Returns whether the entry survives this block."""
    if not cond:
        return True
    arches = cond.get("arches") or []
    caps = cond.get("caps") or []
    min_kernel = cond.get("minKernel")
    if include:
        if arches and goarch not in arches:
            return False
        if caps and not all(c in bounding for c in caps):
            return False
        if min_kernel and kernel < _parse_min_kernel(min_kernel):
            return False
        return True
    if arches and goarch in arches:
        return False
    if caps and any(c in bounding for c in caps):
        return False
    if min_kernel and kernel >= _parse_min_kernel(min_kernel):
        return False
    return True


def to_oci(profile: dict, bounding: list[str], *, arch: tuple[str, str] | None = None,
           kernel: tuple[int, int] | None = None) -> dict | None:
    """The OCI seccomp object for a container whose bounding set is `bounding`; None when the
    profile has neither a default action nor syscalls (docker's "seccomp disabled")."""
    if not profile.get("defaultAction") and not profile.get("syscalls"):
        return None
    if profile.get("architectures") and profile.get("archMap"):
        raise ConfigError("both 'architectures' and 'archMap' are specified in the seccomp profile, "
                          "use either 'architectures' or 'archMap'")
    goarch, native = arch or host_arch()
    kernel = kernel or kernel_version()
    caps = set(bounding)
    out: dict = {"defaultAction": profile.get("defaultAction") or "SCMP_ACT_ALLOW"}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    arches = list(profile.get("architectures") or [])
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == native:
            arches = [native, *(entry.get("subArchitectures") or [])]
    if arches:
        out["architectures"] = arches
    for key in ("flags", "listenerPath", "listenerMetadata"):
        if profile.get(key):
            out[key] = profile[key]
    syscalls = []
    for i, call in enumerate(profile.get("syscalls") or []):
        names = list(call.get("names") or [])
        if call.get("name"):
            if names:
                raise ConfigError("both 'name' and 'names' are specified in the seccomp profile, "
                                  "use either 'name' or 'names'")
            names = [call["name"]]
        if not names:
            raise ConfigError(f"seccomp profile: syscalls[{i}] names no syscall")
        if not _conditions_hold(call.get("excludes"), caps, goarch, kernel, include=False):
            continue
        if not _conditions_hold(call.get("includes"), caps, goarch, kernel, include=True):
            continue
        rule: dict = {"names": names, "action": call.get("action")}
        if call.get("errnoRet") is not None:
            rule["errnoRet"] = call["errnoRet"]
        if call.get("args"):
            rule["args"] = call["args"]
        syscalls.append(rule)
    out["syscalls"] = syscalls
    return out
