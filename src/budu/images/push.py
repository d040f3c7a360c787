"""Push: a local image to a registry, as docker push does it for one tag.

The blobs go up as they are stored (the layers compressed as they were pulled) and the manifest
byte for byte, so the registry serves the image under the digest it has here.  Blobs the registry
already has are skipped (a HEAD); a blob the image also has in another repository of the same
registry — its repo digests say where it came from — is mounted from there instead of sent; the rest
upload in parallel.  The manifest goes last, under the tag, once every blob it names is there.  An
image chosen from an index (multi-platform) is pushed as its single-platform manifest, as docker does
without --all-platforms.

Layers kept uncompressed (an image loaded from a docker-archive) are gzipped on the way out, as
docker and skopeo do: on every core (budu.images.layers.ParallelGzip) while the bytes already
compressed are being sent, in one streamed upload whose digest is that of what was sent.  The
manifest pushed then names the gzip blobs, so its digest is not the local one.  That manifest is
kept (not the gzip blobs: they would double the disk the layers take); like docker's record of
which digest a layer had where, it lets the next push ask the registry for each gzip blob by
digest (HEAD, or a mount from a repository it went to) before compressing anything again.  The
gzip is reproducible (fixed blocks, level and header), so compressing again gives the same blob.
zstd and gzip layers are never recompressed.
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
_CHUNK = 1 << 20  # also the gzip block: fixed, so the same layer always gives the same blob
# uncompressed layer media type -> what it becomes when gzipped for a registry
GZIPPED = {
    "application/vnd.oci.image.layer.v1.tar": "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar": "application/vnd.docker.image.rootfs.diff.tar.gzip",
}

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
    known = _gzipped_before(images, image, manifest)
    config = manifest["config"]
    layer_descs = manifest.get("layers") or []
    sources = mount_sources(image, ref)
    report = _serialized(progress)
    layer_digests = {d["digest"] for d in layer_descs}
    gzip_layers = {d["digest"]: d for d in layer_descs if d.get("mediaType") in GZIPPED}
    blobs: dict[str, int] = {}  # each blob once, even if the image names it twice
    for desc in [*layer_descs, config]:
        blobs.setdefault(desc["digest"], int(desc.get("size") or 0))
    for digest in reversed(list(dict.fromkeys(d["digest"] for d in layer_descs))):
        report("preparing", digest)
    compressed: dict[str, dict] = {}  # uncompressed blob digest -> the gzip descriptor pushed
    with Registry(ref.domain, credentials=credentials, insecure=insecure) as reg:
        reg.ping()  # fail early (unreachable, not a registry) before any thread starts
        pool = ThreadPoolExecutor(max_workers=PARALLEL_UPLOADS, thread_name_prefix="push")
        try:
            futures = []
            for digest, size in blobs.items():
                if digest in gzip_layers:
                    futures.append(pool.submit(_push_gzipped, images, reg, ref.path, gzip_layers[digest],
                                               known.get(digest), sources, report, compressed))
                else:
                    futures.append(pool.submit(_push_blob, images, reg, ref.path, digest, size, sources,
                                               report if digest in layer_digests else _quiet))
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for f in done:  # the first failure stops the rest: queued uploads are cancelled
                f.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        if compressed:
            data = _gzipped_manifest(manifest, compressed)
            images.content.put(data)
        expected = "sha256:" + _sha256(data)
        digest = reg.put_manifest(ref.path, ref.tag or "latest", image.manifest_type, data)
    if digest != expected:  # cannot happen: the bytes are the stored, verified ones
        raise BuduError(f"pushed manifest has digest {digest}, not the stored {expected}")
    if compressed:  # kept with the image (and freed with it): the next push knows the gzip digests
        images.store.add_blobs(image.id, [digest])
    add_repo_digest(images, image.id, f"{ref.name}@{digest}")
    return digest


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _uncompressed(manifest: dict) -> bool:
    return any(d.get("mediaType") in GZIPPED for d in manifest.get("layers") or [])


def _gzipped_before(images: Images, image: Image, manifest: dict) -> dict[str, dict]:
    """For each uncompressed layer, the gzip descriptor an earlier push gave it: from the manifests
    that push kept, found through the image's repo digests."""
    layers = manifest.get("layers") or []
    if not _uncompressed(manifest):
        return {}
    out: dict[str, dict] = {}
    for rd in image.repo_digests:
        digest = rd.rpartition("@")[2]
        if digest == image.manifest_digest or not images.content.exists(digest):
            continue
        try:
            other = json.loads(images.content.read(digest))
        except (OSError, ValueError):
            continue
        theirs = other.get("layers") or []
        if (other.get("config") or {}).get("digest") != image.id or len(theirs) != len(layers):
            continue
        for mine, then in zip(layers, theirs):
            if mine.get("mediaType") in GZIPPED and then.get("mediaType") == GZIPPED[mine["mediaType"]]:
                out.setdefault(mine["digest"], {k: then[k] for k in ("mediaType", "digest", "size")})
    return out


