"""Image records: add, resolve the way docker does, tag, and remove freeing only unshared blobs."""

from __future__ import annotations

import pytest

from budu.errors import ConfigError, NotFound, StateError
from budu.images.store import Image, ImageStore
from budu.metadata import Database

A = "sha256:" + "a" * 64
B = "sha256:" + "ab" * 32
LAYER = "sha256:" + "1" * 64
SHARED = "sha256:" + "2" * 64


@pytest.fixture
def store(tmp_path):
    db = Database(str(tmp_path))
    yield ImageStore(db)
    db.close()


def image(i: str) -> Image:
    return Image(i, "sha256:" + "9" * 64, "application/vnd.oci.image.manifest.v1+json", None, LAYER, 0, 1234)


def test_add_and_resolve(store):
    store.add(image(A), [A, LAYER, SHARED], tag="docker.io/library/busybox:latest",
              repo_digest="docker.io/library/busybox@sha256:" + "9" * 64)
    for name in ("docker.io/library/busybox:latest", "busybox", "busybox:latest", A, A[7:19], "aaaa",
                 "busybox@sha256:" + "9" * 64):
        assert store.resolve(name).id == A, name
    img = store.resolve("busybox")
    assert img.tags == ("docker.io/library/busybox:latest",)
    with pytest.raises(NotFound, match="No such image: nope"):
        store.resolve("nope")


def test_ambiguous_prefix(store):
    store.add(image(A), [A])
    store.add(image(B), [B])
    with pytest.raises(ConfigError, match="ambiguous"):
        store.resolve("a")
    assert store.resolve("ab").id == B


def test_remove_frees_only_unshared_blobs(store):
    store.add(image(A), [A, SHARED], tag="docker.io/library/a:1")
    store.add(image(B), [B, SHARED], tag="docker.io/library/b:1")
    assert store.remove(A) == [A]  # SHARED is still held by B
    assert sorted(store.remove(B)) == sorted([B, SHARED])
    assert store.list() == []


def test_multiple_tags_need_force(store):
    store.add(image(A), [A], tag="docker.io/library/a:1")
    store.tag(A, "docker.io/library/a:2")
    with pytest.raises(StateError, match="must be forced"):
        store.remove(A)
    assert store.untag("docker.io/library/a:2") == A
    store.remove(A)
    assert store.list() == []
