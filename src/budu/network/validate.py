"""Checking what users give: names, subnets, gateways, addresses (docker's rules and words)."""

from __future__ import annotations

import ipaddress
import re

from budu.errors import ConfigError
from budu.network.model import DEFAULT_NETWORK, Network

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
IFNAME_RE = re.compile(r"^[a-zA-Z0-9_.-]{1,15}$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def subnet(text: str, what: str = "subnet") -> ipaddress.IPv4Network:
    """An IPv4 subnet a bridge can have, written as its network address (docker refuses
    10.1.2.3/24 for 10.1.2.0/24)."""
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ConfigError(f"invalid {what} {text}") from None
    if net.version != 4:
        raise ConfigError(f"invalid {what} {text}: budu networks are IPv4")
    if str(net) != text.strip() and f"{net.network_address}/{net.prefixlen}" != text.strip():
        raise ConfigError(f"invalid {what} {text}: it should be {net}")
    if net.is_loopback or net.is_multicast or net.is_link_local or net.is_unspecified or net.prefixlen == 0:
        raise ConfigError(f"invalid {what} {text}: not an address range a bridge can have")
    if net.prefixlen > 30:
        raise ConfigError(f"invalid {what} {text}: too small for a gateway and a container (at most /30)")
    return net


def gateway(net: ipaddress.IPv4Network, text: str | None) -> str:
    """The gateway the user gave, or the subnet's first address."""
    if not text:
        return str(net.network_address + 1)
    try:
        gw = ipaddress.ip_address(text.strip())
    except ValueError:
        raise ConfigError(f"invalid gateway address {text}") from None
    if gw not in net or gw in (net.network_address, net.broadcast_address):
        raise ConfigError(f"gateway {text} is not a usable address of subnet {net}")
    return str(gw)


def mac(text: str) -> str:
    m = text.strip().lower()
    if not MAC_RE.match(m) or int(m[:2], 16) & 1:
        raise ConfigError(f"invalid MAC address {text}")
    return m


def ifname(name: str, what: str = "interface name") -> str:
    if not IFNAME_RE.match(name) or name in (".", ".."):
        raise ConfigError(f"invalid {what} {name!r}: at most 15 letters, digits, '_.-'")
    return name


def static_ip(net: Network, ip: str | None) -> str:
    """What --ip asked for, checked as docker checks it."""
    if not ip:
        return ""
    if net.name == DEFAULT_NETWORK:
        raise ConfigError("user specified IP address is supported on user defined networks only")
    if not net.user_subnet:
        raise ConfigError("user specified IP address is supported only when connecting to networks with "
                          "user configured subnets")
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        raise ConfigError(f"invalid IPv4 address: {ip}") from None
    sub = ipaddress.ip_network(net.subnet)
    if addr not in sub or addr in (sub.network_address, sub.broadcast_address):
        raise ConfigError(f"no configured subnet or ip-range contain the IP address {ip}")
    if str(addr) == net.gateway:
        raise ConfigError("Address already in use")
    return str(addr)
