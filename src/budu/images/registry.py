"""A client for the OCI distribution API (the registry v2 API): manifests, blobs, uploads, tags.

One pooled httpx client (HTTP/1.1) per registry.  It does the registry's auth dance itself (a Bearer
token from the realm the registry names, or Basic), retries what is safe to retry, resumes broken
blob downloads where they stopped, and turns registry errors into one-line BuduErrors.  httpx is
imported here only: the CLI imports this module when it talks to a registry, and stays quick
otherwise.

HTTPS or HTTP, and which certificates, follow docker's rules (budu.images.hosts): verified HTTPS
for a secure registry; for an insecure one (named in daemon.json's insecure-registries, or on
127.0.0.0/8) unverified HTTPS first and plain HTTP if that fails, decided once, at the /v2/ ping.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Literal, Sequence

import httpx

from budu import __version__
from budu.errors import BuduError, ConfigError, NotFound
from budu.images import hosts

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_MEDIA_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

BLOB_CHUNK = 1 << 20  # download pieces: big enough that per-chunk Python overhead does not matter
MAX_MANIFEST_SIZE = 4 << 20  # the spec's floor for what registries accept; we take as much
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAX_DELAY = 5.0  # one backoff never sleeps longer than this (nor a Retry-After we honour)
_TOKEN_MARGIN = 10.0  # renew a token this many seconds before the realm says it expires

# Repository names and references, as the distribution spec's grammar has them.
_NAME_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST_RE = re.compile(r"([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([A-Za-z0-9=_-]+)")
_HASHES = {"sha256": 64, "sha512": 128}


class RegistryError(BuduError):
    """A registry refused a request, answered nonsense, or could not be reached."""


class Unauthorized(RegistryError):
    """The registry (or its token server) would not let us in, even after authenticating."""


class Unreachable(RegistryError):
    """No connection could be made (refused, unknown host, TLS failure); `why` says which."""

    def __init__(self, message: str, why: str = "") -> None:
        super().__init__(message)
        self.why = why or message


class _Transient(RegistryError):
    """A failure worth trying again: 5xx, 429, or a connection that broke."""

    def __init__(self, message: str, why: str = "") -> None:
        super().__init__(message)
        self.why = why or message


@dataclass(frozen=True)
class Manifest:
    """A manifest exactly as the registry stored it: the digest is over `data`, byte for byte."""

    media_type: str
    data: bytes
    digest: str


@dataclass(frozen=True)
class ManifestInfo:
    """What a HEAD tells about a manifest without fetching it (enough to see whether a tag moved)."""

    media_type: str
    digest: str
    size: int


UploadResult = Literal["exists", "mounted", "uploaded"]


@dataclass(frozen=True)
class _Challenge:
    scheme: str  # "bearer" or "basic", lower case
    params: dict[str, str]


def _parse_challenges(values: Sequence[str]) -> list[_Challenge]:
    """Challenges from WWW-Authenticate headers (RFC 7235: several per header, quoted params)."""
    token = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
    scheme_re = re.compile(rf"[\s,]*({token})(?=\s|$|,)")
    param_re = re.compile(rf'[\s,]*({token})\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)')
    out: list[_Challenge] = []
    for value in values:
        pos = 0
        while pos < len(value):
            m = scheme_re.match(value, pos)
            if not m:
                break
            challenge = _Challenge(m.group(1).lower(), {})
            out.append(challenge)
            pos = m.end()
            while (p := param_re.match(value, pos)) is not None:
                raw = p.group(2)
                if raw.startswith('"'):
                    raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
                challenge.params[p.group(1).lower()] = raw
                pos = p.end()
    return out


def _pick_challenge(resp: httpx.Response) -> _Challenge | None:
    """Bearer if the registry offers it (scoped, short-lived), else Basic."""
    challenges = _parse_challenges(resp.headers.get_list("www-authenticate"))
    for scheme in ("bearer", "basic"):
        for c in challenges:
            if c.scheme == scheme and (scheme == "basic" or c.params.get("realm")):
                return c
    return None


def compute_digest(data: bytes, algorithm: str = "sha256") -> str:
    """The OCI digest of `data` ("sha256:<hex>")."""
    if algorithm not in _HASHES:
        raise RegistryError(f"unsupported digest algorithm {algorithm!r}")
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def _check_digest(digest: str) -> str:
    m = _DIGEST_RE.fullmatch(digest)
    if not m or m.group(1) not in _HASHES or len(m.group(2)) != _HASHES[m.group(1)]:
        raise ConfigError(f"invalid digest {digest!r}")
    if not re.fullmatch(r"[0-9a-f]+", m.group(2)):
        raise ConfigError(f"invalid digest {digest!r}")
    return m.group(1)


def _is_digest(reference: str) -> bool:
    return ":" in reference


def _check_reference(reference: str) -> None:
    if _is_digest(reference):
        _check_digest(reference)
    elif not _TAG_RE.fullmatch(reference):
        raise ConfigError(f"invalid tag {reference!r}")


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _registry_errors(resp: httpx.Response) -> str:
    """The registry's own words from its error JSON, e.g. "manifest unknown (MANIFEST_UNKNOWN)"."""
    try:
        body = resp.json()
    except Exception:  # not JSON: an HTML page from a proxy, an empty body...
        return ""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return ""
    parts = []
    for e in errors[:3]:
        if not isinstance(e, dict):
            continue
        code = str(e.get("code") or "")
        message = str(e.get("message") or code.lower().replace("_", " ") or "error")
        parts.append(f"{message} ({code})" if code else message)
    return "; ".join(parts)


