"""Container commands that look and manage: ps, inspect, logs, stop, kill, rm, wait, pause, rename..."""

from __future__ import annotations

import json
import sys
import time

from budu.cli import format as fmt
from budu.cli.common import confirm, each
from budu.cli.images import _Parser
from budu.errors import BuduError, ConfigError, NotFound


def _engine():
    from budu.engine.engine import Engine

    return Engine()


def _each(refs: list[str], action, echo: bool = True) -> int:  # noqa: ANN001
    """docker's multi-container commands: go on past a failure, report each, exit 1 if any failed."""
    engine = _engine()

    def one(ref: str) -> None:
        out = action(engine, engine.get(ref))
        if echo:
            print(ref if out is None else out)

    try:
        return each(refs, one)
    finally:
        engine.close()


# -- ps ---------------------------------------------------------------------------------------------

PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
              "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
              "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
              "LocalVolumes": "LOCAL VOLUMES"}


def _ellipsis(s: str, n: int) -> str:
    return s if len(s) <= n else s[:n - 1] + "…"


def _ports_text(c) -> str:  # noqa: ANN001
    ports = (c.extra.get("network") or {}).get("ports") or {}
    out = []
    for cport, binds in sorted(ports.items()):
        for b in binds or []:
            out.append(f"{b.get('HostIp') or '0.0.0.0'}:{b['HostPort']}->{cport}")
        if not binds:
            out.append(cport)
    return ", ".join(out)


def ps_row(c, st, no_trunc: bool = False, now: float | None = None) -> dict:  # noqa: ANN001
    from budu.engine.inspect import command, human_duration, rfc3339, status_text

    now = time.time() if now is None else now
    path, args = command(c, c.extra.get("image_config"))
    cmd = " ".join([path, *(f"'{x}'" if " " in x else x for x in args)]) if path else ""  # docker quotes so
    cmd_text = json.dumps(cmd if no_trunc else _ellipsis(cmd, 20), ensure_ascii=False)
    labels = c.config.get("Labels") or {}
    return {
        "ID": c.id if no_trunc else c.id[:12], "Image": c.image_ref, "Command": cmd_text,
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(c.created)),
        "RunningFor": human_duration(now - c.created) + " ago", "Ports": _ports_text(c),
        "State": st.status, "Status": status_text(st, now), "Size": "", "Names": c.name,
        "Labels": ",".join(f"{k}={v}" for k, v in labels.items()),
        "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in c.mounts),
        "Networks": c.host_config.get("NetworkMode") or "",
        "LocalVolumes": str(sum(1 for m in c.mounts if m.get("Type") == "volume")),
        "_created_iso": rfc3339(c.created),
    }


def _matches(c, st, filters: dict[str, list[str]], by_ref) -> bool:  # noqa: ANN001
    for key, values in filters.items():
        if key == "id":
            ok = any(c.id.startswith(v) for v in values)
        elif key == "name":
            import re

            ok = any(re.search(v.lstrip("/"), c.name) for v in values)
        elif key == "label":
            labels = c.config.get("Labels") or {}
            ok = all((labels.get(v.split("=", 1)[0]) == v.split("=", 1)[1]) if "=" in v else v in labels
                     for v in values)
        elif key == "status":
            for v in values:
                if v not in ("created", "restarting", "running", "removing", "paused", "exited", "dead"):
                    raise ConfigError(f"invalid filter 'status={v}'")
            ok = st.status in values
        elif key == "exited":
            ok = st.status == "exited" and str(st.exit_code) in values
        elif key == "ancestor":
            ok = any(c.image_ref == v or c.image_ref.split(":")[0] == v or c.image_id.startswith(v)
                     or c.image_id[7:].startswith(v) for v in values)
        elif key in ("before", "since"):
            ok = True
            for v in values:
                other = by_ref(v)
                ok = ok and (c.created < other.created if key == "before" else c.created > other.created)
        elif key == "volume":
            ok = any(m.get("Name") == v or m.get("Destination") == v or m.get("Source") == v
                     for m in c.mounts for v in values)
        elif key == "network":
            ok = (c.host_config.get("NetworkMode") or "") in values
        elif key == "health":
            h = (st.health or {}).get("Status", "none")
            ok = h in values
        elif key == "is-task":
            ok = "false" in values
        else:
            raise ConfigError(f"invalid filter '{key}'")
        if not ok:
            return False
    return True


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in items:
        key, eq, value = f.partition("=")
        if not eq:
            raise ConfigError("bad format of filter (expected name=value)")
        out.setdefault(key.strip().lower(), []).append(value)
    return out


