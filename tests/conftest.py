"""Fixtures shared by every test: busybox root filesystems and OCI bundles made on the spot."""

from __future__ import annotations

import copy
import json
import os

import pytest
from budutest import make_busybox_rootfs


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