def _describe_transport_error(exc: httpx.TransportError) -> str:
    text = _one_line(str(exc) or type(exc).__name__, 200)
    low = text.lower()
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if "refused" in low:
        return "connection refused"
    if "name or service not known" in low or "name resolution" in low or "nodename nor servname" in low:
        return "unknown host"
    if "wrong_version_number" in low or "record layer failure" in low or "packet length too long" in low:
        return "TLS handshake failed: the server does not speak TLS"
    if "certificate_verify_failed" in low:
        return f"TLS certificate not trusted ({text})"
    if "certificate required" in low or "handshake failure" in low or "bad certificate" in low:
        return f"TLS handshake refused by the registry: it may want a client certificate ({text})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection closed by the registry"
    return text


def _retryable_exc(exc: httpx.TransportError) -> bool:
    """Dropped or stalled connections are worth another try; refused, DNS and TLS failures are not."""
    if isinstance(exc, httpx.TimeoutException):
        return True
    if "[SSL" in str(exc):  # a TLS alert (a refused client certificate...) does not heal on retry
        return False
    return isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.CloseError))


class Registry:
    """One registry host: pull and push manifests and blobs over the distribution v2 API.

    `host` is what the user names ("localhost:5000", "ghcr.io", "docker.io").  Whether it is
    reached over verified HTTPS, or as an insecure registry (unverified HTTPS, else HTTP), is
    what `config` (daemon.json and certs.d, read from the usual places when not given) says, as
    docker decides it; `insecure` overrides that for this client.  `credentials(host)` returns
    (username, password) or None; it is asked once, with `host` as given, and only if the
    registry wants credentials.  Thread-safe: one Registry may serve parallel blob downloads.
    """

    def __init__(
        self,
        host: str,
        *,
        insecure: bool | None = None,
        config: hosts.RegistryConfig | None = None,
        credentials: Callable[[str], tuple[str, str] | None] | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        host = host.strip().lower().rstrip("/")
        if not host or "/" in host or any(c.isspace() for c in host):
            raise ConfigError(f"invalid registry host {host!r}")
        if host.count(":") > 1 and not host.startswith("["):
            try:  # a bare IPv6 address: URLs need it in brackets
                host = f"[{ipaddress.IPv6Address(host)}]"
            except ValueError:
                raise ConfigError(f"invalid registry host {host!r}") from None
        self.host = host
        self.api_host = DOCKER_HUB_API if host in (DOCKER_HUB, "index.docker.io") else host
        self.config = config if config is not None else hosts.RegistryConfig.load()
        self.endpoints = hosts.endpoints(self.config, host, insecure)
        self._use(self.endpoints[0])
        self.retries = max(0, retries)
        self.backoff = backoff
        self._credentials_fn = credentials
        self._creds: tuple[str, str] | None = None
        self._creds_looked_up = False
        self._challenge: _Challenge | None = None
        self._pinged = False
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._lock = threading.Lock()
        tls = next((e for e in self.endpoints if e.scheme == "https"), None)
        self._client = httpx.Client(
            http1=True,
            http2=False,
            # one client for both schemes: the context only matters to https URLs
            verify=hosts.ssl_context(self.config, host, tls) if tls else False,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            headers={"User-Agent": f"budu/{__version__}"},
            follow_redirects=False,
        )

    def _use(self, endpoint: hosts.Endpoint) -> None:
        self.endpoint = endpoint
        self.scheme = endpoint.scheme
        self.base_url = f"{self.scheme}://{self.api_host}"

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Registry({self.base_url!r})"

    # -- auth ----------------------------------------------------------------------------------

    def ping(self) -> None:
        """GET /v2/: proves the host speaks the v2 API and learns how it wants us to authenticate.

        Done once, before the first real request, so that streamed upload bodies (which cannot be
        sent twice) already carry the right Authorization.  It is also where the scheme is
        settled: each endpoint in turn (for an insecure registry, HTTPS then HTTP) until one
        answers at all; whatever it answers, it is the one used from then on.
        """
        failures: list[tuple[str, str]] = []
        for i, endpoint in enumerate(self.endpoints):
            self._use(endpoint)
            last = i == len(self.endpoints) - 1
            try:  # (an answer, even a 5xx one after the retries, settles it: no fallback)
                resp = self._send("GET", httpx.URL(self.base_url + "/v2/"))
                break
            except (Unreachable, _Transient) as e:
                if not last:
                    failures.append((endpoint.describe(), e.why))
                    continue
                if isinstance(e, Unreachable):
                    failures.append((endpoint.describe(), e.why))
                    tried = e.why if len({why for _, why in failures}) == 1 else \
                        "; ".join(f"{where}: {why}" for where, why in failures)
                    raise Unreachable(f"cannot reach registry {self.host}: {tried}{self._hint(e.why)}", e.why) from None
                raise
        if resp.status_code == 401:
            self._challenge = _pick_challenge(resp)
        elif resp.status_code == 404:
            raise RegistryError(f"{self.host} is not a registry: it has no /v2/ API")
        elif resp.status_code >= 400:
            raise self._error(resp, f"ping registry {self.host}")
        else:
            self._challenge = None
        self._pinged = True

    def _hint(self, why: str) -> str:
        """What to do about a TLS failure with a secure registry."""
        if self.scheme != "https" or not self.endpoint.verify:
            return ""
        config = self.config.source or os.path.join(hosts.SYSTEM_CONFIG_DIR, hosts.DAEMON_JSON)
        if why.startswith("TLS handshake failed"):
            return f" (if it is a plain HTTP registry, list {self.host} in insecure-registries in {config})"
        if why.startswith("TLS certificate not trusted"):
            certs = self.config.certs_dirs
            where = os.path.join(certs[0], self.host, "ca.crt") if certs else "certs.d"
            return (f" (put the CA certificate that signed it in {where}, or list {self.host} in "
                    f"insecure-registries in {config})")
        return ""

    def login(self) -> None:
        """Checks the credentials now (as `docker login` does); raises Unauthorized if refused."""
        self.ping()
        if self._challenge is None:
            return
        if self._credentials() is None:
            raise Unauthorized(f"unauthorized: no credentials for {self.host}")
        resp = self._request("GET", self._url("/v2/"), scopes=())
        if resp.status_code >= 400:
            raise self._error(resp, f"log in to {self.host}")

    def _ensure_pinged(self) -> None:
        if not self._pinged:
            with self._lock:
                if not self._pinged:
                    self.ping()

    def _credentials(self) -> tuple[str, str] | None:
        if not self._creds_looked_up:
            self._creds = self._credentials_fn(self.host) if self._credentials_fn else None
            self._creds_looked_up = True
        return self._creds

    def _basic(self) -> str | None:
        creds = self._credentials()
        if creds is None:
            return None
        raw = f"{creds[0]}:{creds[1]}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def _authorization(self, scopes: Sequence[str]) -> str | None:
        """The Authorization header for a request needing `scopes`, fetching a token if needed."""
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return self._basic()
        return "Bearer " + self._token(challenge, tuple(scopes))

    def _token(self, challenge: _Challenge, scopes: tuple[str, ...]) -> str:
        realm = challenge.params["realm"]
        service = challenge.params.get("service", "")
        key = (realm, service, *scopes)
        with self._lock:
            cached = self._tokens.get(key)
            if cached and cached[1] > time.monotonic():
                return cached[0]
            params: list[tuple[str, str]] = [("service", service)] if service else []
            params += [("scope", s) for s in scopes]
            headers = {}
            creds = self._credentials()
            if creds is not None:
                params.append(("account", creds[0]))
                headers["Authorization"] = self._basic() or ""
            try:
                url = httpx.URL(realm, params=params)
            except httpx.InvalidURL:
                raise RegistryError(f"registry {self.host} names an invalid token realm {realm!r}") from None
            resp = self._send("GET", url, headers=headers)
            if resp.status_code in (401, 403):
                why = "incorrect username or password" if creds else "authentication required"
                raise Unauthorized(f"unauthorized: {why} for {self.host}")
            if resp.status_code != 200:
                detail = _registry_errors(resp) or f"HTTP {resp.status_code}"
                raise RegistryError(f"token server {url.host} of {self.host} failed: {detail}")
            try:
                body = resp.json()
                token = body.get("token") or body.get("access_token")
                expires_in = int(body.get("expires_in") or 60)
            except Exception:
                token = None
            if not isinstance(token, str) or not token:
                raise RegistryError(f"token server {url.host} of {self.host} sent no token")
            # The spec: 60 s is the minimum lifetime a token server may grant.
            expiry = time.monotonic() + max(expires_in, 60) - _TOKEN_MARGIN
            self._tokens[key] = (token, expiry)
            return token

    def _drop_token(self, scopes: Sequence[str]) -> None:
        with self._lock:
            for key in [k for k in self._tokens if k[2:] == tuple(scopes)]:
                del self._tokens[key]

    def _unauthorized(self, status: int, repo: str | None) -> Unauthorized:
        creds = self._credentials()
        if creds is None:
            return Unauthorized(f"unauthorized: authentication required for {self.host}")
        if status == 401 and self._challenge is not None and self._challenge.scheme == "basic":
            return Unauthorized(f"unauthorized: incorrect username or password for {self.host}")
        what = f"{self.host}/{repo}" if repo else self.host
        return Unauthorized(f"unauthorized: access to {what} denied for user {creds[0]}")

    # -- transport -----------------------------------------------------------------------------

    def _url(self, path: str) -> httpx.URL:
        """A URL on the registry, once the ping has settled its scheme."""
        self._ensure_pinged()
        return httpx.URL(self.base_url + path)

    def _delay(self, attempt: int, resp: httpx.Response | None = None) -> float:
        delay = self.backoff * (2**attempt) * (0.75 + random.random() / 2)
        if resp is not None and (after := resp.headers.get("retry-after", "")).isdigit():
            delay = max(delay, float(after))
        return min(delay, _MAX_DELAY)

    def _send(
        self,
        method: str,
        url: httpx.URL,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | Iterable[bytes] | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
        retry: bool = True,
    ) -> httpx.Response:
        """One request, retried with backoff on 5xx, 429 and broken connections when `retry`.

        Without `retry`, those failures raise _Transient so that an upload can start over.
        """
        attempt = 0
        while True:
            try:
                request = self._client.build_request(method, url, headers=headers, content=content)
                resp = self._client.send(request, stream=stream, follow_redirects=follow_redirects)
            except httpx.TransportError as exc:
                why = _describe_transport_error(exc)
                if not _retryable_exc(exc):
                    raise Unreachable(f"cannot reach registry {self.host}: {why}", why) from None
                if retry and attempt < self.retries:
                    time.sleep(self._delay(attempt))
                    attempt += 1
                    continue
                raise _Transient(f"connection to registry {self.host} failed: {why}", why) from None
            if resp.status_code in _RETRY_STATUSES:
                if retry and attempt < self.retries:
                    delay = self._delay(attempt, resp)
                    resp.close()
                    time.sleep(delay)
                    attempt += 1
                    continue
                if not retry:
                    resp.read()
                    detail = _registry_errors(resp) or f"HTTP {resp.status_code} {resp.reason_phrase}"
                    resp.close()
                    raise _Transient(f"registry {self.host} failed: {detail}")
            return resp

    def _request(
        self,
        method: str,
        url: httpx.URL,
        *,
        scopes: Sequence[str],
        repo: str | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | Iterable[bytes] | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
        retry: bool = True,
    ) -> httpx.Response:
        """A request with the registry's auth: on a 401, learn the challenge, re-authenticate once."""
        self._ensure_pinged()
        replayable = content is None or isinstance(content, bytes)
        tried_again = False
        while True:
            h = dict(headers or {})
            auth = self._authorization(scopes)
            if auth:
                h["Authorization"] = auth
            resp = self._send(
                method, url, headers=h, content=content, stream=stream,
                follow_redirects=follow_redirects, retry=retry and replayable,
            )
            if resp.status_code == 401 and replayable and not tried_again:
                challenge = _pick_challenge(resp)
                resp.close()
                if challenge is not None:
                    self._challenge = challenge
                self._drop_token(scopes)  # expired or revoked, or lacking a scope: ask again
                tried_again = True
                current = self._challenge
                if current is not None and (
                    current.scheme == "bearer" or (auth is None and self._credentials() is not None)
                ):
                    continue  # a fresh token, or credentials not sent yet: worth one more try
            if resp.status_code in (401, 403):
                resp.close()
                raise self._unauthorized(resp.status_code, repo)
            return resp

    def _error(self, resp: httpx.Response, doing: str) -> RegistryError:
        """A one-line error for a response we did not expect: what we did, and what the registry said."""
        try:
            resp.read()
        except httpx.HTTPError:
            pass
        detail = _registry_errors(resp) or f"HTTP {resp.status_code} {resp.reason_phrase}".strip()
        resp.close()
        return RegistryError(_one_line(f"cannot {doing}: {detail}"))

    def _repo(self, name: str) -> str:
        if len(name) > 255 or not _NAME_RE.fullmatch(name):
            raise ConfigError(f"invalid repository name {name!r}")
        if self.api_host == DOCKER_HUB_API and "/" not in name:
            name = "library/" + name  # Docker Hub's official images
        return name

    def _ref(self, name: str, reference: str) -> str:
        return f"{self.host}/{name}{'@' if _is_digest(reference) else ':'}{reference}"

    @staticmethod
    def _pull(name: str) -> tuple[str, ...]:
        return (f"repository:{name}:pull",)

    @staticmethod
    def _push(name: str, mount_from: str | None = None) -> tuple[str, ...]:
        scopes = (f"repository:{name}:pull,push",)
        return scopes + (f"repository:{mount_from}:pull",) if mount_from else scopes

    def _join(self, location: str | None, what: str) -> httpx.URL:
        """A Location header made absolute (registries send both relative and absolute ones)."""
        if not location:
            raise RegistryError(f"registry {self.host} sent no Location for {what}")
        try:
            return httpx.URL(self.base_url).join(location)
        except httpx.InvalidURL:
            raise RegistryError(f"registry {self.host} sent an invalid Location for {what}") from None

    # -- manifests -----------------------------------------------------------------------------

    def get_manifest(self, name: str, reference: str, accept: Sequence[str] | None = None) -> Manifest:
        """The manifest (or index) for a tag or digest; a digest reference is verified on the bytes."""
        name = self._repo(name)
        _check_reference(reference)
        ref = self._ref(name, reference)
        resp = self._request(
            "GET", self._url(f"/v2/{name}/manifests/{reference}"), scopes=self._pull(name), repo=name,
            headers={"Accept": ", ".join(accept or MANIFEST_MEDIA_TYPES)}, follow_redirects=True,
        )
        if resp.status_code == 404:
            resp.close()
            raise NotFound(f"manifest for {ref} not found")
        if resp.status_code != 200:
            raise self._error(resp, f"get manifest for {ref}")
        data = resp.content
        if len(data) > MAX_MANIFEST_SIZE:
            raise RegistryError(f"manifest for {ref} is too large ({len(data)} bytes)")
        if _is_digest(reference):
            got = compute_digest(data, _check_digest(reference))
            if got != reference:
                raise RegistryError(f"manifest for {ref} does not match its digest (got {got})")
            digest = reference
        else:
            digest = compute_digest(data)
            sent = resp.headers.get("docker-content-digest", "")
            if sent.startswith("sha256:") and sent != digest:
                raise RegistryError(f"manifest for {ref} does not match the digest the registry gave ({sent})")
        return Manifest(self._media_type(resp, data), data, digest)

    @staticmethod
    def _media_type(resp: httpx.Response, data: bytes) -> str:
        """Content-Type, or the manifest's own mediaType when the registry says just JSON."""
        ctype = resp.headers.get("content-type", "").split(";", 1)[0].strip()
        if ctype and ctype not in ("application/json", "text/plain", "application/octet-stream"):
            return ctype
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            declared = doc.get("mediaType")
            if isinstance(declared, str) and declared:
                return declared
            if "manifests" in doc:
                return OCI_INDEX
        return ctype or OCI_MANIFEST

    def head_manifest(
        self, name: str, reference: str, accept: Sequence[str] | None = None
    ) -> ManifestInfo | None:
        """Media type, digest and size of a manifest without its body; None if there is none."""
        name = self._repo(name)
        _check_reference(reference)
        ref = self._ref(name, reference)
        resp = self._request(
            "HEAD", self._url(f"/v2/{name}/manifests/{reference}"), scopes=self._pull(name), repo=name,
            headers={"Accept": ", ".join(accept or MANIFEST_MEDIA_TYPES)}, follow_redirects=True,
        )
        resp.close()
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._error(resp, f"check manifest for {ref}")
        digest = resp.headers.get("docker-content-digest", "")
        size = resp.headers.get("content-length", "")
        ctype = resp.headers.get("content-type", "").split(";", 1)[0].strip()
        if not _DIGEST_RE.fullmatch(digest) or not size.isdigit() or not ctype:
            m = self.get_manifest(name, reference, accept)  # registry too terse: fetch it instead
            return ManifestInfo(m.media_type, m.digest, len(m.data))
        if _is_digest(reference) and digest != reference:
            raise RegistryError(f"manifest for {ref} reported digest {digest}")
        return ManifestInfo(ctype, digest, int(size))

    def put_manifest(self, name: str, reference: str, media_type: str, data: bytes) -> str:
        """Store `data` as a manifest under a tag (or its digest); returns its sha256 digest."""
        name = self._repo(name)
        _check_reference(reference)
        ref = self._ref(name, reference)
        digest = compute_digest(data)
        if _is_digest(reference) and compute_digest(data, _check_digest(reference)) != reference:
            raise RegistryError(f"cannot push manifest {ref}: its bytes have digest {digest}")
        resp = self._request(
            "PUT", self._url(f"/v2/{name}/manifests/{reference}"), scopes=self._push(name), repo=name,
            headers={"Content-Type": media_type}, content=bytes(data),
        )
        if resp.status_code not in (200, 201, 202, 204):
            raise self._error(resp, f"push manifest {ref}")
        resp.close()
        sent = resp.headers.get("docker-content-digest", "")
        if sent.startswith("sha256:") and sent != digest:
            raise RegistryError(f"registry stored manifest {ref} as {sent}, not {digest}")
        return digest

    def delete_manifest(self, name: str, digest: str) -> None:
        """Delete a manifest by digest (registries refuse deletion by tag)."""
        name = self._repo(name)
        _check_digest(digest)
        ref = self._ref(name, digest)
        resp = self._request(
            "DELETE", self._url(f"/v2/{name}/manifests/{digest}"), scopes=(f"repository:{name}:delete",),
            repo=name,
        )
        if resp.status_code == 404:
            resp.close()
            raise NotFound(f"manifest for {ref} not found")
        if resp.status_code not in (200, 202, 204):
            raise self._error(resp, f"delete manifest {ref}")
        resp.close()

    # -- blobs ---------------------------------------------------------------------------------

    def blob_exists(self, name: str, digest: str, *, _scopes: Sequence[str] | None = None) -> int | None:
        """The blob's size if the repository has it, else None."""
        name = self._repo(name)
        _check_digest(digest)
        resp = self._request(
            "HEAD", self._url(f"/v2/{name}/blobs/{digest}"), scopes=_scopes or self._pull(name), repo=name,
            follow_redirects=True,
        )
        resp.close()
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._error(resp, f"check blob {digest} in {self.host}/{name}")
        size = resp.headers.get("content-length", "")
        if not size.isdigit():
            raise RegistryError(f"registry {self.host} gave no size for blob {digest}")
        return int(size)

    def get_blob(self, name: str, digest: str, offset: int = 0, *, chunk_size: int = BLOB_CHUNK) -> BlobStream:
        """The blob's bytes from `offset` on, in `chunk_size` pieces; resumes a broken download.

        The first request is made now, so a missing blob raises NotFound here, not mid-iteration.
        The bytes are not hashed here: whoever stores them checks the digest (a resumed download
        only sees part of the blob).
        """
        name = self._repo(name)
        _check_digest(digest)
        if offset < 0:
            raise ConfigError(f"negative blob offset {offset}")
        return BlobStream(self, name, digest, offset, chunk_size)

    def upload_blob(
        self,
        name: str,
        digest: str,
        size: int,
        chunks: Iterable[bytes],
        *,
        chunk_size: int | None = None,
        mount_from: str | None = None,
    ) -> UploadResult:
        """Push a blob unless the repository has it: "exists", "mounted" (from `mount_from`) or "uploaded".

        Monolithic (one streamed PUT) by default; with `chunk_size`, PATCHes of that size and a
        closing PUT.  A failed upload starts over, after a backoff, only if `chunks` can be iterated
        again (a list, or an object whose __iter__ starts from the beginning): one-shot iterators
        cannot be replayed.
        """
        name = self._repo(name)
        _check_digest(digest)
        if mount_from is not None:
            mount_from = self._repo(mount_from)
            if mount_from == name:
                mount_from = None
        if size < 0:
            raise ConfigError(f"negative blob size {size}")
        if chunk_size is not None and chunk_size <= 0:
            raise ConfigError(f"chunk size must be positive, not {chunk_size}")
        scopes = self._push(name, mount_from)
        if self.blob_exists(name, digest, _scopes=scopes) is not None:
            return "exists"
        replayable = iter(chunks) is not chunks
        attempt = 0
        while True:
            location: httpx.URL | None = None
            try:
                location, min_chunk = self._start_upload(name, digest, scopes, mount_from)
                if location is None:
                    return "mounted"
                if chunk_size is None:
                    self._put_monolithic(name, digest, size, chunks, location, scopes)
                else:
                    self._put_chunked(name, digest, size, chunks, location, scopes, max(chunk_size, min_chunk))
                return "uploaded"
            except _Transient as exc:
                if location is not None:
                    self._cancel_upload(location, scopes)
                if not replayable or attempt >= self.retries:
                    raise RegistryError(f"cannot upload blob {digest} to {self.host}/{name}: {exc}") from None
                time.sleep(self._delay(attempt))
                attempt += 1

    def upload_stream(self, name: str, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Push a blob whose digest is known only once it has all gone: a layer compressed on its
        way out.  One streamed PATCH (chunked transfer encoding, as docker sends it), hashed as it
        goes, then the closing PUT with that digest.  Returns (digest, size).

        Nothing is checked for first (no digest to ask about).  A failed upload starts over, after
        a backoff, only if `chunks` can be iterated again from the beginning."""
        name = self._repo(name)
        scopes = self._push(name)
        replayable = iter(chunks) is not chunks
        attempt = 0
        while True:
            location: httpx.URL | None = None
            try:
                location, _ = self._start_upload(name, "(streamed)", scopes, None)
                assert location is not None
                sent = _Hashing(chunks)
                resp = self._request(
                    "PATCH", location, scopes=scopes, repo=name,
                    headers={"Content-Type": "application/octet-stream"}, content=sent, retry=False,
                )
                if resp.status_code != 202:
                    raise self._error(resp, f"upload a blob to {self.host}/{name}")
                resp.close()
                got = resp.headers.get("range", "")
                if got and got.split("-")[-1] != str(sent.size - 1):
                    raise _Transient(f"registry acknowledged {got} of the {sent.size} bytes sent")
                location = self._join(resp.headers.get("location") or str(location), "an upload")
                digest = sent.digest()
                self._complete_upload(location, digest, name, scopes)
                return digest, sent.size
            except _Transient as exc:
                if location is not None:
                    self._cancel_upload(location, scopes)
                if not replayable or attempt >= self.retries:
                    raise RegistryError(f"cannot upload a blob to {self.host}/{name}: {exc}") from None
                time.sleep(self._delay(attempt))
                attempt += 1

    def _start_upload(
        self, name: str, digest: str, scopes: Sequence[str], mount_from: str | None
    ) -> tuple[httpx.URL | None, int]:
        """POST to open an upload session (or mount); returns its URL (None if mounted), min chunk."""
        url = self._url(f"/v2/{name}/blobs/uploads/")
        if mount_from:
            url = url.copy_merge_params({"mount": digest, "from": mount_from})
        resp = self._request(
            "POST", url, scopes=scopes, repo=name, headers={"Content-Length": "0"}, content=b"", retry=False
        )
        resp.close()
        if resp.status_code == 201 and mount_from:
            return None, 0
        if resp.status_code != 202:
            raise self._error(resp, f"start upload of blob {digest} to {self.host}/{name}")
        min_chunk = resp.headers.get("oci-chunk-min-length", "")
        return self._join(resp.headers.get("location"), "an upload"), int(min_chunk) if min_chunk.isdigit() else 0

    def _put_monolithic(
        self, name: str, digest: str, size: int, chunks: Iterable[bytes], location: httpx.URL,
        scopes: Sequence[str],
    ) -> None:
        url = location.copy_merge_params({"digest": digest})
        resp = self._request(
            "PUT", url, scopes=scopes, repo=name,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            content=_exactly(chunks, size, digest), retry=False,
        )
        if resp.status_code not in (201, 204):
            raise self._error(resp, f"upload blob {digest} to {self.host}/{name}")
        resp.close()

    def _put_chunked(
        self, name: str, digest: str, size: int, chunks: Iterable[bytes], location: httpx.URL,
        scopes: Sequence[str], chunk_size: int,
    ) -> None:
        offset = 0
        for piece in _rechunk(chunks, chunk_size):
            end = offset + len(piece) - 1
            if end >= size:
                raise RegistryError(f"blob {digest} has more than the {size} bytes announced")
            resp = self._request(
                "PATCH", location, scopes=scopes, repo=name,
                headers={"Content-Type": "application/octet-stream", "Content-Range": f"{offset}-{end}"},
                content=piece, retry=False,
            )
            if resp.status_code != 202:
                raise self._error(resp, f"upload blob {digest} to {self.host}/{name}")
            resp.close()
            got = resp.headers.get("range", "")
            if got and got.split("-")[-1] != str(end):
                raise _Transient(f"registry acknowledged {got} of {offset}-{end}")
            location = self._join(resp.headers.get("location") or str(location), "an upload")
            offset = end + 1
        if offset != size:
            raise RegistryError(f"blob {digest} has {offset} bytes, not the {size} announced")
        self._complete_upload(location, digest, name, scopes)

    def _complete_upload(self, location: httpx.URL, digest: str, name: str, scopes: Sequence[str]) -> None:
        """The closing PUT of an upload whose bytes are all sent: the registry checks the digest."""
        resp = self._request(
            "PUT", location.copy_merge_params({"digest": digest}), scopes=scopes, repo=name,
            headers={"Content-Length": "0"}, content=b"", retry=False,
        )
        if resp.status_code not in (201, 204):
            raise self._error(resp, f"upload blob {digest} to {self.host}/{name}")
        resp.close()

    def _cancel_upload(self, location: httpx.URL, scopes: Sequence[str]) -> None:
        """Best effort: free the registry's half-done upload (it would time out anyway)."""
        try:
            self._request("DELETE", location, scopes=scopes, retry=False).close()
        except BuduError:
            pass

    # -- listing -------------------------------------------------------------------------------

    def tags(self, name: str) -> list[str]:
        """Every tag of a repository (following the registry's pagination)."""
        name = self._repo(name)
        return self._paged(f"/v2/{name}/tags/list", "tags", self._pull(name), name,
                           f"repository {self.host}/{name} not found")

    def catalog(self) -> list[str]:
        """Every repository the registry lists (many public registries refuse this)."""
        return self._paged("/v2/_catalog", "repositories", ("registry:catalog:*",), None,
                           f"registry {self.host} has no catalog")

    def _paged(self, path: str, key: str, scopes: Sequence[str], repo: str | None, missing: str) -> list[str]:
        out: list[str] = []
        url: httpx.URL | None = self._url(path)
        seen: set[str] = set()
        while url is not None and str(url) not in seen:
            seen.add(str(url))
            resp = self._request("GET", url, scopes=scopes, repo=repo)
            if resp.status_code == 404:
                resp.close()
                raise NotFound(missing)
            if resp.status_code != 200:
                raise self._error(resp, f"list {path.rsplit('/', 1)[-1]} of {self.host}")
            try:
                items = resp.json().get(key) or []
            except Exception:
                raise RegistryError(f"registry {self.host} sent an invalid {key} list") from None
            out.extend(str(i) for i in items)
            nxt = resp.links.get("next", {}).get("url")
            url = self._join(nxt, key) if nxt else None
        return out


class BlobStream(Iterator[bytes]):
    """A blob download: iterate for the bytes; reconnects with a Range request where it broke.

    `position` is the offset of the next byte; `size` the blob's full size once the registry said.
    Close it (or use `with`) when stopping early, so the connection goes back to the pool.
    """

    def __init__(self, registry: Registry, name: str, digest: str, offset: int, chunk_size: int) -> None:
        self._registry = registry
        self._name = name
        self.digest = digest
        self.position = offset
        self.size: int | None = None
        self._chunk_size = chunk_size
        self._resp: httpx.Response | None = None
        self._chunks: Iterator[bytes] | None = None
        self._skip = 0
        self._done = False
        self._open()

    def _open(self) -> None:
        reg = self._registry
        where = f"{reg.host}/{self._name}"
        headers = {"Accept-Encoding": "identity"}  # offsets must count the blob's own bytes
        if self.position:
            headers["Range"] = f"bytes={self.position}-"
        resp = reg._request(
            "GET", reg._url(f"/v2/{self._name}/blobs/{self.digest}"), scopes=reg._pull(self._name),
            repo=self._name, headers=headers, stream=True, follow_redirects=True,
        )
        status = resp.status_code
        self._skip = 0
        if status == 404:
            resp.close()
            raise NotFound(f"blob {self.digest} not found in {where}")
        if status == 416 and self.position:
            total = resp.headers.get("content-range", "").rpartition("/")[2]
            resp.close()
            if total.isdigit() and int(total) == self.position:
                self.size = self.position  # nothing left to read
                self._done = True
                return
            raise RegistryError(f"blob {self.digest} in {where} has no byte {self.position}")
        if status == 206:
            m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", resp.headers.get("content-range", "").strip())
            if not m or int(m.group(1)) != self.position:
                resp.close()
                raise RegistryError(f"registry {reg.host} answered the wrong range for blob {self.digest}")
            if m.group(3) != "*":
                self.size = int(m.group(3))
        elif status == 200:
            length = resp.headers.get("content-length", "")
            self.size = int(length) if length.isdigit() else None
            self._skip = self.position  # the registry ignored our Range: drop what we already have
        else:
            raise reg._error(resp, f"download blob {self.digest} from {where}")
        self._resp = resp
        self._chunks = resp.iter_raw(self._chunk_size)

    def __iter__(self) -> BlobStream:
        return self

    def __next__(self) -> bytes:
        failures = 0
        while True:
            if self._done:
                raise StopIteration
            if self._chunks is None:
                self._open()
                continue
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._release()
                if self.size is None or self.position >= self.size:
                    self._done = True
                    raise StopIteration from None
                error = f"connection closed at byte {self.position} of {self.size}"
            except httpx.TransportError as exc:
                self._release()
                error = _describe_transport_error(exc)
            else:
                if self._skip:
                    cut = min(self._skip, len(chunk))
                    self._skip -= cut
                    chunk = chunk[cut:]
                    if not chunk:
                        continue
                self.position += len(chunk)
                return chunk
            reg = self._registry
            if failures >= reg.retries:
                self._done = True
                raise RegistryError(
                    f"download of blob {self.digest} from {reg.host}/{self._name} failed: {error}"
                )
            time.sleep(reg._delay(failures))
            failures += 1

    def _release(self) -> None:
        if self._resp is not None:
            self._resp.close()
        self._resp = None
        self._chunks = None

    def close(self) -> None:
        """Stop the download and give the connection back."""
        self._release()
        self._done = True

    def __enter__(self) -> BlobStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Hashing(Iterator[bytes]):
    """The chunks as they are sent, counted and hashed (sha256): the digest of a streamed blob."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._hash = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> _Hashing:
        return self

    def __next__(self) -> bytes:
        while True:
            chunk = next(self._chunks)
            if chunk:
                self._hash.update(chunk)
                self.size += len(chunk)
                return bytes(chunk)

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def _exactly(chunks: Iterable[bytes], size: int, digest: str) -> Iterator[bytes]:
    """The chunks, checked to add up to `size` (the Content-Length already sent)."""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > size:
            raise RegistryError(f"blob {digest} has more than the {size} bytes announced")
        if chunk:
            yield bytes(chunk)
    if total != size:
        raise RegistryError(f"blob {digest} has {total} bytes, not the {size} announced")


def _rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """The same bytes in pieces of exactly `size` (the last one shorter)."""
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)
