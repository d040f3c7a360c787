"""Published ports: docker's PortBindings/ExposedPorts turned into the CNI portmap plugin's
portMappings and docker's NetworkSettings.Ports, with host ports checked and picked.

The portmap plugin forwards with DNAT and binds nothing, so "is this port free?" has two parts:
the host's own sockets (try to bind it) and other budu containers (the `taken` set, from budu.db).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Collection

from budu.errors import ConfigError

PROTOCOLS = ("tcp", "udp", "sctp")
Taken = Collection[tuple[str, int, str]]   # (host ip or "", host port, protocol)


def parse_port_key(key: str) -> tuple[int, str]:
    """'80/tcp' -> (80, 'tcp'); a bare '80' is tcp."""
    port, _, proto = key.partition("/")
    proto = (proto or "tcp").lower()
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"invalid containerPort: {port}")
    if proto not in PROTOCOLS:
        raise ConfigError(f"invalid proto: {proto}")
    return int(port), proto


def host_ip(text: str | None) -> str:
    """The HostIp of a binding as budu keeps it: '' for every address."""
    text = (text or "").strip().strip("[]")
    if text in ("", "0.0.0.0"):
        return ""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise ConfigError(f"invalid IP address: {text}") from None
    if ip.version != 4:
        if ip.is_unspecified:
            return ""   # docker's [::] on a host without IPv6 bindings: every IPv4 address too
        raise ConfigError(f"cannot publish on {text}: budu publishes ports on IPv4 addresses only")
    return str(ip)


def already_allocated(ip: str, port: int) -> ConfigError:
    return ConfigError(f"Bind for {ip or '0.0.0.0'}:{port} failed: port is already allocated")


def _clash(taken: Taken, ip: str, port: int, proto: str) -> bool:
    return any(p == port and pr == proto and (i == ip or not i or not ip) for i, p, pr in taken)


def bind_error(ip: str, port: int, proto: str) -> OSError | None:
    """Try to bind the port as a listener would; the error if the host has it (or None)."""
    kind = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}.get(proto)
    if kind is None:
        return None   # sctp: nothing to probe without the sctp module; budu's own list still counts
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip or "0.0.0.0", port))
        return None
    except OSError as e:
        return e
    finally:
        s.close()


def check_port(ip: str, port: int, proto: str, taken: Taken = ()) -> None:
    """ConfigError unless `port` is free on the host and not published by another budu container."""
    if _clash(taken, ip, port, proto):
        raise already_allocated(ip, port)
    err = bind_error(ip, port, proto)
    if err is None:
        return
    if err.errno == errno.EADDRINUSE:
        raise already_allocated(ip, port)
    if err.errno == errno.EADDRNOTAVAIL:
        raise ConfigError(f"cannot publish {ip}:{port}: {ip} is not an address of this host")
    if err.errno == errno.EACCES:
        raise ConfigError(f"cannot publish {ip or '0.0.0.0'}:{port}: permission denied")
    raise ConfigError(f"cannot publish {ip or '0.0.0.0'}:{port}: {err.strerror}")


def ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def pick_port(ip: str, proto: str, taken: Taken = (), lo: int | None = None, hi: int | None = None) -> int:
    """A free host port: the first free one of [lo, hi] when the user gave that range, else random
    tries in the ephemeral range, then a scan of it."""
    if lo is not None and hi is not None:
        tries = list(range(lo, hi + 1))
    else:
        lo, hi = ephemeral_range()
        span = hi - lo + 1
        start = int.from_bytes(os.urandom(4), "little") % span
        tries = [lo + (start + i * 7919) % span for i in range(min(span, 32))]
        tries += [lo + (start + i) % span for i in range(span)]
    for port in tries:
        if not _clash(taken, ip, port, proto) and bind_error(ip, port, proto) is None:
            return port
    where = f"{lo}-{hi}" if lo != hi else str(lo)
    raise ConfigError(f"Bind for {ip or '0.0.0.0'}:{where} failed: port is already allocated")


def port_mappings(port_bindings: dict | None, exposed: dict | None, publish_all: bool,
                  taken: Taken = ()) -> tuple[list[dict], dict]:
    """docker's HostConfig.PortBindings (+ Config.ExposedPorts and -P) -> the portmap plugin's
    runtimeConfig portMappings and docker's NetworkSettings.Ports.

    An empty HostPort gets a random free port, "8000-8010" the first free one of the range; a
    port the host or another budu container has is docker's "port is already allocated"."""
    bindings = {k: v for k, v in (port_bindings or {}).items()}
    keys = sorted(set(bindings) | set(exposed or {}), key=lambda k: parse_port_key(k))
    mappings: list[dict] = []
    ports: dict[str, list[dict] | None] = {}
    claimed: list[tuple[str, int, str]] = list(taken)
    for key in keys:
        cport, proto = parse_port_key(key)
        docker_key = f"{cport}/{proto}"
        wanted = bindings.get(key)
        if wanted is None and publish_all:
            wanted = [{"HostIp": "", "HostPort": ""}]
        if not wanted:
            ports.setdefault(docker_key, None)
            continue
        for b in wanted:
            ip = host_ip((b or {}).get("HostIp"))
            spec = str((b or {}).get("HostPort") or "").strip()
            if not spec or spec == "0":
                hport = pick_port(ip, proto, claimed)
            elif "-" in spec:
                lo, _, hi = spec.partition("-")
                if not (lo.isdigit() and hi.isdigit() and 0 < int(lo) <= int(hi) < 65536):
                    raise ConfigError(f"invalid hostPort: {spec}")
                hport = pick_port(ip, proto, claimed, int(lo), int(hi))
            else:
                if not spec.isdigit() or not 0 < int(spec) < 65536:
                    raise ConfigError(f"invalid hostPort: {spec}")
                hport = int(spec)
                check_port(ip, hport, proto, claimed)
            claimed.append((ip, hport, proto))
            mappings.append({"hostPort": hport, "containerPort": cport, "protocol": proto, "hostIP": ip})
            entry = {"HostIp": ip or "0.0.0.0", "HostPort": str(hport)}
            current = ports.get(docker_key)
            ports[docker_key] = (current or []) + [entry]
    return mappings, ports


def docker_ports(mappings: list[dict], exposed: dict | None = None) -> dict:
    """NetworkSettings.Ports from portMappings (what `budu port` and inspect show)."""
    ports: dict[str, list[dict] | None] = {}
    for key in exposed or {}:
        cport, proto = parse_port_key(key)
        ports[f"{cport}/{proto}"] = None
    for m in mappings:
        key = f"{m['containerPort']}/{m['protocol']}"
        ports[key] = (ports.get(key) or []) + [{"HostIp": m.get("hostIP") or "0.0.0.0",
                                                  "HostPort": str(m["hostPort"])}]
    return ports
