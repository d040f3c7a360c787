"""save, load and import as a docker user types them, with skopeo and umoci as referees.

Images come from `budu image bootstrap busybox` (the host's static busybox).  Archives budu writes
are read by skopeo (docker-archive and oci-archive) and unpacked by umoci; archives skopeo writes
are loaded by budu; in each direction the image config — the image id — must come through byte for
byte, and a loaded image must run.  Bad archives fail with one line and leave the store as it was.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pty
import shutil
import subprocess
import tarfile

import pytest
from budutest import BUSYBOX, make_busybox_rootfs

from budu.errors import ConfigError
from budu.images.archive import apply_changes
from budu.images.service import Images

SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
UMOCI = shutil.which("umoci") or "/usr/bin/umoci"

def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path) -> str:  # noqa: ANN001
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


class Budu:
    """The `budu` command line against one root."""

    def __init__(self, root: str) -> None:
        self.root = root

    def argv(self, args: tuple[str, ...]) -> list[str]:
        return ["budu", "--root", self.root, *args]

    def __call__(self, *args: str, ok: bool = True, input: bytes | None = None, stdin=None,  # noqa: A002, ANN001
                 text: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run(self.argv(args), input=input, stdin=stdin, capture_output=True, timeout=300)
        if text:
            p.stdout, p.stderr = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        if ok:
            assert p.returncode == 0, f"budu {' '.join(args)}: {p.stderr}"
        return p

    def images(self) -> Images:
        return Images(self.root)

    def inspect(self, name: str) -> dict:
        return json.loads(self("image", "inspect", name).stdout)[0]


@pytest.fixture
def budu_a(tmp_path) -> Budu:
    return Budu(str(tmp_path / "root-a"))


@pytest.fixture
def budu_b(tmp_path) -> Budu:
    return Budu(str(tmp_path / "root-b"))


@pytest.fixture
def busybox(budu_a) -> str:
    """budu_a holds busybox:latest, made by `budu image bootstrap busybox`; returns its id."""
    out = budu_a("image", "bootstrap", "busybox").stdout.strip()
    assert out.startswith("sha256:") and len(out) == 71
    return out


def skopeo(*args: str, tmp) -> subprocess.CompletedProcess:  # noqa: ANN001
    if not os.access(SKOPEO, os.X_OK):
        pytest.fail("skopeo is not installed (scripts/install.sh installs it)")
    policy = os.path.join(str(tmp), "policy.json")
    if not os.path.exists(policy):
        with open(policy, "w") as f:
            json.dump({"default": [{"type": "insecureAcceptAnything"}]}, f)
    p = subprocess.run([SKOPEO, "--policy", policy, *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p


def oci_dir_image(layout: str, tag: str) -> tuple[str, dict, dict]:
    """(manifest digest, manifest, config) of `tag` in an OCI layout directory."""
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    [desc] = [m for m in index["manifests"] if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag]

    def blob(digest: str) -> bytes:
        with open(os.path.join(layout, "blobs", *digest.split(":")), "rb") as f:
            data = f.read()
        assert sha256(data) == digest
        return data

    manifest = json.loads(blob(desc["digest"]))
    return desc["digest"], manifest, json.loads(blob(manifest["config"]["digest"]))


def store_state(root: str) -> tuple:
    """Everything a load could leave behind: images and tags, snapshots (rows and directories),
    blobs, ingests and temporary files."""
    im = Images(root)
    try:
        snapdir = os.path.join(root, "snapshots")
        tmp = os.path.join(root, "tmp")
        return ([(i.id, i.tags) for i in im.list()], [(s.key, s.kind) for s in im.snapshots.walk()],
                sorted(os.listdir(snapdir)), list(im.content.walk()), im.content.ingests(),
                sorted(os.listdir(tmp)) if os.path.isdir(tmp) else [])
    finally:
        im.close()


def run_image(root: str, name: str, tmp_path, args: list[str] | None = None) -> str:  # noqa: ANN001
    """Run the image `name` under budu-runtime (its Cmd, or `args`) and return what it printed."""
    from budu.runtime.features import default_spec

    images = Images(root)
    key = f"run-{os.urandom(4).hex()}"
    bundle = tmp_path / key
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    img = images.get(name)
    cfg = images.config(img)["config"]
    [m] = images.snapshots.prepare(key, img.chain_id)
    try:
        if m.type == "bind":
            subprocess.run(["mount", "--bind", m.source, str(rootfs)], check=True)
        else:
            subprocess.run(["mount", "-t", m.type, "-o", ",".join(m.options), m.source, str(rootfs)], check=True)
        try:
            spec = default_spec()
            spec["process"]["terminal"] = False
            spec["process"]["args"] = args or (cfg.get("Entrypoint") or []) + (cfg.get("Cmd") or [])
            spec["process"]["env"] = cfg.get("Env") or spec["process"]["env"]
            spec["root"]["readonly"] = False
            (bundle / "config.json").write_text(json.dumps(spec))
            p = subprocess.run(["budu-runtime", "--root", str(tmp_path / "rt"), "run", "-b", str(bundle), key],
                               capture_output=True, text=True, timeout=60)
            assert p.returncode == 0, p.stderr
            return p.stdout
        finally:
            subprocess.run(["umount", str(rootfs)], check=True)
    finally:
        images.snapshots.remove(key)
        images.close()


class _closing:
    """An Images for a `with` block."""

    def __init__(self, images: Images) -> None:
        self.images = images

    def __enter__(self) -> Images:
        return self.images

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.images.close()


def members(path) -> dict[str, bytes]:  # noqa: ANN001
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}


def rootfs_tar(tmp_path, extra: dict[str, bytes] | None = None) -> bytes:  # noqa: ANN001
    """A root filesystem tarball (plain) of a busybox tree, with `extra` files."""
    root = tmp_path / f"rootfs-{os.urandom(3).hex()}"
    make_busybox_rootfs(str(root))
    for name, data in (extra or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(str(root), arcname=".")
    return buf.getvalue()


# -- round trips ------------------------------------------------------------------------------------

def test_docker_archive_round_trip(budu_a, budu_b, busybox, tmp_path):
    budu_a("tag", "busybox", "mine/bb:v1")
    out = tmp_path / "bb.tar"
    assert budu_a("save", "-o", str(out), "busybox", "mine/bb:v1").stdout == ""

    files = members(out)
    assert {"manifest.json", "repositories", "index.json", "oci-layout"} <= set(files)
    [item] = json.loads(files["manifest.json"])
    assert item["Config"] == "blobs/sha256/" + busybox[7:]
    assert sorted(item["RepoTags"]) == ["busybox:latest", "mine/bb:v1"]
    config = json.loads(files[item["Config"]])
    assert sha256(files[item["Config"]]) == busybox
    # each layer is an uncompressed tar whose digest is its diff id
    assert [sha256(files[name]) for name in item["Layers"]] == config["rootfs"]["diff_ids"]
    assert all(tarfile.is_tarfile(io.BytesIO(files[name])) for name in item["Layers"])
    assert json.loads(files["repositories"]) == {
        "busybox": {"latest": config["rootfs"]["diff_ids"][-1][7:]},
        "mine/bb": {"v1": config["rootfs"]["diff_ids"][-1][7:]}}
    # the OCI layout inside points at the same blobs
    index = json.loads(files["index.json"])
    names = sorted(m["annotations"]["io.containerd.image.name"] for m in index["manifests"])
    assert names == ["docker.io/library/busybox:latest", "docker.io/mine/bb:v1"]
    manifest = json.loads(files["blobs/sha256/" + index["manifests"][0]["digest"][7:]])
    assert manifest["config"]["digest"] == busybox
    assert ["blobs/sha256/" + layer["digest"][7:] for layer in manifest["layers"]] == item["Layers"]

    loaded = budu_b("load", "-i", str(out)).stdout
    assert loaded == "Loaded image: busybox:latest\nLoaded image: mine/bb:v1\n"
    assert budu_b.inspect("busybox")["Id"] == busybox
    assert budu_b.inspect("mine/bb:v1")["Id"] == busybox
    assert sorted(budu_b("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()) == \
        ["busybox:latest", "mine/bb:v1"]
    assert run_image(budu_b.root, "busybox", tmp_path, ["sh", "-c", "echo hello; ls /bin/busybox"]) == \
        "hello\n/bin/busybox\n"

    # saved again from the loaded copy (whose layer is now stored uncompressed): the same bytes
    again = tmp_path / "again.tar"
    budu_b("save", "-o", str(again), "busybox", "mine/bb:v1")
    assert again.read_bytes() == out.read_bytes()


def test_oci_archive_round_trip(budu_a, budu_b, busybox, tmp_path):
    out = tmp_path / "bb-oci.tar"
    budu_a("save", "--format", "oci-archive", "-o", str(out), "busybox:latest")
    files = members(out)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    [entry] = json.loads(files["index.json"])["manifests"]
    assert entry["annotations"] == {"io.containerd.image.name": "docker.io/library/busybox:latest",
                                    "org.opencontainers.image.ref.name": "latest"}
    with _closing(budu_a.images()) as images:
        original = images.get("busybox")
        layer = images.manifest(original)["layers"][0]
    assert entry["digest"] == original.manifest_digest
    assert sha256(files["blobs/sha256/" + layer["digest"][7:]]) == layer["digest"]
    assert files["blobs/sha256/" + layer["digest"][7:]][:2] == b"\x1f\x8b"  # as stored: compressed

    assert budu_b("load", "-i", str(out)).stdout == "Loaded image: busybox:latest\n"
    with _closing(budu_b.images()) as images:
        loaded = images.get("busybox:latest")
    assert (loaded.id, loaded.manifest_digest) == (original.id, original.manifest_digest)
    assert run_image(budu_b.root, "busybox", tmp_path, ["echo", "from oci"]) == "from oci\n"


def test_load_compressed_stream_from_stdin(budu_a, budu_b, busybox, tmp_path):
    raw = budu_a("save", "busybox", text=False).stdout
    assert raw[257:262] == b"ustar"
    p = budu_b("load", input=gzip.compress(raw))
    assert p.stdout == "Loaded image: busybox:latest\n"
    assert budu_b("load", "-q", input=raw).stdout == "Loaded image: busybox:latest\n"
    assert budu_b.inspect("busybox")["Id"] == busybox
    zst = subprocess.run(["zstd", "-q", "-c"], input=raw, capture_output=True, check=True).stdout
    fresh = Budu(str(tmp_path / "root-c"))
    assert fresh("load", input=zst).stdout == "Loaded image: busybox:latest\n"


def test_save_untagged_by_id_loads_as_id(budu_a, budu_b, busybox, tmp_path):
    out = tmp_path / "id.tar"
    budu_a("save", "-o", str(out), busybox[7:19])
    assert json.loads(members(out)["manifest.json"])[0]["RepoTags"] == []
    assert budu_b("load", "-i", str(out)).stdout == f"Loaded image ID: {busybox}\n"
    assert budu_b("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout == f"<none>:<none> {busybox[7:19]}\n"


def test_multiple_images_in_one_archive(budu_a, budu_b, busybox, tmp_path):
    tarball = tmp_path / "rootfs.tar"
    tarball.write_bytes(rootfs_tar(tmp_path, {"etc/motd": b"second image\n"}))
    second = budu_a("import", "-c", "CMD [\"cat\", \"/etc/motd\"]", str(tarball), "example/second:1").stdout.strip()
    for fmt in ("docker-archive", "oci-archive"):
        out = tmp_path / f"both-{fmt}.tar"
        budu_a("save", "--format", fmt, "-o", str(out), "busybox", "example/second:1")
        root = Budu(str(tmp_path / f"root-{fmt}"))
        assert root("load", "-i", str(out)).stdout == "Loaded image: busybox:latest\nLoaded image: example/second:1\n"
        assert root.inspect("busybox")["Id"] == busybox
        assert root.inspect("example/second:1")["Id"] == second
        assert run_image(root.root, "example/second:1", tmp_path) == "second image\n"


# -- referees: skopeo and umoci read what budu writes, budu reads what skopeo writes ------------------

def test_skopeo_reads_budu_docker_archive(budu_a, busybox, tmp_path):
    out = tmp_path / "bb.tar"
    budu_a("save", "-o", str(out), "busybox")
    # kept as a docker v2s2 manifest, skopeo copies the config blob untouched
    skopeo("copy", "--format", "v2s2", f"docker-archive:{out}", f"oci:{tmp_path / 'v2s2'}:x", tmp=tmp_path)
    _, manifest, config = oci_dir_image(str(tmp_path / "v2s2"), "x")
    assert manifest["config"]["digest"] == busybox
    # converted to OCI, skopeo re-serializes the config: the same image, other bytes
    skopeo("copy", f"docker-archive:{out}:busybox:latest", f"oci:{tmp_path / 'oci'}:x", tmp=tmp_path)
    _, _, converted = oci_dir_image(str(tmp_path / "oci"), "x")
    assert converted["rootfs"] == config["rootfs"]
    assert converted["config"] == config["config"] == {"Env": [config["config"]["Env"][0]], "Cmd": ["sh"]}


def test_skopeo_and_umoci_read_budu_oci_archive(budu_a, busybox, tmp_path):
    out = tmp_path / "bb-oci.tar"
    budu_a("save", "--format", "oci-archive", "-o", str(out), "busybox")
    skopeo("copy", f"oci-archive:{out}:latest", f"oci:{tmp_path / 'copy'}:x", tmp=tmp_path)
    digest, manifest, _ = oci_dir_image(str(tmp_path / "copy"), "x")
    assert manifest["config"]["digest"] == busybox
    with _closing(budu_a.images()) as images:
        assert digest == images.get("busybox").manifest_digest

    layout = tmp_path / "layout"
    layout.mkdir()
    with tarfile.open(out) as tar:
        tar.extractall(layout)
    if not os.access(UMOCI, os.X_OK):
        pytest.fail("umoci is not installed (scripts/install.sh installs it)")
    p = subprocess.run([UMOCI, "unpack", "--image", f"{layout}:latest", str(tmp_path / "bundle")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rootfs = tmp_path / "bundle" / "rootfs"
    with open(BUSYBOX, "rb") as f:
        assert (rootfs / "bin" / "busybox").read_bytes() == f.read()
    assert os.readlink(rootfs / "bin" / "sh") == "busybox"
    assert (os.stat(rootfs / "tmp").st_mode & 0o7777) == 0o1777
    assert (rootfs / "etc" / "passwd").read_text().startswith("root:x:0:0:")
    for d in ("proc", "sys", "dev", "root"):
        assert (rootfs / d).is_dir()


def test_budu_loads_skopeo_archives(budu_a, budu_b, busybox, tmp_path):
    out = tmp_path / "bb-oci.tar"
    budu_a("save", "--format", "oci-archive", "-o", str(out), "busybox")
    layout = tmp_path / "layout"
    layout.mkdir()
    with tarfile.open(out) as tar:
        tar.extractall(layout)
    with _closing(budu_a.images()) as images:
        manifest_digest = images.get("busybox").manifest_digest

    docker_tar = tmp_path / "skopeo-docker.tar"
    skopeo("copy", f"oci:{layout}:latest", f"docker-archive:{docker_tar}:sk/busybox:v1", tmp=tmp_path)
    assert budu_b("load", "-i", str(docker_tar)).stdout == "Loaded image: sk/busybox:v1\n"
    assert budu_b.inspect("sk/busybox:v1")["Id"] == busybox

    oci_tar = tmp_path / "skopeo-oci.tar"
    skopeo("copy", f"oci:{layout}:latest", f"oci-archive:{oci_tar}:sk/busybox:v2", tmp=tmp_path)
    fresh = Budu(str(tmp_path / "root-c"))  # (in root-b the image is already there, by its docker manifest)
    assert fresh("load", "-i", str(oci_tar)).stdout == "Loaded image: sk/busybox:v2\n"
    with _closing(fresh.images()) as images:
        v2 = images.get("sk/busybox:v2")
    assert (v2.id, v2.manifest_digest) == (busybox, manifest_digest)
    assert run_image(fresh.root, "sk/busybox:v2", tmp_path, ["echo", "skopeo made me"]) == "skopeo made me\n"
    assert budu_b("load", "-i", str(oci_tar)).stdout == "Loaded image: sk/busybox:v2\n"
    assert budu_b.inspect("sk/busybox:v2")["Id"] == busybox


def test_load_oci_index_of_platforms_picks_the_host(budu_a, budu_b, busybox, tmp_path):
    """A nested index (a multi-platform image) loads the host's manifest, named from the outer entry."""
    from budu.images.service import host_platform

    out = tmp_path / "bb-oci.tar"
    budu_a("save", "--format", "oci-archive", "-o", str(out), "busybox")
    files = members(out)
    [entry] = json.loads(files["index.json"])["manifests"]
    plat = host_platform()
    other = {"mediaType": entry["mediaType"], "digest": "sha256:" + "1" * 64, "size": 1,
             "platform": {"os": "linux", "architecture": "s390x" if plat.architecture != "s390x" else "amd64"}}
    here = dict(entry, platform={"os": plat.os, "architecture": plat.architecture})
    del here["annotations"]
    nested = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                         "manifests": [other, here]}).encode()
    files["blobs/sha256/" + sha256(nested)[7:]] = nested
    files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha256(nested), "size": len(nested),
        "annotations": {"org.opencontainers.image.ref.name": "example/multi:1"}}]}).encode()
    multi = tmp_path / "multi.tar"
    _write_tar(multi, files)
    assert budu_b("load", "-i", str(multi)).stdout == "Loaded image: example/multi:1\n"
    assert budu_b.inspect("example/multi:1")["Id"] == busybox


