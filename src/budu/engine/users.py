"""Resolving docker's `--user name|uid[:group|gid]` and `--group-add` against the image's own
/etc/passwd and /etc/group, with the rules (and messages) of moby/sys/user.

The files are read through the rootfs the way the container would see them, so a symlink in the
image (`/etc/passwd -> /etc/shadow` of the host, say) resolves inside the rootfs; only regular
files are read, so a FIFO planted in the image cannot hang the engine.
"""

from __future__ import annotations

import os
import stat

from budu.errors import ConfigError
from budu.plain import Frozen
from budu.runtime.rootfs import secure_join

MAX_ID = 2**31 - 1
_MAX_FILE = 16 << 20  # a passwd file bigger than this is not one


class ExecUser(Frozen):
    __slots__ = ("uid", "gid", "additional_gids", "home")

    def __init__(self, uid: int, gid: int, additional_gids: tuple[int, ...], home: str) -> None:
        self._init(uid=uid, gid=gid, additional_gids=additional_gids, home=home)


def read_file_in_root(rootfs: str, path: str) -> str | None:
    """The text of a regular file at `path` inside `rootfs`, or None if there is none."""
    target = secure_join(rootfs, path)
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_FILE:
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", errors="replace")
    finally:
        os.close(fd)


def _records(text: str | None, fields: int) -> list[list[str]]:
    out = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        parts += [""] * (fields - len(parts))
        out.append(parts)
    return out


def _int(s: str) -> int | None:
    return int(s) if s.isascii() and s.isdigit() else None


def _check_range(n: int) -> int:
    if not 0 <= n <= MAX_ID:
        raise ConfigError(f"uids and gids must be in range 0-{MAX_ID}")
    return n


def resolve(rootfs: str, user: str, group_add: list[str] | None = None) -> ExecUser:
    """uid, gid, additional gids (primary first, as docker lists them) and home directory."""
    passwd = _records(read_file_in_root(rootfs, "/etc/passwd"), 7)
    groups = _records(read_file_in_root(rootfs, "/etc/group"), 4)
    user_arg, _, group_arg = (user or "").partition(":")
    uid, gid, name, home = 0, 0, "", "/"

    if user_arg == "":
        user_arg = "0"
    num = _int(user_arg)
    match = next((p for p in passwd if p[0] == user_arg or (num is not None and _int(p[2]) == num)), None)
    if match is not None and _int(match[2]) is not None:
        uid, gid = _int(match[2]), _int(match[3]) or 0  # type: ignore[assignment]
        name, home = match[0], match[5] or "/"
    elif num is None:
        raise ConfigError(f"unable to find user {user_arg}: no matching entries in passwd file")
    else:
        uid = _check_range(num)

    sgids: list[int] = []
    if group_arg:
        gnum = _int(group_arg)
        g = next((g for g in groups if g[0] == group_arg or (gnum is not None and _int(g[2]) == gnum)), None)
        if g is not None and _int(g[2]) is not None:
            gid = _int(g[2])  # type: ignore[assignment]
        elif gnum is None:
            raise ConfigError(f"unable to find group {group_arg}: no matching entries in group file")
        else:
            gid = _check_range(gnum)
    elif name:
        # supplementary groups only in the implicit form: every group that lists the user
        sgids = [_int(g[2]) for g in groups if name in g[3].split(",") and _int(g[2]) is not None]  # type: ignore[misc]

    extra: list[int] = []
    for want in group_add or []:
        wnum = _int(want)
        g = next((g for g in groups if g[0] == want or (wnum is not None and _int(g[2]) == wnum)), None)
        if g is not None and _int(g[2]) is not None:
            extra.append(_int(g[2]))  # type: ignore[arg-type]
        elif wnum is None:
            raise ConfigError(f"Unable to find group {want}: no matching entries in group file")
        else:
            extra.append(_check_range(wnum))

    additional: list[int] = []
    for g in [gid, *sgids, *extra]:
        if g not in additional:
            additional.append(g)
    return ExecUser(uid, gid, tuple(additional), home)
