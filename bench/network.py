#!/usr/bin/env python3
"""What budu's bridge networking costs, side by side with podman's, on the same busybox image.

  bridge start    budu run --rm busybox true          vs  podman run --rm busybox true  (both on their
                                                          default bridge network)
  connection rate K sequential HTTP/1.0 connections to 127.0.0.1:PORT, PORT published (-p PORT:80)
                  to busybox httpd serving a small file; connections/s, median of the batches
  throughput      one download of a large file from the same httpd through 127.0.0.1:PORT into a
                  buffer (no disk); MiB/s, median of the downloads

Runs alternate between tools (and which goes first) so that a noisy moment hurts both; medians
and ratios budu/podman are printed with the issue's targets: start time ratio <= 1.0, rate and
throughput ratios >= 1.0.

Uses its own budu root, with the default network on BUDU_DEFAULT_SUBNET=10.201.0.0/16 and
BUDU_DEFAULT_BRIDGE=budub0 (budu's and podman's defaults are both 10.88.0.0/16), and podman's
default storage and default network (the image is loaded from `budu save`).  Should something
else on the host already route podman's default subnet (a budu0 bridge left up by a budu root
on its defaults, say), podman's port forwarding cannot work there: podman then gets a bridge
network of this script's own, set up like its default one (bridge, host-local, no DNS), and the
script says so.  Everything the script made is removed at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from benchlib import alternate, free_port, medians, podman_busybox, require, timed

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", "src"))
BUDU_SUBNET = "10.201.0.0/16"
BUDU_BRIDGE = "budub0"
SMALL = b"<html><body>budu network bench</body></html>\n" * 8   # ~370 bytes


def run(argv: list[str], env: dict | None = None) -> str:
    p = subprocess.run(argv, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed: {p.stderr.strip()}")
    return p.stdout.strip()


def fetch(port: int, path: str, buf: bytearray | None = None) -> int:
    """GET path over one HTTP/1.0 connection to 127.0.0.1:port, read to EOF, close; the body's
    length (checked against Content-Length).  With buf, the body is read into it and dropped."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        if buf is None:
            chunks = []
            while True:
                c = s.recv(65536)
                if not c:
                    break
                chunks.append(c)
            data = b"".join(chunks)
        else:
            view = memoryview(buf)
            n = s.recv_into(view)
            data = bytes(view[:n])
            while b"\r\n\r\n" not in data:
                m = s.recv_into(view)
                if not m:
                    break
                data += bytes(view[:m])
            total = len(data)
            while True:
                m = s.recv_into(view)
                if not m:
                    break
                total += m
    head, sep, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if not sep or b" 200 " not in status + b" ":
        raise OSError(f"bad response from 127.0.0.1:{port}{path}: {status[:80]!r}")
    got = len(body) if buf is None else total - len(head) - len(sep)
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length" and int(v) != got:
            raise OSError(f"short response from 127.0.0.1:{port}{path}: {got} of {int(v)} bytes")
    return got


