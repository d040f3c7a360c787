"""The image commands as a docker user types them: pull, images, image inspect, tag, rmi."""

from __future__ import annotations

import json
import re
import subprocess

import pytest


@pytest.fixture
def budu(tmp_path):
    root = str(tmp_path / "budu-root")

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run(["budu", "--root", root, *args], capture_output=True, text=True, timeout=120)
        if ok:
            assert p.returncode == 0, f"budu {' '.join(args)}: {p.stderr}"
        return p

    return run


def test_pull_images_inspect_tag_rmi(budu, busybox_image):
    host = busybox_image.registry.host
    name = f"{host}/test/busybox"
    p = budu("pull", name)
    lines = p.stdout.splitlines()
    assert lines[0] == "Using default tag: latest"
    assert lines[1] == "latest: Pulling from test/busybox"
    assert any(re.fullmatch(r"[0-9a-f]{12}: (Download complete|Extracting)", line) for line in lines)
    assert f"Digest: {busybox_image.digest}" in lines
    assert f"Status: Downloaded newer image for {name}:latest" in lines
    assert lines[-1] == f"{name}:latest"

    again = budu("pull", "-q", name)
    assert again.stdout == f"{name}:latest\n"
    status = budu("pull", name).stdout
    assert f"Status: Image is up to date for {name}:latest" in status

    table = budu("images").stdout.splitlines()
    assert re.fullmatch(r"REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE", table[0])
    cols = re.split(r"\s{3,}", table[1])
    assert cols[0] == name and cols[1] == "latest" and re.fullmatch(r"[0-9a-f]{12}", cols[2])
    assert re.fullmatch(r"[\d.]+(kB|MB)", cols[-1])

    image_id = json.loads(budu("image", "inspect", name).stdout)[0]["Id"]
    assert budu("images", "-q").stdout == image_id[7:19] + "\n"
    assert budu("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout == f"{name}:latest {image_id[7:19]}\n"
    assert budu("image", "inspect", "--format", "{{.Id}} {{.Os}}", name).stdout == f"{image_id} linux\n"

    budu("tag", name, "mine/busybox:v1")
    assert "mine/busybox" in budu("images").stdout
    rmi = budu("rmi", "mine/busybox:v1").stdout
    assert rmi == "Untagged: mine/busybox:v1\n"
    rmi = budu("rmi", name).stdout.splitlines()
    assert rmi[0] == f"Untagged: {name}:latest"
    assert rmi[-1] == f"Deleted: {image_id}"
    assert budu("images", "-q").stdout == ""


def test_errors_are_one_line(budu, busybox_image):
    p = budu("pull", "Not/Valid:Ref", ok=False)
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1 and "invalid reference format" in p.stderr
    p = budu("pull", f"{busybox_image.registry.host}/test/busybox:nope", ok=False)
    assert p.returncode == 1 and "not found" in p.stderr and "Traceback" not in p.stderr
    p = budu("rmi", "no-such-image", ok=False)
    assert p.returncode == 1 and "No such image: no-such-image" in p.stderr
    p = budu("frobnicate", ok=False)
    assert p.returncode == 1 and "is not a budu command" in p.stderr


def test_history_prune_and_system_df(budu, busybox_image, tmp_path):
    name = f"{busybox_image.registry.host}/test/busybox:latest"
    budu("pull", "-q", name)
    hist = budu("history", name).stdout.splitlines()
    assert re.fullmatch(r"IMAGE\s+CREATED\s+CREATED BY\s+SIZE\s+COMMENT", hist[0])
    assert re.match(r"[0-9a-f]{12}\s", hist[1])
    df = budu("system", "df").stdout.splitlines()
    assert re.fullmatch(r"TYPE\s+TOTAL\s+ACTIVE\s+SIZE\s+RECLAIMABLE", df[0])
    cols = re.split(r"\s{2,}", df[1])
    assert cols[:3] == ["Images", "1", "0"]
    # the size matches what du finds in budu's layers and blobs
    du = subprocess.run(["du", "-s", "-B1", str(tmp_path / "budu-root" / "snapshots"),
                         str(tmp_path / "budu-root" / "content" / "blobs")], capture_output=True, text=True).stdout
    on_disk = sum(int(line.split()[0]) for line in du.splitlines())
    from budu.cli.format import human_size

    assert cols[3] == human_size(on_disk) or abs(_parse_size(cols[3]) - on_disk) / on_disk < 0.05
    # dangling only: the tagged image stays; -a: it goes, and everything with it
    assert "Total reclaimed space: 0B" in budu("image", "prune", "-f").stdout
    out = budu("image", "prune", "-a", "-f").stdout
    assert "Deleted Images:" in out and "deleted: sha256:" in out
    assert budu("images", "-q").stdout == ""
    assert re.split(r"\s{2,}", budu("system", "df").stdout.splitlines()[1])[3] == "0B"


def _parse_size(text: str) -> float:
    units = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}
    num = re.match(r"[\d.]+", text).group(0)
    return float(num) * units[text[len(num):]]


