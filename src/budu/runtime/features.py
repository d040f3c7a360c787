"""`features` (what this runtime supports, per the runtime-spec features document) and `spec`
(a default config.json, the starting point people edit by hand)."""

from __future__ import annotations

import os

from budu.errors import ConfigError
from budu.kernel import caps
from budu.runtime import spec

MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/sys/devices/virtual/powercap",
    "/proc/scsi",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def document() -> dict:
    from budu.runtime import rootfs, seccomp

    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": list(spec.HOOK_KINDS),
        "mountOptions": sorted(set(rootfs._FLAGS) | set(rootfs._PROPAGATION) | {"tmpcopyup"}),
        "linux": {
            "namespaces": list(spec.NAMESPACES),
            "capabilities": list(caps.NAMES),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False, "rdma": False},
            "seccomp": seccomp.features(),
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
        },
        "annotations": {"org.opencontainers.runtime-spec.features.runtime": "budu-runtime"},
    }


def default_spec(rootless: bool = False) -> dict:
    default_caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    config: dict = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(default_caps) for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "budu",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
    if rootless:
        config["linux"]["namespaces"].append({"type": "user"})
        config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": os.getuid(), "size": 1}]
        config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": os.getgid(), "size": 1}]
        del config["linux"]["resources"]
    return config


def write_default_spec(bundle: str, rootless: bool) -> None:
    from budu.kernel import fastjson

    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise ConfigError(f"{path} already exists; remove it first")
    with open(path, "w") as f:
        f.write(fastjson.dumps(default_spec(rootless), indent=2) + "\n")