def wait_http(port: int, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fetch(port, "/small.html")
            return
        except OSError as e:
            if time.monotonic() > deadline:
                sys.exit(f"{what} does not answer on 127.0.0.1:{port}: {e}")
            time.sleep(0.05)


def conn_rate(port: int, conns: int) -> float:
    t0 = time.perf_counter()
    for _ in range(conns):
        fetch(port, "/small.html")
    return conns / (time.perf_counter() - t0)


def throughput(port: int, size: int, buf: bytearray) -> float:
    t0 = time.perf_counter()
    got = fetch(port, "/big.bin", buf)
    dt = time.perf_counter() - t0
    if got != size:
        sys.exit(f"downloaded {got} bytes of {size} from 127.0.0.1:{port}")
    return size / dt / (1 << 20)


def budu_python() -> str:
    """The interpreter budu runs on (its wrapper's shebang, without -I -S, so its venv's
    site-packages are there)."""
    try:
        with open(shutil.which("budu") or "", "rb") as f:
            first = f.readline().decode(errors="replace")
        if first.startswith("#!"):
            exe = first[2:].split()[0]
            if os.path.basename(exe).startswith("python") and os.access(exe, os.X_OK):
                return exe
    except OSError:
        pass
    return "/opt/budu/venv/bin/python" if os.access("/opt/budu/venv/bin/python", os.X_OK) else sys.executable


def host_routes() -> list[tuple[ipaddress.IPv4Network, str]]:
    out = []
    for r in json.loads(run(["ip", "-j", "-4", "route", "show"]) or "[]"):
        if r.get("dst", "default") != "default":
            out.append((ipaddress.ip_network(r["dst"], strict=False), r.get("dev", "")))
    return out


def podman_network(name: str) -> tuple[str, list[ipaddress.IPv4Network]]:
    (net,) = json.loads(run(["podman", "network", "inspect", name]))
    subnets = [ipaddress.ip_network(s["subnet"]) for s in net.get("subnets") or []]
    return net.get("network_interface", ""), [s for s in subnets if s.version == 4]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10, help="alternating runs of each measurement (default 10)")
    ap.add_argument("--conns", type=int, default=1000, help="connections per batch (default 1000)")
    ap.add_argument("--size", type=int, default=200, help="MB in the downloaded file (default 200)")
    a = ap.parse_args()
    if a.runs < 1 or a.conns < 1 or a.size < 1:
        sys.exit("--runs, --conns and --size must be at least 1")
    require("budu", "podman", "runc", "ip")
    work = tempfile.mkdtemp(prefix="budu-bench-net-")
    root = os.path.join(work, "root")
    www = os.path.join(work, "www")
    env = dict(os.environ, BUDU_ROOT=root, BUDU_DEFAULT_SUBNET=BUDU_SUBNET, BUDU_DEFAULT_BRIDGE=BUDU_BRIDGE)
    pod_containers: list[str] = []
    pod_net_made = ""
    try:
        podman_image, podman_opts = podman_busybox(env)

        # podman's default network, unless the host already routes its subnet elsewhere
        iface, subnets = podman_network("podman")
        routes = host_routes()
        clash = [(n, dev) for n, dev in routes for s in subnets if n.overlaps(s) and dev != iface]
        pod_net_label = "podman's default network"
        if clash:
            taken = [n for n, _ in routes] + [ipaddress.ip_network(BUDU_SUBNET)] + subnets
            free = next((c for c in (ipaddress.ip_network(f"10.{i}.0.0/16") for i in range(202, 250))
                         if not any(c.overlaps(t) for t in taken)), None)
            if free is None:
                sys.exit(f"podman's default subnet is taken on this host ({clash[0][0]} on {clash[0][1]}) "
                         "and no 10.x.0.0/16 between 10.202 and 10.249 is free")
            pod_net_made = f"budu-bench-{os.getpid()}"
            run(["podman", "network", "create", "--disable-dns", "--subnet", str(free), pod_net_made])
            podman_opts += ["--network", pod_net_made]
            pod_net_label = f"podman network {pod_net_made} ({free}, bridge, no DNS)"
            print(f"note: {clash[0][0]} is routed to {clash[0][1]} on this host, which breaks podman's default "
                  f"network {', '.join(map(str, subnets))}; podman uses a bridge network of its own, {free}",
                  file=sys.stderr)

        os.makedirs(www)
        with open(os.path.join(www, "small.html"), "wb") as f:
            f.write(SMALL)
        size = a.size * 1000 * 1000
        with open(os.path.join(www, "big.bin"), "wb") as f:
            left = size
            while left:
                n = min(left, 4 << 20)
                f.write(os.urandom(n))
                left -= n

        # 1. bridge start: run --rm ... true on the default bridge, warm caches once each
        start = {
            "budu": lambda: timed(["budu", "run", "--rm", "busybox", "true"], env),
            "podman": lambda: timed(["podman", "run", "--rm", *podman_opts, podman_image, "true"]),
        }
        times = alternate(start, a.runs, warm=1, swap=True)

        # 2. and 3. through a published port to busybox httpd
        ports = {"budu": free_port(), "podman": free_port()}
        while ports["podman"] == ports["budu"]:
            ports["podman"] = free_port()
        httpd = ["httpd", "-f", "-p", "80", "-h", "/www"]
        run(["budu", "run", "-d", "--name", "bench-httpd", "-p", f"{ports['budu']}:80", "-v", f"{www}:/www:ro",
             "busybox", *httpd], env)
        pod_containers.append(run(["podman", "run", "-d", *podman_opts, "-p", f"{ports['podman']}:80",
                                   "-v", f"{www}:/www:ro", podman_image, *httpd]))
        for tool, port in ports.items():
            wait_http(port, f"{tool}'s httpd")

        for port in ports.values():   # warm up: connections, and the file into the page cache
            conn_rate(port, min(a.conns, 100))
        rates = alternate({k: lambda port=port: conn_rate(port, a.conns) for k, port in ports.items()}, a.runs,
                          swap=True)

        buf = bytearray(1 << 20)
        mibs = alternate({k: lambda port=port: throughput(port, size, buf) for k, port in ports.items()}, a.runs,
                         warm=1, swap=True)

        # the table
        med_start = medians(times, 1000)
        med_rate = medians(rates)
        med_mib = medians(mibs)
        rows = [
            (f"bridge start, run --rm true (ms)", med_start, "<= 1.0", lambda r: r <= 1.0),
            (f"connections/s ({a.conns} per batch)", med_rate, ">= 1.0", lambda r: r >= 1.0),
            (f"throughput, {a.size} MB download (MiB/s)", med_mib, ">= 1.0", lambda r: r >= 1.0),
        ]
        print(f"budu (default bridge {BUDU_SUBNET} on {BUDU_BRIDGE}) vs podman ({pod_net_label}, runc),")
        print(f"busybox image, medians of {a.runs} alternating runs; published ports reached at 127.0.0.1")
        print(f"  {'':<40} {'budu':>10} {'podman':>10} {'budu/podman':>12}  target")
        for name, med, target, ok in rows:
            ratio = med["budu"] / med["podman"]
            print(f"  {name:<40} {med['budu']:>10.1f} {med['podman']:>10.1f} {ratio:>12.2f}  {target}"
                  f" {'met' if ok(ratio) else 'MISSED'}")
        spread = {k: (min(v) * 1000, max(v) * 1000) for k, v in times.items()}
        print(f"  (start ms min-max: budu {spread['budu'][0]:.1f}-{spread['budu'][1]:.1f},"
              f" podman {spread['podman'][0]:.1f}-{spread['podman'][1]:.1f};"
              f" conn/s min-max: budu {min(rates['budu']):.0f}-{max(rates['budu']):.0f},"
              f" podman {min(rates['podman']):.0f}-{max(rates['podman']):.0f};"
              f" MiB/s min-max: budu {min(mibs['budu']):.0f}-{max(mibs['budu']):.0f},"
              f" podman {min(mibs['podman']):.0f}-{max(mibs['podman']):.0f})")
    finally:
        quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if os.path.isdir(root):
            subprocess.run(["sh", "-c", "budu ps -aq --no-trunc | xargs -r budu rm -f"], env=env, **quiet)
        for cid in pod_containers:
            subprocess.run(["podman", "rm", "-f", "-t", "0", cid], **quiet)
        if pod_net_made:
            subprocess.run(["podman", "network", "rm", "-f", pod_net_made], **quiet)
        if os.path.isdir(root):
            # budu's networks for this root off the host: bridge, rules, netns (as tests/containers do)
            code = (
                "import os, sys\n"
                "sys.path.insert(0, sys.argv[1])\n"
                "from budu.metadata import Database\n"
                "from budu.network import NetworkConfig, Networks\n"
                "root = sys.argv[2]\n"
                "config = NetworkConfig.from_env({'BUDU_DEFAULT_SUBNET': sys.argv[3], 'BUDU_DEFAULT_BRIDGE': sys.argv[4]})\n"
                "Networks(root, os.path.join(root, 'run'), Database(root), config).shutdown()\n"
            )
            p = subprocess.run([budu_python(), "-c", code, SRC, root, BUDU_SUBNET, BUDU_BRIDGE],
                               capture_output=True, text=True)
            if p.returncode != 0:
                print(f"warning: tearing down budu's networks for {root} failed: "
                      f"{(p.stderr.strip().splitlines() or ['?'])[-1]}", file=sys.stderr)
        subprocess.run(["umount", "-R", "-l", root], **quiet)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
