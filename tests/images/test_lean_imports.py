"""`budu run` looks an image up, reads its config and stacks its snapshots on every start: in a fresh
interpreter none of that may import the slow stdlib modules (re, json, dataclasses, typing,
shutil, threading... each 5-16 ms on a small VM).  Pull, push, build, save, load and prune may:
they import them inside the functions that need them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import budu

SRC = os.path.dirname(os.path.dirname(os.path.abspath(budu.__file__)))
SITE = [p for p in sys.path if p.endswith("site-packages")]

HEAVY = {"re", "json", "dataclasses", "typing", "shutil", "threading", "contextlib", "collections",
         "collections.abc", "enum", "inspect", "subprocess", "argparse", "platform", "datetime", "copy",
         "weakref", "socket", "signal", "hashlib", "tempfile", "urllib", "http"}

PRELUDE = f"""
import sys
sys.path[:0] = {[SRC, *SITE]!r}
HEAVY = {sorted(HEAVY)!r}
def report():
    print("[" + ",".join('"' + m + '"' for m in sorted(m for m in sys.modules if m in HEAVY)) + "]")
"""


def fresh(code: str) -> list | bool:
    """Run `code` in a new interpreter (-I -S: no site, no user paths); it prints one JSON value."""
    p = subprocess.run([sys.executable, "-I", "-S", "-c", PRELUDE + code], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def not_ours() -> set[str]:
    """budu.metadata opens the database through sqlite3, whose Python half imports datetime and
    collections.abc: not this package's to avoid (empty once budu.metadata does without it)."""
    if not fresh("import budu.metadata\nprint('true' if 'sqlite3' in sys.modules else 'false')"):
        return set()
    return set(fresh("import sqlite3\nreport()"))


def test_importing_the_run_path_modules_is_light():
    got = fresh("import budu.images.service, budu.images.reference, budu.images.content, budu.images.snapshots,"
                " budu.images.store\nreport()")
    assert set(got) - not_ours() == set(), got


def test_looking_up_an_image_and_stacking_its_snapshots_is_light(tmp_path, kit):
    """The lookups `budu run busybox` makes, on a real store holding a real image."""
    from budu.images.layers import apply_layer
    from budu.images.service import Images, chain_ids
    from budu.images.store import Image

    root = str(tmp_path / "root")
    img = kit.make_image({"bin/true": b"#!/bin/sh\n", "etc/hostname": b"x\n"}, cmd=["true"])
    images = Images(root)
    try:
        config = img.blobs[img.config_digest]
        for digest, data in img.blobs.items():
            images.content.put(data, digest)
        images.content.put(img.manifest, img.digest)
        diff_ids = json.loads(config)["rootfs"]["diff_ids"]
        chain = chain_ids(diff_ids)[-1]
        images.snapshots.prepare("extract-1", None)
        with images.content.open(img.layer_digests[0]) as f:
            apply_layer(f, images.snapshots.upper_dir("extract-1"), kit.OCI_LAYER_GZIP, expected_diff_id=diff_ids[0])
        images.snapshots.commit(chain, "extract-1")
        images.store.add(Image(img.config_digest, img.digest, kit.OCI_MANIFEST, None, chain, 0, 1),
                         [img.config_digest, img.digest, *img.layer_digests], tag="docker.io/library/busybox:latest",
                         repo_digest=f"docker.io/library/busybox@{img.digest}")
    finally:
        images.close()

    got = fresh(f"""
from budu.images import reference
from budu.images.service import Images
images = Images({root!r})
r = reference.parse("busybox")
assert str(r) == "docker.io/library/busybox:latest" and r.familiar() == "busybox:latest"
image = images.get("busybox")
assert images.get("busybox:latest") == image == images.get({img.config_digest[7:19]!r})
assert images.get("docker.io/library/busybox@{img.digest}") == image
assert images.store.get(image.id) == image
config = images.config(image).get("config") or {{}}
assert config["Cmd"] == ["true"], config
assert images.manifest(image)["layers"][0]["digest"] == {img.layer_digests[0]!r}
images.snapshots.prepare("container-1", image.chain_id, labels={{"container": "1"}})
(m,) = images.snapshots.mounts("container-1")
assert m.type == "overlay" and m.options[-1].startswith("lowerdir="), m
upper = images.snapshots.upper_dir("container-1")
assert images.snapshots.stat("container-1").labels == {{"container": "1"}}
assert images.snapshots.exists(image.chain_id)
assert images.snapshots.usage("container-1") >= 0
report()
images.close()
""")
    assert set(got) - not_ours() == set(), got