# -- bad input --------------------------------------------------------------------------------------

def _rewrite_oci(src, dst, edit_config) -> None:  # noqa: ANN001
    """Copy an oci-archive with its config edited (config, manifest and index digests redone)."""
    files = members(src)
    index = json.loads(files["index.json"])
    entry = index["manifests"][0]
    manifest = json.loads(files["blobs/sha256/" + entry["digest"][7:]])
    config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"][7:]])
    edit_config(config)
    cfg = json.dumps(config).encode()
    manifest["config"].update(digest=sha256(cfg), size=len(cfg))
    man = json.dumps(manifest).encode()
    entry.update(digest=sha256(man), size=len(man))
    files["blobs/sha256/" + sha256(cfg)[7:]] = cfg
    files["blobs/sha256/" + sha256(man)[7:]] = man
    files["index.json"] = json.dumps(index).encode()
    _write_tar(dst, files)


def _write_tar(path, files: dict[str, bytes]) -> None:  # noqa: ANN001
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _flip_last_member_byte(src, dst, name_prefix: str = "blobs/") -> None:  # noqa: ANN001
    """Copy a tar with one byte changed in the middle of its biggest blob."""
    files = members(src)
    biggest = max((n for n in files if n.startswith(name_prefix)), key=lambda n: len(files[n]))
    data = bytearray(files[biggest])
    data[len(data) // 2] ^= 0xFF
    files[biggest] = bytes(data)
    _write_tar(dst, files)


@pytest.mark.parametrize("case,message", [
    ("truncated", "truncated"),
    ("truncated-gzip", "truncated"),
    ("not-a-tar", "not a tar file"),
    ("empty", "not a tar file"),
    ("docker-layer-changed", "does not match its digest"),
    ("docker-old-style-layer-changed", "does not match its diff id"),
    ("oci-blob-changed", "does not match its digest"),
    ("oci-wrong-diff-id", "diff id mismatch"),
    ("no-manifest", "neither manifest.json"),
    ("malformed-manifest", "Layers is not a list of paths"),
    ("malformed-config", "is not an image config"),
])
def test_bad_archive_fails_cleanly(budu_a, budu_b, busybox, tmp_path, case, message):
    docker_tar, oci_tar = tmp_path / "d.tar", tmp_path / "o.tar"
    budu_a("save", "-o", str(docker_tar), "busybox")
    budu_a("save", "--format", "oci-archive", "-o", str(oci_tar), "busybox")
    # the store already holds another image: a failed load must not touch it either
    other = tmp_path / "other.tar"
    other.write_bytes(rootfs_tar(tmp_path, {"etc/other": b"x\n"}))
    budu_b("import", str(other), "other:1")
    before = store_state(budu_b.root)

    bad = tmp_path / "bad.tar"
    raw = docker_tar.read_bytes()
    if case == "truncated":
        bad.write_bytes(raw[:len(raw) // 2])
    elif case == "truncated-gzip":
        bad.write_bytes(gzip.compress(raw)[:-5000])
    elif case == "not-a-tar":
        bad.write_text("this is not an archive, just some text\n" * 20)
    elif case == "empty":
        bad.write_bytes(b"")
    elif case == "docker-layer-changed":
        _flip_last_member_byte(docker_tar, bad)
    elif case == "docker-old-style-layer-changed":  # layers named <id>/layer.tar, not by digest
        files = members(docker_tar)
        [item] = json.loads(files["manifest.json"])
        data = bytearray(files[item["Layers"][0]])
        data[len(data) // 2] ^= 0xFF
        item["Layers"] = ["0123abcd/layer.tar"]
        files["0123abcd/layer.tar"] = bytes(data)
        files["manifest.json"] = json.dumps([item]).encode()
        _write_tar(bad, files)
    elif case == "oci-blob-changed":
        _flip_last_member_byte(oci_tar, bad)
    elif case == "oci-wrong-diff-id":  # caught only when the layer is unpacked: the rollback path
        _rewrite_oci(oci_tar, bad, lambda c: c["rootfs"].update(diff_ids=["sha256:" + "0" * 64]))
    elif case in ("malformed-manifest", "malformed-config"):
        files = members(docker_tar)
        [item] = json.loads(files["manifest.json"])
        if case == "malformed-manifest":
            item["Layers"] = {"not": "a list"}
        else:
            item["Config"] = "config.json"
            files["config.json"] = b'{"rootfs": "nope"}'
        files["manifest.json"] = json.dumps([item]).encode()
        _write_tar(bad, files)
    elif case == "no-manifest":
        with tarfile.open(bad, "w") as tar:
            info = tarfile.TarInfo("hello.txt")
            info.size = 3
            tar.addfile(info, io.BytesIO(b"hi\n"))

    p = budu_b("load", "-i", str(bad), ok=False)
    assert p.returncode != 0
    assert p.stdout == ""
    assert p.stderr.startswith("Error: ") and p.stderr.count("\n") == 1, p.stderr
    assert message in p.stderr
    assert "Traceback" not in p.stderr
    assert store_state(budu_b.root) == before


def test_save_errors_leave_no_file(budu_a, busybox, tmp_path):
    out = tmp_path / "x.tar"
    p = budu_a("save", "-o", str(out), "busybox", "nosuch:image", ok=False)
    assert p.returncode != 0 and p.stderr == "Error: No such image: nosuch:image\n"
    assert os.listdir(tmp_path) == ["root-a"]
    p = budu_a("save", "--format", "tarball", "-o", str(out), "busybox", ok=False)
    assert p.returncode != 0 and "invalid choice" in p.stderr and p.stderr.count("\n") == 1

    # a terminal on stdout is refused, as docker does
    leader, follower = pty.openpty()
    try:
        p = subprocess.run(budu_a.argv(("save", "busybox")), stdout=follower, stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(follower)
        os.close(leader)
    assert p.returncode != 0
    assert p.stderr.decode() == "Error: cowardly refusing to save to a terminal. Use the -o flag or redirect\n"


def test_load_missing_file(budu_b, tmp_path):
    p = budu_b("load", "-i", str(tmp_path / "nope.tar"), ok=False)
    assert p.returncode != 0 and p.stderr == f"Error: open {tmp_path / 'nope.tar'}: no such file or directory\n"


# -- import -----------------------------------------------------------------------------------------

def test_import_with_changes(budu_a, tmp_path):
    tar = rootfs_tar(tmp_path)
    gz = gzip.compress(tar, mtime=0)
    path = tmp_path / "rootfs.tar.gz"
    path.write_bytes(gz)
    out = budu_a("import", "--change", 'CMD ["echo","hi"]', "--change", "ENV A=b", "-m", "from a tarball",
                 str(path), "example/imported:1").stdout
    image_id = out.strip()
    assert out == image_id + "\n" and image_id.startswith("sha256:") and len(image_id) == 71

    with _closing(budu_a.images()) as images:
        img = images.get("example/imported:1")
        config = images.config(img)
        manifest = images.manifest(img)
    assert img.id == image_id
    assert config["config"] == {"Cmd": ["echo", "hi"], "Env": ["A=b"]}
    assert config["rootfs"] == {"type": "layers", "diff_ids": [sha256(tar)]}
    assert config["history"][0]["comment"] == "from a tarball"
    assert config["os"] == "linux" and config["architecture"]
    # a gzip tarball is stored as it came
    assert manifest["layers"] == [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                   "digest": sha256(gz), "size": len(gz)}]
    assert run_image(budu_a.root, "example/imported:1", tmp_path) == "hi\n"

    # a plain tarball on stdin: stored gzip-compressed, the same diff id, so the same snapshot
    second = budu_a("import", "-c", "ENTRYPOINT echo $A", "-c", "ENV A=from-stdin", "-", "example/imported:2",
                    input=tar).stdout.strip()
    with _closing(budu_a.images()) as images:
        img2 = images.get("example/imported:2")
        config2 = images.config(img2)
        [layer] = images.manifest(img2)["layers"]
        assert img2.chain_id == img.chain_id
        with images.content.open(layer["digest"]) as f:
            assert gzip.decompress(f.read()) == tar
    assert img2.id == second
    assert config2["config"]["Entrypoint"] == ["/bin/sh", "-c", "echo $A"]
    assert config2["history"][0]["comment"] == "Imported from -"
    assert run_image(budu_a.root, "example/imported:2", tmp_path) == "from-stdin\n"


def test_import_bad_input_changes_nothing(budu_a, tmp_path):
    budu_a("import", "-", "first:1", input=rootfs_tar(tmp_path))
    before = store_state(budu_a.root)
    junk = tmp_path / "junk"
    junk.write_bytes(os.urandom(5000))
    for args, message in [
        ((str(junk), "x:1"), "not a tar archive"),
        (("-c", "FROM scratch", str(junk)), "FROM is not a valid change command"),
        (("-c", "ENV", str(junk)), "ENV requires at least one argument"),
        ((str(tmp_path / "missing.tar"),), "no such file or directory"),
        (("-", "x:1"), "the layer tarball is empty"),
    ]:
        p = budu_a("import", *args, ok=False, input=b"")
        assert p.returncode != 0 and p.stderr.count("\n") == 1 and message in p.stderr, (args, p.stderr)
        assert store_state(budu_a.root) == before
    gz = gzip.compress(rootfs_tar(tmp_path))
    p = budu_a("import", "-", "x:1", ok=False, input=gz[:len(gz) // 2])
    assert p.returncode != 0 and "ends early" in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert store_state(budu_a.root) == before


@pytest.mark.parametrize("changes,expected", [
    (['CMD ["echo","hi"]'], {"Cmd": ["echo", "hi"]}),
    (["CMD echo hi"], {"Cmd": ["/bin/sh", "-c", "echo hi"]}),
    (['ENTRYPOINT ["/bin/app", "-x"]', "cmd --help"], {"Entrypoint": ["/bin/app", "-x"], "Cmd": ["/bin/sh", "-c", "--help"]}),
    (["ENV A=b", 'env B="two words" C=3', "ENV A 1 2"], {"Env": ["A=1 2", "B=two words", "C=3"]}),
    (["WORKDIR /app", "WORKDIR sub/../src"], {"WorkingDir": "/app/src"}),
    (["USER 1000:1000", "STOPSIGNAL SIGINT"], {"User": "1000:1000", "StopSignal": "SIGINT"}),
    (["LABEL a=1 b=\"x y\"", "LABEL c 3"], {"Labels": {"a": "1", "b": "x y", "c": "3"}}),
    (["EXPOSE 80 53/udp 8000-8001"], {"ExposedPorts": {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}}),
    (['VOLUME ["/data"]', "VOLUME /a /b"], {"Volumes": {"/data": {}, "/a": {}, "/b": {}}}),
])
def test_changes(changes, expected):
    assert apply_changes({}, changes) == expected


@pytest.mark.parametrize("change,message", [
    ("RUN echo", "RUN is not a valid change command"),
    ("EXPOSE 99999", "invalid port range"),
    ("EXPOSE 80/icmp", "invalid proto"),
    ("ENV A", "ENV needs a value for A"),
    ("LABEL =x", "LABEL expects key=value"),
    ("", "an empty instruction"),
])
def test_bad_changes(change, message):
    with pytest.raises(ConfigError, match=message):
        apply_changes({}, [change])
