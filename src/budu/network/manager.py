"""Networks: what the engine calls.  Network definitions live in budu.db; the host side of a
network (bridge, netfilter rules, DNS file) is set up on its first attach and torn down on remove.

A container's network life, each step under the host-wide network lock:
    netns_create(cid)                      a persistent netns, loopback up
    attach(net, cid, netns, "eth0", ...)   endpoint row ('adding') + host ports claimed, CNI ADD
                                           (bridge + host-local, portmap), row 'attached', DNS
    detach(net, cid, netns, "eth0")        CNI DEL with the stored config and result, row gone
    netns_delete(cid)                      whatever is still attached is detached, netns removed
    gc(live ids)                           all of the above for containers that no longer exist

Every host object is found again from a row written *before* it was made, so a budu killed at
any point leaves nothing that detach, netns_delete or gc do not remove.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Sequence

from budu.errors import BuduError, ConfigError, KernelError, NotFound, StateError
from budu.metadata import Database
from budu.network import netns as netns_mod
from budu.network import ports as ports_mod
from budu.network import validate
from budu.network.cni import CNI, CNI_VERSION, CNIError
from budu.network.config import NetworkConfig
from budu.network.dns import Aardvark, Record, check_name, find_aardvark, nameservers
from budu.network.firewall import Firewall, NetRules
from budu.network.host import HostLock, delete_bridge, host_networks, is_bridge, link_exists, overlapping, sysctl
from budu.network.ipam import HostLocal
from budu.network.model import (DEFAULT_NETWORK, OPT_BRIDGE_NAME, OPT_MASQUERADE, OPT_MTU, PREDEFINED, Endpoint,
                                Network)
from budu.network.store import EndpointRow, PortTaken, Store

FILTERS = ("name", "id", "label", "driver", "type", "dangling", "scope")


def new_id() -> str:
    return os.urandom(32).hex()


def _bridge_options(bridge: str) -> dict:
    return {"com.docker.network.bridge.default_bridge": "true", "com.docker.network.bridge.enable_icc": "true",
            OPT_MASQUERADE: "true", "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
            OPT_BRIDGE_NAME: bridge, OPT_MTU: "1500"}


# one file per budu bridge set up on this host, whatever its root (tmpfs: a reboot empties it)
HOST_UP_DIR = "/run/lock/budu-network.d"


class Networks:
    def __init__(self, root: str, run_root: str, db: Database, config: NetworkConfig | None = None) -> None:
        self.root = root
        self.run_root = run_root
        self.db = db
        self.config = config or NetworkConfig.from_env()
        self.store = Store(db)
        self.ipam = HostLocal(os.path.join(root, "network", "ipam"))
        self.ipam_dir = self.ipam.dir
        self.state_dir = os.path.join(run_root, "network")
        self.up_dir = os.path.join(self.state_dir, "up")
        self.lock = HostLock(self.config.lock)
        self.cni = CNI(self.config.cni_path, inherit=lambda: (self.lock.fd,) if self.lock.fd >= 0 else ())
        self.firewall = Firewall()
        self.dns = Aardvark(find_aardvark(self.config.aardvark), os.path.join(self.state_dir, "aardvark-dns"),
                            self.config.dns_port)

    # === networks ================================================================================

    def default(self) -> Network:
        """The default bridge network ("bridge"), made on first use together with docker's two
        pseudo networks "host" and "none".  Its subnet and bridge follow the configuration
        (BUDU_DEFAULT_SUBNET, BUDU_DEFAULT_BRIDGE) whenever no container is on it; a subnet the host
        already uses (podman's 10.88.0.0/16 on podman0, say) is refused, naming the option."""
        subnet, bridge = self._default_settings()
        n = self.store.network_by_name(DEFAULT_NETWORK)
        if n is not None and (n.subnet, n.bridge) == (str(subnet), bridge):
            return n
        host = host_networks(exclude_devs=[bridge])
        clash = overlapping(str(subnet), host)
        if clash:
            raise ConfigError(
                f"the default network's subnet {subnet} overlaps {clash} on this host: set BUDU_DEFAULT_SUBNET "
                f"to a free subnet{self._suggest(host)}")
        for other in self.store.networks():
            if other.name != DEFAULT_NETWORK and other.subnet and subnet.overlaps(ipaddress.ip_network(other.subnet)):
                raise ConfigError(f"the default network's subnet {subnet} overlaps network {other.name}'s "
                                  f"{other.subnet}: set BUDU_DEFAULT_SUBNET to a free subnet{self._suggest(host)}")
        if n is None:
            return self._predefined()
        with self.lock.held():   # reconfigured: follow, unless containers are on it
            if self.store.endpoints(network_id=n.id):
                return n
            self._teardown(n)
            with self.db.tx() as conn:
                conn.execute("UPDATE networks SET subnet = ?, gateway = ?, bridge = ?, options = ? WHERE id = ?",
                             (str(subnet), validate.gateway(subnet, None), bridge,
                              json.dumps(_bridge_options(bridge), sort_keys=True), n.id))
        return self.store.network(n.id)  # type: ignore[return-value]

    def _default_settings(self) -> tuple[ipaddress.IPv4Network, str]:
        try:
            subnet = validate.subnet(self.config.default_subnet)
        except ConfigError as e:
            raise ConfigError(f"{e} (the default network's subnet, BUDU_DEFAULT_SUBNET)") from None
        self._check_bridge_name(self.config.default_bridge, "BUDU_DEFAULT_BRIDGE")
        return subnet, self.config.default_bridge

    def _predefined(self) -> Network:
        """The rows of "bridge", "host" and "none" (made if missing; the host is checked when the
        default bridge is first set up)."""
        n = self.store.network_by_name(DEFAULT_NETWORK)
        if n is not None:
            return n
        subnet, bridge = self._default_settings()
        now = time.time()
        nets = [
            Network(id=new_id(), name="bridge", driver="bridge", subnet=str(subnet),
                    gateway=validate.gateway(subnet, None), bridge=bridge, internal=False, labels={},
                    options=_bridge_options(bridge), created=now),
            Network(id=new_id(), name="host", driver="host", subnet="", gateway="", bridge="", internal=False,
                    labels={}, options={}, created=now),
            Network(id=new_id(), name="none", driver="null", subnet="", gateway="", bridge="", internal=False,
                    labels={}, options={}, created=now),
        ]
        with self.db.tx() as conn:
            for n in nets:
                if conn.execute("SELECT 1 FROM networks WHERE name = ?", (n.name,)).fetchone() is None:
                    Store.insert_network(conn, n)
        return self.store.network_by_name(DEFAULT_NETWORK)  # type: ignore[return-value]

    def _suggest(self, host: Sequence) -> str:
        taken = [h.net for h in host] + [ipaddress.ip_network(n.subnet) for n in self.store.networks() if n.subnet]
        for second in range(100, 255):
            cand = ipaddress.ip_network(f"10.{second}.0.0/16")
            if not any(cand.overlaps(t) for t in taken):
                return f", for example BUDU_DEFAULT_SUBNET={cand}"
        return ""

    def _check_bridge_name(self, bridge: str, option: str) -> None:
        validate.ifname(bridge, f"bridge name ({option})")

    def create(self, name: str, subnet: str | None = None, gateway: str | None = None, internal: bool = False,
               labels: dict | None = None, options: dict | None = None, driver: str = "bridge") -> Network:
        if name in PREDEFINED:
            raise ConfigError(f"operation is not permitted on predefined {name} network")
        if not validate.NAME_RE.match(name or ""):
            raise ConfigError(f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        if driver != "bridge":
            raise ConfigError(f'plugin "{driver}" not found')
        if gateway and not subnet:
            raise ConfigError("every ip-range or gateway must have a corresponding subnet")
        options = {str(k): str(v) for k, v in (options or {}).items()}
        labels = {str(k): str(v) for k, v in (labels or {}).items()}
        if OPT_MTU in options and not (options[OPT_MTU].isdigit() and 68 <= int(options[OPT_MTU]) <= 65535):
            raise ConfigError(f"invalid MTU {options[OPT_MTU]!r}")
        wanted = validate.subnet(subnet) if subnet else None
        gw = validate.gateway(wanted, gateway) if wanted else None
        self._predefined()
        nid = new_id()
        bridge = options.get(OPT_BRIDGE_NAME) or f"budu-{nid[:10]}"
        self._check_bridge_name(bridge, OPT_BRIDGE_NAME)
        own = {n.bridge for n in self.store.networks() if n.bridge}
        host = host_networks(exclude_devs=sorted(own))
        with self.db.tx():
            existing = self.store.networks()
            if any(n.name == name for n in existing):
                raise ConfigError(f"network with name {name} already exists")
            if bridge in {n.bridge for n in existing} or (link_exists(bridge) and bridge not in own):
                raise ConfigError(f"bridge {bridge} is already in use ({OPT_BRIDGE_NAME})")
            used = [ipaddress.ip_network(n.subnet) for n in existing if n.subnet] + [h.net for h in host]
            if wanted is not None:
                if any(wanted.overlaps(u) for u in used):
                    raise ConfigError("Pool overlaps with other one on this address space")
                chosen = wanted
            else:
                chosen = self._pick_subnet(used)
                gw = validate.gateway(chosen, None)
            net = Network(id=nid, name=name, driver="bridge", subnet=str(chosen), gateway=gw or "", bridge=bridge,
                          internal=bool(internal), labels=labels, options=options, created=time.time(),
                          user_subnet=wanted is not None)
            Store.insert_network(self.db.conn, net)
        return net

    def _pick_subnet(self, used: Sequence[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
        first = int(ipaddress.ip_address(self.config.pool_first))
        last = int(ipaddress.ip_address(self.config.pool_last))
        for start in range(first, last + 1, 256):
            cand = ipaddress.ip_network((start, 24))
            if not any(cand.overlaps(u) for u in used):
                return cand
        raise ConfigError("could not find an available, non-overlapping IPv4 address pool among the defaults "
                          "to assign to the network")

    def get(self, ref: str) -> Network:
        """By name, id, or unique id prefix."""
        n = self.store.network_by_name(ref) or self.store.network(ref)
        if n is None and ref in PREDEFINED:
            self._predefined()
            n = self.store.network_by_name(ref)
        if n is not None:
            return n
        if ref and re.fullmatch(r"[0-9a-f]+", ref):
            found = self.store.networks_by_prefix(ref)
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise ConfigError(f"network {ref} is ambiguous ({len(found)} matches found based on ID prefix)")
        raise NotFound(f"network {ref} not found")

    def list(self, filters: dict[str, list[str]] | None = None) -> list[Network]:
        self._predefined()
        filters = {k: list(v) for k, v in (filters or {}).items() if v}
        for key in filters:
            if key not in FILTERS:
                raise ConfigError(f"invalid filter '{key}'")
        busy = {r.network_id for r in self.store.endpoints()}
        out = []
        for n in self.store.networks():
            if "name" in filters and not any(v in n.name for v in filters["name"]):
                continue
            if "id" in filters and not any(v in n.id for v in filters["id"]):
                continue
            if "driver" in filters and n.driver not in filters["driver"]:
                continue
            if "scope" in filters and "local" not in filters["scope"]:
                continue
            if "type" in filters:
                for t in filters["type"]:
                    if t not in ("builtin", "custom"):
                        raise ConfigError(f"invalid filter: 'type'='{t}'")
                if ("builtin" if n.predefined else "custom") not in filters["type"]:
                    continue
            if "label" in filters and not all(self._label_match(n.labels, v) for v in filters["label"]):
                continue
            if "dangling" in filters:
                v = filters["dangling"][-1].lower()
                if v not in ("true", "false", "1", "0"):
                    raise ConfigError(f"invalid filter 'dangling={v}'")
                dangling = not n.predefined and n.id not in busy
                if dangling != (v in ("true", "1")):
                    continue
            out.append(n)
        return out

    @staticmethod
    def _label_match(labels: dict, spec: str) -> bool:
        key, eq, value = spec.partition("=")
        return key in labels and (not eq or labels[key] == value)

    def inspect(self, ref: str | Network) -> dict:
        """docker's NetworkResource, with the containers attached (Name: their first DNS name, which
        the engine passes as the container's name)."""
        n = ref if isinstance(ref, Network) else self.get(ref)
        eps = {r.container_id: r.endpoint.container(r.names[0] if r.names else "")
               for r in self.store.endpoints(network_id=n.id) if r.state == "attached"}
        return n.inspect(eps)

    def remove(self, ref: str, in_use: bool = False) -> None:
        """Remove a user-defined network and everything its bridge had on the host."""
        n = self.get(ref)
        if n.predefined:
            raise ConfigError(f"{n.name} is a pre-defined network and cannot be removed")
        with self.lock.held():
            if in_use or self.store.endpoints(network_id=n.id):
                raise StateError(f"error while removing network: network {n.name} id {n.id} has active endpoints")
            self._teardown(n)
            self.ipam.remove_network(n.id)
            self.store.delete_network(n.id)
            self._sweep_if_idle()

    def prune(self, in_use: set[str]) -> list[str]:
        """Remove the user-defined networks no container uses (`in_use`: names or ids); their names."""
        removed = []
        for n in self.store.networks():
            if n.predefined or n.id in in_use or n.name in in_use or self.store.endpoints(network_id=n.id):
                continue
            try:
                self.remove(n.id)
            except StateError:
                continue
            removed.append(n.name)
        return removed

    # === the host side of a network ==============================================================

    def _marker(self, n: Network) -> str:
        return os.path.join(self.up_dir, n.id)

    def _ensure(self, n: Network) -> None:
        """The network's netfilter rules, before its first container (the bridge itself is made
        by the bridge plugin).  Done once per boot: a marker in the run directory says so."""
        if os.path.exists(self._marker(n)) and is_bridge(n.bridge):
            return
        if not link_exists(n.bridge):
            clash = overlapping(n.subnet, host_networks(exclude_devs=[n.bridge]))
            if clash:
                hint = " (set BUDU_DEFAULT_SUBNET to a free subnet)" if n.name == DEFAULT_NETWORK else ""
                raise ConfigError(f"network {n.name}: its subnet {n.subnet} overlaps {clash} on this host{hint}")
        elif not is_bridge(n.bridge):
            raise ConfigError(f"network {n.name}: {n.bridge} exists on this host and is not a bridge")
        self.firewall.setup(NetRules(bridge=n.bridge, subnet=n.subnet, gateway=n.gateway, internal=n.internal,
                                     masquerade=n.masquerade, dns=n.dns))
        os.makedirs(self.up_dir, exist_ok=True)
        with open(self._marker(n), "w"):
            pass
        os.makedirs(HOST_UP_DIR, exist_ok=True)  # and host-wide: the shared chains are in use
        with open(os.path.join(HOST_UP_DIR, n.bridge), "w"):
            pass

    def _teardown(self, n: Network) -> None:
        if n.driver != "bridge":
            return
        self.firewall.teardown(n.bridge)
        delete_bridge(n.bridge)
        if self.dns.remove(n.id):
            self.dns.reload()
        for marker in (self._marker(n), os.path.join(HOST_UP_DIR, n.bridge)):
            try:
                os.unlink(marker)
            except FileNotFoundError:
                pass

    def _sweep_if_idle(self) -> None:
        """With no network of any budu root set up on this host, drop the chains nobody uses any
        more.  Host-wide: another root's networks (another BUDU_ROOT, the tests') share them."""
        for d in (self.up_dir, HOST_UP_DIR):
            try:
                if os.listdir(d):
                    return
            except FileNotFoundError:
                pass
        self.firewall.sweep()

    def shutdown(self) -> None:
        """Undo everything this root has on the host (every endpoint, netns, bridge, rule and the DNS
        server), keeping the network definitions: the state after a reboot.  For tests, and for an
        uninstall."""
        with self.lock.held():
            errors: list[BuduError] = []
            for row in self.store.endpoints():
                try:
                    self._del(row)
                except BuduError as e:
                    errors.append(e)
            for cid, path in self.store.netns().items():
                try:
                    netns_mod.delete(path)
                    self.store.delete_netns(cid)
                except BuduError as e:
                    errors.append(e)
            for n in self.store.networks():
                try:
                    self._teardown(n)
                except BuduError as e:
                    errors.append(e)
            self.dns.stop()
            self._sweep_if_idle()
            if errors:
                raise errors[0]

    # === a container's network life ===============================================================

    def netns_create(self, container_id: str) -> str:
        """A persistent network namespace for the container, loopback up; idempotent."""
        path = netns_mod.path_for(container_id)
        self.store.add_netns(container_id, path)   # first the row: a crash leaves nothing unrecorded
        if netns_mod.exists(path):
            return path
        netns_mod.create(container_id)
        self.cni.exec("ADD", {"cniVersion": CNI_VERSION, "name": "budu-loopback", "type": "loopback"},
                      container_id, path, "lo")
        return path

    def netns_delete(self, container_id: str) -> None:
        """Detach whatever is still attached, then remove the namespace; idempotent."""
        rows = self.store.endpoints(container_id=container_id)
        if rows:
            with self.lock.held():
                for row in self.store.endpoints(container_id=container_id):
                    self._del(row)
                    self._refresh_dns(row.network_id)
        path = self.store.netns().get(container_id) or netns_mod.path_for(container_id)
        netns_mod.delete(path)
        self.store.delete_netns(container_id)

    def attach(self, net: Network, container_id: str, netns: str, ifname: str, *, ip: str | None = None,
               mac: str | None = None, port_mappings: list[dict] | None = None, aliases: Sequence[str] = (),
               names: Sequence[str] = (), dns_servers: Sequence[str] = ()) -> Endpoint:
        """Give the container an interface on `net` (CNI ADD: bridge + host-local, then portmap for
        `port_mappings`, the portMappings that port_mappings() made) and register its DNS names
        (`names`: container name, short id...; `aliases`: --network-alias) on user-defined networks.
        `dns_servers` (docker's --dns) is where the DNS server forwards this container's other
        queries; by default, the host's resolvers."""
        if net.driver != "bridge":
            raise ConfigError(f"cannot attach a container to the {net.name} network this way (driver {net.driver})")
        validate.ifname(ifname)
        static = validate.static_ip(net, ip)
        if mac:
            mac = validate.mac(mac)
        names = [str(x) for x in names if x]
        aliases = [str(x) for x in aliases if x]
        if net.dns:
            for x in names + aliases:
                check_name(x)
        try:
            upstream = [str(ipaddress.ip_address(s.strip())) for s in dns_servers]
        except ValueError as e:
            raise ConfigError(f"invalid DNS server: {e}") from None
        mappings = [{"hostPort": int(m["hostPort"]), "containerPort": int(m["containerPort"]),
                     "protocol": str(m.get("protocol") or "tcp").lower(), "hostIP": ports_mod.host_ip(m.get("hostIP"))}
                    for m in port_mappings or []]
        rc: dict = {}
        if static:
            rc["ips"] = [static]
        if mac:
            rc["mac"] = mac
        if mappings:
            rc["portMappings"] = mappings
        with self.lock.held():
            current = self.store.network(net.id)
            if current is None:
                raise NotFound(f"network {net.name} not found")
            net = current
            old = self.store.endpoint(net.id, container_id)
            if old is not None:
                if old.state == "attached" and old.netns == netns and netns_mod.exists(netns):
                    who = names[0] if names else container_id[:12]
                    raise StateError(f"endpoint with name {who} already exists in network {net.name}")
                self._del(old)   # what a crash left
            self._ensure(net)
            conflist = self._conflist(net, bool(mappings))
            ep = Endpoint(network=net.id, ifname=ifname, ip="", prefix=0, gateway="", mac="", id=new_id(),
                          container_id=container_id, static_ip=static)
            try:
                self.store.begin_endpoint(ep, netns, names, aliases, upstream,
                                          {"conflist": conflist, "runtimeConfig": rc}, mappings)
            except PortTaken as e:
                raise ports_mod.already_allocated(e.host_ip, e.host_port) from None
            except sqlite3.IntegrityError:
                raise ConfigError(f"container {container_id[:12]} already has an interface {ifname}") from None
            try:
                result = self.cni.add(conflist, container_id, netns, ifname, rc)
                ep = self._endpoint_from(result, ep, net)
                if net.internal:   # no way out over IPv6 link-local either
                    sysctl(f"net/ipv6/conf/{net.bridge}/disable_ipv6", "1")
                    if ep.host_ifname:
                        sysctl(f"net/ipv6/conf/{ep.host_ifname}/disable_ipv6", "1")
                self.store.finish_endpoint(ep, result)
                if net.dns:
                    self._refresh_dns(net.id)
            except BaseException as e:
                try:
                    self.cni.delete(conflist, container_id, netns, ifname, rc, None)
                    self.store.delete_endpoint(ep.id)
                    if net.dns:
                        self._refresh_dns(net.id)
                except BuduError:
                    pass   # the row stays: detach or gc finish it
                if isinstance(e, CNIError):
                    raise self._user_error(e, net, static) from None
                raise
        return ep

    def detach(self, net: Network, container_id: str, netns: str | None, ifname: str) -> None:
        """CNI DEL: the interface (if the netns is still there), the address, the port forwards,
        the DNS names.  Works with the netns gone (after a crash); idempotent."""
        with self.lock.held():
            row = self.store.endpoint(net.id, container_id)
            if row is not None:
                self._del(row, netns)
            elif net.driver == "bridge" and container_id in self.ipam.leases(net.id).values():
                # nothing recorded: still make sure host-local holds no address for it
                ns = netns if netns and netns_mod.exists(netns) else ""
                self.cni.delete(self._conflist(net, False), container_id, ns, ifname)
            if net.dns:
                self._refresh_dns(net.id)

    def _del(self, row: EndpointRow, netns: str | None = None) -> None:
        ns = next((p for p in (netns, row.netns) if p and netns_mod.exists(p)), "")
        cfg = row.cni_config
        self.cni.delete(cfg["conflist"], row.container_id, ns, row.endpoint.ifname, cfg.get("runtimeConfig"),
                        row.cni_result)
        self.store.delete_endpoint(row.endpoint.id)

    def gc(self, live_container_ids: Iterable[str]) -> None:
        """Remove what containers that no longer exist left: endpoints (addresses, port forwards,
        DNS names), network namespaces, host-local leases nobody recorded, stale DNS files."""
        live = set(live_container_ids)
        stale = [r for r in self.store.endpoints() if r.container_id not in live]
        stale_ns = {c: p for c, p in self.store.netns().items() if c not in live}
        known = {n.id for n in self.store.networks()}
        recorded = {(r.network_id, r.container_id) for r in self.store.endpoints()}
        leases = self.ipam.stale(known, recorded, live)
        stale_dns = [f for f in self.dns.networks() if f not in known]
        if not (stale or stale_ns or leases or stale_dns):
            return
        with self.lock.held():
            touched = set()
            for row in stale:
                try:
                    self._del(row)
                    touched.add(row.network_id)
                except BuduError:
                    continue   # left for the next gc
            for cid, path in stale_ns.items():
                try:
                    netns_mod.delete(path)
                    self.store.delete_netns(cid)
                except BuduError:
                    continue
            recorded = {(r.network_id, r.container_id) for r in self.store.endpoints()}
            for lease in self.ipam.stale(known, recorded, live):
                self.ipam.release(lease)
            for f in stale_dns:
                self.dns.remove(f)
            for nid in touched:
                self._refresh_dns(nid, reload=False)
            if touched or stale_dns:
                self.dns.reload()

    def dns_server(self, net: Network) -> str | None:
        """The nameserver for a container on `net`: the gateway, where aardvark-dns answers (None
        on the default bridge, where docker has no name resolution, or without aardvark-dns)."""
        return net.gateway if net.dns and self.dns.available else None

    def rename(self, container_id: str, names: Sequence[str]) -> None:
        """New DNS names for a renamed container on every network it is on."""
        with self.lock.held():
            for nid in self.store.set_names(container_id, [n for n in names if n]):
                self._refresh_dns(nid)

    # === what the engine shows ===================================================================

    def port_mappings(self, port_bindings: dict | None, exposed: dict | None,
                      publish_all: bool) -> tuple[list[dict], dict]:
        """ports.port_mappings, minding the host ports other budu containers publish."""
        taken = [(p.host_ip, p.host_port, p.protocol) for p in self.store.ports()]
        return ports_mod.port_mappings(port_bindings, exposed, publish_all, taken)

    def published(self, container_id: str, exposed: dict | None = None) -> dict:
        """docker's NetworkSettings.Ports for a running container (what `budu port` prints)."""
        maps = [{"hostIP": p.host_ip, "hostPort": p.host_port, "containerPort": p.container_port,
                 "protocol": p.protocol} for p in self.store.ports(container_id)]
        return ports_mod.docker_ports(maps, exposed)

    def endpoints(self, container_id: str) -> list[tuple[Network, Endpoint]]:
        out = []
        for r in self.store.endpoints(container_id=container_id):
            n = self.store.network(r.network_id)
            if n is not None and r.state == "attached":
                out.append((n, r.endpoint))
        return out

    def dns_names(self, net: Network, names: Sequence[str], aliases: Sequence[str]) -> list[str]:
        """docker's DNSNames: what the container answers to on `net`."""
        return list(dict.fromkeys([*names, *aliases])) if net.dns else []

    # === helpers =================================================================================

    def _conflist(self, n: Network, with_ports: bool) -> dict:
        bridge: dict = {
            "type": "bridge", "bridge": n.bridge, "isGateway": True, "ipMasq": False, "hairpinMode": True,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": n.subnet, "gateway": n.gateway}]],
                     "routes": [] if n.internal else [{"dst": "0.0.0.0/0"}], "dataDir": self.ipam_dir},
            "capabilities": {"ips": True, "mac": True},
        }
        if n.mtu:
            bridge["mtu"] = n.mtu
        plugins = [bridge]
        if with_ports:
            plugins.append({"type": "portmap", "snat": True, "capabilities": {"portMappings": True}})
        return {"cniVersion": CNI_VERSION, "name": n.id, "plugins": plugins}

    @staticmethod
    def _endpoint_from(result: dict, ep: Endpoint, net: Network) -> Endpoint:
        ifaces = result.get("interfaces") or []
        idx = next((i for i, f in enumerate(ifaces) if f.get("sandbox") and f.get("name") == ep.ifname), None)
        ips = [i for i in result.get("ips") or [] if "." in i.get("address", "")]
        mine = [i for i in ips if i.get("interface") == idx] or ips
        if not mine:
            raise KernelError(f"network {net.name}: the bridge plugin gave {ep.ifname} no IPv4 address")
        address, _, prefix = mine[0]["address"].partition("/")
        host_if = next((f.get("name", "") for f in ifaces if not f.get("sandbox") and f.get("name") != net.bridge), "")
        return Endpoint(network=ep.network, ifname=ep.ifname, ip=address, prefix=int(prefix or net.prefix),
                        gateway=net.gateway, mac=ifaces[idx].get("mac", "") if idx is not None else "", id=ep.id,
                        container_id=ep.container_id, static_ip=ep.static_ip, host_ifname=host_if)

    @staticmethod
    def _user_error(e: CNIError, net: Network, static: str) -> BuduError:
        msg = e.msg.lower()
        if static and ("not available" in msg or "already" in msg or "allocated" in msg):
            return ConfigError("Address already in use")
        if "no ip addresses available" in msg:
            return ConfigError(f"no available IPv4 addresses on this network's address pools: {net.name} ({net.id})")
        return e

    def _refresh_dns(self, network_id: str, reload: bool = True) -> None:
        """Rewrite a network's DNS file from budu.db and tell aardvark-dns."""
        n = self.store.network(network_id)
        if n is None or not n.dns or not self.dns.available:
            return
        records = []
        for r in self.store.endpoints(network_id=network_id):
            if r.state != "attached" or not r.endpoint.ip:
                continue
            names = self.dns_names(n, r.names, r.aliases)
            names += [f"{x}.{n.name}" for x in names]
            records.append(Record(r.container_id, r.endpoint.ip, names, r.dns_servers))
        if records:
            self.dns.write(n.id, n.gateway, records, internal=n.internal,
                           upstream=nameservers(self.config.resolv_conf))
        else:
            self.dns.remove(n.id)
        if reload:
            self.dns.reload()
            if records and not self.dns.serving(n.gateway):
                raise KernelError(f"network {n.name}: the DNS server (aardvark-dns) does not listen on "
                                  f"{n.gateway}:{self.dns.port}; is another DNS server on the host bound to "
                                  "every address?")
