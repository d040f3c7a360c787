"""The overlay snapshotter on the real kernel: layers stacked, mounted, committed and removed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from budu.errors import NotFound, StateError
from budu.images.snapshots import Snapshotter
from budu.metadata import Database


@pytest.fixture
def sn(tmp_path):
    db = Database(str(tmp_path / "root"))
    yield Snapshotter(str(tmp_path / "root"), db)
    db.close()


def mount(m, target: str) -> None:
    subprocess.run(["mount", "-t", m.type, "-o", ",".join(m.options), m.source, target], check=True)


def write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def test_layers_stack_through_overlay(sn, tmp_path):
    sn.prepare("extract-1")
    write(os.path.join(sn.upper_dir("extract-1"), "etc/one"), "1")
    write(os.path.join(sn.upper_dir("extract-1"), "etc/shadowed"), "lower")
    sn.commit("sha256:layer1", "extract-1")
    sn.prepare("extract-2", "sha256:layer1")
    write(os.path.join(sn.upper_dir("extract-2"), "etc/two"), "2")
    write(os.path.join(sn.upper_dir("extract-2"), "etc/shadowed"), "upper")
    sn.commit("sha256:layer2", "extract-2")

    mounts = sn.prepare("container-a", "sha256:layer2")
    assert mounts[0].type == "overlay"
    target = tmp_path / "rootfs"
    target.mkdir()
    mount(mounts[0], str(target))
    try:
        assert (target / "etc/one").read_text() == "1"
        assert (target / "etc/two").read_text() == "2"
        assert (target / "etc/shadowed").read_text() == "upper"
        (target / "etc/new").write_text("container")
        os.unlink(target / "etc/one")
    finally:
        subprocess.run(["umount", str(target)], check=True)
    upper = sn.upper_dir("container-a")
    assert open(os.path.join(upper, "etc/new")).read() == "container"
    st = os.lstat(os.path.join(upper, "etc/one"))  # a whiteout: 0:0 character device
    assert os.major(st.st_rdev) == 0 and os.minor(st.st_rdev) == 0
    # the committed layers are untouched
    assert os.path.exists(os.path.join(sn.root, "1", "fs", "etc", "one"))


def test_view_is_read_only(sn, tmp_path):
    sn.prepare("x")
    write(os.path.join(sn.upper_dir("x"), "f"), "data")
    sn.commit("sha256:one", "x")
    mounts = sn.view("v", "sha256:one")
    target = tmp_path / "view"
    target.mkdir()
    mount(mounts[0], str(target))
    try:
        assert (target / "f").read_text() == "data"
        with pytest.raises(OSError):
            (target / "g").write_text("no")
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_errors(sn):
    with pytest.raises(NotFound):
        sn.prepare("a", "sha256:missing")
    sn.prepare("a")
    with pytest.raises(StateError):
        sn.prepare("a")
    sn.commit("sha256:a", "a")
    sn.prepare("child", "sha256:a")
    with pytest.raises(StateError, match="has children"):
        sn.remove("sha256:a")
    sn.remove("child")
    sn.remove("sha256:a")
    assert sn.walk() == []
    assert os.listdir(sn.root) == []


def test_commit_records_size(sn):
    sn.prepare("a")
    write(os.path.join(sn.upper_dir("a"), "big"), "x" * 100_000)
    sn.commit("sha256:a", "a")
    info = sn.stat("sha256:a")
    assert info.kind == "committed" and 100_000 <= info.size < 200_000


def test_cleanup_removes_orphans(sn):
    os.makedirs(os.path.join(sn.root, "999", "fs"))
    sn.prepare("kept")
    assert sn.cleanup() == ["999"]
    assert sn.exists("kept")


def test_two_processes_race_for_one_key(sn, tmp_path):
    code = ("import sys; from budu.metadata import Database; from budu.images.snapshots import Snapshotter;"
            f"s = Snapshotter({str(tmp_path / 'root')!r}, Database({str(tmp_path / 'root')!r}));"
            "\ntry:\n    s.prepare('same')\n    print('won')\nexcept Exception as e:\n    print(type(e).__name__)")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    results = sorted(p.communicate(timeout=30)[0].strip() for p in procs)
    assert results == ["StateError", "StateError", "StateError", "won"]
    assert len(os.listdir(sn.root)) == 1
