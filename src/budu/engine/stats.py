"""`top` and `stats`: a running container's processes and resource use, read from the kernel.

The cgroup is found from the container's pid (/proc/PID/cgroup), so this works whichever OCI
runtime made it, on cgroup v1, hybrid and v2 hosts alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass

from budu.errors import ConfigError, StateError

CGROUP_ROOT = "/sys/fs/cgroup"


def cgroup_dirs(pid: int, root: str = CGROUP_ROOT) -> dict[str, str]:
    """controller -> directory of the process's cgroup; key "" for the v2 unified hierarchy."""
    dirs: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if not controllers:
                unified = root if os.path.exists(os.path.join(root, "cgroup.controllers")) else os.path.join(root, "unified")
                dirs[""] = unified + path
                continue
            for ctl in controllers.split(","):
                name = ctl.replace("name=", "")
                for mount in (controllers, ctl):
                    d = os.path.join(root, mount)
                    if os.path.isdir(d):
                        dirs[name] = d + path
                        break
    return dirs


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _int(path: str) -> int:
    text = _read(path).strip()
    if not text or text == "max":
        return 0
    try:
        return int(text.split()[0])
    except ValueError:
        return 0


def _kv(path: str) -> dict[str, int]:
    out = {}
    for line in _read(path).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


@dataclass
class Sample:
    cpu_ns: int
    system_ns: int
    online_cpus: int
    mem_usage: int
    mem_limit: int
    net_rx: int
    net_tx: int
    blk_read: int
    blk_write: int
    pids: int


def _system_ns() -> int:
    for line in _read("/proc/stat").splitlines():
        if line.startswith("cpu "):
            ticks = sum(int(x) for x in line.split()[1:8])
            return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    return 0


def _host_memory() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def sample(pid: int) -> Sample:
    dirs = cgroup_dirs(pid)
    v2 = dirs.get("")
    if "memory" in dirs:  # v1 (or hybrid): docker subtracts the inactive page cache
        mem = dirs["memory"]
        stat = _kv(os.path.join(mem, "memory.stat"))
        usage = _int(os.path.join(mem, "memory.usage_in_bytes")) - stat.get("total_inactive_file", 0)
        limit = _int(os.path.join(mem, "memory.limit_in_bytes"))
    elif v2:
        stat = _kv(os.path.join(v2, "memory.stat"))
        usage = _int(os.path.join(v2, "memory.current")) - stat.get("inactive_file", 0)
        limit = _int(os.path.join(v2, "memory.max"))
    else:
        usage, limit = 0, 0
    host_mem = _host_memory()
    if not limit or limit > host_mem:
        limit = host_mem
    if "cpuacct" in dirs:
        cpu = _int(os.path.join(dirs["cpuacct"], "cpuacct.usage"))
    elif v2:
        cpu = _kv(os.path.join(v2, "cpu.stat")).get("usage_usec", 0) * 1000
    else:
        cpu = 0
    pids_dir = dirs.get("pids") or v2 or ""
    pids = _int(os.path.join(pids_dir, "pids.current")) if pids_dir else 0
    rd = wr = 0
    if "blkio" in dirs:
        for line in _read(os.path.join(dirs["blkio"], "blkio.throttle.io_service_bytes")).splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == "Read":
                rd += int(parts[2])
            elif len(parts) == 3 and parts[1] == "Write":
                wr += int(parts[2])
    elif v2:
        for line in _read(os.path.join(v2, "io.stat")).splitlines():
            for item in line.split()[1:]:
                k, _, v = item.partition("=")
                rd += int(v) if k == "rbytes" else 0
                wr += int(v) if k == "wbytes" else 0
    rx = tx = 0
    for line in _read(f"/proc/{pid}/net/dev").splitlines()[2:]:
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            continue
        fields = rest.split()
        if len(fields) >= 9:
            rx += int(fields[0])
            tx += int(fields[8])
    return Sample(cpu, _system_ns(), os.cpu_count() or 1, max(usage, 0), limit, rx, tx, rd, wr, pids)