def cmd_ps(argv: list[str]) -> int:
    p = _Parser(prog="budu ps", description="List containers")
    p.add_argument("-a", "--all", action="store_true", help="Show all containers (default shows just running)")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display container IDs")
    p.add_argument("-n", "--last", type=int, default=-1, help="Show n last created containers (includes all states)")
    p.add_argument("-l", "--latest", action="store_true", help="Show the latest created container (includes all states)")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-f", "--filter", action="append", default=[], help="Filter output based on conditions provided")
    p.add_argument("--format", help="Format output using a custom template")
    a = p.parse_args(argv)
    filters = parse_filters(a.filter)
    engine = _engine()
    try:
        pairs = engine.list()  # newest first
        if a.latest:
            a.last = 1
        if a.last >= 0:
            pairs = pairs[:a.last]
        elif not a.all:
            pairs = [(c, st) for c, st in pairs if st.status in ("running", "paused", "restarting")
                     or "status" in filters or "exited" in filters]
        pairs = [(c, st) for c, st in pairs if _matches(c, st, filters, engine.get)]
        now = time.time()
        rows = []
        for c, st in pairs:
            r = ps_row(c, st, a.no_trunc, now)
            if a.size:
                r["Size"] = _size_text(engine, c)
            rows.append(r)
    finally:
        engine.close()
    if a.quiet:
        sys.stdout.write("".join(r["ID"] + "\n" for r in rows))
        return 0
    if a.format:
        sys.stdout.write(fmt.format_rows(a.format, rows, PS_HEADERS))
        return 0
    cols = ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"] + (["Size"] if a.size else [])
    sys.stdout.write(fmt.table([[PS_HEADERS[k] for k in cols]] + [[r[k] for k in cols] for r in rows]))
    return 0


def _size_text(engine, c) -> str:  # noqa: ANN001
    try:
        rw = engine.images.snapshots.usage(c.snapshot)
        virtual = rw + engine.images.store.get(c.image_id).size
    except BuduError:
        return "0B"
    return f"{fmt.human_size(rw)} (virtual {fmt.human_size(virtual)})"


# -- inspect ----------------------------------------------------------------------------------------

def container_inspect(engine, c, size: bool = False) -> dict:  # noqa: ANN001
    from budu.engine.inspect import container_json

    st = engine.state(c)
    try:
        image = engine.images.store.get(c.image_id)
        image_config = engine.images.config(image).get("config") or {}
    except BuduError:
        image_config = {}
    graph = {}
    try:
        (m,) = engine.images.snapshots.mounts(c.snapshot)
        opts = dict(o.split("=", 1) for o in m.options if "=" in o)
        graph = {"LowerDir": opts.get("lowerdir", ""), "UpperDir": opts.get("upperdir", m.source),
                 "WorkDir": opts.get("workdir", ""), "MergedDir": engine.dir(c.id) + "/rootfs"}
    except BuduError:
        pass
    sizes = None
    if size:
        try:
            rw = engine.images.snapshots.usage(c.snapshot)
            sizes = (rw, rw + engine.images.store.get(c.image_id).size)
        except BuduError:
            sizes = (0, 0)
    return container_json(c, st, engine.root, image_config, graph, sizes)


def cmd_inspect(argv: list[str]) -> int:
    p = _Parser(prog="budu inspect", description="Return low-level information on budu objects")
    p.add_argument("names", nargs="+", metavar="NAME|ID")
    p.add_argument("-f", "--format", help="Format output using a custom template")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes if the type is container")
    p.add_argument("--type", choices=["container", "image", "volume"], help="Return JSON for specified type")
    a = p.parse_args(argv)
    return inspect_objects(a.names, a.format, a.size, a.type)


def cmd_container_inspect(argv: list[str]) -> int:
    p = _Parser(prog="budu container inspect", description="Display detailed information on one or more containers")
    p.add_argument("names", nargs="+", metavar="CONTAINER")
    p.add_argument("-f", "--format", help="Format output using a custom template")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes")
    a = p.parse_args(argv)
    return inspect_objects(a.names, a.format, a.size, "container")


