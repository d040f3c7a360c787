"""What several object commands (container, image, network, volume, save/export) do alike: one
home, so that docker's wording and exit statuses stay the same across them.

Nothing slow is imported at module level (tests/containers/test_startup.py)."""

from __future__ import annotations

import os
import sys

from budu.errors import BuduError, ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO


def confirm(warning: str) -> bool:
    """docker's prompt before a prune: the warning, then yes only for y or yes."""
    sys.stdout.write(f"{warning}\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def parse_kv(items: list[str], flag: str) -> dict[str, str]:
    """--label/--opt KEY=VALUE (a bare KEY is KEY=), as docker's create commands take them."""
    out = {}
    for item in items:
        k, _, v = item.partition("=")
        if not k:
            raise ConfigError(f'invalid argument "{item}" for "{flag}" flag')
        out[k] = v
    return out


def each(names: list[str], action: Callable[[str], object],
         reason: Callable[[str, BuduError], str | None] | None = None) -> int:
    """docker's commands on several objects (rm, stop, rmi...): go on past a failure, report each
    as the daemon's, exit 1 if any failed.  `reason` words a failure, or returns None to pass over
    it silently (what --force forgives)."""
    failed = False
    for name in names:
        try:
            action(name)
        except BuduError as e:
            msg = str(e) if reason is None else reason(name, e)
            if msg is None:
                continue
            sys.stderr.write(f"Error response from daemon: {msg}\n")
            failed = True
    return 1 if failed else 0


def write_whole(path: str, write: Callable[[BinaryIO], None], prefix: str,
                open_error: Callable[[str, OSError], BuduError | None], buffering: int = -1) -> None:
    """`save -o`/`export -o`: write beside `path` and rename over it once complete, so that a
    failed write leaves no file.  `open_error` words a failure to make the file beside `path`
    (None: the OSError as it is); the file gets the mode open() would give it."""
    import tempfile

    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise ConfigError(f"open {path}: is a directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, dir=os.path.dirname(path))
    except OSError as e:
        err = open_error(path, e)
        if err is None:
            raise
        raise err from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb", buffering=buffering) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and not isinstance(e, BuduError):
            raise BuduError(f"writing {path}: {e.strerror or e}") from None
        raise
