"""Networks as objects: create, inspect, list, remove, prune, and the errors docker gives."""

from __future__ import annotations

import ipaddress
import os
import re

import pytest
from nettest import TEST_BRIDGE, TEST_SUBNET, host_ipv4

from budu.errors import ConfigError, NotFound, StateError
from budu.network import NetworkConfig, Networks

NETWORK_KEYS = {"Name", "Id", "Created", "Scope", "Driver", "EnableIPv4", "EnableIPv6", "IPAM", "Internal",
                "Attachable", "Ingress", "ConfigFrom", "ConfigOnly", "Containers", "Options", "Labels"}


def test_default_network_and_the_pseudo_networks(env):
    d = env.nets.default()
    assert (d.name, d.driver, d.subnet, d.gateway, d.bridge) == ("bridge", "bridge", TEST_SUBNET, "10.199.0.1",
                                                               TEST_BRIDGE)
    assert env.nets.default() == d   # made once
    j = d.inspect()
    assert set(j) == NETWORK_KEYS
    assert j["IPAM"] == {"Driver": "default", "Options": {},
                         "Config": [{"Subnet": TEST_SUBNET, "Gateway": "10.199.0.1"}]}
    assert j["Options"]["com.docker.network.bridge.name"] == TEST_BRIDGE
    assert j["Options"]["com.docker.network.bridge.default_bridge"] == "true"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", j["Created"])
    assert [n.name for n in env.nets.list()] == ["bridge", "host", "none"]
    assert env.nets.get("host").inspect()["Driver"] == "host"
    assert env.nets.get("none").inspect()["Driver"] == "null"
    assert env.nets.get("none").inspect()["IPAM"]["Config"] == []
    for name in ("bridge", "host", "none"):
        with pytest.raises(ConfigError, match=f"{name} is a pre-defined network and cannot be removed"):
            env.nets.remove(name)
        with pytest.raises(ConfigError, match=f"operation is not permitted on predefined {name} network"):
            env.nets.create(name)


def test_create_inspect_list_remove(env):
    nets = env.nets
    a = nets.create("front", subnet="10.201.0.0/24", labels={"tier": "web", "env": "test"},
                    options={"com.docker.network.driver.mtu": "1400"})
    b = nets.create("back", internal=True)
    assert re.fullmatch(r"[0-9a-f]{64}", a.id) and a.id != b.id
    assert (a.subnet, a.gateway, a.bridge) == ("10.201.0.0/24", "10.201.0.1", "budu-" + a.id[:10])
    assert len(a.bridge) <= 15 and a.user_subnet and not b.user_subnet
    j = nets.inspect("front")
    assert set(j) == NETWORK_KEYS
    assert j["Name"] == "front" and j["Id"] == a.id and j["Scope"] == "local" and j["Driver"] == "bridge"
    assert j["IPAM"]["Config"] == [{"Subnet": "10.201.0.0/24", "Gateway": "10.201.0.1"}]
    assert j["Labels"] == {"tier": "web", "env": "test"}
    assert j["Options"] == {"com.docker.network.driver.mtu": "1400"}
    assert j["Internal"] is False and j["Containers"] == {} and j["EnableIPv6"] is False
    assert nets.inspect("back")["Internal"] is True
    # a subnet from the pool: a /24 of 10.89-10.255 that nothing else uses
    sb = ipaddress.ip_network(b.subnet)
    assert sb.prefixlen == 24 and ipaddress.ip_network("10.89.0.0/16").supernet(new_prefix=8).supernet_of(sb)
    assert b.gateway == str(sb.network_address + 1)
    c = nets.create("third")
    assert c.subnet != b.subnet and not ipaddress.ip_network(c.subnet).overlaps(sb)

    # get: name, id, unique prefix
    assert nets.get("front") == a and nets.get(a.id) == a and nets.get(a.id[:7]) == a
    with pytest.raises(NotFound, match="network nosuch not found"):
        nets.get("nosuch")

    names = lambda f: [n.name for n in nets.list(f)]  # noqa: E731
    assert names(None) == ["bridge", "host", "none", "front", "back", "third"]
    assert names({"name": ["ron"]}) == ["front"]
    assert names({"id": [a.id[:12]]}) == ["front"]
    assert names({"label": ["tier"]}) == ["front"]
    assert names({"label": ["tier=web", "env=test"]}) == ["front"]
    assert names({"label": ["tier=db"]}) == []
    assert names({"driver": ["bridge"]}) == ["bridge", "front", "back", "third"]
    assert names({"type": ["builtin"]}) == ["bridge", "host", "none"]
    assert names({"type": ["custom"]}) == ["front", "back", "third"]
    assert names({"dangling": ["true"]}) == ["front", "back", "third"]
    assert names({"dangling": ["false"]}) == ["bridge", "host", "none"]
    with pytest.raises(ConfigError, match="invalid filter 'color'"):
        nets.list({"color": ["red"]})

    nets.remove("front")
    with pytest.raises(NotFound):
        nets.get("front")
    with pytest.raises(StateError, match="has active endpoints"):
        nets.remove("back", in_use=True)
    assert sorted(nets.prune({"back"})) == ["third"]
    assert [n.name for n in nets.list({"type": ["custom"]})] == ["back"]
    nets.remove(b.id[:12])
    assert names(None) == ["bridge", "host", "none"]


