"""A container's network life: what the engine does with budu.network when a container starts,
stops, is connected or disconnected, and after a crash.

The network namespace outlives the container's process (a file under /run), so the monitor can
restart the container into the same addresses; it goes when the container's last run ends
(`budu container cleanup`, which the monitor runs) or when the container is removed.
"""

from __future__ import annotations

from budu.errors import BuduError, ConfigError
from budu.plain import Plain

BUILTIN = ("none", "host", "bridge", "default")


class NetPlan(Plain):
    __slots__ = ("netns", "host_network", "addresses", "dns", "search", "hosts_from")

    def __init__(self, netns: str | None, host_network: bool = False, addresses: list[str] | None = None,
                 dns: list[str] | None = None, search: list[str] | None = None, hosts_from: str | None = None) -> None:
        self.netns = netns  # None: a new empty netns (none); "host"; else a path to join
        self.host_network = host_network
        self.addresses = [] if addresses is None else addresses
        self.dns = [] if dns is None else dns  # nameservers that replace the host's
        self.search = [] if search is None else search
        self.hosts_from = hosts_from  # container:X shares X's files


def mode(c) -> str:  # noqa: ANN001
    m = c.host_config.get("NetworkMode") or "bridge"
    return "bridge" if m == "default" else m


def wanted_networks(engine, c) -> list[tuple[object, dict]]:  # noqa: ANN001
    """The networks a container joins, in order (its NetworkMode first), with their endpoint config."""
    m = mode(c)
    eps = dict((c.extra.get("networking_config") or {}).get("EndpointsConfig") or {})
    names = [m] + [n for n in eps if n not in (m, "default")]
    names += [n for n in c.extra.get("connected", []) if n not in names]
    out = []
    for name in names:
        net = engine.networks.default() if name == "bridge" else engine.networks.get(name)
        out.append((net, eps.get(name) or eps.get(net.name) or {}))
    return out


def up(engine, c) -> NetPlan:  # noqa: ANN001
    """Make the container's network ready before its runtime runs; record what it got."""
    m = mode(c)
    if m == "none":
        return NetPlan(netns=None)
    if m == "host":
        return NetPlan(netns="host", host_network=True)
    if m.startswith("container:"):
        other = engine.get(m.split(":", 1)[1])
        st = engine.state(other)
        if st.status not in ("running", "paused") or not st.pid:
            raise ConfigError(f"cannot join network of a non running container: {other.name}")
        return NetPlan(netns=f"/proc/{st.pid}/ns/net", hosts_from=engine.dir(other.id))
    nets = wanted_networks(engine, c)
    hc = c.host_config
    exposed = dict(c.extra.get("image_exposed") or {}, **(c.config.get("ExposedPorts") or {}))
    # a port clash fails here, before anything is made
    maps, ports = engine.networks.port_mappings(hc.get("PortBindings") or {}, exposed,
                                                bool(hc.get("PublishAllPorts")))
    down(engine, c)  # whatever a crash left: start from nothing
    engine.networks.gc({row.id for row in engine.store.list()})  # and what crashes left of others
    netns = engine.networks.netns_create(c.id)
    record: dict = {"netns": netns, "networks": {}, "ports": {}, "ifnames": {}}
    plan = NetPlan(netns=netns)
    record["ports"] = ports
    hostname = c.config.get("Hostname") or c.id[:12]
    try:
        for i, (net, ep) in enumerate(nets):
            ifname = f"eth{i}"
            ipam = ep.get("IPAMConfig") or {}
            aliases = list(ep.get("Aliases") or [])
            names = list(dict.fromkeys([c.name, c.id[:12], hostname]))
            e = engine.networks.attach(net, c.id, netns, ifname, ip=ipam.get("IPv4Address") or None,
                                       mac=ep.get("MacAddress") or None, port_mappings=maps if i == 0 else None,
                                       aliases=aliases, names=names,
                                       dns_servers=(hc.get("Dns") or []) if net.dns else ())
            record["networks"][net.name] = e.docker(aliases, engine.networks.dns_names(net, names, aliases))
            record["networks"][net.name]["NetworkID"] = net.id
            record["ifnames"][net.name] = ifname
            plan.addresses.append(e.ip)
            server = engine.networks.dns_server(net)
            if server and server not in plan.dns:
                plan.dns.append(server)
    except BaseException:
        c.extra["network"] = record
        down(engine, c)
        raise
    c.extra["network"] = record
    engine.store.update(c.id, extra=c.extra)
    return plan


def down(engine, c) -> None:  # noqa: ANN001
    """Release everything up() made; safe to repeat, and after a crash (netns gone, rows gone)."""
    record = c.extra.get("network") or {}
    if not record:
        return
    try:
        engine.networks.netns_delete(c.id)  # detaches what is still attached, frees addresses and ports
    except BuduError:
        pass
    c.extra.pop("network", None)
    try:
        engine.store.update(c.id, extra=c.extra)
    except BuduError:
        pass
