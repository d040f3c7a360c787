"""Pushing to real registries: the manifest keeps its digest (skopeo, the referee, agrees), blobs the
registry has are skipped, blobs in a sibling repository are mounted, auth registries need a login —
and `budu push` prints what docker prints."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import uuid

import pytest

from budu.errors import BuduError, ConfigError, NotFound
from budu.images import auth
from budu.images.push import NoSuchTag, push
from budu.images.registry import Registry, Unauthorized
from budu.images.service import Images


@pytest.fixture
def images(tmp_path, monkeypatch):
    root = str(tmp_path / "budu-root")
    monkeypatch.setenv("BUDU_ROOT", root)  # what the CLI opens
    svc = Images(root)
    yield svc
    svc.close()


@pytest.fixture
def budu(monkeypatch, capsys):
    """`budu ARGS` through the real entry point; returns (exit status, stdout, stderr)."""
    from budu.cli import main as cli

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = cli.main(list(args))
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def source(busybox_image) -> str:
    return f"{busybox_image.registry.host}/{busybox_image.name}:{busybox_image.tag}"


@pytest.fixture
def pulled(images, busybox_image):
    return images.pull(source(busybox_image))


def layer_digests(images, image) -> list[str]:
    return [layer["digest"] for layer in images.manifest(image)["layers"]]


def test_push_keeps_the_manifest_digest(images, pulled, busybox_image, tmp_path, kit):
    host = busybox_image.registry.host
    repo = unique("other/busybox")
    target = f"{host}/{repo}:v2"
    images.tag(source(busybox_image), target)
    events = []
    digest = push(images, target, progress=lambda *e: events.append(e))
    assert digest == busybox_image.digest == pulled.manifest_digest
    with Registry(host) as reg:
        m = reg.get_manifest(repo, "v2")
        assert m.digest == digest and m.data == images.content.read(pulled.manifest_digest)
    # the referee: skopeo reads the same bytes and copies the image out
    r = kit.skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{target}", tmp=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "sha256:" + hashlib.sha256(r.stdout.encode()).hexdigest() == digest
    r = kit.skopeo("copy", "--src-tls-verify=false", f"docker://{target}", f"oci:{tmp_path / 'oci'}:v2",
                   tmp=str(tmp_path))
    assert r.returncode == 0, r.stderr
    index = json.loads((tmp_path / "oci" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest
    # progress: every layer prepared, then done; the new repo digest is recorded
    layers = layer_digests(images, pulled)
    assert [e for e in events if e[0] == "preparing"] == [("preparing", d) for d in reversed(layers)]
    assert {e[1] for e in events if e[0] in ("pushed", "mounted", "exists")} == set(layers)
    assert f"{host}/{repo}@{digest}" in images.get(target).repo_digests


def test_push_mounts_from_the_repository_it_came_from(images, pulled, busybox_image):
    target = f"{busybox_image.registry.host}/{unique('mounted/busybox')}:latest"
    images.tag(source(busybox_image), target)
    events = []
    push(images, target, progress=lambda *e: events.append(e))
    assert [e for e in events if e[0] == "mounted"] == [("mounted", d, busybox_image.name)
                                                          for d in layer_digests(images, pulled)]
    assert not [e for e in events if e[0] in ("pushing", "pushed")]  # nothing was sent


def test_push_again_finds_every_layer(images, pulled, busybox_image):
    target = f"{busybox_image.registry.host}/{unique('again/busybox')}:latest"
    images.tag(source(busybox_image), target)
    first = push(images, target)
    events = []
    assert push(images, target, progress=lambda *e: events.append(e)) == first
    assert [e for e in events if e[0] != "preparing"] == [("exists", d) for d in layer_digests(images, pulled)]


def test_cli_push_prints_what_docker_prints(images, pulled, busybox_image, budu):
    host = busybox_image.registry.host
    repo = f"{host}/{unique('cli/busybox')}"
    images.tag(source(busybox_image), f"{repo}:latest")
    diff_ids = [d[7:19] for d in images.config(pulled)["rootfs"]["diff_ids"]]
    size = len(images.content.read(pulled.manifest_digest))

    rc, out, err = budu("push", repo)
    assert rc == 0, err
    assert out.splitlines() == [
        "Using default tag: latest",
        f"The push refers to repository [{repo}]",
        *[f"{i}: Preparing" for i in reversed(diff_ids)],
        *[f"{i}: Mounted from {busybox_image.name}" for i in diff_ids],
        f"latest: digest: {busybox_image.digest} size: {size}",
    ]
    rc, out, err = budu("push", f"{repo}:latest")
    assert rc == 0, err
    assert out.splitlines()[0] == f"The push refers to repository [{repo}]"
    assert [line for line in out.splitlines() if line.endswith("exists")] == \
        [f"{i}: Layer already exists" for i in diff_ids]
    rc, out, err = budu("push", "-q", repo)
    assert (rc, out, err) == (0, f"{repo}:latest\n", "")


def test_cli_push_all_tags(images, pulled, busybox_image, budu):
    repo = f"{busybox_image.registry.host}/{unique('alltags/busybox')}"
    for tag in ("v1", "v2"):
        images.tag(source(busybox_image), f"{repo}:{tag}")
    rc, out, err = budu("push", "--all-tags", repo)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == f"The push refers to repository [{repo}]" and lines.count(lines[0]) == 1
    assert [line.split(":")[0] for line in lines if ": digest: " in line] == ["v1", "v2"]
    rc, out, err = budu("push", "-a", f"{repo}:v1")
    assert rc == 1 and err == "Error: tag can't be used with --all-tags/-a\n"


def test_push_of_a_tag_that_is_not_here(images, pulled, busybox_image, budu):
    host = busybox_image.registry.host
    rc, out, err = budu("push", f"{host}/no/such-image:v1")
    assert rc == 1
    assert out == f"The push refers to repository [{host}/no/such-image]\n"
    assert err == f"An image does not exist locally with the tag: {host}/no/such-image\n"
    # the repository is here, that tag is not
    rc, out, err = budu("push", f"{host}/{busybox_image.name}:nope")
    assert rc == 1 and err == f"tag does not exist: {host}/{busybox_image.name}:nope\n"
    with pytest.raises(NoSuchTag):
        push(images, "never-pulled")
    with pytest.raises(ConfigError, match="digest reference"):
        push(images, f"{host}/{busybox_image.name}@{busybox_image.digest}")


def test_push_to_an_auth_registry_needs_a_login(images, pulled, busybox_image, auth_registry, kit, budu,
                                                tmp_path, docker_config):
    repo = f"{auth_registry.host}/{unique('private/busybox')}"
    images.tag(source(busybox_image), f"{repo}:v1")
    rc, out, err = budu("push", f"{repo}:v1")
    assert rc == 1 and err == f"unauthorized: authentication required for {auth_registry.host}\n"
    with pytest.raises(Unauthorized):
        push(images, f"{repo}:v1", credentials=auth.credentials)

    rc, out, err = budu("login", "-u", kit.USER, "-p", kit.PASSWORD, auth_registry.host)
    assert rc == 0 and out.endswith("Login Succeeded\n"), err
    events = []
    digest = push(images, f"{repo}:v1", progress=lambda *e: events.append(e), credentials=auth.credentials)
    assert digest == busybox_image.digest
    layers = layer_digests(images, pulled)
    assert {e[1] for e in events if e[0] == "pushed"} == set(layers)  # another registry: sent, not mounted
    big = next(e for e in events if e[0] == "pushing" and e[2] == e[3])
    assert big[1] in layers and big[3] == images.content.size(big[1])
    r = kit.skopeo("inspect", "--raw", "--tls-verify=false", f"--creds={kit.USER}:{kit.PASSWORD}",
                   f"docker://{repo}:v1", tmp=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "sha256:" + hashlib.sha256(r.stdout.encode()).hexdigest() == digest

    rc, out, err = budu("push", f"{repo}:v1")  # the CLI reads the login too
    assert rc == 0, err
    assert "Layer already exists" in out

    rc, out, err = budu("logout", auth_registry.host)
    assert (rc, out) == (0, f"Removing login credentials for {auth_registry.host}\n")
    rc, out, err = budu("push", f"{repo}:v1")
    assert rc == 1 and "unauthorized: authentication required" in err


def test_push_to_a_token_registry(images, pulled, busybox_image, token_registry, kit, budu):
    host = token_registry.host
    repo = unique("tokens/busybox")
    images.tag(source(busybox_image), f"{host}/{repo}:latest")
    rc, out, err = budu("push", f"{host}/{repo}")
    assert rc == 1 and "unauthorized" in err  # anonymous tokens only grant pull

    rc, out, err = budu("login", "-u", kit.USER, "-p", kit.PASSWORD, host)
    assert rc == 0, err
    rc, out, err = budu("push", f"{host}/{repo}")
    assert rc == 0, err
    assert out.splitlines()[-1].startswith(f"latest: digest: {busybox_image.digest} size: ")
    assert any(user == kit.USER and f"repository:{repo}:pull,push" in scopes
               for user, scopes in token_registry.tokens.issued)
    with Registry(host, credentials=auth.credentials) as reg:
        assert reg.get_manifest(repo, "latest").digest == busybox_image.digest


def test_push_the_platform_manifest_of_an_index(images, registry, kit, tmp_path):
    """An image pulled through an index goes up as its own manifest, as docker pushes it."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    img = kit.make_image({"hello.txt": b"multi-platform\n"})
    repo = unique("multi/hello")
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": kit.OCI_MANIFEST, "digest": img.digest, "size": len(img.manifest),
         "platform": {"os": "linux", "architecture": arch}},
    ]}).encode()
    with Registry(registry.host) as reg:
        for digest, data in img.blobs.items():
            reg.upload_blob(repo, digest, len(data), [data])
        reg.put_manifest(repo, img.digest, kit.OCI_MANIFEST, img.manifest)
        index_digest = reg.put_manifest(repo, "latest", "application/vnd.oci.image.index.v1+json", index)
    pulled = images.pull(f"{registry.host}/{repo}:latest")
    assert pulled.index_digest == index_digest and pulled.manifest_digest == img.digest
    target = f"{registry.host}/{unique('single/hello')}:v1"
    images.tag(f"{registry.host}/{repo}:latest", target)
    assert push(images, target) == img.digest
    with Registry(registry.host) as reg:
        m = reg.get_manifest(target.split("/", 1)[1].rsplit(":", 1)[0], "v1")
    assert m.digest == img.digest and m.media_type == kit.OCI_MANIFEST