def cpu_percent(prev: Sample | None, cur: Sample) -> float:
    if prev is None:
        return 0.0
    cpu_delta = cur.cpu_ns - prev.cpu_ns
    sys_delta = cur.system_ns - prev.system_ns
    if cpu_delta <= 0 or sys_delta <= 0:
        return 0.0
    return cpu_delta / sys_delta * cur.online_cpus * 100.0


def _bytes_binary(n: float) -> str:
    """go-units BytesSize: 1.5MiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.4g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1024
    return f"{n}B"


def _bytes_decimal(n: float) -> str:
    """go-units HumanSize: 1.2kB."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.4g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n}B"


def row(c, s: Sample | None, prev: Sample | None, no_trunc: bool) -> dict:  # noqa: ANN001
    cid = c.id if no_trunc else c.id[:12]
    if s is None:
        return {"Container": cid, "ID": cid, "Name": c.name, "CPUPerc": "--", "MemUsage": "-- / --",
                "MemPerc": "--", "NetIO": "--", "BlockIO": "--", "PIDs": "--"}
    mem_pct = s.mem_usage / s.mem_limit * 100 if s.mem_limit else 0.0
    return {"Container": cid, "ID": cid, "Name": c.name, "CPUPerc": f"{cpu_percent(prev, s):.2f}%",
            "MemUsage": f"{_bytes_binary(s.mem_usage)} / {_bytes_binary(s.mem_limit)}", "MemPerc": f"{mem_pct:.2f}%",
            "NetIO": f"{_bytes_decimal(s.net_rx)} / {_bytes_decimal(s.net_tx)}",
            "BlockIO": f"{_bytes_decimal(s.blk_read)} / {_bytes_decimal(s.blk_write)}", "PIDs": str(s.pids)}


HEADERS = {"Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
           "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O",
           "PIDs": "PIDS"}
DEFAULT_FORMAT = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"


def stats_loop(engine, refs: list[str], all_: bool, stream: bool, no_trunc: bool, template: str | None) -> int:  # noqa: ANN001
    from budu.cli import format as fmt

    fixed = [engine.get(r) for r in refs]
    prev: dict[str, Sample] = {}
    first = True
    while True:
        targets = fixed or [c for c, st in engine.list() if all_ or st.status in ("running", "paused")]
        rows = []
        for c in targets:
            st = engine.state(c)
            s = None
            if st.status in ("running", "paused") and st.pid:
                try:
                    s = sample(st.pid)
                except OSError:
                    s = None
            rows.append(row(c, s, prev.get(c.id), no_trunc))
            if s is not None:
                prev[c.id] = s
        if first:  # CPU % needs two samples, as docker's does
            first = False
            time.sleep(0.5)
            continue
        text = fmt.format_rows(template or DEFAULT_FORMAT, rows, HEADERS)
        if stream and sys.stdout.isatty():
            text = "\033[2J\033[H" + text
        sys.stdout.write(text)
        sys.stdout.flush()
        if not stream:
            return 0
        time.sleep(1.0)


