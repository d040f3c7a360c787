"""Fixtures for budu-monitor's tests: the monitor built from source, the runtimes it drives, and a
small client for its sync and attach protocols (src/budu/monitor/README.md)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# crun refuses a hybrid host whose cgroup2 hierarchy holds any controller ("cgroups in hybrid mode
# not supported, drop all controllers from cgroupv2"), and this host's has hugetlb.  In a private
# mount namespace it is shown an empty cgroup.controllers instead; everything else it does is real.
CRUN_WRAPPER = """#!/bin/sh
exec unshare -m sh -c '
    mount --bind /dev/null /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null
    exec crun "$@"' crun "$@"
"""


@pytest.fixture(scope="session")
def monitor_bin(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("monitor") / "budu-monitor")
    subprocess.run([os.path.join(REPO, "scripts/build-static.sh"), "src/budu/monitor", out], check=True)
    return out


@pytest.fixture(scope="session")
def crun_wrapper(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("crun") / "crun")
    with open(path, "w") as f:
        f.write(CRUN_WRAPPER)
    os.chmod(path, 0o755)
    return path


class Runtime:
    def __init__(self, name: str, binary: str, root: str) -> None:
        self.name, self.binary, self.root = name, binary, root
        os.makedirs(root, exist_ok=True)

    def cmd(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.binary, "--root", self.root, *args], capture_output=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    def list(self) -> list[str]:
        p = self.cmd("list", "-q")
        assert p.returncode == 0, p.stderr
        return p.stdout.decode().split()


def alive(pid: int) -> bool:
    """Running, not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def is_mount(path: str) -> bool:
    """A mount point, bind mounts on the same filesystem included (os.path.ismount misses them)."""
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")  # \040 for a space
            if point == path:
                return True
    return False


def _runtime(name: str, tmp_path, crun_wrapper: str) -> Runtime:
    binary = {"budu": shutil.which("budu-runtime"), "runc": shutil.which("runc"), "crun": crun_wrapper}[name]
    assert binary, f"{name} is not installed (scripts/install.sh installs it)"
    return Runtime(name, binary, str(tmp_path / f"{name}-root"))


@pytest.fixture(params=["budu", "runc", "crun"])
def runtime(request, tmp_path, crun_wrapper) -> Runtime:
    return _runtime(request.param, tmp_path, crun_wrapper)


@pytest.fixture
def budu(tmp_path, crun_wrapper) -> Runtime:
    return _runtime("budu", tmp_path, crun_wrapper)


def read_frame(sock: socket.socket) -> tuple[int, bytes] | None:
    head = _recv_exact(sock, 5)
    if head is None:
        return None
    kind, n = struct.unpack(">BI", head)
    data = _recv_exact(sock, n) if n else b""
    return kind, data or b""


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            return None
        out += chunk
    return out


class Attach:
    """An attach client: connects through /proc/self/fd/DIRFD/attach, as the engine does."""

    def __init__(self, bundle_dir: str, flags: int) -> None:
        dfd = os.open(bundle_dir, os.O_PATH)
        try:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(f"/proc/self/fd/{dfd}/attach")
        finally:
            os.close(dfd)
        self.sock.settimeout(20)
        self.send(0x10, bytes([flags]))

    def send(self, kind: int, payload: bytes = b"") -> None:
        self.sock.sendall(struct.pack(">BI", kind, len(payload)) + payload)

    def until_exit(self) -> tuple[bytes, bytes, int | None]:
        """stdout, stderr and the exit code, reading until EXIT (or the monitor closes)."""
        out, err = b"", b""
        while True:
            f = read_frame(self.sock)
            if f is None:
                return out, err, None
            kind, data = f
            if kind == 1:
                out += data
            elif kind == 2:
                err += data
            elif kind == 3:
                return out, err, struct.unpack(">i", data)[0]

    def frames(self):
        """Every frame until the monitor closes the connection (or drops us)."""
        while True:
            try:
                f = read_frame(self.sock)
            except ConnectionResetError:
                return
            if f is None:
                return
            yield f

    def close(self) -> None:
        self.sock.close()


