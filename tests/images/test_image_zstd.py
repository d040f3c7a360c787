"""zstd layers from end to end: pulled and unpacked, pushed as they are (never recompressed, so
the manifest keeps its digest), carried by oci-archive with their media type, and written to a
docker-archive uncompressed, as `docker save` writes every layer.  skopeo is the referee."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import uuid

import pytest

from budu.images import archive
from budu.images.push import push
from budu.images.registry import Registry
from budu.images.service import Images

ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def zstd_image(registry, kit):
    """A two-layer OCI image with zstd layers (made with the zstandard module), in the registry."""
    import zstandard

    with open(kit.BUSYBOX, "rb") as f:
        busybox = f.read()
    tars = [kit.tar_gz({"bin/busybox": busybox, "bin/sh": "->busybox"})[0],
            kit.tar_gz({"etc/motd": f"zstd {uuid.uuid4()}\n".encode(), "etc/big": os.urandom(300_000)})[0]]
    blobs = [zstandard.ZstdCompressor(level=3).compress(t) for t in tars]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [sha256(t) for t in tars]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": kit.OCI_MANIFEST,
        "config": {"mediaType": kit.OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": ZSTD, "digest": sha256(b), "size": len(b)} for b in blobs],
    }).encode()
    name = f"test/zstd{uuid.uuid4().hex[:8]}"
    with Registry(registry.host) as reg:
        for data in [config, *blobs]:
            reg.upload_blob(name, sha256(data), len(data), [data])
        reg.put_manifest(name, "v1", kit.OCI_MANIFEST, manifest)
    return {"ref": f"{registry.host}/{name}:v1", "manifest": manifest, "digest": sha256(manifest),
            "config": config, "blobs": blobs, "tars": tars}


@pytest.fixture(scope="module")
def other_registry(kit, tmp_path_factory):
    """A second registry: pushing there uploads every blob (no cross-repository mount)."""
    server = kit.RegistryServer(str(tmp_path_factory.mktemp("other-registry"))).start()
    yield server
    server.stop()


@pytest.fixture
def images(tmp_path):
    svc = Images(str(tmp_path / "root"))
    yield svc
    svc.close()


def test_pull_unpacks_zstd_and_keeps_the_blobs(images, zstd_image):
    image = images.pull(zstd_image["ref"])
    assert image.manifest_digest == zstd_image["digest"]
    assert [d["mediaType"] for d in images.manifest(image)["layers"]] == [ZSTD, ZSTD]
    for blob in zstd_image["blobs"]:
        assert images.content.read(sha256(blob)) == blob  # kept as the registry served it
    view = f"view-{uuid.uuid4().hex}"
    (mount,) = images.snapshots.view(view, image.chain_id)
    lowers = [o.split("=", 1)[1] for o in mount.options if o.startswith("lowerdir=")][0].split(":")
    with open(os.path.join(lowers[0], "etc", "motd")) as f:  # the top layer, unpacked from zstd
        assert f.read().startswith("zstd ")
    assert os.path.getsize(os.path.join(lowers[1], "bin", "busybox")) > 0
    images.snapshots.remove(view)


def test_push_sends_zstd_layers_as_they_are(images, zstd_image, other_registry, tmp_path, kit):
    images.pull(zstd_image["ref"])
    target = f"{other_registry.host}/copied/zstd:v1"
    images.tag(zstd_image["ref"], target)
    events = []
    assert push(images, target, progress=lambda *e: events.append(e)) == zstd_image["digest"]
    assert {e[1] for e in events if e[0] == "pushed"} == {sha256(b) for b in zstd_image["blobs"]}  # uploaded
    r = kit.skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{target}", tmp=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.encode() == zstd_image["manifest"]
    r = kit.skopeo("copy", "--src-tls-verify=false", f"docker://{target}", f"oci:{tmp_path / 'oci'}:v1",
                   tmp=str(tmp_path))
    assert r.returncode == 0, r.stderr
    for blob in zstd_image["blobs"]:
        assert (tmp_path / "oci" / "blobs" / "sha256" / sha256(blob)[7:]).read_bytes() == blob


def test_oci_archive_keeps_zstd_layers(images, zstd_image, tmp_path, kit):
    image = images.pull(zstd_image["ref"])
    out = tmp_path / "zstd-oci.tar"
    with open(out, "wb") as f:
        archive.save(images, [zstd_image["ref"]], f, "oci-archive")
    with tarfile.open(out) as tar:
        names = tar.getnames()
        for blob in zstd_image["blobs"]:
            assert f"blobs/sha256/{sha256(blob)[7:]}" in names
            assert tar.extractfile(f"blobs/sha256/{sha256(blob)[7:]}").read() == blob
        manifest = tar.extractfile(f"blobs/sha256/{zstd_image['digest'][7:]}").read()
    assert manifest == zstd_image["manifest"]
    other = Images(str(tmp_path / "other"))
    try:
        with open(out, "rb") as f:
            archive.load(other, f)
        loaded = other.get(zstd_image["ref"])
        assert (loaded.id, loaded.manifest_digest) == (image.id, image.manifest_digest)
        assert [d["mediaType"] for d in other.manifest(loaded)["layers"]] == [ZSTD, ZSTD]
    finally:
        other.close()
    # skopeo reads the archive and finds the zstd blobs under the same digests
    r = kit.skopeo("copy", f"oci-archive:{out}:v1", f"oci:{tmp_path / 'from-archive'}:v1", tmp=str(tmp_path))
    assert r.returncode == 0, r.stderr
    index = json.loads((tmp_path / "from-archive" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == zstd_image["digest"]


def test_docker_archive_holds_zstd_layers_uncompressed(images, zstd_image, tmp_path, kit):
    """docker save writes each layer as a plain tar named by its diff id; so does budu, whatever
    the stored compression.  Loading it back gives the same image (same id)."""
    image = images.pull(zstd_image["ref"])
    out = tmp_path / "zstd-docker.tar"
    with open(out, "wb") as f:
        archive.save(images, [zstd_image["ref"]], f, "docker-archive")
    with tarfile.open(out) as tar:
        items = json.load(tar.extractfile("manifest.json"))
        layers = [tar.extractfile(name).read() for name in items[0]["Layers"]]
    assert layers == zstd_image["tars"]
    assert items[0]["Layers"] == [f"blobs/sha256/{sha256(t)[7:]}" for t in zstd_image["tars"]]
    other = Images(str(tmp_path / "other"))
    try:
        with open(out, "rb") as f:
            archive.load(other, f)
        assert other.get(zstd_image["ref"]).id == image.id
    finally:
        other.close()
    r = kit.skopeo("inspect", "--config", f"docker-archive:{out}", tmp=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rootfs"]["diff_ids"] == [sha256(t) for t in zstd_image["tars"]]


def test_load_takes_a_docker_archive_with_zstd_layers(images, zstd_image, tmp_path, kit):
    """docker load reads zstd layer tarballs (as it reads gzip ones): so does budu, keeping them."""
    import io

    config = zstd_image["config"]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add(f"{sha256(config)[7:]}.json", config)
        for i, blob in enumerate(zstd_image["blobs"]):
            add(f"layer{i}/layer.tar", blob)
        add("manifest.json", json.dumps([{"Config": f"{sha256(config)[7:]}.json", "RepoTags": ["zstd/loaded:v1"],
                                          "Layers": [f"layer{i}/layer.tar" for i in range(2)]}]).encode())
    raw.seek(0)
    assert archive.load(images, raw) == ["zstd/loaded:v1"]
    image = images.get("zstd/loaded:v1")
    assert image.id == sha256(config)
    assert [d["mediaType"] for d in images.manifest(image)["layers"]] == [ZSTD, ZSTD]
