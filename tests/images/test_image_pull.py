"""Pulling from a real registry into the store: blobs verified, layers unpacked once, images
recorded, removal freeing what no one else holds — and a pulled image runs under budu-runtime."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from budu.errors import ConfigError, NotFound
from budu.images.service import Images, chain_ids


@pytest.fixture
def images(tmp_path):
    svc = Images(str(tmp_path / "budu-root"))
    yield svc
    svc.close()


def ref(busybox_image, tag: str | None = None) -> str:
    return f"{busybox_image.registry.host}/{busybox_image.name}:{tag or busybox_image.tag}"


def test_pull_records_image_and_unpacks_layers(images, busybox_image):
    events = []
    img = images.pull(ref(busybox_image), progress=lambda *e: events.append(e[0]))
    assert img.id.startswith("sha256:")
    assert img.tags == (ref(busybox_image),)
    assert img.repo_digests == (f"{busybox_image.registry.host}/{busybox_image.name}@{busybox_image.digest}",)
    assert images.get(ref(busybox_image)).id == img.id
    config = images.config(img)
    assert chain_ids(config["rootfs"]["diff_ids"])[-1] == img.chain_id
    info = images.snapshots.stat(img.chain_id)
    assert info.kind == "committed" and info.size > 500_000  # busybox itself
    assert "download" in events and "extract" in events and events[-1] == "done"
    # every blob is in the content store, verified
    for digest in [img.manifest_digest, img.id] + [layer["digest"] for layer in images.manifest(img)["layers"]]:
        assert images.content.exists(digest)


def test_second_pull_fetches_nothing(images, busybox_image):
    images.pull(ref(busybox_image))
    events = []
    images.pull(ref(busybox_image), progress=lambda *e: events.append(e[0]))
    assert "download" not in events and "extract" not in events


def test_pull_by_digest(images, busybox_image):
    name = f"{busybox_image.registry.host}/{busybox_image.name}@{busybox_image.digest}"
    img = images.pull(name)
    assert img.tags == ()
    assert images.get(name).id == img.id


def test_pull_resumes_a_partial_download(images, busybox_image):
    # an earlier pull died after half of the layer: the next one continues from there
    from budu.images.registry import Registry

    img = images.pull(ref(busybox_image))
    digest = images.manifest(img)["layers"][0]["digest"]
    size = images.manifest(img)["layers"][0]["size"]
    images.remove(ref(busybox_image))
    assert not images.content.exists(digest)
    with Registry(busybox_image.registry.host) as reg:
        data = b"".join(reg.get_blob(busybox_image.name, digest))
    w = images.content.writer(f"pull-{digest}", expected=digest, size=size)
    w.write(data[: size // 2])
    w.close()
    events = []
    images.pull(ref(busybox_image), progress=lambda *e: events.append(e))
    first = next(e for e in events if e[0] == "download" and e[1] == digest)
    assert first[2] > size // 2  # the first progress report already counts the resumed half


def test_remove_frees_blobs_and_snapshots(images, busybox_image):
    img = images.pull(ref(busybox_image))
    lines = images.remove(ref(busybox_image))
    assert ("Deleted", img.id) in lines
    assert images.list() == []
    assert images.snapshots.walk() == []
    assert list(images.content.walk()) == []


def test_unknown_tag_and_bad_reference(images, busybox_image):
    with pytest.raises(NotFound, match="not found"):
        images.pull(ref(busybox_image, "no-such-tag"))
    with pytest.raises(ConfigError, match="invalid reference format"):
        images.pull("Busybox")
    assert images.list() == []


def test_pulled_image_runs(images, busybox_image, tmp_path):
    """The image layer hands a Mount; the runtime runs a container on it."""
    img = images.pull(ref(busybox_image))
    mounts = images.snapshots.prepare("run-test", img.chain_id)
    rootfs = tmp_path / "bundle" / "rootfs"
    rootfs.mkdir(parents=True)
    m = mounts[0]
    opts = ",".join(m.options)
    if m.type == "bind":
        subprocess.run(["mount", "--bind", m.source, str(rootfs)], check=True)
    else:
        subprocess.run(["mount", "-t", m.type, "-o", opts, m.source, str(rootfs)], check=True)
    try:
        for d in ("proc", "dev", "sys", "tmp"):
            os.makedirs(rootfs / d, exist_ok=True)
        from budu.runtime.features import default_spec

        cfg = default_spec()
        cfg["process"]["terminal"] = False
        cfg["root"]["readonly"] = False
        cfg["process"]["args"] = ["sh", "-c", "echo hello from the image; ls /bin/busybox"]
        (tmp_path / "bundle" / "config.json").write_text(json.dumps(cfg))
        p = subprocess.run(["budu-runtime", "--root", str(tmp_path / "rt"), "run", "-b", str(tmp_path / "bundle"),
                            "pulled-run"], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert p.stdout == "hello from the image\n/bin/busybox\n"
    finally:
        subprocess.run(["umount", str(rootfs)], check=True)
    images.snapshots.remove("run-test")
