"""The terminal side of attaching: the user's stdio <-> a container's monitor (or an exec's pty).

Raw mode for a tty, window size changes forwarded, docker's detach keys (ctrl-p ctrl-q), and the
exit code the monitor reports.
"""

from __future__ import annotations

import os
import select
import _signal  # not `signal`: its enums cost ~8 ms of every `budu run` here
import struct
import sys

from budu.engine import monitor as mon

DETACHED = object()


def parse_detach_keys(spec: str | None) -> bytes:
    """docker's --detach-keys; ctrl-p ctrl-q when not given."""
    if not spec:
        return b"\x10\x11"
    from budu.cli.runflags import detach_key_bytes

    return detach_key_bytes(spec)


class RawTerminal:
    """Puts the user's terminal in raw mode while attached to a tty, and restores it."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and os.isatty(0)
        self.saved = None

    def __enter__(self) -> RawTerminal:
        if self.enabled:
            import termios
            import tty

            self.saved = termios.tcgetattr(0)
            tty.setraw(0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, self.saved)


def terminal_size() -> tuple[int, int] | None:
    for fd in (0, 1, 2):
        try:
            sz = os.get_terminal_size(fd)
            return sz.lines, sz.columns
        except OSError:
            continue
    return None


def attach(sock: mon.socket.socket, tty: bool, stdin: bool, detach_keys: bytes = b"\x10\x11",
           on_signal=None) -> int | object | None:  # noqa: ANN001
    """Proxy until the container exits (its exit code), the user detaches (DETACHED), or the
    monitor goes away (None)."""
    reader = mon.FrameReader(sock)
    resize_r, resize_w = os.pipe()
    os.set_blocking(resize_w, False)
    old_winch = None

    def send_size() -> None:
        size = terminal_size()
        if size:
            try:
                sock.sendall(mon.frame(mon.RESIZE, struct.pack(">HH", *size)))
            except OSError:
                pass

    if tty:
        send_size()
        old_winch = _signal.signal(_signal.SIGWINCH, lambda *_: os.write(resize_w, b"."))
    matched = 0
    reading_stdin = stdin
    out = {mon.STDOUT: 1, mon.STDERR: 2}
    try:
        with RawTerminal(tty and stdin):
            while True:
                fds = [sock, resize_r] + ([0] if reading_stdin else [])
                try:
                    ready, _, _ = select.select(fds, [], [])
                except InterruptedError:
                    continue
                if resize_r in ready:
                    os.read(resize_r, 512)
                    send_size()
                if 0 in ready:
                    data = os.read(0, 65536)
                    if not data:
                        reading_stdin = False
                        _send(sock, mon.frame(mon.STDIN_EOF))
                    else:
                        for i, b in enumerate(data):  # docker's detach keys, across reads
                            if detach_keys and b == detach_keys[matched]:
                                matched += 1
                                if matched == len(detach_keys):
                                    _send(sock, mon.frame(mon.STDIN, data[:max(0, i + 1 - matched)]))
                                    return DETACHED
                            else:
                                matched = 0
                        if matched and tty:
                            data = data[:len(data) - matched]  # held back until we know
                        if data and not _send(sock, mon.frame(mon.STDIN, data)):
                            reading_stdin = False  # it is gone: what it said last still counts
                if sock in ready:
                    frames = reader.feed()
                    if frames is None:
                        return None
                    for kind, payload in frames:
                        if kind == mon.EXIT:
                            return struct.unpack(">i", payload)[0]
                        fd = out.get(kind)
                        if fd is not None:
                            _write_all(fd, payload)
    finally:
        if old_winch is not None:
            _signal.signal(_signal.SIGWINCH, old_winch)
        os.close(resize_r)
        os.close(resize_w)


def _send(sock: mon.socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        except BrokenPipeError:
            return
        data = data[n:]


def proxy_pty(master: int, stdin: bool, detach_keys: bytes = b"") -> None:
    """For exec -t: the user's terminal <-> a pty master, until the pty closes."""
    def resize(*_: object) -> None:
        size = terminal_size()
        if size:
            import fcntl
            import termios

            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))

    resize()
    old = _signal.signal(_signal.SIGWINCH, resize)
    try:
        with RawTerminal(stdin):
            reading = stdin
            while True:
                fds = [master] + ([0] if reading else [])
                try:
                    ready, _, _ = select.select(fds, [], [])
                except InterruptedError:
                    continue
                if 0 in ready:
                    data = os.read(0, 65536)
                    if not data:
                        reading = False
                        os.write(master, b"\x04")
                    else:
                        os.write(master, data)
                if master in ready:
                    try:
                        data = os.read(master, 65536)
                    except OSError:
                        return
                    if not data:
                        return
                    _write_all(1, data)
    finally:
        _signal.signal(_signal.SIGWINCH, old)


def print_escape() -> None:
    sys.stderr.write("read escape sequence\n")
