"""Published ports: docker's bindings to portmap's mappings, host ports picked and checked, and a
busybox httpd answering through them from the host and from other namespaces."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest
from nettest import host_ipv4

from budu.errors import ConfigError
from budu.network import port_mappings
from budu.network.ports import ephemeral_range


def fetch(host: str, port: int, timeout: float = 3) -> str | None:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/index.html", timeout=timeout) as r:
            return r.read().decode()
    except (urllib.error.URLError, OSError):
        return None


def test_port_mappings_shapes(free_port):
    p = free_port()
    maps, ports = port_mappings({"80/tcp": [{"HostIp": "", "HostPort": str(p)}],
                                 "53/udp": [{"HostIp": "127.0.0.1", "HostPort": str(p)}]},
                                {"80/tcp": {}, "443/tcp": {}, "53/udp": {}}, False)
    assert maps == [{"hostPort": p, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"},
                    {"hostPort": p, "containerPort": 80, "protocol": "tcp", "hostIP": ""}]
    assert ports == {"53/udp": [{"HostIp": "127.0.0.1", "HostPort": str(p)}],
                     "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(p)}], "443/tcp": None}

    # -P: every exposed port gets a random one from the ephemeral range
    lo, hi = ephemeral_range()
    maps, ports = port_mappings({}, {"80/tcp": {}, "8443/tcp": {}}, True)
    assert [m["containerPort"] for m in maps] == [80, 8443]
    assert all(lo <= m["hostPort"] <= hi and m["hostIP"] == "" for m in maps)
    assert maps[0]["hostPort"] != maps[1]["hostPort"]
    assert ports["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": str(maps[0]["hostPort"])}]

    # a range: the first free port of it
    maps, _ = port_mappings({"80/tcp": [{"HostIp": "", "HostPort": f"{p}-{p + 5}"}]}, {}, False)
    assert maps[0]["hostPort"] == p

    with pytest.raises(ConfigError, match="invalid hostPort: 70000"):
        port_mappings({"80/tcp": [{"HostIp": "", "HostPort": "70000"}]}, {}, False)
    with pytest.raises(ConfigError, match="invalid proto: icmp"):
        port_mappings({"80/icmp": [{"HostPort": "80"}]}, {}, False)
    with pytest.raises(ConfigError, match="IPv4"):
        port_mappings({"80/tcp": [{"HostIp": "fd00::1", "HostPort": "80"}]}, {}, False)
    with pytest.raises(ConfigError, match=f"^Bind for 0.0.0.0:{p} failed: port is already allocated$"):
        port_mappings({"80/tcp": [{"HostPort": str(p)}], "81/tcp": [{"HostPort": str(p)}]}, {}, False)


def test_port_already_allocated(env, free_port):
    """A port the host listens on, or that another budu container publishes, is docker's "port is
    already allocated"; a random port never picks either."""
    nets = env.nets
    p = free_port()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", p))
    s.listen()
    try:
        with pytest.raises(ConfigError, match=f"^Bind for 0.0.0.0:{p} failed: port is already allocated$"):
            nets.port_mappings({"80/tcp": [{"HostIp": "", "HostPort": str(p)}]}, {}, False)
        with pytest.raises(ConfigError, match=f"Bind for 127.0.0.1:{p} failed: port is already allocated"):
            nets.port_mappings({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(p)}]}, {}, False)
    finally:
        s.close()

    a, b = env.box("a"), env.box("b")
    d = nets.default()
    maps, _ = nets.port_mappings({"80/tcp": [{"HostIp": "", "HostPort": str(p)}]}, {}, False)
    nets.attach(d, a.id, a.netns, "eth0", port_mappings=maps)
    assert nets.published(a.id) == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(p)}]}
    # planning (port_mappings) and claiming (attach) both know it is taken
    with pytest.raises(ConfigError, match=f"^Bind for 127.0.0.1:{p} failed: port is already allocated$"):
        nets.port_mappings({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(p)}]}, {}, False)
    with pytest.raises(ConfigError, match=f"^Bind for 127.0.0.1:{p} failed: port is already allocated$"):
        nets.attach(d, b.id, b.netns, "eth0",
                    port_mappings=[{"hostPort": p, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}])
    assert nets.endpoints(b.id) == []   # nothing half-made
    # the same number on udp is another port
    maps_udp, _ = nets.port_mappings({"80/udp": [{"HostIp": "", "HostPort": str(p)}]}, {}, False)
    assert maps_udp[0]["hostPort"] == p
    # a random port is never one budu already publishes
    taken = {p}
    for _ in range(5):
        m, _ = nets.port_mappings({}, {"80/tcp": {}}, True)
        assert m[0]["hostPort"] not in taken
    nets.detach(d, a.id, a.netns, "eth0")
    assert nets.published(a.id) == {}
    maps, _ = nets.port_mappings({"80/tcp": [{"HostIp": "", "HostPort": str(p)}]}, {}, False)   # free again
    assert maps[0]["hostPort"] == p


def test_published_port_answers(env, free_port):
    """8080->80 on the default bridge answers the host on 127.0.0.1 and on its own address, and
    another container through the host's address; 127.0.0.1:Q:80 answers on loopback only."""
    nets = env.nets
    d = nets.default()
    web, client = env.box("web"), env.box("client")
    p, q = free_port(8080), free_port(18181)
    maps, ports = nets.port_mappings({"80/tcp": [{"HostIp": "", "HostPort": str(p)},
                                                 {"HostIp": "127.0.0.1", "HostPort": str(q)}]},
                                     {"80/tcp": {}}, False)
    assert ports == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(p)}, {"HostIp": "127.0.0.1", "HostPort": str(q)}]}
    ep = nets.attach(d, web.id, web.netns, "eth0", port_mappings=maps)
    assert ep.ip.startswith("10.199.") and ep.prefix == 16 and ep.gateway == "10.199.0.1"
    web.httpd()
    hello = "hello from web\n"
    assert fetch("127.0.0.1", p) == hello
    assert fetch("127.0.0.1", q) == hello
    addr = host_ipv4()
    if addr:
        assert fetch(addr, p) == hello
        assert fetch(addr, q, timeout=1.5) is None    # published on 127.0.0.1 only
    # another container, on a user network, through the host's address (or its gateway)
    other = nets.create("elsewhere", subnet="10.205.0.0/24")
    nets.attach(other, client.id, client.netns, "eth0")
    assert client.wget(addr or "10.205.0.1", p) == hello
    assert client.wget("10.205.0.1", q, timeout=1.5) is None
    # ... and a container on the same bridge (hairpin)
    neighbour = env.box("neighbour")
    nets.attach(d, neighbour.id, neighbour.netns, "eth0")
    assert neighbour.wget(addr or "10.199.0.1", p) == hello
    # detached: the forward is gone with it
    nets.detach(d, web.id, web.netns, "eth0")
    assert fetch("127.0.0.1", p, timeout=1) is None


def test_random_host_port(env):
    d = env.nets.default()
    web = env.box("web")
    maps, ports = env.nets.port_mappings({"80/tcp": [{"HostIp": "", "HostPort": ""}]}, {}, False)
    port = maps[0]["hostPort"]
    lo, hi = ephemeral_range()
    assert lo <= port <= hi and ports["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": str(port)}]
    env.nets.attach(d, web.id, web.netns, "eth0", port_mappings=maps)
    web.httpd()
    assert fetch("127.0.0.1", port) == "hello from web\n"
