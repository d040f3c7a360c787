"""The registry client against real registries (docker-registry), with skopeo as the referee.

A small proxy written here stands between client and registry where a test needs the network to
misbehave (5xx answers, a connection dropped mid-blob, a Range header lost, a body altered) or needs
to see which requests the client made.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from budu.errors import BuduError, NotFound
from budu.images.hosts import Endpoint, RegistryConfig
from budu.images.registry import (
    OCI_MANIFEST,
    Manifest,
    Registry,
    RegistryError,
    Unauthorized,
    _parse_challenges,
)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def repo(prefix: str = "test") -> str:
    """A fresh repository name, so tests sharing a registry never see each other's blobs."""
    return f"{prefix}/r{uuid.uuid4().hex[:10]}"


def push(reg: Registry, name: str, tag: str, image, **kw) -> str:
    for digest, data in image.blobs.items():
        reg.upload_blob(name, digest, len(data), [data], **kw)
    return reg.put_manifest(name, tag, OCI_MANIFEST, image.manifest)


@pytest.fixture
def small_image(kit):
    """Makes a one-layer image whose bytes no other test has."""

    def make():
        return kit.make_image({"etc/hello.txt": f"hello {uuid.uuid4()}\n".encode()}, cmd=["cat", "/etc/hello.txt"])

    return make


@pytest.fixture
def client(registry):
    with Registry(registry.host, backoff=0.01) as reg:
        yield reg


# -- a misbehaving proxy ---------------------------------------------------------------------------

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te",
        "upgrade", "server", "date"}


@dataclass
class Rule:
    method: str
    path: re.Pattern
    action: str  # "503", "drop" (half the body, then hang up), "strip-range", "mutate"
    times: int


@dataclass
class Seen:
    method: str
    path: str
    status: int
    range: str


