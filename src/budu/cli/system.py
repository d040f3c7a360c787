"""`budu info`, `version`, `system prune` and `system restore`."""

from __future__ import annotations

import os
import platform
import sys

from budu.cli import format as fmt
from budu.cli.containers import confirm
from budu.cli.images import _Parser

API_VERSION = "1.47"


def _engine():
    from budu.engine.engine import Engine

    return Engine()


def _cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


def info_dict(engine) -> dict:  # noqa: ANN001
    """docker's /info shape (the fields people read)."""
    from budu import __version__

    pairs = engine.list()
    counts = {"running": 0, "paused": 0, "stopped": 0}
    for _, st in pairs:
        key = st.status if st.status in ("running", "paused") else "stopped"
        counts[key] += 1
    images = engine.images.list()
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    u = os.uname()
    return {
        "ID": _machine_id(), "Containers": len(pairs), "ContainersRunning": counts["running"],
        "ContainersPaused": counts["paused"], "ContainersStopped": counts["stopped"], "Images": len(images),
        "Driver": "overlay2", "DriverStatus": [["Backing Filesystem", _fs_type(engine.root)]],
        "Plugins": {"Volume": ["local"], "Network": ["host", "none"], "Log": ["json-file", "none"]},
        "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True,
        "CPUSet": True, "PidsLimit": True, "OomKillDisable": _cgroup_version() == "1", "IPv4Forwarding": True,
        "Debug": False, "NFd": len(os.listdir("/proc/self/fd")), "NGoroutines": 0, "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs", "CgroupVersion": _cgroup_version(), "KernelVersion": u.release,
        "OperatingSystem": _os_name(), "OSVersion": "", "OSType": "linux", "Architecture": u.machine,
        "NCPU": os.cpu_count(), "MemTotal": mem, "IndexServerAddress": "https://index.docker.io/v1/",
        "DockerRootDir": engine.root, "Name": u.nodename, "Labels": [], "ExperimentalBuild": False,
        "ServerVersion": __version__, "Runtimes": {"budu-runtime": {"path": "budu-runtime"}, "runc": {"path": "runc"},
                                                   "crun": {"path": "crun"}},
        "DefaultRuntime": "budu-runtime", "LiveRestoreEnabled": True, "Isolation": "",
        "InitBinary": "docker-init", "SecurityOptions": ["name=seccomp,profile=builtin"] +
        (["name=cgroupns"] if _cgroup_version() == "2" else []),
        "Warnings": [],
    }


