"""docker's create body (Config + HostConfig) → an OCI runtime config.json, with docker's rules
(moby daemon/oci_linux.go, oci/defaults.go, oci/caps, profiles/seccomp).

`build_spec` is the whole recipe, top to bottom: everything that only reads and checks first
(capabilities, namespaces, devices, resources, sysctls, seccomp), then the process, then the
mounts, whose volumes may need mounting on the host.  It runs at every start (the engine writes the result as
the bundle's config.json); the only thing it changes on disk is a missing working directory,
which docker creates too.
"""

from __future__ import annotations

import os
import stat

from budu.engine import resources, seccomp_profile, users
from budu.engine.mounts import clean
from budu.engine.volumes import Volumes
from budu.errors import ConfigError
from budu.kernel import caps as capnames
from budu.kernel.files import unescape_mountinfo
from budu.runtime.features import MASKED_PATHS, READONLY_PATHS
from budu.runtime.rootfs import secure_join

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE")
INIT_BINARY = "/usr/bin/tini-static"  # docker's --init is tini
INIT_PATH = "/sbin/docker-init"
DEFAULT_SHM_SIZE = 64 << 20
# mounts that --read-only leaves writable (docker's list)
_RO_EXEMPT = ("/proc", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev")
_TMPFS_DATA = ("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol")
# mount flags that cancel each other out: the later one wins (docker's MergeTmpfsOptions)
_FLAG_GROUPS = [("ro", "rw"), ("suid", "nosuid"), ("dev", "nodev"), ("exec", "noexec"), ("sync", "async"),
                ("dirsync",), ("remount",), ("mand", "nomand"), ("atime", "noatime"), ("diratime", "nodiratime"),
                ("bind",), ("rbind",), ("relatime", "norelatime"), ("strictatime", "nostrictatime"),
                ("private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable")]
_FLAG_KEY = {flag: group[0] for group in _FLAG_GROUPS for flag in group}


def build_spec(*, container_id: str, rootfs: str, image_config: dict, config: dict, host_config: dict,
               mounts: list[dict], files: dict[str, str], netns: str | None, cgroups_path: str,
               volumes: Volumes) -> dict:
    hc = host_config
    privileged = bool(hc.get("Privileged"))
    security = _security_opts(hc.get("SecurityOpt") or [])
    cap_list = capabilities(hc)
    hostname = _hostname(container_id, config, hc, netns)
    namespaces = _namespaces(hc, netns)
    lx: dict = {"namespaces": namespaces, "cgroupsPath": cgroups_path}
    devices, rules = resources.devices(hc, privileged)
    if devices:
        lx["devices"] = devices
    lx["resources"] = resources.resources(hc, rules)
    sysctls = resources.sysctls(hc, netns)
    if sysctls:
        lx["sysctl"] = sysctls
    if not privileged and security.get("systempaths") != "unconfined":
        lx["maskedPaths"] = list(hc["MaskedPaths"] if hc.get("MaskedPaths") is not None else MASKED_PATHS)
        lx["readonlyPaths"] = list(hc["ReadonlyPaths"] if hc.get("ReadonlyPaths") is not None else READONLY_PATHS)
    propagation = _rootfs_propagation(mounts)
    if propagation:
        lx["rootfsPropagation"] = propagation
    seccomp = _seccomp(security.get("seccomp", ""), cap_list, privileged)
    if seccomp is not None:
        lx["seccomp"] = seccomp
    spec: dict = {
        "ociVersion": "1.0.2",
        # the process reads the image's /etc/passwd and may create the working directory
        "process": _process(rootfs, image_config, config, hc, hostname, cap_list, security),
        "root": {"path": "rootfs", "readonly": bool(hc.get("ReadonlyRootfs"))},
    }
    if any(ns["type"] == "uts" for ns in namespaces):
        spec["hostname"] = hostname
        if config.get("Domainname"):
            spec["domainname"] = config["Domainname"]
    # last: a volume with mount options gets mounted on the host here
    spec["mounts"] = _mounts(hc, mounts, files, volumes, privileged)
    spec["linux"] = lx  # a new network namespace gets lo up from the runtime (budu-runtime, runc, crun)
    return spec


# -- process --------------------------------------------------------------------------------------


def command(image_config: dict, config: dict) -> list[str]:
    """Entrypoint + Cmd with docker's merge: a given Entrypoint drops the image's Cmd, an empty
    one (`--entrypoint ""`) drops the image's Entrypoint but keeps its Cmd."""
    entrypoint = config.get("Entrypoint")
    if entrypoint == [""]:
        entrypoint = []
    cmd = config.get("Cmd") or []
    if not entrypoint:
        if not cmd:
            cmd = image_config.get("Cmd") or []
        if entrypoint is None:
            entrypoint = image_config.get("Entrypoint") or []
    args = list(entrypoint or []) + list(cmd)
    if not args:
        raise ConfigError("no command specified")
    return args


def environment(image_config: dict, config: dict, hostname: str, tty: bool) -> list[str]:
    """PATH, HOSTNAME, TERM first (any of them overridable), then the container's env, then the
    image's env for keys the container does not set; `KEY` without `=` unsets KEY."""
    user_env = list(config.get("Env") or [])
    keys = {e.partition("=")[0] for e in user_env}
    merged = user_env + [e for e in image_config.get("Env") or [] if e.partition("=")[0] not in keys]
    env = {"PATH": f"PATH={DEFAULT_PATH}", "HOSTNAME": f"HOSTNAME={hostname}"}
    if tty:
        env["TERM"] = "TERM=xterm"
    for e in merged:
        key, eq, _ = e.partition("=")
        if eq:
            env[key] = e  # an existing key keeps its place
        else:
            env.pop(key, None)
    return list(env.values())


def _process(rootfs: str, image_config: dict, config: dict, hc: dict, hostname: str, cap_list: list[str],
             security: dict) -> dict:
    args = command(image_config, config)
    if hc.get("Init"):
        args = [INIT_PATH, "--", *args]
    tty = bool(config.get("Tty"))
    cwd = config.get("WorkingDir") or image_config.get("WorkingDir") or "/"
    if not cwd.startswith("/"):
        raise ConfigError(f"the working directory '{cwd}' is invalid, it needs to be an absolute path")
    cwd = clean(cwd)
    make_workdir(rootfs, cwd)
    user = users.resolve(rootfs, config.get("User") or image_config.get("User") or "", hc.get("GroupAdd"))
    process: dict = {
        "terminal": tty,
        "user": {"uid": user.uid, "gid": user.gid, "additionalGids": list(user.additional_gids)},
        "args": args,
        "env": environment(image_config, config, hostname, tty),
        "cwd": cwd,
        "capabilities": {"bounding": list(cap_list), "effective": list(cap_list), "permitted": list(cap_list)},
        "rlimits": resources.rlimits(hc.get("Ulimits") or []),
        "noNewPrivileges": security.get("no-new-privileges", False),
    }
    size = hc.get("ConsoleSize") or [0, 0]
    if tty and size and size[0] and size[1]:
        process["consoleSize"] = {"height": int(size[0]), "width": int(size[1])}
    if hc.get("OomScoreAdj"):
        process["oomScoreAdj"] = int(hc["OomScoreAdj"])
    return process


def make_workdir(rootfs: str, cwd: str) -> None:
    """mkdir -p the working directory inside the rootfs, never following a symlink out of it."""
    try:
        target = secure_join(rootfs, cwd)
    except NotADirectoryError:
        raise ConfigError(f"Cannot mkdir: {cwd} is not a directory") from None
    rel = os.path.relpath(target, rootfs)
    cur = rootfs
    for part in [] if rel == "." else rel.split("/"):
        cur = os.path.join(cur, part)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            os.mkdir(cur, 0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"Cannot mkdir: {cwd} is not a directory")


def _hostname(container_id: str, config: dict, hc: dict, netns: str | None) -> str:
    if config.get("Hostname"):
        if hc.get("UTSMode") == "host":
            raise ConfigError("Conflicting options: hostname and the UTS mode")
        return config["Hostname"]
    if netns == "host" or hc.get("UTSMode") == "host":
        return os.uname().nodename
    return container_id[:12]


def _security_opts(opts: list[str]) -> dict:
    """`no-new-privileges[:true|=true]`, `seccomp=unconfined|builtin|<profile JSON>`,
    `systempaths=unconfined`; apparmor and label options are accepted and ignored (budu applies
    neither)."""
    out: dict = {}
    for opt in opts:
        if opt == "no-new-privileges":
            out["no-new-privileges"] = True
            continue
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")
        if not sep:
            raise ConfigError(f'invalid --security-opt 1: "{opt}"')
        if key == "no-new-privileges":
            if value not in ("true", "false"):
                raise ConfigError(f"invalid --security-opt 2: {opt!r}")
            out[key] = value == "true"
        elif key in ("seccomp", "systempaths"):
            if key == "systempaths" and value != "unconfined":
                raise ConfigError(f'invalid --security-opt 2: "{opt}"')
            out[key] = value
        elif key not in ("apparmor", "label"):
            raise ConfigError(f'invalid --security-opt 2: "{opt}"')
    return out


# -- capabilities -------------------------------------------------------------------------------


def own_bounding_set() -> list[str]:
    """The capabilities budu itself may hand out: its own bounding set."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                mask = int(line.split()[1], 16)
                return [name for i, name in enumerate(capnames.NAMES) if mask & (1 << i)]
    return list(capnames.NAMES)


def _normalize_caps(names: list[str]) -> list[str]:
    out = []
    for c in names:
        c = c.upper()
        if c != "ALL" and not c.startswith("CAP_"):
            c = "CAP_" + c
        if c != "ALL" and c not in capnames.NUMBERS:
            raise ConfigError(f'unknown capability: "{c}"')
        out.append(c)
    return out


def capabilities(hc: dict) -> list[str]:
    """docker's TweakCapabilities: privileged → all; CapAdd ALL → all but CapDrop; CapDrop ALL →
    CapAdd alone; else the 14 defaults minus CapDrop plus CapAdd."""
    available = own_bounding_set()
    if hc.get("Privileged"):
        return available
    adds = _normalize_caps(hc.get("CapAdd") or [])
    drops = _normalize_caps(hc.get("CapDrop") or [])
    if "ALL" in adds:
        result = [c for c in available if c not in drops]
    elif "ALL" in drops:
        result = list(adds)
    else:
        result = [c for c in DEFAULT_CAPS if c not in drops] + adds
    out: list[str] = []
    for c in result:
        if c not in out:
            out.append(c)
    for c in out:
        if c not in available:
            raise ConfigError(f"capability {c} is not in budu's own bounding set, so no container can have it")
    return out


# -- mounts -------------------------------------------------------------------------------------


def merge_options(options: list[str]) -> list[str]:
    """Later options override earlier ones of the same flag or key, order kept (docker's
    MergeTmpfsOptions); only tmpfs's own data keys are accepted."""
    out: list[str] = []
    seen: set[str] = set()
    for opt in reversed(options):
        if opt in ("", "defaults"):
            continue
        if opt in _FLAG_KEY:
            key = _FLAG_KEY[opt]
        else:
            name, eq, _ = opt.partition("=")
            if not eq or name not in _TMPFS_DATA:
                raise ConfigError(f'Invalid tmpfs option ["{opt}"]')
            key = "=" + name
        if key not in seen:
            seen.add(key)
            out.insert(0, opt)
    return out


def _tmpfs(dest: str, data: str) -> dict:
    opts = merge_options(["noexec", "nosuid", "nodev", "rprivate", *data.split(",")])
    return {"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": opts}


def default_mounts(hc: dict, privileged: bool) -> list[dict]:
    shm = hc.get("ShmSize") or DEFAULT_SHM_SIZE
    ro = [] if privileged else ["ro"]
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", *ro]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": [*ro, "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={int(shm)}"]},
    ]


