"""Terminals: the pty master handed over --console-socket (what conmon and containerd-shim use),
and `run`/`exec` proxying a pty to their own terminal."""

from __future__ import annotations

import os
import pty
import select
import socket
import subprocess
import time


def read_until(fd: int, needle: bytes, timeout: float = 10) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


def converse(argv: list[str], typed: bytes, until: bytes) -> tuple[bytes, int]:
    """Run `argv` on a terminal of ours, type once the shell prompts (as a person would), read
    until `until`; returns what was shown and the exit status."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(argv[0], argv)
    try:
        read_until(fd, b"# ")
        os.write(fd, typed)
        out = read_until(fd, until)
        _, status = os.waitpid(pid, 0)
        return out, os.waitstatus_to_exitcode(status)
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


class ConsoleSocket:
    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.sock.settimeout(20)

    def receive(self) -> int:
        conn, _ = self.sock.accept()
        with conn:
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
        assert len(fds) == 1
        return fds[0]

    def close(self) -> None:
        self.sock.close()


def test_console_socket(runtime, bundle, tmp_path):
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["consoleSize"] = {"height": 40, "width": 123}
    bundle.args("sh")
    cs = ConsoleSocket(str(tmp_path / "console.sock"))
    cid = runtime.new_id()
    try:
        proc = subprocess.Popen([runtime.binary, "--root", runtime.root, "create", "-b", bundle.path,
                                 "--console-socket", cs.path, cid], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        master = cs.receive()
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err.decode()
        runtime.ok("start", cid)
        os.write(master, b"tty; stty size; echo $((6*7)); exit 5\n")
        out = read_until(master, b"42")
        assert b"/dev/pts/0" in out
        assert b"40 123" in out
        assert b"42" in out
        deadline = time.monotonic() + 10
        while runtime.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runtime.state(cid)["status"] == "stopped"
        os.close(master)
    finally:
        cs.close()


def test_console_is_dev_console(runtime, bundle, tmp_path):
    bundle.config["process"]["terminal"] = True
    bundle.args("sh", "-c", "stat -c '%t:%T' /dev/console; readlink /proc/self/fd/0; sleep 1")
    cs = ConsoleSocket(str(tmp_path / "console.sock"))
    cid = runtime.new_id()
    try:
        proc = subprocess.Popen([runtime.binary, "--root", runtime.root, "run", "-d", "-b", bundle.path,
                                 "--console-socket", cs.path, cid], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        master = cs.receive()
        proc.communicate(timeout=20)
        out = read_until(master, b"/dev/pts/0")
        assert b"88:0" in out  # pts major 136 = 0x88, minor 0
        assert b"/dev/pts/0" in out
        os.close(master)
    finally:
        cs.close()


def test_run_with_terminal_proxies_our_tty(runtime, bundle):
    bundle.config["process"]["terminal"] = True
    bundle.args("sh")
    out, code = converse([runtime.binary, "--root", runtime.root, "run", "-b", bundle.path, runtime.new_id()],
                         b"tty; echo $((7*6))x; exit 3\n", b"42x")
    assert b"/dev/pts/0" in out and b"42x" in out
    assert code == 3


def test_exec_tty(runtime, bundle):
    bundle.args("sleep", "30")
    cid = runtime.new_id()
    runtime.ok("run", "-d", "-b", bundle.path, cid)
    out, code = converse([runtime.binary, "--root", runtime.root, "exec", "-t", cid, "sh"],
                         b"tty; echo $((5*5))y; exit 4\n", b"25y")
    assert b"/dev/pts/" in out and b"25y" in out
    assert code == 4


def test_exec_console_socket(runtime, bundle, tmp_path):
    bundle.args("sleep", "30")
    cid = runtime.new_id()
    runtime.ok("run", "-d", "-b", bundle.path, cid)
    cs = ConsoleSocket(str(tmp_path / "exec-console.sock"))
    try:
        proc = subprocess.Popen([runtime.binary, "--root", runtime.root, "exec", "-t", "-d", "--console-socket",
                                 cs.path, cid, "sh"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        master = cs.receive()
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err.decode()
        os.write(master, b"echo $((9*9))z; exit\n")
        assert b"81z" in read_until(master, b"81z")
        os.close(master)
    finally:
        cs.close()
