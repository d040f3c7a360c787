"""Go's values the way docker's templates see and print them: fmt's %v and Sprintf, encoding/json, strconv.Quote.

Python values stand for Go's: str, int, float (float64), bool, None (nil), list (a slice), dict
(a struct: its order is kept) and Map (a map: its keys are sorted). NO_VALUE is what Go prints
as <no value>, a key a map lacks. A callable stands for a method, so for its value.
"""

from __future__ import annotations

__all__ = ["Map", "NO_VALUE", "UnsupportedValue", "fmt_v", "go_type", "lazy", "print_value", "quote", "rune_name",
           "sorted_keys", "sprint", "sprintf", "to_json"]


class _NoValue:
    """What Go prints as <no value>: a key a map does not have."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_VALUE"

    def __bool__(self) -> bool:
        return False


NO_VALUE = _NoValue()


class Map(dict):
    """A Go map: a missing key is <no value> rather than an error, and json writes keys sorted."""

    def __missing__(self, key: object) -> object:
        return NO_VALUE


class UnsupportedValue(ValueError):
    """A value Go's encoding/json refuses: NaN, an infinity, something that is not data."""


def go_type(v: object) -> str:
    """The Go type a value stands for, as Go's messages name it."""
    if v is None or v is NO_VALUE:
        return "<nil>"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "[]interface {}"
    if isinstance(v, dict):
        return "map[string]interface {}"
    return type(v).__name__


def sorted_keys(d: dict) -> list:
    """A map's keys in the order Go prints and ranges over them."""
    try:
        return sorted(d)
    except TypeError:
        return sorted(d, key=lambda k: (type(k).__name__, str(k)))


def print_value(v: object) -> str:
    """What {{.X}} writes: Go's %v, and <no value> for a key a map lacks."""
    if type(v) is str:
        return v
    if v is NO_VALUE:
        return "<no value>"
    return fmt_v(v)


def fmt_v(v: object) -> str:
    """Go's fmt %v."""
    if isinstance(v, str):
        return str.__str__(v)
    if v is None or v is NO_VALUE:
        return "<nil>"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        return _float_v(v)
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(fmt_v(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{fmt_v(k)}:{fmt_v(lazy(dict.__getitem__(v, k)))}" for k in sorted_keys(v)) + "]"
    if callable(v):
        return fmt_v(v())
    return str(v)


def lazy(v: object) -> object:
    """A method (a callable field) stands for its value when printed or marshalled."""
    return v() if callable(v) else v


def _digits(f: float) -> tuple[str, int]:
    """The shortest decimal digits that give back f (> 0), and the decimal point's place: f = 0.DIGITS * 10**dp."""
    mant, _, exp = repr(f).partition("e")
    ip, _, fp = mant.partition(".")
    digits = ip + fp
    dp = int(exp or 0) + len(ip)
    stripped = digits.lstrip("0")
    dp -= len(digits) - len(stripped)
    return stripped.rstrip("0") or "0", dp


def _fmt_e(digits: str, dp: int, prec: int, e: str = "e") -> str:
    frac = (digits[1:] + "0" * prec)[:prec]
    x = dp - 1 if digits != "0" else 0
    return digits[0] + ("." + frac if prec > 0 else "") + e + ("-" if x < 0 else "+") + f"{abs(x):02d}"


def _fmt_f(digits: str, dp: int, prec: int) -> str:
    whole = digits[:dp] + "0" * (dp - len(digits)) if dp > 0 else "0"
    frac = ("0" * -dp + digits if dp < 0 else digits[dp:]) if dp < len(digits) else ""
    frac = (frac + "0" * prec)[:prec]
    return whole + ("." + frac if prec > 0 else "")


def _float_special(f: float) -> str | None:
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    return None


def _float_v(f: float, e: str = "e") -> str:
    """Go's %v (and %g) for a float64: the shortest digits, in %e form below 1e-4 and from 1e6 up."""
    special = _float_special(f)
    if special:
        return special
    sign = "-" if f < 0 or (f == 0 and str(f)[0] == "-") else ""
    if f == 0:
        return sign + "0"
    digits, dp = _digits(abs(f))
    x = dp - 1
    if x < -4 or x >= 6:  # strconv's shortest %g decides with precision 6: 1e+06, 123456, 1e-05, 0.0001
        return sign + _fmt_e(digits, dp, len(digits) - 1, e)
    return sign + _fmt_f(digits, dp, max(len(digits) - dp, 0))


def _json_float(f: float) -> str:
    """Go's encoding/json for a float64."""
    if _float_special(f):
        raise UnsupportedValue(f"json: unsupported value: {_float_special(f)}")
    if f == 0:
        return "-0" if str(f)[0] == "-" else "0"
    sign = "-" if f < 0 else ""
    digits, dp = _digits(abs(f))
    if abs(f) < 1e-6 or abs(f) >= 1e21:
        s = _fmt_e(digits, dp, len(digits) - 1)
        if s[-4:-1] == "e-0":  # e-07 -> e-7, as Go's encoder writes it
            s = s[:-2] + s[-1]
        return sign + s
    return sign + _fmt_f(digits, dp, max(len(digits) - dp, 0))


_JSON_ESCAPES = {i: f"\\u{i:04x}" for i in range(0x20)}
_JSON_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t",
                      ord("\b"): "\\b", ord("\f"): "\\f", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def to_json(v: object) -> str:
    """Go's json.Encoder with SetEscapeHTML(false), as docker's json function uses it.

    A plain dict keeps its order (a struct's fields); a Map's keys are sorted (a map's)."""
    if isinstance(v, str):
        return '"' + v.translate(_JSON_ESCAPES) + '"'
    if v is None or v is NO_VALUE:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        return _json_float(v)
    if isinstance(v, dict):
        keys = sorted_keys(v) if isinstance(v, Map) else list(v)
        return "{" + ",".join(to_json(str(k)) + ":" + to_json(lazy(dict.__getitem__(v, k))) for k in keys) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(to_json(x) for x in v) + "]"
    if callable(v):
        return to_json(v())
    raise UnsupportedValue(f"json: unsupported type: {type(v).__name__}")


# ---------------------------------------------------------------------------------------------
# Go's fmt: Sprintf, Sprint, strconv.Quote

class _Spec:
    __slots__ = ("flags", "width", "prec")

    def __init__(self, flags: str, width: int | None, prec: int | None) -> None:
        self.flags, self.width, self.prec = flags, width, prec


def quote(s: str, ascii_only: bool = False) -> str:
    """Go's strconv.Quote."""
    out = ['"']
    for c in s:
        if c == '"' or c == "\\":
            out.append("\\" + c)
        elif c.isprintable() and not (ascii_only and c > "\x7e"):
            out.append(c)
        elif c in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(c)])
        elif c < " " or c == "\x7f":
            out.append(f"\\x{ord(c):02x}")
        elif ord(c) < 0x10000:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(f"\\U{ord(c):08x}")
    out.append('"')
    return "".join(out)


