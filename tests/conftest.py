"""Fixtures shared by every test: busybox root filesystems and OCI bundles made on the spot."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess

import pytest

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
_ROOTFS_CACHE: dict[str, str] = {}


def make_busybox_rootfs(dest: str) -> str:
    """A minimal root filesystem: static busybox, its applet links, passwd/group."""
    for d in ("bin", "proc", "sys", "dev", "etc", "tmp", "root", "home"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    shutil.copy2(BUSYBOX, os.path.join(dest, "bin/busybox"))
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for a in applets:
        link = os.path.join(dest, "bin", a)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(dest, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/sh\n")
    with open(os.path.join(dest, "etc/group"), "w") as f:
        f.write("root:x:0:\ntty:x:5:\nnogroup:x:65534:\n")
    return dest


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
