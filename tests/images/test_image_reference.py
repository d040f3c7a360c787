"""Image references: docker's normalization, grammar and error wording (distribution/reference)."""

from __future__ import annotations

import pytest

from budu.errors import BuduError, ConfigError
from budu.images.reference import (
    InvalidDigest,
    InvalidReference,
    Reference,
    parse,
    parse_digest,
)

H256 = "a" * 64
D256 = f"sha256:{H256}"
D512 = "sha512:" + "0123456789abcdef" * 8


@pytest.mark.parametrize(
    "text, domain, path, tag, digest",
    [
        ("busybox", "docker.io", "library/busybox", "latest", None),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
        ("library/busybox", "docker.io", "library/busybox", "latest", None),
        ("docker.io/busybox", "docker.io", "library/busybox", "latest", None),
        ("docker.io/library/busybox", "docker.io", "library/busybox", "latest", None),
        ("index.docker.io/busybox", "docker.io", "library/busybox", "latest", None),
        ("index.docker.io/user/app:v1", "docker.io", "user/app", "v1", None),
        ("user/app", "docker.io", "user/app", "latest", None),
        ("user/sub/app", "docker.io", "user/sub/app", "latest", None),
        ("localhost/foo", "localhost", "foo", "latest", None),
        ("localhost:5000/ns/repo:tag", "localhost:5000", "ns/repo", "tag", None),
        (f"localhost:5000/ns/repo:tag@{D256}", "localhost:5000", "ns/repo", "tag", D256),
        (f"host/repo@{D256}", "docker.io", "host/repo", None, D256),
        (f"quay.io/repo@{D256}", "quay.io", "repo", None, D256),
        (f"busybox@{D512}", "docker.io", "library/busybox", None, D512),
        ("[::1]:5000/foo", "[::1]:5000", "foo", "latest", None),
        ("[fe80::1]/foo/bar:x", "[fe80::1]", "foo/bar", "x", None),
        ("127.0.0.1:5000/foo", "127.0.0.1:5000", "foo", "latest", None),
        ("ghcr.io/o-r_g/re.po__x", "ghcr.io", "o-r_g/re.po__x", "latest", None),
        ("example.com/a--b", "example.com", "a--b", "latest", None),
        ("Example/foo", "Example", "foo", "latest", None),  # uppercase first component: a host
        ("my-registry.example.com:443/team/app:2024.01-rc_1", "my-registry.example.com:443", "team/app",
         "2024.01-rc_1", None),
        ("busybox:Latest", "docker.io", "library/busybox", "Latest", None),  # tags may be uppercase
        ("busybox:_x", "docker.io", "library/busybox", "_x", None),
        ("localhost", "docker.io", "library/localhost", "latest", None),  # no slash: a repo name
        ("localhost:5000", "docker.io", "library/localhost", "5000", None),  # ... with a tag, as docker
    ],
)
def test_parse(text, domain, path, tag, digest):
    r = parse(text)
    assert (r.domain, r.path, r.tag, r.digest) == (domain, path, tag, digest)
    assert r.name == f"{domain}/{path}"
    assert parse(str(r)) == r  # the canonical form parses back to itself


@pytest.mark.parametrize(
    "text, full, short",
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("docker.io/user/app:v2", "docker.io/user/app:v2", "user/app:v2"),
        ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
        ("localhost:5000/x:y", "localhost:5000/x:y", "localhost:5000/x:y"),
        (f"busybox@{D256}", f"docker.io/library/busybox@{D256}", f"busybox@{D256}"),
        (f"busybox:1@{D256}", f"docker.io/library/busybox:1@{D256}", f"busybox:1@{D256}"),
        ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1", "busybox:1"),
    ],
)
def test_str_and_familiar(text, full, short):
    r = parse(text)
    assert str(r) == full
    assert r.familiar() == short
    assert parse(short) == r