def inspect_objects(names: list[str], template: str | None, size: bool, kind: str | None) -> int:
    engine = _engine()
    out: list[dict] = []
    failed = False
    try:
        for name in names:
            obj = None
            if kind in (None, "container"):
                try:
                    obj = container_inspect(engine, engine.get(name), size)
                except NotFound:
                    pass
            if obj is None and kind in (None, "image"):
                try:
                    from budu.cli.images import inspect_image

                    obj = inspect_image(engine.images, engine.images.get(name))
                except NotFound:
                    pass
            if obj is None and kind in (None, "volume"):
                try:
                    obj = engine.volumes.get(name).inspect()
                except NotFound:
                    pass
            if obj is None:
                sys.stderr.write(f"Error: No such object: {name}\n" if kind is None else
                                 f"Error: No such {kind}: {name}\n")
                failed = True
                continue
            out.append(obj)
    finally:
        engine.close()
    fmt.print_inspected(out, template)
    return 1 if failed else 0


# -- lifecycle ------------------------------------------------------------------------------------

def cmd_stop(argv: list[str], verb: str = "stop") -> int:
    p = _Parser(prog=f"budu {verb}", description=f"{verb.capitalize()} one or more running containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-t", "--time", "--timeout", type=int, default=None, help="Seconds to wait before killing the container")
    p.add_argument("-s", "--signal", help="Signal to send to the container")
    a = p.parse_args(argv)
    if verb == "restart":
        return _each(a.containers, lambda e, c: e.restart(c, a.time))
    return _each(a.containers, lambda e, c: e.stop(c, a.time, a.signal))


def cmd_restart(argv: list[str]) -> int:
    return cmd_stop(argv, "restart")


def cmd_kill(argv: list[str]) -> int:
    p = _Parser(prog="budu kill", description="Kill one or more running containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-s", "--signal", default="KILL", help="Signal to send to the container")
    a = p.parse_args(argv)
    from budu.engine.engine import _signame

    _signame(a.signal)  # a bad signal is one error, not one per container
    return _each(a.containers, lambda e, c: e.kill(c, a.signal))


def cmd_rm(argv: list[str]) -> int:
    p = _Parser(prog="budu rm", description="Remove one or more containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-f", "--force", action="store_true", help="Force the removal of a running container (uses SIGKILL)")
    p.add_argument("-v", "--volumes", action="store_true", help="Remove anonymous volumes associated with the container")
    p.add_argument("-l", "--link", action="store_true", help="Remove the specified link")
    a = p.parse_args(argv)
    return _each(a.containers, lambda e, c: e.remove(c, a.force, a.volumes))


