"""Images in and out of files: `docker save` / `docker load` archives, OCI layouts, `docker import`.

docker-archive is what `docker save` writes since docker 25, which old and new tools both read:

    oci-layout, index.json       an OCI image layout over the blobs below (one entry per tag)
    manifest.json                docker's own list: [{"Config", "RepoTags", "Layers"}], paths to blobs
    repositories                 {"busybox": {"latest": <top layer>}}, for docker before 1.10
    blobs/sha256/<config>        the image config, byte for byte: its digest is the image id
    blobs/sha256/<manifest>      an OCI manifest naming the config and the layers below
    blobs/sha256/<diff id>       each layer as an uncompressed tar, so its digest is its diff id

oci-archive is an OCI image layout in a tar with the blobs as a registry serves them (layers
compressed), so an image keeps its manifest digest through save and load.

`load` reads either, plain or compressed (gzip, zstd, bzip2, xz).  The tar is spooled into a
private directory first (docker puts manifest.json last), every blob is checked against its
digest and every layer against its diff id, and only then does anything reach the store; if a
later step fails, the blobs and snapshots it added are removed again, so a bad archive leaves the
store as it was.  `import_rootfs` (`docker import`) and the bootstrap images share one helper,
`create_image`, that stores layer tarballs, a config and a manifest and records the image.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import posixpath
import re
import shlex
import shutil
import tarfile
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from budu.errors import BuduError, ConfigError, NotFound, StateError
from budu.images import reference
from budu.images.content import DigestMismatch
from budu.images.layers import GZIP_LEVEL, LayerError, ParallelGzip, apply_layer
from budu.images.service import (DOCKER_MANIFEST, INDEX_TYPES, MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST, Images,
                                 chain_ids, host_platform)
from budu.images.store import Image

FORMATS = ("docker-archive", "oci-archive")
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
REF_NAME = "org.opencontainers.image.ref.name"  # OCI: the tag only, as docker and containerd write it
IMAGE_NAME = "io.containerd.image.name"  # containerd and docker: the full reference
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
CHANGE_COMMANDS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")

_CHUNK = 1 << 20
_BLOCK = 512
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))
_MEDIA = {"none": LAYER_TAR, "gzip": LAYER_GZIP, "zstd": LAYER_ZSTD}


class ArchiveError(BuduError):
    """An archive or root filesystem tarball that cannot be read; the message names the entry."""


# ---------------------------------------------------------------------------------------------
# Compressed streams
# ---------------------------------------------------------------------------------------------

def _sniff(head: bytes) -> str:
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return "none"


class _Prefixed(io.RawIOBase):
    """`head` (bytes already read to sniff the format), then the rest of `stream`; with `sink`,
    every byte read is also handed to it (to store a gzip blob while it is decompressed)."""

    def __init__(self, stream: BinaryIO, head: bytes, sink=None) -> None:  # noqa: ANN001
        self._stream, self._head, self._sink = stream, head, sink

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # noqa: ANN001
        if self._head:
            data, self._head = self._head[:len(b)], self._head[len(b):]
        else:
            data = self._stream.read(len(b))
        if data and self._sink is not None:
            self._sink(data)
        n = len(data)
        b[:n] = data
        return n


def _decompressor(raw: BinaryIO, kind: str) -> BinaryIO:
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(raw)
    if kind == "xz":
        return lzma.LZMAFile(raw)
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return raw


def _open(stream: BinaryIO) -> tuple[BinaryIO, str]:
    """The decompressed bytes of `stream` (compression told by magic bytes) and its compression."""
    head = stream.read(8)
    kind = _sniff(head)
    return _decompressor(io.BufferedReader(_Prefixed(stream, head), _CHUNK), kind), kind


def _decode_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError)
    try:
        import zstandard

        errors += (zstandard.ZstdError,)
    except ImportError:
        pass
    return errors


def _what(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    if isinstance(e, EOFError):
        return f"it ends early ({text})"
    return text[0].lower() + text[1:]


# ---------------------------------------------------------------------------------------------
# Writing tar
# ---------------------------------------------------------------------------------------------

class _TarWriter:
    """A plain tar stream (no seeking): every entry root-owned, mode 0644/0755, time 0."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.dirs: set[str] = set()

    def _header(self, name: str, size: int, kind: bytes, mode: int) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.type, info.mode, info.mtime = size, kind, mode, 0
        self.out.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def _parents(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.dirs:
                self.dirs.add(d)
                self._header(d + "/", 0, b"5", 0o755)

    def add(self, name: str, data: bytes) -> None:
        self._parents(name)
        self._header(name, len(data), b"0", 0o644)
        self.out.write(data)
        self.out.write(bytes(-len(data) % _BLOCK))

    def add_stream(self, name: str, size: int, chunks: Iterator[bytes]) -> None:
        self._parents(name)
        self._header(name, size, b"0", 0o644)
        done = 0
        for chunk in chunks:
            done += len(chunk)
            if done > size:
                break
            self.out.write(chunk)
        if done != size:
            raise ArchiveError(f"{name}: its size changed while it was being written ({size} bytes, then {done})")
        self.out.write(bytes(-size % _BLOCK))

    def close(self) -> None:
        self.out.write(bytes(2 * _BLOCK))
        self.out.flush()


# ---------------------------------------------------------------------------------------------
# save
# ---------------------------------------------------------------------------------------------

def save(images: Images, names: list[str], out: BinaryIO, format: str = "docker-archive") -> None:  # noqa: A002
    """Write the images `names` (with the tags they were named by) to `out` as one archive.

    A repository name without a tag saves every tag of it, an id saves the image untagged, as
    `docker save` does.  Everything is looked up and checked before the first byte is written.
    """
    if format not in FORMATS:
        raise ConfigError(f"unsupported archive format {format!r} (use docker-archive or oci-archive)")
    if not names:
        raise ConfigError("no image to save")
    selected = _select(images, names)
    if format == "oci-archive":
        _save_oci(images, selected, out)
    else:
        _save_docker(images, selected, out)


def _select(images: Images, names: list[str]) -> list[tuple[Image, list[str]]]:
    chosen: dict[str, tuple[Image, list[str]]] = {}
    for name in names:
        for image, tag in _lookup(images, name):
            _, tags = chosen.setdefault(image.id, (image, []))
            if tag and tag not in tags:
                tags.append(tag)
    return list(chosen.values())


def _lookup(images: Images, name: str) -> list[tuple[Image, str | None]]:
    try:
        ref = reference.parse(name)
    except ConfigError:
        return [(images.get(name), None)]  # an image id
    if ref.digest:
        return [(images.get(name), None)]  # docker saves an image named by digest untagged
    if "@" not in name and ":" not in name.rsplit("/", 1)[-1]:  # a name only: all of its tags
        found = [(img, t) for img in images.list() for t in img.tags if t.rpartition(":")[0] == ref.name]
        if found:
            return sorted(found, key=lambda x: x[1])
        return [(images.get(name), None)]  # maybe an id prefix
    return [(images.get(name), f"{ref.name}:{ref.tag}")]


@dataclass
class _Saved:
    image: Image
    tags: list[str]
    config: bytes
    platform: dict
    layers: list[dict]  # descriptors as stored
    diff_ids: list[str]


def _gather(images: Images, selected: list[tuple[Image, list[str]]]) -> list[_Saved]:
    out = []
    for image, tags in selected:
        config = images.content.read(image.id)
        cfg = json.loads(config)
        manifest = images.manifest(image)
        layers = manifest.get("layers") or []
        diff_ids = (cfg.get("rootfs") or {}).get("diff_ids") or []
        if len(layers) != len(diff_ids):
            raise ArchiveError(f"image {image.id}: its config lists {len(diff_ids)} layers, its manifest {len(layers)}")
        for desc in layers:
            if not images.content.exists(desc["digest"]):
                raise NotFound(f"image {_show(image)}: layer {desc['digest']} is not in the content store")
        platform = {k: cfg[k] for k in ("architecture", "os", "variant") if cfg.get(k)}
        out.append(_Saved(image, tags, config, platform, layers, diff_ids))
    return out


def _show(image: Image) -> str:
    return _familiar(image.tags[0]) if image.tags else image.id


def _familiar(name: str) -> str:
    try:
        return reference.parse(name).familiar()
    except ConfigError:
        return name


def _index_entries(saved: _Saved, digest: str, size: int, media_type: str) -> list[dict]:
    """One index entry per tag (docker's and containerd's annotations), or one bare entry."""
    base = {"mediaType": media_type, "digest": digest, "size": size}
    if saved.platform:
        base["platform"] = saved.platform
    if not saved.tags:
        return [base]
    return [dict(base, annotations={IMAGE_NAME: t, REF_NAME: t.rpartition(":")[2]}) for t in saved.tags]


def _json_bytes(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _blob_name(digest: str) -> str:
    algo, _, hexpart = reference.parse_digest(digest).partition(":")
    return f"blobs/{algo}/{hexpart}"


def _verified_chunks(images: Images, digest: str) -> Iterator[bytes]:
    """A stored blob's bytes, hashed on the way out: a damaged store is reported, never copied."""
    algo = digest.partition(":")[0]
    h = hashlib.new(algo)
    with images.content.open(digest) as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            yield chunk
    if f"{algo}:{h.hexdigest()}" != digest:
        raise ArchiveError(f"blob {digest} in the content store is damaged (it hashes to {algo}:{h.hexdigest()})")


def _save_oci(images: Images, selected: list[tuple[Image, list[str]]], out: BinaryIO) -> None:
    saved = _gather(images, selected)
    entries, blobs = [], {}
    for s in saved:
        manifest = images.content.read(s.image.manifest_digest)
        entries += _index_entries(s, s.image.manifest_digest, len(manifest), s.image.manifest_type)
        blobs[s.image.manifest_digest] = None
        blobs[s.image.id] = None
        for desc in s.layers:
            blobs[desc["digest"]] = None
    tw = _TarWriter(out)
    tw.add("oci-layout", OCI_LAYOUT)
    tw.add("index.json", _json_bytes({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))
    for digest in blobs:
        tw.add_stream(_blob_name(digest), images.content.size(digest), _verified_chunks(images, digest))
    tw.close()


def docker_manifest(config_digest: str, config_size: int, layers: list[tuple[str, int, str]]) -> bytes:
    """The OCI manifest of a docker-archive image: (digest, size, media type) per layer.  `save`
    writes it and `load` rebuilds it from manifest.json, so both agree on its digest."""
    return _json_bytes({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": m, "digest": d, "size": n} for d, n, m in layers],
    })


def _tar_chunks(images: Images, desc: dict) -> Iterator[bytes]:
    """A stored layer as its uncompressed tar, whatever its compression."""
    with images.content.open(desc["digest"]) as f:
        plain, _ = _open(f)
        try:
            while chunk := plain.read(_CHUNK):
                yield chunk
        except _decode_errors() as e:
            raise ArchiveError(f"layer {desc['digest']} in the content store cannot be decompressed: {_what(e)}") from None


def _tar_size(images: Images, desc: dict, diff_id: str) -> int:
    """The uncompressed size of a layer (a tar header needs it first), checking its diff id."""
    h, n = hashlib.sha256(), 0
    for chunk in _tar_chunks(images, desc):
        h.update(chunk)
        n += len(chunk)
    if "sha256:" + h.hexdigest() != diff_id:
        raise ArchiveError(f"layer {desc['digest']} in the content store does not decompress to its diff id "
                           f"{diff_id} (got sha256:{h.hexdigest()})")
    return n


def _save_docker(images: Images, selected: list[tuple[Image, list[str]]], out: BinaryIO) -> None:
    saved = _gather(images, selected)
    sizes: dict[str, tuple[dict, int]] = {}  # diff id -> (stored descriptor, tar size)
    items, entries, repositories, manifests = [], [], {}, {}
    for s in saved:
        for desc, diff_id in zip(s.layers, s.diff_ids):
            if diff_id not in sizes:
                stored_plain = desc["digest"] == diff_id
                sizes[diff_id] = (desc, images.content.size(diff_id) if stored_plain else _tar_size(images, desc, diff_id))
        manifest = docker_manifest(s.image.id, len(s.config), [(d, sizes[d][1], LAYER_TAR) for d in s.diff_ids])
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        manifests[digest] = manifest
        entries += _index_entries(s, digest, len(manifest), OCI_MANIFEST)
        repo_tags = []
        for t in s.tags:
            ref = reference.parse(t)
            repo_tags.append(ref.familiar())
            if s.diff_ids:
                repositories.setdefault(ref.familiar_name(), {})[ref.tag] = s.diff_ids[-1].partition(":")[2]
        items.append({"Config": _blob_name(s.image.id), "RepoTags": repo_tags,
                      "Layers": [_blob_name(d) for d in s.diff_ids]})
    tw = _TarWriter(out)
    tw.add("oci-layout", OCI_LAYOUT)
    tw.add("index.json", _json_bytes({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))
    tw.add("manifest.json", _json_bytes(items))
    if repositories:
        tw.add("repositories", _json_bytes(repositories))
    written: set[str] = set()
    for s in saved:
        if s.image.id not in written:
            written.add(s.image.id)
            tw.add(_blob_name(s.image.id), s.config)
    for digest, manifest in manifests.items():
        if digest not in written:
            written.add(digest)
            tw.add(_blob_name(digest), manifest)
    for diff_id, (desc, size) in sizes.items():
        if diff_id in written:
            continue
        written.add(diff_id)
        if desc["digest"] == diff_id:
            tw.add_stream(_blob_name(diff_id), size, _verified_chunks(images, diff_id))
        else:
            tw.add_stream(_blob_name(diff_id), size, _checked(_tar_chunks(images, desc), diff_id))
    tw.close()


def _checked(chunks: Iterator[bytes], digest: str) -> Iterator[bytes]:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
        yield chunk
    if "sha256:" + h.hexdigest() != digest:
        raise ArchiveError(f"layer {digest} changed while it was being saved")


# ---------------------------------------------------------------------------------------------
# Adding to the store, undone on failure
# ---------------------------------------------------------------------------------------------

class _Additions:
    """The blobs and snapshots one operation adds; removed again if it fails before the image
    is recorded.  Blobs and snapshots that were already there are reused and never removed."""

    def __init__(self, images: Images) -> None:
        self.images = images
        self.blobs: list[str] = []
        self.snapshots: list[str] = []

    def __enter__(self) -> _Additions:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # noqa: ANN001
        if exc_type is not None:
            self.rollback()

    def rollback(self) -> None:
        for key in reversed(self.snapshots):
            try:
                self.images.snapshots.remove(key)
            except BuduError:
                pass  # someone built on it meanwhile: it is theirs now
        for digest in self.blobs:
            try:
                self.images.content.delete(digest)
            except NotFound:
                pass
        self.snapshots.clear()
        self.blobs.clear()

    def put_bytes(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.images.content.exists(digest):
            self.images.content.put(data, digest)
            self.blobs.append(digest)
        return digest

    def put_file(self, path: str, digest: str, size: int) -> None:
        """Copy a spooled file in, verified against `digest` and `size` by the content store."""
        content = self.images.content
        if content.exists(digest):
            return
        w = content.writer(f"load-{uuid.uuid4().hex}", expected=digest, size=size)
        try:
            with open(path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    w.write(chunk)
            w.commit()
        except BaseException:
            w.abort()
            raise
        self.blobs.append(digest)

    def put_layer(self, stream: BinaryIO) -> tuple[str, int, str, str]:
        """Store a layer tarball (plain or compressed) as a gzip blob: (digest, size, media type,
        diff id).  A gzip tarball is stored as it is, anything else is recompressed (gzip on every
        core, the same bytes whatever their number)."""
        content = self.images.content
        w = content.writer(f"layer-{uuid.uuid4().hex}")
        try:
            head = stream.read(8)
            kind = _sniff(head)
            # A gzip tarball is kept as it is: every compressed byte read goes to the blob.
            raw = _Prefixed(stream, head, sink=w.write if kind == "gzip" else None)
            plain = _decompressor(io.BufferedReader(raw, _CHUNK), kind)
            comp = None if kind == "gzip" else ParallelGzip(GZIP_LEVEL)  # on every core
            h, size, first = hashlib.sha256(), 0, b""
            try:
                while chunk := plain.read(_CHUNK):
                    if len(first) < _BLOCK:
                        first += chunk[:_BLOCK - len(first)]
                    h.update(chunk)
                    size += len(chunk)
                    if comp is not None:
                        w.write(comp.compress(chunk))
                if comp is not None:
                    w.write(comp.flush())
                    comp = None
                else:
                    while raw.read(_CHUNK):  # whatever follows the gzip stream belongs to the blob too
                        pass
            except _decode_errors() as e:
                if isinstance(e, OSError) and e.errno is not None:
                    raise BuduError(f"storing the layer: {e.strerror}") from None
                raise ArchiveError(f"the layer tarball cannot be decompressed: {_what(e)}") from None
            finally:
                if comp is not None:  # stopped early: its threads must not outlive the layer
                    comp.abort()
            if not _is_tar_header(first):
                raise ArchiveError("the layer tarball is not a tar archive" if size else "the layer tarball is empty")
            digest = w.digest()
            existed = content.exists(digest)
            blob_size = w.offset
            w.commit()
        except BaseException:
            w.abort()
            raise
        if not existed:
            self.blobs.append(digest)
        return digest, blob_size, LAYER_GZIP, "sha256:" + h.hexdigest()

    def unpack(self, layers: list[tuple[str, str | None]], diff_ids: list[str]) -> list[str]:
        """Unpack each (blob digest, media type) into the snapshot of its chain id, unless that
        snapshot exists; every diff id is checked.  Returns the chain ids."""
        snaps = self.images.snapshots
        chains = chain_ids(diff_ids)
        for i, chain in enumerate(chains):
            if snaps.exists(chain):
                continue
            key = f"extract-{os.getpid()}-{uuid.uuid4().hex[:12]}-{chain}"  # pull's form: gc knows it
            snaps.prepare(key, chains[i - 1] if i else None)
            digest, media_type = layers[i]
            try:
                with self.images.content.open(digest) as f:
                    apply_layer(f, snaps.upper_dir(key), media_type, expected_diff_id=diff_ids[i])
                snaps.commit(chain, key)
            except StateError:
                snaps.remove(key)  # another process unpacked the same layer first: use theirs
                continue
            except (LayerError, DigestMismatch) as e:
                snaps.remove(key)
                raise ArchiveError(f"layer {digest}: {e}") from None
            except BaseException:
                snaps.remove(key)
                raise
            self.snapshots.append(chain)
        return chains

    def keep(self) -> None:
        """From here on the additions stay, whatever happens."""
        self.snapshots.clear()
        self.blobs.clear()

    def record(self, config_digest: str, manifest_digest: str, manifest_type: str, chains: list[str],
               blobs: list[str], tags: list[str]) -> Image:
        self.keep()  # an image is about to point at them
        snaps = self.images.snapshots
        size = sum(snaps.stat(c).size for c in chains)
        image = Image(config_digest, manifest_digest, manifest_type, None, chains[-1] if chains else None,
                      time.time(), size)
        for tag in tags or [None]:
            image = self.images.store.add(image, blobs, tag=tag)
        return image


def _is_tar_header(block: bytes) -> bool:
    """Whether a 512-byte block is a tar header (its checksum holds, signed or unsigned)."""
    if len(block) < _BLOCK:
        return False
    try:
        chk = int(block[148:156].replace(b"\0", b" ").strip() or b"-1", 8)
    except ValueError:
        return False
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    signed = unsigned - 256 * sum(1 for b in block[:148] + block[156:] if b > 127)
    return chk in (unsigned, signed)


# ---------------------------------------------------------------------------------------------
# create_image: the one way images are made from tarballs here (import, bootstrap)
# ---------------------------------------------------------------------------------------------

def tag_for(ref: str | None) -> str | None:
    """The tag a new image gets from `ref` (latest if it names none; None without a ref): what
    import, bootstrap and commit (budu.engine.fsops) make; a digest is refused."""
    if not ref:
        return None
    r = reference.parse(ref)
    if r.digest:
        raise ConfigError(f"refusing to create a tag with a digest reference: {ref}")
    return f"{r.name}:{r.tag or 'latest'}"


def now_rfc3339(t: float | None = None) -> str:
    """A time as image configs write it (Go's RFC3339Nano): UTC, fraction without trailing zeros."""
    t = time.time() if t is None else t
    ns = int(round(t * 1_000_000_000))
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + (f".{frac}" if frac else "") + "Z"


def create_image(images: Images, layers: list[str | os.PathLike | BinaryIO], config: dict,
                 ref: str | None = None) -> Image:
    """Store an image made of `layers` (tarball paths or streams; plain, gzip, zstd, bzip2 or xz)
    and `config` (rootfs is filled in; architecture and os default to the host's), with an OCI
    manifest; unpack it into snapshots and record it, tagged `ref`.  All or nothing."""
    tag = tag_for(ref)
    config = dict(config)
    plat = host_platform()
    config.setdefault("architecture", plat.architecture)
    config.setdefault("os", plat.os)
    if plat.variant and config["architecture"] == plat.architecture:
        config.setdefault("variant", plat.variant)
    with _Additions(images) as add:
        descs, diff_ids = [], []
        for layer in layers:
            if isinstance(layer, (str, os.PathLike)):
                try:
                    with open(layer, "rb") as f:
                        digest, size, media_type, diff_id = add.put_layer(f)
                except FileNotFoundError:
                    raise NotFound(f"open {os.fspath(layer)}: no such file or directory") from None
            else:
                digest, size, media_type, diff_id = add.put_layer(layer)
            descs.append({"mediaType": media_type, "digest": digest, "size": size})
            diff_ids.append(diff_id)
        config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
        config_bytes = _json_bytes(config)
        config_digest = add.put_bytes(config_bytes)
        manifest = _json_bytes({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                "config": {"mediaType": OCI_CONFIG, "digest": config_digest,
                                           "size": len(config_bytes)},
                                "layers": descs})
        manifest_digest = add.put_bytes(manifest)
        chains = add.unpack([(d["digest"], d["mediaType"]) for d in descs], diff_ids)
        return add.record(config_digest, manifest_digest, OCI_MANIFEST, chains,
                          [manifest_digest, config_digest] + [d["digest"] for d in descs], [tag] if tag else [])


# ---------------------------------------------------------------------------------------------
# import: `docker import` with --change
# ---------------------------------------------------------------------------------------------

def import_rootfs(images: Images, tarball_stream: BinaryIO, ref: str | None = None,
                  changes: list[str] | None = None, message: str | None = None, source: str = "-") -> Image:
    """`docker import`: an image of one layer, the root filesystem tarball read from the stream
    (plain or compressed), its config made from Dockerfile-style `changes`."""
    runtime = apply_changes({}, changes or [])  # a bad change fails before any work
    tag_for(ref)
    created = now_rfc3339()
    config = {"architecture": host_platform().architecture, "config": runtime, "created": created,
              "history": [{"created": created, "comment": message or f"Imported from {source}"}], "os": "linux"}
    return create_image(images, [tarball_stream], config, ref)


def apply_changes(config: dict, changes: list[str]) -> dict:
    """Apply Dockerfile instructions (`docker import/commit --change`) to an image's runtime
    config (the config's "config" object); returns a new dict."""
    cfg = json.loads(json.dumps(config))
    for change in changes:
        m = re.fullmatch(r"\s*(\S+)\s*(.*?)\s*", change, re.S)
        if not m:
            raise ConfigError("invalid --change '': an empty instruction")
        instr, rest = m.group(1).upper(), m.group(2)
        if instr not in CHANGE_COMMANDS:
            raise ConfigError(f"invalid --change {change!r}: {m.group(1)} is not a valid change command "
                              f"(use {', '.join(CHANGE_COMMANDS)})")
        if not rest:
            raise ConfigError(f"invalid --change {change!r}: {instr} requires at least one argument")
        try:
            _change(cfg, instr, rest)
        except ValueError as e:
            raise ConfigError(f"invalid --change {change!r}: {e}") from None
    return cfg


def _exec_form(rest: str) -> list[str] | None:
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None  # docker too takes a malformed JSON array for the shell form
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return value
    return None


def _pairs(instr: str, rest: str) -> list[tuple[str, str]]:
    """`k=v k2="v 2"` pairs, or the legacy `key value with spaces` form."""
    first = rest.split(None, 1)[0]
    if "=" not in first:
        parts = rest.split(None, 1)
        if len(parts) < 2:
            raise ValueError(f"{instr} needs a value for {parts[0]} (use {parts[0]}=value)")
        return [(parts[0], _unquote(parts[1]))]
    try:
        words = shlex.split(rest, posix=True)
    except ValueError as e:
        raise ValueError(f"{instr}: {e}") from None
    out = []
    for w in words:
        key, eq, value = w.partition("=")
        if not eq or not key:
            raise ValueError(f"{instr} expects key=value, not {w!r}")
        out.append((key, value))
    return out


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _ports(rest: str) -> list[str]:
    out = []
    for word in rest.split():
        port, _, proto = word.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise ValueError(f"invalid proto {proto!r} in {word!r}")
        lo, dash, hi = port.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise ValueError(f"invalid port {word!r}")
        first, last = int(lo), int(hi) if dash else int(lo)
        if not 0 < first <= last <= 65535:
            raise ValueError(f"invalid port range {word!r}")
        out += [f"{p}/{proto}" for p in range(first, last + 1)]
    return out


def _change(cfg: dict, instr: str, rest: str) -> None:
    if instr in ("CMD", "ENTRYPOINT"):
        cfg["Cmd" if instr == "CMD" else "Entrypoint"] = _exec_form(rest) or ["/bin/sh", "-c", rest]
    elif instr == "ENV":
        env = list(cfg.get("Env") or [])
        for key, value in _pairs(instr, rest):  # a variable set again keeps its place, as in docker
            keys = [e.partition("=")[0] for e in env]
            if key in keys:
                env[keys.index(key)] = f"{key}={value}"
            else:
                env.append(f"{key}={value}")
        cfg["Env"] = env
    elif instr == "LABEL":
        cfg["Labels"] = dict(cfg.get("Labels") or {}, **dict(_pairs(instr, rest)))
    elif instr == "EXPOSE":
        cfg["ExposedPorts"] = dict(cfg.get("ExposedPorts") or {}, **{p: {} for p in _ports(rest)})
    elif instr == "VOLUME":
        vols = _exec_form(rest) or rest.split()
        cfg["Volumes"] = dict(cfg.get("Volumes") or {}, **{v: {} for v in vols})
    elif instr == "WORKDIR":
        cfg["WorkingDir"] = posixpath.normpath(posixpath.join(cfg.get("WorkingDir") or "/", rest))
    elif instr == "USER":
        cfg["User"] = rest
    elif instr == "STOPSIGNAL":
        cfg["StopSignal"] = rest


# ---------------------------------------------------------------------------------------------
# load
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _File:
    path: str  # the spooled copy
    digest: str
    size: int


@dataclass
class _Plan:
    """One image of an archive, checked, ready to be stored."""

    config_digest: str
    config: _File
    manifest: bytes
    manifest_digest: str
    manifest_type: str
    layers: list[tuple[_File, str]]  # (blob, media type)
    diff_ids: list[str]
    tags: list[str] = field(default_factory=list)


def load(images: Images, stream: BinaryIO) -> list[str]:
    """`docker load`: store every image of a docker-archive or OCI-layout tar read from `stream`.

    Returns what docker prints after `Loaded image:` — each tag loaded, familiar — or after
    `Loaded image ID:`, the id of each image that came without a tag.
    """
    tmp_root = os.path.join(images.root, "tmp")
    os.makedirs(tmp_root, mode=0o700, exist_ok=True)
    spool = tempfile.mkdtemp(prefix=f"load-{os.getpid()}-", dir=tmp_root)
    try:
        files = _spool(stream, spool)
        if "manifest.json" in files:
            plans = _plan_docker(files)
        elif "index.json" in files:
            plans = _plan_oci(files)
        elif "repositories" in files:
            raise ArchiveError("this is a docker archive from before docker 1.10 (no manifest.json): not supported")
        else:
            raise ArchiveError("the archive holds neither manifest.json (docker-archive) nor index.json (OCI layout)")
        return _store(images, plans)
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def _clean_name(name: str) -> str:
    norm = posixpath.normpath("/" + name).lstrip("/")
    return norm


def _spool(stream: BinaryIO, into: str) -> dict[str, _File]:
    """Every regular file of the tar, copied to `into` and hashed; links resolved by name."""
    files: dict[str, _File] = {}
    links: dict[str, str] = {}
    errors = _decode_errors() + (tarfile.TarError,)
    plain, _ = _open(stream)
    n = 0
    try:
        try:
            tar = tarfile.open(fileobj=plain, mode="r|")
        except tarfile.ReadError as e:
            raise ArchiveError(f"the archive is not a tar file ({_what(e)})") from None
        for member in tar:
            name = _clean_name(member.name)
            if member.isreg():
                n += 1
                path = os.path.join(into, str(n))
                h, size = hashlib.sha256(), 0
                src = tar.extractfile(member)
                with open(path, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        h.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                if size != member.size:
                    raise ArchiveError(f"archive entry {member.name!r} is truncated")
                files[name] = _File(path, "sha256:" + h.hexdigest(), size)
            elif member.issym():
                links[name] = _clean_name(posixpath.join(posixpath.dirname(name), member.linkname))
            elif member.islnk():
                links[name] = _clean_name(member.linkname)
    except ArchiveError:
        raise
    except errors as e:
        if isinstance(e, OSError) and e.errno is not None:  # our disk, not the archive
            raise BuduError(f"loading the archive into {into}: {e.strerror}") from None
        raise ArchiveError(f"the archive is truncated or damaged: {_what(e)}") from None
    for name in links:
        target, hops = name, 0
        while target in links and hops < 40:
            target, hops = links[target], hops + 1
        if target in files:
            files[name] = files[target]
    if not files:
        raise ArchiveError("the archive is empty")
    return files


def _read_json(files: dict[str, _File], name: str, what: str | None = None) -> object:
    f = files.get(_clean_name(name))
    if f is None:
        raise ArchiveError(f"the archive has no {name} (named by {what})" if what else f"the archive has no {name}")
    try:
        with open(f.path, "rb") as fp:
            return json.load(fp)
    except ValueError:
        raise ArchiveError(f"{name} in the archive is not valid JSON") from None


def _diff_ids(config: object, where: str) -> list[str]:
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    diff_ids = rootfs.get("diff_ids", []) if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list):
        raise ArchiveError(f"{where} is not an image config (it has no rootfs.diff_ids)")
    for d in diff_ids:
        try:
            reference.parse_digest(d if isinstance(d, str) else "")
        except ConfigError:
            raise ArchiveError(f"{where}: bad diff id {d!r}") from None
    os_ = config.get("os") or "linux"
    if os_ != "linux":
        raise ArchiveError(f"{where}: cannot load a {os_} image on linux")
    return list(diff_ids)


def _kind(f: _File) -> str:
    with open(f.path, "rb") as fp:
        return _sniff(fp.read(8))


def _normal_tag(text: str, where: str) -> str:
    try:
        ref = reference.parse(text)
    except ConfigError as e:
        raise ArchiveError(f"{where}: {e}") from None
    if ref.digest or ref.tag is None:
        raise ArchiveError(f"{where}: invalid tag {text!r}")
    return f"{ref.name}:{ref.tag}"


_NAMED_BLOB = re.compile(r"blobs/(sha256)/([0-9a-f]{64})")


def _check_named(name: str, f: _File) -> None:
    """A file named by a digest (docker 25's blobs/sha256/<hex>) must have that digest."""
    m = _NAMED_BLOB.fullmatch(_clean_name(name))
    if m and f.digest != f"{m.group(1)}:{m.group(2)}":
        raise ArchiveError(f"{name} does not match its digest: expected {m.group(1)}:{m.group(2)}, got {f.digest}")


def _plan_docker(files: dict[str, _File]) -> list[_Plan]:
    items = _read_json(files, "manifest.json")
    if not isinstance(items, list):
        raise ArchiveError("manifest.json in the archive is not a list of images")
    plans = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("Config"), str):
            raise ArchiveError(f"manifest.json entry {i} names no config")
        cfg_name = item["Config"]
        config_file = files.get(_clean_name(cfg_name))
        if config_file is None:
            raise ArchiveError(f"the archive has no {cfg_name} (named by manifest.json)")
        _check_named(cfg_name, config_file)
        diff_ids = _diff_ids(_read_json(files, cfg_name), cfg_name)
        names = item.get("Layers") or []
        tags = item.get("RepoTags") or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ArchiveError(f"manifest.json entry {i}: Layers is not a list of paths")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ArchiveError(f"manifest.json entry {i}: RepoTags is not a list of names")
        if len(names) != len(diff_ids):
            raise ArchiveError(f"invalid manifest, layers length mismatch: expected {len(names)}, got {len(diff_ids)}"
                               f" ({cfg_name})")
        layers = []
        for name, diff_id in zip(names, diff_ids):
            f = files.get(_clean_name(name))
            if f is None:
                raise ArchiveError(f"the archive has no {name} (a layer named by manifest.json)")
            _check_named(name, f)
            kind = _kind(f)
            if kind not in _MEDIA:
                raise ArchiveError(f"layer {name} is {kind}-compressed: only plain, gzip or zstd layers are supported")
            if kind == "none" and f.digest != diff_id:
                raise ArchiveError(f"layer {name} does not match its diff id: expected {diff_id}, got {f.digest}")
            layers.append((f, _MEDIA[kind]))
        manifest = docker_manifest(config_file.digest, config_file.size, [(f.digest, f.size, m) for f, m in layers])
        tags = [_normal_tag(t, "manifest.json") for t in tags]
        plans.append(_Plan(config_file.digest, config_file, manifest, "sha256:" + hashlib.sha256(manifest).hexdigest(),
                           OCI_MANIFEST, layers, diff_ids, tags))
    return plans


def _blob(files: dict[str, _File], desc: object, what: str) -> _File:
    if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str):
        raise ArchiveError(f"{what}: a descriptor without a digest")
    digest = desc["digest"]
    try:
        name = _blob_name(digest)
    except ConfigError as e:
        raise ArchiveError(f"{what}: {e}") from None
    if not digest.startswith("sha256:"):
        raise ArchiveError(f"{what}: blob {digest}: only sha256 digests are supported")
    f = files.get(name)
    if f is None:
        raise ArchiveError(f"the archive is missing blob {digest} ({what})")
    if f.digest != digest:
        raise ArchiveError(f"blob {name} does not match its digest: expected {digest}, got {f.digest}")
    if isinstance(desc.get("size"), int) and desc["size"] != f.size:
        raise ArchiveError(f"blob {digest}: {f.size} bytes, its descriptor says {desc['size']}")
    return f


def _oci_name(annotations: dict) -> str | None:
    """The name an index entry gives its image: containerd's full name, or an OCI ref name that
    is a reference (`busybox:latest`); a bare tag (`latest`) names no repository."""
    full = annotations.get(IMAGE_NAME)
    if full:
        return _normal_tag(full, f"index.json annotation {IMAGE_NAME}")
    ref = annotations.get(REF_NAME) or ""
    if ":" in ref.rsplit("/", 1)[-1] or "/" in ref:
        try:
            return _normal_tag(ref, f"index.json annotation {REF_NAME}")
        except ArchiveError:
            return None
    return None


def _plan_oci(files: dict[str, _File]) -> list[_Plan]:
    layout = files.get("oci-layout")
    if layout is not None:
        version = (_read_json(files, "oci-layout") or {})
        if not isinstance(version, dict) or not str(version.get("imageLayoutVersion", "")).startswith("1."):
            raise ArchiveError("oci-layout: unsupported image layout version")
    index = _read_json(files, "index.json")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise ArchiveError("index.json in the archive is not an OCI image index")
    plans: dict[str, _Plan] = {}
    for desc in index["manifests"]:
        name = _oci_name((desc or {}).get("annotations") or {}) if isinstance(desc, dict) else None
        plan = _plan_manifest(files, desc, "index.json")
        plan = plans.setdefault(plan.manifest_digest, plan)
        if name and name not in plan.tags:
            plan.tags.append(name)
    if not plans:
        raise ArchiveError("index.json in the archive lists no image")
    return list(plans.values())


def _plan_manifest(files: dict[str, _File], desc: object, where: str) -> _Plan:
    f = _blob(files, desc, where)
    media_type = desc.get("mediaType")
    with open(f.path, "rb") as fp:
        try:
            doc = json.load(fp)
        except ValueError:
            raise ArchiveError(f"manifest {f.digest} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ArchiveError(f"manifest {f.digest} is not a JSON object")
    media_type = media_type or doc.get("mediaType") or OCI_MANIFEST
    if media_type in INDEX_TYPES:
        return _plan_manifest(files, _choose(doc, f.digest), f"index {f.digest}")
    if media_type not in MANIFEST_TYPES:
        raise ArchiveError(f"manifest {f.digest}: unsupported media type {media_type}")
    config = _blob(files, doc.get("config"), f"config of manifest {f.digest}")
    diff_ids = _diff_ids(_read_json(files, _blob_name(config.digest)), f"config {config.digest}")
    descs = doc.get("layers") or []
    if not isinstance(descs, list):
        raise ArchiveError(f"manifest {f.digest}: layers is not a list")
    if len(descs) != len(diff_ids):
        raise ArchiveError(f"manifest {f.digest} lists {len(descs)} layers, its config {len(diff_ids)}")
    layers = []
    for d in descs:
        blob = _blob(files, d, f"layer of manifest {f.digest}")
        layers.append((blob, d.get("mediaType")))
    with open(f.path, "rb") as fp:
        manifest = fp.read()
    return _Plan(config.digest, config, manifest, f.digest, DOCKER_MANIFEST if media_type == DOCKER_MANIFEST
                 else OCI_MANIFEST, layers, diff_ids)


def _choose(index: object, digest: str) -> dict:
    plat = host_platform()
    entries = index.get("manifests") if isinstance(index, dict) else None
    for m in entries if isinstance(entries, list) else []:
        p = (m.get("platform") if isinstance(m, dict) else None) or {}
        if p.get("os") == plat.os and p.get("architecture") == plat.architecture:
            return m
    raise ArchiveError(f"index {digest} in the archive has no image for {plat}")


def _store(images: Images, plans: list[_Plan]) -> list[str]:
    with _Additions(images) as add:
        for p in plans:
            add.put_bytes(p.manifest)
            add.put_file(p.config.path, p.config_digest, p.config.size)
            for f, _ in p.layers:
                add.put_file(f.path, f.digest, f.size)
        unpacked = [add.unpack([(f.digest, m) for f, m in p.layers], p.diff_ids) for p in plans]
        names = []
        for p, chains in zip(plans, unpacked):
            blobs = [p.manifest_digest, p.config_digest] + [f.digest for f, _ in p.layers]
            image = add.record(p.config_digest, p.manifest_digest, p.manifest_type, chains, blobs, p.tags)
            names += [_familiar(t) for t in p.tags] or [image.id]
        return names
