"""The engine's network commands: what `budu network ...` (and the API's /networks) call.

Networks themselves are budu.network's; what the engine adds is knowing which containers use
which network, and connecting a running container.
"""

from __future__ import annotations

from budu.engine import events, netsetup
from budu.errors import BuduError, ConfigError, StateError


class NetworkOps:
    """Mixed into Engine."""

    def _users(self, net) -> list:  # noqa: ANN001
        """Containers (any state) that name `net`."""
        out = []
        for c in self.store.list():
            m = netsetup.mode(c)
            names = {m, *((c.extra.get("networking_config") or {}).get("EndpointsConfig") or {}),
                     *c.extra.get("connected", [])}
            if net.name in names or net.id in names or (net.name == "bridge" and "default" in names):
                out.append(c)
        return out

    def network_inspect(self, ref: str) -> dict:
        net = self._network(ref)
        endpoints = {}
        for c in self._users(net):
            ep = ((c.extra.get("network") or {}).get("networks") or {}).get(net.name)
            if ep:
                endpoints[c.id] = {"Name": c.name, "EndpointID": ep.get("EndpointID", ""),
                                   "MacAddress": ep.get("MacAddress", ""),
                                   "IPv4Address": f"{ep.get('IPAddress')}/{ep.get('IPPrefixLen')}",
                                   "IPv6Address": ""}
        return net.inspect(endpoints)

    def _network(self, ref: str):  # noqa: ANN202
        if ref in ("bridge", "default"):
            return self.networks.default()
        if ref in ("host", "none"):
            raise ConfigError(f"network {ref} is a built-in mode, not a network budu manages")
        return self.networks.get(ref)

    def network_list(self, filters: dict[str, list[str]] | None = None) -> list[dict]:
        try:
            self.networks.default()  # docker lists its bridge network from the start
        except BuduError:
            pass  # its subnet is taken on this host: `budu network ls` still lists the others
        return [n.inspect() for n in self.networks.list(filters)]

    def network_remove(self, ref: str) -> None:
        net = self._network(ref)
        if net.name == "bridge":
            raise StateError("bridge is a pre-defined network and cannot be removed")
        users = self._users(net)
        if users:
            raise StateError(f"error while removing network: network {net.name} id {net.id} has active endpoints")
        self.networks.remove(net.id)
        events.emit(self.root, "network", "destroy", net.id, {"name": net.name, "type": net.driver})

    def network_prune(self) -> list[str]:
        used = {n for c in self.store.list() for n in
                (netsetup.mode(c), *c.extra.get("connected", []),
                 *((c.extra.get("networking_config") or {}).get("EndpointsConfig") or {}))}
        return self.networks.prune(used)

    def network_connect(self, ref: str, c, aliases: list[str] = (), ip: str | None = None) -> None:  # noqa: ANN001
        net = self._network(ref)
        with self.lock(c) as c:
            m = netsetup.mode(c)
            if m in ("none", "host") or m.startswith("container:"):
                raise ConfigError(f"container cannot be connected to network {net.name}: it uses network mode {m}")
            names = [n.name for n, _ in netsetup.wanted_networks(self, c)]
            if net.name in names:
                raise ConfigError(f"endpoint with name {c.name} already exists in network {net.name}")
            nc = dict(c.extra.get("networking_config") or {})
            eps = dict(nc.get("EndpointsConfig") or {})
            eps[net.name] = {"Aliases": list(aliases), "IPAMConfig": {"IPv4Address": ip} if ip else None}
            nc["EndpointsConfig"] = eps
            c.extra["networking_config"] = nc
            c.extra["connected"] = [*c.extra.get("connected", []), net.name]
            record = c.extra.get("network")
            st = self.state(c)
            if record and st.status in ("running", "paused"):
                ifname = f"eth{len(record['ifnames'])}"
                names = [c.name, c.id[:12]]
                e = self.networks.attach(net, c.id, record["netns"], ifname, ip=ip, aliases=list(aliases),
                                         names=names)
                record["networks"][net.name] = dict(
                    e.docker(list(aliases), self.networks.dns_names(net, names, list(aliases))), NetworkID=net.id)
                record["ifnames"][net.name] = ifname
            self.store.update(c.id, extra=c.extra)
        events.emit(self.root, "network", "connect", net.id, {"container": c.id, "name": net.name, "type": net.driver})

    def network_disconnect(self, ref: str, c) -> None:  # noqa: ANN001
        net = self._network(ref)
        with self.lock(c) as c:
            names = [n.name for n, _ in netsetup.wanted_networks(self, c)]
            if net.name not in names:
                raise ConfigError(f"container {c.id} is not connected to network {net.name}")
            record = c.extra.get("network") or {}
            ifname = (record.get("ifnames") or {}).pop(net.name, None)
            if ifname:
                self.networks.detach(net, c.id, record.get("netns"), ifname)
                record["networks"].pop(net.name, None)
            c.extra["connected"] = [n for n in c.extra.get("connected", []) if n != net.name]
            nc = dict(c.extra.get("networking_config") or {})
            eps = dict(nc.get("EndpointsConfig") or {})
            eps.pop(net.name, None)
            nc["EndpointsConfig"] = eps
            c.extra["networking_config"] = nc
            if netsetup.mode(c) == net.name:
                c.host_config = dict(c.host_config, NetworkMode="none")
                self.store.update(c.id, host_config=c.host_config)
            self.store.update(c.id, extra=c.extra)
        events.emit(self.root, "network", "disconnect", net.id, {"container": c.id, "name": net.name, "type": net.driver})
