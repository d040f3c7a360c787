"""budu's metadata database: one SQLite file under the root, its whole schema drawn here.

The schema changes only by appending a migration to MIGRATIONS; `PRAGMA user_version` records
how many have run.  WAL mode and a busy timeout let many budu processes share the file; every
change is a transaction, so a process killed at any point leaves the last committed state.
"""

from __future__ import annotations

import os
import sqlite3

from budu.errors import BuduError

DB_NAME = "budu.db"

MIGRATIONS: tuple[str, ...] = (
    # 1: snapshots (the overlay snapshotter) and images with their tags and blobs
    """
    CREATE TABLE snapshots (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        key      TEXT NOT NULL UNIQUE,        -- committed: the chain id, active or view: the caller's key
        parent   TEXT REFERENCES snapshots(key),
        kind     TEXT NOT NULL CHECK (kind IN ('active', 'view', 'committed')),
        created  REAL NOT NULL,
        size     INTEGER NOT NULL DEFAULT 0,  -- bytes on disk, measured at commit
        labels   TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX snapshots_parent ON snapshots(parent);
    CREATE TABLE images (
        id              TEXT PRIMARY KEY,     -- the config digest, as docker's image id
        manifest_digest TEXT NOT NULL,
        manifest_type   TEXT NOT NULL,
        index_digest    TEXT,                 -- the index/manifest list it was chosen from, if any
        chain_id        TEXT,                 -- the top snapshot (NULL for an image with no layers)
        created         REAL NOT NULL,        -- when budu stored it
        size            INTEGER NOT NULL      -- uncompressed layer bytes
    );
    CREATE TABLE tags (
        name     TEXT PRIMARY KEY,            -- a full reference: docker.io/library/busybox:latest
        image_id TEXT NOT NULL REFERENCES images(id)
    );
    CREATE INDEX tags_image ON tags(image_id);
    CREATE TABLE repo_digests (
        name     TEXT NOT NULL,               -- docker.io/library/busybox@sha256:...
        image_id TEXT NOT NULL REFERENCES images(id),
        PRIMARY KEY (name, image_id)
    );
    CREATE TABLE image_blobs (                -- every blob an image holds on to (for GC)
        image_id TEXT NOT NULL REFERENCES images(id),
        digest   TEXT NOT NULL,
        PRIMARY KEY (image_id, digest)
    );
    CREATE INDEX image_blobs_digest ON image_blobs(digest);
    """,
    # 2: containers (docker's create body, kept as sent) and named volumes
    """
    CREATE TABLE containers (
        id           TEXT PRIMARY KEY,        -- 64 hex digits
        name         TEXT NOT NULL UNIQUE,    -- without docker's leading '/'
        image_id     TEXT NOT NULL,           -- sha256:..., pinned at create (not a foreign key: rmi -f may untag it)
        image_ref    TEXT NOT NULL,           -- what the user typed (Config.Image)
        created      REAL NOT NULL,
        config       TEXT NOT NULL,           -- docker Config, JSON
        host_config  TEXT NOT NULL,           -- docker HostConfig, JSON
        mounts       TEXT NOT NULL DEFAULT '[]',  -- docker MountPoint list, planned at create
        snapshot     TEXT NOT NULL,           -- the snapshot key of its writable layer
        paused       INTEGER NOT NULL DEFAULT 0,
        removing     INTEGER NOT NULL DEFAULT 0,  -- rm began: any command may finish it
        restart_count INTEGER NOT NULL DEFAULT 0,
        extra        TEXT NOT NULL DEFAULT '{}'   -- room for networking and later fields
    );
    CREATE TABLE volumes (
        name     TEXT PRIMARY KEY,
        driver   TEXT NOT NULL DEFAULT 'local',
        created  REAL NOT NULL,
        labels   TEXT NOT NULL DEFAULT '{}',
        options  TEXT NOT NULL DEFAULT '{}',
        anonymous INTEGER NOT NULL DEFAULT 0
    );
    """,
    # 3: networks, the endpoints containers have on them, published host ports, network namespaces
    """
    CREATE TABLE networks (
        id          TEXT PRIMARY KEY,         -- 64 hex digits
        name        TEXT NOT NULL UNIQUE,
        driver      TEXT NOT NULL,            -- bridge (host and null for the two pseudo networks)
        subnet      TEXT NOT NULL DEFAULT '',
        gateway     TEXT NOT NULL DEFAULT '',
        bridge      TEXT NOT NULL DEFAULT '', -- the linux bridge
        internal    INTEGER NOT NULL DEFAULT 0,
        user_subnet INTEGER NOT NULL DEFAULT 0,  -- the subnet was given at create
        labels      TEXT NOT NULL DEFAULT '{}',
        options     TEXT NOT NULL DEFAULT '{}',
        created     REAL NOT NULL
    );
    CREATE TABLE endpoints (                  -- written before CNI ADD runs, so a crash leaves a trace
        id           TEXT PRIMARY KEY,        -- docker's EndpointID
        network_id   TEXT NOT NULL REFERENCES networks(id),
        container_id TEXT NOT NULL,
        ifname       TEXT NOT NULL,
        netns        TEXT NOT NULL,
        state        TEXT NOT NULL CHECK (state IN ('adding', 'attached')),
        ip           TEXT NOT NULL DEFAULT '',
        prefix       INTEGER NOT NULL DEFAULT 0,
        gateway      TEXT NOT NULL DEFAULT '',
        mac          TEXT NOT NULL DEFAULT '',
        host_ifname  TEXT NOT NULL DEFAULT '',
        static_ip    TEXT NOT NULL DEFAULT '',
        names        TEXT NOT NULL DEFAULT '[]',  -- DNS names: container name, short id...
        aliases      TEXT NOT NULL DEFAULT '[]',
        dns_servers  TEXT NOT NULL DEFAULT '[]',  -- where the DNS server forwards this container's queries
        cni_config   TEXT NOT NULL,           -- the conflist and runtimeConfig ADD ran with (DEL needs them)
        cni_result   TEXT NOT NULL DEFAULT '',
        created      REAL NOT NULL,
        UNIQUE (network_id, container_id),
        UNIQUE (container_id, ifname)
    );
    CREATE INDEX endpoints_container ON endpoints(container_id);
    CREATE TABLE ports (                      -- host ports budu publishes (DNAT binds nothing, so budu keeps the list)
        endpoint_id    TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
        host_ip        TEXT NOT NULL,         -- '' for every address
        host_port      INTEGER NOT NULL,
        protocol       TEXT NOT NULL,
        container_port INTEGER NOT NULL,
        PRIMARY KEY (host_ip, host_port, protocol)
    );
    CREATE TABLE netns (
        container_id TEXT PRIMARY KEY,
        path         TEXT NOT NULL,
        created      REAL NOT NULL
    );
    """,
)


