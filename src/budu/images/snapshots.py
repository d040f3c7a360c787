"""The overlay snapshotter (containerd's shape): layers as directories stacked by overlayfs.

A committed snapshot is one unpacked layer, keyed by its chain id and shared by every image that
has it.  An active snapshot is a writable layer on top of a committed chain (a container's upper
directory, or a layer being unpacked); a view is a read-only stack.  Callers get `Mount` values
and never see the directory layout.  The directory of a snapshot is named by its row id, so a
crash between the database and the disk leaves at worst an orphan directory that `cleanup()`
removes, never a row that points at someone else's files.
"""

from __future__ import annotations

import os
import time

from budu.errors import ConfigError, NotFound, StateError
from budu.kernel import fastjson
from budu.kernel.files import rmtree
from budu.metadata import Database
from budu.plain import Frozen


class Mount(Frozen):
    """What storage hands to execution: mount(type, source, target, options)."""

    __slots__ = ("type", "source", "options")
    type: str
    source: str
    options: tuple[str, ...]

    def __init__(self, type: str, source: str, options: tuple[str, ...] = ()) -> None:  # noqa: A002
        self._init(type=type, source=source, options=options)

    def to_oci(self, destination: str) -> dict:
        return {"destination": destination, "type": self.type, "source": self.source, "options": list(self.options)}


class Info(Frozen):
    __slots__ = ("key", "parent", "kind", "created", "size", "labels")
    key: str
    parent: str | None
    kind: str
    created: float
    size: int
    labels: dict

    def __init__(self, key: str, parent: str | None, kind: str, created: float, size: int, labels: dict) -> None:
        self._init(key=key, parent=parent, kind=kind, created=created, size=size, labels=labels)