def cmd_pause(argv: list[str]) -> int:
    p = _Parser(prog="budu pause", description="Pause all processes within one or more containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    return _each(p.parse_args(argv).containers, lambda e, c: e.pause(c))


def cmd_unpause(argv: list[str]) -> int:
    p = _Parser(prog="budu unpause", description="Unpause all processes within one or more containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    return _each(p.parse_args(argv).containers, lambda e, c: e.unpause(c))


def cmd_wait(argv: list[str]) -> int:
    p = _Parser(prog="budu wait", description="Block until one or more containers stop, then print their exit codes")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    return _each(p.parse_args(argv).containers, lambda e, c: e.wait(c))


def cmd_rename(argv: list[str]) -> int:
    p = _Parser(prog="budu rename", description="Rename a container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("new_name", metavar="NEW_NAME")
    a = p.parse_args(argv)
    engine = _engine()
    try:
        engine.rename(engine.get(a.container), a.new_name)
    finally:
        engine.close()
    return 0


def cmd_cleanup(argv: list[str]) -> int:
    """Internal: what a monitor runs after its container's last exit (--rm)."""
    engine = _engine()
    try:
        engine.cleanup(engine.get(argv[0]))
    except NotFound:
        pass
    finally:
        engine.close()
    return 0


def cmd_prune(argv: list[str]) -> int:
    p = _Parser(prog="budu container prune", description="Remove all stopped containers")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], help="Provide filter values (e.g. \"until=<timestamp>\")")
    a = p.parse_args(argv)
    if not a.force and not confirm("WARNING! This will remove all stopped containers."):
        return 0
    removed, space = prune_containers(parse_filters(a.filter))
    fmt.print_pruned("Deleted Containers:", removed, space)
    return 0


def prune_containers(filters: dict[str, list[str]]) -> tuple[list[str], int]:
    from budu.engine.logs import parse_time

    engine = _engine()
    removed, space = [], 0
    try:
        for c, st in engine.list():
            if st.running or st.status == "removing":
                continue
            if "until" in filters and not all(c.created < parse_time(v, flag="until") for v in filters["until"]):
                continue
            labels = c.config.get("Labels") or {}
            if not all((labels.get(v.split("=", 1)[0]) == v.split("=", 1)[1]) if "=" in v else v in labels
                       for v in filters.get("label", [])):
                continue
            if any((labels.get(v.split("=", 1)[0]) == v.split("=", 1)[1]) if "=" in v else v in labels
                   for v in filters.get("label!", [])):
                continue
            try:
                size = engine.images.snapshots.usage(c.snapshot)
                engine.remove(c)
            except BuduError:
                continue
            removed.append(c.id)
            space += size
    finally:
        engine.close()
    return removed, space


# -- logs -------------------------------------------------------------------------------------------

def cmd_logs(argv: list[str]) -> int:
    p = _Parser(prog="budu logs", description="Fetch the logs of a container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("-f", "--follow", action="store_true", help="Follow log output")
    p.add_argument("-n", "--tail", default="all", help='Number of lines to show from the end of the logs (default "all")')
    p.add_argument("--since", help="Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)")
    p.add_argument("--until", help="Show logs before a timestamp or relative")
    p.add_argument("-t", "--timestamps", action="store_true", help="Show timestamps")
    p.add_argument("--details", action="store_true", help="Show extra details provided to logs")
    a = p.parse_args(argv)
    from budu.engine import logs

    tail = None
    if a.tail != "all":
        try:
            tail = int(a.tail)
        except ValueError:
            raise ConfigError(f'invalid value for "tail": "{a.tail}"') from None
        if tail < 0:
            tail = None
    since = logs.parse_time(a.since, flag="since") if a.since else None
    until = logs.parse_time(a.until, flag="until") if a.until else None
    engine = _engine()
    try:
        c = engine.get(a.container)
        if (c.host_config.get("LogConfig") or {}).get("Type") == "none":
            raise ConfigError('configured logging driver does not support reading')
        d = engine.dir(c.id)
        entries, end = logs.read(d, c.id, tail, since, until)
        _print_entries(entries, a.timestamps)
        if a.follow:
            def running() -> bool:
                try:
                    return engine.state(engine.get(c.id)).running
                except NotFound:
                    return False
            try:
                _print_entries(logs.follow(d, c.id, end, running, until), a.timestamps)
            except KeyboardInterrupt:
                return 0
    finally:
        engine.close()
    return 0


def _fixed_nano(t: str) -> str:
    """docker logs -t prints RFC 3339 with all nine digits (the log keeps Go's trimmed form)."""
    head, dot, frac = t.rstrip("Z").partition(".")
    return f"{head}.{(frac if dot else '').ljust(9, '0')}Z"


def _print_entries(entries, timestamps: bool) -> None:  # noqa: ANN001
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for _, t, stream, data in entries:
        f = err if stream == "stderr" else out
        if timestamps:
            f.write(_fixed_nano(t).encode() + b" ")
        f.write(data)
        f.flush()


# -- top, stats, port, update ---------------------------------------------------------------------

def cmd_top(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("Usage:  budu top CONTAINER [ps OPTIONS]\n\nDisplay the running processes of a container")
        return 0 if argv else 1
    engine = _engine()
    try:
        from budu.engine.stats import top

        titles, rows = top(engine, engine.get(argv[0]), argv[1:])
    finally:
        engine.close()
    sys.stdout.write(fmt.table([titles] + rows))
    return 0


def cmd_stats(argv: list[str]) -> int:
    p = _Parser(prog="budu stats", description="Display a live stream of container(s) resource usage statistics")
    p.add_argument("containers", nargs="*", metavar="CONTAINER")
    p.add_argument("-a", "--all", action="store_true", help="Show all containers (default shows just running)")
    p.add_argument("--no-stream", action="store_true", help="Disable streaming stats and only pull the first result")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate output")
    p.add_argument("--format", help="Format output using a custom template")
    a = p.parse_args(argv)
    from budu.engine.stats import stats_loop

    engine = _engine()
    try:
        return stats_loop(engine, a.containers, a.all, not a.no_stream, a.no_trunc, a.format)
    except KeyboardInterrupt:
        return 0
    finally:
        engine.close()


def cmd_port(argv: list[str]) -> int:
    p = _Parser(prog="budu port", description="List port mappings or a specific mapping for the container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("port", nargs="?", metavar="PRIVATE_PORT[/PROTO]")
    a = p.parse_args(argv)
    engine = _engine()
    try:
        c = engine.get(a.container)
    finally:
        engine.close()
    ports = (c.extra.get("network") or {}).get("ports") or {}
    if a.port:
        key = a.port if "/" in a.port else a.port + "/tcp"
        binds = ports.get(key)
        if not binds:
            raise ConfigError(f"No public port '{key}' published for {a.container}")
        for b in binds:
            print(f"{b.get('HostIp') or '0.0.0.0'}:{b['HostPort']}")
        return 0
    for key, binds in sorted(ports.items()):
        for b in binds or []:
            print(f"{key} -> {b.get('HostIp') or '0.0.0.0'}:{b['HostPort']}")
    return 0


def cmd_update(argv: list[str]) -> int:
    p = _Parser(prog="budu update", description="Update configuration of one or more containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-m", "--memory", help="Memory limit")
    p.add_argument("--memory-swap", help="Swap limit equal to memory plus swap: -1 to enable unlimited swap")
    p.add_argument("--memory-reservation", help="Memory soft limit")
    p.add_argument("--cpus", help="Number of CPUs")
    p.add_argument("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)")
    p.add_argument("--cpu-period", type=int, help="Limit CPU CFS (Completely Fair Scheduler) period")
    p.add_argument("--cpu-quota", type=int, help="Limit CPU CFS (Completely Fair Scheduler) quota")
    p.add_argument("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
    p.add_argument("--cpuset-mems", help="MEMs in which to allow execution (0-3, 0,1)")
    p.add_argument("--pids-limit", type=int, help="Tune container pids limit (set -1 for unlimited)")
    p.add_argument("--restart", help="Restart policy to apply when a container exits")
    a = p.parse_args(argv)
    from budu.engine.stats import update_request

    changes = update_request(a)
    return _each(a.containers, lambda e, c: e.update(c, changes))


# -- events -----------------------------------------------------------------------------------------

def cmd_events(argv: list[str]) -> int:
    p = _Parser(prog="budu events", description="Get real time events from the server")
    p.add_argument("--since", help="Show all events created since timestamp")
    p.add_argument("--until", help="Stream events until this timestamp")
    p.add_argument("-f", "--filter", action="append", default=[], help="Filter output based on conditions provided")
    p.add_argument("--format", help="Format output using a custom template")
    a = p.parse_args(argv)
    from budu.engine import events
    from budu.engine.engine import root_dir
    from budu.engine.logs import parse_time

    now = time.time()
    since = parse_time(a.since, now, "since") if a.since else None
    until = parse_time(a.until, now, "until") if a.until else None
    filters = parse_filters(a.filter)
    root = root_dir()
    evs, offset = events.read(root)
    if since is None:
        evs = []  # without --since, only what happens from now on
    try:
        while True:
            for ev in evs:
                t = ev.get("timeNano", 0) / 1e9
                if since is not None and t < since:
                    continue
                if until is not None and t >= until:
                    return 0
                if events.matches(ev, filters):
                    _print_event(ev, a.format)
            if until is not None and time.time() >= until:
                return 0
            time.sleep(0.1)
            evs, offset = events.read(root, offset)
    except KeyboardInterrupt:
        return 0


def _print_event(ev: dict, template: str | None) -> None:
    if template:
        sys.stdout.write(fmt.render(template, ev) + "\n")
    else:
        ns = ev.get("timeNano", 0)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ns // 1_000_000_000)) + \
            f".{ns % 1_000_000_000:09d}" + time.strftime("%z", time.localtime(ns // 1_000_000_000))
        stamp = stamp[:-2] + ":" + stamp[-2:]
        attrs = ev.get("Actor", {}).get("Attributes", {})
        attr_text = ", ".join(f"{k}={v}" for k, v in sorted(attrs.items()))
        sys.stdout.write(f"{stamp} {ev.get('Type')} {ev.get('Action')} {ev.get('Actor', {}).get('ID')}"
                         + (f" ({attr_text})" if attr_text else "") + "\n")
    sys.stdout.flush()
