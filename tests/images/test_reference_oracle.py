"""budu.images.reference matches references by hand (no `re` on the run path); this keeps the
regex implementation it replaced, distribution/reference's regexps verbatim, as an oracle and checks
that both give the same reference or the same error for thousands of inputs."""

from __future__ import annotations

import random
import re

import pytest

from budu.images import reference
from budu.images.reference import InvalidReference, _split_domain, parse, parse_digest

# -- the oracle: the regex parser as it was -------------------------------------------------------

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


def _bad(message: str, text: str) -> InvalidReference:
    return InvalidReference(f"{message} (reference {text!r})")


def oracle_parse(text):  # noqa: ANN001, ANN201
    """The former reference.parse, line for line, returning (domain, path, tag, digest)."""
    if not isinstance(text, str):
        raise InvalidReference(f"invalid reference format: expected a string, got {type(text).__name__}")
    if not text:
        raise InvalidReference("invalid reference format: repository name must have at least one component")
    if _IDENTIFIER_RE.fullmatch(text):
        raise InvalidReference(f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings")
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
    if len(name) > 255:
        raise _bad("invalid reference format: repository name must not be more than 255 characters", text)
    nm = _NAME_RE.fullmatch(name)
    if nm.group(1) is None:
        # The regex parser stopped on an assert here (a host by docker's split that is no valid
        # domain, `foo_bar.com/x`); the hand parser calls it what it is.
        raise _bad("invalid reference format", text)
    if digest is not None:
        digest = parse_digest(digest)
    if tag is None and digest is None:
        tag = "latest"
    return nm.group(1), nm.group(2), tag, digest


def outcome(fn, text):  # noqa: ANN001, ANN201
    try:
        r = fn(text)
    except InvalidReference as e:
        return ("error", type(e).__name__, str(e))
    if isinstance(r, reference.Reference):
        return ("ok", r.domain, r.path, r.tag, r.digest)
    return ("ok", *r)


# -- the inputs ------------------------------------------------------------------------------------

H = "0123456789abcdef"
D256 = "sha256:" + "a" * 64

FIXED = [
    "", "a", "A", "0", "-", ".", "_", "/", ":", "@", "a/b", "busybox", "busybox:latest", "busybox:1.36.1",
    "library/busybox", "docker.io/busybox", "docker.io/library/busybox", "index.docker.io/busybox",
    "index.docker.io/library/busybox:1", "docker.io/library/a/b", "user/app", "user/sub/app:v",
    "localhost", "localhost:5000", "localhost/foo", "localhost:5000/foo", "localhost:5000/ns/repo:tag",
    "localhost:5000/Foo:tag", "localhost_x:5/x", "LOCALHOST/foo", "Localhost:5000/foo",
    "[::1]/foo", "[::1]:5000/foo", "[::1]:5000/foo:bar", "[fe80::1%eth0]/foo", "[fe80::1]/foo/bar:x",
    "[::1/foo", "[]/foo", "[::1]]/foo", "[::1]:/foo", "[::1]:a/foo", "[::1]x/foo", "[:g:]/foo",
    "[ABCDEF::1]:1/foo", "::1/foo", "[::1]", "[::1]:5000", "x/[::1]",
    "127.0.0.1/foo", "127.0.0.1:5000/foo", "127.0.0.1:5000:5000/foo", "1.2.3.4.5/x",
    "host.com:port/foo", "host.com:/foo", ":5000/foo", "host.com:5000", "-host.com/foo", "host-.com/foo",
    "host..com/foo", ".host.com/foo", "host.com./foo", "ho-st.com/foo", "ho--st.com/foo", "h.c/f",
    "foo_bar.com/x", "a__b.com/x", "a_b:1/x", "Foo/bar", "Foo_bar/x", "FOO/BAR", "Example/foo", "Ex-ample/foo",
    "example.com/a--b", "example.com/a---b", "a-b", "a--b", "a---b", "a_b", "a__b", "a___b", "a.b",
    "a..b", "a._b", "a_.b", "a-.b", "a.-b", "a_-b", "a-_b", "-a", "a-", "_a", "a_", ".a", "a.",
    "a/.b", "a//b", "a/b/", "/a", "a/-b", "a/b-", "a/b.c_d-e__f--g", "ghcr.io/o-r_g/re.po__x",
    "busy box", "busybox\n", "\nbusybox", "busybox ", " busybox", "busy\tbox", "busybóx", "busybox:tág",
    "busybox:", "busybox@", ":tag", "@" + D256, "busybox:tag:tag", "busybox:tag@", "busybox@@" + D256,
    "busybox:" + "t" * 127, "busybox:" + "t" * 128, "busybox:" + "t" * 129, "busybox:-tag", "busybox:.tag",
    "busybox:_tag", "busybox:Tag", "busybox:TAG", "busybox:t-a.g_", "busybox:t/g", "busybox:1.0@" + D256,
    "busybox@" + D256, "busybox@sha256:abc", "busybox@sha256:" + "a" * 31, "busybox@sha256:" + "a" * 32,
    "busybox@sha256:" + "a" * 63, "busybox@sha256:" + "a" * 65, "busybox@sha256:" + "A" * 64,
    "busybox@sha512:" + H * 8, "busybox@sha384:" + "b" * 96, "busybox@md5:" + "a" * 32,
    "busybox@SHA256:" + "a" * 64, "busybox@sha-256:" + "a" * 64, "busybox@sha+256:" + "a" * 64,
    "busybox@sha256+b64u:" + "a" * 64, "busybox@s1.x_y-z+w:" + "a" * 64, "busybox@1sha:" + "a" * 64,
    "busybox@sha256:" + "g" * 64, "busybox@:" + "a" * 64, "busybox@sha256" + "a" * 64,
    "busybox@sha256::" + "a" * 64, "busybox@sha--256:" + "a" * 64, "busybox@sha.:" + "a" * 64,
    "busybox@sha256:" + "a" * 64 + "@x", "localhost:5000/x@" + D256, "localhost:5000/x:y@" + D256,
    "a" * 64, "A" * 64, "a" * 63, "a" * 65, "sha256:" + "a" * 64, "f" * 64 + ":tag", "docker.io/" + "a" * 64,
    "a" * 200, "a" * 236, "a" * 237, "a" * 238, "a" * 240, "a" * 255, "a" * 256, "a" * 300,
    "library/" + "a" * 237, "library/" + "a" * 238, "quay.io/" + "a" * 247, "quay.io/" + "a" * 248,
    "x" * 100 + "/" + "y" * 100 + "/" + "z" * 100, "a" * 300 + ":bad tag",
    "İstanbul/x", "ǅ/x", "x/İ", "ß", "Ⅻ/x", "x:٣", "localhost:٣/x", "[::١]/x",
    "docker.io/Busybox", "docker.io/library/Busybox", "user/App", "Busybox", "Busybox:latest",
    "Busybox@" + D256, "docker.io/busybox:Latest", "UPPER", "a/B/c", "a/b:C/d",
    "index.docker.io", "index.docker.io/", "docker.io", "docker.io/", "docker.io/library",
    "quay.io", "quay.io/", "quay.io/a", "a.b/c:d:e", "a:b/c", "a:1/b", "a:b:c/d",
]

_PIECES = ["a", "b", "z", "0", "9", "x1", "A", "Z", "-", "--", "---", ".", "..", "_", "__", "___", "/", "//",
           ":", "::", "@", "[", "]", "[::1]", "localhost", "docker.io", "index.docker.io", "library/",
           "example.com", ":5000", "sha256:", "sha512:", "a" * 32, "f" * 64, H * 8, " ", "é", "+", "\n",
           "latest", "1.0", "Tag", "_t"]


def _generated(n: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        out.append("".join(rnd.choice(_PIECES) for _ in range(rnd.randint(1, 8))))
    return out


def _structured(n: int, seed: int) -> list[str]:
    """Mostly valid shapes (domain/path:tag@digest) with a part or a character mutated."""
    rnd = random.Random(seed)
    comps = ["a", "ab", "a-b", "a--b", "a.b", "a_b", "a__b", "a1", "1a", "x9-y", "ubuntu", "my.app_x"]
    domains = ["", "", "localhost", "localhost:5000", "example.com", "Ex.com", "reg.io:443", "[::1]",
               "[::1]:5000", "127.0.0.1:80", "docker.io", "index.docker.io", "Foo", "a-b.c"]
    tags = ["", "", "latest", "1.0", "v1_2-3", "T", "_x", "x" * 128, "x" * 129]
    digests = ["", "", D256, "sha512:" + H * 8, "sha256:" + "b" * 32, "sha1:" + "c" * 40]
    alphabet = "aZ09-._/:@[]é A"
    out = []
    for _ in range(n):
        path = "/".join(rnd.choice(comps) for _ in range(rnd.randint(1, 3)))
        d = rnd.choice(domains)
        s = (d + "/" if d else "") + path
        t, dg = rnd.choice(tags), rnd.choice(digests)
        if t:
            s += ":" + t
        if dg:
            s += "@" + dg
        for _ in range(rnd.choice((0, 0, 1, 1, 2))):
            i = rnd.randrange(len(s) + 1)
            op = rnd.randrange(3)
            if op == 0:
                s = s[:i] + rnd.choice(alphabet) + s[i:]
            elif op == 1 and i < len(s):
                s = s[:i] + s[i + 1:]
            elif i < len(s):
                s = s[:i] + s[i].upper() + s[i + 1:]
        out.append(s)
    return out


CASES = FIXED + _generated(3000, 1) + _structured(4000, 2)


def test_the_inputs_cover_both_outcomes():
    outcomes = [outcome(oracle_parse, t)[0] for t in CASES]
    assert outcomes.count("ok") > 1000 and outcomes.count("error") > 1000
    messages = {outcome(oracle_parse, t)[2].split(" (reference")[0] for t in CASES
                if outcome(oracle_parse, t)[0] == "error"}
    assert len(messages) >= 6, messages  # every kind of error is exercised


@pytest.mark.parametrize("chunk", range(0, len(CASES), 500))
def test_same_as_the_regex_parser(chunk):
    bad = [(t, outcome(oracle_parse, t), outcome(parse, t)) for t in CASES[chunk:chunk + 500]
           if outcome(oracle_parse, t) != outcome(parse, t)]
    assert not bad, bad[:5]


@pytest.mark.parametrize("text", [None, 1, b"busybox"])
def test_not_a_string(text):
    assert outcome(oracle_parse, text) == outcome(parse, text)


def test_with_tag_same_as_the_regex():
    rnd = random.Random(3)
    tags = ["", "a", "_", "-", ".", "a-", "-a", ".a", "a.b", "A_b-c.D", "t" * 128, "t" * 129, "tág", "a b",
            "a:b", "a/b", "a\n", "٣", "x@y"]
    tags += ["".join(rnd.choice("aZ9_.-:/é ") for _ in range(rnd.randint(0, 6))) for _ in range(2000)]
    r = parse("localhost:5000/x")
    for t in tags:
        want = _TAG_RE.fullmatch(t) is not None
        try:
            got = r.with_tag(t) == reference.Reference("localhost:5000", "x", t, None)
        except InvalidReference:
            got = False
        assert got == want, t


def test_generated_valid_grammar_pieces():
    """Each grammar piece on its own, against its regex, over random strings of its alphabet."""
    rnd = random.Random(4)
    checks = [
        (reference._is_path_component, re.compile(_PATH_COMPONENT, re.ASCII), "ab09._-A/"),
        (reference._is_remote_name, re.compile(_REMOTE_NAME, re.ASCII), "ab0._-/"),
        (reference._is_domain, re.compile(_DOMAIN, re.ASCII), "aZ09-.:[]f/"),
        (reference._is_tag, re.compile(_TAG, re.ASCII), "aZ9_.-:é"),
        (reference._is_digest, re.compile(_DIGEST, re.ASCII), "aZ9f-_+.:"),
    ]
    for fn, rx, alphabet in checks:
        for _ in range(3000):
            s = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12)))
            assert fn(s) == (rx.fullmatch(s) is not None), (fn.__name__, s)
    hexes = ["sha256:" + "a" * n for n in (0, 1, 31, 32, 33, 64)] + ["a+b.c-d_e:" + "F" * 32, "a:" + "0" * 32]
    for s in hexes:
        assert reference._is_digest(s) == (checks[4][1].fullmatch(s) is not None), s
