"""How budu reaches a registry host: HTTPS or HTTP, and with which certificates — docker's rules.

    $BUDU_CONFIG/daemon.json, else /etc/budu/daemon.json     {"insecure-registries": [...]}
    $BUDU_CONFIG/certs.d, else /etc/budu/certs.d and /etc/docker/certs.d
        <host[:port]>/*.crt             CA certificates trusted for that registry (besides the system's)
        <host[:port]>/*.cert + *.key    a client certificate and its key (mutual TLS)

(BUDU_CONFIG is budu's configuration directory, the one that also holds `config.json` with the
credentials: setting it replaces every default location, so a test or a user names exactly what
is read.  daemon.json is docker's file: keys other than `insecure-registries` are left alone.)

A registry is *secure* unless it is named in `insecure-registries` (as `host:port`, exactly as in
the image reference) or one of its addresses is in a CIDR listed there, or in 127.0.0.0/8, which
docker always adds.  A name is resolved to find its addresses, as docker does; `::1` is not in
127.0.0.0/8, so `[::1]:5000` is secure, while `localhost:5000` (127.0.0.1) is not.  Docker Hub is
always secure.

    secure      HTTPS only; the server certificate must verify against the system's CAs plus the
                host's certs.d CAs; the client certificate from certs.d is offered if there is one
    insecure    HTTPS first without verifying the certificate; if that connection fails (the
                server speaks plain HTTP, or nothing listens for TLS), plain HTTP

`endpoints()` turns that into the list of endpoints the registry client tries in order.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import socket
from dataclasses import dataclass, field

from budu.errors import ConfigError

DAEMON_JSON = "daemon.json"
SYSTEM_CONFIG_DIR = "/etc/budu"
SYSTEM_CERTS_DIRS = ("/etc/budu/certs.d", "/etc/docker/certs.d")
DOCKER_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
LOCALHOST_CIDR = ipaddress.ip_network("127.0.0.0/8")  # docker's stop-gap: always insecure

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class RegistryConfig:
    """What daemon.json and certs.d say about registries.  `load()` reads them."""

    insecure_names: frozenset[str] = frozenset()
    insecure_cidrs: tuple[IPNetwork, ...] = (LOCALHOST_CIDR,)
    certs_dirs: tuple[str, ...] = SYSTEM_CERTS_DIRS
    source: str = ""  # the daemon.json read, for messages

    @classmethod
    def load(cls, config_dir: str | None = None) -> RegistryConfig:
        """The configuration in `config_dir`, else $BUDU_CONFIG, else the system's."""
        config_dir = config_dir or os.environ.get("BUDU_CONFIG") or None
        if config_dir:
            path, certs = os.path.join(config_dir, DAEMON_JSON), (os.path.join(config_dir, "certs.d"),)
        else:
            path, certs = os.path.join(SYSTEM_CONFIG_DIR, DAEMON_JSON), SYSTEM_CERTS_DIRS
        try:
            with open(path, "rb") as f:
                doc = json.load(f)
        except FileNotFoundError:
            doc = {}
        except ValueError as e:
            raise ConfigError(f"{path} is not valid JSON: {e}") from None
        except OSError as e:
            raise ConfigError(f"cannot read {path}: {e.strerror}") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{path} must hold a JSON object")
        entries = doc.get("insecure-registries") or []
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise ConfigError(f"{path}: insecure-registries must be a list of strings")
        names, cidrs = parse_insecure(entries, path)
        return cls(names, cidrs, certs, path)

    def is_secure(self, host: str) -> bool:
        """docker's isSecureIndex: `host` is the registry as named in references ("myreg:5000")."""
        host = host.lower()
        if host in DOCKER_HUB_NAMES:
            return True
        if host in self.insecure_names:
            return False
        return not any(addr in net for addr in _addresses(_hostname(host)) for net in self.insecure_cidrs
                       if addr.version == net.version)


def parse_insecure(entries: list[str],
                   where: str = "insecure-registries") -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    """Names and CIDRs from docker's insecure-registries list (`http://` and `https://` dropped,
    as docker drops them); 127.0.0.0/8 is always among the CIDRs."""
    names: set[str] = set()
    cidrs: list[IPNetwork] = []
    for raw in entries:
        entry = raw.strip().lower().rstrip("/")
        for scheme in ("http://", "https://"):
            entry = entry.removeprefix(scheme)
        if "://" in entry:
            raise ConfigError(f"{where}: insecure registry {raw!r} should not contain '://'")
        if "/" in entry:
            try:
                net = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ConfigError(f"{where}: insecure registry {raw!r} is neither host[:port] nor a CIDR") from None
            if net not in cidrs:
                cidrs.append(net)
            continue
        if not entry or any(c.isspace() for c in entry) or not _valid_host_port(entry):
            raise ConfigError(f"{where}: insecure registry {raw!r} is not valid (want host[:port] or a CIDR)")
        names.add(entry)
    if LOCALHOST_CIDR not in cidrs:
        cidrs.append(LOCALHOST_CIDR)
    return frozenset(names), tuple(cidrs)


