"""Named volumes: docker's `local` driver, a directory per volume under ROOT/volumes/NAME/_data.

The database row and the directory change in an order that survives a crash at any point:
create makes the directory, then commits the row (a row never points to a missing directory);
remove deletes the row, then moves the directory into ROOT/volumes/.trash (under the database's
write lock, and only if no row came back meanwhile) and deletes it.  A directory left without a
row is an orphan that `prune` (or a later `create` of the same name) clears away.

A volume with `type`/`device`/`o` options (e.g. a tmpfs volume) is mounted on its _data
directory when a container starts (`mount_source`) and unmounted when none uses it (`unmount`).
"""

from __future__ import annotations

import os
import stat
import time

from budu.engine.validate import valid_name
from budu.errors import ConfigError, KernelError, NotFound, StateError
from budu.kernel import fastjson
from budu.kernel import syscalls as sc
from budu.kernel.files import rmtree, unescape_mountinfo
from budu.metadata import Database
from budu.plain import Frozen

ANONYMOUS_LABEL = "com.docker.volume.anonymous"  # docker 23+ marks anonymous volumes with it
LOCAL_OPTIONS = ("type", "device", "o")
_TRASH = ".trash"  # never a volume name: names start with a letter or digit


class Volume(Frozen):
    __slots__ = ("name", "driver", "mountpoint", "created", "labels", "options", "anonymous")

    def __init__(self, name: str, driver: str, mountpoint: str, created: float, labels: dict | None = None,
                 options: dict | None = None, anonymous: bool = False) -> None:
        self._init(name=name, driver=driver, mountpoint=mountpoint, created=created,
                   labels={} if labels is None else labels, options={} if options is None else options,
                   anonymous=anonymous)

    def inspect(self) -> dict:
        """docker's Volume JSON (GET /volumes/NAME)."""
        labels = dict(self.labels)
        if self.anonymous:
            labels.setdefault(ANONYMOUS_LABEL, "")
        return {
            "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
            "Driver": self.driver,
            "Labels": labels,
            "Mountpoint": self.mountpoint,
            "Name": self.name,
            "Options": dict(self.options) or None,
            "Scope": "local",
        }

    def all_labels(self) -> dict:
        return self.inspect()["Labels"]


