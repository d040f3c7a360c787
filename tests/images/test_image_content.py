"""The content store: verified commits, resumable ingests, and several processes sharing one root.

Processes that crash or compete are real processes (subprocess, SIGKILL), not mocks: what is
tested is what the kernel's flock and rename guarantee.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from budu.errors import BuduError, NotFound, StateError
from budu.images.content import ContentStore, DigestMismatch
from budu.images.reference import InvalidDigest


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_files(root) -> list[str]:
    out = []
    for dirpath, _, files in os.walk(os.path.join(root, "blobs")):
        out += [os.path.join(dirpath, f) for f in files]
    return out


def child(script: str, *args: str, **kw) -> subprocess.Popen:
    """A fresh interpreter running `script` (argv holds args), stdout piped for handshakes."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_put_read_round_trip(tmp_path):
    cs = ContentStore(str(tmp_path))
    data = b"hello, blobs\n"
    d = cs.put(data)
    assert d == sha(data)
    assert cs.exists(d)
    assert cs.read(d) == data
    assert cs.size(d) == len(data)
    assert cs.path(d) == str(tmp_path / "blobs" / "sha256" / d.split(":")[1])
    with cs.open(d) as f:
        assert f.read() == data
    assert cs.put(data) == d  # idempotent
    assert cs.ingests() == []
    assert os.listdir(tmp_path / "ingest") == []


def test_put_with_expected(tmp_path):
    cs = ContentStore(str(tmp_path))
    assert cs.put(b"x", expected=sha(b"x")) == sha(b"x")
    with pytest.raises(DigestMismatch, match="expected sha256:"):
        cs.put(b"y", expected=sha(b"z"))
    assert not cs.exists(sha(b"y"))


def test_sha512_blob(tmp_path):
    cs = ContentStore(str(tmp_path))
    data = b"other algorithm"
    d = "sha512:" + hashlib.sha512(data).hexdigest()
    assert cs.put(data, expected=d) == d
    assert cs.path(d).endswith(f"blobs/sha512/{d[7:]}")
    assert dict(cs.walk()) == {d: len(data)}


def test_streaming_writer(tmp_path):
    cs = ContentStore(str(tmp_path))
    data = os.urandom(3 << 20) + b"tail"
    with cs.writer("layer-1", expected=sha(data), size=len(data)) as w:
        assert w.offset == 0
        for i in range(0, len(data), 100_000):
            w.write(data[i:i + 100_000])
        assert w.offset == len(data)
        assert w.digest() == sha(data)
        assert w.commit() == sha(data)
    assert cs.read(sha(data)) == data
    assert cs.ingests() == []


def test_writer_without_expected_digest(tmp_path):
    cs = ContentStore(str(tmp_path))
    with cs.writer("unknown") as w:
        w.write(b"abc")
        w.write(memoryview(b"def"))
        d = w.commit()
    assert d == sha(b"abcdef") and cs.exists(d)


def test_digest_mismatch_stores_nothing(tmp_path):
    cs = ContentStore(str(tmp_path))
    good, bad = b"what the manifest promised", b"what the server sent"
    w = cs.writer("k", expected=sha(good))
    w.write(bad)
    with pytest.raises(DigestMismatch) as e:
        w.commit()
    msg = str(e.value)
    assert sha(good) in msg and sha(bad) in msg and "\n" not in msg
    assert blob_files(tmp_path) == []
    assert cs.ingests() == []  # discarded: no appending can make it right
    assert not cs.exists(sha(good)) and not cs.exists(sha(bad))
    # The key is free again.
    with cs.writer("k", expected=sha(good)) as w:
        w.write(good)
        w.commit()
    assert cs.exists(sha(good))


def test_size_mismatch_short(tmp_path):
    cs = ContentStore(str(tmp_path))
    data = b"0123456789"
    w = cs.writer("k", expected=sha(data), size=len(data) + 1)
    w.write(data)
    with pytest.raises(DigestMismatch, match="size mismatch.*expected 11 bytes, got 10"):
        w.commit()
    assert blob_files(tmp_path) == [] and cs.ingests() == []


