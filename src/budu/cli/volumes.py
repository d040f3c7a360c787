"""`budu volume create|ls|inspect|rm|prune`, with docker's flags and output."""

from __future__ import annotations

import sys

from budu.cli import format as fmt
from budu.cli.common import confirm, each, parse_kv
from budu.cli.containers import parse_filters
from budu.cli.images import _Parser
from budu.errors import BuduError, ConfigError


def _engine():
    from budu.engine.engine import Engine

    return Engine()


def _in_use(engine) -> dict[str, list[str]]:  # noqa: ANN001
    """volume name -> ids of the containers (in any state) that mount it."""
    out: dict[str, list[str]] = {}
    for c in engine.store.list():
        for m in c.mounts:
            if m.get("Type") == "volume" and m.get("Name"):
                out.setdefault(m["Name"], []).append(c.id)
    return out


def cmd_create(argv: list[str]) -> int:
    p = _Parser(prog="budu volume create", description="Create a volume")
    p.add_argument("name", nargs="?", metavar="VOLUME")
    p.add_argument("--name", dest="name_flag", help="Specify volume name")
    p.add_argument("-d", "--driver", default="local", help='Specify volume driver name (default "local")')
    p.add_argument("--label", action="append", default=[], help="Set metadata for a volume")
    p.add_argument("-o", "--opt", action="append", default=[], help="Set driver specific options")
    a = p.parse_args(argv)
    if a.name and a.name_flag and a.name != a.name_flag:
        raise ConfigError("conflicting options: cannot specify a volume-name through both --name and as a positional arg")
    if a.driver != "local":
        raise ConfigError(f'error looking up volume plugin {a.driver}: plugin "{a.driver}" not found')
    engine = _engine()
    try:
        v = engine.volumes.create(a.name or a.name_flag, labels=parse_kv(a.label, "--label"), options=parse_kv(a.opt, "--opt"))
        from budu.engine import events

        events.emit(engine.root, "volume", "create", v.name, {"driver": v.driver})
    finally:
        engine.close()
    print(v.name)
    return 0


def cmd_ls(argv: list[str]) -> int:
    p = _Parser(prog="budu volume ls", description="List volumes")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display volume names")
    p.add_argument("-f", "--filter", action="append", default=[], help="Provide filter values (e.g. 'dangling=true')")
    p.add_argument("--format", help="Format output using a custom template")
    a = p.parse_args(argv)
    filters = parse_filters(a.filter)
    engine = _engine()
    try:
        used = _in_use(engine)
        vols = engine.volumes.list(filters, in_use=set(used))
    finally:
        engine.close()
    if a.quiet:
        sys.stdout.write("".join(v.name + "\n" for v in vols))
        return 0
    rows = [{"Driver": v.driver, "Name": v.name, "Mountpoint": v.mountpoint, "Scope": "local",
             "Labels": ",".join(f"{k}={val}" for k, val in v.labels.items()),
             "Links": str(len(used.get(v.name, []))), "Size": "N/A", "CreatedAt": v.inspect()["CreatedAt"]}
            for v in vols]
    template = a.format or "table {{.Driver}}\t{{.Name}}"
    sys.stdout.write(fmt.format_rows(template, rows, {"Driver": "DRIVER", "Name": "VOLUME NAME",
                                                      "Mountpoint": "MOUNTPOINT", "Scope": "SCOPE"}))
    return 0


def cmd_inspect(argv: list[str]) -> int:
    p = _Parser(prog="budu volume inspect", description="Display detailed information on one or more volumes")
    p.add_argument("names", nargs="+", metavar="VOLUME")
    p.add_argument("-f", "--format", help="Format output using a custom template")
    a = p.parse_args(argv)
    engine = _engine()
    try:
        return fmt.inspect_each(a.names, lambda name: engine.volumes.get(name).inspect(), a.format)
    finally:
        engine.close()


def cmd_rm(argv: list[str]) -> int:
    p = _Parser(prog="budu volume rm", description="Remove one or more volumes")
    p.add_argument("names", nargs="+", metavar="VOLUME")
    p.add_argument("-f", "--force", action="store_true", help="Force the removal of one or more volumes")
    a = p.parse_args(argv)
    engine = _engine()
    try:
        used = _in_use(engine)

        def remove(name: str) -> None:
            engine.volumes.remove(name, force=a.force, in_use=set(used))
            from budu.engine import events

            events.emit(engine.root, "volume", "destroy", name, {"driver": "local"})
            print(name)

        def reason(name: str, e: BuduError) -> str | None:
            if a.force and "no such volume" in str(e).lower():
                return None
            msg = str(e)
            if name in used and "in use" in msg and "[" not in msg:
                msg += " - [" + ", ".join(used[name]) + "]"
            return msg

        return each(a.names, remove, reason)
    finally:
        engine.close()


def cmd_prune(argv: list[str]) -> int:
    p = _Parser(prog="budu volume prune", description="Remove unused local volumes")
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused volumes, not just anonymous ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], help="Provide filter values (e.g. \"label=<label>\")")
    a = p.parse_args(argv)
    if not a.force and not confirm("WARNING! This will remove anonymous local volumes not used by at least one container."
                                   if not a.all else "WARNING! This will remove all local volumes not used by at least one container."):
        return 0
    removed, space = prune_volumes(a.all)
    fmt.print_pruned("Deleted Volumes:", removed, space)
    return 0


def prune_volumes(all_volumes: bool) -> tuple[list[str], int]:
    engine = _engine()
    try:
        return engine.volumes.prune(set(_in_use(engine)), all_volumes=all_volumes)
    finally:
        engine.close()
