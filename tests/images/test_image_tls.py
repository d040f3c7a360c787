"""Secure and insecure registries as docker tells them apart, with real TLS handshakes.

docker-registry serves HTTPS here with certificates made for the tests (a throwaway CA, a server
certificate for 127.0.0.1, ::1 and localhost, a client certificate).  Docker treats 127.0.0.0/8 as
insecure whatever the configuration says, but not ::1: a registry on [::1] is a secure one, which
must present a certificate that verifies — against a CA from `$BUDU_CONFIG/certs.d/[::1]:PORT/` —
and is never spoken to in plain HTTP unless daemon.json lists it in insecure-registries.
skopeo, given the same certs directory, is the referee.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import uuid
from dataclasses import dataclass

import pytest

from budu.errors import ConfigError
from budu.images import hosts
from budu.images.hosts import Endpoint, RegistryConfig
from budu.images.push import push
from budu.images.registry import OCI_MANIFEST, Registry, RegistryError
from budu.images.service import Images

# -- a throwaway PKI ---------------------------------------------------------------------------------


@dataclass
class PKI:
    ca: str  # CA certificate (PEM)
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca: str  # a CA that signed nothing here


def _pem_cert(cert) -> bytes:  # noqa: ANN001
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key) -> bytes:  # noqa: ANN001
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _make_ca(name: str):  # noqa: ANN202
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _issue(ca_key, ca_cert, name: str, server: bool):  # noqa: ANN001, ANN202
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                     else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1"))]), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca = _make_ca("budu test CA")
    server_key, server = _issue(ca_key, ca, "budu test registry", server=True)
    client_key, client = _issue(ca_key, ca, "budu test client", server=False)
    _, other = _make_ca("some other CA")
    files = {"ca.pem": _pem_cert(ca), "server.pem": _pem_cert(server), "server.key": _pem_key(server_key),
             "client.pem": _pem_cert(client), "client.key": _pem_key(client_key), "other-ca.pem": _pem_cert(other)}
    for name, data in files.items():
        (d / name).write_bytes(data)
    return PKI(str(d / "ca.pem"), str(d / "server.pem"), str(d / "server.key"), str(d / "client.pem"),
               str(d / "client.key"), str(d / "other-ca.pem"))


def _registry(kit, tmp_path_factory, name: str, address: str, tls: dict | None):  # noqa: ANN001, ANN202
    if not os.access(kit.DOCKER_REGISTRY, os.X_OK):
        pytest.fail("docker-registry is not installed (scripts/install.sh installs it)")
    server = kit.RegistryServer(str(tmp_path_factory.mktemp(name)), address=address, tls=tls)
    return server.start()


@pytest.fixture(scope="session")
def tls_v6(kit, pki, tmp_path_factory):
    """HTTPS on [::1]: a secure registry by docker's rules."""
    server = _registry(kit, tmp_path_factory, "tls-v6", "::1", {"certificate": pki.server_cert, "key": pki.server_key})
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mtls_v6(kit, pki, tmp_path_factory):
    """HTTPS on [::1] that wants a client certificate signed by the test CA."""
    server = _registry(kit, tmp_path_factory, "mtls-v6", "::1",
                       {"certificate": pki.server_cert, "key": pki.server_key, "clientcas": [pki.ca]})
    yield server
    server.stop()


@pytest.fixture(scope="session")
def plain_v6(kit, tmp_path_factory):
    """Plain HTTP on [::1]: secure by docker's rules, so unreachable until named insecure."""
    server = _registry(kit, tmp_path_factory, "plain-v6", "::1", None)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_v4(kit, pki, tmp_path_factory):
    """HTTPS on 127.0.0.1, whose certificate nobody here trusts: insecure by default, so fine."""
    server = _registry(kit, tmp_path_factory, "tls-v4", "127.0.0.1",
                       {"certificate": pki.server_cert, "key": pki.server_key})
    yield server
    server.stop()


