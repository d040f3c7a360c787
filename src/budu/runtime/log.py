"""The runtime's log: errors to stderr, and to --log in text or JSON (containerd and conmon read the
JSON form to show the runtime's error to their user)."""

from __future__ import annotations

import os
import time

_path: str | None = None
_json = False
_debug = False


def configure(path: str | None, fmt: str, debug: bool) -> None:
    global _path, _json, _debug
    _path = path
    _json = fmt == "json"
    _debug = debug


def _emit(level: str, msg: str) -> None:
    if _path:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if _json:
            from budu.kernel import fastjson

            line = fastjson.dumps({"level": level, "msg": msg, "time": now})
        else:
            line = f'time="{now}" level={level} msg="{msg}"'
        try:
            fd = os.open(_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError:
            pass


def error(msg: str) -> None:
    _emit("error", msg)
    os.write(2, f"budu-runtime: {msg}\n".encode())


def warning(msg: str) -> None:
    _emit("warning", msg)
    os.write(2, f"budu-runtime: warning: {msg}\n".encode())


def debug(msg: str) -> None:
    """With --debug: a line with a monotonic timestamp, comparable across the runtime's processes."""
    if _debug:
        line = f"{time.monotonic():.4f} [{os.getpid()}] {msg}"
        if _path:
            _emit("debug", line)
        else:
            os.write(2, f"budu-runtime: debug: {line}\n".encode())