def _valid_host_port(entry: str) -> bool:
    host, port = entry, ""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        if rest and not rest.startswith(":"):
            return False
        port = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    elif ":" in entry:
        return False
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        return False
    return bool(host)


def _hostname(host: str) -> str:
    """"[::1]:5000" -> "::1", "localhost:5000" -> "localhost"."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@functools.lru_cache(maxsize=64)
def _addresses(hostname: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
    """The host's IP addresses: itself if it is one, else what the resolver says (nothing if it
    cannot be resolved: then no CIDR matches, as with docker).  `localhost` and `*.localhost`
    are loopback by definition (RFC 6761) and are not looked up."""
    try:
        return (ipaddress.ip_address(hostname),)
    except ValueError:
        pass
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
    try:
        infos = socket.getaddrinfo(hostname, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return ()
    out = []
    for info in infos:
        try:
            addr = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        except ValueError:
            continue
        if addr not in out:
            out.append(addr)
    return tuple(out)


# -- TLS ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HostCerts:
    """What certs.d holds for one registry host."""

    cas: tuple[str, ...] = ()
    client: tuple[str, str] | None = None  # (certificate, key)
    dirs: tuple[str, ...] = field(default=())


def host_certs(config: RegistryConfig, host: str) -> HostCerts:
    """The CA files and the client certificate pair for `host` (docker's ReadCertsDirectory):
    `*.crt` are CAs, `x.cert` needs `x.key` and the other way round."""
    cas: list[str] = []
    client: tuple[str, str] | None = None
    dirs: list[str] = []
    for root in config.certs_dirs:
        d = os.path.join(root, host)
        try:
            names = sorted(os.listdir(d))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:
            raise ConfigError(f"cannot read {d}: {e.strerror}") from None
        dirs.append(d)
        for name in names:
            path = os.path.join(d, name)
            if name.endswith(".crt"):
                cas.append(path)
            elif name.endswith(".cert"):
                key = name[: -len(".cert")] + ".key"
                if key not in names:
                    raise ConfigError(f"missing key {key} for client certificate {path}")
                if client is None:
                    client = (path, os.path.join(d, key))
            elif name.endswith(".key"):
                cert = name[: -len(".key")] + ".cert"
                if cert not in names:
                    raise ConfigError(f"missing client certificate {cert} for key {path}")
    return HostCerts(tuple(cas), client, tuple(dirs))


@dataclass(frozen=True)
class Endpoint:
    """One way to reach a registry: "https" (verified or not) or "http"."""

    scheme: str
    verify: bool = True

    def describe(self) -> str:
        return self.scheme if self.scheme == "http" or self.verify else "https (certificate not verified)"


def endpoints(config: RegistryConfig, host: str, insecure: bool | None = None) -> list[Endpoint]:
    """The endpoints to try in order: verified HTTPS for a secure host; unverified HTTPS, then
    HTTP, for an insecure one.  `insecure` overrides what the configuration says."""
    secure = config.is_secure(host) if insecure is None else not insecure
    if secure:
        return [Endpoint("https", verify=True)]
    return [Endpoint("https", verify=False), Endpoint("http")]


def ssl_context(config: RegistryConfig, host: str, endpoint: Endpoint):  # noqa: ANN201 - ssl.SSLContext
    """The TLS context for `endpoint`: the system's CAs (else certifi's) plus the host's from
    certs.d, and its client certificate; or, unverified, a context that checks nothing."""
    import ssl

    if not endpoint.verify:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    certs = host_certs(config, host)
    ctx = _system_context() if not certs.cas and not certs.client else _fresh_system_context()
    for ca in certs.cas:
        try:
            ctx.load_verify_locations(cafile=ca)
        except (ssl.SSLError, OSError) as e:
            raise ConfigError(f"cannot load CA certificate {ca}: {e}") from None
    if certs.client:
        try:
            ctx.load_cert_chain(*certs.client)
        except (ssl.SSLError, OSError) as e:
            raise ConfigError(f"cannot load client certificate {certs.client[0]} "
                              f"with key {certs.client[1]}: {e}") from None
    return ctx


@functools.lru_cache(maxsize=1)
def _system_context():  # noqa: ANN202
    """Shared by every registry without certs.d entries (loading the store costs ~50 ms; a
    context is thread-safe and is not changed once made)."""
    return _fresh_system_context()


def _fresh_system_context():  # noqa: ANN202
    import ssl

    ctx = ssl.create_default_context()
    if not ctx.cert_store_stats().get("x509_ca", 0):  # no system store: httpx's own bundle
        import certifi

        ctx.load_verify_locations(cafile=certifi.where())
    return ctx