class BuduConfig:
    """$BUDU_CONFIG for one test: daemon.json and certs.d."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, exist_ok=True)

    def insecure(self, *entries: str) -> None:
        with open(os.path.join(self.root, "daemon.json"), "w") as f:
            json.dump({"insecure-registries": list(entries), "log-level": "info"}, f)

    def cert(self, host: str, src: str, name: str) -> str:
        d = os.path.join(self.root, "certs.d", host)
        os.makedirs(d, exist_ok=True)
        shutil.copy(src, os.path.join(d, name))
        return d

    def load(self) -> RegistryConfig:
        return RegistryConfig.load()


@pytest.fixture
def config(tmp_path, monkeypatch) -> BuduConfig:
    monkeypatch.setenv("BUDU_CONFIG", str(tmp_path / "budu-config"))
    return BuduConfig(str(tmp_path / "budu-config"))


def _push_small(reg: Registry, kit, name: str) -> str:  # noqa: ANN001
    image = kit.make_image({"etc/hello": f"hello {uuid.uuid4()}\n".encode()})
    for digest, data in image.blobs.items():
        reg.upload_blob(name, digest, len(data), [data])
    return reg.put_manifest(name, "latest", OCI_MANIFEST, image.manifest)


# -- the rules, without a network ------------------------------------------------------------------


def test_docker_rules_for_secure_and_insecure():
    config = RegistryConfig()
    assert not config.is_secure("127.0.0.1:5000") and not config.is_secure("127.9.9.9")
    assert not config.is_secure("localhost:5000") and not config.is_secure("registry.localhost")
    assert config.is_secure("[::1]:5000")  # docker's default is 127.0.0.0/8, not ::1
    assert config.is_secure("docker.io") and config.is_secure("ghcr.io")
    assert config.is_secure("no-such-host.invalid:5000")  # cannot be resolved: no CIDR matches
    names, cidrs = hosts.parse_insecure(["http://myreg:5000/", "10.0.0.0/8", "::1/128", "[fd00::1]:5000", "Plain"])
    config = RegistryConfig(names, cidrs)
    assert names == {"myreg:5000", "[fd00::1]:5000", "plain"}
    assert ipaddress.ip_network("127.0.0.0/8") in cidrs  # always: docker adds it
    assert not config.is_secure("myreg:5000") and config.is_secure("myreg:5001") and config.is_secure("myreg")
    assert not config.is_secure("10.1.2.3:443") and not config.is_secure("[::1]:5000")
    assert not config.is_secure("[fd00::1]:5000") and not config.is_secure("plain")
    assert RegistryConfig(frozenset({"docker.io"})).is_secure("docker.io")  # Docker Hub is always secure
    for bad in ("ftp://x:1", "a b", "host:port", "10.0.0.0/99", "x:70000"):
        with pytest.raises(ConfigError, match="insecure registry"):
            hosts.parse_insecure([bad])


def test_daemon_json_is_read_from_budu_config(config):
    assert config.load().insecure_names == frozenset()
    config.insecure("myreg:5000", "192.168.0.0/16")
    loaded = config.load()
    assert loaded.insecure_names == {"myreg:5000"}
    assert loaded.certs_dirs == (os.path.join(config.root, "certs.d"),)
    assert hosts.endpoints(loaded, "192.168.7.7:80") == [Endpoint("https", verify=False), Endpoint("http")]
    with open(os.path.join(config.root, "daemon.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(ConfigError, match="daemon.json is not valid JSON"):
        config.load()
    with open(os.path.join(config.root, "daemon.json"), "w") as f:
        json.dump({"insecure-registries": "myreg:5000"}, f)
    with pytest.raises(ConfigError, match="must be a list of strings"):
        config.load()


def test_without_budu_config_the_system_places_are_read(monkeypatch):
    monkeypatch.delenv("BUDU_CONFIG", raising=False)
    loaded = RegistryConfig.load()
    assert loaded.source == "/etc/budu/daemon.json"
    assert loaded.certs_dirs == ("/etc/budu/certs.d", "/etc/docker/certs.d")


def test_certs_d_pairs_client_certificates_with_keys(config, pki):
    d = config.cert("myreg:5000", pki.ca, "ca.crt")
    config.cert("myreg:5000", pki.client_cert, "client.cert")
    config.cert("myreg:5000", pki.client_key, "client.key")
    found = hosts.host_certs(config.load(), "myreg:5000")
    assert found.cas == (os.path.join(d, "ca.crt"),)
    assert found.client == (os.path.join(d, "client.cert"), os.path.join(d, "client.key"))
    os.unlink(os.path.join(d, "client.cert"))
    with pytest.raises(ConfigError, match="missing client certificate client.cert for key"):
        hosts.host_certs(config.load(), "myreg:5000")
    config.cert("myreg:5000", pki.client_cert, "other.cert")
    os.unlink(os.path.join(d, "client.key"))
    with pytest.raises(ConfigError, match="missing key other.key for client certificate"):
        hosts.host_certs(config.load(), "myreg:5000")


# -- real handshakes -------------------------------------------------------------------------------


def test_a_secure_registry_needs_a_trusted_certificate(config, tls_v6, pki):
    with Registry(tls_v6.host) as reg:
        assert reg.endpoints == [Endpoint("https", verify=True)]
        with pytest.raises(RegistryError) as e:
            reg.ping()
    assert "TLS certificate not trusted" in str(e.value)
    assert f"certs.d/{tls_v6.host}/ca.crt" in str(e.value)  # the message says where the CA goes
    config.cert(tls_v6.host, pki.other_ca, "ca.crt")  # a CA, but not the one that signed it
    with Registry(tls_v6.host) as reg, pytest.raises(RegistryError, match="TLS certificate not trusted"):
        reg.ping()
    config.cert(tls_v6.host, pki.ca, "test-ca.crt")  # several CAs: every one is trusted
    with Registry(tls_v6.host) as reg:
        reg.ping()
        assert reg.base_url == f"https://{tls_v6.host}"


def test_pull_and_push_over_verified_tls(config, tls_v6, pki, kit, tmp_path):
    config.cert(tls_v6.host, pki.ca, "ca.crt")
    name = f"test/tls{uuid.uuid4().hex[:8]}"
    with Registry(tls_v6.host) as reg:
        digest = _push_small(reg, kit, name)
    images = Images(str(tmp_path / "root"))
    try:
        image = images.pull(f"{tls_v6.host}/{name}:latest")
        assert image.repo_digests == (f"{tls_v6.host}/{name}@{digest}",)
        images.tag(f"{tls_v6.host}/{name}:latest", f"{tls_v6.host}/{name}-copy:v1")
        assert push(images, f"{tls_v6.host}/{name}-copy:v1") == digest
        images.remove(f"{tls_v6.host}/{name}:latest", force=True)
        assert images.pull(f"{tls_v6.host}/{name}-copy:v1").id == image.id
    finally:
        images.close()


def test_skopeo_verifies_the_tls_of_what_budu_pushes(config, tls_v4, pki, kit, tmp_path):
    """skopeo (which cannot name [::1] registries) verifies 127.0.0.1's certificate with the
    same certs.d layout; budu reaches it over HTTPS (insecure: 127.0.0.0/8) both ways."""
    certs = config.cert(tls_v4.host, pki.ca, "ca.crt")
    images = Images(str(tmp_path / "root"))
    try:
        pushed = kit.make_image({"etc/hello": f"hello {uuid.uuid4()}\n".encode()})
        layout = str(tmp_path / "layout")
        kit.write_oci_layout(pushed, layout, "latest")
        r = kit.skopeo("copy", "--dest-cert-dir", certs, f"oci:{layout}:latest",
                       f"docker://{tls_v4.host}/test/skopeo-tls:v1", tmp=str(tmp_path))
        assert r.returncode == 0, r.stderr
        image = images.pull(f"{tls_v4.host}/test/skopeo-tls:v1")
        assert image.manifest_digest == pushed.digest
        images.tag(f"{tls_v4.host}/test/skopeo-tls:v1", f"{tls_v4.host}/test/budu-tls:v2")
        assert push(images, f"{tls_v4.host}/test/budu-tls:v2") == pushed.digest
    finally:
        images.close()
    r = kit.skopeo("inspect", "--raw", "--cert-dir", certs, f"docker://{tls_v4.host}/test/budu-tls:v2",
                   tmp=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert kit.sha256(r.stdout.encode()) == pushed.digest
    r = kit.skopeo("inspect", "--raw", f"docker://{tls_v4.host}/test/budu-tls:v2", tmp=str(tmp_path))
    assert r.returncode != 0 and "certificate" in r.stderr  # without the CA skopeo refuses: real TLS


def test_a_secure_registry_is_never_spoken_to_in_plain_http(config, plain_v6, kit):
    with Registry(plain_v6.host) as reg, pytest.raises(RegistryError) as e:
        reg.ping()
    assert "TLS handshake failed: the server does not speak TLS" in str(e.value)
    assert f"list {plain_v6.host} in insecure-registries in {config.root}/daemon.json" in str(e.value)
    config.insecure(plain_v6.host)
    with Registry(plain_v6.host) as reg:
        reg.ping()
        assert reg.base_url == f"http://{plain_v6.host}"
        _push_small(reg, kit, "test/plain-v6")


def test_an_insecure_registry_is_tried_over_https_first_without_verifying(config, tls_v6, tls_v4, kit):
    # 127.0.0.1: insecure by default; its certificate is trusted by nobody, and that is accepted
    with Registry(tls_v4.host) as reg:
        assert reg.endpoints == [Endpoint("https", verify=False), Endpoint("http")]
        reg.ping()
        assert reg.base_url == f"https://{tls_v4.host}"
        _push_small(reg, kit, "test/insecure-v4")
    # [::1], named insecure by CIDR: HTTPS without verification, no fallback needed
    config.insecure("::1/128")
    with Registry(tls_v6.host) as reg:
        reg.ping()
        assert reg.base_url == f"https://{tls_v6.host}"


def test_client_certificates_for_mutual_tls(config, mtls_v6, pki, kit):
    config.cert(mtls_v6.host, pki.ca, "ca.crt")
    with Registry(mtls_v6.host) as reg, pytest.raises(RegistryError) as e:
        reg.ping()
    assert "cannot reach registry" in str(e.value) and "TLS" in str(e.value)
    config.cert(mtls_v6.host, pki.client_cert, "client.cert")
    config.cert(mtls_v6.host, pki.client_key, "client.key")
    with Registry(mtls_v6.host) as reg:
        reg.ping()
        _push_small(reg, kit, "test/mtls")


def test_cli_pull_over_tls(config, tls_v6, pki, kit, tmp_path, monkeypatch, capsys):
    from budu.cli import main as cli

    config.cert(tls_v6.host, pki.ca, "ca.crt")
    with Registry(tls_v6.host) as reg:
        digest = _push_small(reg, kit, "test/cli-tls")
    monkeypatch.setenv("BUDU_ROOT", str(tmp_path / "root"))
    assert cli.main(["pull", "-q", f"{tls_v6.host}/test/cli-tls"]) == 0
    assert capsys.readouterr().out == f"{tls_v6.host}/test/cli-tls:latest\n"
    shutil.rmtree(os.path.join(config.root, "certs.d"))
    assert cli.main(["pull", "-q", f"{tls_v6.host}/test/cli-tls"]) != 0
    err = capsys.readouterr().err
    assert "TLS certificate not trusted" in err, err
    assert digest
