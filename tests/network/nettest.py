"""Helpers for the network tests: the host's state (to prove a test left it as it found it),
"boxes" (a budu netns with busybox processes in it, standing in for containers), and a tiny DNS
server on a loopback address (standing in for a host resolver such as systemd-resolved's)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
import threading

from budu.metadata import Database
from budu.network import NetworkConfig, Networks

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
# the default network of the tests: a bridge and subnet of their own, so a real budu on the same
# host is never touched
TEST_SUBNET = "10.199.0.0/16"
TEST_BRIDGE = "budut0"
ETC_NETNS = "/etc/netns"


from budutest import host_ipv4, host_state, port_free, sh, wait_for  # noqa: E402,F401  shared with tests/containers


# --- boxes -----------------------------------------------------------------------------------------

class Box:
    """A budu network namespace standing in for a container: busybox commands run in it through
    `ip netns exec`, which also bind-mounts /etc/netns/<name>/resolv.conf over /etc/resolv.conf."""

    def __init__(self, nets, container_id: str, name: str, www: str) -> None:
        self.nets = nets
        self.id = container_id
        self.name = name
        self.netns = nets.netns_create(container_id)
        self.ns = os.path.basename(self.netns)
        self.www = www
        self.procs: list[subprocess.Popen] = []
        os.makedirs(www, exist_ok=True)
        with open(os.path.join(www, "index.html"), "w") as f:
            f.write(f"hello from {name}\n")

    def argv(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, BUSYBOX, *args]

    def run(self, *args: str, timeout: float = 10) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(e.cmd, 124, e.stdout or "", e.stderr or "")

    def resolv(self, nameserver: str) -> None:
        d = os.path.join(ETC_NETNS, self.ns)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "resolv.conf"), "w") as f:
            f.write(f"nameserver {nameserver}\noptions timeout:1 attempts:2\n")

    def httpd(self, port: int = 80) -> None:
        p = subprocess.Popen(self.argv("httpd", "-f", "-p", str(port), "-h", self.www),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        ok = wait_for(lambda: f":{port:04X} " in self._listening() or p.poll() is not None, 5)
        assert ok and p.poll() is None, f"httpd did not start in {self.name}"

    def _listening(self) -> str:
        return sh("ip", "netns", "exec", self.ns, "cat", "/proc/net/tcp", "/proc/net/tcp6").stdout

    def wget(self, host: str, port: int = 80, timeout: float = 3) -> str | None:
        """The page at http://host:port/ (None when it cannot be fetched within `timeout`: this
        busybox's wget has no -T, so the clock is ours)."""
        p = self.run("wget", "-q", "-O", "-", f"http://{host}:{port}/index.html", timeout=timeout)
        return p.stdout if p.returncode == 0 else None

    def nslookup(self, name: str, server: str, timeout: float = 8) -> list[str]:
        """The addresses `server` gives for `name` (busybox's resolver, straight to the server)."""
        p = self.run("nslookup", name, server, timeout=timeout)
        body = p.stdout.split("\n\n", 1)[-1] if "\n\n" in p.stdout else ""
        return re.findall(r"Address:\s*(\d+\.\d+\.\d+\.\d+)(?!:)", body)

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        shutil.rmtree(os.path.join(ETC_NETNS, self.ns), ignore_errors=True)


class Env:
    """A budu root with its Networks, and the boxes a test made (all undone at the end)."""

    def __init__(self, root: str, subnet: str = TEST_SUBNET, bridge: str = TEST_BRIDGE) -> None:
        self.root = root
        self.db = Database(root)
        # the host's resolver as DNS servers forward to it: a stand-in on 127.0.0.53 (see `resolver`),
        # as on a host with systemd-resolved; no test query leaves the host
        resolv = os.path.join(root, "resolv.conf")
        os.makedirs(root, exist_ok=True)
        with open(resolv, "w") as f:
            f.write("nameserver 127.0.0.53\noptions edns0\n")
        self.config = NetworkConfig(default_subnet=subnet, default_bridge=bridge, resolv_conf=resolv)
        self.nets = Networks(root, os.path.join(root, "run"), self.db, self.config)
        self.boxes: list[Box] = []

    def box(self, name: str) -> Box:
        b = Box(self.nets, os.urandom(32).hex(), name, os.path.join(self.root, "www", name))
        self.boxes.append(b)
        return b

    def close(self) -> None:
        for b in self.boxes:
            b.close()
        try:
            self.nets.shutdown()
        finally:
            self.db.close()


# --- a resolver on a loopback address --------------------------------------------------------------

class FakeResolver:
    """Answers A queries for the names in `records` (NXDOMAIN for others) on ip:53/udp, the way
    a local caching resolver (systemd-resolved at 127.0.0.53) would."""

    def __init__(self, ip: str, records: dict[str, str]) -> None:
        self.ip = ip
        self.records = {k.lower().rstrip("."): v for k, v in records.items()}
        self.queries: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 53))
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping:
            try:
                data, addr = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                self.sock.sendto(self._answer(data), addr)
            except (OSError, ValueError, IndexError, struct.error):
                continue

    def _answer(self, q: bytes) -> bytes:
        qid, flags, qd = struct.unpack("!HHH", q[:6])
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode())
            i += 1 + q[i]
        qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
        question = q[12:i + 5]
        name = ".".join(labels).lower()
        self.queries.append(name)
        ip = self.records.get(name)
        rd = flags & 0x0100
        if ip is None:
            return struct.pack("!HHHHHH", qid, 0x8083 | rd, 1, 0, 0, 0) + question
        if qtype != 1:
            return struct.pack("!HHHHHH", qid, 0x8080 | rd, 1, 0, 0, 0) + question
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(ip)
        return struct.pack("!HHHHHH", qid, 0x8080 | rd, 1, 1, 0, 0) + question + answer

    def close(self) -> None:
        self.stopping = True
        self.sock.close()
        self.thread.join(2)
