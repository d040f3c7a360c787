"""Fixtures shared by every test: busybox root filesystems and OCI bundles made on the spot."""

from __future__ import annotations

import copy
import json
import os
import shutil

import pytest
from budutest import make_busybox_rootfs, sh

ETC_NETNS = "/etc/netns"
NETWORK_LOCK = "/run/lock/budu-network.lock"
NETWORK_UP_DIR = "/run/lock/budu-network.d"


def default_config() -> dict:
    from budu.runtime.features import default_spec

    c = default_spec()
    c["process"]["terminal"] = False
    c["root"]["readonly"] = False  # probes write their findings into the rootfs
    return c


class Bundle:
    def __init__(self, path: str) -> None:
        self.path = path
        self.rootfs = os.path.join(path, "rootfs")
        self.config = default_config()

    def write(self) -> "Bundle":
        with open(os.path.join(self.path, "config.json"), "w") as f:
            json.dump(self.config, f, indent=2)
        return self

    def args(self, *args: str) -> "Bundle":
        self.config["process"]["args"] = list(args)
        return self.write()

    def sh(self, script: str) -> "Bundle":
        return self.args("sh", "-c", script)


@pytest.fixture
def bundle(tmp_path) -> Bundle:
    path = str(tmp_path / "bundle")
    os.makedirs(path)
    make_busybox_rootfs(os.path.join(path, "rootfs"))
    b = Bundle(path)
    b.write()
    return b


def config_copy(c: dict) -> dict:
    return copy.deepcopy(c)


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "iptables", "iptables-save", "nft"):
        if not shutil.which(tool):
            return f"needs {tool}"
    if not any(os.access(os.path.join(d, "bridge"), os.X_OK) for d in ("/usr/lib/cni", "/opt/cni/bin")):
        return "needs the CNI plugins (containernetworking-plugins)"
    return None


@pytest.fixture(scope="session", autouse=True)
def host_sysctls():  # for every test: containers on bridges make the same changes
    """The bridge plugin turns net.ipv4.ip_forward on (as docker does): acceptable from budu, but
    the tests put it back; and remove the /run/netns mount `ip netns` made, /etc/netns and budu's
    lock file if there were none."""
    reason = _missing()
    if reason:
        pytest.fail(reason)  # no skips: a missing tool is a failure
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        forward = f.read().strip()
    had_run_netns = os.path.isdir("/run/netns")
    had_etc_netns = os.path.isdir(ETC_NETNS)
    had_lock = os.path.exists(NETWORK_LOCK)
    had_up_dir = os.path.isdir(NETWORK_UP_DIR)
    yield
    if not had_lock and os.path.exists(NETWORK_LOCK):
        os.unlink(NETWORK_LOCK)
    if not had_up_dir and os.path.isdir(NETWORK_UP_DIR) and not os.listdir(NETWORK_UP_DIR):
        os.rmdir(NETWORK_UP_DIR)
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write(forward)
    if not had_run_netns and os.path.isdir("/run/netns") and not os.listdir("/run/netns"):
        sh("umount", "/run/netns")
        os.rmdir("/run/netns")
    if not had_etc_netns and os.path.isdir(ETC_NETNS) and not os.listdir(ETC_NETNS):
        os.rmdir(ETC_NETNS)