def rune_name(c: str) -> str:
    """Go's %#U: U+0023 '#'."""
    return f"U+{ord(c):04X}" + (f" '{c}'" if c.isprintable() else "")


def _pad(s: str, spec: _Spec, zeros: bool = True) -> str:
    w = spec.width
    if w is None or len(s) >= w:
        return s
    if "-" in spec.flags:
        return s + " " * (w - len(s))
    if zeros and "0" in spec.flags:
        return "0" * (w - len(s)) + s
    return " " * (w - len(s)) + s


def _bad_verb(verb: str, arg: object) -> str:
    if arg is None or arg is NO_VALUE:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({go_type(arg)}={fmt_v(arg)})"


def _sign(negative: bool, flags: str) -> str:
    return "-" if negative else "+" if "+" in flags else " " if " " in flags else ""


def _fmt_int(n: int, verb: str, spec: _Spec) -> str:
    flags = spec.flags
    prefix = ""
    a = abs(n)
    if verb in "vd":
        digits = str(a)
    elif verb in "xX":
        digits = format(a, verb)
        prefix = ("0" + verb) if "#" in flags else ""
    elif verb == "o":
        digits = format(a, "o")
        prefix = "0" if "#" in flags else ""
    elif verb == "O":
        digits, prefix = format(a, "o"), "0o"
    elif verb == "b":
        digits = format(a, "b")
    elif verb == "c":
        return _pad(chr(n) if 0 <= n <= 0x10FFFF else "\ufffd", spec, False)
    elif verb == "q":
        c = chr(n) if 0 <= n <= 0x10FFFF else "\ufffd"
        return _pad("'" + ("\\'" if c == "'" else quote(c)[1:-1].replace('\\"', '"')) + "'", spec, False)
    elif verb == "U":
        return _pad(f"U+{n:04X}", spec, False)
    else:
        return _bad_verb(verb, n)
    sign = _sign(n < 0, flags)
    if spec.prec is not None:
        digits = "" if spec.prec == 0 and a == 0 else digits.rjust(spec.prec, "0")
    elif "0" in flags and "-" not in flags and spec.width:
        digits = digits.rjust(spec.width - len(sign), "0")
    return _pad(sign + prefix + digits, spec, False)


