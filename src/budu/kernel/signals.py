"""Linux signal names and numbers, without the `signal` module: its enums cost ~8 ms to import on a
small VM, and every container start and `budu run` needs a name or a number."""

from __future__ import annotations

# The numbers are the same on every Linux architecture budu runs on (x86, arm, s390, ppc, riscv).
# Where two names share a number, the first one listed is the name a number is shown as.
NUMBERS: dict[str, int] = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7, "FPE": 8,
    "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15,
    "STKFLT": 16, "CHLD": 17, "CLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22,
    "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29,
    "POLL": 29, "PWR": 30, "SYS": 31,
}
NAMES: dict[int, str] = {}
for _name, _num in NUMBERS.items():
    NAMES.setdefault(_num, _name)
SIGRTMIN = 34
SIGRTMAX = 64


def number(sig: str | int) -> int | None:
    """The number of a signal given as a number, NAME, SIGNAME or RTMIN+n; None if it is none."""
    if isinstance(sig, int):
        return sig if 0 < sig <= SIGRTMAX else None
    s = sig.strip().upper()
    if s.isdigit():
        n = int(s)
        return n if 0 < n <= SIGRTMAX else None
    if s.startswith("SIG"):
        s = s[3:]
    for base, sign, limit in (("RTMIN", 1, SIGRTMIN), ("RTMAX", -1, SIGRTMAX)):
        if s.startswith(base):
            off = s[len(base):]
            if not off:
                return limit
            if off[0] in "+-" and off[1:].isdigit():
                n = limit + int(off)
                return n if SIGRTMIN <= n <= SIGRTMAX else None
            return None
    return NUMBERS.get(s)


def name(num: int) -> str:
    """NAME without SIG (RTMIN+n for real-time signals), as docker shows it."""
    if num in NAMES:
        return NAMES[num]
    if SIGRTMIN <= num <= SIGRTMAX:
        return f"RTMIN+{num - SIGRTMIN}" if num - SIGRTMIN <= SIGRTMAX - num else f"RTMAX-{SIGRTMAX - num}"
    return str(num)
