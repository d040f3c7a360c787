"""The checks docker's daemon makes on a container's create body (Config, HostConfig,
NetworkingConfig), with docker's messages.

The engine's to make, so that the CLI and the Docker API refuse the same bodies with the same
words: `budu run` calls `check_body` after building the body from its flags, and the API server
calls it on the body it receives.  Every field is read with `.get`, so a sparse API body works.
"""

from __future__ import annotations

import os

from budu.errors import ConfigError


def go_quote(text: str) -> str:
    """Go's %q for the strings a user types."""
    import json

    return json.dumps(text, ensure_ascii=False)

def go_bool(text: str) -> bool:
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f"strconv.ParseBool: parsing {go_quote(text)}: invalid syntax")

def parse_ip(text: str):  # noqa: ANN202
    """net.ParseIP: an address or None (no zones, no leading zeros)."""
    import ipaddress

    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None

def valid_ns_mode(flag: str, mode: str) -> bool:
    if mode in ("", "host") or (flag == "cgroupns" and mode == "private"):
        return True
    return flag == "pid" and mode.startswith("container:") and len(mode) > len("container:")

def clean_path(path: str) -> str:
    """Go's path.Clean."""
    import posixpath

    clean = posixpath.normpath(path)
    return clean[1:] if clean.startswith("//") else clean

def user_defined_network(mode: str) -> bool:
    return mode not in ("default", "bridge", "host", "none") and not mode.startswith("container:")


_LINUX_MIN_MEMORY = 6 * 1024 * 1024
_PROPAGATIONS = ("private", "rprivate", "slave", "rslave", "shared", "rshared")


def check_body(config: dict, host_config: dict, networking_config: dict | None = None,
               name: str | None = None) -> None:
    """The checks docker's daemon makes on a create body, with its messages (ConfigError).

    Reads only the body, and `.get`s every field, so it serves a body from the API as well.
    """
    hc = host_config
    if name is not None:
        check_name(name)
    _check_restart(hc.get("RestartPolicy") or {}, hc.get("AutoRemove"))
    _check_resources(hc)
    workdir = config.get("WorkingDir") or ""
    if workdir and not workdir.startswith("/"):
        raise ConfigError(f"the working directory '{workdir}' is invalid, it needs to be an absolute path")
    if config.get("StopSignal"):
        _check_signal(config["StopSignal"])
    ipc = hc.get("IpcMode") or ""
    if ipc not in ("", "none", "private", "shareable", "host") and not (
            ipc.startswith("container:") and len(ipc) > len("container:")):
        raise ConfigError(f"invalid IPC mode: {ipc}")
    for key, what in (("PidMode", "PID"), ("UTSMode", "UTS")):
        if not valid_ns_mode("pid" if key == "PidMode" else "uts", hc.get(key) or ""):
            raise ConfigError(f"invalid {what} mode: {hc.get(key)}")
    if (hc.get("CgroupnsMode") or "") not in ("", "host", "private"):
        raise ConfigError(f"invalid cgroup namespace mode: {hc['CgroupnsMode']}")
    adj = hc.get("OomScoreAdj") or 0
    if not -1000 <= adj <= 1000:
        raise ConfigError(f"Invalid value {adj}, range for oom score adj is [-1000, 1000]")
    if (hc.get("ShmSize") or 0) < 0:
        raise ConfigError("SHM size can not be less than 0")
    for cap in (hc.get("CapAdd") or []) + (hc.get("CapDrop") or []):
        _check_cap(cap)
    _check_security_opts(hc.get("SecurityOpt") or [])
    _check_mounts(config, hc)
    for ep_name, ep in ((networking_config or {}).get("EndpointsConfig") or {}).items():
        _check_endpoint(hc.get("NetworkMode") or "default", ep_name, ep or {})


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def valid_name(name: str) -> bool:
    """docker's rule for container and volume names: [a-zA-Z0-9][a-zA-Z0-9_.-]+ (ASCII)."""
    return len(name) >= 2 and name[0] not in "_.-" and set(name) <= _NAME_CHARS