class Database:
    """A connection to the metadata database; use `tx()` for every change."""

    def __init__(self, root: str) -> None:
        os.makedirs(root, mode=0o711, exist_ok=True)
        self.path = os.path.join(root, DB_NAME)
        try:
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise BuduError(f"cannot open the metadata database {self.path}: {e}") from None
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def _migrate(self) -> None:
        if self.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS):
            return  # up to date: no write lock needed
        with self.tx(immediate=True):
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise BuduError(f"{self.path} was written by a newer budu (schema {version}); upgrade budu")
            for n in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[n].split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {n + 1}")

    def tx(self, immediate: bool = True) -> Transaction:
        """A transaction: BEGIN IMMEDIATE takes the write lock up front, so two processes never
        both read-then-write the same rows."""
        return Transaction(self.conn, "BEGIN IMMEDIATE" if immediate else "BEGIN")

    def query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        self.conn.close()


class Transaction:
    """`with db.tx() as conn:` commits at the end, or rolls back if the block raised.  (A class,
    not contextlib.contextmanager: contextlib costs ~5 ms of every CLI start here.)"""

    __slots__ = ("conn", "begin")

    def __init__(self, conn: sqlite3.Connection, begin: str) -> None:
        self.conn = conn
        self.begin = begin

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute(self.begin)
        return self.conn

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> bool:
        self.conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")
        return False