def test_size_mismatch_too_long_fails_early(tmp_path):
    cs = ContentStore(str(tmp_path))
    w = cs.writer("k", size=4)
    w.write(b"abc")
    with pytest.raises(DigestMismatch, match="expected 4 bytes, got at least 6"):
        w.write(b"def")
    assert blob_files(tmp_path) == [] and cs.ingests() == []


def test_mismatch_is_a_budu_error():
    assert issubclass(DigestMismatch, BuduError)


def test_resume_in_same_process(tmp_path):
    cs = ContentStore(str(tmp_path))
    data = os.urandom(200_000)
    w = cs.writer("resumable", expected=sha(data), size=len(data))
    w.write(data[:70_000])
    w.close()
    [st] = cs.ingests()
    assert (st.key, st.offset, st.expected, st.total) == ("resumable", 70_000, sha(data), len(data))
    w = cs.writer("resumable")  # expected and size come back from the ingest
    assert w.offset == 70_000 and w.expected == sha(data) and w.total == len(data)
    w.write(data[w.offset:])
    assert w.commit() == sha(data)


def test_context_manager_keeps_partial_data_on_error(tmp_path):
    cs = ContentStore(str(tmp_path))
    with pytest.raises(ConnectionError):
        with cs.writer("dl") as w:
            w.write(b"part one")
            raise ConnectionError("dropped")
    assert [s.offset for s in cs.ingests()] == [8]
    with cs.writer("dl") as w:
        assert w.offset == 8
        w.abort()
    assert cs.ingests() == []


def test_resume_after_sigkill(tmp_path):
    """A writer killed mid-download leaves its bytes; the next writer continues from there."""
    data = os.urandom(5 << 20)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    root = str(tmp_path / "store")
    p = child("""
        import sys, time
        from budu.images.content import ContentStore
        root, src, digest = sys.argv[1:4]
        data = open(src, "rb").read()
        w = ContentStore(root).writer("blob-dl", expected=digest, size=len(data))
        w.write(data[:3_000_000])
        print("written", flush=True)
        time.sleep(60)
    """, root, str(src), sha(data))
    try:
        assert p.stdout.readline().strip() == b"written", p.stderr.read()
        p.send_signal(signal.SIGKILL)
        assert p.wait(10) == -signal.SIGKILL
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    cs = ContentStore(root)
    assert not cs.exists(sha(data))
    w = cs.writer("blob-dl", expected=sha(data), size=len(data), timeout=5)  # the dead lock is gone
    assert w.offset == 3_000_000
    w.write(data[w.offset:])
    assert w.commit() == sha(data)
    assert cs.read(sha(data)) == data


def test_resumed_data_that_was_corrupted_is_caught(tmp_path):
    cs = ContentStore(str(tmp_path))
    data = b"A" * 1000
    w = cs.writer("k", expected=sha(data))
    w.write(data[:500])
    w.close()
    [ingest] = [d for d in os.listdir(tmp_path / "ingest")]
    with open(tmp_path / "ingest" / ingest / "data", "r+b") as f:  # bit rot while we were away
        f.write(b"B")
    w = cs.writer("k", expected=sha(data))
    w.write(data[w.offset:])
    with pytest.raises(DigestMismatch):
        w.commit()
    assert blob_files(tmp_path) == []


def test_damaged_ingest_metadata_starts_over(tmp_path):
    cs = ContentStore(str(tmp_path))
    w = cs.writer("k", expected=sha(b"data"), size=4)
    w.write(b"da")
    w.close()
    [ingest] = os.listdir(tmp_path / "ingest")
    (tmp_path / "ingest" / ingest / "expected").write_text("sha256:rotten")
    (tmp_path / "ingest" / ingest / "total").write_text("four")
    w = cs.writer("k")
    assert w.offset == 0 and w.expected is None
    w.write(b"data")
    assert w.commit() == sha(b"data")


def test_new_expectation_restarts_stale_ingest(tmp_path):
    cs = ContentStore(str(tmp_path))
    w = cs.writer("k", expected=sha(b"old"))
    w.write(b"ol")
    w.close()
    w = cs.writer("k", expected=sha(b"new"))
    assert w.offset == 0  # bytes for another blob are not resumed
    w.write(b"new")
    assert w.commit() == sha(b"new")


