"""budu's netfilter rules: what a network gets, and two budu roots side by side (one going away
leaves the other's rules, the shared chains and its published ports alone)."""

from __future__ import annotations

import urllib.request

from nettest import Env, sh

from budu.network.firewall import FORWARD, INPUT, ISOLATION, POSTROUTING, NetRules, Ruleset, rules_for


def test_rules_for_a_network():
    r = rules_for(NetRules(bridge="b1", subnet="10.1.0.0/24", gateway="10.1.0.1", dns=True))
    assert f"-A {ISOLATION} -o b1 -j DROP" in r["filter"]
    assert f"-I {FORWARD} -i b1 ! -o b1 -m conntrack ! --ctstate DNAT -j {ISOLATION}" in r["filter"]
    assert f"-A {FORWARD} -i b1 -j ACCEPT" in r["filter"]
    assert f"-A {INPUT} -i b1 -d 10.1.0.1/32 -p udp -m udp --dport 53 -j ACCEPT" in r["filter"]
    assert not any("DROP" in x for x in r["filter"] if x.startswith(f"-A {INPUT}") or x.startswith(f"-I {INPUT}"))
    assert r["nat"] == [f"-A {POSTROUTING} -s 10.1.0.0/24 ! -o b1 -j MASQUERADE"]
    assert r["raw"] == ["-A BUDU-PREROUTING -i b1 -d 127.0.0.0/8 -j DROP"]

    i = rules_for(NetRules(bridge="b2", subnet="10.2.0.0/24", gateway="10.2.0.1", internal=True, dns=True))
    assert i["nat"] == []   # no way out
    assert f"-I {FORWARD} -i b2 ! -o b2 -j DROP" in i["filter"] and f"-I {FORWARD} -o b2 ! -i b2 -j DROP" in i["filter"]
    assert f"-A {INPUT} -i b2 -j DROP" in i["filter"]
    # the DNS accepts are inserted, so they come before the drop whatever the order of networks
    assert f"-I {INPUT} -i b2 -d 10.2.0.1/32 -p udp -m udp --dport 53 -j ACCEPT" in i["filter"]
    assert all("-i b2" in x or "-o b2" in x for t in i.values() for x in t)   # each rule names its bridge

    m = rules_for(NetRules(bridge="b3", subnet="10.3.0.0/24", gateway="10.3.0.1", masquerade=False))
    assert m["nat"] == []


def test_ruleset_parsing():
    rs = Ruleset(chains={"filter": {"FORWARD", FORWARD, ISOLATION}},
                 rules={"filter": [f"-A FORWARD -j {FORWARD}", f"-A {FORWARD} -i b1 ! -o b1 -j {ISOLATION}",
                                   f'-A {ISOLATION} -o b1 -m comment --comment "a b" -j DROP']})
    assert rs.jumps_to("filter", FORWARD) == [f"-A FORWARD -j {FORWARD}"]
    assert rs.chain_rules("filter", ISOLATION) == [f'-A {ISOLATION} -o b1 -m comment --comment "a b" -j DROP']
    assert rs.has_chain("filter", ISOLATION) and not rs.has_chain("nat", ISOLATION)


def test_two_roots_side_by_side(env, tmp_path, free_port):
    other = Env(str(tmp_path / "other"), subnet="10.198.0.0/16", bridge="budut1")
    try:
        web, far = env.box("web"), other.box("far")
        p = free_port()
        env.nets.attach(env.nets.default(), web.id, web.netns, "eth0",
                        port_mappings=[{"hostPort": p, "containerPort": 80, "protocol": "tcp", "hostIP": ""}])
        q = free_port(p + 1)
        other.nets.attach(other.nets.default(), far.id, far.netns, "eth0",
                          port_mappings=[{"hostPort": q, "containerPort": 80, "protocol": "tcp", "hostIP": ""}])
        web.httpd()
        # one bridge cannot reach the other
        assert web.wget(other.nets.endpoints(far.id)[0][1].ip, timeout=1.5) is None
    finally:
        other.close()   # its root goes away entirely...
    save = sh("iptables-save").stdout
    assert "budut1" not in save and "budut0" in save and "CNI-HOSTPORT-DNAT" in save
    with urllib.request.urlopen(f"http://127.0.0.1:{p}/index.html", timeout=3) as r:   # ...and this one works
        assert r.read() == b"hello from web\n"
