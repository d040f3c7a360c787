"""Reading and validating an OCI bundle's config.json before anything is created.

Everything that can be checked without the kernel is checked here, so that a bad bundle fails
with one line naming the field and leaves nothing behind.  The config stays a plain dict (the
runtime-spec's own shape) — the init process reads it as the spec describes it.
"""

from __future__ import annotations

import os

from budu.errors import ConfigError
from budu.kernel import fastjson

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}
NAMESPACES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
PROPAGATIONS = ("", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable")


def load(bundle: str) -> dict:
    """Read <bundle>/config.json, validate it, and resolve root.path against the bundle."""
    if not os.path.isdir(bundle):
        raise ConfigError(f"bundle {bundle!r}: not a directory")
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ConfigError(f"bundle {bundle!r}: no config.json") from None
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None
    try:
        config = fastjson.loads(data)
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None
    validate(config)
    root = config["root"]["path"]
    if not os.path.isabs(root):
        root = os.path.join(os.path.abspath(bundle), root)
    if not os.path.isdir(root):
        raise ConfigError(f"root.path: {root!r} is not a directory")
    config["root"]["path"] = os.path.normpath(root)
    return config


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {what}")


def _str_list(value: object, where: str) -> None:
    _need(isinstance(value, list), where, "must be a list of strings")
    for i, item in enumerate(value):  # type: ignore[arg-type]
        _need(isinstance(item, str), f"{where}[{i}]", "must be a string")


def _int(value: object, where: str, minimum: int | None = None) -> None:
    _need(isinstance(value, int) and not isinstance(value, bool), where, "must be an integer")
    if minimum is not None:
        _need(value >= minimum, where, f"must be at least {minimum}")  # type: ignore[operator]


def _obj(value: object, where: str) -> dict:
    _need(isinstance(value, dict), where, "must be an object")
    return value  # type: ignore[return-value]


def validate(config: object) -> None:
    c = _obj(config, "config.json")
    _need(isinstance(c.get("ociVersion"), str), "ociVersion", "missing or not a string")
    root = _obj(c.get("root"), "root")
    _need(isinstance(root.get("path"), str) and root["path"] != "", "root.path", "missing or empty")
    if "readonly" in root:
        _need(isinstance(root["readonly"], bool), "root.readonly", "must be true or false")
    for key in ("hostname", "domainname"):
        if key in c:
            _need(isinstance(c[key], str), key, "must be a string")
    for i, m in enumerate(c.get("mounts") or []):
        w = f"mounts[{i}]"
        _obj(m, w)
        _need(isinstance(m.get("destination"), str) and m["destination"].startswith("/"),
              f"{w}.destination", "must be an absolute path")
        for key in ("type", "source"):
            if key in m:
                _need(isinstance(m[key], str), f"{w}.{key}", "must be a string")
        if "options" in m:
            _str_list(m["options"], f"{w}.options")
    if "process" in c:
        _validate_process(_obj(c["process"], "process"), "process")
    for kind, hooks in (_obj(c.get("hooks") or {}, "hooks")).items():
        _need(kind in HOOK_KINDS, f"hooks.{kind}", "unknown hook kind")
        _need(isinstance(hooks, list), f"hooks.{kind}", "must be a list")
        for i, h in enumerate(hooks):
            validate_hook(h, f"hooks.{kind}[{i}]")
    if "linux" in c:
        _validate_linux(_obj(c["linux"], "linux"), c)
    if "annotations" in c:
        for k, v in _obj(c["annotations"], "annotations").items():
            _need(isinstance(v, str), f"annotations.{k}", "must be a string")


def validate_hook(h: object, w: str) -> None:
    _obj(h, w)
    _need(isinstance(h.get("path"), str) and os.path.isabs(h["path"]), f"{w}.path", "must be an absolute path")  # type: ignore[union-attr]
    for key in ("args", "env"):
        if key in h:  # type: ignore[operator]
            _str_list(h[key], f"{w}.{key}")  # type: ignore[index]
    if "timeout" in h:  # type: ignore[operator]
        _int(h["timeout"], f"{w}.timeout", 1)  # type: ignore[index]


def _validate_process(p: dict, w: str) -> None:
    args = p.get("args")
    _need(isinstance(args, list) and len(args) > 0, f"{w}.args", "must be a non-empty list")
    _str_list(args, f"{w}.args")
    cwd = p.get("cwd", "/")
    _need(isinstance(cwd, str) and cwd.startswith("/"), f"{w}.cwd", "must be an absolute path")
    if "env" in p:
        _str_list(p["env"], f"{w}.env")
    if "terminal" in p:
        _need(isinstance(p["terminal"], bool), f"{w}.terminal", "must be true or false")
    if "consoleSize" in p:
        cs = _obj(p["consoleSize"], f"{w}.consoleSize")
        _int(cs.get("height"), f"{w}.consoleSize.height", 0)
        _int(cs.get("width"), f"{w}.consoleSize.width", 0)
    user = _obj(p.get("user", {}), f"{w}.user")
    _int(user.get("uid", 0), f"{w}.user.uid", 0)
    _int(user.get("gid", 0), f"{w}.user.gid", 0)
    if "umask" in user:
        _int(user["umask"], f"{w}.user.umask", 0)
    for i, g in enumerate(user.get("additionalGids") or []):
        _int(g, f"{w}.user.additionalGids[{i}]", 0)
    from budu.kernel import caps

    caps.validate(p.get("capabilities"), f"{w}.capabilities")
    seen = set()
    for i, r in enumerate(p.get("rlimits") or []):
        rw = f"{w}.rlimits[{i}]"
        _obj(r, rw)
        _need(r.get("type") in RLIMITS, f"{rw}.type", f"unknown rlimit {r.get('type')!r}")
        _need(r["type"] not in seen, f"{rw}.type", f"duplicate rlimit {r['type']}")
        seen.add(r["type"])
        _int(r.get("soft"), f"{rw}.soft", 0)
        _int(r.get("hard"), f"{rw}.hard", 0)
        _need(r["soft"] <= r["hard"], rw, "soft limit is above the hard limit")
    if "noNewPrivileges" in p:
        _need(isinstance(p["noNewPrivileges"], bool), f"{w}.noNewPrivileges", "must be true or false")
    if "oomScoreAdj" in p:
        _int(p["oomScoreAdj"], f"{w}.oomScoreAdj")
        _need(-1000 <= p["oomScoreAdj"] <= 1000, f"{w}.oomScoreAdj", "must be between -1000 and 1000")


def _validate_linux(lx: dict, c: dict) -> None:
    kinds = set()
    for i, ns in enumerate(lx.get("namespaces") or []):
        w = f"linux.namespaces[{i}]"
        _obj(ns, w)
        _need(ns.get("type") in NAMESPACES, f"{w}.type", f"unknown namespace type {ns.get('type')!r}")
        _need(ns["type"] not in kinds, f"{w}.type", f"namespace {ns['type']} listed twice")
        kinds.add(ns["type"])
        if "path" in ns:
            _need(isinstance(ns["path"], str) and os.path.isabs(ns["path"]), f"{w}.path", "must be an absolute path")
            _need(os.path.exists(ns["path"]), f"{w}.path", f"{ns['path']} does not exist")
    for key in ("uidMappings", "gidMappings"):
        for i, m in enumerate(lx.get(key) or []):
            w = f"linux.{key}[{i}]"
            _obj(m, w)
            for f in ("containerID", "hostID", "size"):
                _int(m.get(f), f"{w}.{f}", 0)
    if (lx.get("uidMappings") or lx.get("gidMappings")) and "user" not in kinds:
        raise ConfigError("linux.uidMappings: mappings need a user namespace in linux.namespaces")
    if "user" in kinds and not any(ns.get("path") for ns in lx["namespaces"] if ns["type"] == "user"):
        _need(bool(lx.get("uidMappings")) and bool(lx.get("gidMappings")), "linux.uidMappings",
              "a new user namespace needs uidMappings and gidMappings")
    if "hostname" in c and c["hostname"]:
        _need("uts" in kinds, "hostname", "setting a hostname needs a uts namespace")
    for i, d in enumerate(lx.get("devices") or []):
        w = f"linux.devices[{i}]"
        _obj(d, w)
        _need(isinstance(d.get("path"), str) and d["path"].startswith("/dev/") or d.get("path", "").startswith("/"),
              f"{w}.path", "must be an absolute path")
        _need(d.get("type") in ("c", "b", "u", "p"), f"{w}.type", f"unknown device type {d.get('type')!r}")
        if d["type"] != "p":
            _int(d.get("major"), f"{w}.major", 0)
            _int(d.get("minor"), f"{w}.minor", 0)
        for f in ("fileMode", "uid", "gid"):
            if f in d:
                _int(d[f], f"{w}.{f}", 0)
    for key in ("maskedPaths", "readonlyPaths"):
        if key in lx:
            _str_list(lx[key], f"linux.{key}")
    for k, v in _obj(lx.get("sysctl") or {}, "linux.sysctl").items():
        _need(isinstance(v, str), f"linux.sysctl.{k}", "must be a string")
    _need(lx.get("rootfsPropagation", "") in PROPAGATIONS, "linux.rootfsPropagation",
          f"unknown propagation {lx.get('rootfsPropagation')!r}")
    if "cgroupsPath" in lx:
        _need(isinstance(lx["cgroupsPath"], str), "linux.cgroupsPath", "must be a string")
    if "resources" in lx:
        _validate_resources(_obj(lx["resources"], "linux.resources"))
    # linux.seccomp is checked by seccomp_filter.prepare, when it is compiled (or found compiled)


def _validate_resources(r: dict) -> None:
    for group, fields in (
        ("memory", ("limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness")),
        ("cpu", ("shares", "quota", "period", "realtimeRuntime", "realtimePeriod")),
        ("pids", ("limit",)),
        ("blockIO", ("weight", "leafWeight")),
    ):
        g = r.get(group)
        if g is None:
            continue
        _obj(g, f"linux.resources.{group}")
        for f in fields:
            if g.get(f) is not None:
                _int(g[f], f"linux.resources.{group}.{f}")
    cpu = r.get("cpu") or {}
    for f in ("cpus", "mems"):
        if cpu.get(f) is not None:
            _need(isinstance(cpu[f], str), f"linux.resources.cpu.{f}", "must be a string")
    for i, d in enumerate(r.get("devices") or []):
        w = f"linux.resources.devices[{i}]"
        _obj(d, w)
        _need(isinstance(d.get("allow"), bool), f"{w}.allow", "must be true or false")
        _need(d.get("type", "a") in ("a", "b", "c"), f"{w}.type", f"unknown device type {d.get('type')!r}")
