"""The runtimes under test.  Conformance tests run against budu-runtime and runc in the same test
run (runc is the referee); budu's own isolation tests run against budu-runtime alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

BUDU_RUNTIME = shutil.which("budu-runtime") or "budu-runtime"


class Runtime:
    def __init__(self, name: str, binary: str, root: str) -> None:
        self.name = name
        self.binary = binary
        self.root = root
        self.ids: list[str] = []

    def new_id(self) -> str:
        cid = f"t-{uuid.uuid4().hex[:12]}"
        self.ids.append(cid)
        return cid

    def cmd(self, *args: str, input: bytes | None = None, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        """Run the runtime; output goes through files, not pipes, because a created or detached
        container inherits them and would hold a pipe open long after the runtime has exited."""
        import tempfile

        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.run([self.binary, "--root", self.root, *args], input=input, stdout=out, stderr=err,
                               timeout=timeout, **kw)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(p.args, p.returncode, out.read(), err.read())

    def ok(self, *args: str, **kw) -> subprocess.CompletedProcess:
        p = self.cmd(*args, **kw)
        assert p.returncode == 0, f"{self.name} {' '.join(args)} failed ({p.returncode}): {p.stderr.decode()}"
        return p

    def run(self, bundle, *extra: str, **kw) -> subprocess.CompletedProcess:
        """`run` in the foreground: create, start, wait, delete."""
        return self.cmd("run", "--bundle", bundle.path, *extra, self.new_id(), **kw)

    def state(self, cid: str) -> dict:
        import json

        return json.loads(self.ok("state", cid).stdout)

    def cleanup(self) -> None:
        for cid in self.ids:
            subprocess.run([self.binary, "--root", self.root, "delete", "-f", cid], capture_output=True)


def _make(name: str, tmp_path) -> Runtime:
    binary = BUDU_RUNTIME if name == "budu" else shutil.which(name)
    if binary is None:
        raise RuntimeError(f"{name} is not installed (scripts/install.sh installs it)")
    root = str(tmp_path / f"{name}-root")
    os.makedirs(root)
    return Runtime(name, binary, root)


@pytest.fixture(params=["budu", "runc"])
def runtime(request, tmp_path):
    """Each conformance test runs once with budu-runtime and once with runc."""
    rt = _make(request.param, tmp_path)
    yield rt
    rt.cleanup()


@pytest.fixture
def budu(tmp_path):
    rt = _make("budu", tmp_path)
    yield rt
    rt.cleanup()


@pytest.fixture
def runc(tmp_path):
    rt = _make("runc", tmp_path)
    yield rt
    rt.cleanup()
