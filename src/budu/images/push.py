"""Push: a local image to a registry, as docker push does it for one tag.

The blobs go up as they are stored (the layers compressed as they were pulled) and the manifest
byte for byte, so the registry serves the image under the digest it has here.  Blobs the registry
already has are skipped (a HEAD); a blob the image also has in another repository of the same
registry — its repo digests say where it came from — is mounted from there instead of sent; the rest
upload in parallel.  The manifest goes last, under the tag, once every blob it names is there.  An
image chosen from an index (multi-platform) is pushed as its single-platform manifest, as docker does
without --all-platforms.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass

from budu.errors import BuduError, ConfigError, NotFound
from budu.images import reference
from budu.images.service import MANIFEST_TYPES, Images
from budu.images.store import Image

PARALLEL_UPLOADS = 5  # docker's default max-concurrent-uploads
_CHUNK = 1 << 20

# progress(event, digest, *details), one call at a time, for the layers only (docker shows no line
# for the config):
#   ("preparing", digest)                  before any request, top layer first (docker's order)
#   ("exists", digest)                     the repository has it: "Layer already exists"
#   ("mounted", digest, from_repository)   mounted from another repository: "Mounted from test/busybox"
#   ("pushing", digest, done, total)       bytes sent so far (starts over if an upload is retried)
#   ("pushed", digest)                     uploaded: "Pushed"
PushProgress = Callable[..., None]


class NoSuchTag(NotFound):
    """The name to push is not a tag of a local image (docker's wording)."""


@dataclass(frozen=True)
class Layer:
    digest: str  # the blob, as stored and pushed
    size: int
    diff_id: str  # the uncompressed layer: docker's id for it in push output


def local_image(images: Images, name: str) -> tuple[reference.Reference, Image]:
    """The reference to push to and the local image its tag names."""
    ref = reference.parse(name)
    if ref.digest:
        raise ConfigError(f"cannot push a digest reference: {name} (push a tag)")
    try:
        return ref, images.store.resolve(f"{ref.name}:{ref.tag}")
    except NotFound:
        pass
    if any(t.rsplit(":", 1)[0] == ref.name for img in images.list() for t in img.tags):
        raise NoSuchTag(f"tag does not exist: {ref.familiar()}")
    raise NoSuchTag(f"An image does not exist locally with the tag: {ref.familiar_name()}")


def layers(images: Images, image: Image) -> list[Layer]:
    """The image's layers, bottom first, with their diff ids."""
    manifest = images.manifest(image)
    descs = manifest.get("layers") or []
    diff_ids = (images.config(image).get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != len(descs):
        raise BuduError(f"image {image.id[7:19]}: its config lists {len(diff_ids)} layers, its manifest {len(descs)}")
    return [Layer(d["digest"], int(d.get("size") or 0), diff_id) for d, diff_id in zip(descs, diff_ids)]


def mount_sources(image: Image, ref: reference.Reference) -> list[str]:
    """Other repositories of the same registry known to hold the image (from its repo digests)."""
    out: list[str] = []
    for rd in image.repo_digests:
        try:
            src = reference.parse(rd)
        except ConfigError:
            continue
        if src.domain == ref.domain and src.path != ref.path and src.path not in out:
            out.append(src.path)
    return out


def push(images: Images, name: str, progress: PushProgress | None = None, credentials=None,  # noqa: ANN001
         insecure: bool | None = None) -> str:
    """Push the local image tagged `name` to its registry; returns the manifest digest."""
    from budu.images.registry import Registry

    ref, image = local_image(images, name)
    if image.manifest_type not in MANIFEST_TYPES:
        raise ConfigError(f"{ref.familiar()}: cannot push a {image.manifest_type} manifest")
    data = images.content.read(image.manifest_digest)
    manifest = json.loads(data)
    config = manifest["config"]
    layer_descs = manifest.get("layers") or []
    sources = mount_sources(image, ref)
    report = _serialized(progress)
    layer_digests = {d["digest"] for d in layer_descs}
    blobs: dict[str, int] = {}  # each blob once, even if the image names it twice
    for desc in [*layer_descs, config]:
        blobs.setdefault(desc["digest"], int(desc.get("size") or 0))
    for digest in reversed(list(dict.fromkeys(d["digest"] for d in layer_descs))):
        report("preparing", digest)
    with Registry(ref.domain, credentials=credentials, insecure=insecure) as reg:
        reg.ping()  # fail early (unreachable, not a registry) before any thread starts
        pool = ThreadPoolExecutor(max_workers=PARALLEL_UPLOADS, thread_name_prefix="push")
        try:
            futures = [pool.submit(_push_blob, images, reg, ref.path, digest, size, sources,
                                   report if digest in layer_digests else _quiet)
                       for digest, size in blobs.items()]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for f in done:  # the first failure stops the rest: queued uploads are cancelled
                f.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        digest = reg.put_manifest(ref.path, ref.tag or "latest", image.manifest_type, data)
    if digest != image.manifest_digest:  # cannot happen: the bytes are the stored, verified ones
        raise BuduError(f"pushed manifest has digest {digest}, not the stored {image.manifest_digest}")
    add_repo_digest(images, image.id, f"{ref.name}@{digest}")
    return digest


def add_repo_digest(images: Images, image_id: str, name: str) -> None:
    """Record `repo@digest` for an image that is still there (a concurrent rmi wins)."""
    images.store.add_repo_digest(image_id, name)


def _push_blob(images: Images, reg, repo: str, digest: str, size: int, sources: list[str],  # noqa: ANN001
               report: PushProgress) -> None:
    source = sources[0] if sources else None
    if images.content.exists(digest):
        chunks: _Blob | _Missing = _Blob(images, digest, size, report)
    else:
        # Not kept here (its snapshot came from another image): the registry may have it all the same.
        if reg.blob_exists(repo, digest) is not None:
            report("exists", digest)
            return
        source = next((s for s in sources if reg.blob_exists(s, digest) is not None), None)
        if source is None:
            raise NotFound(f"blob {digest} is not in the content store and {reg.host}/{repo} does not have it: "
                           f"pull the image again to push it")
        chunks = _Missing(digest)
    result = reg.upload_blob(repo, digest, size, chunks, mount_from=source)
    if result == "exists":
        report("exists", digest)
    elif result == "mounted":
        report("mounted", digest, source)
    else:
        report("pushed", digest)


class _Blob:
    """A stored blob as upload chunks; iterable again from the start, so a failed upload can retry."""

    def __init__(self, images: Images, digest: str, size: int, report: PushProgress) -> None:
        self.images, self.digest, self.size, self.report = images, digest, size, report

    def __iter__(self) -> Iterator[bytes]:
        done = 0
        with self.images.content.open(self.digest) as f:
            while chunk := f.read(_CHUNK):
                done += len(chunk)
                self.report("pushing", self.digest, done, self.size)
                yield chunk


class _Missing:
    """Stands for a blob we do not have, where a mount is expected to succeed."""

    def __init__(self, digest: str) -> None:
        self.digest = digest

    def __iter__(self) -> Iterator[bytes]:  # a generator: fails when read, not when iter() is taken
        raise NotFound(f"blob {self.digest} is not in the content store and could not be mounted: "
                       f"pull the image again to push it")
        yield b""  # pragma: no cover


def _quiet(*_: object) -> None:
    pass


def _serialized(progress: PushProgress | None) -> PushProgress:
    """The caller's callback, called by one upload thread at a time."""
    if progress is None:
        return _quiet
    lock = threading.Lock()

    def report(*event: object) -> None:
        with lock:
            progress(*event)

    return report
