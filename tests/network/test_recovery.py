"""After a crash: detach with the netns gone, an attach cut short, gc for containers that are gone.
Addresses are freed, forwards and names removed, and nothing is left on the host."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time

from nettest import sh, wait_for

from budu.network import netns as netns_mod


def dnat_for(container_id: str) -> bool:
    return container_id in sh("iptables-save", "-t", "nat").stdout


def leases(env, net) -> dict[str, str]:
    d = os.path.join(env.nets.ipam_dir, net.id)
    out = {}
    for f in os.listdir(d) if os.path.isdir(d) else []:
        if f[0].isdigit():
            with open(os.path.join(d, f)) as fh:
                out[f] = fh.read().split()[0]
    return out


def test_detach_after_the_netns_is_gone(env, free_port):
    nets = env.nets
    net = nets.create("fixed", subnet="10.210.0.0/24")
    a, b = env.box("a"), env.box("b")
    p = free_port()
    ep = nets.attach(net, a.id, a.netns, "eth0", ip="10.210.0.20", names=["a"],
                     port_mappings=[{"hostPort": p, "containerPort": 80, "protocol": "tcp", "hostIP": ""}])
    assert leases(env, net) == {"10.210.0.20": a.id} and dnat_for(a.id)
    assert ep.host_ifname and os.path.exists(f"/sys/class/net/{ep.host_ifname}")

    sh("ip", "netns", "delete", a.ns, check=True)    # the crash: the namespace and its veth are gone
    assert wait_for(lambda: not os.path.exists(f"/sys/class/net/{ep.host_ifname}"))   # (the kernel's own pace)
    nets.detach(net, a.id, None, "eth0")
    assert leases(env, net) == {} and not dnat_for(a.id)
    assert nets.endpoints(a.id) == [] and nets.published(a.id) == {}
    nets.detach(net, a.id, None, "eth0")             # idempotent
    nets.netns_delete(a.id)
    nets.netns_delete(a.id)

    ep_b = nets.attach(net, b.id, b.netns, "eth0", ip="10.210.0.20")   # the address is free again
    assert ep_b.ip == "10.210.0.20"
    nets.netns_delete(b.id)                          # detaches what is still attached
    assert leases(env, net) == {} and not os.path.exists(b.netns)


def test_attach_cut_short(env):
    """A budu killed after CNI ADD but before it recorded the result: the row written first lets
    detach (or gc) undo it."""
    nets = env.nets
    net = nets.create("cut", subnet="10.211.0.0/24")
    a = env.box("a")
    nets._ensure(net)
    conflist = nets._conflist(net, False)
    from budu.network.model import Endpoint
    ep = Endpoint(network=net.id, ifname="eth0", ip="", prefix=0, gateway="", mac="", id="e" * 64,
                  container_id=a.id)
    nets.store.begin_endpoint(ep, a.netns, ["a"], [], [], {"conflist": conflist, "runtimeConfig": {}}, [])
    nets.cni.add(conflist, a.id, a.netns, "eth0", {})   # ... and here budu died
    assert leases(env, net) and "eth0" in a.run("ip", "-o", "link").stdout
    nets.detach(net, a.id, a.netns, "eth0")
    assert leases(env, net) == {} and "eth0" not in a.run("ip", "-o", "link").stdout
    # the next attach finds nothing in its way
    assert nets.attach(net, a.id, a.netns, "eth0").ip.startswith("10.211.0.")


def test_gc_removes_what_gone_containers_left(env, free_port):
    nets = env.nets
    user = nets.create("user", subnet="10.212.0.0/24")
    d = nets.default()
    gone, kept = env.box("gone"), env.box("kept")
    p = free_port()
    eg = nets.attach(user, gone.id, gone.netns, "eth0", names=["gone"],
                     port_mappings=[{"hostPort": p, "containerPort": 80, "protocol": "tcp", "hostIP": ""}])
    nets.attach(d, gone.id, gone.netns, "eth1")
    ek = nets.attach(user, kept.id, kept.netns, "eth0", names=["kept"])
    kept.httpd()
    # a lease host-local holds for a container budu has no record of (crash before the row)
    orphan = os.path.join(nets.ipam_dir, user.id, "10.212.0.99")
    with open(orphan, "w") as f:
        f.write("f" * 64 + "\r\neth0")
    dns_file = os.path.join(nets.dns.dir, user.id)
    assert " gone" in open(dns_file).read() or ",gone" in open(dns_file).read()

    nets.gc({kept.id})
    assert nets.endpoints(gone.id) == [] and not dnat_for(gone.id) and nets.published(gone.id) == {}
    assert not netns_mod.exists(gone.netns) and not os.path.exists(gone.netns)
    assert wait_for(lambda: not os.path.exists(f"/sys/class/net/{eg.host_ifname}"))
    assert not os.path.exists(orphan)
    assert set(leases(env, user).values()) == {kept.id}
    assert "gone" not in open(dns_file).read()
    assert [n.name for n, _ in nets.endpoints(kept.id)] == ["user"]
    assert sh("busybox", "wget", "-q", "-O", "-", f"http://{ek.ip}/index.html").stdout == "hello from kept\n"
    nets.gc({kept.id})   # nothing left to do

    nets.gc(set())
    assert nets.store.endpoints() == [] and nets.store.netns() == {}
    assert leases(env, user) == {} and not os.path.exists(dns_file)


CHURN = r"""
import os, sys
from budu.metadata import Database
from budu.network import NetworkConfig, Networks
root, subnet, bridge, resolv, port = sys.argv[1:6]
nets = Networks(root, os.path.join(root, "run"), Database(root),
                NetworkConfig(default_subnet=subnet, default_bridge=bridge, resolv_conf=resolv))
