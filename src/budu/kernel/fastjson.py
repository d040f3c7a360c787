"""JSON through CPython's C accelerator alone.

`import json` pulls in `re` and `enum`, about 20 ms on a small VM — more than half of what runc
needs to start a whole container.  The runtime reads and writes JSON on every start, so it uses
the same C scanner and encoder that `json` uses, without the Python wrappers around them.
Output is identical to `json.dumps(..., separators=(",", ":"))`.
"""

from __future__ import annotations

try:
    import _json
except ImportError:  # pragma: no cover - other Pythons: fall back to the stdlib module
    _json = None


class _Ctx:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = None
    memo: dict = {}


_WS = " \t\n\r"


def loads(text: str | bytes) -> object:
    """Parse one JSON document; ValueError (like json's) on malformed input."""
    if isinstance(text, (bytes, bytearray)):
        # a BOM is skipped by hand: the utf-8-sig codec is one more module to import
        text = (text[3:] if text[:3] == b"\xef\xbb\xbf" else text).decode("utf-8")
    if _json is None:  # pragma: no cover
        import json

        return json.loads(text)
    ctx = _Ctx()
    ctx.memo = {}

    def _constant(name: str) -> float:
        raise ValueError(f"invalid JSON constant {name}")

    ctx.parse_constant = _constant
    scan = _json.make_scanner(ctx)
    i = 0
    n = len(text)
    while i < n and text[i] in _WS:
        i += 1
    try:
        obj, end = scan(text, i)
        while end < n and text[end] in _WS:
            end += 1
        if end == n:
            return obj
    except Exception:  # noqa: BLE001 - the C scanner's errors are raw; let json word them
        pass
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON: {e}") from None


def dumps(obj: object, indent: int | None = None) -> str:
    """Serialize compactly, or with `indent` for files and output people read (the same text as
    json.dumps(obj, indent=indent): `budu-runtime state`, which containerd calls often, prints so)."""
    if _json is None:  # pragma: no cover
        import json

        return json.dumps(obj, indent=indent, separators=(",", ": ") if indent else (",", ":"))
    if indent is not None:
        return _indented(obj, " " * indent, "\n")

    def _default(o: object) -> object:
        raise TypeError(f"{type(o).__name__} is not JSON serializable")

    enc = _json.make_encoder({}, _default, _json.encode_basestring_ascii, None, ":", ",", False, False, True)
    return "".join(enc(obj, 0))


def _indented(obj: object, step: str, nl: str) -> str:
    """json.dumps(obj, indent=len(step)) for the types JSON has: containers here, scalars by the C
    encoder."""
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        inner = nl + step
        items = []
        for k, v in obj.items():
            if not isinstance(k, str):  # json's rule: a scalar key is written as its JSON text, quoted
                if not (isinstance(k, (int, float)) or k is None):
                    raise TypeError(f"keys must be str, int, float, bool or None, not {type(k).__name__}")
                k = dumps(k)
            items.append(f"{_json.encode_basestring_ascii(k)}: {_indented(v, step, inner)}")
        return "{" + inner + ("," + inner).join(items) + nl + "}"
    if isinstance(obj, (list, tuple)):
        if not obj:
            return "[]"
        inner = nl + step
        return "[" + inner + ("," + inner).join(_indented(v, step, inner) for v in obj) + nl + "]"
    return dumps(obj)

