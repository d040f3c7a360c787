#!/usr/bin/env python3
"""Image pull, push and unpack: budu against skopeo (registry ⇄ oci: dir) and umoci (unpack).

A local docker-registry on 127.0.0.1 serves three images made here: one 200 MB layer of random
bytes, 50 layers of many small files, and one 200 MB layer of text (compressible).  For each,
alternating, N runs:
  budu pull            download + verify + unpack into snapshots (a fresh store each run)
  budu fetch           download + verify only (what skopeo copy does)
  skopeo copy          download + verify into an oci: directory (no unpack)
  budu unpack          the differ alone: apply every stored layer into fresh directories
  umoci unpack         the same layers from that oci: directory into a bundle
  budu push            the pulled image to a fresh, empty registry (blobs as stored)
  skopeo push          the oci: directory to another fresh, empty registry
  budu push gz         an image loaded from a docker-archive (layers uncompressed) to a fresh
                       registry: every layer gzipped on the way (the load is not timed)
  skopeo push gz       skopeo copy of that docker-archive to a fresh registry (gzips too)

    python3 bench/image_pull.py [--runs 3] [--small-layers 50] [--big-mb 200] [--text-mb 200]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

from benchlib import free_port, medians

try:
    import httpx  # noqa: F401  (budu's registry client needs it: use budu's environment)
except ImportError:
    venv = os.environ.get("BUDU_VENV", "/opt/budu/venv") + "/bin/python"
    os.execv(venv, [venv, *sys.argv])
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(files: dict[str, bytes]) -> tuple[bytes, bytes]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in sorted({os.path.dirname(p) for p in files if os.path.dirname(p)}):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return tar_bytes, gzip.compress(tar_bytes, compresslevel=1, mtime=0)


def push_image(host: str, name: str, layers: list[tuple[bytes, bytes]]) -> None:
    from budu.images.registry import Registry

    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [sha(t) for t, _ in layers]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(gz), "size": len(gz)}
                   for _, gz in layers],
    }).encode()
    with Registry(host) as reg:
        reg.upload_blob(name, sha(config), len(config), [config])
        for _, gz in layers:
            reg.upload_blob(name, sha(gz), len(gz), [gz])
        reg.put_manifest(name, "latest", OCI_MANIFEST, manifest)


def text(size: int) -> bytes:
    """Compressible bytes, about as gzip -1 finds source code and logs (~4x)."""
    import random

    rng = random.Random(1)
    words = [bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz_", k=rng.randint(2, 12))) for _ in range(20000)]
    lines, n = [], 0
    while n < size:
        line = b" ".join(rng.choices(words, k=rng.randint(3, 14))) + b"\n"
        lines.append(line)
        n += len(line)
    return b"".join(lines)[:size]


def start_registry(work: str) -> tuple[subprocess.Popen, str]:
    port = free_port("127.0.0.1")
    cfg = os.path.join(work, "registry.yml")
    with open(cfg, "w") as f:
        f.write(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {work}/registry\n"
                f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\nlog:\n  level: error\n")
    proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import urllib.request

    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("docker-registry did not start")


def settle() -> None:
    """Write back what earlier steps left dirty (pushes leave GBs in registries' storage), so
    that it does not land on whichever step runs next: every measurement starts from a clean
    page cache state."""
    os.sync()


def timed(cmd: list[str], **kw) -> float:
    settle()
    t = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} failed: {p.stderr.decode()[-500:]}")
    return time.perf_counter() - t


def budu_unpack(root: str, ref: str, dest: str) -> float:
    """The differ alone, on the blobs a pull stored."""
    from budu.images.layers import apply_layer
    from budu.images.service import Images

    svc = Images(root)
    try:
        img = svc.get(ref)
        layers = svc.manifest(img)["layers"]
        settle()
        t = time.perf_counter()
        for i, desc in enumerate(layers):
            d = os.path.join(dest, str(i))
            os.makedirs(d)
            with svc.content.open(desc["digest"]) as f:
                apply_layer(f, d, desc["mediaType"])
        return time.perf_counter() - t
    finally:
        svc.close()


def budu_fetch(root: str, ref: str) -> float:
    """What skopeo copy does: every blob from the registry into a store, verified, no unpack
    (in-process, so budu's CLI start-up, measured apart, is added)."""
    from budu.images import reference
    from budu.images.registry import Registry
    from budu.images.service import Images

    svc = Images(root)
    r = reference.parse(ref)
    settle()
    t = time.perf_counter()
    try:
        with Registry(r.domain) as reg, svc.content.deferred_sync():
            m = reg.get_manifest(r.path, r.tag)
            svc.content.put(m.data, m.digest)
            manifest = json.loads(m.data)
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda d: svc._fetch(reg, r.path, d, lambda *a: None),
                              [manifest["config"]] + manifest["layers"]))
        return time.perf_counter() - t
    finally:
        svc.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--big-mb", type=int, default=200)
    ap.add_argument("--small-layers", type=int, default=50)
    ap.add_argument("--text-mb", type=int, default=200)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="budu-bench-pull-", dir="/var/tmp")
    reg, host = start_registry(work)
    dests: list[subprocess.Popen] = []
    dest_dirs: list[str] = []

    def empty_registry() -> str:
        """A fresh registry for one push: nothing there to find or mount (skopeo remembers
        where it has seen a blob and would mount it from an earlier run's repository)."""
        d = tempfile.mkdtemp(dir=work)
        proc, h = start_registry(d)
        dests.append(proc)
        dest_dirs.append(d)
        return h

    def push_both(results: dict[str, list[float]], suffix: str, ref: str, name: str, budu_root: str,
                  skopeo_src: str) -> None:
        """`budu push` from budu_root and `skopeo copy` from skopeo_src, each to a registry of its own."""
        target = f"{empty_registry()}/{name}:latest"
        subprocess.run(["budu", "--root", budu_root, "tag", ref, target], check=True)
        results["budu push" + suffix].append(timed(["budu", "--root", budu_root, "push", "-q", target]))
        results["skopeo push" + suffix].append(timed(["skopeo", "--policy", policy, "copy", "--dest-tls-verify=false",
                                                      skopeo_src, f"docker://{empty_registry()}/{name}:latest"]))

    policy = os.path.join(work, "policy.json")
    with open(policy, "w") as f:
        json.dump({"default": [{"type": "insecureAcceptAnything"}]}, f)
    try:
        print(f"making images: one {args.big_mb} MB random layer; {args.small_layers} layers of 200 small files",
              flush=True)
        push_image(host, "bench/big", [layer({"data/random": os.urandom(args.big_mb << 20)})])
        small = [layer({f"d{i}/f{j}": os.urandom(512) for j in range(200)}) for i in range(args.small_layers)]
        push_image(host, "bench/small", small)
        push_image(host, "bench/text", [layer({"data/text": text(args.text_mb << 20)})])
        startup = statistics.median(timed(["budu", "--version"]) for _ in range(5))
        for name in ("bench/big", "bench/small", "bench/text"):
            ref = f"{host}/{name}:latest"
            results: dict[str, list[float]] = {k: [] for k in ("budu pull", "budu fetch", "skopeo copy", "budu unpack",
                                                                "umoci unpack", "budu push", "skopeo push",
                                                                "budu push gz", "skopeo push gz")}
            for i in range(args.runs):
                run_dir = os.path.join(work, f"run-{name.replace('/', '-')}-{i}")
                os.makedirs(run_dir)
                results["budu pull"].append(timed(["budu", "--root", f"{run_dir}/budu", "pull", "-q", ref]))
                results["budu fetch"].append(budu_fetch(f"{run_dir}/fetch", ref) + startup)
                results["skopeo copy"].append(timed(["skopeo", "--policy", policy, "copy", "--src-tls-verify=false",
                                                     f"docker://{ref}", f"oci:{run_dir}/oci:latest"]))
                results["budu unpack"].append(budu_unpack(f"{run_dir}/budu", ref, f"{run_dir}/unpacked"))
                results["umoci unpack"].append(timed(["umoci", "unpack", "--image", f"{run_dir}/oci:latest",
                                                      f"{run_dir}/bundle"]))
                push_both(results, "", ref, name, f"{run_dir}/budu", f"oci:{run_dir}/oci:latest")
                # uncompressed layers, gzipped by whoever pushes them
                archive = f"{run_dir}/image.tar"
                subprocess.run(["budu", "--root", f"{run_dir}/budu", "save", "-o", archive, ref], check=True)
                subprocess.run(["budu", "--root", f"{run_dir}/loaded", "load", "-q", "-i", archive], check=True,
                               stdout=subprocess.DEVNULL)
                push_both(results, " gz", ref, name, f"{run_dir}/loaded", f"docker-archive:{archive}")
                shutil.rmtree(run_dir, ignore_errors=True)
                for proc in dests:  # the pushes' registries and what they stored
                    proc.kill()
                    proc.wait()
                dests.clear()
                for d in dest_dirs:
                    shutil.rmtree(d, ignore_errors=True)
                dest_dirs.clear()
            med = medians(results)
            size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(f"{work}/registry") for f in fs)
            print(f"\n{name} (median of {args.runs}; registry holds {size / 1e6:.0f} MB)")
            for k, v in med.items():
                print(f"  {k:13s} {v:7.2f} s")
            print(f"  ratio budu fetch / skopeo copy     = {med['budu fetch'] / med['skopeo copy']:.2f}"
                  "   (the same work: download and verify every blob)")
            print(f"  ratio budu pull / (skopeo copy + umoci unpack) = "
                  f"{med['budu pull'] / (med['skopeo copy'] + med['umoci unpack']):.2f}   (a pull that leaves a usable rootfs)")
            print(f"  ratio budu unpack / umoci unpack   = {med['budu unpack'] / med['umoci unpack']:.2f}")
            print(f"  ratio budu push / skopeo push      = {med['budu push'] / med['skopeo push']:.2f}")
            print(f"  ratio budu push gz / skopeo push gz = {med['budu push gz'] / med['skopeo push gz']:.2f}"
                  "   (uncompressed layers, gzipped on the way)")
    finally:
        for r in (reg, *dests):
            r.kill()
            r.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
