"""The runtime's per-container state: one directory under --root, one atomically written JSON file.

The status is never stored; it is derived each time from the kernel (is the init process still
the same process, is it waiting on its exec fifo, is its cgroup frozen), so a crash can never leave
a stale status behind.

budu-runtime's C front door (runtime/front/budu-runtime.c) reads this same file for start, state,
kill and delete, and applies the same status rule: a change to either belongs in both
(tests/runtime/test_front.py compares their answers).
"""

from __future__ import annotations

import errno
import os
import time

from budu.errors import ConfigError, NotFound
from budu.kernel import fastjson

DEFAULT_ROOT = "/run/budu-runtime"
STATE_FILE = "state.json"
FIFO = "exec.fifo"
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def check_id(cid: str) -> None:
    if not cid:
        raise ConfigError("container id: must not be empty")
    if cid in (".", "..") or not set(cid) <= _ID_CHARS or len(cid) > 1024:
        raise ConfigError(f"container id {cid!r}: invalid (use letters, digits, '_', '+', '-', '.')")
    if cid == ".seccomp":  # seccomp_filter.CACHE_DIR, not imported here: it is off the hot path
        raise ConfigError(f"container id {cid!r}: reserved for budu-runtime's compiled seccomp filters")


def write_json_atomic(path: str, data: object, durable: bool = False) -> None:
    """Write a file so that readers see the old or the new content, never a part.

    The runtime's own state lives on /run (tmpfs) and dies with the host, like runc's: it needs
    the atomic rename, not an fsync (`durable` is for state that must survive a power cut).
    """
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, fastjson.dumps(data).encode())
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def proc_start_time(pid: int) -> int | None:
    """Start time of a process in clock ticks (field 22 of /proc/PID/stat), or None if gone.

    Stored with the pid so that a recycled pid is never mistaken for the container.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


class State:
    """What `create` records about a container; the status is computed by `status()`."""

    __slots__ = ("dir", "data", "_cgroup")

    def __init__(self, root: str, cid: str, data: dict | None = None) -> None:
        self.dir = os.path.join(root, cid)
        self.data: dict = data if data is not None else {}
        self._cgroup = None

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def pid(self) -> int:
        return self.data.get("pid") or 0

    @property
    def fifo(self) -> str:
        return os.path.join(self.dir, FIFO)

    def save(self) -> None:
        write_json_atomic(os.path.join(self.dir, STATE_FILE), self.data)

    def alive(self) -> bool:
        pid = self.pid
        return pid > 0 and proc_start_time(pid) == self.data.get("pidStartTime")

    def status(self) -> str:
        if self.data.get("creating"):
            return "creating" if self.alive() or not self.pid else "stopped"
        if not self.alive():
            return "stopped"
        if os.path.exists(self.fifo):
            return "created"
        if self.frozen():
            return "paused"
        return "running"

    def frozen(self) -> bool:
        cg = self.cgroup()
        return cg is not None and cg.frozen()

    def cgroup(self):  # -> Cgroup | None
        if self._cgroup is None:
            path = self.data.get("cgroupPath")
            if not path:
                return None
            from budu.runtime.cgroups import Cgroup

            mode, paths = self.data.get("cgroupMode"), self.data.get("cgroupPaths")
            self._cgroup = Cgroup.recorded(path, mode, paths) if mode and paths else Cgroup(path)
        return self._cgroup

    def oci_state(self) -> dict:
        """The state document of the runtime-spec (plus runc's extra fields)."""
        status = self.status()
        out = {
            "ociVersion": self.data.get("ociVersion", "1.0.2"),
            "id": self.id,
            "status": status,
            "pid": self.pid if status != "stopped" else 0,
            "bundle": self.data.get("bundle", ""),
            "rootfs": self.data.get("rootfs", ""),
            "created": self.data.get("created", ""),
            "owner": "",
        }
        if self.data.get("annotations"):
            out["annotations"] = self.data["annotations"]
        return out


def new(root: str, cid: str) -> State:
    """Reserve a container id: the directory is the lock, so two creates cannot both win."""
    check_id(cid)
    os.makedirs(root, mode=0o711, exist_ok=True)
    st = State(root, cid)
    try:
        os.mkdir(st.dir, 0o711)
    except FileExistsError:
        raise ConfigError(f"container {cid!r} already exists") from None
    return st


def load(root: str, cid: str) -> State:
    check_id(cid)
    st = State(root, cid)
    try:
        with open(os.path.join(st.dir, STATE_FILE), "rb") as f:
            st.data = fastjson.loads(f.read())  # type: ignore[assignment]
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise NotFound(f"container {cid!r} does not exist") from None
        raise
    return st


def list_ids(root: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n, STATE_FILE)))
    except FileNotFoundError:
        return []


def iso_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"
