"""budu-runtime compiles a seccomp profile once per root and loads the kept BPF program after that.

What a user sees must not change: the filter from the cache denies what the profile denies, a
damaged cache entry is compiled again, and a bad profile is refused with the field that is wrong.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


DENY_MKDIR = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
}
DENY_CHDIR = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["chdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
}
SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


def probe(rt, bundle, script: str) -> str:
    bundle.sh(script)
    p = rt.run(bundle)
    assert p.returncode == 0, f"exit {p.returncode}: {p.stderr.decode()}"
    return p.stdout.decode()


def cache_entries(root: str) -> list[str]:
    d = os.path.join(root, ".seccomp")
    return sorted(n for n in os.listdir(d) if n != "libseccomp") if os.path.isdir(d) else []


def prepare_in_fresh_process(root: str, profile: dict) -> dict:
    """seccomp_filter.prepare in a new interpreter: what it returned and whether libseccomp got loaded."""
    code = (
        "import json, sys\n"
        "from budu.runtime import seccomp_filter\n"
        "prog, flags = seccomp_filter.prepare(sys.argv[1], json.loads(sys.argv[2]))\n"
        "maps = open('/proc/self/maps').read()\n"
        "print(json.dumps({'prog': prog.hex(), 'flags': flags, 'libseccomp': 'libseccomp' in maps,"
        " 'ctypes': 'ctypes' in sys.modules}))\n"
    )
    p = subprocess.run([sys.executable, "-c", code, root, json.dumps(profile)], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=SRC), timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_second_start_loads_the_kept_program_and_it_still_denies(budu, bundle):
    bundle.config["linux"]["seccomp"] = DENY_MKDIR
    bundle.write()
    first = probe(budu, bundle, "mkdir /tmp/d 2>&1; echo rc=$?")
    assert "Permission denied" in first and "rc=1" in first
    entries = cache_entries(budu.root)
    assert len(entries) == 1
    with open(os.path.join(budu.root, ".seccomp", entries[0]), "rb") as f:
        kept = f.read()
    second = probe(budu, bundle, "mkdir /tmp/d 2>&1; echo rc=$?; mkdir -p /tmp 2>&1; echo done")
    assert "Permission denied" in second and "rc=1" in second
    assert cache_entries(budu.root) == entries  # the same program, not a second one
    with open(os.path.join(budu.root, ".seccomp", entries[0]), "rb") as f:
        assert f.read() == kept
    # `budu-runtime list` does not mistake the cache for a container
    assert budu.ok("list", "-q").stdout.decode().split() == []


def test_a_hit_never_loads_libseccomp(tmp_path):
    root = str(tmp_path / "root")
    miss = prepare_in_fresh_process(root, DENY_MKDIR)
    assert miss["libseccomp"] is True  # compiled: libseccomp was needed
    hit = prepare_in_fresh_process(root, DENY_MKDIR)
    assert hit["libseccomp"] is False and hit["ctypes"] is False
    assert (hit["prog"], hit["flags"]) == (miss["prog"], miss["flags"])
    assert len(hit["prog"]) % 16 == 0 and hit["prog"]  # whole struct sock_filter entries (8 bytes, hex)
    other = prepare_in_fresh_process(root, DENY_CHDIR)  # another profile: another program
    assert other["libseccomp"] is True and other["prog"] != miss["prog"]
    assert len(cache_entries(root)) == 2


def test_a_damaged_entry_is_compiled_again(budu, bundle):
    bundle.config["linux"]["seccomp"] = DENY_MKDIR
    bundle.write()
    probe(budu, bundle, "true")
    (entry,) = cache_entries(budu.root)
    path = os.path.join(budu.root, ".seccomp", entry)
    with open(path, "rb") as f:
        good = f.read()
    with open(path, "wb") as f:
        f.write(good[: len(good) - 3])  # cut in the middle of an instruction
    out = probe(budu, bundle, "mkdir /tmp/d 2>&1; echo rc=$?")
    assert "Permission denied" in out and "rc=1" in out
    with open(path, "rb") as f:
        assert f.read() == good


def test_an_updated_libseccomp_is_a_miss(tmp_path):
    root = str(tmp_path / "root")
    prepare_in_fresh_process(root, DENY_MKDIR)
    lib_file = os.path.join(root, ".seccomp", "libseccomp")
    with open(lib_file) as f:
        lib = f.read()
    # the recorded library is another file now (as after a package upgrade): its programs are not trusted
    fake = tmp_path / "libseccomp.so.2"
    fake.write_bytes(b"not the library that compiled them")
    with open(lib_file, "w") as f:
        f.write(str(fake))
    again = prepare_in_fresh_process(root, DENY_MKDIR)
    assert again["libseccomp"] is True
    with open(lib_file) as f:
        assert f.read() == lib  # the library that compiled the new program


def test_a_bad_profile_is_refused_before_anything_is_made(budu, bundle):
    bundle.config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                         "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOPE"}]}
    bundle.write()
    p = budu.run(bundle)
    err = p.stderr.decode()
    assert p.returncode != 0 and "linux.seccomp.syscalls[0].action" in err and "Traceback" not in err
    assert cache_entries(budu.root) == []
    assert budu.ok("list", "-q").stdout.decode().split() == []


def test_the_cache_name_is_not_a_container_id(budu, bundle):
    p = budu.cmd("create", "--bundle", bundle.path, ".seccomp")
    assert p.returncode != 0 and "reserved" in p.stderr.decode()