def test_pull_all_tags(budu, registry, kit):
    """docker pull -a: every tag the registry lists (one image under two tags, another under a
    third), each pulled and tagged; a tag with -a is refused, as docker refuses it."""
    import uuid

    from budu.images.registry import Registry

    repo = f"test/alltags{uuid.uuid4().hex[:8]}"
    one = kit.make_image({"etc/one": b"1\n"})
    two = kit.make_image({"etc/two": b"2\n"})
    with Registry(registry.host) as reg:
        for image, tags in ((one, ("v1", "latest")), (two, ("v2",))):
            for digest, data in image.blobs.items():
                reg.upload_blob(repo, digest, len(data), [data])
            for tag in tags:
                reg.put_manifest(repo, tag, kit.OCI_MANIFEST, image.manifest)
    name = f"{registry.host}/{repo}"
    lines = budu("pull", "--all-tags", name).stdout.splitlines()
    assert [line for line in lines if "Pulling from" in line] == \
        [f"{t}: Pulling from {repo}" for t in ("latest", "v1", "v2")]
    assert [line for line in lines if line.startswith("Digest:")] == \
        [f"Digest: {one.digest}", f"Digest: {one.digest}", f"Digest: {two.digest}"]
    assert lines[-2:] == [f"Status: Downloaded newer image for {name}", name]
    table = budu("images", "--format", "{{.Tag}} {{.ID}}", name).stdout.splitlines()
    assert sorted(table) == sorted([f"latest {one.config_digest[7:19]}", f"v1 {one.config_digest[7:19]}",
                                    f"v2 {two.config_digest[7:19]}"])
    lines = budu("pull", "-a", name).stdout.splitlines()
    assert lines[-2:] == [f"Status: Image is up to date for {name}", name]
    assert budu("pull", "-a", "-q", name).stdout == f"{name}\n"
    p = budu("pull", "-a", f"{name}:v1", ok=False)
    assert p.returncode != 0 and "tag can't be used with --all-tags/-a" in p.stderr
    p = budu("pull", "-a", f"{registry.host}/test/no-such-repo{uuid.uuid4().hex[:8]}", ok=False)
    assert p.returncode != 0 and "not found" in p.stderr


def test_images_starts_without_the_registry_client(tmp_path):
    """`budu images` and `budu image ls` never import httpx or rich (they cost ~100 ms)."""
    import shutil
    import sys

    for args in (["images"], ["image", "ls"], ["images", "-q"]):
        p = subprocess.run([sys.executable, "-IS", "-X", "importtime", shutil.which("budu"), "--root",
                            str(tmp_path / "root"), *args], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        imported = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")}
        assert "budu.images.service" in imported  # the measurement saw the command run
        assert not {m for m in imported if m.split(".")[0] in ("httpx", "httpcore", "rich", "h11")}, args
