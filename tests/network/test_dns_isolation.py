"""User-defined networks: containers find each other by name and alias through aardvark-dns,
other names are forwarded to the host's resolvers, networks cannot reach each other, and an
internal network has no way out."""

from __future__ import annotations

import os

import pytest
from nettest import FakeResolver, host_ipv4, port_free, sh, wait_for

from budu.errors import ConfigError, KernelError, StateError

AARDVARK = any(os.access(p, os.X_OK) for p in ("/usr/libexec/podman/aardvark-dns", "/usr/lib/podman/aardvark-dns"))


@pytest.fixture
def aardvark_dns() -> None:
    """aardvark-dns comes with install.sh: its absence fails the test (never a skip)."""
    assert AARDVARK, "aardvark-dns is not installed (scripts/install.sh installs it)"


needs_dns = pytest.mark.usefixtures("aardvark_dns")


def resolves(box, name: str, server: str, want: str) -> bool:
    """aardvark-dns reloads on SIGHUP: give it a moment."""
    return bool(wait_for(lambda: want in box.nslookup(name, server), timeout=5, interval=0.1))


@needs_dns
def test_names_aliases_and_isolation(env, resolver):
    if not port_free(53, "127.0.0.54"):
        pytest.fail("127.0.0.54:53 is taken")
    nets = env.nets
    front = nets.create("front", subnet="10.206.0.0/24")
    other = nets.create("other", subnet="10.207.0.0/24")
    a, b, c = env.box("a"), env.box("b"), env.box("c")
    # a and c forward other names to the host's resolver (127.0.0.53, see conftest), b to its own
    # (docker's --dns)
    ea = nets.attach(front, a.id, a.netns, "eth0", names=["web", a.id[:12]], aliases=["webalias"])
    eb = nets.attach(front, b.id, b.netns, "eth0", names=["client", b.id[:12]], aliases=["cli"],
                     dns_servers=["127.0.0.54"])
    ec = nets.attach(other, c.id, c.netns, "eth0", names=["stranger"])
    assert nets.dns_server(front) == "10.206.0.1" and nets.dns_server(nets.default()) is None
    for box in (a, b, c):
        box.resolv(nets.dns_server(other if box is c else front))
        box.httpd()

    # by address, by name, by alias, by short id, by name.network, both ways
    assert b.wget(ea.ip) == "hello from a\n"
    assert resolves(b, "web", "10.206.0.1", ea.ip)
    assert b.nslookup("webalias", "10.206.0.1") == [ea.ip]
    assert b.nslookup(a.id[:12], "10.206.0.1") == [ea.ip]
    assert b.nslookup("web.front", "10.206.0.1") == [ea.ip]
    assert b.wget("web") == "hello from a\n"
    assert b.wget("webalias") == "hello from a\n"
    assert a.wget("client") == "hello from b\n"
    assert a.wget("cli") == "hello from b\n"
    # names on another network are not answered, its containers not reachable
    assert resolves(c, "stranger", "10.207.0.1", ec.ip)
    assert c.nslookup("web", "10.207.0.1") == []
    assert c.wget(ea.ip, timeout=1.5) is None
    assert a.wget(ec.ip, timeout=1.5) is None
    # other names go to the host's resolver, a loopback one (aardvark runs on the host), or the
    # container's own
    assert a.nslookup("outside.example", "10.206.0.1") == ["198.51.100.7"]
    assert "outside.example" in resolver.queries
    own = FakeResolver("127.0.0.54", {"outside.example": "198.51.100.8"})
    try:
        assert b.nslookup("outside.example", "10.206.0.1") == ["198.51.100.8"]
    finally:
        own.close()

    # the endpoint as docker shows it
    j = eb.docker(["cli"], nets.dns_names(front, ["client", b.id[:12]], ["cli"]))
    assert j["IPAddress"] == eb.ip and j["IPPrefixLen"] == 24 and j["Gateway"] == "10.206.0.1"
    assert j["NetworkID"] == front.id and len(j["EndpointID"]) == 64 and j["MacAddress"] == eb.mac
    assert j["DNSNames"] == ["client", b.id[:12], "cli"]
    cont = nets.inspect("front")["Containers"]
    assert cont[a.id] == {"Name": "web", "EndpointID": ea.id, "MacAddress": ea.mac,
                          "IPv4Address": f"{ea.ip}/24", "IPv6Address": ""}
    assert set(cont) == {a.id, b.id}
    with pytest.raises(StateError, match="has active endpoints"):
        nets.remove("front")

    # renamed, detached: the names follow
    nets.rename(a.id, ["www", a.id[:12]])
    assert resolves(b, "www", "10.206.0.1", ea.ip)
    assert b.nslookup("web", "10.206.0.1") == []
    nets.detach(front, a.id, a.netns, "eth0")
    assert wait_for(lambda: b.nslookup("www", "10.206.0.1") == [], timeout=5)
    nets.detach(front, b.id, b.netns, "eth0")
    nets.detach(other, c.id, c.netns, "eth0")
    assert wait_for(lambda: nets.dns.pid() is None, timeout=5)   # no network with names: no DNS server
    nets.remove("front")
    assert not os.path.exists(f"/sys/class/net/{front.bridge}")
    assert front.bridge not in sh("iptables-save").stdout
    assert not os.path.exists(os.path.join(nets.ipam_dir, front.id))
    assert not os.path.exists(os.path.join(nets.dns.dir, front.id))


