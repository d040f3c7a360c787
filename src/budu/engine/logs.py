"""Reading a container's json-file log (written and rotated by its monitor), as `docker logs` does."""

from __future__ import annotations

import calendar
import json
import os
import time
from collections.abc import Callable, Iterator

from budu.errors import ConfigError

Entry = tuple[float, str, str, bytes]  # (epoch seconds, RFC 3339 time, stream, bytes)


def parse_rfc3339(text: str) -> float:
    """'2026-11-28T23:40:01.123456789Z' (or with an offset) -> epoch seconds."""
    date, _, rest = text.partition("T")
    if not rest:
        raise ValueError(text)
    offset = 0
    if rest.endswith("Z"):
        rest = rest[:-1]
    elif len(rest) > 6 and rest[-6] in "+-":
        sign = 1 if rest[-6] == "+" else -1
        offset = sign * (int(rest[-5:-3]) * 3600 + int(rest[-2:]) * 60)
        rest = rest[:-6]
    hms, _, frac = rest.partition(".")
    y, mo, d = (int(x) for x in date.split("-"))
    h, mi, s = (int(x) for x in hms.split(":"))
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) - offset + (float("0." + frac) if frac else 0.0)


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go duration ('1h30m', '10s', '500ms') in seconds."""
    total, num, i = 0.0, "", 0
    if not text:
        raise ValueError(text)
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            num += ch
            i += 1
            continue
        unit = next((u for u in ("ns", "us", "µs", "ms", "h", "m", "s") if text.startswith(u, i)), None)
        if unit is None or not num:
            raise ValueError(text)
        total += float(num) * _UNITS[unit]
        num = ""
        i += len(unit)
    if num:
        if total == 0 and float(num) == 0:
            return 0.0
        raise ValueError(text)
    return total


def parse_time(value: str, now: float | None = None, flag: str = "--since") -> float:
    """docker's --since/--until: an RFC 3339 time or date, a Unix timestamp, or a duration ago."""
    now = time.time() if now is None else now
    try:
        if "T" in value:
            return parse_rfc3339(value)
        if value.count("-") == 2 and len(value) == 10:
            return parse_rfc3339(value + "T00:00:00Z")
        try:
            return float(value)
        except ValueError:
            return now - parse_duration(value)
    except ValueError:
        raise ConfigError(f'invalid value for "{flag}": failed to parse value as time or duration: "{value}"') from None


def log_files(container_dir: str, cid: str) -> list[str]:
    """Oldest first: ID-json.log.N ... ID-json.log.1, ID-json.log."""
    base = os.path.join(container_dir, f"{cid}-json.log")
    rotated = []
    n = 1
    while os.path.exists(f"{base}.{n}"):
        rotated.append(f"{base}.{n}")
        n += 1
    return [*reversed(rotated), base]


def _decode(line: bytes) -> Entry | None:
    try:
        rec = json.loads(line)
        t = rec["time"]
        return parse_rfc3339(t), t, rec.get("stream", "stdout"), rec.get("log", "").encode("utf-8", "surrogateescape")
    except (ValueError, KeyError, TypeError):
        return None


def read(container_dir: str, cid: str, tail: int | None = None, since: float | None = None,
         until: float | None = None) -> tuple[list[Entry], tuple[str, int, int]]:
    """Every entry now in the log (filtered), and where the live file ends (path, inode, offset)."""
    entries: list[Entry] = []
    end = ("", 0, 0)
    for path in log_files(container_dir, cid):
        try:
            with open(path, "rb") as f:
                data = f.read()
                st = os.fstat(f.fileno())
        except FileNotFoundError:
            continue
        cut = data.rfind(b"\n") + 1
        for line in data[:cut].splitlines():
            e = _decode(line)
            if e and (since is None or e[0] >= since) and (until is None or e[0] < until):
                entries.append(e)
        end = (path, st.st_ino, cut)
    if tail is not None:
        entries = entries[-tail:] if tail > 0 else []
    return entries, end


def follow(container_dir: str, cid: str, start: tuple[str, int, int], still_running: Callable[[], bool],
           until: float | None = None, interval: float = 0.1) -> Iterator[Entry]:
    """New entries as the monitor writes them, across rotations, until the container stops."""
    path, ino, offset = start
    path = path or os.path.join(container_dir, f"{cid}-json.log")
    pending = b""
    last = False  # the container stopped: one more read for what its monitor wrote before saying so
    while True:
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            f = None
        if f is not None:
            with f:
                st = os.fstat(f.fileno())
                if st.st_ino != ino or st.st_size < offset:
                    offset, ino, pending = 0, st.st_ino, b""  # rotated: the new file from its start
                f.seek(offset)
                data = f.read()
            offset += len(data)
            data = pending + data
            cut = data.rfind(b"\n") + 1
            pending = data[cut:]
            for line in data[:cut].splitlines():
                e = _decode(line)
                if e is None:
                    continue
                if until is not None and e[0] >= until:
                    return
                yield e
            if data[:cut]:
                continue
        if last or (until is not None and time.time() >= until):
            return
        if not still_running():
            last = True
            continue
        time.sleep(interval)