class Snapshotter:
    def __init__(self, root: str, db: Database) -> None:
        self.root = os.path.join(root, "snapshots")
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self.db = db

    # -- paths --------------------------------------------------------------------------------

    def _dir(self, sid: int) -> str:
        return os.path.join(self.root, str(sid))

    def _row(self, key: str):
        rows = self.db.query("SELECT * FROM snapshots WHERE key = ?", (key,))
        if not rows:
            raise NotFound(f"snapshot {key} does not exist")
        return rows[0]

    def _chain(self, key: str | None) -> list[str]:
        """Directories of `key` and its ancestors, top first (overlay's lowerdir order)."""
        dirs = []
        while key is not None:
            row = self._row(key)
            dirs.append(os.path.join(self._dir(row["id"]), "fs"))
            key = row["parent"]
        return dirs

    # -- containerd's API -----------------------------------------------------------------------

    def stat(self, key: str) -> Info:
        r = self._row(key)
        return Info(r["key"], r["parent"], r["kind"], r["created"], r["size"], fastjson.loads(r["labels"]))

    def exists(self, key: str) -> bool:
        return bool(self.db.query("SELECT 1 FROM snapshots WHERE key = ?", (key,)))

    def prepare(self, key: str, parent: str | None = None, labels: dict | None = None) -> list[Mount]:
        """A writable snapshot on top of `parent` (committed)."""
        return self._new(key, parent, "active", labels)

    def view(self, key: str, parent: str | None, labels: dict | None = None) -> list[Mount]:
        """A read-only stack of `parent`."""
        return self._new(key, parent, "view", labels)

    def _new(self, key: str, parent: str | None, kind: str, labels: dict | None) -> list[Mount]:
        with self.db.tx() as c:
            if c.execute("SELECT 1 FROM snapshots WHERE key = ?", (key,)).fetchone():
                raise StateError(f"snapshot {key} already exists")
            if parent is not None:
                p = c.execute("SELECT kind FROM snapshots WHERE key = ?", (parent,)).fetchone()
                if p is None:
                    raise NotFound(f"parent snapshot {parent} does not exist")
                if p["kind"] != "committed":
                    raise ConfigError(f"parent snapshot {parent} is not committed")
            cur = c.execute("INSERT INTO snapshots (key, parent, kind, created, labels) VALUES (?, ?, ?, ?, ?)",
                            (key, parent, kind, time.time(), fastjson.dumps(labels or {})))
            sid = cur.lastrowid
            d = self._dir(sid)
            if os.path.lexists(d):  # an orphan of a crash may hold the number
                rmtree(d)
            os.makedirs(os.path.join(d, "fs"), mode=0o755)
            if kind == "active":
                os.mkdir(os.path.join(d, "work"), 0o700)
        return self.mounts(key)

    def mounts(self, key: str) -> list[Mount]:
        row = self._row(key)
        d = self._dir(row["id"])
        lowers = self._chain(row["parent"])
        if row["kind"] == "committed":
            raise ConfigError(f"snapshot {key} is committed: make a view or an active snapshot of it")
        if row["kind"] == "view":
            if not lowers:
                return [Mount("bind", os.path.join(d, "fs"), ("ro", "rbind"))]
            if len(lowers) == 1:
                return [Mount("bind", lowers[0], ("ro", "rbind"))]
            return [Mount("overlay", "overlay", ("lowerdir=" + ":".join(lowers),))]
        if not lowers:
            return [Mount("bind", os.path.join(d, "fs"), ("rw", "rbind"))]
        return [Mount("overlay", "overlay", (
            "index=off", "workdir=" + os.path.join(d, "work"), "upperdir=" + os.path.join(d, "fs"),
            "lowerdir=" + ":".join(lowers)))]

    def upper_dir(self, key: str) -> str:
        """The directory an active snapshot writes to: a layer is unpacked straight into it
        (the differ writes overlay whiteouts), and `commit` computes diffs from it."""
        row = self._row(key)
        if row["kind"] != "active":
            raise ConfigError(f"snapshot {key} is not active")
        return os.path.join(self._dir(row["id"]), "fs")

    def commit(self, name: str, key: str, labels: dict | None = None) -> None:
        """Freeze active snapshot `key` as committed `name`."""
        row = self._row(key)
        if row["kind"] != "active":
            raise ConfigError(f"snapshot {key} is not active")
        d = self._dir(row["id"])
        size = _disk_usage(os.path.join(d, "fs"))
        with self.db.tx() as c:
            if c.execute("SELECT 1 FROM snapshots WHERE key = ?", (name,)).fetchone():
                raise StateError(f"snapshot {name} already exists")
            merged = dict(fastjson.loads(row["labels"]), **(labels or {}))
            c.execute("UPDATE snapshots SET key = ?, kind = 'committed', size = ?, labels = ? WHERE id = ?",
                      (name, size, fastjson.dumps(merged), row["id"]))
        rmtree(os.path.join(d, "work"))

    def remove(self, key: str) -> None:
        with self.db.tx() as c:
            row = c.execute("SELECT id FROM snapshots WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise NotFound(f"snapshot {key} does not exist")
            if c.execute("SELECT 1 FROM snapshots WHERE parent = ?", (key,)).fetchone():
                raise StateError(f"snapshot {key} has children")
            c.execute("DELETE FROM snapshots WHERE id = ?", (row["id"],))
        rmtree(self._dir(row["id"]))  # read-only layer directories too

    def walk(self) -> list[Info]:
        return [Info(r["key"], r["parent"], r["kind"], r["created"], r["size"], fastjson.loads(r["labels"]))
                for r in self.db.query("SELECT * FROM snapshots ORDER BY id")]

    def usage(self, key: str) -> int:
        return _disk_usage(os.path.join(self._dir(self._row(key)["id"]), "fs"))

    def cleanup(self) -> list[str]:
        """Remove directories no row owns (what a crash between disk and database leaves)."""
        known = {str(r["id"]) for r in self.db.query("SELECT id FROM snapshots")}
        removed = []
        for name in os.listdir(self.root):
            if name not in known:
                rmtree(os.path.join(self.root, name))
                removed.append(name)
        return removed


def _disk_usage(path: str) -> int:
    """Bytes of blocks used, counting hard-linked files once (what du reports)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