def _machine_id() -> str:
    try:
        with open("/etc/machine-id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def _fs_type(path: str) -> str:
    best, kind = "", "unknown"
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split(" - ")
                left, right = parts[0].split(), parts[1].split()
                mp = left[4]
                if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
                    best, kind = mp, right[0]
    except (OSError, IndexError):
        pass
    return kind


def cmd_info(argv: list[str]) -> int:
    p = _Parser(prog="budu info", description="Display system-wide information")
    p.add_argument("-f", "--format", help="Format output using a custom template")
    a = p.parse_args(argv)
    engine = _engine()
    try:
        info = info_dict(engine)
    finally:
        engine.close()
    if a.format:
        sys.stdout.write(fmt.render(a.format, info) + "\n")
        return 0
    from budu import __version__

    lines = [
        "Client:", f" Version:    {__version__}", " Context:    default", " Debug Mode: false", "",
        "Server:", f" Containers: {info['Containers']}", f"  Running: {info['ContainersRunning']}",
        f"  Paused: {info['ContainersPaused']}", f"  Stopped: {info['ContainersStopped']}",
        f" Images: {info['Images']}", f" Server Version: {info['ServerVersion']}",
        f" Storage Driver: {info['Driver']}", f"  Backing Filesystem: {info['DriverStatus'][0][1]}",
        f" Logging Driver: {info['LoggingDriver']}", f" Cgroup Driver: {info['CgroupDriver']}",
        f" Cgroup Version: {info['CgroupVersion']}", " Plugins:", "  Volume: local", "  Network: host none",
        "  Log: json-file none", f" Runtimes: {' '.join(info['Runtimes'])}",
        f" Default Runtime: {info['DefaultRuntime']}", f" Init Binary: {info['InitBinary']}",
        " Security Options:", "  seccomp", "   Profile: builtin",
        f" Kernel Version: {info['KernelVersion']}", f" Operating System: {info['OperatingSystem']}",
        f" OSType: {info['OSType']}", f" Architecture: {info['Architecture']}", f" CPUs: {info['NCPU']}",
        f" Total Memory: {fmt.human_size(info['MemTotal'])}", f" Name: {info['Name']}", f" ID: {info['ID']}",
        f" Docker Root Dir: {info['DockerRootDir']}", " Debug Mode: false", " Experimental: false",
        " Live Restore Enabled: true", "",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def version_dict() -> dict:
    from budu import __version__

    u = os.uname()
    server = {"Platform": {"Name": "budu"}, "Version": __version__, "ApiVersion": API_VERSION,
              "MinAPIVersion": "1.24", "GitCommit": "", "GoVersion": "python" + platform.python_version(),
              "Os": "linux", "Arch": _arch(u.machine), "KernelVersion": u.release,
              "Components": [{"Name": "Engine", "Version": __version__, "Details": {}}]}
    return {"Client": {"Version": __version__, "ApiVersion": API_VERSION, "Os": "linux", "Arch": _arch(u.machine),
                       "GoVersion": "python" + platform.python_version(), "GitCommit": "", "Context": "default"},
            "Server": server}


def _arch(machine: str) -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def cmd_version(argv: list[str]) -> int:
    p = _Parser(prog="budu version", description="Show the budu version information")
    p.add_argument("-f", "--format", help="Format output using a custom template")
    a = p.parse_args(argv)
    v = version_dict()
    if a.format:
        sys.stdout.write(fmt.render(a.format, v) + "\n")
        return 0
    c, s = v["Client"], v["Server"]
    sys.stdout.write(
        f"Client:\n Version:           {c['Version']}\n API version:       {c['ApiVersion']}\n"
        f" Python version:    {platform.python_version()}\n OS/Arch:           {c['Os']}/{c['Arch']}\n"
        f" Context:           default\n\nServer: budu\n Engine:\n  Version:          {s['Version']}\n"
        f"  API version:      {s['ApiVersion']} (minimum version {s['MinAPIVersion']})\n"
        f"  OS/Arch:          {s['Os']}/{s['Arch']}\n  Kernel:           {s['KernelVersion']}\n")
    return 0


def cmd_prune(argv: list[str]) -> int:
    p = _Parser(prog="budu system prune", description="Remove unused data")
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused images not just dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--volumes", action="store_true", help="Prune anonymous volumes")
    p.add_argument("--filter", action="append", default=[], help="Provide filter values (e.g. \"label=<key>=<value>\")")
    a = p.parse_args(argv)
    what = ["all stopped containers"] + (["anonymous volumes not used by at least one container"] if a.volumes else []) + \
        ["all images without at least one container associated to them" if a.all else "all dangling images"]
    warning = "WARNING! This will remove:\n" + "".join(f"  - {w}\n" for w in what)
    if not a.force and not confirm(warning.rstrip("\n")):
        return 0
    from budu.cli.containers import parse_filters, prune_containers

    removed, space = prune_containers(parse_filters(a.filter))
    if removed:
        print("Deleted Containers:\n" + "".join(c + "\n" for c in removed))
    if a.volumes:
        from budu.cli.volumes import prune_volumes

        vols, vspace = prune_volumes(False)
        space += vspace
        if vols:
            print("Deleted Volumes:\n" + "".join(v + "\n" for v in vols))
    engine = _engine()
    try:
        in_use = {c.image_id for c in engine.store.list()}
        deleted, ispace = engine.images.prune(all_images=a.all, in_use=in_use)
        space += ispace
    finally:
        engine.close()
    if deleted:
        print("Deleted Images:\n" + "".join(f"{kind}: {ref}\n" for kind, ref in deleted))
    print(f"Total reclaimed space: {fmt.human_size(space)}")
    return 0


def cmd_restore(argv: list[str]) -> int:
    """What the boot unit runs: bring back `always` and `unless-stopped` containers."""
    engine = _engine()
    try:
        for c in engine.restore():
            print(c.name)
    finally:
        engine.close()
    return 0