def test_a_blob_not_kept_here_is_mounted_or_refused(images, pulled, busybox_image, auth_registry, kit):
    """A layer whose blob is not in the content store (its snapshot came with another image) can
    still go where the registry has it; elsewhere the push fails with what to do."""
    layer = layer_digests(images, pulled)[0]
    images.content.delete(layer)
    target = f"{busybox_image.registry.host}/{unique('nocontent/busybox')}:latest"
    images.tag(source(busybox_image), target)
    events = []
    assert push(images, target, progress=lambda *e: events.append(e)) == busybox_image.digest
    assert ("mounted", layer, busybox_image.name) in events

    auth.store(auth_registry.host, kit.USER, kit.PASSWORD)
    elsewhere = f"{auth_registry.host}/{unique('nocontent/busybox')}:latest"
    images.tag(source(busybox_image), elsewhere)
    why = re.escape(f"blob {layer} is not in the content store") + ".*pull the image again"
    with pytest.raises(NotFound, match=why):
        push(images, elsewhere, credentials=auth.credentials)


def test_credentials_never_touch_the_real_home(docker_config):
    assert auth.config_path() == os.path.join(str(docker_config), "config.json")


# -- uncompressed layers are gzipped on the way out -------------------------------------------------


@pytest.fixture(scope="module")
def uncompressed_archive(tmp_path_factory, kit):
    """A docker-archive (layers as plain tars, as docker save writes them) of busybox and 4 MB
    of compressible text, two layers; and those tars."""
    import gzip
    import io

    from budu.images import archive

    tmp = tmp_path_factory.mktemp("uncompressed")
    with open(kit.BUSYBOX, "rb") as f:
        busybox = f.read()
    words = b" ".join(b"word%d" % (i % 5000) for i in range(500_000))
    tars = [kit.tar_gz({"bin/busybox": busybox, "bin/sh": "->busybox"})[0], kit.tar_gz({"data/words.txt": words})[0]]
    svc = Images(str(tmp / "root"))
    try:
        archive.create_image(svc, [io.BytesIO(gzip.compress(t, compresslevel=1, mtime=0)) for t in tars],
                             {"config": {"Cmd": ["sh"]}}, "loaded/source:latest")
        with open(tmp / "saved.tar", "wb") as f:
            archive.save(svc, ["loaded/source:latest"], f, "docker-archive")
    finally:
        svc.close()
    return str(tmp / "saved.tar"), tars