def _user_mount(m: dict, volumes: Volumes) -> dict:
    kind = m["Type"]
    dest = m["Destination"]
    if kind == "tmpfs":
        return _tmpfs(dest, m.get("_tmpfs", ""))
    if kind == "volume":
        source = volumes.mount_source(volumes.get(m["Name"]))
    else:
        source = m["Source"]
        if not os.path.lexists(source):
            if not m.get("_mkdir"):
                raise ConfigError(f'invalid mount config for type "bind": bind source path does not exist: {source}')
            os.makedirs(source, 0o755, exist_ok=True)
    opts = ["bind" if m.get("_nonrecursive") else "rbind"]
    if not m.get("RW", True):
        opts.append("ro")
    if m.get("Propagation"):
        opts.append(m["Propagation"])
    return {"destination": dest, "type": "bind", "source": source, "options": opts}


def _mounts(hc: dict, mounts: list[dict], files: dict[str, str], volumes: Volumes, privileged: bool) -> list[dict]:
    """docker's order: the defaults (less what a user mount replaces), the init binary, then the
    user's mounts sorted by depth so a parent is mounted before its children."""
    user = [_user_mount(m, volumes) for m in mounts]
    user += [_tmpfs(clean(d), data or "") for d, data in (hc.get("Tmpfs") or {}).items()]
    mine = {clean(m["destination"]) for m in user}  # the user's own /etc/hosts wins over the engine's
    user += [{"destination": d, "type": "bind", "source": s, "options": ["rbind", "rprivate"]}
             for d, s in files.items() if clean(d) not in mine]
    ipc = hc.get("IpcMode") or "private"
    if ipc == "host":
        user.append({"destination": "/dev/shm", "type": "bind", "source": "/dev/shm", "options": ["rbind", "rprivate"]})
    user.sort(key=lambda m: clean(m["destination"]).count("/"))
    taken = {clean(m["destination"]) for m in user}
    dev_taken = "/dev" in taken
    out = []
    for m in default_mounts(hc, privileged):
        d = m["destination"]
        if d in taken or (dev_taken and d.startswith("/dev/")) or (d == "/dev/shm" and ipc == "none"):
            continue
        if hc.get("ReadonlyRootfs") and d not in _RO_EXEMPT and "ro" not in m["options"] and not privileged:
            m["options"].append("ro")
        out.append(m)
    if hc.get("Init"):
        if not os.path.exists(INIT_BINARY):
            raise ConfigError(f"--init: {INIT_BINARY} is missing (install tini)")
        if INIT_PATH not in taken:
            out.append({"destination": INIT_PATH, "type": "bind", "source": INIT_BINARY, "options": ["bind", "ro"]})
    return out + user


