"""budu's event log: one docker-shaped JSON line per event in ROOT/events.log.

Every budu process and every monitor appends with one O_APPEND write per line, so lines from
concurrent writers never interleave; `budu events` reads the file and follows it.
"""

from __future__ import annotations

import os
import time

from budu.kernel import fastjson

FILE = "events.log"
MAX_SIZE = 8 << 20  # then the older half is dropped (docker keeps a bounded ring too)


def emit(root: str, kind: str, action: str, actor_id: str, attributes: dict[str, str] | None = None) -> None:
    now = time.time_ns()
    attrs = dict(attributes or {})
    ev = {"Type": kind, "Action": action, "Actor": {"ID": actor_id, "Attributes": attrs}, "scope": "local",
          "time": now // 1_000_000_000, "timeNano": now}
    if kind == "container":  # docker's deprecated top-level fields, still read by scripts
        ev = {"status": action, "id": actor_id, "from": attrs.get("image", ""), **ev}
    line = (fastjson.dumps(ev) + "\n").encode()
    path = os.path.join(root, FILE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return  # an event log we cannot write never fails the operation itself
    try:
        os.write(fd, line)
        if os.fstat(fd).st_size > MAX_SIZE:
            _shrink(path)
    finally:
        os.close(fd)


def _shrink(path: str) -> None:
    with open(path, "rb") as f:
        f.seek(-MAX_SIZE // 2, os.SEEK_END)
        f.readline()
        rest = f.read()
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(rest)
    os.replace(tmp, path)


def read(root: str, offset: int = 0) -> tuple[list[dict], int]:
    """Events from byte `offset` on, and the offset after them (a partial last line waits)."""
    path = os.path.join(root, FILE)
    try:
        with open(path, "rb") as f:
            if offset > os.fstat(f.fileno()).st_size:
                offset = 0  # shrunk under us
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n") + 1
    out = []
    for line in data[:end].splitlines():
        try:
            out.append(fastjson.loads(line))
        except ValueError:
            continue
    return out, offset + end


def matches(ev: dict, filters: dict[str, list[str]]) -> bool:
    """docker's event filters: type, event/action, container, image, volume, network, label."""
    attrs = ev.get("Actor", {}).get("Attributes", {})
    for key, values in filters.items():
        if key == "type":
            ok = ev.get("Type") in values
        elif key in ("event", "action"):
            ok = any(ev.get("Action") == v or ev.get("Action", "").split(":")[0] == v for v in values)
        elif key in ("container", "volume", "network"):
            ok = ev.get("Type") == key and any(
                ev["Actor"]["ID"].startswith(v) or attrs.get("name") == v for v in values)
        elif key == "image":
            ok = any(attrs.get("image") == v or ev.get("from") == v or
                     (ev.get("Type") == "image" and ev["Actor"]["ID"] == v) for v in values)
        elif key == "label":
            ok = any((attrs.get(v.split("=", 1)[0]) == v.split("=", 1)[1]) if "=" in v else v in attrs
                     for v in values)
        else:
            ok = True
        if not ok:
            return False
    return True
