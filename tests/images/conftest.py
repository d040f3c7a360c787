"""Real registries for the images tests: Debian's docker-registry (distribution v2) on 127.0.0.1.

Three session-wide registries: a plain one, one behind htpasswd (Basic) auth, and one behind a
token server that runs in this process (Bearer JWTs signed with a throwaway RSA key).  Also an image
that skopeo pushes, built here by hand as an OCI layout from the host's static busybox.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

DOCKER_REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
USER, PASSWORD = "alice", "s3cret-pw"
SERVICE, ISSUER = "test-registry", "test-issuer"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _die_with_parent() -> None:
    """In the child: SIGTERM when pytest dies, even by SIGKILL, so no registry outlives the tests."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class RegistryServer:
    """A docker-registry process; `host` is what a client names ("127.0.0.1:PORT", "[::1]:PORT").

    With `tls` ({"certificate": path, "key": path, and "clientcas": [paths] for mutual TLS}) it
    serves HTTPS only."""

    root: str
    auth: dict = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen | None = None
    log_path: str = ""
    address: str = "127.0.0.1"
    tls: dict | None = None

    @property
    def host(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def start(self) -> RegistryServer:
        os.makedirs(self.root, exist_ok=True)
        storage = os.path.join(self.root, "storage")
        config = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": storage}, "delete": {"enabled": True}},
            "http": {"secret": secrets.token_hex(16)},
        }
        if self.auth:
            config["auth"] = self.auth
        if self.tls:
            config["http"]["tls"] = self.tls
        self.log_path = os.path.join(self.root, "registry.log")
        for _ in range(5):  # the port could be taken between choosing it and the bind: pick again
            self.port = free_port(self.address)
            config["http"]["addr"] = self.host
            cfg = os.path.join(self.root, "config.yml")
            with open(cfg, "w") as f:
                json.dump(config, f)  # JSON is YAML
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen([DOCKER_REGISTRY, "serve", cfg], stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
            log.close()
            if self._wait_ready():
                return self
            self.stop()
        with open(self.log_path, errors="replace") as f:
            raise RuntimeError(f"docker-registry did not start:\n{f.read()[-2000:]}")

    def _wait_ready(self, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self.tls:  # listening is enough: the TLS tests do the handshakes themselves
                try:
                    socket.create_connection((self.address, self.port), timeout=1).close()
                    return True
                except OSError:
                    time.sleep(0.05)
                    continue
            try:
                urllib.request.urlopen(self.url + "/v2/", timeout=1).close()
                return True
            except urllib.error.HTTPError as e:
                if e.code == 401:  # auth-protected: up all the same
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@pytest.fixture(autouse=True)
def docker_config(tmp_path, monkeypatch):
    """Every image test: never the real ~/.docker: DOCKER_CONFIG (and HOME) point into the test's tmp dir."""
    d = tmp_path / "docker-config"
    monkeypatch.setenv("DOCKER_CONFIG", str(d))
    monkeypatch.delenv("BUDU_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return d


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> RegistryServer:
    """A plain registry (no auth), shared by the session."""
    if not os.access(DOCKER_REGISTRY, os.X_OK):
        pytest.fail("docker-registry is not installed (scripts/install.sh installs it)")
    server = RegistryServer(str(tmp_path_factory.mktemp("registry")))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory) -> RegistryServer:
    """A registry behind htpasswd (bcrypt) Basic auth: user USER, password PASSWORD."""
    if not os.access(DOCKER_REGISTRY, os.X_OK):
        pytest.fail("docker-registry is not installed (scripts/install.sh installs it)")
    import bcrypt  # a missing module fails the fixture: these tests never skip
    root = str(tmp_path_factory.mktemp("auth-registry"))
    htpasswd = os.path.join(root, "htpasswd")
    with open(htpasswd, "w") as f:
        f.write(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()}\n")
    server = RegistryServer(root, auth={"htpasswd": {"realm": "budu-test", "path": htpasswd}})
    try:
        yield server.start()
    finally:
        server.stop()


_THIS_MODULE = sys.modules[__name__]


@pytest.fixture(scope="session")
def kit():
    """This file's helpers and constants for the test modules: `kit.make_image(...)`, `kit.USER`.

    (`from conftest import ...` would get whichever of the suite's conftest.py files pytest imported
    last under that name.)"""
    return _THIS_MODULE


# -- token server ---------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """The registry's auth service: checks Basic credentials, issues RS256 JWTs (docker token spec).

    USER gets every action asked for; anonymous clients get pull only; wrong credentials get 401.
    `issued` records (user, scopes) of each token handed out.
    """

    def __init__(self, root: str) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID
        import datetime

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self.cert_path = os.path.join(root, "token-cert.pem")
        with open(self.cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        self.issued: list[tuple[str, list[str]]] = []
        self.expires_in = 300
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._handle(self)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def _sign(self, claims: dict) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(sig)}"

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(h.path)
        query = urllib.parse.parse_qs(url.query)
        user = ""
        auth = h.headers.get("Authorization", "")
        if auth:
            try:
                raw = base64.b64decode(auth.split(" ", 1)[1]).decode()
            except Exception:
                raw = ""
            if not auth.startswith("Basic ") or raw != f"{USER}:{PASSWORD}":
                body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}).encode()
                h.send_response(401)
                h.send_header("Content-Type", "application/json")
                h.send_header("Content-Length", str(len(body)))
                h.end_headers()
                h.wfile.write(body)
                return
            user = USER
        scopes = query.get("scope", [])
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = actions.split(",")
            granted = wanted if user else [a for a in wanted if a == "pull"]
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": ISSUER, "sub": user, "aud": query.get("service", [""])[0], "exp": now + self.expires_in,
            "nbf": now - 5, "iat": now, "jti": secrets.token_hex(8), "access": access,
        }
        token = self._sign(claims)
        self.issued.append((user, scopes))
        body = json.dumps({"token": token, "access_token": token, "expires_in": self.expires_in}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class TokenRegistry:
    server: RegistryServer
    tokens: TokenServer

    @property
    def host(self) -> str:
        return self.server.host


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory) -> TokenRegistry:
    """A registry that trusts tokens from an in-process TokenServer."""
    if not os.access(DOCKER_REGISTRY, os.X_OK):
        pytest.fail("docker-registry is not installed (scripts/install.sh installs it)")
    root = str(tmp_path_factory.mktemp("token-registry"))
    tokens = TokenServer(root)
    server = RegistryServer(root, auth={"token": {
        "realm": tokens.realm, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": tokens.cert_path,
    }})
    try:
        server.start()
        yield TokenRegistry(server, tokens)
    finally:
        server.stop()
        tokens.stop()


# -- images built here -----------------------------------------------------------------------------


def tar_gz(files: dict[str, bytes | str], mode: int = 0o755) -> tuple[bytes, bytes]:
    """(uncompressed tar, gzip of it) of `files`: path -> bytes (a file) or "->target" (a symlink).

    Reproducible: fixed mtimes and owners, so the same files always give the same digests.
    """
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({os.path.dirname(p) for p in files if os.path.dirname(p)})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for path, content in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.mtime = 0
            if isinstance(content, str):
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, content.removeprefix("->"), 0o777
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), mode
                tar.addfile(info, io.BytesIO(content))
    data = raw.getvalue()
    return data, gzip.compress(data, mtime=0)


@dataclass
class Image:
    """An image as blobs: the manifest bytes and every blob it names (config first)."""

    manifest: bytes
    blobs: dict[str, bytes]
    config_digest: str
    layer_digests: list[str]

    @property
    def digest(self) -> str:
        return sha256(self.manifest)


def make_image(files: dict[str, bytes | str], cmd: list[str] | None = None) -> Image:
    """A one-layer OCI image of `files` (amd64/linux)."""
    tar, gz = tar_gz(files)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": cmd or ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha256(gz), "size": len(gz)}],
    }, indent=2).encode()
    return Image(manifest, {sha256(config): config, sha256(gz): gz}, sha256(config), [sha256(gz)])


def write_oci_layout(image: Image, dest: str, tag: str) -> None:
    """An OCI image layout (oci-layout, index.json, blobs/sha256/...) holding `image` as `tag`."""
    os.makedirs(os.path.join(dest, "blobs", "sha256"), exist_ok=True)
    for digest, data in [*image.blobs.items(), (image.digest, image.manifest)]:
        with open(os.path.join(dest, "blobs", "sha256", digest.split(":", 1)[1]), "wb") as f:
            f.write(data)
    with open(os.path.join(dest, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(dest, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": image.digest, "size": len(image.manifest),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }]}, f)


def skopeo(*args: str, tmp: str) -> subprocess.CompletedProcess:
    """skopeo with a permissive policy of our own (the host's may demand signatures)."""
    policy = os.path.join(tmp, "policy.json")
    if not os.path.exists(policy):
        with open(policy, "w") as f:
            json.dump({"default": [{"type": "insecureAcceptAnything"}]}, f)
    return subprocess.run([SKOPEO, "--policy", policy, *args], capture_output=True, text=True, timeout=120)


@dataclass
class PushedImage:
    """The busybox image skopeo pushed: where, and the digests skopeo reported."""

    registry: RegistryServer
    name: str
    tag: str
    digest: str
    image: Image


@pytest.fixture(scope="session")
def busybox_image(registry, tmp_path_factory) -> PushedImage:
    """A busybox image (busybox and a few applet links), pushed with skopeo to test/busybox:latest."""
    if not os.access(SKOPEO, os.X_OK):
        pytest.fail("skopeo is not installed (scripts/install.sh installs it)")
    tmp = str(tmp_path_factory.mktemp("busybox-image"))
    with open(BUSYBOX, "rb") as f:
        busybox = f.read()
    files: dict[str, bytes | str] = {"bin/busybox": busybox}
    for applet in ("sh", "ls", "echo", "cat", "true"):
        files[f"bin/{applet}"] = "->busybox"
    image = make_image(files)
    layout = os.path.join(tmp, "layout")
    write_oci_layout(image, layout, "latest")
    digestfile = os.path.join(tmp, "digest")
    r = skopeo("copy", "--dest-tls-verify=false", "--digestfile", digestfile,
               f"oci:{layout}:latest", f"docker://{registry.host}/test/busybox:latest", tmp=tmp)
    assert r.returncode == 0, r.stderr
    with open(digestfile) as f:
        digest = f.read().strip()
    return PushedImage(registry, "test/busybox", "latest", digest, image)