class Volumes:
    def __init__(self, root: str, db: Database) -> None:
        self.root = os.path.join(root, "volumes")
        os.makedirs(self.root, mode=0o701, exist_ok=True)
        self.db = db

    # -- paths ------------------------------------------------------------------------------------

    def _dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def _data(self, name: str) -> str:
        return os.path.join(self.root, name, "_data")

    def _volume(self, row) -> Volume:
        return Volume(row["name"], row["driver"], self._data(row["name"]), row["created"],
                      fastjson.loads(row["labels"]), fastjson.loads(row["options"]), bool(row["anonymous"]))

    def _to_trash(self, name: str) -> str | None:
        """Move a volume's directory aside (cheap, atomic) so that it can be deleted outside the
        database lock; returns where it went."""
        src = self._dir(name)
        if not os.path.lexists(src):
            return None
        trash = os.path.join(self.root, _TRASH)
        os.makedirs(trash, mode=0o700, exist_ok=True)
        dst = os.path.join(trash, f"{name}-{os.urandom(4).hex()}")
        os.rename(src, dst)
        return dst

    # -- docker's volume API ----------------------------------------------------------------------

    def create(self, name: str | None = None, labels: dict | None = None, options: dict | None = None,
               anonymous: bool = False, driver: str = "local") -> Volume:
        """Create a volume; an existing name returns the existing volume (docker's create is
        idempotent).  Without a name it gets a random 64-hex one, as docker's anonymous volumes do;
        `anonymous` marks it as made for one container (prune and `rm -v` take those)."""
        if driver not in ("", "local"):
            raise ConfigError(f'error looking up volume plugin {driver}: plugin "{driver}" not found')
        if name is None or name == "":
            name = os.urandom(32).hex()
        elif not valid_name(name):
            raise ConfigError(f'create {name}: "{name}" includes invalid characters for a local volume name, '
                              f'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
                              f"directory, use absolute path")
        options = {str(k): str(v) for k, v in (options or {}).items()}
        _validate_options(options)
        stale = None
        with self.db.tx() as c:
            row = c.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()
            if row is not None:
                return self._volume(row)
            stale = self._to_trash(name)  # an orphan of a crash: a new volume starts empty
            os.makedirs(self._data(name), mode=0o755)
            os.chmod(self._dir(name), 0o701)
            c.execute("INSERT INTO volumes (name, driver, created, labels, options, anonymous) "
                      "VALUES (?, ?, ?, ?, ?, ?)",
                      (name, "local", time.time(), fastjson.dumps(labels or {}), fastjson.dumps(options), int(anonymous)))
            row = c.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()
        if stale:
            _rmtree(stale)
        return self._volume(row)

    def get(self, name: str) -> Volume:
        rows = self.db.query("SELECT * FROM volumes WHERE name = ?", (name,))
        if not rows:
            raise NotFound(f"no such volume: {name}")
        return self._volume(rows[0])

    def list(self, filters: dict[str, list[str]] | None = None, in_use: set[str] | frozenset[str] = frozenset()) -> list[Volume]:
        """All volumes matching docker's `volume ls` filters: name (substring or regexp), label
        (KEY or KEY=VALUE, all must match), dangling (true|false: not used by any container, per
        `in_use`, the names of volumes in use), driver."""
        filters = {k: list(v) for k, v in (filters or {}).items() if v}
        for key in filters:
            if key not in ("name", "label", "dangling", "driver"):
                raise ConfigError(f"invalid filter '{key}'")
        dangling = None
        for value in filters.get("dangling", []):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ConfigError(f"invalid filter 'dangling={value}'")
            dangling = value.lower() in ("true", "1")
        out = []
        for row in self.db.query("SELECT * FROM volumes ORDER BY name"):
            v = self._volume(row)
            if "name" in filters and not any(_name_matches(p, v.name) for p in filters["name"]):
                continue
            if "driver" in filters and v.driver not in filters["driver"]:
                continue
            if "label" in filters and not all(_label_matches(p, v.all_labels()) for p in filters["label"]):
                continue
            if dangling is not None and (v.name not in in_use) != dangling:
                continue
            out.append(v)
        return out

    def remove(self, name: str, force: bool = False,
               in_use: set[str] | frozenset[str] | dict[str, set[str]] = frozenset()) -> None:
        """Remove a volume.  `in_use` names the volumes in use (as for `list` and `prune`), or maps
        them to the ids of the containers using them, which the error then lists the way docker
        does.  In use is refused even with force, as docker does; force only ignores a missing
        volume."""
        try:
            vol = self.get(name)
        except NotFound:
            if force:
                return
            raise
        if name in in_use:
            users = in_use[name] if isinstance(in_use, dict) else ()
            detail = f" - [{', '.join(sorted(users))}]" if users else ""
            raise StateError(f"remove {name}: volume is in use{detail}")
        self.unmount(vol)
        with self.db.tx() as c:
            c.execute("DELETE FROM volumes WHERE name = ?", (name,))
        self._clear_orphan(name)

    def prune(self, in_use: set[str] | frozenset[str], all_volumes: bool = False,
              filters: dict[str, list[str]] | None = None) -> tuple[list[str], int]:
        """Remove unused volumes: anonymous ones only unless `all_volumes` (docker 23+); `filters`
        may hold `label` / `label!` conditions.  Also clears orphan directories.  Returns the
        removed names and the bytes reclaimed."""
        filters = filters or {}
        for key in filters:
            if key not in ("label", "label!", "all"):
                raise ConfigError(f"invalid filter '{key}'")
        if any(v.lower() in ("true", "1") for v in filters.get("all", [])):
            all_volumes = True
        removed: list[str] = []
        reclaimed = 0
        for v in self.list():
            if v.name in in_use or not (all_volumes or v.anonymous):
                continue
            labels = v.all_labels()
            if not all(_label_matches(p, labels) for p in filters.get("label", [])):
                continue
            if any(_label_matches(p, labels) for p in filters.get("label!", [])):
                continue
            size = _du(self._dir(v.name))
            try:
                self.remove(v.name)
            except (NotFound, StateError, KernelError):
                continue
            removed.append(v.name)
            reclaimed += size
        self._clear_orphans()
        return removed, reclaimed

    # -- volumes with mount options ---------------------------------------------------------------

    def mount_source(self, vol: Volume) -> str:
        """The host path to bind into a container; a volume with mount options is mounted on its
        _data directory first (once: later callers find it mounted)."""
        path = vol.mountpoint
        if not os.path.isdir(path):
            raise NotFound(f"volume {vol.name}: {path} is missing")
        if not vol.options or _is_mountpoint(path):
            return path
        from budu.runtime.rootfs import MountSpec

        spec = MountSpec([o for o in vol.options.get("o", "").split(",") if o])
        try:
            sc.mount(vol.options.get("device", "none"), path, vol.options.get("type") or None, spec.flags,
                     spec.data or None)
        except OSError as e:
            raise KernelError(f"error while mounting volume '{path}': failed to mount local volume: "
                              f"mount {vol.options.get('device')}:{path}, flags: {spec.flags:#x}, "
                              f"data: {spec.data}: {e.strerror}") from None
        return path

    def unmount(self, vol: Volume) -> None:
        """Unmount a volume mounted by `mount_source` (no-op otherwise); the caller knows that no
        running container uses it any more."""
        if vol.options and _is_mountpoint(vol.mountpoint):
            try:
                sc.umount(vol.mountpoint, 0)
            except OSError as e:
                raise KernelError(f"unmount volume {vol.name}: {e.strerror}") from None

    # -- crash leftovers --------------------------------------------------------------------------

    def _clear_orphan(self, name: str) -> None:
        with self.db.tx() as c:
            if c.execute("SELECT 1 FROM volumes WHERE name = ?", (name,)).fetchone():
                return  # created again meanwhile: the directory is the new volume's
            stale = self._to_trash(name)
        if stale:
            _rmtree(stale)

    def _clear_orphans(self) -> None:
        with self.db.tx() as c:
            names = {r["name"] for r in c.execute("SELECT name FROM volumes")}
            for entry in os.listdir(self.root):
                if entry != _TRASH and entry not in names:
                    self._to_trash(entry)
        trash = os.path.join(self.root, _TRASH)
        if os.path.isdir(trash):
            for entry in os.listdir(trash):
                _rmtree(os.path.join(trash, entry))


