"""A pull killed with SIGKILL leaves nothing half-visible and the next pull resumes; pulls of the
same image from several processes at once all succeed and share one copy of each layer."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from budu.images.registry import Registry
from budu.images.service import Images


@pytest.fixture(scope="module")
def big_image(registry, kit):
    """One 48 MiB layer of random bytes: big enough to kill a pull in the middle of it."""
    image = kit.make_image({"data/blob": os.urandom(48 << 20), "bin/true": b"#!/bin/sh\n"})
    name = "test/big"
    with Registry(registry.host) as reg:
        for digest, data in image.blobs.items():
            reg.upload_blob(name, digest, len(data), [data])
        reg.put_manifest(name, "v1", "application/vnd.oci.image.manifest.v1+json", image.manifest)
    return f"{registry.host}/{name}:v1", image


def kill_pull_mid_layer(root: str, ref: str, image) -> str:
    """`budu pull` killed with SIGKILL while it downloads the image's layer; returns that layer."""
    proc = subprocess.Popen(["budu", "--root", root, "pull", ref], stdout=subprocess.PIPE, text=True)
    layer = image.layer_digests[0]
    for line in proc.stdout:  # type: ignore[union-attr]
        if line == f"{layer[7:19]}: Downloading\n":  # the layer's, not the config's
            break
    time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return layer


def test_kill_mid_pull_then_resume(tmp_path, big_image):
    ref, image = big_image
    root = str(tmp_path / "root")
    layer = kill_pull_mid_layer(root, ref, image)
    svc = Images(root)
    try:
        assert svc.list() == []  # no image, no tag
        assert [s.kind for s in svc.snapshots.walk()] in ([], ["active"])  # nothing committed
        assert not svc.content.exists(layer)  # no unverified blob is visible
        partial = [i for i in svc.content.ingests() if i.expected == layer]
        assert partial and 0 < partial[0].offset < len(image.blobs[layer]), "the partial download was kept"
        events = []
        img = svc.pull(ref, progress=lambda *e: events.append(e))
        first = next(e for e in events if e[0] == "download" and e[1] == layer)
        assert first[2] > partial[0].offset  # resumed, not restarted
        assert img.tags == (ref,)
        svc.gc_snapshots()
        assert all(s.kind == "committed" for s in svc.snapshots.walk())  # the dead pull's extract is gone
    finally:
        svc.close()


def test_concurrent_pulls_share_layers(tmp_path, big_image):
    ref, _ = big_image
    root = str(tmp_path / "root")
    procs = [subprocess.Popen(["budu", "--root", root, "pull", "-q", ref], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out == f"{ref}\n"
    svc = Images(root)
    try:
        assert len(svc.list()) == 1
        assert [s.kind for s in svc.snapshots.walk()] == ["committed"]
        assert len(list(svc.content.walk())) == 3  # manifest, config, layer: one copy each
    finally:
        svc.close()


def test_a_download_never_resumed_is_collected_by_prune(tmp_path, big_image, monkeypatch):
    """A killed pull's partial layer stays for a resume; a day later `image prune` removes it,
    and `system df` counted it until then."""
    ref, image = big_image
    root = str(tmp_path / "root")
    layer = kill_pull_mid_layer(root, ref, image)
    svc = Images(root)
    try:
        partial = [i for i in svc.content.ingests() if i.expected == layer]
        assert partial and partial[0].offset > 0
        usage = svc.disk_usage()
        assert usage["ingests"] >= partial[0].offset and usage["total"] >= usage["ingests"]
        svc.prune()  # young: kept for the next pull to resume
        assert [i.key for i in svc.content.ingests()] == [partial[0].key]
        d = svc.content._ingest_dir(partial[0].key)
        then = time.time() - 25 * 3600
        for name in os.listdir(d):
            os.utime(os.path.join(d, name), (then, then))
        os.utime(d, (then, then))
        _, reclaimed = svc.prune()
        assert svc.content.ingests() == []
        assert reclaimed >= partial[0].offset
        assert svc.disk_usage()["ingests"] == 0
    finally:
        svc.close()
    # budu image prune, the CLI, runs the same collection
    env = dict(os.environ, BUDU_ROOT=root)
    out = subprocess.run(["budu", "image", "prune", "-f"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "Total reclaimed space" in out.stdout
