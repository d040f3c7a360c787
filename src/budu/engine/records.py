"""Container records: one row per container in budu's SQLite state, docker's create body kept as sent.

What a container *is* (its configuration, image, writable layer, mounts) lives here; what it is
*doing* (running, exited, its pid and exit code) is written by its monitor into a file beside it
and read by `engine.status` — so nothing here has to be updated when a container stops.
"""

from __future__ import annotations

import os
import sqlite3

from budu.errors import ConfigError, NotFound
from budu.kernel import fastjson
from budu.metadata import Database
from budu.plain import Plain



class Container(Plain):
    __slots__ = ("id", "name", "image_id", "image_ref", "created", "config", "host_config", "snapshot", "mounts",
                 "paused", "removing", "restart_count", "extra")

    def __init__(self, id: str, name: str, image_id: str, image_ref: str, created: float, config: dict,  # noqa: A002
                 host_config: dict, snapshot: str, mounts: list[dict] | None = None, paused: bool = False,
                 removing: bool = False, restart_count: int = 0, extra: dict | None = None) -> None:
        self.id = id
        self.name = name
        self.image_id = image_id
        self.image_ref = image_ref
        self.created = created
        self.config = config
        self.host_config = host_config
        self.snapshot = snapshot
        self.mounts = [] if mounts is None else mounts
        self.paused = paused
        self.removing = removing
        self.restart_count = restart_count
        self.extra = {} if extra is None else extra

    @property
    def short_id(self) -> str:
        return self.id[:12]


class ContainerStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, c: Container) -> None:
        try:
            with self.db.tx() as conn:
                conn.execute(
                    "INSERT INTO containers (id, name, image_id, image_ref, created, config, host_config, mounts,"
                    " snapshot, paused, removing, restart_count, extra) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (c.id, c.name, c.image_id, c.image_ref, c.created, fastjson.dumps(c.config),
                     fastjson.dumps(c.host_config), fastjson.dumps(c.mounts), c.snapshot, int(c.paused),
                     int(c.removing), c.restart_count, fastjson.dumps(c.extra)))
        except sqlite3.IntegrityError:
            raise self._conflict(c.name) from None

    def _conflict(self, name: str) -> ConfigError:
        rows = self.db.query("SELECT id FROM containers WHERE name = ?", (name,))
        other = rows[0]["id"] if rows else "?"
        e = ConfigError(f'Conflict. The container name "/{name}" is already in use by container "{other}". '
                        'You have to remove (or rename) that container to be able to reuse that name.')
        e.exit_code = 125
        return e

    def get(self, ref: str) -> Container:
        """By full id, by name, or by a unique id prefix — docker's order."""
        ref = ref[1:] if ref.startswith("/") else ref
        rows = self.db.query("SELECT * FROM containers WHERE id = ? OR name = ?", (ref, ref))
        if not rows and ref and all(ch in "0123456789abcdef" for ch in ref):
            rows = self.db.query("SELECT * FROM containers WHERE id LIKE ? || '%'", (ref,))
            if len(rows) > 1:
                raise NotFound(f"multiple containers found with provided prefix: {ref}")
        if not rows:
            raise NotFound(f"No such container: {ref}")
        by_id = [r for r in rows if r["id"] == ref]
        return self._from_row((by_id or rows)[0])

    def list(self) -> list[Container]:
        return [self._from_row(r) for r in self.db.query("SELECT * FROM containers ORDER BY created DESC")]

    def update(self, cid: str, **fields: object) -> None:
        cols, vals = [], []
        for k, v in fields.items():
            cols.append(f"{k} = ?")
            vals.append(fastjson.dumps(v) if isinstance(v, (dict, list)) else int(v) if isinstance(v, bool) else v)
        try:
            with self.db.tx() as conn:
                conn.execute(f"UPDATE containers SET {', '.join(cols)} WHERE id = ?", (*vals, cid))
        except sqlite3.IntegrityError:
            raise self._conflict(str(fields.get("name"))) from None

    def remove(self, cid: str) -> None:
        with self.db.tx() as conn:
            conn.execute("DELETE FROM containers WHERE id = ?", (cid,))

    def names(self) -> set[str]:
        return {r[0] for r in self.db.query("SELECT name FROM containers")}

    @staticmethod
    def _from_row(r: sqlite3.Row) -> Container:
        return Container(
            id=r["id"], name=r["name"], image_id=r["image_id"], image_ref=r["image_ref"], created=r["created"],
            config=fastjson.loads(r["config"]), host_config=fastjson.loads(r["host_config"]), mounts=fastjson.loads(r["mounts"]),
            snapshot=r["snapshot"], paused=bool(r["paused"]), removing=bool(r["removing"]),
            restart_count=r["restart_count"], extra=fastjson.loads(r["extra"]))


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
