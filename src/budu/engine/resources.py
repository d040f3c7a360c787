"""Resource-side parts of a container's OCI config, with docker's rules and messages: rlimits
from HostConfig.Ulimits, devices (HostConfig.Devices, or all of the host's when privileged) and
their cgroup rules, cgroup resources (memory, cpu, pids, blkio) and namespaced sysctls."""

from __future__ import annotations

import os
import resource
import stat

from budu.errors import ConfigError
from budu.kernel import caps as capnames
from budu.runtime.spec import RLIMITS

MIN_MEMORY = 6 << 20
_RLIM_INFINITY = 2**64 - 1
ULIMITS = {n: f"RLIMIT_{n.upper()}" for n in (
    "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
    "rtprio", "rttime", "sigpending", "stack", "as")}
_IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}


def cgroup_v2() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def _may_raise_limits() -> bool:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << capnames.NUMBERS["CAP_SYS_RESOURCE"]))
    return False


def rlimits(ulimits: list[dict]) -> list[dict]:
    """HostConfig.Ulimits; RLIMIT_NOFILE defaults to the engine's own limit (docker's containers
    inherit the daemon's).  Without CAP_SYS_RESOURCE no limit can go above the engine's hard
    limit, so values are clamped to it rather than failing at start."""
    def lim(v: int) -> int:
        return _RLIM_INFINITY if v < 0 or v >= _RLIM_INFINITY else v

    clamp = not _may_raise_limits()
    out: list[dict] = []
    seen = set()
    for u in ulimits:
        name = u.get("Name", "")
        if name not in ULIMITS:
            raise ConfigError(f"invalid ulimit type: {name}")
        soft, hard = lim(int(u.get("Soft", 0))), lim(int(u.get("Hard", 0)))
        if soft > hard:
            raise ConfigError(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
        kind = ULIMITS[name]
        if clamp:
            cur_hard = lim(resource.getrlimit(RLIMITS[kind])[1])
            soft, hard = min(soft, cur_hard), min(hard, cur_hard)
        if kind in seen:
            out = [r for r in out if r["type"] != kind]
        seen.add(kind)
        out.append({"type": kind, "soft": soft, "hard": hard})
    if "RLIMIT_NOFILE" not in seen:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        out.append({"type": "RLIMIT_NOFILE", "soft": lim(soft), "hard": lim(hard)})
    return out


def _device(path: str, in_container: str, perms: str) -> tuple[dict, dict] | None:
    st = os.stat(path)
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        return None
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    dev = {"path": in_container, "type": kind, "major": major, "minor": minor,
           "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
    return dev, {"allow": True, "type": kind, "major": major, "minor": minor, "access": perms}


def devices_from_path(on_host: str, in_container: str, perms: str) -> list[tuple[dict, dict]]:
    """One device, or every device below a directory (docker's DevicesFromPath)."""
    resolved = os.path.realpath(on_host) if os.path.islink(on_host) else on_host
    try:
        one = _device(resolved, in_container, perms)
    except OSError as e:
        raise ConfigError(f'error gathering device information while adding custom device "{on_host}": '
                          f"{os.strerror(e.errno or 2).lower()}") from None
    if one is not None:
        return [one]
    found = []
    if os.path.isdir(resolved):
        for dirpath, _dirs, names in os.walk(resolved):
            for n in sorted(names):
                p = os.path.join(dirpath, n)
                try:
                    d = _device(p, in_container + p[len(resolved):], perms)
                except OSError:
                    continue
                if d is not None:
                    found.append(d)
    if not found:
        raise ConfigError(f'error gathering device information while adding custom device "{on_host}": '
                          f"not a device node")
    return found


def host_devices() -> list[dict]:
    """Every device node under the host's /dev (what a privileged container gets), skipping what
    runc skips: pts, shm, fd, mqueue and /dev/console."""
    out = []
    for dirpath, dirs, names in os.walk("/dev"):
        dirs[:] = [d for d in dirs if not (dirpath == "/dev" and d in ("pts", "shm", "fd", "mqueue", ".lxc",
                                                                      ".lxd-mounts", ".udev"))]
        for n in sorted(names):
            p = os.path.join(dirpath, n)
            if p == "/dev/console":
                continue
            try:
                d = _device(p, p, "rwm") if not os.path.islink(p) else None
            except OSError:
                continue
            if d is not None:
                out.append(d[0])
    return out


def devices(hc: dict, privileged: bool) -> tuple[list[dict], list[dict]]:
    devices: list[dict] = host_devices() if privileged else []
    rules: list[dict] = [{"allow": False, "access": "rwm"}]
    for mapping in hc.get("Devices") or []:
        on_host = mapping.get("PathOnHost") or ""
        perms = "rwm" if privileged else (mapping.get("CgroupPermissions") or "rwm")
        if not perms or any(c not in "rwm" for c in perms):
            raise ConfigError(f"invalid device mode: {perms}")
        for dev, rule in devices_from_path(on_host, mapping.get("PathInContainer") or on_host, perms):
            devices = [d for d in devices if d["path"] != dev["path"]] + [dev]
            rules.append(rule)
    if privileged:
        rules.append({"allow": True, "access": "rwm"})
    return devices, rules


def _swap_accounting() -> bool:
    if cgroup_v2():
        return True
    return os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")


def resources(hc: dict, device_rules: list[dict]) -> dict:
    res: dict = {"devices": device_rules}
    mem: dict = {}
    memory = int(hc.get("Memory") or 0)
    swap = int(hc.get("MemorySwap") or 0)
    if memory:
        if memory < MIN_MEMORY:
            raise ConfigError("Minimum memory limit allowed is 6MB")
        mem["limit"] = memory
    if swap and swap != -1:
        if not memory:
            raise ConfigError("You should always set the Memory limit when using Memoryswap limit, see usage")
        if swap < memory:
            raise ConfigError("Minimum memoryswap limit should be larger than memory limit, see usage")
    if memory and swap == 0:
        swap = 2 * memory  # docker's default: as much swap as memory
    if swap and _swap_accounting():
        mem["swap"] = swap
    if hc.get("MemoryReservation"):
        mem["reservation"] = int(hc["MemoryReservation"])
    swappiness = hc.get("MemorySwappiness")
    if swappiness is not None and swappiness != -1:
        if not 0 <= swappiness <= 100:
            raise ConfigError(f"Invalid value: {swappiness}, valid memory swappiness range is 0-100")
        mem["swappiness"] = int(swappiness)
    if hc.get("OomKillDisable"):
        mem["disableOOMKiller"] = True
    if mem:
        res["memory"] = mem
    cpu: dict = {}
    nano = int(hc.get("NanoCpus") or 0)
    if nano:
        if hc.get("CpuPeriod"):
            raise ConfigError("Conflicting options: Nano CPUs and CPU Period cannot both be set")
        if hc.get("CpuQuota"):
            raise ConfigError("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
        ncpu = os.cpu_count() or 1
        if nano < 0 or nano > ncpu * 10**9:
            raise ConfigError(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available")
        cpu["period"] = 100000
        cpu["quota"] = nano * 100000 // 10**9
    for key, field in (("CpuShares", "shares"), ("CpuQuota", "quota"), ("CpuPeriod", "period")):
        if hc.get(key):
            cpu[field] = int(hc[key])
    for key, field in (("CpusetCpus", "cpus"), ("CpusetMems", "mems")):
        if hc.get(key):
            cpu[field] = str(hc[key])
    if cpu:
        res["cpu"] = cpu
    pids = hc.get("PidsLimit")
    if pids is not None and pids > 0:  # 0 and -1 mean unlimited: say nothing (crun writes -1 as is)
        res["pids"] = {"limit": int(pids)}
    if hc.get("BlkioWeight"):
        res["blockIO"] = {"weight": int(hc["BlkioWeight"])}
    return res


def sysctls(hc: dict, netns: str | None) -> dict[str, str]:
    """Only namespaced sysctls, each only when the container has its own namespace for it; a
    container with its own network namespace gets docker's two defaults (unprivileged ping and
    ports below 1024)."""
    out: dict[str, str] = {}
    if netns != "host":
        for key, value in (("net.ipv4.ping_group_range", "0 2147483647"), ("net.ipv4.ip_unprivileged_port_start", "0")):
            if os.path.exists("/proc/sys/" + key.replace(".", "/")):
                out[key] = value
    ipc_host = (hc.get("IpcMode") or "") == "host"
    for key, value in (hc.get("Sysctls") or {}).items():
        if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            if ipc_host:
                raise ConfigError(f'sysctl "{key}" is not allowed in the host IPC namespace')
        elif key.startswith("net."):
            if netns == "host":
                raise ConfigError(f'sysctl "{key}" is not allowed in the host network namespace')
        else:
            raise ConfigError(f'sysctl "{key}" is not allowed: a container may only set namespaced sysctls '
                              f"(kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*, net.*)")
        out[key] = str(value)
    return out
