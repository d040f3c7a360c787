"""Image references (`busybox`, `localhost:5000/ns/repo:tag@sha256:...`), parsed as Docker does.

The grammar, the normalization (`busybox` -> `docker.io/library/busybox:latest`) and the error
wording follow distribution/reference's `ParseNormalizedNamed` + `TagNameOnly`, so that every name
a docker user types means the same image here.  Two deliberate details, both docker's own: a first
component with an uppercase letter is taken for a domain (`Foo/bar` is host `Foo`, not a bad path),
and a separator may be a run of dashes (`a--b`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from budu.errors import ConfigError

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_MAX = 255

# distribution/reference regexp.go, verbatim in meaning.  re.ASCII: Go's \w is ASCII-only.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_REMOTE_NAME}"

_REFERENCE_RE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_NAME_RE = re.compile(rf"(?:({_DOMAIN})/)?({_REMOTE_NAME})", re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")

# go-digest's registered algorithms and the length of their lowercase hex encoding.
DIGEST_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX = frozenset("0123456789abcdef")


class InvalidReference(ConfigError):
    """An image reference (or a part of one) that docker would refuse too."""


class InvalidDigest(InvalidReference):
    """A digest string that is not `algorithm:hex` of a supported algorithm."""


def parse_digest(text: str) -> str:
    """Validate `algo:hex` (sha256/sha384/sha512, lowercase hex) and return it unchanged.

    Digests name files in the content store, so anything but a known algorithm and exact-length
    lowercase hex is refused here, before it can reach a path.
    """
    algo, sep, hexpart = text.partition(":")
    if not sep or not algo or not hexpart:
        raise InvalidDigest(f"invalid digest format: {text!r} (want algorithm:hex, e.g. sha256:<64 hex>)")
    want = DIGEST_HEX_LEN.get(algo)
    if want is None:
        raise InvalidDigest(f"unsupported digest algorithm: {algo!r} in {text!r} (use sha256, sha384 or sha512)")
    if not set(hexpart) <= _HEX:
        raise InvalidDigest(f"invalid checksum digest format: {text!r} (hex must be lowercase 0-9a-f)")
    if len(hexpart) != want:
        raise InvalidDigest(f"invalid checksum digest length: {text!r} ({algo} needs {want} hex digits)")
    return text


def _bad(message: str, text: str) -> InvalidReference:
    return InvalidReference(f"{message} (reference {text!r})")


@dataclass(frozen=True)
class Reference:
    """A fully qualified reference: `domain/path[:tag][@digest]` (tag and digest may both be set)."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The repository, `domain/path` (what a registry and the image store are keyed by)."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        s = self.name
        if self.tag is not None:
            s += f":{self.tag}"
        if self.digest is not None:
            s += f"@{self.digest}"
        return s

    def familiar_name(self) -> str:
        """The name as docker prints it: `busybox`, `user/app`, `localhost:5000/x`."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        path = self.path
        if path.startswith(OFFICIAL_PREFIX) and "/" not in path[len(OFFICIAL_PREFIX):]:
            path = path[len(OFFICIAL_PREFIX):]
        return path

    def familiar(self) -> str:
        """Docker's short form, with tag and digest: `busybox:latest`, `localhost:5000/x:y`."""
        s = self.familiar_name()
        if self.tag is not None:
            s += f":{self.tag}"
        if self.digest is not None:
            s += f"@{self.digest}"
        return s

    def with_tag(self, tag: str) -> Reference:
        """The same repository with `tag` (the digest, if any, is kept, as docker's WithTag does)."""
        if not _TAG_RE.fullmatch(tag):
            raise InvalidReference(f"invalid tag format: {tag!r}")
        return replace(self, tag=tag)

    def with_digest(self, digest: str) -> Reference:
        """The same repository pinned to `digest` (the tag, if any, is kept)."""
        return replace(self, digest=parse_digest(digest))

    def without_tag(self) -> Reference:
        return replace(self, tag=None)


def _split_domain(name: str) -> tuple[str, str]:
    """distribution/reference splitDockerDomain: is the first component a registry host?"""
    first, slash, rest = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost" and first.lower() == first):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_PREFIX + remainder
    return domain, remainder


def parse(text: str) -> Reference:
    """Parse what a user typed into a normalized Reference; no tag and no digest means `latest`."""
    if not isinstance(text, str):
        raise InvalidReference(f"invalid reference format: expected a string, got {type(text).__name__}")
    if not text:
        raise InvalidReference("invalid reference format: repository name must have at least one component")
    if _IDENTIFIER_RE.fullmatch(text):
        raise InvalidReference(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_domain(text)
    remote = remainder.split(":", 1)[0].split("@", 1)[0]
    if remote.lower() != remote:
        raise _bad("invalid reference format: repository name must be lowercase", text)

    full = f"{domain}/{remainder}"
    m = _REFERENCE_RE.fullmatch(full)
    if m is None:
        if _REFERENCE_RE.fullmatch(full.lower()):
            raise _bad("invalid reference format: repository name must be lowercase", text)
        raise _bad("invalid reference format", text)
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    if len(name) > NAME_MAX:
        raise _bad(f"invalid reference format: repository name must not be more than {NAME_MAX} characters", text)
    nm = _NAME_RE.fullmatch(name)
    assert nm is not None and nm.group(1) is not None  # the domain was put there above
    if digest is not None:
        digest = parse_digest(digest)
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(nm.group(1), nm.group(2), tag, digest)
