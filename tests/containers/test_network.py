"""Networking as a docker user meets it: the default bridge, published ports, user networks with
names, isolation between networks, internal networks.  The session checks that the host's links,
addresses, routes and netfilter rules end as they began."""

from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest
from budutest import host_ipv4, port_free


def _free_port() -> int:
    for port in range(18000, 19000):
        if port_free(port):
            return port
    raise AssertionError("no free port")


def _get(url: str, timeout: float = 3) -> str:
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def www(tmp_path):
    (tmp_path / "index.html").write_text("hello from budu\n")
    return str(tmp_path)


def test_default_bridge(budu):
    out = budu("run", "--rm", "busybox", "sh", "-c", "ip -o -4 addr show eth0; ip route; cat /etc/hosts").stdout
    ip = re.search(r"inet (10\.196\.\d+\.\d+)/16", out).group(1)
    assert "default via 10.196.0.1 dev eth0" in out
    assert re.search(rf"^{re.escape(ip)}\t[0-9a-f]{{12}}$", out, re.M)
    info = json.loads(budu("network", "inspect", "bridge").stdout)[0]
    assert info["Name"] == "bridge" and info["Driver"] == "bridge"
    assert info["IPAM"]["Config"][0]["Subnet"] == "10.196.0.0/16"
    names = budu("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert {"bridge", "host", "none"} <= set(names)


def test_published_port(budu, www):
    port = _free_port()
    budu("run", "-d", "--name", "web", "-p", f"{port}:80", "-v", f"{www}:/www", "busybox", "httpd", "-f", "-p", "80", "-h", "/www")
    assert _get(f"http://127.0.0.1:{port}/") == "hello from budu\n"
    host = host_ipv4()
    assert host, "the host needs a non-loopback IPv4 address for this test"
    assert _get(f"http://{host}:{port}/") == "hello from budu\n"
    # from another container, through the host's address
    out = budu("run", "--rm", "busybox", "wget", "-qO-", f"http://{host}:{port}/").stdout
    assert out == "hello from budu\n"
    assert budu("port", "web").stdout == f"80/tcp -> 0.0.0.0:{port}\n"
    assert budu("port", "web", "80").stdout == f"0.0.0.0:{port}\n"
    assert f"0.0.0.0:{port}->80/tcp" in budu("ps", "--format", "{{.Ports}}").stdout
    ports = budu.inspect("web")["NetworkSettings"]["Ports"]
    assert ports == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
    # the same host port again: docker's error, and nothing half-made
    p = budu("run", "-d", "--name", "clash", "-p", f"{port}:80", "busybox", "sleep", "30", ok=False)
    assert p.returncode == 125 and "port is already allocated" in p.stderr
    assert budu("inspect", "--format", "{{.State.Status}}", "clash").stdout == "created\n"
    budu("rm", "-f", "web", "clash")
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)


def test_localhost_only_and_random_ports(budu, www):
    port = _free_port()
    budu("run", "-d", "--name", "local", "-p", f"127.0.0.1:{port}:80", "-p", "80", "-v", f"{www}:/www",
         "busybox", "httpd", "-f", "-p", "80", "-h", "/www")
    assert _get(f"http://127.0.0.1:{port}/") == "hello from budu\n"
    host = host_ipv4()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{host}:{port}/", timeout=1)
    mappings = budu("port", "local").stdout.splitlines()
    assert f"80/tcp -> 127.0.0.1:{port}" in mappings
    random_port = next(int(m.rsplit(":", 1)[1]) for m in mappings if m.startswith("80/tcp -> 0.0.0.0:"))
    assert _get(f"http://127.0.0.1:{random_port}/") == "hello from budu\n"


