"""The engine's side of budu-monitor: starting one, and talking to it (sync and attach protocols).

The protocols are described in src/budu/monitor/README.md.  The engine starts the monitor, which
creates the container and reports its pid; the engine may then attach, and tells it to start.
"""

from __future__ import annotations

import os
import struct

# The C module under `socket`: these are plain unix sockets, and socket.py's enums cost ~10 ms of
# every `budu run` on a small VM.  Its socket objects have every method used here.
import _socket as socket

from budu.errors import BuduError
from budu.kernel import fastjson

# attach frame types
STDIN, STDIN_EOF, RESIZE, HELLO = 0x00, 0x01, 0x02, 0x10
STDOUT, STDERR, EXIT = 0x01, 0x02, 0x03
WANT_STDOUT, WANT_STDERR, SENDS_STDIN, CLEANS_UP = 1, 2, 4, 8


def monitor_path() -> str:
    env = os.environ.get("BUDU_MONITOR")
    if env:
        return env
    for p in ("/opt/budu/libexec/budu-monitor", "/usr/local/libexec/budu/budu-monitor", "/usr/libexec/budu/budu-monitor"):
        if os.access(p, os.X_OK):
            return p
    raise BuduError("budu-monitor is not installed (run scripts/install.sh)")


class CreateFailed(BuduError):
    """The OCI runtime could not create or start the container: the message is the runtime's."""

    exit_code = 125


class Sync:
    """The engine's end of a monitor's sync socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def read(self) -> dict:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise CreateFailed("the container monitor exited before reporting")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        msg = fastjson.loads(line)
        if "error" in msg:
            raise CreateFailed(msg["error"])
        return msg

    def start(self) -> None:
        self.sock.sendall(b"start\n")
        self.read()
        self.sock.close()

    def abandon(self) -> None:
        """EOF before `start`: the monitor deletes the created container and leaves."""
        self.sock.close()


def spawn(args: list[str]) -> Sync:
    """Start budu-monitor with `args` (all but --sync-fd); returns once the container is created."""
    ours, theirs = socket.socketpair()
    os.set_inheritable(theirs.fileno(), True)
    try:
        argv = [monitor_path(), "--sync-fd", str(theirs.fileno()), *args]
        pid = os.posix_spawn(argv[0], argv, os.environ)
        theirs.close()
        _, status = os.waitpid(pid, 0)  # it forks and its first half exits at once
        if os.waitstatus_to_exitcode(status) != 0:
            sync = Sync(ours)
            try:
                sync.read()
            except CreateFailed:
                raise
            except (OSError, ValueError):
                pass
            raise CreateFailed("the container monitor failed to start")
        sync = Sync(ours)
        sync.read()
        return sync
    except BaseException:
        ours.close()
        theirs.close()
        raise


def connect(container_dir: str, flags: int) -> socket.socket | None:
    """Attach to a running container's monitor, or None if there is none."""
    fd = os.open(container_dir, os.O_PATH | os.O_DIRECTORY)
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(f"/proc/self/fd/{fd}/attach")
        except OSError:
            s.close()
            return None
    finally:
        os.close(fd)
    s.sendall(frame(HELLO, bytes([flags])))
    return s


def frame(kind: int, payload: bytes = b"") -> bytes:
    return struct.pack(">BI", kind, len(payload)) + payload


class FrameReader:
    """Frames from a monitor's attach socket, however the bytes are split."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def feed(self) -> list[tuple[int, bytes]] | None:
        """Read once; the frames now complete, or None at EOF."""
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""  # the monitor closed with our bytes unread: as good as EOF
        if not chunk:
            return None
        self.buf += chunk
        out = []
        while len(self.buf) >= 5:
            kind, n = struct.unpack_from(">BI", self.buf)
            if len(self.buf) < 5 + n:
                break
            out.append((kind, bytes(self.buf[5:5 + n])))
            del self.buf[:5 + n]
        return out


def wait_exit(container_dir: str) -> int | None:
    """Block until the monitor reports the container's exit; None if no monitor is there."""
    s = connect(container_dir, 0)
    if s is None:
        return None
    try:  # not `with s`: _socket's sockets are no context managers
        reader = FrameReader(s)
        while True:
            frames = reader.feed()
            if frames is None:
                return None
            for kind, payload in frames:
                if kind == EXIT:
                    return struct.unpack(">i", payload)[0]
    finally:
        s.close()