@pytest.fixture
def loaded(images, uncompressed_archive):
    """The image loaded from that archive: its layers are kept uncompressed."""
    from budu.images import archive

    path, tars = uncompressed_archive
    with open(path, "rb") as f:
        assert archive.load(images, f) == ["loaded/source:latest"]
    image = images.get("loaded/source:latest")
    assert [d["mediaType"] for d in images.manifest(image)["layers"]] == ["application/vnd.oci.image.layer.v1.tar"] * 2
    return image, tars


def test_uncompressed_layers_are_gzipped_on_push(images, loaded, registry, tmp_path, kit):
    import gzip

    image, tars = loaded
    repo = unique("gzipped/image")
    target = f"{registry.host}/{repo}:v1"
    images.tag("loaded/source:latest", target)
    events = []
    digest = push(images, target, progress=lambda *e: events.append(e))
    assert digest != image.manifest_digest  # the manifest now names gzip blobs
    local = layer_digests(images, image)
    assert {e[1] for e in events if e[0] == "pushed"} == set(local)
    assert [e for e in events if e[0] == "pushing" and e[1] == local[1]][-1][2:] == (len(tars[1]), len(tars[1]))
    # skopeo, the referee, copies it out: gzip layers, each a gzip stream of the layer's tar
    r = kit.skopeo("copy", "--src-tls-verify=false", f"docker://{target}", f"oci:{tmp_path / 'oci'}:v1",
                   tmp=str(tmp_path))
    assert r.returncode == 0, r.stderr
    index = json.loads((tmp_path / "oci" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest
    manifest = json.loads((tmp_path / "oci" / "blobs" / "sha256" / digest[7:]).read_bytes())
    assert manifest["config"]["digest"] == image.id
    assert [d["mediaType"] for d in manifest["layers"]] == ["application/vnd.oci.image.layer.v1.tar+gzip"] * 2
    for desc, tar in zip(manifest["layers"], tars):
        blob = (tmp_path / "oci" / "blobs" / "sha256" / desc["digest"][7:]).read_bytes()
        assert len(blob) == desc["size"] and gzip.decompress(blob) == tar
    assert manifest["layers"][1]["size"] < len(tars[1]) // 3  # it really was compressed
    # the pushed manifest is kept with the image (not the gzip blobs); a pull finds the same image
    assert images.content.read(digest) == (tmp_path / "oci" / "blobs" / "sha256" / digest[7:]).read_bytes()
    assert not any(images.content.exists(d["digest"]) for d in manifest["layers"])
    assert f"{registry.host}/{repo}@{digest}" in images.get(target).repo_digests
    other = Images(str(tmp_path / "other-root"))
    try:
        assert other.pull(target).id == image.id
    finally:
        other.close()


def test_a_second_push_finds_the_gzip_blobs_by_digest(images, loaded, registry):
    image, _ = loaded
    first = f"{registry.host}/{unique('gz/first')}:v1"
    images.tag("loaded/source:latest", first)
    digest = push(images, first)
    # another repository of the same registry: mounted, not compressed again; same manifest
    second = f"{registry.host}/{unique('gz/second')}:v1"
    images.tag("loaded/source:latest", second)
    events = []
    assert push(images, second, progress=lambda *e: events.append(e)) == digest
    assert not [e for e in events if e[0] in ("pushing", "pushed")]
    assert {e[0] for e in events} == {"preparing", "mounted"}
    events.clear()
    assert push(images, first, progress=lambda *e: events.append(e)) == digest
    assert {e[0] for e in events} == {"preparing", "exists"}
    # rmi frees the kept manifest with the image
    for name in images.get(first).tags:
        images.remove(name, force=True)
    assert not images.content.exists(digest)


def test_gzip_on_push_is_reproducible(tmp_path, loaded, images, registry, uncompressed_archive):
    """Two stores holding the same uncompressed image push the same blobs and manifest."""
    from budu.images import archive

    first = f"{registry.host}/{unique('gz/repro')}:v1"
    images.tag("loaded/source:latest", first)
    digest = push(images, first)
    other = Images(str(tmp_path / "fresh"))
    try:
        with open(uncompressed_archive[0], "rb") as f:
            archive.load(other, f)
        target = f"{registry.host}/{unique('gz/repro2')}:v1"
        other.tag("loaded/source:latest", target)
        events = []
        assert push(other, target, progress=lambda *e: events.append(e)) == digest
        assert {e[0] for e in events} >= {"pushing", "pushed"}  # compressed again, not found
    finally:
        other.close()


def test_a_damaged_uncompressed_layer_is_not_pushed(images, loaded, registry):
    image, _ = loaded
    layer = layer_digests(images, image)[1]
    path = images.content.path(layer)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(1000)
        f.write(b"X")
    target = f"{registry.host}/{unique('gz/damaged')}:v1"
    images.tag("loaded/source:latest", target)
    with pytest.raises(BuduError, match="is damaged"):
        push(images, target)
    with Registry(registry.host) as reg:
        assert reg.head_manifest(target.split("/", 1)[1].split(":")[0], "v1") is None
