"""A content-addressed blob store, containerd's shape: verified on commit, resumable while ingesting.

Layout under `root`:

    blobs/<algo>/<hex>                 committed blobs, immutable, named by their digest
    ingest/<sha256(key)>/data          bytes received so far for a write in progress
    ingest/<sha256(key)>/ref           the caller's key (the directory name is its hash: keys may hold '/')
    ingest/<sha256(key)>/expected      the digest the data must have, if the caller knows it
    ingest/<sha256(key)>/total         the size the data must have, if the caller knows it
    ingest/<sha256(key)>/lock          flock(2)ed by the one process writing that key

A blob only ever appears in `blobs/` by rename(2) of a fsynced `data` file whose digest (and size)
were checked, so a reader can never see a partial or unverified blob.  An interrupted write (a
dropped download, a killed process) leaves its ingest behind; reopening the same key re-hashes what
is there and continues at `Writer.offset` (for an HTTP Range request).  One that nobody resumes is
removed by `gc_ingests` once it has not been written to for a day (containerd's default expiry),
unless a live writer holds its lock.
"""

from __future__ import annotations

import fcntl
import os
import time

from budu.errors import BuduError, NotFound, StateError
from budu.images.reference import DIGEST_HEX_LEN, InvalidDigest, parse_digest
from budu.plain import Frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

_CHUNK = 1 << 20
INGEST_MAX_AGE = 24 * 3600.0  # an ingest untouched this long is abandoned (containerd: 24 h)


class DigestMismatch(BuduError):
    """Data did not hash (or measure) to what its descriptor promised: it is refused, never stored."""


class IngestStatus(Frozen):
    """A write in progress (or abandoned): what `ingests()` reports."""

    __slots__ = ("key", "offset", "expected", "total", "updated")
    key: str
    offset: int
    expected: str | None
    total: int | None
    updated: float

    def __init__(self, key: str, offset: int, expected: str | None, total: int | None, updated: float) -> None:
        self._init(key=key, offset=offset, expected=expected, total=total, updated=updated)


