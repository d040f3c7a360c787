"""The network layer's settings: passed in, or read once from the environment by the caller."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from budu.network.cni import DEFAULT_PATH

DEFAULT_SUBNET = "10.88.0.0/16"
DEFAULT_BRIDGE = "budu0"
LOCK = "/run/lock/budu-network.lock"


@dataclass(frozen=True)
class NetworkConfig:
    default_subnet: str = DEFAULT_SUBNET    # BUDU_DEFAULT_SUBNET
    default_bridge: str = DEFAULT_BRIDGE    # BUDU_DEFAULT_BRIDGE
    cni_path: tuple[str, ...] = DEFAULT_PATH  # BUDU_CNI_PATH (colon-separated)
    aardvark: str | None = None             # BUDU_AARDVARK: the aardvark-dns binary (found if unset)
    dns_port: int = 53
    resolv_conf: str = "/etc/resolv.conf"   # whose nameservers the DNS server forwards other names to
    lock: str = LOCK                        # host-wide: netfilter chains are shared by all roots
    pool_first: str = "10.89.0.0"           # user networks without --subnet: /24s from here (as podman)...
    pool_last: str = "10.255.255.0"         # ...to here

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "NetworkConfig":
        env = os.environ if env is None else env
        kw: dict = {}
        if env.get("BUDU_DEFAULT_SUBNET"):
            kw["default_subnet"] = env["BUDU_DEFAULT_SUBNET"]
        if env.get("BUDU_DEFAULT_BRIDGE"):
            kw["default_bridge"] = env["BUDU_DEFAULT_BRIDGE"]
        if env.get("BUDU_CNI_PATH"):
            kw["cni_path"] = tuple(p for p in env["BUDU_CNI_PATH"].split(":") if p)
        if env.get("BUDU_AARDVARK"):
            kw["aardvark"] = env["BUDU_AARDVARK"]
        return cls(**kw)
