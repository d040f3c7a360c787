"""The message channel between the runtime and the processes it forks (a pair of pipes).

Each message is one tag byte and a UTF-8 payload, length-prefixed.  A child that dies sends
nothing more, so the reader sees EOF and reports that instead of hanging.
"""

from __future__ import annotations

import os

# tags
PID = b"P"  # payload: a host pid
USERMAP = b"U"  # child unshared its user namespace, map it
READY = b"R"  # init has set up mounts: run prestart/createRuntime hooks
CREATED = b"C"  # init is waiting for `start`
GO = b"G"  # parent: continue
ERROR = b"E"  # payload: one-line error message


class ChildDied(Exception):
    pass


class Channel:
    __slots__ = ("rfd", "wfd")

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd = rfd
        self.wfd = wfd

    def send(self, tag: bytes, payload: str = "") -> None:
        data = payload.encode()
        try:
            os.write(self.wfd, tag + len(data).to_bytes(4, "little") + data)
        except BrokenPipeError:
            # the other side is gone; it may have said why before it went
            got, why = self.recv()
            if got == ERROR:
                raise ChildError(why) from None
            raise ChildDied("the container process exited during setup") from None

    def recv(self) -> tuple[bytes, str]:
        head = self._read(5)
        n = int.from_bytes(head[1:], "little")
        return head[:1], self._read(n).decode() if n else ""

    def expect(self, tag: bytes) -> str:
        got, payload = self.recv()
        if got == ERROR:
            raise ChildError(payload)
        if got != tag:
            raise ChildDied(f"unexpected message {got!r} (wanted {tag!r})")
        return payload

    def _read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = os.read(self.rfd, n - len(buf))
            if not chunk:
                raise ChildDied("the container process exited during setup")
            buf += chunk
        return buf

    def close(self) -> None:
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass


class ChildError(Exception):
    """An error reported by a child process; its message is already user-facing."""


def pair() -> tuple[Channel, Channel]:
    """(parent side, child side).  Both stay inheritable only until exec (O_CLOEXEC)."""
    p2c_r, p2c_w = os.pipe2(os.O_CLOEXEC)
    c2p_r, c2p_w = os.pipe2(os.O_CLOEXEC)
    return Channel(c2p_r, p2c_w), Channel(p2c_r, c2p_w)