def _split(digest: str) -> tuple[str, str]:
    algo, _, hexpart = parse_digest(digest).partition(":")
    return algo, hexpart


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(path: str) -> None:
    """Flush the filesystem holding `path` (data and metadata of every file on it)."""
    import ctypes

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _read_small(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    except FileNotFoundError:
        return None


def _last_write(path: str) -> float:
    """When an ingest directory or any file in it last changed."""
    latest = 0.0
    try:
        latest = os.lstat(path).st_mtime
        for name in os.listdir(path):
            try:
                latest = max(latest, os.lstat(os.path.join(path, name)).st_mtime)
            except FileNotFoundError:
                pass
    except FileNotFoundError:
        pass
    return latest


def _write_small(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.rename(tmp, path)


class ContentStore:
    """Blobs by digest.  `root` is created if missing; several processes may share it."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._blobs = os.path.join(self.root, "blobs")
        self._ingest = os.path.join(self.root, "ingest")
        os.makedirs(self._blobs, exist_ok=True)
        os.makedirs(self._ingest, exist_ok=True)
        self._deferred: set[str] | None = None

    def deferred_sync(self) -> _DeferredSync:
        """Commits inside become durable together, with one syncfs of the store's filesystem at the
        end, instead of an fsync of each blob and its directory (each is a journal commit: 20-100 ms
        on a slow disk).  Whoever records a reference to the blobs does so after this block."""
        return _DeferredSync(self)

    def _sync_dir(self, path: str) -> None:
        if self._deferred is not None:
            self._deferred.add(path)
        else:
            _fsync_dir(path)

    # -- reading -------------------------------------------------------------------------------

    def path(self, digest: str) -> str:
        """Where the blob `digest` lives (whether or not it exists yet); the digest is validated."""
        algo, hexpart = _split(digest)
        return os.path.join(self._blobs, algo, hexpart)

    def exists(self, digest: str) -> bool:
        return os.path.isfile(self.path(digest))

    def size(self, digest: str) -> int:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in content store {self.root}") from None

    def open(self, digest: str) -> BinaryIO:
        """The blob for streaming reads (layers); the caller closes it."""
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in content store {self.root}") from None

    def read(self, digest: str) -> bytes:
        """A whole blob at once: for manifests and configs, not for layers."""
        with self.open(digest) as f:
            return f.read()

    def walk(self) -> Iterator[tuple[str, int]]:
        """Every committed blob as (digest, size), sorted by digest."""
        for algo in sorted(os.listdir(self._blobs)):
            want = DIGEST_HEX_LEN.get(algo)
            if want is None:
                continue
            d = os.path.join(self._blobs, algo)
            with os.scandir(d) as it:
                entries = sorted((e.name, e) for e in it)
            for name, e in entries:
                if len(name) != want or not e.is_file(follow_symlinks=False):
                    continue
                try:
                    yield f"{algo}:{name}", e.stat(follow_symlinks=False).st_size
                except FileNotFoundError:  # deleted while we walked
                    continue

    # -- writing -------------------------------------------------------------------------------

    def writer(self, key: str, expected: str | None = None, size: int | None = None,
               timeout: float = 60.0) -> Writer:
        """Open (or resume) the ingest named `key`.

        Only one process writes a key at a time: a second writer waits up to `timeout` seconds for
        the first to finish, then raises StateError.  Different keys never wait on each other, even
        for the same digest (both commit; the second finds the blob already there).
        """
        if not key:
            raise StateError("content store: an ingest key must not be empty")
        if expected is not None:
            parse_digest(expected)
        if size is not None and size < 0:
            raise StateError(f"content store: negative expected size {size} for ingest {key!r}")
        return Writer(self, key, expected, size, timeout)

    def put(self, data: bytes, expected: str | None = None) -> str:
        """Store a small blob held in memory (manifests, configs, small layers) and return its digest.

        The data is verified before anything touches the disk, so no ingest or lock is needed:
        a temporary file renamed into place, and two processes putting the same blob both
        rename identical bytes."""
        algo = _split(expected)[0] if expected else "sha256"
        import hashlib  # lazily: OpenSSL's start-up costs ~6 ms, and a run never hashes

        actual = f"{algo}:{hashlib.new(algo, data).hexdigest()}"
        if expected is not None and actual != expected:
            raise DigestMismatch(f"digest mismatch: expected {expected}, got {actual} ({len(data)} bytes)")
        target = self.path(actual)
        if os.path.exists(target):
            return actual
        tmp = os.path.join(self._ingest, f".put-{os.urandom(16).hex()}")  # hidden: ingests() skips it
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if self._deferred is None:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.rename(tmp, target)
        self._sync_dir(os.path.dirname(target))
        return actual

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in content store {self.root}") from None

    def ingests(self) -> list[IngestStatus]:
        """Writes in progress or left behind by a crash, for `resume` or garbage collection."""
        out = []
        for name in sorted(os.listdir(self._ingest)):
            if name.startswith("."):
                continue
            d = os.path.join(self._ingest, name)
            key = _read_small(os.path.join(d, "ref"))
            if key is None:
                continue
            try:
                st = os.stat(os.path.join(d, "data"))
                offset, updated = st.st_size, st.st_mtime
            except FileNotFoundError:
                offset, updated = 0, 0.0
            total = _read_small(os.path.join(d, "total"))
            out.append(IngestStatus(key, offset, _read_small(os.path.join(d, "expected")),
                                    int(total) if total else None, updated))
        return out

    def ingest_usage(self) -> int:
        """Bytes on disk under ingest/ (partial downloads, pushes in progress, leftovers)."""
        total = 0
        for dirpath, _, filenames in os.walk(self._ingest):
            for name in filenames:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
                except FileNotFoundError:
                    continue
        return total

    def gc_ingests(self, max_age: float = INGEST_MAX_AGE, now: float | None = None) -> list[str]:
        """Remove ingests not written to for `max_age` seconds whose lock no process holds, and
        what crashed writers left (half-written puts of that age, directories being deleted).
        Returns the keys of the ingests removed."""
        now = time.time() if now is None else now
        removed: list[str] = []
        for name in sorted(os.listdir(self._ingest)):
            path = os.path.join(self._ingest, name)
            if name.startswith(".trash-"):  # renamed away by an abort that died before its rmtree
                import shutil  # lazily: ~13 ms, and only pulls, pushes and prunes get here

                shutil.rmtree(path, ignore_errors=True)
                continue
            if name.startswith(".put-"):
                try:
                    if now - os.lstat(path).st_mtime > max_age:
                        os.unlink(path)
                except FileNotFoundError:
                    pass
                continue
            if name.startswith(".") or now - _last_write(path) <= max_age:
                continue
            key = _read_small(os.path.join(path, "ref")) or name
            if self._remove_unlocked(path):
                removed.append(key)
        return removed

    def _remove_unlocked(self, path: str) -> bool:
        """Delete an ingest directory unless a writer holds its lock (then it is not abandoned)."""
        lock_path = os.path.join(path, "lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except (FileNotFoundError, NotADirectoryError):  # gone meanwhile (committed, aborted)
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            try:
                if os.fstat(fd).st_ino != os.stat(lock_path).st_ino:
                    return False  # the directory was replaced under us
            except FileNotFoundError:
                return False
            # Rename while holding the lock, as Writer.abort does: a writer that opens the key
            # next finds no directory and starts a fresh one.
            trash = os.path.join(self._ingest, f".trash-{os.urandom(16).hex()}")
            os.rename(path, trash)
        finally:
            os.close(fd)
        import shutil  # lazily: ~13 ms, and only pulls, pushes and prunes get here

        shutil.rmtree(trash, ignore_errors=True)
        return True

    def abort(self, key: str, timeout: float = 60.0) -> None:
        """Drop the ingest `key` (waits for a live writer of that key, like `writer`)."""
        self.writer(key, timeout=timeout).abort()

    def _ingest_dir(self, key: str) -> str:
        import hashlib  # lazily: OpenSSL's start-up costs ~6 ms, and a run never hashes

        return os.path.join(self._ingest, hashlib.sha256(key.encode()).hexdigest())


class _DeferredSync:
    """ContentStore.deferred_sync's context manager (not contextlib's: ~5 ms to import)."""

    def __init__(self, store: ContentStore) -> None:
        self.store = store
        self.outer: set[str] | None = None

    def __enter__(self) -> None:
        self.outer = self.store._deferred
        self.store._deferred = set() if self.outer is None else self.outer

    def __exit__(self, *exc: object) -> None:
        if self.outer is None:
            dirs, self.store._deferred = self.store._deferred, None
            if dirs:
                _syncfs(self.store._blobs)


class Writer:
    """One ingest, locked for this process until commit(), abort() or close().

    `offset` is how many bytes are already in: after a crash, reopening the key resumes there.
    As a context manager it closes on exit and keeps the partial data; only abort() deletes it.
    """

    def __init__(self, store: ContentStore, key: str, expected: str | None, size: int | None,
                 timeout: float) -> None:
        self.store = store
        self.key = key
        self.expected = expected
        self.total = size
        self.dir = store._ingest_dir(key)
        self._lock_fd = -1
        self._fd = -1
        self._lock(timeout)
        try:
            self._open()
        except BaseException:
            self._unlock()
            raise

    # -- setup -----------------------------------------------------------------------------------

    def _lock(self, timeout: float) -> None:
        """flock the ingest's lock file; retry if the file we locked was removed meanwhile.

        A finishing writer deletes its ingest dir (lock file included) while holding the lock, so
        a waiter that then gets the lock must check it still holds the file at that path.
        """
        deadline = time.monotonic() + timeout
        lock_path = os.path.join(self.dir, "lock")
        while True:
            try:
                os.mkdir(self.dir, 0o700)
            except FileExistsError:
                pass  # (or it existed a moment ago and a commit is moving it away: then we retry)
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:  # the dir vanished under us (a commit): try again
                continue
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        os.close(fd)
                        raise StateError(
                            f"content store: ingest {self.key!r} is being written by another process "
                            f"(waited {timeout:g}s)") from None
                    time.sleep(0.02)
            try:
                same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._lock_fd = fd
                return
            os.close(fd)

    def _open(self) -> None:
        data = os.path.join(self.dir, "data")
        stored_ref = _read_small(os.path.join(self.dir, "ref"))
        stored_expected = _read_small(os.path.join(self.dir, "expected"))
        stored_total = _read_small(os.path.join(self.dir, "total"))
        try:  # written atomically, but a disk can still rot: unreadable means start over
            if stored_expected is not None:
                parse_digest(stored_expected)
            if stored_total is not None:
                int(stored_total)
            damaged = False
        except (ValueError, InvalidDigest):
            damaged, stored_expected, stored_total = True, None, None
        # Partial data is only resumable for the same promise; anything else starts over.
        stale = stored_ref is not None and (
            damaged
            or stored_ref != self.key
            or (self.expected is not None and stored_expected is not None and stored_expected != self.expected)
            or (self.total is not None and stored_total is not None and int(stored_total) != self.total))
        if stale:
            for name in ("data", "expected", "total"):
                try:
                    os.unlink(os.path.join(self.dir, name))
                except FileNotFoundError:
                    pass
        if self.expected is None and not stale and stored_expected:
            self.expected = stored_expected
        if self.total is None and not stale and stored_total:
            self.total = int(stored_total)
        if stored_ref != self.key:
            _write_small(os.path.join(self.dir, "ref"), self.key)
        if self.expected is not None and (stale or stored_expected != self.expected):
            _write_small(os.path.join(self.dir, "expected"), self.expected)
        if self.total is not None and (stale or stored_total != str(self.total)):
            _write_small(os.path.join(self.dir, "total"), str(self.total))

        algo = self.expected.partition(":")[0] if self.expected else "sha256"
        self._algo = algo
        import hashlib  # lazily: OpenSSL's start-up costs ~6 ms, and a run never hashes

        self._hash = hashlib.new(algo)
        self._fd = os.open(data, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        # Resume: re-hash what a previous writer left (cheaper to reason about than saved state).
        self.offset = 0
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while True:
            n = os.readv(self._fd, [buf])
            if not n:
                break
            self._hash.update(view[:n])
            self.offset += n
        if self.total is not None and self.offset > self.total:
            self.reset()

    # -- the ingest ------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._fd < 0:
            raise StateError(f"content store: ingest {self.key!r} is already closed")

    def reset(self) -> None:
        """Throw away what was received and start again at offset 0."""
        self._check_open()
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        import hashlib  # lazily: OpenSSL's start-up costs ~6 ms, and a run never hashes

        self._hash = hashlib.new(self._algo)
        self.offset = 0

    @property
    def data_path(self) -> str:
        """The file being written (a reader may follow it; it moves into blobs/ at commit)."""
        return os.path.join(self.dir, "data")

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append `data`; refuses to grow past the expected size (a server sending too much)."""
        self._check_open()
        view = memoryview(data).cast("B")
        n = len(view)
        if self.total is not None and self.offset + n > self.total:
            got = self.offset + n
            self.abort()
            raise DigestMismatch(
                f"size mismatch for {self.expected or self.key}: expected {self.total} bytes, got at least {got}")
        self._hash.update(view)
        done = 0
        while done < n:
            done += os.write(self._fd, view[done:])
        self.offset += n
        return n

    def digest(self) -> str:
        """The digest of what has been written so far."""
        return f"{self._algo}:{self._hash.hexdigest()}"

    def commit(self) -> str:
        """fsync, verify against the expected digest and size, then rename into blobs/.

        On a mismatch the ingest is discarded (the data can never become right by appending) and
        DigestMismatch names both digests.  Returns the digest.
        """
        self._check_open()
        actual = self.digest()
        if self.total is not None and self.offset != self.total:
            size, total = self.offset, self.total
            self.abort()
            raise DigestMismatch(
                f"size mismatch for {self.expected or self.key}: expected {total} bytes, got {size}")
        if self.expected is not None and actual != self.expected:
            expected, size = self.expected, self.offset
            self.abort()
            raise DigestMismatch(f"digest mismatch: expected {expected}, got {actual} ({size} bytes)")
        target = self.store.path(actual)
        if os.path.exists(target):
            self.abort()  # another key committed the same content first: nothing to add
            return actual
        if self.store._deferred is None:
            os.fsync(self._fd)  # else the deferred_sync block syncs everything at its end
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.rename(os.path.join(self.dir, "data"), target)
        self.store._sync_dir(os.path.dirname(target))
        self.abort()
        return actual

    def abort(self) -> None:
        """Delete the ingest and release the key."""
        if self._lock_fd < 0:
            return
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        # Rename first, so that the key's path is free the moment we let go of the lock: a writer
        # waiting on our lock file then sees it is gone and locks a fresh one.
        trash = os.path.join(self.store._ingest, f".trash-{os.urandom(16).hex()}")
        try:
            os.rename(self.dir, trash)
        except FileNotFoundError:
            trash = ""
        self._unlock()
        if trash:
            import shutil  # lazily: ~13 ms, and only pulls, pushes and prunes get here

            shutil.rmtree(trash, ignore_errors=True)

    def close(self) -> None:
        """Release the key and keep the partial data for a later resume."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the last fd drops the flock
            self._lock_fd = -1

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