def _mount_of(path: str) -> list[str] | None:
    """The mountinfo fields of the mount that holds `path`."""
    real = os.path.realpath(path)
    best = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mp = unescape_mountinfo(fields[4])
            if (real == mp or real.startswith(mp.rstrip("/") + "/")) and (best is None or len(mp) >= len(best[4])):
                best = fields
    return best


def _rootfs_propagation(mounts: list[dict]) -> str:
    """A shared or slave bind needs the container's root to propagate too, and its source to sit
    on a shared (or, for slave, shared or slave) mount of the host — as docker checks."""
    want = ""
    for m in mounts:
        p = m.get("Propagation") or ""
        if m.get("Type") != "bind" or p not in ("shared", "rshared", "slave", "rslave"):
            continue
        info = _mount_of(m["Source"]) or []
        optional = info[6:info.index("-")] if "-" in info else []
        shared = any(o.startswith("shared:") for o in optional)
        slave = any(o.startswith("master:") for o in optional)
        where = f"path {m['Source']} is mounted on {info[4] if info else '/'} but it is not a"
        if p in ("shared", "rshared"):
            if not shared:
                raise ConfigError(f"{where} shared mount")
            want = "rshared"
        else:
            if not (shared or slave):
                raise ConfigError(f"{where} shared or slave mount")
            want = want or "rslave"
    return want


