"""Image records: which manifest and config an image is, its tags, and the blobs it holds on to.

An image's id is its config digest, as docker's is.  A name resolves like docker's: a full or
short reference to a tag, `name@digest` to a repo digest, or an id or unique id prefix.
"""

from __future__ import annotations

import time

from budu.errors import ConfigError, NotFound, StateError
from budu.metadata import Database
from budu.plain import Frozen


class Image(Frozen):
    __slots__ = ("id", "manifest_digest", "manifest_type", "index_digest", "chain_id", "created", "size", "tags",
                 "repo_digests")
    id: str
    manifest_digest: str
    manifest_type: str
    index_digest: str | None
    chain_id: str | None
    created: float
    size: int
    tags: tuple[str, ...]
    repo_digests: tuple[str, ...]

    def __init__(self, id: str, manifest_digest: str, manifest_type: str, index_digest: str | None,  # noqa: A002
                 chain_id: str | None, created: float, size: int, tags: tuple[str, ...] = (),
                 repo_digests: tuple[str, ...] = ()) -> None:
        self._init(id=id, manifest_digest=manifest_digest, manifest_type=manifest_type, index_digest=index_digest,
                   chain_id=chain_id, created=created, size=size, tags=tags, repo_digests=repo_digests)


class ImageStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, image: Image, blobs: list[str], tag: str | None = None, repo_digest: str | None = None) -> Image:
        """Record an image (or find the one already recorded), then point `tag` at it."""
        with self.db.tx() as c:
            if not c.execute("SELECT 1 FROM images WHERE id = ?", (image.id,)).fetchone():
                c.execute("INSERT INTO images (id, manifest_digest, manifest_type, index_digest, chain_id, created, size)"
                          " VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (image.id, image.manifest_digest, image.manifest_type, image.index_digest, image.chain_id,
                           image.created or time.time(), image.size))
            c.executemany("INSERT OR IGNORE INTO image_blobs (image_id, digest) VALUES (?, ?)",
                          [(image.id, d) for d in blobs])
            if tag:
                c.execute("INSERT OR REPLACE INTO tags (name, image_id) VALUES (?, ?)", (tag, image.id))
            if repo_digest:
                c.execute("INSERT OR IGNORE INTO repo_digests (name, image_id) VALUES (?, ?)", (repo_digest, image.id))
        return self.get(image.id)

    def get(self, image_id: str) -> Image:
        rows = self.db.query("SELECT * FROM images WHERE id = ?", (image_id,))
        if not rows:
            raise NotFound(f"No such image: {image_id}")
        return self._image(rows[0])

    def _image(self, r) -> Image:  # noqa: ANN001
        tags = tuple(x["name"] for x in self.db.query("SELECT name FROM tags WHERE image_id = ? ORDER BY name", (r["id"],)))
        digests = tuple(x["name"] for x in self.db.query(
            "SELECT name FROM repo_digests WHERE image_id = ? ORDER BY name", (r["id"],)))
        return Image(r["id"], r["manifest_digest"], r["manifest_type"], r["index_digest"], r["chain_id"],
                     r["created"], r["size"], tags, digests)

    def list(self) -> list[Image]:
        return [self._image(r) for r in self.db.query("SELECT * FROM images ORDER BY created DESC")]

    def resolve(self, name: str) -> Image:
        """An image by reference, repo digest, id or id prefix, the way docker looks it up."""
        if not name:
            raise ConfigError("an image name is required")
        rows = self.db.query("SELECT image_id FROM tags WHERE name = ?", (name,))
        if not rows:
            rows = self.db.query("SELECT image_id FROM repo_digests WHERE name = ?", (name,))
        bare = name[7:] if name.startswith("sha256:") else name
        if not rows and "/" not in bare and ":" not in bare:
            rows = self._by_id_prefix(bare)
        if not rows:
            from budu.images import reference

            try:
                ref = reference.parse(name)
            except ConfigError:
                raise NotFound(f"No such image: {name}") from None
            key = str(ref)
            rows = self.db.query("SELECT image_id FROM tags WHERE name = ?", (key,))
            if not rows and ref.digest:
                rows = self.db.query("SELECT image_id FROM repo_digests WHERE name = ?", (key,))
        if not rows:
            raise NotFound(f"No such image: {name}")
        return self.get(rows[0]["image_id"])

    def _by_id_prefix(self, prefix: str) -> list:
        if not all(ch in "0123456789abcdef" for ch in prefix) or len(prefix) < 1:
            return []
        rows = self.db.query("SELECT id AS image_id FROM images WHERE id LIKE ?", (f"sha256:{prefix}%",))
        if len(rows) > 1:
            raise ConfigError(f"image id prefix {prefix} is ambiguous ({len(rows)} images)")
        return rows

    def tag(self, image_id: str, name: str) -> None:
        with self.db.tx() as c:
            if not c.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone():
                raise NotFound(f"No such image: {image_id}")
            c.execute("INSERT OR REPLACE INTO tags (name, image_id) VALUES (?, ?)", (name, image_id))

    def add_repo_digest(self, image_id: str, name: str) -> None:
        """Record `repo@digest` for an image that is still there (after a push)."""
        with self.db.tx() as c:
            c.execute("INSERT OR IGNORE INTO repo_digests (name, image_id) SELECT ?, id FROM images WHERE id = ?",
                      (name, image_id))

    def add_blobs(self, image_id: str, blobs: list[str]) -> None:
        """Hold `blobs` for an image that is still there (a concurrent rmi wins)."""
        with self.db.tx() as c:
            c.executemany("INSERT OR IGNORE INTO image_blobs (image_id, digest) SELECT id, ? FROM images WHERE id = ?",
                          [(d, image_id) for d in blobs])

    def untag(self, name: str) -> str:
        with self.db.tx() as c:
            row = c.execute("SELECT image_id FROM tags WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"No such image: {name}")
            c.execute("DELETE FROM tags WHERE name = ?", (name,))
            return row["image_id"]

    def remove(self, image_id: str, force: bool = False) -> list[str]:
        """Forget an image; returns the blobs no other image holds (the caller frees them)."""
        with self.db.tx() as c:
            tags = c.execute("SELECT COUNT(*) FROM tags WHERE image_id = ?", (image_id,)).fetchone()[0]
            if tags > 1 and not force:
                raise StateError(f"conflict: unable to delete {image_id[7:19]} (must be forced) - "
                                 f"image is referenced in multiple repositories")
            blobs = [r["digest"] for r in c.execute("SELECT digest FROM image_blobs WHERE image_id = ?", (image_id,))]
            c.execute("DELETE FROM tags WHERE image_id = ?", (image_id,))
            c.execute("DELETE FROM repo_digests WHERE image_id = ?", (image_id,))
            c.execute("DELETE FROM image_blobs WHERE image_id = ?", (image_id,))
            c.execute("DELETE FROM images WHERE id = ?", (image_id,))
            still = {r["digest"] for r in c.execute(
                f"SELECT digest FROM image_blobs WHERE digest IN ({','.join('?' * len(blobs))})", blobs)} if blobs else set()
        return [b for b in blobs if b not in still]

    def chains_in_use(self) -> set[str]:
        return {r["chain_id"] for r in self.db.query("SELECT chain_id FROM images WHERE chain_id IS NOT NULL")}
