"""The images layer's one door: pull, look up, tag and remove images.

It ties the parts together the way containerd does: the registry client fetches, the content
store verifies and keeps blobs, the differ unpacks each layer straight into its own snapshot, and
the image store records what an image is.  Layers already unpacked (same chain id) are never
fetched again; blobs download in parallel and unpack in order as they arrive.
"""

from __future__ import annotations

import os
import time

from budu.errors import BuduError, ConfigError, NotFound, StateError
from budu.images import reference
from budu.images.content import ContentStore, DigestMismatch
from budu.images.snapshots import Snapshotter
from budu.images.store import Image, ImageStore
from budu.kernel import fastjson
from budu.metadata import Database
from budu.plain import Frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    # progress(event, digest, current, total): "resolved", "exists", "download", "downloaded", "extract", "done"
    Progress = Callable[[str, str, int, int], None]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
DEFAULT_ROOT = "/var/lib/budu"
PARALLEL_DOWNLOADS = 4
SMALL_BLOB = 1 << 20  # blobs up to this size are fetched in memory, without a resumable ingest


class Platform(Frozen):
    __slots__ = ("os", "architecture", "variant")
    os: str
    architecture: str
    variant: str | None

    def __init__(self, os: str, architecture: str, variant: str | None = None) -> None:  # noqa: A002
        self._init(os=os, architecture=architecture, variant=variant)

    def __str__(self) -> str:
        return "/".join(x for x in (self.os, self.architecture, self.variant) if x)


_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64"}


def host_platform() -> Platform:
    machine = os.uname().machine
    arch = _ARCH.get(machine, machine)
    return Platform("linux", arch, "v8" if arch == "arm64" else None)