class Monitor:
    """One budu-monitor run: launched like the engine does it, through a socketpair sync fd."""

    def __init__(self, binary: str, rt: Runtime, bundle, events: str) -> None:
        self.binary, self.rt, self.bundle, self.events = binary, rt, bundle, events
        self.id = f"m-{uuid.uuid4().hex[:12]}"
        self.sync: socket.socket | None = None
        self.launched: subprocess.CompletedProcess | None = None
        self._buf = b""

    @property
    def dir(self) -> str:
        return self.bundle.path

    def argv(self, *extra: str, fd: int) -> list[str]:
        return [self.binary, "--id", self.id, "--bundle", self.dir, "--runtime", self.rt.binary,
                "--runtime-arg", "--root", "--runtime-arg", self.rt.root, "--sync-fd", str(fd),
                "--name", "test-" + self.id, "--image", "busybox:latest", "--events-file", self.events, *extra]

    def launch(self, *extra: str) -> dict:
        """Run the monitor; it returns at once (the caller's wait must not block) and later tells
        the pid of the created container, or an error, on the sync fd."""
        ours, theirs = socket.socketpair()
        t0 = time.monotonic()
        self.launched = subprocess.run(self.argv(*extra, fd=theirs.fileno()), pass_fds=[theirs.fileno()],
                                       capture_output=True, timeout=10)
        self.launch_seconds = time.monotonic() - t0
        theirs.close()
        self.sync = ours
        ours.settimeout(60)
        return self.read_sync()

    def read_sync(self) -> dict:
        assert self.sync is not None
        while b"\n" not in self._buf:
            chunk = self.sync.recv(4096)
            if not chunk:
                raise EOFError("the monitor closed the sync fd")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def start(self, expect_error: bool = False) -> dict:
        assert self.sync is not None
        self.sync.sendall(b"start\n")
        reply = self.read_sync()
        if expect_error:
            assert set(reply) == {"error"}, reply
            return reply
        assert reply == {"started": True}, reply
        assert self.sync.recv(1) == b"", "the sync fd stays open after start"
        self.sync.close()
        self.sync = None
        return reply

    def run(self, *extra: str) -> dict:
        reply = self.launch(*extra)
        assert "pid" in reply or reply == {"ready": True}, reply
        self.start()
        return self.status()

    def rootfs_mounted(self) -> bool:
        return is_mount(self.bundle.rootfs)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def status(self) -> dict:
        with open(self.path("status")) as f:
            return json.load(f)

    def wait(self, pred, timeout: float = 20, what: str = "") -> dict:
        deadline = time.monotonic() + timeout
        st: dict = {}
        while time.monotonic() < deadline:
            try:
                st = self.status()
            except (FileNotFoundError, json.JSONDecodeError):
                st = {}
            if st and pred(st):
                return st
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what or pred}: last status {st}")

    def wait_exited(self, timeout: float = 20) -> dict:
        st = self.wait(lambda s: s["status"] == "exited", timeout, "status exited")
        wait_gone(st["monitor_pid"], timeout)
        return st

    def wait_gone(self, timeout: float = 10) -> None:
        """Until no process runs this monitor for this id any more."""
        deadline = time.monotonic() + timeout
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.pids() == [], "the monitor is still running"

    def log_path(self) -> str:
        return self.path(f"{self.id}-json.log")

    def log(self, path: str | None = None) -> list[dict]:
        with open(path or self.log_path(), "rb") as f:
            return [json.loads(line) for line in f]

    def event_lines(self) -> list[dict]:
        if not os.path.exists(self.events):
            return []
        with open(self.events) as f:
            return [json.loads(line) for line in f]

    def pids(self) -> list[int]:
        """Processes still running this monitor binary for this id (also before `status` exists)."""
        found = []
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{p}/exe") != self.binary:
                    continue
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if self.id.encode() in args:
                found.append(int(p))
        return found

    def cleanup(self) -> None:
        if self.sync is not None:
            self.sync.close()
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.rt.cmd("delete", "--force", self.id)
        except OSError:
            pass  # a test that gave the monitor a runtime that does not exist
        for _ in range(5):
            if not is_mount(self.bundle.rootfs):
                break
            subprocess.run(["umount", "-l", self.bundle.rootfs], capture_output=True)


def wait_gone(pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(pid), f"process {pid} still running"


@pytest.fixture
def monitor(monitor_bin, tmp_path):
    """A factory: monitor(runtime, bundle) -> Monitor, every one cleaned up after the test."""
    made: list[Monitor] = []

    def make(rt: Runtime, bundle) -> Monitor:
        m = Monitor(monitor_bin, rt, bundle, str(tmp_path / "events.log"))
        made.append(m)
        return m

    yield make
    for m in made:
        m.cleanup()


@pytest.fixture
def attach():
    """A factory: attach(dir, flags) -> Attach (flags: 1 stdout, 2 stderr, 4 stdin, 8 cleanup)."""
    made: list[Attach] = []

    def make(bundle_dir: str, flags: int) -> Attach:
        a = Attach(bundle_dir, flags)
        made.append(a)
        return a

    yield make
    for a in made:
        a.close()