@needs_dns
def test_internal_network_has_no_way_out(env, free_port, resolver):
    nets = env.nets
    d = nets.default()
    web = env.box("web")
    p = free_port()
    maps, _ = nets.port_mappings({"80/tcp": [{"HostIp": "", "HostPort": str(p)}]}, {}, False)
    ew = nets.attach(d, web.id, web.netns, "eth0", port_mappings=maps)
    web.httpd()

    inside = nets.create("inside", subnet="10.208.0.0/24", internal=True)
    x, y = env.box("x"), env.box("y")
    ex = nets.attach(inside, x.id, x.netns, "eth0", names=["x"])
    ey = nets.attach(inside, y.id, y.netns, "eth0", names=["y"])
    y.httpd()
    routes = x.run("ip", "route").stdout
    assert "default" not in routes and "10.208.0.0/24" in routes
    # its own network works, names included
    assert resolves(x, "y", "10.208.0.1", ey.ip)
    assert x.wget(ey.ip) == "hello from y\n"
    # ... but not the published port, through its gateway or (with a route it made itself) the host
    assert x.wget("10.208.0.1", p, timeout=1.5) is None
    assert x.run("ip", "route", "add", "default", "via", "10.208.0.1").returncode == 0
    addr = host_ipv4()
    if addr:
        assert x.wget(addr, p, timeout=1.5) is None
    assert x.wget(ew.ip, timeout=1.5) is None             # nor the other network
    # the host reaches it (replies are let back in), nothing is masqueraded for it
    assert sh("busybox", "wget", "-q", "-O", "-", f"http://{ey.ip}/index.html", timeout=5).stdout == "hello from y\n"
    assert "10.208.0.0/24" not in sh("iptables-save", "-t", "nat").stdout
    # names outside the network are not forwarded anywhere
    assert x.nslookup("outside.example", "10.208.0.1", timeout=2) == []
    assert "outside.example" not in resolver.queries
    assert ex.gateway == "10.208.0.1"


def test_static_ip_and_mac(env):
    nets = env.nets
    d = nets.default()
    auto = nets.create("auto")
    fixed = nets.create("fixed", subnet="10.209.0.0/24")
    a, b = env.box("a"), env.box("b")
    with pytest.raises(ConfigError, match="user specified IP address is supported on user defined networks only"):
        nets.attach(d, a.id, a.netns, "eth0", ip="10.199.0.50")
    with pytest.raises(ConfigError, match="only when connecting to networks with user configured subnets"):
        nets.attach(auto, a.id, a.netns, "eth0", ip=auto.gateway.replace(".1", ".50"))
    with pytest.raises(ConfigError, match="no configured subnet or ip-range contain the IP address 10.1.2.3"):
        nets.attach(fixed, a.id, a.netns, "eth0", ip="10.1.2.3")
    with pytest.raises(ConfigError, match="invalid MAC address"):
        nets.attach(fixed, a.id, a.netns, "eth0", mac="01:00:5e:00:00:01")
    ep = nets.attach(fixed, a.id, a.netns, "eth0", ip="10.209.0.50", mac="02:42:0a:d1:00:32")
    assert (ep.ip, ep.mac, ep.static_ip) == ("10.209.0.50", "02:42:0a:d1:00:32", "10.209.0.50")
    assert "10.209.0.50/24" in a.run("ip", "-o", "addr", "show", "eth0").stdout
    assert ep.docker([], [])["IPAMConfig"] == {"IPv4Address": "10.209.0.50"}
    with pytest.raises(ConfigError, match="^Address already in use$"):
        nets.attach(fixed, b.id, b.netns, "eth0", ip="10.209.0.50")
    assert nets.endpoints(b.id) == []
    with pytest.raises(StateError, match="already exists in network fixed"):
        nets.attach(fixed, a.id, a.netns, "eth0", names=["a"])
    # a second network on a second interface
    ep2 = nets.attach(d, a.id, a.netns, "eth1")
    assert ep2.ifname == "eth1" and ep2.ip.startswith("10.199.")
    assert [n.name for n, _ in nets.endpoints(a.id)] == ["fixed", "bridge"]


def test_a_full_network(env):
    nets = env.nets
    tiny = nets.create("tiny", subnet="10.215.0.0/30")   # the gateway and one container
    a, b = env.box("a"), env.box("b")
    assert nets.attach(tiny, a.id, a.netns, "eth0").ip == "10.215.0.2"
    with pytest.raises(ConfigError, match="^no available IPv4 addresses on this network's address pools: tiny"):
        nets.attach(tiny, b.id, b.netns, "eth0")
    assert nets.endpoints(b.id) == [] and "eth0" not in b.run("ip", "-o", "link").stdout
    nets.detach(tiny, a.id, a.netns, "eth0")
    assert nets.attach(tiny, b.id, b.netns, "eth0").ip == "10.215.0.2"


@needs_dns
def test_dns_server_that_cannot_listen(env):
    """Port 53 taken on every address: the attach fails with a clear error and leaves nothing."""
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("0.0.0.0", 53))
    except OSError:
        s.close()
        pytest.fail("port 53 is in use on the host")
    try:
        net = env.nets.create("nodns", subnet="10.216.0.0/24")
        a = env.box("a")
        with pytest.raises(KernelError, match=r"does not listen on 10\.216\.0\.1:53"):
            env.nets.attach(net, a.id, a.netns, "eth0", names=["a"])
        assert env.nets.endpoints(a.id) == [] and env.nets.ipam.leases(net.id) == {}
        assert "eth0" not in a.run("ip", "-o", "link").stdout
    finally:
        s.close()