def parse_platform(text: str) -> Platform:
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ConfigError(f"invalid platform {text!r}: want os/arch[/variant], e.g. linux/arm64")
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The OCI chain id of each layer stack: what a snapshot is keyed by."""
    import hashlib  # lazily: OpenSSL's start-up costs ~6 ms, and a run never hashes

    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else "sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def root_dir() -> str:
    return os.environ.get("BUDU_ROOT") or DEFAULT_ROOT


class Images:
    def __init__(self, root: str | None = None) -> None:
        self.root = root or root_dir()
        self.db = Database(self.root)
        self.content = ContentStore(os.path.join(self.root, "content"))
        self.snapshots = Snapshotter(self.root, self.db)
        self.store = ImageStore(self.db)

    def close(self) -> None:
        self.db.close()

    # -- lookup ---------------------------------------------------------------------------------

    def get(self, name: str) -> Image:
        return self.store.resolve(name)

    def list(self) -> list[Image]:
        return self.store.list()

    def config(self, image: Image) -> dict:
        return _loads(self.content.read(image.id))

    def manifest(self, image: Image) -> dict:
        return _loads(self.content.read(image.manifest_digest))

    # -- pull -----------------------------------------------------------------------------------

    def pull(self, name: str, platform: Platform | None = None, progress: Progress | None = None,
             credentials=None, insecure: bool | None = None) -> Image:  # noqa: ANN001
        import json

        from budu.images.registry import Registry

        ref = reference.parse(name)
        want = platform or host_platform()
        report = progress or (lambda *a: None)
        # blob renames become durable together, before the image record that refers to them
        with Registry(ref.domain, credentials=credentials, insecure=insecure) as reg, self.content.deferred_sync():
            top = reg.get_manifest(ref.path, ref.digest or ref.tag or "latest")
            self.content.put(top.data, top.digest)
            blobs = [top.digest]
            index_digest = None
            manifest, mtype, mdigest = top.data, top.media_type, top.digest
            if mtype in DOCKER_SCHEMA1:
                raise ConfigError(f"{ref.familiar()}: Docker schema 1 images are not supported (re-push it with a current client)")
            if mtype in INDEX_TYPES:
                index_digest = top.digest
                chosen = _choose(json.loads(top.data), want, ref)
                sub = reg.get_manifest(ref.path, chosen["digest"])
                self.content.put(sub.data, sub.digest)
                blobs.append(sub.digest)
                manifest, mtype, mdigest = sub.data, sub.media_type, sub.digest
            if mtype not in MANIFEST_TYPES:
                raise ConfigError(f"{ref.familiar()}: unsupported manifest type {mtype}")
            m = json.loads(manifest)
            cfg_desc = m["config"]
            self._fetch(reg, ref.path, cfg_desc, report)
            config = json.loads(self.content.read(cfg_desc["digest"]))
            blobs.append(cfg_desc["digest"])
            layers = m.get("layers") or []
            diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
            if len(diff_ids) != len(layers):
                raise BuduError(f"{ref.familiar()}: the config lists {len(diff_ids)} layers, the manifest {len(layers)}")
            report("resolved", mdigest, len(layers), 0)
            chains = chain_ids(diff_ids)
            self._unpack(reg, ref.path, layers, diff_ids, chains, report)
            blobs += [layer["digest"] for layer in layers]
        size = sum(self.snapshots.stat(c).size for c in chains)
        image = Image(cfg_desc["digest"], mdigest, mtype, index_digest, chains[-1] if chains else None,
                      time.time(), size)
        tag = f"{ref.name}:{ref.tag}" if ref.tag else None
        repo_digest = f"{ref.name}@{index_digest or mdigest}"
        image = self.store.add(image, blobs, tag=tag, repo_digest=repo_digest)
        report("done", image.id, 0, 0)
        return image

    def remote_tags(self, name: str, credentials=None, insecure: bool | None = None) -> list[str]:  # noqa: ANN001
        """Every tag of a repository in its registry (the tags list API, all its pages), sorted as
        docker pulls them for --all-tags."""
        from budu.images.registry import Registry

        ref = reference.parse(name)
        with Registry(ref.domain, credentials=credentials, insecure=insecure) as reg:
            return sorted(set(reg.tags(ref.path)))

    def _fetch(self, reg, name: str, desc: dict, report: Progress, tail: _Tail | None = None) -> None:  # noqa: ANN001
        """Download one blob into the content store, resuming what an earlier pull left.

        With `tail`, a reader may unpack the blob while it arrives: it is told where the data is
        and when more has come; the blob still only becomes visible once its digest is verified."""
        digest, size = desc["digest"], desc.get("size")
        try:
            if self.content.exists(digest):
                report("exists", digest, size or 0, size or 0)
                if tail:
                    tail.finish()
                return
            if size is not None and size <= SMALL_BLOB:
                # in memory, verified, one rename: an ingest's bookkeeping costs more than the blob
                with reg.get_blob(name, digest) as stream:
                    data = b"".join(stream)
                if len(data) != size:
                    raise DigestMismatch(f"size mismatch for {digest}: expected {size} bytes, got {len(data)}")
                self.content.put(data, digest)
                report("download", digest, size, size)
                report("downloaded", digest, size, size)
                if tail:
                    tail.finish()
                return
            w = self.content.writer(f"pull-{digest}", expected=digest, size=size)
            try:
                if size is not None and w.offset > size:
                    w.reset()
                if tail:
                    tail.start(w.data_path)
                done = w.offset
                if size is None or done < size:
                    with reg.get_blob(name, digest, offset=done) as stream:
                        for chunk in stream:
                            w.write(chunk)
                            done += len(chunk)
                            if tail:
                                tail.feed()
                            report("download", digest, done, size or 0)
                w.commit()
            finally:
                w.close()
            report("downloaded", digest, size or 0, size or 0)
            if tail:
                tail.finish()
        except BaseException as e:
            if tail:
                tail.finish(e)
            raise

    def _unpack(self, reg, name: str, layers: list[dict], diff_ids: list[str], chains: list[str],  # noqa: ANN001
                report: Progress) -> None:
        """Download the missing layers in parallel; unpack each, in order, while it downloads."""
        from concurrent.futures import Future, ThreadPoolExecutor  # imports logging: ~15 ms, so only here

        from budu.images.layers import apply_layer

        missing = [i for i, c in enumerate(chains) if not self.snapshots.exists(c)]
        for i, c in enumerate(chains):
            if i not in missing:
                report("exists", layers[i]["digest"], 0, 0)
        if not missing:
            return
        tails = {i: _Tail() for i in missing}
        with ThreadPoolExecutor(max_workers=PARALLEL_DOWNLOADS) as pool:
            futures: dict[int, Future] = {
                i: pool.submit(self._fetch, reg, name, layers[i], report, tails[i]) for i in missing}
            try:
                for i in missing:
                    tail = tails[i]
                    tail.wait_started()
                    if self.snapshots.exists(chains[i]):  # another pull unpacked it meanwhile
                        futures[i].result()
                        continue
                    parent = chains[i - 1] if i else None
                    key = f"extract-{os.getpid()}-{os.urandom(6).hex()}-{chains[i]}"
                    self.snapshots.prepare(key, parent)
                    try:
                        report("extract", layers[i]["digest"], 0, 0)
                        with (tail if tail.path else self.content.open(layers[i]["digest"])) as f:
                            apply_layer(f, self.snapshots.upper_dir(key), layers[i].get("mediaType"),
                                        expected_diff_id=diff_ids[i])
                        futures[i].result()  # the blob's own digest is verified before the layer counts
                        self.snapshots.commit(chains[i], key)
                    except StateError:
                        self.snapshots.remove(key)  # lost a race to an identical layer: theirs is as good
                    except BaseException:
                        self.snapshots.remove(key)
                        raise
            except BaseException:
                for f in futures.values():
                    f.cancel()
                for t in tails.values():
                    t.finish(StateError("pull cancelled"))
                raise

    # -- tags and removal ---------------------------------------------------------------------------

    def tag(self, source: str, target: str) -> None:
        image = self.store.resolve(source)
        ref = reference.parse(target)
        if ref.digest:
            raise ConfigError(f"refusing to create a tag with a digest reference: {target}")
        self.store.tag(image.id, f"{ref.name}:{ref.tag or 'latest'}")

    def remove(self, name: str, force: bool = False, users: dict[str, str] | None = None) -> list[tuple[str, str]]:
        """docker rmi: untag a name; delete the image when no tag is left (or by id with force).
        `users` maps image ids to a container that uses them (the caller knows containers; this
        layer does not): such an image is only untagged, and only with force.
        Returns docker's lines: ("Untagged", name) and ("Deleted", id)."""
        image = self.store.resolve(name)
        out: list[tuple[str, str]] = []
        user = (users or {}).get(image.id)
        if user is not None:
            if not force:
                what = f'remove repository reference "{name}"' if name in image.tags or ":" in name or "/" in name \
                    else f"delete {image.id[7:19]}"
                raise StateError(f"conflict: unable to {what} (must force) - container {user[:12]} "
                                 f"is using its referenced image {image.id[7:19]}")
            for t in image.tags:
                self.store.untag(t)
                out.append(("Untagged", _familiar(t)))
            return out
        by_tag = name not in (image.id, image.id[7:]) and not image.id[7:].startswith(name.replace("sha256:", ""))
        if by_tag and len(image.tags) > 1:
            tag = self._tag_for(name, image)
            self.store.untag(tag)
            return [("Untagged", _familiar(tag))]
        if not by_tag and len(image.tags) > 1 and not force:
            raise StateError(f"conflict: unable to delete {image.id[7:19]} (must be forced) - "
                             f"image is referenced in multiple repositories")
        for t in image.tags:
            out.append(("Untagged", _familiar(t)))
        for d in image.repo_digests:
            out.append(("Untagged", _familiar(d)))
        freed = self.store.remove(image.id, force=True)
        for digest in freed:
            try:
                self.content.delete(digest)
            except NotFound:
                pass
        out.append(("Deleted", image.id))
        self.gc_snapshots()
        return out

    def _tag_for(self, name: str, image: Image) -> str:
        if name in image.tags:
            return name
        ref = reference.parse(name)
        return f"{ref.name}:{ref.tag or 'latest'}"

    def gc_snapshots(self, keep: set[str] | None = None) -> list[str]:
        """Remove committed snapshots that no image, container or other snapshot stands on, and
        the half-unpacked layers of pulls that died (their pid is in the key)."""
        for info in self.snapshots.walk():
            if info.kind == "active" and info.key.startswith("extract-"):
                pid = info.key.split("-")[1]
                if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                    self.snapshots.remove(info.key)
        self.snapshots.cleanup()
        infos = {i.key: i for i in self.snapshots.walk()}
        roots = set(self.store.chains_in_use()) | (keep or set())
        roots |= {i.parent for i in infos.values() if i.kind != "committed" and i.parent}
        alive: set[str] = set()
        for r in roots:
            k = r
            while k is not None and k not in alive and k in infos:
                alive.add(k)
                k = infos[k].parent
        dead = [k for k, i in infos.items() if i.kind == "committed" and k not in alive]
        removed = []
        while dead:  # children before parents
            progress = False
            for k in list(dead):
                if not any(i.parent == k for i in infos.values() if i.key in dead or i.key in alive):
                    self.snapshots.remove(k)
                    infos.pop(k)
                    dead.remove(k)
                    removed.append(k)
                    progress = True
            if not progress:
                break
        return removed


    def prune(self, all_images: bool = False, in_use: set[str] | None = None) -> tuple[list[tuple[str, str]], int]:
        """docker image prune: dangling images (no tag), or with `all_images` every image no
        container uses; and downloads abandoned for a day (content.INGEST_MAX_AGE) that no pull
        resumed.  Returns docker's lines and the bytes reclaimed."""
        lines: list[tuple[str, str]] = []
        before = self.disk_usage()["total"]
        self.content.gc_ingests()
        for img in self.store.list():
            if img.id in (in_use or set()):
                continue
            if img.tags and not all_images:
                continue
            lines += self.remove(img.id, force=True)
        self.gc_snapshots()
        return lines, max(0, before - self.disk_usage()["total"])

    def history(self, image: Image) -> list[dict]:
        """docker history: newest first, with each layer's size next to the step that made it."""
        cfg = self.config(image)
        diff_ids = (cfg.get("rootfs") or {}).get("diff_ids") or []
        # each snapshot holds only its own layer's files, so its size is that layer's
        sizes = [self.snapshots.stat(c).size if self.snapshots.exists(c) else 0 for c in chain_ids(diff_ids)]
        out = []
        layer = 0
        for h in cfg.get("history") or [{"created_by": "", "created": cfg.get("created", "")}]:
            empty = h.get("empty_layer", False)
            size = 0 if empty or layer >= len(sizes) else sizes[layer]
            if not empty:
                layer += 1
            out.append({"created": h.get("created", ""), "created_by": h.get("created_by", ""),
                        "comment": h.get("comment", ""), "size": size, "empty": empty})
        out.reverse()
        if out:
            out[0]["id"] = image.id
        return out

    def disk_usage(self) -> dict:
        """What `system df` reports for images: sizes that match what du finds on disk."""
        images = self.store.list()
        snaps = {i.key: i for i in self.snapshots.walk()}
        content = sum(size for _, size in self.content.walk())
        ingests = self.content.ingest_usage()  # partial downloads: on disk too, until resumed or collected
        layers = sum(i.size for i in snaps.values() if i.kind == "committed")
        refs: dict[str, int] = {}
        for img in images:
            k = img.chain_id
            while k is not None and k in snaps:
                refs[k] = refs.get(k, 0) + 1
                k = snaps[k].parent
        shared = sum(snaps[k].size for k, n in refs.items() if n > 1)
        return {"images": len(images), "active": 0, "layers": layers, "content": content + ingests,
                "ingests": ingests, "shared": shared, "total": layers + content + ingests}


