"""budu's network layer: bridge networks, published ports and name resolution, built from the
standard pieces (CNI bridge + host-local + portmap + loopback plugins, iptables, aardvark-dns).
See README.md here for the design and manager.py for what the engine calls when."""

from budu.network.config import NetworkConfig
from budu.network.manager import Networks
from budu.network.model import DEFAULT_NETWORK, PREDEFINED, Endpoint, Network
from budu.network.ports import docker_ports, port_mappings

__all__ = ["DEFAULT_NETWORK", "PREDEFINED", "Endpoint", "Network", "NetworkConfig", "Networks", "docker_ports",
           "port_mappings"]