def check_name(name: str) -> str:
    """A container's name without docker's optional leading '/', or ConfigError."""
    bare = name[1:] if name.startswith("/") else name
    if not valid_name(bare):
        raise ConfigError(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return bare


def _check_restart(policy: dict, auto_remove: object) -> None:
    name, count = policy.get("Name") or "", policy.get("MaximumRetryCount") or 0
    if auto_remove and name not in ("", "no"):
        raise ConfigError("can't create 'AutoRemove' container with restart policy")
    if name in ("always", "unless-stopped", "no") and count:
        extra = " and cannot be negative" if count < 0 else ""
        raise ConfigError(f"invalid restart policy: maximum retry count can only be used with 'on-failure'{extra}")
    if name == "on-failure" and count < 0:
        raise ConfigError("invalid restart policy: maximum retry count cannot be negative")
    if name not in ("", "no", "always", "unless-stopped", "on-failure"):
        raise ConfigError(f"invalid restart policy: unknown policy '{name}'; "
                          "use one of 'no', 'always', 'on-failure', or 'unless-stopped'")


def _check_resources(hc: dict) -> None:
    memory, swap = hc.get("Memory") or 0, hc.get("MemorySwap") or 0
    reservation = hc.get("MemoryReservation") or 0
    if memory and memory < _LINUX_MIN_MEMORY:
        raise ConfigError("Minimum memory limit allowed is 6MB")
    if memory > 0 and swap > 0 and swap < memory:
        raise ConfigError("Minimum memoryswap limit should be larger than memory limit, see usage")
    if memory == 0 and swap > 0:
        raise ConfigError("You should always set the Memory limit when using Memoryswap limit, see usage")
    swappiness = hc.get("MemorySwappiness")
    if swappiness is not None and swappiness != -1 and not 0 <= swappiness <= 100:
        raise ConfigError(f"Invalid value: {swappiness}, valid memory swappiness range is 0-100")
    if 0 < reservation < _LINUX_MIN_MEMORY:
        raise ConfigError("Minimum memory reservation allowed is 6MB")
    if memory > 0 and reservation > 0 and memory < reservation:
        raise ConfigError("Minimum memory limit can not be less than memory reservation limit, see usage")
    nano, period, quota = hc.get("NanoCpus") or 0, hc.get("CpuPeriod") or 0, hc.get("CpuQuota") or 0
    if nano > 0 and period > 0:
        raise ConfigError("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano > 0 and quota > 0:
        raise ConfigError("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    ncpu = os.cpu_count() or 1
    if nano < 0 or nano > ncpu * 1_000_000_000:
        raise ConfigError(f"range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available")
    if (hc.get("CpuShares") or 0) < 0:
        raise ConfigError(f"invalid CPU shares ({hc['CpuShares']}): value must be a positive integer")
    if period and not 1000 <= period <= 1_000_000:
        raise ConfigError("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
    if 0 < quota < 1000:
        raise ConfigError("CPU cfs quota can not be less than 1ms (i.e. 1000)")


def _check_signal(text: str) -> None:
    """moby's signal.ParseSignal: a number, or a name with or without SIG."""
    from budu.kernel import signals

    if signals.number(text) is None or (text.isdigit() and int(text) >= 65):
        raise ConfigError(f"Invalid signal: {text}")


def _check_cap(cap: str) -> None:
    if cap.upper() == "ALL":
        return
    from budu.kernel.caps import NAMES

    full = cap.upper() if cap.upper().startswith("CAP_") else "CAP_" + cap.upper()
    if full not in NAMES:
        raise ConfigError(f"unknown capability: {go_quote(cap)}")


def _check_security_opts(opts: list[str]) -> None:
    for opt in opts:
        if opt in ("no-new-privileges", "disable"):
            continue
        sep = "=" if "=" in opt else ":"
        key, found, value = opt.partition(sep)
        if not found:
            raise ConfigError(f"invalid --security-opt 1: {go_quote(opt)}")
        if key in ("no-new-privileges", "writable-cgroups"):
            try:
                go_bool(value)
            except ValueError:
                raise ConfigError(f"invalid --security-opt 2: {go_quote(opt)}") from None
        elif key not in ("label", "apparmor", "seccomp"):  # label values matter to SELinux only
            raise ConfigError(f"invalid --security-opt 2: {go_quote(opt)}")


def _mount_path_error(path: str) -> str | None:
    if clean_path(path) == "/":
        return "invalid specification: destination can't be '/'"
    if not path.startswith("/"):
        return f"invalid mount path: '{path}' mount path must be absolute"
    return None


def _check_mounts(config: dict, hc: dict) -> None:
    destinations = set()
    for spec in hc.get("Binds") or []:
        dest = _check_bind(spec)
        if dest in destinations:
            raise ConfigError(f"Duplicate mount point: {dest}")
        destinations.add(dest)
    for spec in config.get("Volumes") or {}:
        why = _mount_path_error(spec)
        if why:
            raise ConfigError(f"invalid volume specification: '{spec}': "
                              f"invalid mount config for type \"volume\": {why}")
    for m in hc.get("Mounts") or []:
        why = _mount_error(m)
        if why:
            raise ConfigError(f"invalid mount config for type {go_quote(m.get('Type') or '')}: {why}")
        dest = clean_path(m["Target"])
        if dest in destinations:
            raise ConfigError(f"Duplicate mount point: {dest}")
        destinations.add(dest)
    for dest in hc.get("Tmpfs") or {}:
        why = _mount_path_error(dest)
        if why:
            raise ConfigError(why)


def _check_bind(spec: str) -> str:
    """One HostConfig.Binds entry, as moby's linux parser (ParseMountRaw) takes it; its destination."""
    parts = spec.split(":", 3)
    mode = ""
    if not parts[0] or len(parts) > 3 or (len(parts) == 2 and _valid_bind_mode(parts[1])):
        raise ConfigError(f"invalid volume specification: '{spec}'")
    source, target = ("", parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    if len(parts) == 3:
        mode = parts[2]
    if not _valid_bind_mode(mode):
        raise ConfigError(f"invalid mode: {mode}")
    kind = "bind" if source.startswith("/") else "volume"
    why = _mount_path_error(target)
    if why:
        raise ConfigError(f"invalid volume specification: '{spec}': invalid mount config for type \"{kind}\": {why}")
    if kind == "volume" and source:
        _check_volume_name(source)
    return clean_path(target)


def _valid_bind_mode(mode: str) -> bool:
    if not mode:
        return True
    groups = {"rw": "rw", "ro": "rw", "ro-non-recursive": "rw", "ro-force-recursive": "rw", "rro": "rw",
              "z": "label", "Z": "label", "nocopy": "copy", "consistent": "consistency", "cached": "consistency",
              "delegated": "consistency", **{p: "propagation" for p in _PROPAGATIONS}}
    seen = [groups.get(o) for o in mode.split(",")]
    return None not in seen and len(seen) == len(set(seen))


def _check_volume_name(name: str) -> None:
    """The local volume driver's names."""
    if len(name) == 1:
        raise ConfigError(f"create {name}: volume name is too short, names should be at least two "
                          "alphanumeric characters")
    if not (name[0].isascii() and name[0].isalnum()) or not all(
            c.isascii() and (c.isalnum() or c in "_.-") for c in name):
        raise ConfigError(f"create {name}: {go_quote(name)} includes invalid characters for a local volume name, only "
                          "\"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, "
                          "use absolute path")


def _mount_error(m: dict) -> str | None:
    """moby's validateMountConfig for one HostConfig.Mounts entry (bind source must exist, as there)."""
    kind, source, target = m.get("Type") or "", m.get("Source") or "", m.get("Target") or ""
    if not target:
        return "field Target must not be empty"
    why = _mount_path_error(target)
    if why:
        return why
    if kind == "bind":
        propagation = (m.get("BindOptions") or {}).get("Propagation")
        if not source:
            return "field Source must not be empty"
        if propagation and propagation not in _PROPAGATIONS:
            return f"invalid propagation mode: {propagation}"
        if m.get("VolumeOptions") is not None:
            return "field VolumeOptions must not be specified"
        if not source.startswith("/"):
            return f"invalid mount path: '{source}' mount path must be absolute"
        if not os.path.lexists(source):
            return f"bind source path does not exist: {source}"
    elif kind == "volume":
        if m.get("BindOptions") is not None:
            return "field BindOptions must not be specified"
        if not source and (m.get("VolumeOptions") or {}).get("Subpath"):
            return "must not set Subpath when using anonymous volumes"
        if not source and m.get("ReadOnly"):
            return "must not set ReadOnly mode when using anonymous volumes"
    elif kind == "tmpfs":
        if m.get("BindOptions") is not None:
            return "field BindOptions must not be specified"
        if source:
            return "field Source must not be specified"
    else:
        return "mount type unknown"
    return None


def _check_endpoint(mode: str, net: str, ep: dict) -> None:
    ipam = ep.get("IPAMConfig") or {}
    if (ipam.get("IPv4Address") or ipam.get("IPv6Address")) and not user_defined_network(net):
        raise ConfigError("user specified IP address is supported on user defined networks only")
    for key, version in (("IPv4Address", 4), ("IPv6Address", 6)):
        text = ipam.get(key)
        addr = parse_ip(text) if text else None
        if text and (addr is None or addr.version != version or addr.is_unspecified):
            raise ConfigError(f"invalid IPv{version} address: {text}")