def test_bad_input(env):
    nets = env.nets
    nets.create("dup", subnet="10.202.0.0/24")
    with pytest.raises(ConfigError, match="network with name dup already exists"):
        nets.create("dup")
    with pytest.raises(ConfigError, match="invalid network name"):
        nets.create("no/slash")
    with pytest.raises(ConfigError, match='plugin "overlay" not found'):
        nets.create("ov", driver="overlay")
    with pytest.raises(ConfigError, match="invalid subnet 10.203.0.5/24: it should be 10.203.0.0/24"):
        nets.create("x", subnet="10.203.0.5/24")
    with pytest.raises(ConfigError, match="IPv4"):
        nets.create("x", subnet="fd00:1::/64")
    with pytest.raises(ConfigError, match="gateway 10.9.9.9 is not a usable address"):
        nets.create("x", subnet="10.203.0.0/24", gateway="10.9.9.9")
    with pytest.raises(ConfigError, match="corresponding subnet"):
        nets.create("x", gateway="10.203.0.1")
    with pytest.raises(ConfigError, match="bridge name"):
        nets.create("x", options={"com.docker.network.bridge.name": "a-much-too-long-name"})
    g = nets.create("gw", subnet="10.203.0.0/24", gateway="10.203.0.254")
    assert g.gateway == "10.203.0.254"
    assert [n.name for n in nets.list({"type": ["custom"]})] == ["dup", "gw"]   # nothing half-made


def test_subnet_overlap(env):
    nets = env.nets
    nets.create("one", subnet="10.204.0.0/24")
    for s in ("10.204.0.0/24", "10.204.0.128/25", "10.204.0.0/16", "10.199.5.0/24"):   # the last: the default's
        with pytest.raises(ConfigError, match="^Pool overlaps with other one on this address space$"):
            nets.create("two", subnet=s)
    addr = host_ipv4()
    if addr:   # a subnet holding one of the host's own addresses
        with pytest.raises(ConfigError, match="Pool overlaps"):
            nets.create("two", subnet=str(ipaddress.ip_network(f"{addr}/28", strict=False)))
    with pytest.raises(ConfigError, match="invalid subnet 127.0.0.0/24"):
        nets.create("two", subnet="127.0.0.0/24")
    assert [n.name for n in nets.list({"type": ["custom"]})] == ["one"]


def test_default_subnet_that_the_host_uses(env):
    """A default subnet that clashes with the host (podman's 10.88/16 on podman0, say) is refused
    with the option to set, instead of breaking the other network."""
    addr = host_ipv4()
    if not addr:
        pytest.fail("the host has no global IPv4 address")
    clash = str(ipaddress.ip_network(f"{addr}/16", strict=False))
    other = Networks(env.root + "2", env.root + "2/run", env.db,
                     NetworkConfig(default_subnet=clash, default_bridge="budut9"))
    with pytest.raises(ConfigError, match="BUDU_DEFAULT_SUBNET") as e:
        other.default()
    assert clash in str(e.value) and "overlaps" in str(e.value)
    with pytest.raises(ConfigError, match="BUDU_DEFAULT_SUBNET"):
        Networks(env.root + "2", env.root + "2/run", env.db,
                 NetworkConfig(default_subnet="10.300.0.0/16")).default()


def test_default_network_follows_its_configuration(env):
    first = env.nets.default()
    moved = Networks(env.root, env.root + "/run", env.db,
                     NetworkConfig(default_subnet="10.198.0.0/16", default_bridge="budut8")).default()
    assert moved.id == first.id
    assert (moved.subnet, moved.gateway, moved.bridge) == ("10.198.0.0/16", "10.198.0.1", "budut8")
    assert moved.options["com.docker.network.bridge.name"] == "budut8"
    # with a container on it, it stays as it is until the container is gone
    box = env.box("a")
    env.nets.attach(moved, box.id, box.netns, "eth0")
    assert env.nets.default().subnet == "10.198.0.0/16"
    env.nets.netns_delete(box.id)
    assert env.nets.default().subnet == TEST_SUBNET
    assert not os.path.exists("/sys/class/net/budut8")
