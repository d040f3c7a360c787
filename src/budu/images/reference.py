"""Image references (`busybox`, `localhost:5000/ns/repo:tag@sha256:...`), parsed as Docker does.

The grammar, the normalization (`busybox` -> `docker.io/library/busybox:latest`) and the error
wording follow distribution/reference's `ParseNormalizedNamed` + `TagNameOnly`, so that every name
a docker user types means the same image here.  Two deliberate details, both docker's own: a first
component with an uppercase letter is taken for a domain (`Foo/bar` is host `Foo`, not a bad path),
and a separator may be a run of dashes (`a--b`).
"""

from __future__ import annotations

from budu.errors import ConfigError
from budu.plain import Frozen

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_MAX = 255

# distribution/reference regexp.go, matched by hand: `re` costs ~9 ms to import and parse() runs on
# every `budu run`.  tests/images/test_reference_oracle.py holds the regexes and checks that both
# agree.  Every class is ASCII-only, as Go's are.
_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = frozenset("0123456789")
_ALNUM = _LOWER | _DIGITS                           # [a-z0-9]
_LETTERS = _LOWER | _UPPER                          # [A-Za-z]
_DOMAIN_CHARS = _LETTERS | _DIGITS | {"-"}          # [a-zA-Z0-9-]
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:")  # [a-fA-F0-9:]
_WORD = _LETTERS | _DIGITS | {"_"}                  # \w under re.ASCII
_TAG_CHARS = _WORD | {".", "-"}
_ANY_HEX = frozenset("0123456789abcdefABCDEF")


def _is_path_component(s: str) -> bool:
    """[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"""
    if not s or s[0] not in _ALNUM or s[-1] not in _ALNUM:
        return False
    sep = ""
    for ch in s:
        if ch in _ALNUM:
            if sep:
                if not (sep in (".", "_", "__") or sep == "-" * len(sep)):
                    return False
                sep = ""
        elif ch in "._-":
            sep += ch
        else:
            return False
    return True


def _is_remote_name(s: str) -> bool:
    """path-component(?:/path-component)*"""
    return all(_is_path_component(c) for c in s.split("/"))


def _is_domain(s: str) -> bool:
    """host(?::[0-9]+)? where host is dotted [a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])? components or
    an IPv6 literal in brackets."""
    if s[:1] == "[":
        close = s.find("]")
        if close < 2 or not set(s[1:close]) <= _IPV6_CHARS:
            return False
        rest = s[close + 1:]
        if not rest:
            return True
        host, port = "", rest[1:] if rest[0] == ":" else None
        if port is None:
            return False
    else:
        host, colon, port = s.partition(":")
        if not colon:
            port = None
        for c in host.split("."):
            if not c or c[0] == "-" or c[-1] == "-" or not set(c) <= _DOMAIN_CHARS:
                return False
    return port is None or (port != "" and set(port) <= _DIGITS)


def _is_tag(s: str) -> bool:
    """[\w][\w.-]{0,127}"""
    return 0 < len(s) <= 128 and s[0] in _WORD and set(s) <= _TAG_CHARS


def _is_digest(s: str) -> bool:
    """[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"""
    algo, colon, hexpart = s.partition(":")
    if not colon or len(hexpart) < 32 or not set(hexpart) <= _ANY_HEX:
        return False
    start = True  # at the start of an algorithm component: a letter must come
    for ch in algo:
        if start:
            if ch not in _LETTERS:
                return False
            start = False
        elif ch in "-_+.":
            start = True
        elif ch not in _LETTERS and ch not in _DIGITS:
            return False
    return not start


def _match(full: str) -> tuple[str, str | None, str | None, str | None] | None:
    """The reference grammar, `name(?::tag)?(?:@digest)?` with name `(?:domain/)?remote-name`,
    matched in full: (name, domain or None, tag, digest), or None if `full` is not a reference.

    The split is unambiguous: only a digest holds '@' and has none itself, and a ':' after the
    last '/' can only start a tag (a name's only ':' are in its domain, before a '/')."""
    name, at, digest = full.partition("@")
    if at:
        if not _is_digest(digest):
            return None
    else:
        digest = None
    tag = None
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1:]
        if not _is_tag(tag):
            return None
    first, slash, rest = name.partition("/")
    if slash and _is_domain(first) and _is_remote_name(rest):
        return name, first, tag, digest
    if _is_remote_name(name):
        return name, None, tag, digest
    return None


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


class Reference(Frozen):
    """A fully qualified reference: `domain/path[:tag][@digest]` (tag and digest may both be set)."""

    __slots__ = ("domain", "path", "tag", "digest")
    domain: str
    path: str
    tag: str | None
    digest: str | None

    def __init__(self, domain: str, path: str, tag: str | None = None, digest: str | None = None) -> None:
        self._init(domain=domain, path=path, tag=tag, digest=digest)

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
        if not _is_tag(tag):
            raise InvalidReference(f"invalid tag format: {tag!r}")
        return self.replace(tag=tag)

    def with_digest(self, digest: str) -> Reference:
        """The same repository pinned to `digest` (the tag, if any, is kept)."""
        return self.replace(digest=parse_digest(digest))

    def without_tag(self) -> Reference:
        return self.replace(tag=None)


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
    if len(text) == 64 and set(text) <= _HEX:
        raise InvalidReference(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_domain(text)
    remote = remainder.split(":", 1)[0].split("@", 1)[0]
    if remote.lower() != remote:
        raise _bad("invalid reference format: repository name must be lowercase", text)

    full = f"{domain}/{remainder}"
    m = _match(full)
    if m is None:
        if _match(full.lower()):
            raise _bad("invalid reference format: repository name must be lowercase", text)
        raise _bad("invalid reference format", text)
    name, name_domain, tag, digest = m
    if len(name) > NAME_MAX:
        raise _bad(f"invalid reference format: repository name must not be more than {NAME_MAX} characters", text)
    if name_domain is None:
        # e.g. `foo_bar.com/x`: a host by docker's split that is no valid domain, though the whole
        # is a valid path (docker leaves the domain empty; the regex parser here tripped an assert)
        raise _bad("invalid reference format", text)
    if digest is not None:
        digest = parse_digest(digest)
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(name_domain, name[len(name_domain) + 1:], tag, digest)