class Proxy:
    """Forwards to a registry (keeping the Host header, so the Locations it sends point here)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.rules: list[Rule] = []
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                proxy._handle(self)

            def handle_one_request(self) -> None:
                # A TLS ClientHello (an insecure registry is tried over HTTPS first) is not a
                # request line: hang up at once, as Go's server does, instead of waiting for a
                # newline that may never come.
                if self.rfile.peek(1)[:1] == b"\x16":
                    self.close_connection = True
                    return
                super().handle_one_request()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def on(self, method: str, path: str, action: str, times: int = 1) -> None:
        self.rules.append(Rule(method, re.compile(path), action, times))

    def _rule(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.times > 0 and rule.method == method and rule.path.search(path):
                    rule.times -= 1
                    return rule
        return None

    def requests(self, method: str, path: str = "") -> list[Seen]:
        return [s for s in self.seen if s.method == method and path in s.path]

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        method, path = h.command, h.path
        assert "chunked" not in h.headers.get("Transfer-Encoding", ""), "client sent a chunked body"
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        rule = self._rule(method, path)
        action = rule.action if rule else ""
        if action == "503":
            data = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": "service unavailable"}]}).encode()
            # recorded before answering: the client may look at `seen` the moment it has the answer
            self.seen.append(Seen(method, path, 503, h.headers.get("Range", "")))
            h.send_response(503)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
            return
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP}
        if action == "strip-range":
            headers = {k: v for k, v in headers.items() if k.lower() != "range"}
        conn = http.client.HTTPConnection(self.upstream, timeout=30)
        try:
            conn.request(method, path, body=body if method in ("POST", "PUT", "PATCH") else None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            resp_headers = resp.getheaders()
        finally:
            conn.close()
        if action == "mutate":
            data += b"\n"
        self.seen.append(Seen(method, path, resp.status, h.headers.get("Range", "")))
        h.send_response(resp.status)
        for k, v in resp_headers:
            if k.lower() not in _HOP:
                h.send_header(k, v)
        if method == "HEAD":
            h.send_header("Content-Length", resp.getheader("Content-Length", "0"))
        else:
            h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if action == "drop":
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        if method != "HEAD":
            h.wfile.write(data)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def proxy(registry):
    p = Proxy(registry.host)
    yield p
    p.stop()


@pytest.fixture
def proxied(proxy):
    with Registry(proxy.host, backoff=0.01) as reg:
        yield reg


# -- basics ----------------------------------------------------------------------------------------


def test_hosts_and_schemes():
    """docker's rules: HTTPS everywhere; unverified HTTPS then HTTP for 127.0.0.0/8 (localhost
    included) and registries named insecure; [::1] is not in 127.0.0.0/8, so it is secure."""
    config = RegistryConfig()  # no daemon.json: docker's defaults
    secure, insecure = [Endpoint("https", verify=True)], [Endpoint("https", verify=False), Endpoint("http")]
    assert Registry("docker.io", config=config).base_url == "https://registry-1.docker.io"
    assert Registry("docker.io", config=config).endpoints == secure
    assert Registry("localhost:5000", config=config).endpoints == insecure
    assert Registry("127.0.0.5:5000", config=config).endpoints == insecure
    assert Registry("[::1]:5000", config=config).endpoints == secure
    assert Registry("::1", config=config).base_url == "https://[::1]"
    assert Registry("ghcr.io", config=config).endpoints == secure
    assert Registry("registry.example:5000", config=config, insecure=True).endpoints == insecure
    assert Registry("localhost:5000", config=config, insecure=False).endpoints == secure
    with pytest.raises(BuduError, match="invalid registry host"):
        Registry("a/b")


def test_a_plain_http_registry_on_localhost_is_reached_over_http(registry):
    """HTTPS is tried first (docker does), the registry answers TLS with garbage, HTTP works."""
    with Registry(registry.host) as reg:
        assert reg.base_url.startswith("https://")
        reg.ping()
        assert reg.base_url == f"http://{registry.host}"


def test_parse_challenges():
    [c] = _parse_challenges(['Bearer realm="https://auth.example/token",service="reg.example",'
                             'scope="repository:library/busybox:pull,push"'])
    assert c.scheme == "bearer"
    assert c.params == {"realm": "https://auth.example/token", "service": "reg.example",
                        "scope": "repository:library/busybox:pull,push"}
    basic, bearer = _parse_challenges(['Basic realm="x, y", Bearer realm="https://a/t",service=s'])
    assert (basic.scheme, basic.params) == ("basic", {"realm": "x, y"})
    assert (bearer.scheme, bearer.params) == ("bearer", {"realm": "https://a/t", "service": "s"})


def test_ping(client):
    client.ping()
    client.login()  # no auth wanted: nothing to check


def test_connection_refused():
    port = free_port()
    with Registry(f"127.0.0.1:{port}", backoff=0.01) as reg:
        with pytest.raises(RegistryError) as e:
            reg.get_manifest("test/x", "latest")
    assert str(e.value) == f"cannot reach registry 127.0.0.1:{port}: connection refused"


def test_invalid_names(client):
    with pytest.raises(BuduError, match="invalid repository name"):
        client.get_manifest("Test/UPPER", "latest")
    with pytest.raises(BuduError, match="invalid tag"):
        client.get_manifest("test/x", "bad tag")
    with pytest.raises(BuduError, match="invalid digest"):
        client.get_blob("test/x", "sha256:1234")


# -- manifests -------------------------------------------------------------------------------------


def test_manifest_round_trip(client, registry, small_image):
    name, image = repo(), small_image()
    digest = push(client, name, "v1", image)
    assert digest == image.digest == sha256(image.manifest)

    m = client.get_manifest(name, "v1")
    assert m == Manifest(OCI_MANIFEST, image.manifest, image.digest)
    info = client.head_manifest(name, "v1")
    assert (info.media_type, info.digest, info.size) == (OCI_MANIFEST, image.digest, len(image.manifest))
    assert client.get_manifest(name, image.digest) == m  # by digest: verified on the bytes
    assert client.head_manifest(name, "v2") is None
    assert client.tags(name) == ["v1"]
    assert name in client.catalog()

    # the same bytes under a second tag, and by digest
    assert client.put_manifest(name, "v2", OCI_MANIFEST, image.manifest) == image.digest
    assert client.put_manifest(name, image.digest, OCI_MANIFEST, image.manifest) == image.digest
    assert sorted(client.tags(name)) == ["v1", "v2"]

    client.delete_manifest(name, image.digest)
    assert client.head_manifest(name, "v1") is None
    with pytest.raises(NotFound):
        client.delete_manifest(name, image.digest)


def test_manifest_not_found(client, registry):
    name = repo()
    with pytest.raises(NotFound) as e:
        client.get_manifest(name, "latest")
    assert str(e.value) == f"manifest for {registry.host}/{name}:latest not found"
    digest = sha256(b"nothing")
    with pytest.raises(NotFound) as e:
        client.get_manifest(name, digest)
    assert str(e.value) == f"manifest for {registry.host}/{name}@{digest} not found"
    with pytest.raises(NotFound, match=f"repository {registry.host}/{name} not found"):
        client.tags(name)


def test_manifest_with_missing_blobs_is_refused(client, small_image):
    image = small_image()
    with pytest.raises(RegistryError) as e:
        client.put_manifest(repo(), "v1", OCI_MANIFEST, image.manifest)
    msg = str(e.value)
    assert msg.startswith("cannot push manifest ") and "MANIFEST_BLOB_UNKNOWN" in msg
    assert "\n" not in msg


def test_manifest_digest_is_verified(proxied, proxy, client, small_image):
    name, image = repo(), small_image()
    push(client, name, "v1", image)
    proxy.on("GET", f"/manifests/{image.digest}", "mutate")
    with pytest.raises(RegistryError, match="does not match its digest"):
        proxied.get_manifest(name, image.digest)
    assert proxied.get_manifest(name, image.digest).data == image.manifest
    with pytest.raises(RegistryError, match="bytes have digest"):
        client.put_manifest(name, sha256(b"other"), OCI_MANIFEST, image.manifest)


# -- blobs -----------------------------------------------------------------------------------------


def test_blob_upload_monolithic_and_download(client):
    name, data = repo(), os.urandom(300_000)
    digest = sha256(data)
    assert client.blob_exists(name, digest) is None
    pieces = (data[i:i + 70_000] for i in range(0, len(data), 70_000))  # a one-shot generator
    assert client.upload_blob(name, digest, len(data), pieces) == "uploaded"
    assert client.blob_exists(name, digest) == len(data)
    assert client.upload_blob(name, digest, len(data), [data]) == "exists"
    with client.get_blob(name, digest) as stream:
        assert b"".join(stream) == data
        assert stream.size == len(data)


def test_blob_upload_chunked(proxied, proxy):
    name, data = repo(), os.urandom(200_000)
    digest = sha256(data)
    assert proxied.upload_blob(name, digest, len(data), [data[:1000], data[1000:]], chunk_size=64 * 1024) == "uploaded"
    patches = proxy.requests("PATCH", f"/v2/{name}/blobs/uploads/")
    assert [p.status for p in patches] == [202, 202, 202, 202]  # 3 x 64 KiB + the rest
    [put] = proxy.requests("PUT", f"/v2/{name}/blobs/uploads/")
    assert put.status == 201 and f"digest={digest.replace(':', '%3A')}" in put.path
    assert "_state=" in put.path  # the registry's own query string was kept
    assert b"".join(proxied.get_blob(name, digest)) == data


def test_blob_upload_wrong_size_or_digest(client):
    name, data = repo(), os.urandom(5000)
    with pytest.raises(RegistryError, match="not the 6000 announced"):
        client.upload_blob(name, sha256(data), 6000, [data])
    with pytest.raises(RegistryError, match="more than the 4000 bytes"):
        client.upload_blob(name, sha256(data), 4000, [data], chunk_size=1000)
    with pytest.raises(RegistryError, match="DIGEST_INVALID|digest did not match"):
        client.upload_blob(name, sha256(b"something else"), len(data), [data])
    assert client.blob_exists(name, sha256(data)) is None


def test_blob_not_found(client, registry):
    name, digest = repo(), sha256(b"absent")
    with pytest.raises(NotFound) as e:
        client.get_blob(name, digest)
    assert str(e.value) == f"blob {digest} not found in {registry.host}/{name}"


def test_blob_download_from_offset(client):
    name, data = repo(), os.urandom(250_000)
    digest = sha256(data)
    client.upload_blob(name, digest, len(data), [data])
    for offset in (1, 12_345, len(data) - 1):
        stream = client.get_blob(name, digest, offset)
        assert b"".join(stream) == data[offset:]
        assert stream.size == len(data)
    assert b"".join(client.get_blob(name, digest, len(data))) == b""


def test_blob_download_when_range_is_ignored(proxied, proxy, client):
    name, data = repo(), os.urandom(100_000)
    digest = sha256(data)
    client.upload_blob(name, digest, len(data), [data])
    proxy.on("GET", f"/blobs/{digest}", "strip-range")
    assert b"".join(proxied.get_blob(name, digest, 40_000, chunk_size=16_384)) == data[40_000:]
    [get] = proxy.requests("GET", f"/blobs/{digest}")
    assert get.status == 200  # the registry sent it all; the client dropped the first 40000 bytes


def test_stopping_a_download_early_frees_the_connection(client):
    name, data = repo(), os.urandom(3 << 20)
    digest = sha256(data)
    client.upload_blob(name, digest, len(data), [data])
    for _ in range(40):  # more than the pool holds, if connections leaked
        with client.get_blob(name, digest, chunk_size=65536) as stream:
            assert next(stream) == data[:65536]
    assert b"".join(client.get_blob(name, digest)) == data


# -- cross-repository mount ------------------------------------------------------------------------


def test_cross_repo_mount(proxied, proxy, client):
    src, dst, data = repo(), repo(), os.urandom(50_000)
    digest = sha256(data)
    client.upload_blob(src, digest, len(data), [data])
    assert proxied.upload_blob(dst, digest, len(data), [data], mount_from=src) == "mounted"
    [post] = proxy.requests("POST", f"/v2/{dst}/blobs/uploads/")
    assert post.status == 201 and "mount=" in post.path and "from=" in post.path
    assert not proxy.requests("PUT") and not proxy.requests("PATCH")
    assert client.blob_exists(dst, digest) == len(data)


def test_mount_falls_back_to_upload(proxied, proxy):
    src, dst, data = repo(), repo(), os.urandom(20_000)
    digest = sha256(data)  # src never had it: the registry opens an upload instead (202)
    assert proxied.upload_blob(dst, digest, len(data), [data], mount_from=src) == "uploaded"
    [post] = proxy.requests("POST", f"/v2/{dst}/blobs/uploads/")
    assert post.status == 202
    assert [p.status for p in proxy.requests("PUT")] == [201]
    assert proxied.blob_exists(dst, digest) == len(data)


# -- retries ---------------------------------------------------------------------------------------


def test_retry_on_503(proxied, proxy, client, small_image):
    name, image = repo(), small_image()
    push(client, name, "v1", image)
    proxy.on("GET", f"/v2/{name}/manifests/v1", "503", times=2)
    assert proxied.get_manifest(name, "v1").digest == image.digest
    assert [s.status for s in proxy.requests("GET", "/manifests/v1")] == [503, 503, 200]


def test_retries_are_bounded(proxied, proxy, client):
    name = repo()
    proxy.on("GET", f"/v2/{name}/manifests/v1", "503", times=100)
    with pytest.raises(RegistryError) as e:
        proxied.get_manifest(name, "v1")
    assert str(e.value) == (f"cannot get manifest for {proxy.host}/{name}:v1: "
                            "service unavailable (UNAVAILABLE)")
    assert len(proxy.requests("GET", "/manifests/v1")) == 1 + proxied.retries


def test_download_resumes_after_dropped_connection(proxied, proxy, client):
    name, data = repo(), os.urandom(400_000)
    digest = sha256(data)
    client.upload_blob(name, digest, len(data), [data])
    proxy.on("GET", f"/blobs/{digest}", "drop")
    assert b"".join(proxied.get_blob(name, digest, chunk_size=32_768)) == data
    first, second = proxy.requests("GET", f"/blobs/{digest}")
    assert first.range == ""
    assert second.range.startswith("bytes=") and int(second.range[6:-1]) > 0  # resumed, not restarted


def test_upload_restarts_after_a_failed_patch(proxied, proxy):
    name, data = repo(), os.urandom(150_000)
    digest = sha256(data)
    proxy.on("PATCH", "/blobs/uploads/", "503")
    assert proxied.upload_blob(name, digest, len(data), [data], chunk_size=50_000) == "uploaded"
    assert len(proxy.requests("POST", "/blobs/uploads/")) == 2  # a fresh session after the failure
    assert b"".join(proxied.get_blob(name, digest)) == data


def test_one_shot_upload_is_not_replayed(proxied, proxy):
    name, data = repo(), os.urandom(10_000)
    proxy.on("PUT", "/blobs/uploads/", "503")
    with pytest.raises(RegistryError) as e:
        proxied.upload_blob(name, sha256(data), len(data), iter([data]))
    assert "service unavailable (UNAVAILABLE)" in str(e.value)
    assert len(proxy.requests("POST", "/blobs/uploads/")) == 1


# -- auth: Basic -----------------------------------------------------------------------------------


def test_basic_auth(auth_registry, small_image, kit):
    USER, PASSWORD = kit.USER, kit.PASSWORD
    host = auth_registry.host
    name, image = repo(), small_image()
    asked = []

    def creds(h):
        asked.append(h)
        return (USER, PASSWORD)

    with Registry(host, credentials=creds) as reg:
        reg.login()
        assert push(reg, name, "v1", image) == image.digest
        assert reg.get_manifest(name, "v1").data == image.manifest
        assert b"".join(reg.get_blob(name, image.layer_digests[0])) == image.blobs[image.layer_digests[0]]
    assert asked == [host]  # asked once, by the name the user gave

    with Registry(host, credentials=lambda h: (USER, "wrong")) as reg:
        with pytest.raises(Unauthorized) as e:
            reg.login()
        assert str(e.value) == f"unauthorized: incorrect username or password for {host}"
        with pytest.raises(Unauthorized):
            reg.get_manifest(name, "v1")

    with Registry(host) as reg:
        with pytest.raises(Unauthorized) as e:
            reg.get_manifest(name, "v1")
        assert str(e.value) == f"unauthorized: authentication required for {host}"
        with pytest.raises(Unauthorized):
            reg.upload_blob(repo(), sha256(b"x"), 1, [b"x"])


# -- auth: Bearer tokens ---------------------------------------------------------------------------


def test_token_auth_pull_and_push(token_registry, small_image, kit):
    USER, PASSWORD = kit.USER, kit.PASSWORD
    host, tokens = token_registry.host, token_registry.tokens
    name, image = repo(), small_image()
    with Registry(host, credentials=lambda h: (USER, PASSWORD)) as reg:
        assert push(reg, name, "v1", image) == image.digest
        assert any(scopes == [f"repository:{name}:pull,push"] and user == USER for user, scopes in tokens.issued)
        m = reg.get_manifest(name, "v1")
        assert m.digest == image.digest
        before = len(tokens.issued)
        reg.get_manifest(name, "v1")
        reg.head_manifest(name, image.digest)
        layer = image.layer_digests[0]
        assert b"".join(reg.get_blob(name, layer)) == image.blobs[layer]
        assert len(tokens.issued) == before  # the pull token is cached
        assert name in reg.catalog()

    with Registry(host) as anon:  # anonymous: the token server grants pull only
        assert anon.get_manifest(name, "v1").digest == image.digest
        with pytest.raises(Unauthorized) as e:
            push(anon, repo(), "v1", small_image())
        assert str(e.value) == f"unauthorized: authentication required for {host}"


def test_token_renewal_and_parallel_pulls(token_registry, small_image, kit):
    host, tokens = token_registry.host, token_registry.tokens
    name, image = repo(), small_image()
    creds = lambda h: (kit.USER, kit.PASSWORD)  # noqa: E731
    with Registry(host, credentials=creds) as reg:
        push(reg, name, "v1", image)
    with Registry(host, credentials=creds) as reg:
        before = len(tokens.issued)
        layer = image.layer_digests[0]
        with ThreadPoolExecutor(4) as pool:  # one Registry, several threads, one token fetch
            got = list(pool.map(lambda _: b"".join(reg.get_blob(name, layer)), range(8)))
        assert got == [image.blobs[layer]] * 8
        assert len(tokens.issued) == before + 1
        # a token the registry no longer takes is dropped and fetched anew, once
        for key, (_token, expiry) in list(reg._tokens.items()):
            reg._tokens[key] = ("not-a-valid-token", expiry)
        assert reg.get_manifest(name, "v1").digest == image.digest
        assert len(tokens.issued) == before + 2
        # an expired one is renewed before use
        for key, (token, _expiry) in list(reg._tokens.items()):
            reg._tokens[key] = (token, 0.0)
        assert reg.head_manifest(name, "v1").digest == image.digest
        assert len(tokens.issued) == before + 3


def test_token_auth_wrong_credentials(token_registry, kit):
    USER = kit.USER
    host = token_registry.host
    with Registry(host, credentials=lambda h: (USER, "nope")) as reg:
        with pytest.raises(Unauthorized) as e:
            reg.get_manifest(repo(), "v1")
        assert str(e.value) == f"unauthorized: incorrect username or password for {host}"
        with pytest.raises(Unauthorized):
            reg.login()


def test_token_auth_cross_repo_mount(token_registry, kit):
    USER, PASSWORD = kit.USER, kit.PASSWORD
    host, tokens = token_registry.host, token_registry.tokens
    src, dst, data = repo(), repo(), os.urandom(30_000)
    digest = sha256(data)
    with Registry(host, credentials=lambda h: (USER, PASSWORD)) as reg:
        assert reg.upload_blob(src, digest, len(data), [data]) == "uploaded"
        assert reg.upload_blob(dst, digest, len(data), [data], mount_from=src) == "mounted"
        assert [f"repository:{dst}:pull,push", f"repository:{src}:pull"] in [s for _, s in tokens.issued]
        assert reg.blob_exists(dst, digest) == len(data)


# -- skopeo as referee -----------------------------------------------------------------------------


def test_skopeo_pulls_what_the_client_pushed(client, registry, tmp_path, kit):
    name = repo("referee")
    image = kit.make_image({"bin/hello": b"#!/bin/sh\necho hello\n", "etc/motd": b"made by budu\n"})
    digest = push(client, name, "v1", image, chunk_size=300)
    dest = tmp_path / "oci"
    r = kit.skopeo("copy", "--src-tls-verify=false", "--preserve-digests",
               f"docker://{registry.host}/{name}:v1", f"oci:{dest}:v1", tmp=str(tmp_path))
    assert r.returncode == 0, r.stderr
    [entry] = json.loads((dest / "index.json").read_text())["manifests"]
    assert entry["digest"] == digest == image.digest
    for d, data in [*image.blobs.items(), (digest, image.manifest)]:
        assert (dest / "blobs" / "sha256" / d.split(":")[1]).read_bytes() == data
    r = kit.skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{registry.host}/{name}:v1", tmp=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.encode() == image.manifest


def test_client_pulls_what_skopeo_pushed(client, busybox_image):
    img = busybox_image
    m = client.get_manifest(img.name, img.tag)
    assert m.digest == img.digest == img.image.digest
    assert m.media_type == OCI_MANIFEST
    doc = json.loads(m.data)
    for desc in [doc["config"], *doc["layers"]]:
        assert client.blob_exists(img.name, desc["digest"]) == desc["size"]
        data = b"".join(client.get_blob(img.name, desc["digest"]))
        assert sha256(data) == desc["digest"] and len(data) == desc["size"]
        assert data == img.image.blobs[desc["digest"]]
    assert img.tag in client.tags(img.name)
    # mount the skopeo-pushed layer into a new repository and push the same image there
    dst = repo()
    results = [client.upload_blob(dst, d, len(b), [b], mount_from=img.name) for d, b in img.image.blobs.items()]
    assert results == ["mounted", "mounted"]
    assert client.put_manifest(dst, "copy", m.media_type, m.data) == img.digest