def test_familiar_name():
    assert parse("busybox:1").familiar_name() == "busybox"
    assert parse("quay.io/a/b").familiar_name() == "quay.io/a/b"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "repository name must have at least one component"),
        (":tag", "invalid reference format"),
        ("busybox:", "invalid reference format"),
        ("busybox@", "invalid reference format"),
        ("@sha256:" + H256, "invalid reference format"),
        ("Busybox", "repository name must be lowercase"),
        ("docker.io/Busybox", "repository name must be lowercase"),
        ("localhost:5000/Foo:tag", "repository name must be lowercase"),
        ("user/App", "repository name must be lowercase"),
        ("a" * 256, "must not be more than 255 characters"),
        ("a" * 240, "must not be more than 255 characters"),  # docker.io/library/ counts too
        ("busy box", "invalid reference format"),
        ("busybox:" + "t" * 129, "invalid reference format"),
        ("busybox:-tag", "invalid reference format"),
        ("busybox:.tag", "invalid reference format"),
        ("-busybox", "invalid reference format"),
        ("busybox-", "invalid reference format"),
        ("a/.b", "invalid reference format"),
        ("a//b", "invalid reference format"),
        ("a/b/", "invalid reference format"),
        ("a___b", "invalid reference format"),
        ("a..b", "invalid reference format"),
        ("-host.com/foo", "invalid reference format"),
        ("host.com:port/foo", "invalid reference format"),
        ("[::1/foo", "invalid reference format"),
        ("busybox@sha256:abc", "invalid reference format"),  # fewer than 32 hex digits
        ("busybox@sha256:" + "a" * 63, "invalid checksum digest length"),
        ("busybox@sha256:" + "A" * 64, "invalid checksum digest format"),
        ("busybox@md5:" + "a" * 32, "unsupported digest algorithm"),
        (H256, "cannot specify 64-byte hexadecimal strings"),
        ("busybox:tag:tag", "invalid reference format"),
        ("busybox\n", "invalid reference format"),
        ("busybóx", "invalid reference format"),
        ("busybox:tág", "invalid reference format"),  # \w is ASCII-only, as in Go
    ],
)
def test_invalid(text, message):
    with pytest.raises(InvalidReference) as e:
        parse(text)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_errors_are_config_errors():
    with pytest.raises(ConfigError):
        parse("UPPER")
    assert issubclass(InvalidReference, BuduError)
    assert issubclass(InvalidDigest, InvalidReference)


def test_lowercase_message_is_dockers():
    with pytest.raises(InvalidReference, match=r"^invalid reference format: repository name must be lowercase"):
        parse("Busybox:latest")


def test_max_length_name_accepted():
    path = "library/" + "a" * (255 - len("docker.io/library/"))
    r = parse(path)
    assert len(r.name) == 255


def test_tag_max_length():
    assert parse("busybox:" + "t" * 128).tag == "t" * 128


def test_with_tag_and_digest():
    r = parse("localhost:5000/x")
    assert r.with_tag("v1") == Reference("localhost:5000", "x", "v1", None)
    pinned = r.with_digest(D256)
    assert str(pinned) == f"localhost:5000/x:latest@{D256}"  # docker's WithDigest keeps the tag
    assert str(pinned.without_tag()) == f"localhost:5000/x@{D256}"
    assert str(parse(f"x@{D256}").with_tag("t")) == f"docker.io/library/x:t@{D256}"
    with pytest.raises(InvalidReference, match="invalid tag format"):
        r.with_tag("bad tag")
    with pytest.raises(InvalidReference, match="invalid tag format"):
        r.with_tag("")
    with pytest.raises(InvalidDigest):
        r.with_digest("sha256:xyz")


def test_reference_is_frozen_and_hashable():
    r = parse("busybox")
    with pytest.raises(AttributeError):
        r.tag = "x"  # type: ignore[misc]
    assert {r, parse("docker.io/library/busybox:latest")} == {r}


@pytest.mark.parametrize("d", [D256, D512, "sha384:" + "b" * 96])
def test_parse_digest_ok(d):
    assert parse_digest(d) == d


@pytest.mark.parametrize(
    "d, message",
    [
        ("", "invalid digest format"),
        ("sha256", "invalid digest format"),
        ("sha256:", "invalid digest format"),
        (":" + H256, "invalid digest format"),
        ("sha1:" + "a" * 40, "unsupported digest algorithm"),
        ("SHA256:" + H256, "unsupported digest algorithm"),
        ("sha256:" + H256 + "0", "invalid checksum digest length"),
        ("sha512:" + H256, "invalid checksum digest length"),
        ("sha256:" + "g" * 64, "invalid checksum digest format"),
        ("sha256:../../" + "a" * 58, "invalid checksum digest format"),
        ("sha256:" + "A" * 64, "invalid checksum digest format"),
    ],
)
def test_parse_digest_invalid(d, message):
    with pytest.raises(InvalidDigest, match=message):
        parse_digest(d)
