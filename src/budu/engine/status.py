"""What a container is doing, derived from its monitor's `status` file and the kernel — never stored.

The monitor writes `status` atomically whenever something changes.  A monitor that is gone while
its file still says `running` crashed, or the host rebooted: `State.orphaned` tells the engine to
clean up after it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass
class State:
    status: str = "created"  # created running paused restarting removing exited dead
    pid: int = 0
    monitor_pid: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    restart_count: int = 0
    health: dict | None = None
    orphaned: bool = False  # the file says running, but its monitor is gone
    raw: dict = field(default_factory=dict)

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
            raw = json.loads(f.read())
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
