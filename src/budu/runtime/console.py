"""Container terminals: a pty from the container's own devpts, its master handed to the caller.

With --console-socket the master goes over the unix socket as SCM_RIGHTS (what conmon and
containerd-shim expect, as with runc); without one, `run`/`exec` proxy it to their own stdio.
"""

from __future__ import annotations

import fcntl
import os
import struct

from budu.errors import BuduError

TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
TIOCSWINSZ = 0x5414
TIOCGWINSZ = 0x5413
TIOCSCTTY = 0x540E


def open_pty(ptmx: str = "/dev/ptmx") -> tuple[int, str]:
    """Open a new pty pair's master from `ptmx`; return (master fd, slave path next to it)."""
    master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    n = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0\0\0\0"))[0]
    return master, os.path.join(os.path.dirname(os.path.realpath(ptmx)), str(n))


def new_console(ptmx: str, process: dict, send_to: str | int) -> tuple[int, str]:
    """A pty for `process`: the slave owned by its user and sized as asked, the master sent to
    `send_to` (a console socket path or a connected socket's fd).  Returns (slave fd, its path)."""
    master, slave_path = open_pty(ptmx)
    try:
        slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        os.fchown(slave, (process.get("user") or {}).get("uid", 0), -1)
        size = process.get("consoleSize")
        if size:
            set_size(master, size.get("height", 0), size.get("width", 0))
        send_fd(send_to, master)
    finally:
        os.close(master)
    return slave, slave_path


def set_size(fd: int, height: int, width: int) -> None:
    fcntl.ioctl(fd, TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def get_size(fd: int) -> tuple[int, int] | None:
    try:
        h, w, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, TIOCGWINSZ, b"\0" * 8))
        return h, w
    except OSError:
        return None


def make_controlling(slave_fd: int) -> None:
    """Become session leader with the pty slave as controlling terminal and stdio."""
    try:
        os.setsid()
    except OSError:
        pass
    fcntl.ioctl(slave_fd, TIOCSCTTY, 0)
    for n in (0, 1, 2):
        os.dup2(slave_fd, n)
    if slave_fd > 2:
        os.close(slave_fd)


def send_fd(socket_path_or_fd: str | int, fd: int, name: str = "/dev/console") -> None:
    import socket

    if isinstance(socket_path_or_fd, int):
        sock = socket.socket(fileno=socket_path_or_fd)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(socket_path_or_fd)
        except OSError as e:
            sock.close()
            raise BuduError(f"console socket {socket_path_or_fd}: {e.strerror}") from None
    try:
        socket.send_fds(sock, [name.encode()], [fd])
    finally:
        sock.close()


def recv_fd(sock_fd: int) -> int:
    import socket

    sock = socket.socket(fileno=sock_fd)
    try:
        _msg, fds, _flags, _addr = socket.recv_fds(sock, 4096, 1)
    finally:
        sock.close()
    if not fds:
        raise BuduError("console: the container sent no terminal")
    return fds[0]


def proxy(master: int, pid: int) -> None:
    """Copy between our stdio and the pty master until the process's side closes.

    Our terminal goes raw while we proxy so that keys reach the container as typed.
    """
    import select
    import termios
    import tty

    stdin_tty = os.isatty(0)
    saved = None
    if stdin_tty:
        saved = termios.tcgetattr(0)
        tty.setraw(0)
        size = get_size(0)
        if size:
            set_size(master, *size)
    fds = [master, 0]
    try:
        while True:
            try:
                ready, _, _ = select.select(fds, [], [])
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                _write_all(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    fds.remove(0)
                else:
                    _write_all(master, data)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSAFLUSH, saved)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]