# -- namespaces, devices, resources, sysctls --------------------------------------------------


def _namespaces(hc: dict, netns: str | None) -> list[dict]:
    """docker's: mount, network, uts, pid, ipc, and cgroup when private (the default on a
    cgroup v2 host, host on v1)."""
    def mode(key: str) -> str:
        value = hc.get(key) or ""
        if value.startswith("container:"):
            raise ConfigError(f"{key} {value}: sharing another container's namespace is not supported yet")
        return value

    ns: list[dict] = [{"type": "mount"}]
    if netns is None:
        ns.append({"type": "network"})
    elif netns != "host":
        ns.append({"type": "network", "path": netns})
    if mode("UTSMode") != "host":
        ns.append({"type": "uts"})
    if mode("PidMode") != "host":
        ns.append({"type": "pid"})
    if mode("IpcMode") != "host":
        ns.append({"type": "ipc"})
    cgroupns = hc.get("CgroupnsMode") or ("private" if resources.cgroup_v2() else "host")
    if cgroupns not in ("private", "host"):
        raise ConfigError(f"invalid cgroup namespace mode: {cgroupns}")
    if cgroupns == "private":
        ns.append({"type": "cgroup"})
    return ns


# -- seccomp, hooks ----------------------------------------------------------------------------


def _seccomp(option: str, cap_list: list[str], privileged: bool) -> dict | None:
    if option == "unconfined" or privileged:
        return None
    if option in ("", "builtin"):
        profile = seccomp_profile.load_default()
    else:
        profile = seccomp_profile.parse(option)
    return seccomp_profile.to_oci(profile, cap_list)
