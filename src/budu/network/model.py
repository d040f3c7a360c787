"""The values that pass between the network layer and the engine: a network, an endpoint (one
container's interface on one network), and docker's JSON shapes for both."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field

DEFAULT_NETWORK = "bridge"
PREDEFINED = ("bridge", "host", "none")
DRIVERS = {"bridge": "bridge", "host": "host", "none": "null"}

# docker's option keys for the bridge driver that budu honours
OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"


def rfc3339(t: float) -> str:
    ns = int(t * 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


@dataclass(frozen=True)
class Network:
    id: str            # 64 hex digits
    name: str
    driver: str        # "bridge" (or "host"/"null" for the two pseudo networks docker lists)
    subnet: str        # "10.88.0.0/16"; "" for host and none
    gateway: str       # "10.88.0.1"
    bridge: str        # the linux bridge, <= 15 characters
    internal: bool
    labels: dict = field(hash=False)
    options: dict = field(hash=False)
    created: float
    user_subnet: bool = False   # the subnet came from the user (docker allows --ip only then)

    @property
    def predefined(self) -> bool:
        return self.name in PREDEFINED

    @property
    def prefix(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen if self.subnet else 0

    @property
    def dns(self) -> bool:
        """Containers resolve each other by name: user-defined bridge networks only (docker has no
        name resolution on the default bridge)."""
        return self.driver == "bridge" and not self.predefined

    @property
    def masquerade(self) -> bool:
        return not self.internal and self.options.get(OPT_MASQUERADE, "true").lower() not in ("false", "0")

    @property
    def mtu(self) -> int | None:
        v = self.options.get(OPT_MTU)
        return int(v) if v and v.isdigit() and int(v) > 0 else None

    def inspect(self, endpoints: dict[str, dict] | None = None) -> dict:
        """docker's NetworkResource; `endpoints` maps container ids to NetworkContainer dicts."""
        config = [{"Subnet": self.subnet, "Gateway": self.gateway}] if self.subnet else []
        return {
            "Name": self.name, "Id": self.id, "Created": rfc3339(self.created), "Scope": "local",
            "Driver": self.driver, "EnableIPv4": True, "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": {}, "Config": config},
            "Internal": self.internal, "Attachable": False, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
            "Containers": dict(endpoints or {}),
            "Options": dict(self.options), "Labels": dict(self.labels),
        }


@dataclass(frozen=True)
class Endpoint:
    network: str       # the network's id
    ifname: str        # inside the container: eth0, eth1...
    ip: str
    prefix: int
    gateway: str       # "" on an internal network (no way out, so no default route)
    mac: str
    id: str = ""       # docker's EndpointID
    container_id: str = ""
    static_ip: str = ""   # what --ip asked for (docker's IPAMConfig.IPv4Address)
    host_ifname: str = ""  # the host end of the veth pair

    def docker(self, aliases: list[str], dns_names: list[str]) -> dict:
        """docker's EndpointSettings, as NetworkSettings.Networks[name] shows it."""
        return {
            "IPAMConfig": {"IPv4Address": self.static_ip} if self.static_ip else None,
            "Links": None, "Aliases": list(aliases) or None, "MacAddress": self.mac, "DriverOpts": None,
            "NetworkID": self.network, "EndpointID": self.id, "Gateway": self.gateway,
            "IPAddress": self.ip, "IPPrefixLen": self.prefix, "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "DNSNames": list(dns_names) or None,
        }

    def container(self, name: str) -> dict:
        """docker's NetworkContainer (an entry of a network's Containers)."""
        return {"Name": name, "EndpointID": self.id, "MacAddress": self.mac,
                "IPv4Address": f"{self.ip}/{self.prefix}" if self.ip else "", "IPv6Address": ""}