net = nets.get("churn")
print("ready", flush=True)
i = 0
while True:
    cid = os.urandom(32).hex()
    ns = nets.netns_create(cid)
    nets.attach(net, cid, ns, "eth0", names=[f"c{i}"],
                port_mappings=[{"hostPort": int(port), "containerPort": 80, "protocol": "tcp", "hostIP": ""}])
    nets.netns_delete(cid)
    i += 1
"""


def test_killed_at_any_point_gc_cleans_up(env, free_port):
    """budu SIGKILLed anywhere in netns_create/attach/netns_delete: the next gc leaves nothing
    (and the fixture checks the host once the root is shut down)."""
    nets = env.nets
    net = nets.create("churn", subnet="10.213.0.0/24")
    port = free_port()
    for delay in random.sample([0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4], 5):
        p = subprocess.Popen([sys.executable, "-c", CHURN, env.root, env.config.default_subnet,
                              env.config.default_bridge, env.config.resolv_conf, str(port)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.stdout.readline() == "ready\n", p.stderr.read()
        time.sleep(delay)
        p.kill()
        p.wait()
        nets.gc(set())    # no container is alive
        assert nets.store.endpoints() == [] and nets.store.netns() == {}, f"after {delay}s"
        assert leases(env, net) == {}
        assert "CNI-DN-" not in sh("iptables-save", "-t", "nat").stdout
        assert not [n for n in os.listdir("/run/netns") if n.startswith("budu-")]
        assert nets.dns.networks() == []
    # and the network works as before
    box = env.box("after")
    assert nets.attach(net, box.id, box.netns, "eth0",
                       port_mappings=[{"hostPort": port, "containerPort": 80, "protocol": "tcp", "hostIP": ""}]).ip


PARALLEL = r"""
import os, sys
from budu.metadata import Database
from budu.network import NetworkConfig, Networks
root, subnet, bridge, resolv = sys.argv[1:5]
nets = Networks(root, os.path.join(root, "run"), Database(root),
                NetworkConfig(default_subnet=subnet, default_bridge=bridge, resolv_conf=resolv))
net = nets.get("busy")
for i in range(4):
    cid = os.urandom(32).hex()
    print(nets.attach(net, cid, nets.netns_create(cid), "eth0").ip, flush=True)
"""


def test_parallel_attaches_get_distinct_addresses(env):
    nets = env.nets
    net = nets.create("busy", subnet="10.214.0.0/28")   # 13 addresses for 12 containers
    procs = [subprocess.Popen([sys.executable, "-c", PARALLEL, env.root, env.config.default_subnet,
                               env.config.default_bridge, env.config.resolv_conf],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    ips = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        ips += out.split()
    assert len(ips) == 12 and len(set(ips)) == 12
    assert len(leases(env, net)) == 12
    nets.gc(set())
    assert leases(env, net) == {}
