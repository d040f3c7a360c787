"""docker's JSON shapes for a container: `inspect`, and the summary `ps` and the API list use."""

from __future__ import annotations

import os
import time

from budu.engine.records import Container
from budu.units import human_duration  # also what ps prints as CREATED
from budu.engine.status import State


def rfc3339(t: float) -> str:
    ns = int(t * 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


def command(c: Container, image_config: dict | None = None) -> tuple[str, list[str]]:
    """Path and Args as docker reports them (the image's entrypoint/cmd when the user gave none)."""
    ic = image_config or {}
    cfg = c.config
    entry = cfg.get("Entrypoint")
    cmd = cfg.get("Cmd")
    if entry is None:
        entry = ic.get("Entrypoint") or []
        if cmd is None:
            cmd = ic.get("Cmd") or []
    elif entry == [""]:
        entry = []
    argv = list(entry or []) + list(cmd or [])
    return (argv[0], argv[1:]) if argv else ("", [])


def container_json(c: Container, st: State, root: str, image_config: dict | None = None,
                   graph: dict | None = None, size: tuple[int, int] | None = None) -> dict:
    d = os.path.join(root, "containers", c.id)
    path, args = command(c, image_config)
    out = {
        "Id": c.id, "Created": rfc3339(c.created), "Path": path, "Args": args, "State": st.docker(),
        "Image": c.image_id, "ResolvConfPath": os.path.join(d, "resolv.conf"),
        "HostnamePath": os.path.join(d, "hostname"), "HostsPath": os.path.join(d, "hosts"),
        "LogPath": os.path.join(d, f"{c.id}-json.log") if (c.host_config.get("LogConfig") or {}).get("Type") != "none" else "",
        "Name": "/" + c.name, "RestartCount": st.restart_count, "Driver": "overlay2", "Platform": "linux",
        "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": None,
        "HostConfig": c.host_config,
        "GraphDriver": {"Name": "overlay2", "Data": graph or {}},
        "Mounts": [{k: v for k, v in m.items() if not k.startswith("_")} for m in c.mounts],
        "Config": _config(c, image_config or {}),
        "NetworkSettings": _network_settings(c),
    }
    if size is not None:
        out["SizeRw"], out["SizeRootFs"] = size
    return out


def _config(c: Container, ic: dict) -> dict:
    """The container's Config as docker shows it: the image's values filled in where the user gave none."""
    cfg = dict(c.config)
    env = list(ic.get("Env") or [])
    keys = {e.split("=", 1)[0]: i for i, e in enumerate(env)}
    for e in cfg.get("Env") or []:
        k = e.split("=", 1)[0]
        if k in keys:
            env[keys[k]] = e
        else:
            keys[k] = len(env)
            env.append(e)
    cfg["Env"] = env
    if cfg.get("Entrypoint") is None:
        cfg["Entrypoint"] = ic.get("Entrypoint")
        if cfg.get("Cmd") is None:
            cfg["Cmd"] = ic.get("Cmd")
    for key in ("WorkingDir", "User"):
        cfg[key] = cfg.get(key) or ic.get(key) or ""
    labels = dict(ic.get("Labels") or {})
    labels.update(cfg.get("Labels") or {})
    cfg["Labels"] = labels
    if ic.get("ExposedPorts") or cfg.get("ExposedPorts"):
        cfg["ExposedPorts"] = dict(ic.get("ExposedPorts") or {}, **(cfg.get("ExposedPorts") or {}))
    if ic.get("Volumes") or cfg.get("Volumes"):
        cfg["Volumes"] = dict(ic.get("Volumes") or {}, **(cfg.get("Volumes") or {}))
    if ic.get("StopSignal") and not cfg.get("StopSignal"):
        cfg["StopSignal"] = ic["StopSignal"]
    if cfg.get("Healthcheck") is None and ic.get("Healthcheck"):
        cfg["Healthcheck"] = ic["Healthcheck"]
    for key, default in (("Hostname", c.id[:12]), ("Domainname", ""), ("AttachStdin", False),
                         ("AttachStdout", False), ("AttachStderr", False), ("Tty", False), ("OpenStdin", False),
                         ("StdinOnce", False)):
        cfg.setdefault(key, default)
    return cfg


def _network_settings(c: Container) -> dict:
    mode = c.host_config.get("NetworkMode") or "none"
    net = c.extra.get("network") or {}
    return {
        "Bridge": "", "SandboxID": net.get("sandbox", ""), "SandboxKey": net.get("netns", ""),
        "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
        "Ports": net.get("ports") or {}, "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
        "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
        "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
        "Networks": net.get("networks") or {mode: {
            "IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "NetworkID": mode,
            "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DriverOpts": None, "DNSNames": None}},
    }


def status_text(st: State, now: float | None = None) -> str:
    """The STATUS column of `docker ps`."""
    from budu.engine.logs import parse_rfc3339

    now = time.time() if now is None else now

    def since(t: str) -> str:
        try:
            return human_duration(now - parse_rfc3339(t))
        except (ValueError, IndexError):
            return "Less than a second"

    if st.status == "created":
        return "Created"
    if st.status == "removing":
        return "Removal In Progress"
    if st.status == "dead":
        return "Dead"
    if st.status == "restarting":
        return f"Restarting ({st.exit_code}) {since(st.finished_at)} ago"
    if st.status in ("running", "paused"):
        text = f"Up {since(st.started_at)}"
        if st.status == "paused":
            text += " (Paused)"
        elif st.health:
            h = st.health.get("Status", "")
            text += " (health: starting)" if h == "starting" else f" ({h})" if h else ""
        return text
    if st.finished_at.startswith("0001"):
        return f"Exited ({st.exit_code})"
    return f"Exited ({st.exit_code}) {since(st.finished_at)} ago"
