"""What a container is doing, derived from its monitor's `status` file and the kernel — never stored.

The monitor writes `status` atomically whenever something changes.  A monitor that is gone while
its file still says `running` crashed, or the host rebooted: `State.orphaned` tells the engine to
clean up after it.
"""

from __future__ import annotations

import os

from budu.kernel import fastjson
from budu.plain import Plain

ZERO_TIME = "0001-01-01T00:00:00Z"


class State(Plain):
    __slots__ = ("status", "pid", "monitor_pid", "exit_code", "oom_killed", "error", "started_at", "finished_at",
                 "restart_count", "health", "orphaned", "raw")

    def __init__(self, status: str = "created", pid: int = 0, monitor_pid: int = 0, exit_code: int = 0,
                 oom_killed: bool = False, error: str = "", started_at: str = ZERO_TIME,
                 finished_at: str = ZERO_TIME, restart_count: int = 0, health: dict | None = None,
                 orphaned: bool = False, raw: dict | None = None) -> None:
        self.status = status  # created running paused restarting removing exited dead
        self.pid = pid
        self.monitor_pid = monitor_pid
        self.exit_code = exit_code
        self.oom_killed = oom_killed
        self.error = error
        self.started_at = started_at
        self.finished_at = finished_at
        self.restart_count = restart_count
        self.health = health
        self.orphaned = orphaned  # the file says running, but its monitor is gone
        self.raw = {} if raw is None else raw

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused", "restarting")

    def docker(self) -> dict:
        """docker's ContainerState."""
        d = {
            "Status": self.status, "Running": self.status in ("running", "paused"),
            "Paused": self.status == "paused", "Restarting": self.status == "restarting",
            "OOMKilled": self.oom_killed, "Dead": self.status == "dead", "Pid": self.pid if self.running else 0,
            "ExitCode": self.exit_code, "Error": self.error, "StartedAt": self.started_at,
            "FinishedAt": self.finished_at,
        }
        if self.health is not None:
            d["Health"] = self.health
        return d


def monitor_alive(pid: int, cid: str) -> bool:
    """Is `pid` still this container's monitor?  A pid is reused after a reboot, so look at its args."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False
    return cid.encode() in args


def read(container_dir: str, cid: str, paused: bool = False, removing: bool = False) -> State:
    try:
        with open(os.path.join(container_dir, "status"), "rb") as f:
            raw = fastjson.loads(f.read())
    except FileNotFoundError:
        return State(status="removing" if removing else "created")
    except (OSError, ValueError):
        return State(status="dead", error="unreadable status file")
    s = State(
        status=raw.get("status", "exited"), pid=int(raw.get("pid") or 0), monitor_pid=int(raw.get("monitor_pid") or 0),
        exit_code=int(raw.get("exit_code") or 0), oom_killed=bool(raw.get("oom_killed")), error=raw.get("error") or "",
        started_at=raw.get("started_at") or ZERO_TIME, finished_at=raw.get("finished_at") or ZERO_TIME,
        restart_count=int(raw.get("restart_count") or 0), health=raw.get("health"), raw=raw)
    if s.status in ("running", "restarting") and not monitor_alive(s.monitor_pid, cid):
        s.orphaned = True
    elif s.status == "running" and paused:
        s.status = "paused"
    if removing:
        s.status = "removing"
    return s
