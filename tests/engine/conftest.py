"""Fixtures for the engine's spec builder and volumes: a real Volumes store on a tmp root, a
busybox rootfs, and a runner that turns a docker create body into an OCI bundle (plan_mounts +
build_spec, as the engine does) and runs it with budu-runtime or runc.  Every container is
deleted with --force afterwards, whatever the test's outcome."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid

import pytest
from budutest import make_busybox_rootfs

from budu.engine.mounts import copy_up, plan_mounts
from budu.engine.spec import build_spec
from budu.engine.volumes import Volumes
from budu.metadata import Database


@pytest.fixture
def volumes(tmp_path) -> Volumes:
    root = str(tmp_path / "budu-root")
    db = Database(root)
    yield Volumes(root, db)
    db.close()


@pytest.fixture
def rootfs(tmp_path) -> str:
    return make_busybox_rootfs(str(tmp_path / "rootfs"))


class Result:
    def __init__(self, code: int, out: str, err: str, spec: dict, cid: str) -> None:
        self.code, self.out, self.err, self.spec, self.cid = code, out, err, spec, cid

    def __repr__(self) -> str:
        return f"exit {self.code}\nstdout: {self.out}\nstderr: {self.err}"


class Runner:
    """Create → bundle → `RUNTIME run`; a new bundle (and busybox rootfs) per call unless one is
    passed, the same Volumes store throughout."""

    def __init__(self, name: str, tmp_path, volumes: Volumes) -> None:
        self.name = name
        self.binary = shutil.which("budu-runtime" if name == "budu" else name)
        assert self.binary, f"{name} is not installed"
        self.tmp = tmp_path
        self.root = str(tmp_path / f"{name}-state")
        self.volumes = volumes
        self.ids: list[str] = []

    def bundle(self, config: dict, host_config: dict | None = None, image_config: dict | None = None,
               netns: str | None = None, files: dict | None = None, bundle: str | None = None) -> tuple[str, dict, str]:
        hc = host_config or {}
        ic = image_config or {}
        cid = uuid.uuid4().hex + uuid.uuid4().hex
        if bundle is None:
            bundle = str(self.tmp / f"bundle-{cid[:12]}")
            os.makedirs(bundle)
            make_busybox_rootfs(os.path.join(bundle, "rootfs"))
        rootfs = os.path.join(bundle, "rootfs")
        mounts = plan_mounts(config, hc, ic, self.volumes)
        for m in mounts:
            if m.pop("_copy_up", False):
                copy_up(self.volumes.mount_source(self.volumes.get(m["Name"])), rootfs, m["Destination"])
        spec = build_spec(container_id=cid, rootfs=rootfs, image_config=ic, config=config, host_config=hc,
                          mounts=mounts, files=files or {}, netns=netns,
                          cgroups_path=f"/budu-engine-test-{cid[:12]}", volumes=self.volumes)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(spec, f, indent=2)
        return bundle, spec, cid[:16]

    def cmd(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        # files, not pipes: a container could keep a pipe open after the runtime has exited
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.run([self.binary, "--root", self.root, *args], stdout=out, stderr=err,
                               stdin=subprocess.DEVNULL, timeout=timeout)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(p.args, p.returncode, out.read().decode(errors="replace"),
                                               err.read().decode(errors="replace"))

    def run(self, config: dict, host_config: dict | None = None, **kw) -> Result:
        bundle, spec, cid = self.bundle(config, host_config, **kw)
        self.ids.append(cid)
        p = self.cmd("run", "--bundle", bundle, cid)
        return Result(p.returncode, p.stdout, p.stderr, spec, cid)

    def sh(self, script: str, host_config: dict | None = None, config: dict | None = None, **kw) -> str:
        """Run a shell script, expect success, return its stdout."""
        r = self.run(dict(config or {}, Cmd=["sh", "-c", script]), host_config, **kw)
        assert r.code == 0, repr(r)
        return r.out

    def cleanup(self) -> None:
        for cid in self.ids:
            subprocess.run([self.binary, "--root", self.root, "delete", "--force", cid], capture_output=True)


@pytest.fixture
def budu(tmp_path, volumes):
    r = Runner("budu", tmp_path, volumes)
    yield r
    r.cleanup()


@pytest.fixture(params=["budu", "runc"])
def runtime(request, tmp_path, volumes):
    """The security checks run once with budu-runtime and once with runc (the referee)."""
    r = Runner(request.param, tmp_path, volumes)
    yield r
    r.cleanup()