def test_user_network_names_aliases_and_isolation(budu, www):
    budu("network", "create", "--subnet", "10.197.1.0/24", "front")
    budu("network", "create", "--subnet", "10.197.2.0/24", "back")
    budu("run", "-d", "--name", "api", "--network", "front", "--network-alias", "service", "-v", f"{www}:/www",
         "busybox", "httpd", "-f", "-p", "80", "-h", "/www")
    assert budu("run", "--rm", "--network", "front", "busybox", "wget", "-qO-", "http://api/").stdout == "hello from budu\n"
    assert budu("run", "--rm", "--network", "front", "busybox", "wget", "-qO-", "http://service/").stdout == "hello from budu\n"
    ip = budu("inspect", "--format", "{{(index .NetworkSettings.Networks \"front\").IPAddress}}", "api").stdout.strip()
    assert ip.startswith("10.197.1.")
    # another network: neither the name nor the address reaches it
    p = budu("run", "--rm", "--network", "back", "--init", "busybox", "timeout", "3", "wget", "-qO-", f"http://{ip}/", ok=False)
    assert p.returncode != 0 and "hello" not in p.stdout
    p = budu("run", "--rm", "--network", "back", "--init", "busybox", "timeout", "3", "wget", "-qO-", "http://api/", ok=False)
    assert p.returncode != 0
    info = json.loads(budu("network", "inspect", "front").stdout)[0]
    assert [c["Name"] for c in info["Containers"].values()] == ["api"]
    p = budu("network", "rm", "front", ok=False)
    assert p.returncode == 1 and "active endpoints" in p.stderr
    # connect joins a running container to a second network
    budu("network", "connect", "back", "api")
    assert budu("run", "--rm", "--network", "back", "busybox", "wget", "-qO-", "http://api/").stdout == "hello from budu\n"
    budu("network", "disconnect", "back", "api")
    budu("rm", "-f", "api")
    budu("network", "rm", "front", "back")


def test_internal_network_has_no_way_out(budu, www):
    port = _free_port()
    budu("run", "-d", "--name", "pub", "-p", f"{port}:80", "-v", f"{www}:/www", "busybox", "httpd", "-f", "-p", "80", "-h", "/www")
    budu("network", "create", "--internal", "--subnet", "10.197.3.0/24", "sealed")
    host = host_ipv4()
    p = budu("run", "--rm", "--network", "sealed", "--init", "busybox", "timeout", "3", "wget", "-qO-", f"http://{host}:{port}/", ok=False)
    assert p.returncode != 0 and "hello" not in p.stdout
    out = budu("run", "--rm", "--network", "sealed", "busybox", "ip", "route").stdout
    assert "default" not in out
    budu("rm", "-f", "pub")
    budu("network", "rm", "sealed")


def test_bad_network_input(budu):
    p = budu("run", "--rm", "--network", "nowhere", "busybox", "true", ok=False)
    assert p.returncode == 125 and "nowhere" in p.stderr and "not found" in p.stderr
    assert budu("ps", "-aq").stdout == ""
    budu("network", "create", "--subnet", "10.197.4.0/24", "one")
    p = budu("network", "create", "--subnet", "10.197.4.128/25", "two", ok=False)
    assert p.returncode == 1 and "overlaps" in p.stderr
    p = budu("run", "--rm", "-p", "notaport", "busybox", "true", ok=False)
    assert p.returncode == 125 and "Traceback" not in p.stderr
    budu("network", "rm", "one")
    assert "two" not in budu("network", "ls", "--format", "{{.Name}}").stdout


def test_container_network_mode(budu, www):
    budu("run", "-d", "--name", "base", "-v", f"{www}:/www", "busybox", "httpd", "-f", "-p", "80", "-h", "/www")
    out = budu("run", "--rm", "--network", "container:base", "busybox", "wget", "-qO-", "http://127.0.0.1/").stdout
    assert out == "hello from budu\n"


def test_publish_all_ranges_labels_prune(budu, www):
    base = _free_port()
    budu("run", "-d", "--name", "many", "--expose", "81", "-P", "-p", f"{base}-{base + 1}:80-81",
         "-v", f"{www}:/www", "busybox", "httpd", "-f", "-p", "80", "-h", "/www")
    ports = budu.inspect("many")["NetworkSettings"]["Ports"]
    assert ports["80/tcp"][0]["HostPort"] == str(base) and ports["81/tcp"][0]["HostPort"] == str(base + 1)
    assert _get(f"http://127.0.0.1:{base}/") == "hello from budu\n"
    budu("rm", "-f", "many")
    budu("network", "create", "--label", "team=web", "--subnet", "10.197.5.0/24", "--gateway", "10.197.5.254", "labelled")
    info = json.loads(budu("network", "inspect", "labelled").stdout)[0]
    assert info["Labels"] == {"team": "web"} and info["IPAM"]["Config"][0]["Gateway"] == "10.197.5.254"
    assert budu("network", "ls", "--filter", "label=team=web", "--format", "{{.Name}}").stdout == "labelled\n"
    out = budu("network", "prune", "-f").stdout
    assert "labelled" in out
    assert "labelled" not in budu("network", "ls", "--format", "{{.Name}}").stdout
