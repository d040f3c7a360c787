"""The network layer's rows in budu.db (schema: migration 3 in budu.metadata): networks, endpoints,
published ports and network namespaces.  Every change is one transaction."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass

from budu.metadata import Database
from budu.network.model import Endpoint, Network


@dataclass(frozen=True)
class EndpointRow:
    """An endpoint as stored: what the engine sees (Endpoint) plus what DEL and DNS need."""
    endpoint: Endpoint
    netns: str
    state: str            # 'adding' until CNI ADD has succeeded, then 'attached'
    names: list[str]
    aliases: list[str]
    dns_servers: list[str]
    cni_config: dict      # {"conflist": ..., "runtimeConfig": ...}
    cni_result: dict | None

    @property
    def container_id(self) -> str:
        return self.endpoint.container_id

    @property
    def network_id(self) -> str:
        return self.endpoint.network


@dataclass(frozen=True)
class PortRow:
    host_ip: str
    host_port: int
    protocol: str
    container_port: int
    container_id: str


def _network(r: sqlite3.Row) -> Network:
    return Network(id=r["id"], name=r["name"], driver=r["driver"], subnet=r["subnet"], gateway=r["gateway"],
                   bridge=r["bridge"], internal=bool(r["internal"]), labels=json.loads(r["labels"]),
                   options=json.loads(r["options"]), created=r["created"], user_subnet=bool(r["user_subnet"]))


def _endpoint(r: sqlite3.Row) -> EndpointRow:
    ep = Endpoint(network=r["network_id"], ifname=r["ifname"], ip=r["ip"], prefix=r["prefix"],
                  gateway=r["gateway"], mac=r["mac"], id=r["id"], container_id=r["container_id"],
                  static_ip=r["static_ip"], host_ifname=r["host_ifname"])
    return EndpointRow(endpoint=ep, netns=r["netns"], state=r["state"], names=json.loads(r["names"]),
                       aliases=json.loads(r["aliases"]), dns_servers=json.loads(r["dns_servers"]),
                       cni_config=json.loads(r["cni_config"]),
                       cni_result=json.loads(r["cni_result"]) if r["cni_result"] else None)


class PortTaken(Exception):
    """A host port another endpoint already publishes (the caller words the user's error)."""

    def __init__(self, host_ip: str, host_port: int, protocol: str) -> None:
        super().__init__(f"{host_ip or '0.0.0.0'}:{host_port}/{protocol}")
        self.host_ip, self.host_port, self.protocol = host_ip, host_port, protocol


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- networks --------------------------------------------------------------------------------

    def networks(self) -> list[Network]:
        return [_network(r) for r in self.db.query("SELECT * FROM networks ORDER BY created, name")]

    def network(self, id_: str) -> Network | None:
        rows = self.db.query("SELECT * FROM networks WHERE id = ?", (id_,))
        return _network(rows[0]) if rows else None

    def network_by_name(self, name: str) -> Network | None:
        rows = self.db.query("SELECT * FROM networks WHERE name = ?", (name,))
        return _network(rows[0]) if rows else None

    def networks_by_prefix(self, prefix: str) -> list[Network]:
        esc = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return [_network(r) for r in self.db.query("SELECT * FROM networks WHERE id LIKE ? ESCAPE '\\'",
                                                   (esc + "%",))]

    @staticmethod
    def insert_network(conn: sqlite3.Connection, n: Network) -> None:
        conn.execute(
            "INSERT INTO networks (id, name, driver, subnet, gateway, bridge, internal, user_subnet, labels,"
            " options, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (n.id, n.name, n.driver, n.subnet, n.gateway, n.bridge, int(n.internal), int(n.user_subnet),
             json.dumps(n.labels, sort_keys=True), json.dumps(n.options, sort_keys=True), n.created))

    def delete_network(self, id_: str) -> None:
        with self.db.tx() as conn:
            conn.execute("DELETE FROM networks WHERE id = ?", (id_,))

    # --- endpoints -------------------------------------------------------------------------------

    def endpoints(self, network_id: str | None = None, container_id: str | None = None) -> list[EndpointRow]:
        sql, args = "SELECT * FROM endpoints", []
        where = []
        if network_id is not None:
            where.append("network_id = ?")
            args.append(network_id)
        if container_id is not None:
            where.append("container_id = ?")
            args.append(container_id)
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_endpoint(r) for r in self.db.query(sql + " ORDER BY created", tuple(args))]

    def endpoint(self, network_id: str, container_id: str) -> EndpointRow | None:
        rows = self.endpoints(network_id, container_id)
        return rows[0] if rows else None

    def begin_endpoint(self, ep: Endpoint, netns: str, names: list[str], aliases: list[str],
                       dns_servers: list[str], cni_config: dict, ports: list[dict]) -> None:
        """Record the intent to attach, and claim its host ports, in one transaction (PortTaken if
        another endpoint publishes one of them, sqlite3.IntegrityError if the container already has
        an endpoint on the network or that interface name)."""
        with self.db.tx() as conn:
            for p in ports:
                ip, port, proto = p.get("hostIP", ""), int(p["hostPort"]), p["protocol"]
                clash = conn.execute(
                    "SELECT host_ip FROM ports WHERE host_port = ? AND protocol = ? AND"
                    " (host_ip = ? OR host_ip = '' OR ? = '')", (port, proto, ip, ip)).fetchone()
                if clash:
                    raise PortTaken(ip, port, proto)
            conn.execute(
                "INSERT INTO endpoints (id, network_id, container_id, ifname, netns, state, static_ip, names,"
                " aliases, dns_servers, cni_config, created) VALUES (?, ?, ?, ?, ?, 'adding', ?, ?, ?, ?, ?, ?)",
                (ep.id, ep.network, ep.container_id, ep.ifname, netns, ep.static_ip, json.dumps(names),
                 json.dumps(aliases), json.dumps(dns_servers), json.dumps(cni_config), time.time()))
            for p in ports:
                conn.execute("INSERT INTO ports (endpoint_id, host_ip, host_port, protocol, container_port)"
                             " VALUES (?, ?, ?, ?, ?)", (ep.id, p.get("hostIP", ""), int(p["hostPort"]),
                                                         p["protocol"], int(p["containerPort"])))

    def finish_endpoint(self, ep: Endpoint, result: dict) -> None:
        with self.db.tx() as conn:
            conn.execute("UPDATE endpoints SET state = 'attached', ip = ?, prefix = ?, gateway = ?, mac = ?,"
                         " host_ifname = ?, cni_result = ? WHERE id = ?",
                         (ep.ip, ep.prefix, ep.gateway, ep.mac, ep.host_ifname, json.dumps(result), ep.id))

    def set_names(self, container_id: str, names: list[str]) -> list[str]:
        """New DNS names for every endpoint of a container; the networks whose names changed."""
        with self.db.tx() as conn:
            rows = conn.execute("SELECT network_id FROM endpoints WHERE container_id = ?", (container_id,)).fetchall()
            conn.execute("UPDATE endpoints SET names = ? WHERE container_id = ?", (json.dumps(names), container_id))
        return [r["network_id"] for r in rows]

    def delete_endpoint(self, endpoint_id: str) -> None:
        with self.db.tx() as conn:
            conn.execute("DELETE FROM ports WHERE endpoint_id = ?", (endpoint_id,))
            conn.execute("DELETE FROM endpoints WHERE id = ?", (endpoint_id,))

    # --- ports -----------------------------------------------------------------------------------

    def ports(self, container_id: str | None = None) -> list[PortRow]:
        sql = ("SELECT p.host_ip, p.host_port, p.protocol, p.container_port, e.container_id FROM ports p"
               " JOIN endpoints e ON e.id = p.endpoint_id")
        args: tuple = ()
        if container_id is not None:
            sql += " WHERE e.container_id = ?"
            args = (container_id,)
        return [PortRow(r[0], r[1], r[2], r[3], r[4]) for r in self.db.query(sql + " ORDER BY p.rowid", args)]

    # --- network namespaces ----------------------------------------------------------------------

    def add_netns(self, container_id: str, path: str) -> None:
        with self.db.tx() as conn:
            conn.execute("INSERT OR REPLACE INTO netns (container_id, path, created) VALUES (?, ?, ?)",
                         (container_id, path, time.time()))

    def netns(self) -> dict[str, str]:
        return {r["container_id"]: r["path"] for r in self.db.query("SELECT * FROM netns")}

    def delete_netns(self, container_id: str) -> None:
        with self.db.tx() as conn:
            conn.execute("DELETE FROM netns WHERE container_id = ?", (container_id,))