def _gzipped_manifest(manifest: dict, compressed: dict[str, dict]) -> bytes:
    """The manifest with each uncompressed layer replaced by its gzip blob (annotations kept)."""
    out = dict(manifest)
    out["layers"] = [dict(d, **compressed[d["digest"]]) if d["digest"] in compressed else d
                     for d in manifest.get("layers") or []]
    return json.dumps(out, separators=(",", ":")).encode()


def _push_gzipped(images: Images, reg, repo: str, desc: dict, known: dict | None,  # noqa: ANN001
                  sources: list[str], report: PushProgress, compressed: dict[str, dict]) -> None:
    """An uncompressed layer, gzipped: found in the registry under the digest an earlier push
    gave it, or mounted from a repository that has it, or else compressed on all cores while it
    uploads."""
    if known is not None:
        if reg.blob_exists(repo, known["digest"]) is not None:
            compressed[desc["digest"]] = known
            report("exists", desc["digest"])
            return
        source = next((s for s in sources if reg.blob_exists(s, known["digest"]) is not None), None)
        if source is not None:
            result = reg.upload_blob(repo, known["digest"], known["size"], _Missing(known["digest"]),
                                     mount_from=source)
            compressed[desc["digest"]] = known
            if result == "mounted":
                report("mounted", desc["digest"], source)
            else:
                report("exists", desc["digest"])
            return
    digest, size = reg.upload_stream(repo, _Gzipping(images, desc["digest"], int(desc.get("size") or 0), report))
    compressed[desc["digest"]] = {"mediaType": GZIPPED[desc["mediaType"]], "digest": digest, "size": size}
    report("pushed", desc["digest"])


class _Gzipping:
    """An uncompressed stored layer as gzip chunks; iterable again from the start, so a failed
    upload can retry.  The layer is hashed as it is read: a damaged store is not pushed."""

    def __init__(self, images: Images, digest: str, size: int, report: PushProgress) -> None:
        self.images, self.digest, self.size, self.report = images, digest, size, report

    def __iter__(self) -> Iterator[bytes]:
        import hashlib

        from budu.images.layers import GZIP_LEVEL, ParallelGzip

        gz = ParallelGzip(GZIP_LEVEL)
        h, done = hashlib.sha256(), 0
        try:
            with self.images.content.open(self.digest) as f:
                while block := f.read(_CHUNK):
                    h.update(block)
                    done += len(block)
                    self.report("pushing", self.digest, done, self.size)
                    out = gz.compress(block)
                    if out:
                        yield out
            if "sha256:" + h.hexdigest() != self.digest:
                raise BuduError(f"layer {self.digest} in the content store is damaged (it hashes to "
                                f"sha256:{h.hexdigest()}): pull or load the image again")
            yield gz.flush()
        except BaseException:
            gz.abort()
            raise


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