def test_same_key_second_writer_times_out(tmp_path):
    root = str(tmp_path)
    p = child("""
        import sys, time
        from budu.images.content import ContentStore
        w = ContentStore(sys.argv[1]).writer("shared-key")
        w.write(b"first")
        print("locked", flush=True)
        sys.stdin.readline()
        w.write(b" writer")
        w.commit()
        print("done", flush=True)
    """, root, stdin=subprocess.PIPE)
    try:
        assert p.stdout.readline().strip() == b"locked", p.stderr.read()
        cs = ContentStore(root)
        t0 = time.monotonic()
        with pytest.raises(StateError, match="being written by another process"):
            cs.writer("shared-key", timeout=0.3)
        assert time.monotonic() - t0 >= 0.3
        assert cs.put(b"other keys do not wait")  # the lock is per key
        # A waiting writer gets the key once the first commits, and starts a fresh ingest.
        p.stdin.write(b"go\n")
        p.stdin.flush()
        w = cs.writer("shared-key", timeout=20)
        assert p.stdout.readline().strip() == b"done"
        assert w.offset == 0
        w.write(b"first writer")
        assert w.commit() == sha(b"first writer")  # already there: fine
        assert cs.read(sha(b"first writer")) == b"first writer"
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()


def test_same_key_many_processes(tmp_path):
    """Eight processes race on one key, each resuming whatever the last one left; all succeed."""
    data = os.urandom(1 << 20)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    root = str(tmp_path / "store")
    script = """
        import sys
        from budu.images.content import ContentStore
        root, src, digest = sys.argv[1:4]
        data = open(src, "rb").read()
        cs = ContentStore(root)
        with cs.writer("race", expected=digest, size=len(data), timeout=60) as w:
            for i in range(w.offset, len(data), 65536):
                w.write(data[i:i + 65536])
            print(w.commit())
    """
    procs = [child(script, root, str(src), sha(data)) for _ in range(8)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
        assert out.decode().strip() == sha(data)
    cs = ContentStore(root)
    assert cs.read(sha(data)) == data
    assert cs.ingests() == []


def test_different_keys_same_digest_concurrently(tmp_path):
    data = os.urandom(2 << 20)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    root = str(tmp_path / "store")
    script = """
        import sys, time
        from budu.images.content import ContentStore
        root, src, digest, key = sys.argv[1:5]
        data = open(src, "rb").read()
        w = ContentStore(root).writer(key, expected=digest)
        for i in range(0, len(data), 32768):
            w.write(data[i:i + 32768])
        print(w.commit())
    """
    procs = [child(script, root, str(src), sha(data), f"key-{i}") for i in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
        assert out.decode().strip() == sha(data)
    cs = ContentStore(root)
    assert list(cs.walk()) == [(sha(data), len(data))]
    assert cs.ingests() == []


def test_blob_never_visible_before_commit(tmp_path):
    cs = ContentStore(str(tmp_path))
    data = b"x" * 1000
    w = cs.writer("k", expected=sha(data))
    w.write(data)
    assert not cs.exists(sha(data))
    assert list(cs.walk()) == []
    w.commit()
    assert cs.exists(sha(data))


def test_delete_and_not_found(tmp_path):
    cs = ContentStore(str(tmp_path))
    d = cs.put(b"gone soon")
    cs.delete(d)
    assert not cs.exists(d)
    for op in (cs.delete, cs.read, cs.size, cs.open):
        with pytest.raises(NotFound, match=d):
            op(d)


def test_walk(tmp_path):
    cs = ContentStore(str(tmp_path))
    blobs = {cs.put(bytes([i]) * i): i for i in range(1, 6)}
    w = cs.writer("unfinished")
    w.write(b"not a blob yet")
    w.close()
    (tmp_path / "blobs" / "sha256" / "not-a-digest").write_bytes(b"")
    assert list(cs.walk()) == sorted(blobs.items())


def test_ingests_and_abort(tmp_path):
    cs = ContentStore(str(tmp_path))
    for key in ("a/with/slashes", "b"):
        w = cs.writer(key, size=100)
        w.write(b"12345")
        w.close()
    assert [(s.key, s.offset, s.total) for s in cs.ingests()] == sorted(
        [("a/with/slashes", 5, 100), ("b", 5, 100)], key=lambda s: hashlib.sha256(s[0].encode()).hexdigest())
    cs.abort("b")
    assert [s.key for s in cs.ingests()] == ["a/with/slashes"]


@pytest.mark.parametrize("bad", ["sha256:../../etc/passwd", "sha256:" + "A" * 64, "md5:" + "0" * 32, "", "sha256"])
def test_bad_digests_never_reach_a_path(tmp_path, bad):
    cs = ContentStore(str(tmp_path))
    with pytest.raises(InvalidDigest):
        cs.path(bad)
    with pytest.raises(InvalidDigest):
        cs.exists(bad)
    with pytest.raises(InvalidDigest):
        cs.writer("k", expected=bad)


def test_writer_misuse(tmp_path):
    cs = ContentStore(str(tmp_path))
    with pytest.raises(StateError):
        cs.writer("")
    w = cs.writer("k")
    w.write(b"x")
    w.commit()
    with pytest.raises(StateError, match="already closed"):
        w.write(b"y")


def _age(cs: ContentStore, key: str, seconds: float) -> None:
    """Make an ingest look untouched for `seconds` (every file in it, and the directory)."""
    d = cs._ingest_dir(key)
    then = time.time() - seconds
    for name in os.listdir(d):
        os.utime(os.path.join(d, name), (then, then))
    os.utime(d, (then, then))


def test_abandoned_ingests_are_collected_after_a_day(tmp_path):
    cs = ContentStore(str(tmp_path))
    for key in ("old", "fresh"):
        w = cs.writer(key, expected=sha(b"never finished"))
        w.write(b"never")
        w.close()  # kept for a resume that never comes
    _age(cs, "old", 25 * 3600)
    _age(cs, "fresh", 23 * 3600)
    # leftovers of crashed writers: a put's temporary file of that age, a directory being deleted
    stale_put = os.path.join(str(tmp_path), "ingest", ".put-" + "0" * 32)
    with open(stale_put, "wb") as f:
        f.write(b"x" * 100)
    os.utime(stale_put, (time.time() - 25 * 3600,) * 2)
    os.makedirs(os.path.join(str(tmp_path), "ingest", ".trash-" + "1" * 32, "sub"))
    usage = cs.ingest_usage()
    assert usage > 0
    assert cs.gc_ingests() == ["old"]
    assert [i.key for i in cs.ingests()] == ["fresh"]
    assert sorted(os.listdir(os.path.join(str(tmp_path), "ingest"))) == [os.path.basename(cs._ingest_dir("fresh"))]
    assert cs.ingest_usage() < usage
    # the one left is still resumable where it stopped
    w = cs.writer("fresh", expected=sha(b"never finished"))
    assert w.offset == len(b"never")
    w.write(b" finished")
    assert w.commit() == sha(b"never finished")


def test_an_old_ingest_held_by_a_live_writer_is_not_collected(tmp_path):
    root = str(tmp_path)
    p = child("""
        import sys
        from budu.images.content import ContentStore
        w = ContentStore(sys.argv[1]).writer("slow-download")
        w.write(b"part")
        print("locked", flush=True)
        sys.stdin.readline()
        w.write(b" two")
        print(w.commit(), flush=True)
    """, root, stdin=subprocess.PIPE)
    try:
        assert p.stdout.readline().strip() == b"locked", p.stderr.read()
        cs = ContentStore(root)
        _age(cs, "slow-download", 48 * 3600)  # a stalled writer, but alive: its lock says so
        assert cs.gc_ingests() == []
        p.stdin.write(b"go\n")
        p.stdin.flush()
        assert p.stdout.readline().strip().decode() == sha(b"part two")
        assert cs.read(sha(b"part two")) == b"part two"
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