def top(engine, c, ps_args: list[str]) -> tuple[list[str], list[list[str]]]:  # noqa: ANN001
    """docker top: the host's `ps` output, only the container's processes."""
    st = engine.state(c)
    if st.status not in ("running", "paused"):
        raise StateError(f"container {c.id} is not running")
    pids = _container_pids(st.pid)
    args = ps_args or ["-ef"]
    p = subprocess.run(["ps", *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise ConfigError(f"ps: {p.stderr.strip() or 'failed'}")
    lines = p.stdout.splitlines()
    if not lines:
        return [], []
    titles = lines[0].split()
    if "PID" not in titles:
        raise ConfigError("Couldn't find PID field in ps output")
    pid_col = titles.index("PID")
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > pid_col and fields[pid_col].isdigit() and int(fields[pid_col]) in pids:
            rows.append(fields)
    return titles, rows


def _container_pids(pid: int) -> set[int]:
    """Every process in the container's cgroup (its pid namespace's members)."""
    dirs = cgroup_dirs(pid)
    for key in ("pids", "memory", "cpuacct", "devices", ""):
        d = dirs.get(key)
        if d and os.path.exists(os.path.join(d, "cgroup.procs")):
            out = set()
            for root, _, files in os.walk(d):
                if "cgroup.procs" in files:
                    out |= {int(x) for x in _read(os.path.join(root, "cgroup.procs")).split()}
            if out:
                return out
    return {pid}


def update_resources(hc: dict) -> dict:
    """HostConfig resource fields -> OCI LinuxResources, for `runtime update`."""
    res: dict = {}
    mem = {k: v for k, v in (("limit", hc.get("Memory")), ("reservation", hc.get("MemoryReservation")),
                             ("swap", hc.get("MemorySwap"))) if v}
    if mem:
        res["memory"] = mem
    cpu: dict = {}
    if hc.get("CpuShares"):
        cpu["shares"] = hc["CpuShares"]
    if hc.get("NanoCpus"):
        cpu["period"] = 100000
        cpu["quota"] = hc["NanoCpus"] * 100000 // 1_000_000_000
    else:
        if hc.get("CpuPeriod"):
            cpu["period"] = hc["CpuPeriod"]
        if hc.get("CpuQuota"):
            cpu["quota"] = hc["CpuQuota"]
    if hc.get("CpusetCpus"):
        cpu["cpus"] = hc["CpusetCpus"]
    if hc.get("CpusetMems"):
        cpu["mems"] = hc["CpusetMems"]
    if cpu:
        res["cpu"] = cpu
    if hc.get("PidsLimit") is not None:
        res["pids"] = {"limit": hc["PidsLimit"] if hc["PidsLimit"] > 0 else -1}  # an update may lift it
    return res


def check_update(hc: dict) -> None:
    if hc.get("Memory") and hc["Memory"] < 6 * 1024 * 1024:
        raise ConfigError("Minimum memory limit allowed is 6MB")
    if hc.get("MemorySwap") and hc["MemorySwap"] > 0 and hc.get("Memory") and hc["MemorySwap"] < hc["Memory"]:
        raise ConfigError("Minimum memoryswap limit should be larger than memory limit, see usage")



def update_request(a) -> dict:  # noqa: ANN001
    """`budu update` flags -> the HostConfig fields they change (docker's UpdateConfig)."""
    from budu.cli.runflags import ram_in_bytes, restart_policy

    def size(flag: str, text: str | None) -> int | None:
        if text is None:
            return None
        if text == "-1":
            return -1
        try:
            return ram_in_bytes(text)
        except ValueError as e:
            raise ConfigError(f'invalid argument "{text}" for "{flag}" flag: {e}') from None

    changes: dict = {}
    for key, flag, value in (("Memory", "-m, --memory", a.memory), ("MemorySwap", "--memory-swap", a.memory_swap),
                             ("MemoryReservation", "--memory-reservation", a.memory_reservation)):
        n = size(flag, value)
        if n is not None:
            changes[key] = n
    if a.cpus is not None:
        try:
            changes["NanoCpus"] = int(round(float(a.cpus) * 1e9))
        except ValueError:
            raise ConfigError(f'invalid argument "{a.cpus}" for "--cpus" flag') from None
    for key, value in (("CpuShares", a.cpu_shares), ("CpuPeriod", a.cpu_period), ("CpuQuota", a.cpu_quota),
                       ("CpusetCpus", a.cpuset_cpus), ("CpusetMems", a.cpuset_mems), ("PidsLimit", a.pids_limit)):
        if value is not None:
            changes[key] = value
    if a.restart is not None:
        changes["RestartPolicy"] = restart_policy(a.restart)
    if not changes:
        raise ConfigError("you must provide one or more flags when using this command")
    return changes