def _fmt_float(f: float, verb: str, spec: _Spec) -> str:
    if verb not in "vgGeEfF":
        return _bad_verb(verb, f)
    flags = spec.flags
    special = _float_special(f)
    if special:  # never zero-padded; +Inf keeps its sign, NaN shows one only when asked
        if special == "NaN":
            special = _sign(False, flags) + special
        elif special == "+Inf" and " " in flags and "+" not in flags:
            special = " Inf"
        return _pad(special, spec, False)
    negative = f < 0 or (f == 0 and str(f)[0] == "-")
    a = abs(f)
    upper = verb in "GE"
    if verb in "vgG" and spec.prec is None:
        body = _float_v(a, "E" if upper else "e")
    elif verb in "vgG":
        body = format(a, ("#" if "#" in flags else "") + f".{spec.prec}" + ("G" if upper else "g"))
    elif verb in "eE":
        body = format(a, f".{6 if spec.prec is None else spec.prec}" + verb)
    else:
        body = format(a, f".{6 if spec.prec is None else spec.prec}f")
    sign = _sign(negative, flags)
    if "0" in flags and "-" not in flags and spec.width:
        body = body.rjust(spec.width - len(sign), "0")
    return _pad(sign + body, spec, False)


def _fmt_str(s: str, verb: str, spec: _Spec) -> str:
    s = str.__str__(s)
    if spec.prec is not None:
        s = s[:spec.prec]
    if verb in "vs":
        return _pad(s, spec)
    if verb == "q":
        if "#" in spec.flags and "`" not in s and all(c.isprintable() or c == "\t" for c in s):
            return _pad("`" + s + "`", spec)
        return _pad(quote(s, "+" in spec.flags), spec)
    if verb in "xX":
        h = s.encode("utf-8", "surrogateescape").hex()
        if verb == "X":
            h = h.upper()
        if " " in spec.flags:
            pairs = [h[i:i + 2] for i in range(0, len(h), 2)]
            h = " ".join(("0" + verb if "#" in spec.flags else "") + p for p in pairs)
        elif "#" in spec.flags and h:
            h = "0" + verb + h
        return _pad(h, spec)
    return _bad_verb(verb, s)


def _fmt_arg(arg: object, verb: str, spec: _Spec) -> str:
    if verb == "T":
        return _pad(go_type(arg), spec, False)
    if arg is None or arg is NO_VALUE:
        return _pad("<nil>", spec, False) if verb == "v" else _bad_verb(verb, None)
    if isinstance(arg, bool):
        return _pad("true" if arg else "false", spec, False) if verb in "tv" else _bad_verb(verb, arg)
    if isinstance(arg, int):
        return _fmt_int(arg, verb, spec)
    if isinstance(arg, float):
        return _fmt_float(arg, verb, spec)
    if isinstance(arg, str):
        return _fmt_str(arg, verb, spec)
    if isinstance(arg, (list, tuple)):
        return "[" + " ".join(_fmt_arg(x, verb, spec) for x in arg) + "]"
    if isinstance(arg, dict):
        return "map[" + " ".join(f"{_fmt_arg(k, verb, spec)}:{_fmt_arg(lazy(dict.__getitem__(arg, k)), verb, spec)}"
                                 for k in sorted_keys(arg)) + "]"
    return _pad(fmt_v(arg), spec)


def sprintf(fmt: str, *args: object) -> str:
    """Go's fmt.Sprintf: flags + - # space 0, width and precision (or *), the verbs Go has, Go's %!errors."""
    out: list[str] = []
    i, n, argi = 0, len(fmt), 0

    def star() -> int | None:
        """A width or precision taken from the arguments."""
        nonlocal argi
        if argi >= len(args):
            return None
        argi += 1
        value = args[argi - 1]
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        i = j + 1
        flags = ""
        while i < n and fmt[i] in "+-# 0":
            flags += fmt[i]
            i += 1
        width = prec = None
        if i < n and fmt[i] == "*":
            i += 1
            width = star()
            if width is None:
                out.append("%!(BADWIDTH)")
            elif width < 0:
                flags, width = flags + "-", -width
        else:
            s = i
            while i < n and "0" <= fmt[i] <= "9":
                i += 1
            width = int(fmt[s:i]) if i > s else None
        if i < n and fmt[i] == ".":
            i += 1
            if i < n and fmt[i] == "*":
                i += 1
                prec = star()
                if prec is None or prec < 0:
                    out.append("%!(BADPREC)")
                    prec = None
            else:
                s = i
                while i < n and "0" <= fmt[i] <= "9":
                    i += 1
                prec = int(fmt[s:i]) if i > s else 0
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
        elif argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
        else:
            out.append(_fmt_arg(args[argi], verb, _Spec(flags, width, prec)))
            argi += 1
    if argi < len(args):
        extra = (f"{go_type(a)}={fmt_v(a)}" if a is not None else "<nil>" for a in args[argi:])
        out.append("%!(EXTRA " + ", ".join(extra) + ")")
    return "".join(out)


def sprint(*args: object) -> str:
    """Go's fmt.Sprint: a space between operands when neither is a string."""
    out: list[str] = []
    prev_str = False
    for i, a in enumerate(args):
        is_str = isinstance(a, str)
        if i and not is_str and not prev_str:
            out.append(" ")
        out.append(fmt_v(a))
        prev_str = is_str
    return "".join(out)
