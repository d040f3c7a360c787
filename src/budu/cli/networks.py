"""`budu network create|ls|inspect|rm|prune|connect|disconnect`, with docker's flags and output."""

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


def cmd_create(argv: list[str]) -> int:
    p = _Parser(prog="budu network create", description="Create a network")
    p.add_argument("name", metavar="NETWORK")
    p.add_argument("-d", "--driver", default="bridge", help='Driver to manage the Network (default "bridge")')
    p.add_argument("--subnet", action="append", default=[], help="Subnet in CIDR format that represents a network segment")
    p.add_argument("--gateway", action="append", default=[], help="IPv4 or IPv6 Gateway for the master subnet")
    p.add_argument("--internal", action="store_true", help="Restrict external access to the network")
    p.add_argument("--label", action="append", default=[], help="Set metadata on a network")
    p.add_argument("-o", "--opt", action="append", default=[], help="Set driver specific options")
    p.add_argument("--attachable", action="store_true", help="Enable manual container attachment")
    p.add_argument("--ipv6", action="store_true", help="Enable or disable IPv6 networking")
    a = p.parse_args(argv)
    if a.driver != "bridge":
        raise ConfigError(f'plugin "{a.driver}" not found')
    if a.ipv6:
        raise ConfigError("IPv6 networks are not supported by budu yet")
    if len(a.subnet) > 1 or len(a.gateway) > 1:
        raise ConfigError("budu networks have one IPv4 subnet")
    if a.gateway and not a.subnet:
        raise ConfigError("every ip-range or gateway must have a corresponding subnet")
    engine = _engine()
    try:
        net = engine.networks.create(a.name, subnet=a.subnet[0] if a.subnet else None,
                                     gateway=a.gateway[0] if a.gateway else None, internal=a.internal,
                                     labels=parse_kv(a.label, "--label"), options=parse_kv(a.opt, "--opt"))
        from budu.engine import events

        events.emit(engine.root, "network", "create", net.id, {"name": net.name, "type": net.driver})
    finally:
        engine.close()
    print(net.id)
    return 0


def cmd_ls(argv: list[str]) -> int:
    p = _Parser(prog="budu network ls", description="List networks")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display network IDs")
    p.add_argument("-f", "--filter", action="append", default=[], help="Provide filter values (e.g. \"driver=bridge\")")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate the output")
    a = p.parse_args(argv)
    filters = parse_filters(a.filter)
    engine = _engine()
    try:
        nets = engine.network_list(filters)
    finally:
        engine.close()
    rows = [{"ID": n["Id"] if a.no_trunc else n["Id"][:12], "Name": n["Name"], "Driver": n["Driver"],
             "Scope": n["Scope"], "IPv6": "false", "Internal": str(n.get("Internal", False)).lower(),
             "Labels": ",".join(f"{k}={v}" for k, v in (n.get("Labels") or {}).items()),
             "CreatedAt": n.get("Created", "")} for n in nets]
    if a.quiet:
        sys.stdout.write("".join(r["ID"] + "\n" for r in rows))
        return 0
    template = a.format or "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
    sys.stdout.write(fmt.format_rows(template, rows, {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER",
                                                      "Scope": "SCOPE", "Internal": "INTERNAL"}))
    return 0


def cmd_inspect(argv: list[str]) -> int:
    p = _Parser(prog="budu network inspect", description="Display detailed information on one or more networks")
    p.add_argument("names", nargs="+", metavar="NETWORK")
    p.add_argument("-f", "--format", help="Format output using a custom template")
    p.add_argument("-v", "--verbose", action="store_true", help="Verbose output for diagnostics")
    a = p.parse_args(argv)
    engine = _engine()
    try:
        return fmt.inspect_each(a.names, engine.network_inspect, a.format, "Error response from daemon: ")
    finally:
        engine.close()


def cmd_rm(argv: list[str]) -> int:
    p = _Parser(prog="budu network rm", description="Remove one or more networks")
    p.add_argument("names", nargs="+", metavar="NETWORK")
    p.add_argument("-f", "--force", action="store_true", help="Do not error if the network does not exist")
    a = p.parse_args(argv)
    engine = _engine()

    def remove(name: str) -> None:
        engine.network_remove(name)
        print(name)

    def reason(name: str, e: BuduError) -> str | None:
        return None if a.force and "not found" in str(e) else str(e)

    try:
        return each(a.names, remove, reason)
    finally:
        engine.close()


def cmd_prune(argv: list[str]) -> int:
    p = _Parser(prog="budu network prune", description="Remove all unused networks")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], help="Provide filter values (e.g. \"until=<timestamp>\")")
    a = p.parse_args(argv)
    if not a.force and not confirm("WARNING! This will remove all custom networks not used by at least one container."):
        return 0
    engine = _engine()
    try:
        removed = engine.network_prune()
    finally:
        engine.close()
    fmt.print_pruned("Deleted Networks:", removed)
    return 0


def cmd_connect(argv: list[str]) -> int:
    p = _Parser(prog="budu network connect", description="Connect a container to a network")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("--alias", action="append", default=[], help="Add network-scoped alias for the container")
    p.add_argument("--ip", help="IPv4 address (e.g., \"172.30.100.104\")")
    a = p.parse_args(argv)
    engine = _engine()
    try:
        engine.network_connect(a.network, engine.get(a.container), aliases=a.alias, ip=a.ip)
    finally:
        engine.close()
    return 0


def cmd_disconnect(argv: list[str]) -> int:
    p = _Parser(prog="budu network disconnect", description="Disconnect a container from a network")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("-f", "--force", action="store_true", help="Force the container to disconnect from a network")
    a = p.parse_args(argv)
    engine = _engine()
    try:
        engine.network_disconnect(a.network, engine.get(a.container))
    finally:
        engine.close()
    return 0