class _Tail:
    """A blob read while it is being written: reads wait for the writer instead of seeing EOF."""

    def __init__(self) -> None:
        import threading  # lazily: ~6 ms, and only a pull reads a blob while it downloads

        self.path: str | None = None
        self._f = None
        self._cond = threading.Condition()
        self._started = False
        self._done = False
        self._error: BaseException | None = None

    def start(self, path: str) -> None:
        with self._cond:
            self.path = path
            self._f = open(path, "rb")  # noqa: SIM115 - closed by __exit__; survives the rename at commit
            self._started = True
            self._cond.notify_all()

    def feed(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def finish(self, error: BaseException | None = None) -> None:
        with self._cond:
            self._started = self._done = True
            self._error = error
            self._cond.notify_all()

    def wait_started(self) -> None:
        with self._cond:
            while not self._started:
                self._cond.wait()
            if self._error is not None and self._f is None:
                raise self._error

    def read(self, n: int = -1) -> bytes:
        while True:
            data = self._f.read(n)  # type: ignore[union-attr]
            if data:
                return data
            with self._cond:
                if self._error is not None:
                    raise self._error
                if self._done:
                    return self._f.read(n)  # type: ignore[union-attr]
                self._cond.wait(0.05)

    def __enter__(self) -> _Tail:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._f is not None:
            self._f.close()


def _loads(data: bytes) -> dict:
    """json.loads of a stored blob, without importing json (~11 ms, with re) for the UTF-8 JSON that
    OCI blobs are; anything else gets json's own result or error (UTF-16, say, or a broken blob)."""
    try:
        return fastjson.loads(data)  # type: ignore[return-value]
    except ValueError:
        import json

        return json.loads(data)


def _familiar(name: str) -> str:
    try:
        return reference.parse(name).familiar()
    except ConfigError:
        return name


def _choose(index: dict, want: Platform, ref) -> dict:  # noqa: ANN001
    """The index entry for `want`, as docker picks it (variant matched when the index gives one)."""
    candidates = []
    for m in index.get("manifests") or []:
        p = m.get("platform") or {}
        if p.get("os") != want.os or p.get("architecture") != want.architecture:
            continue
        if want.variant and p.get("variant") and p["variant"] != want.variant:
            continue
        candidates.append(m)
    if not candidates:
        have = ", ".join(sorted({str(Platform(p.get("os", "?"), p.get("architecture", "?"), p.get("variant")))
                                 for p in ((m.get("platform") or {}) for m in index.get("manifests") or [])}))
        raise NotFound(f"no matching manifest for {want} in the manifest list entries of {ref.familiar()}"
                       f" (it has: {have or 'none'})")
    return candidates[0]