def _validate_options(options: dict[str, str]) -> None:
    """The local driver's options: type, device and o, where type and device go together."""
    for key in options:
        if key not in LOCAL_OPTIONS:
            raise ConfigError(f'invalid option: "{key}"')
    if options:
        for key in ("type", "device"):
            if not options.get(key):
                raise ConfigError(f'missing required option: "{key}"')


def _name_matches(pattern: str, name: str) -> bool:
    if pattern == name:
        return True
    import re

    try:
        return re.search(pattern, name) is not None
    except re.error:
        return False


def _label_matches(pattern: str, labels: dict) -> bool:
    key, eq, value = pattern.partition("=")
    if key not in labels:
        return False
    return not eq or labels[key] == value


def _is_mountpoint(path: str) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(unescape_mountinfo(line.split(" ", 5)[4]) == real for line in f)


def _du(path: str) -> int:
    """Bytes of the files under path, each inode once (what docker reports as reclaimed)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += 0 if stat.S_ISDIR(st.st_mode) else st.st_size
    return total


def _rmtree(path: str) -> None:
    """Delete a directory tree without crossing into anything still mounted below it."""
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        mounted = sorted((unescape_mountinfo(line.split(" ", 5)[4]) for line in f), key=len, reverse=True)
    for mp in mounted:
        if mp.startswith(real + "/"):
            try:
                sc.umount(mp, sc.MNT_DETACH)
            except OSError:
                return  # leave it for a later prune rather than delete through a mount
    rmtree(path)
