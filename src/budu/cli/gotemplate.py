"""Go's text/template, as docker users type it in --format.

A small implementation of what docker's templates run with: Go's text/template (text and
actions with trim markers and comments; field chains; variables; pipelines; parenthesized
arguments; if/else if/with/else with/range/break/continue; define/template/block; the
builtins and, or, not, len, index, slice, eq, ne, lt, le, gt, ge, print, printf, println,
html, js, urlquery, call) plus docker/cli's templates.go functions (json, split, join,
title, lower, upper, pad, truncate). Values print the way Go's fmt prints them (%v).

budu's data are dicts that stand for docker's structs, so:
  - a field missing from a dict is an error, as a missing struct field is in docker;
  - a `Map` (a dict subclass) is a Go map instead: a missing key is <no value>, json sorts its keys;
  - `index` on a missing key gives <no value>, as in Go;
  - a callable value is a method: it is called (with the arguments given) when the field is used,
    so a costly column is computed only for the templates that name it.

    parse(text) -> Template        parsed once per string (cached); TemplateError if it does not parse
    Template.execute(data) -> str  one object through the template
    Template.header(headers) -> str  docker's table header row for the same template
    render(text, data) -> str      parse + execute

Errors are TemplateError, a ConfigError whose one-line message is Go's.
Nothing but budu.errors and budu.cli.govalue is imported: `budu ps --format` pays for no more.
"""

from __future__ import annotations

from budu.cli import govalue
from budu.cli.govalue import NO_VALUE, Map
from budu.errors import ConfigError

__all__ = ["Map", "NO_VALUE", "Template", "TemplateError", "parse", "render"]


class TemplateError(ConfigError):
    """A template that does not parse, or that fails as it runs; the message is Go's."""


_MISSING = object()  # no piped-in value (Go's missingVal)
_ANY, _STRING, _INT, _STRINGS = "interface {}", "string", "int", "[]string"


# ---------------------------------------------------------------------------------------------
# Lexer: Go's items, each a tuple (kind, text, position)

_SPACE = " \t\r\n"
_KEYWORDS = frozenset(("block", "break", "continue", "define", "else", "end", "if", "nil", "range", "template", "with"))
_TERMINATORS = frozenset(" \t\r\n.,|:)(}=")
(TEXT, LDELIM, RDELIM, SPACE, FIELD, VAR, IDENT, DOT, NUMBER, CHARCONST, STRING, RAW, BOOL, PIPE, LPAREN, RPAREN,
 DECLARE, ASSIGN, CHAR, EOF, ERROR) = ("text", "{{", "}}", "space", "field", "variable", "identifier", ".", "number",
                                       "charconst", "string", "raw", "bool", "|", "(", ")", ":=", "=", "char", "EOF",
                                       "error")


def _alnum(c: str) -> bool:
    return c == "_" or c.isalnum()


def _at_right(text: str, k: int) -> tuple[bool, bool]:
    """Is a right delimiter at k, and is it ' -}}' (which trims the space after it)?"""
    if text.startswith("-}}", k + 1) and k < len(text) and text[k] in _SPACE:
        return True, True
    return text.startswith("}}", k), False


def _after_right(text: str, k: int, trim: bool) -> int:
    if not trim:
        return k + 2
    k += 4
    while k < len(text) and text[k] in _SPACE:
        k += 1
    return k


def _lex(text: str) -> list[tuple[str, str, int]]:
    toks: list[tuple[str, str, int]] = []
    add = toks.append
    n, pos = len(text), 0
    while True:
        j = text.find("{{", pos)
        if j < 0:
            if pos < n:
                add((TEXT, text[pos:], pos))
            add((EOF, "", n))
            return toks
        trim = text.startswith("-", j + 2) and j + 3 < n and text[j + 3] in _SPACE
        seg = text[pos:j].rstrip(_SPACE) if trim else text[pos:j]
        if seg:
            add((TEXT, seg, pos))
        k = j + 4 if trim else j + 2
        if text.startswith("/*", k):
            end = text.find("*/", k + 2)
            if end < 0:
                add((ERROR, "unclosed comment", j))
                return toks
            delim, rtrim = _at_right(text, end + 2)
            if not delim:
                add((ERROR, "comment ends before closing delimiter", j))
                return toks
            pos = _after_right(text, end + 2, rtrim)
            continue
        add((LDELIM, "{{", j))
        pos = _lex_action(text, k, add)
        if pos < 0:
            return toks


def _lex_action(text: str, k: int, add) -> int:
    """Items up to and including the right delimiter; the position after it, or -1 after an error item."""
    n, depth = len(text), 0

    def at_terminator(i: int) -> bool:
        return i >= n or text[i] in _TERMINATORS

    def fail(msg: str, at: int) -> int:
        add((ERROR, msg, at))
        return -1

    while True:
        delim, trim = _at_right(text, k)
        if delim:
            if depth:
                return fail("unclosed left paren", k)
            add((RDELIM, "}}", k))
            return _after_right(text, k, trim)
        if k >= n:
            return fail("unclosed action", k)
        c = text[k]
        if c in _SPACE:
            s = k
            while k < n and text[k] in _SPACE:
                k += 1
            if text.startswith("-}}", k):  # the last space belongs to a ' -}}' trim marker
                k -= 1
                if k == s:
                    continue
            add((SPACE, text[s:k], s))
        elif c == ":":
            if not text.startswith(":=", k):
                return fail("expected :=", k)
            add((DECLARE, ":=", k))
            k += 2
        elif c == "=":
            add((ASSIGN, "=", k))
            k += 1
        elif c == "|":
            add((PIPE, "|", k))
            k += 1
        elif c in "\"'":
            i = k + 1
            while True:
                ch = text[i] if i < n else ""
                if ch == "\\" and i + 1 < n and text[i + 1] != "\n":
                    i += 2
                elif ch in ("", "\n", "\\"):
                    return fail("unterminated quoted string" if c == '"' else "unterminated character constant", k)
                elif ch == c:
                    break
                else:
                    i += 1
            add((STRING if c == '"' else CHARCONST, text[k:i + 1], k))
            k = i + 1
        elif c == "`":
            e = text.find("`", k + 1)
            if e < 0:
                return fail("unterminated raw quoted string", k)
            add((RAW, text[k:e + 1], k))
            k = e + 1
        elif c in "$." and not (c == "." and k + 1 < n and "0" <= text[k + 1] <= "9"):
            e = k + 1
            while e < n and _alnum(text[e]):
                e += 1
            if not at_terminator(e):
                return fail(f"bad character {govalue.rune_name(text[e])}", e)
            add((VAR if c == "$" else DOT if e == k + 1 else FIELD, text[k:e], k))
            k = e
        elif c in "+-." or "0" <= c <= "9":
            e = _scan_number(text, k)
            if e < 0:
                e = -e
                return fail(f"bad number syntax: {govalue.quote(text[k:e])}", k)
            add((NUMBER, text[k:e], k))
            k = e
        elif _alnum(c):
            e = k + 1
            while e < n and _alnum(text[e]):
                e += 1
            if not at_terminator(e):
                return fail(f"bad character {govalue.rune_name(text[e])}", e)
            word = text[k:e]
            add((word if word in _KEYWORDS else BOOL if word in ("true", "false") else IDENT, word, k))
            k = e
        elif c == "(":
            add((LPAREN, c, k))
            depth += 1
            k += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                return fail("unexpected right paren", k)
            add((RPAREN, c, k))
            k += 1
        elif c < "\x7f" and c.isprintable():
            add((CHAR, c, k))
            k += 1
        else:
            return fail(f"unrecognized character in action: {govalue.rune_name(c)}", k)


def _scan_number(text: str, k: int) -> int:
    """The end of the number at k as Go's lexer scans it; negative (minus the end) when malformed."""
    n = len(text)

    def run(i: int, chars: str) -> int:
        while i < n and text[i] in chars:
            i += 1
        return i

    i = k + 1 if text[k] in "+-" else k
    digits = "0123456789_"
    if text.startswith("0", i):
        i += 1
        if i < n and text[i] in "xXoObB":
            digits = {"x": "0123456789abcdefABCDEF_", "o": "01234567_", "b": "01_"}[text[i].lower()]
            i += 1
    i = run(i, digits)
    if i < n and text[i] == ".":
        i = run(i + 1, digits)
    if i < n and text[i] in ("eE" if len(digits) == 11 else "pP" if len(digits) == 23 else ""):
        i = run(i + 2 if i + 1 < n and text[i + 1] in "+-" else i + 1, "0123456789_")
    if i < n and text[i] == "i":
        i += 1
    if i < n and (_alnum(text[i]) or text[i] in "+-"):
        return -(i + 1)
    return i


# ---------------------------------------------------------------------------------------------
# Parse tree

class _Node:
    __slots__ = ("pos",)


class _Text(_Node):
    __slots__ = ("text",)

    def __init__(self, pos: int, text: str) -> None:
        self.pos, self.text = pos, text


class _Pipe(_Node):
    __slots__ = ("decl", "assign", "cmds")

    def __init__(self, pos: int) -> None:
        self.pos, self.decl, self.assign, self.cmds = pos, [], False, []

    def __str__(self) -> str:
        decl = ", ".join(self.decl) + (" = " if self.assign else " := ") if self.decl else ""
        return decl + " | ".join(str(c) for c in self.cmds)


class _Command(_Node):
    __slots__ = ("args",)

    def __init__(self, pos: int) -> None:
        self.pos, self.args = pos, []

    def __str__(self) -> str:
        return " ".join(f"({a})" if type(a) is _Pipe else str(a) for a in self.args)


class _Action(_Node):
    __slots__ = ("pipe",)

    def __init__(self, pos: int, pipe: _Pipe) -> None:
        self.pos, self.pipe = pos, pipe

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


class _Control(_Node):
    """if, with and range: a pipeline, a body, and the list after {{else}} (None without one)."""

    __slots__ = ("kind", "pipe", "body", "alt")

    def __init__(self, kind: str, pos: int, pipe: _Pipe, body: list, alt: list | None) -> None:
        self.kind, self.pos, self.pipe, self.body, self.alt = kind, pos, pipe, body, alt


class _Call(_Node):
    """{{template "name" pipeline}}."""

    __slots__ = ("name", "pipe")

    def __init__(self, pos: int, name: str, pipe: _Pipe | None) -> None:
        self.pos, self.name, self.pipe = pos, name, pipe

    def __str__(self) -> str:
        return "{{template " + govalue.quote(self.name) + (f" {self.pipe}" if self.pipe else "") + "}}"


class _Break(_Node):
    __slots__ = ()


class _Continue(_Node):
    __slots__ = ()


class _End(_Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "{{end}}"


class _Else(_Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "{{else}}"


class _Field(_Node):
    __slots__ = ("names",)

    def __init__(self, pos: int, names: list[str]) -> None:
        self.pos, self.names = pos, names

    def __str__(self) -> str:
        return "".join("." + n for n in self.names)


class _Variable(_Node):
    __slots__ = ("names",)  # names[0] is the variable, "$" or "$x"; the rest are fields

    def __init__(self, pos: int, names: list[str]) -> None:
        self.pos, self.names = pos, names

    def __str__(self) -> str:
        return ".".join(self.names)


class _Chain(_Node):
    __slots__ = ("node", "names")

    def __init__(self, pos: int, node: _Node, names: list[str]) -> None:
        self.pos, self.node, self.names = pos, node, names

    def __str__(self) -> str:
        head = f"({self.node})" if type(self.node) is _Pipe else str(self.node)
        return head + "".join("." + n for n in self.names)


class _Ident(_Node):
    __slots__ = ("name",)

    def __init__(self, pos: int, name: str) -> None:
        self.pos, self.name = pos, name

    def __str__(self) -> str:
        return self.name


class _Literal(_Node):
    """nil, true/false, a number or a string: `value` as Go's untyped constant; `ival` when it is an integer."""

    __slots__ = ("value", "ival", "text")

    def __init__(self, pos: int, value: object, text: str, ival: int | None = None) -> None:
        self.pos, self.value, self.text, self.ival = pos, value, text, ival

    def __str__(self) -> str:
        return self.text


class _Dot(_Node):
    __slots__ = ()

    def __init__(self, pos: int) -> None:
        self.pos = pos

    def __str__(self) -> str:
        return "."


# ---------------------------------------------------------------------------------------------
# Parser: Go's parse.Tree, recursive descent over the items

class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _lex(text)
        self.i = 0
        self.vars = ["$"]
        self.defs: dict[str, list] = {}
        self.range_depth = 0
        self.action_line = 0

    # -- items
    def next(self) -> tuple[str, str, int]:
        tok = self.toks[self.i]
        self.i += 1
        if tok[0] is ERROR:
            line = self.line(tok[2])
            extra = ""
            if self.action_line and line != self.action_line:
                extra = f" in action started at :{self.action_line}"
                if tok[1].endswith(" action"):
                    extra = extra[len(" in action"):]
            self.fail(tok[1] + extra, tok)
        return tok

    def peek(self) -> tuple[str, str, int]:
        return self.toks[self.i]

    def next_non_space(self) -> tuple[str, str, int]:
        tok = self.next()
        while tok[0] is SPACE:
            tok = self.next()
        return tok

    def peek_non_space(self) -> tuple[str, str, int]:
        while self.toks[self.i][0] is SPACE:
            self.i += 1
        return self.toks[self.i]

    def line(self, pos: int) -> int:
        return self.text.count("\n", 0, pos) + 1

    def fail(self, msg: str, tok: tuple | None = None) -> None:
        tok = tok or self.toks[max(self.i - 1, 0)]
        raise TemplateError(f"template: :{self.line(tok[2])}: {msg}")

    def unexpected(self, tok: tuple, context: str) -> None:
        self.fail(f"unexpected {_item_str(tok)} in {context}", tok)

    def expect(self, kind: str, context: str) -> tuple[str, str, int]:
        tok = self.next_non_space()
        if tok[0] is not kind:
            self.unexpected(tok, context)
        return tok

    # -- structure
    def parse(self) -> list:
        root: list = []
        while self.peek()[0] is not EOF:
            if self.peek()[0] is LDELIM:
                start = self.i
                self.next()
                if self.next_non_space()[0] == "define":
                    self.definition()
                    continue
                self.i = start
            node = self.text_or_action()
            if type(node) in (_End, _Else):
                self.fail(f"unexpected {node}")
            root.append(node)
        return root

    def definition(self) -> None:
        tok = self.next_non_space()
        name = self.template_name(tok, "define clause")
        self.expect(RDELIM, "define clause")
        self.defs[name] = self.body_of("define clause")

    def body_of(self, context: str) -> list:
        """A named template's body, up to its {{end}}: its own variables, outside any range."""
        saved = self.vars, self.range_depth
        self.vars, self.range_depth = ["$"], 0
        body, end = self.item_list()
        self.vars, self.range_depth = saved
        if type(end) is not _End:
            self.fail(f"unexpected {end} in {context}")
        return body

    def item_list(self) -> tuple[list, _Node]:
        nodes: list = []
        while self.peek_non_space()[0] is not EOF:
            node = self.text_or_action()
            if type(node) in (_End, _Else):
                return nodes, node
            nodes.append(node)
        self.fail("unexpected EOF")
        raise AssertionError

    def text_or_action(self) -> _Node:
        tok = self.next_non_space()
        if tok[0] is TEXT:
            return _Text(tok[2], tok[1])
        if tok[0] is LDELIM:
            self.action_line = self.line(tok[2])
            return self.action()
        self.unexpected(tok, "input")
        raise AssertionError

    def action(self) -> _Node:
        tok = self.next_non_space()
        kind = tok[0]
        if kind in ("if", "with", "range"):
            return self.control(kind)
        if kind == "else":
            peek = self.peek_non_space()
            if peek[0] in ("if", "with"):  # {{else if ...}}: the "if" starts the else list
                return _Else()
            self.expect(RDELIM, "else")
            return _Else()
        if kind == "end":
            self.expect(RDELIM, "end")
            return _End()
        if kind in ("break", "continue"):
            after = self.next_non_space()
            if after[0] is not RDELIM:
                self.unexpected(after, "{{" + kind + "}}")
            if not self.range_depth:
                self.fail("{{" + kind + "}} outside {{range}}")
            return _Break() if kind == "break" else _Continue()
        if kind == "template":
            name_tok = self.next_non_space()
            name = self.template_name(name_tok, "template clause")
            pipe = None
            if self.next_non_space()[0] is not RDELIM:
                self.i -= 1
                pipe = self.pipeline("template clause")
            return _Call(name_tok[2], name, pipe)
        if kind == "block":
            name_tok = self.next_non_space()
            name = self.template_name(name_tok, "block clause")
            pipe = self.pipeline("block clause")
            self.defs[name] = self.body_of("block clause")
            return _Call(name_tok[2], name, pipe)
        self.i -= 1
        pos = self.peek_non_space()[2]
        return _Action(pos, self.pipeline("command"))

    def control(self, kind: str) -> _Control:
        """if, with or range, its keyword read: the pipeline, the body, {{else}} and its list, {{end}}."""
        mark = len(self.vars)
        pipe = self.pipeline(kind)
        in_range = kind == "range"
        self.range_depth += in_range
        body, nxt = self.item_list()
        self.range_depth -= in_range
        alt = None
        if type(nxt) is _Else:
            if not in_range and self.peek_non_space()[0] == kind:  # {{else if}} / {{else with}}: one {{end}}
                self.next_non_space()
                alt = [self.control(kind)]
            else:
                alt, nxt = self.item_list()
                if type(nxt) is not _End:
                    self.fail(f"expected end; found {nxt}")
        del self.vars[mark:]
        return _Control(kind, pipe.pos, pipe, body, alt)

    def template_name(self, tok: tuple, context: str) -> str:
        if tok[0] not in (STRING, RAW):
            self.unexpected(tok, context)
        return self.unquote(tok)

    def pipeline(self, context: str, end: str = RDELIM) -> _Pipe:
        pipe = _Pipe(self.peek_non_space()[2])
        while self.peek_non_space()[0] is VAR:  # declarations: $x := / $x = / $i, $e :=
            start = self.i
            var = self.next()
            nxt = self.peek_non_space()
            if nxt[0] in (DECLARE, ASSIGN):
                self.next_non_space()
                pipe.assign = nxt[0] is ASSIGN
                pipe.decl.append(var[1])
                self.vars.append(var[1])
            elif nxt[0] is CHAR and nxt[1] == ",":
                self.next_non_space()
                pipe.decl.append(var[1])
                self.vars.append(var[1])
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space()[0] in (VAR, RDELIM, RPAREN):
                        continue
                    self.fail("range can only initialize variables")
                self.fail(f"too many declarations in {context}")
            else:
                self.i = start
            break
        while True:
            tok = self.next_non_space()
            if tok[0] is end:
                if not pipe.cmds:
                    self.fail(f"missing value for {context}")
                for i, cmd in enumerate(pipe.cmds[1:]):
                    if type(cmd.args[0]) in (_Literal, _Dot):
                        self.fail(f"non executable command in pipeline stage {i + 2}")
                if end is RPAREN:
                    self.i -= 1
                return pipe
            if tok[0] in (BOOL, CHARCONST, DOT, FIELD, IDENT, NUMBER, RAW, STRING, VAR, LPAREN, "nil"):
                self.i -= 1
                pipe.cmds.append(self.command())
            else:
                self.unexpected(tok, context)

    def command(self) -> _Command:
        cmd = _Command(self.peek_non_space()[2])
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            tok = self.next()
            if tok[0] is SPACE:
                continue
            if tok[0] in (RDELIM, RPAREN):
                self.i -= 1
            elif tok[0] is not PIPE:
                self.fail(f"unexpected {_item_str(tok)} in operand", tok)
            break
        if not cmd.args:
            self.fail("empty command")
        return cmd

    def operand(self) -> _Node | None:
        node = self.term()
        if node is None or self.peek()[0] is not FIELD:
            return node
        pos = self.peek()[2]
        names = []
        while self.peek()[0] is FIELD:
            names.append(self.next()[1][1:])
        if type(node) is _Field:
            return _Field(node.pos, node.names + names)
        if type(node) is _Variable:
            return _Variable(node.pos, node.names + names)
        if type(node) in (_Literal, _Dot):
            self.fail(f"unexpected . after term {govalue.quote(str(node))}")
        return _Chain(pos, node, names)

    def term(self) -> _Node | None:
        tok = self.next_non_space()
        kind, val, pos = tok
        if kind is IDENT:
            if val not in _FUNCS:
                self.fail(f'function "{val}" not defined')
            return _Ident(pos, val)
        if kind is DOT:
            return _Dot(pos)
        if kind == "nil":
            return _Literal(pos, None, "nil")
        if kind is VAR:
            if val not in self.vars:
                self.fail(f'undefined variable "{val}"')
            return _Variable(pos, [val])
        if kind is FIELD:
            return _Field(pos, [val[1:]])
        if kind is BOOL:
            return _Literal(pos, val == "true", val)
        if kind in (NUMBER, CHARCONST):
            return self.number(tok)
        if kind is LPAREN:
            pipe = self.pipeline("parenthesized pipeline", RPAREN)
            close = self.next()
            if close[0] is not RPAREN:
                self.fail(f"unclosed right paren: unexpected {_item_str(close)}")
            return pipe
        if kind in (STRING, RAW):
            return _Literal(pos, self.unquote(tok), val)
        self.i -= 1
        return None

    def unquote(self, tok: tuple) -> str:
        try:
            return _unquote(tok[1])
        except ValueError:
            self.fail("invalid syntax", tok)
            raise

    def number(self, tok: tuple) -> _Literal:
        kind, text, pos = tok
        if kind is CHARCONST:
            ch = self.unquote(tok)
            if len(ch) != 1:
                self.fail(f"malformed character constant: {text}", tok)
            return _Literal(pos, ord(ch), text, ord(ch))
        if text.endswith("i"):
            self.fail(f"complex numbers are not supported: {govalue.quote(text)}", tok)
        value = _parse_int(text)
        if value is not None:
            return _Literal(pos, value, text, value)
        try:
            f = float.fromhex(text) if "x" in text.lower() else float(text)
        except ValueError:
            self.fail(f"illegal number syntax: {govalue.quote(text)}", tok)
            raise
        if not any(c in text for c in ".eEpP"):
            self.fail(f"integer overflow: {govalue.quote(text)}", tok)
        return _Literal(pos, f, text, int(f) if f.is_integer() else None)


def _parse_int(text: str) -> int | None:
    """Go's strconv.ParseInt(text, 0, 64): 0x, 0o, 0b, a leading 0 for octal, underscores."""
    body = text.lstrip("+-")
    if not body:
        return None
    try:
        if len(body) > 1 and body[0] == "0" and body[1] in "0123456789_":
            v = int(body, 8)
        else:
            v = int(body, 0)
    except ValueError:
        return None
    return -v if text.startswith("-") else v


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def _unquote(text: str) -> str:
    """Go's strconv.Unquote for "...", `...` and '.'; ValueError for invalid syntax."""
    quote, body = text[0], text[1:-1]
    if quote == "`":
        return body.replace("\r", "")
    if "\\" not in body:
        return body
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1] if i + 1 < len(body) else ""
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e == quote:
            out.append(e)
            i += 2
        elif e and e in "01234567":
            digits = body[i + 1:i + 4]
            if len(digits) != 3 or any(d not in "01234567" for d in digits) or int(digits, 8) > 255:
                raise ValueError("invalid syntax")
            out.append(chr(int(digits, 8)))
            i += 4
        elif e in ("x", "u", "U"):
            size = {"x": 2, "u": 4, "U": 8}[e]
            digits = body[i + 2:i + 2 + size]
            if len(digits) != size or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise ValueError("invalid syntax")
            code = int(digits, 16)
            if code > 0x10FFFF or 0xD800 <= code < 0xE000:
                raise ValueError("invalid syntax")
            out.append(chr(code))
            i += 2 + size
        else:
            raise ValueError("invalid syntax")
    return "".join(out)


def _item_str(tok: tuple) -> str:
    """An item the way Go's parser names it in an error."""
    kind, val = tok[0], tok[1]
    if kind is EOF:
        return "EOF"
    if kind is ERROR:
        return val
    if kind in _KEYWORDS or kind is DOT:
        return f"<{val}>"
    if len(val) > 10:
        return govalue.quote(val[:10]) + "..."
    return govalue.quote(val)


# ---------------------------------------------------------------------------------------------
# Execution

class _BreakLoop(Exception):
    pass


class _ContinueLoop(Exception):
    pass


class _FuncError(Exception):
    """A function's own failure: reported as `error calling NAME: message`."""


_MAX_DEPTH = 100


class _Exec:
    __slots__ = ("tpl", "funcs", "out", "vars", "node", "name", "depth")

    def __init__(self, tpl: Template, funcs: dict, data: object) -> None:
        self.tpl, self.funcs, self.out = tpl, funcs, []
        self.vars: list[list] = [["$", data]]
        self.node: _Node | None = None
        self.name = ""
        self.depth = 0

    def error(self, msg: str) -> None:
        """Fail with Go's message: where (line:column of the node), in which template, at what."""
        if self.node is None:
            raise TemplateError(f"template: {self.name}: {msg}")
        text = self.tpl.text[:self.node.pos]
        line = text.count("\n") + 1
        col = self.node.pos - text.rfind("\n") - 1 if line > 1 else self.node.pos
        message = f"template: :{line}:{col}: executing {govalue.quote(self.name)} at <{self.node}>: {msg}"
        raise TemplateError(message.replace("\n", "\\n"))  # one line, whatever the template or value held

    # -- statements
    def walk(self, dot: object, nodes: list) -> None:
        for node in nodes:
            t = type(node)
            if t is _Text:
                self.out.append(node.text)
            elif t is _Action:
                value = self.pipeline(dot, node.pipe)
                if not node.pipe.decl:
                    self.out.append(govalue.print_value(value))
            elif t is _Control:
                if node.kind == "range":
                    self.walk_range(dot, node)
                else:
                    mark = len(self.vars)
                    value = self.pipeline(dot, node.pipe)
                    if _truth(value):
                        self.walk(value if node.kind == "with" else dot, node.body)
                    elif node.alt is not None:
                        self.walk(dot, node.alt)
                    del self.vars[mark:]
            elif t is _Call:
                self.call_template(dot, node)
            elif t is _Break:
                raise _BreakLoop
            elif t is _Continue:
                raise _ContinueLoop

    def walk_range(self, dot: object, node: _Control) -> None:
        outer = len(self.vars)
        value = self.pipeline(dot, node.pipe)
        decl, assign = node.pipe.decl, node.pipe.assign
        mark = len(self.vars)
        self.node = node.pipe
        items = self.range_items(value, len(decl))
        for index, elem in items:
            if decl:
                if assign:
                    self.set_var(decl[0], index if len(decl) > 1 else elem)
                    if len(decl) > 1:
                        self.set_var(decl[1], elem)
                else:
                    self.vars[-1][1] = elem
                    if len(decl) > 1:
                        self.vars[-2][1] = index
            try:
                self.walk(elem, node.body)
            except _ContinueLoop:
                pass
            except _BreakLoop:
                break
            finally:
                del self.vars[mark:]
        if not items and node.alt is not None:
            self.walk(dot, node.alt)
        del self.vars[outer:]

    def range_items(self, value: object, nvars: int) -> list:
        if isinstance(value, (list, tuple)):
            return list(enumerate(value))
        if isinstance(value, dict):
            return [(k, dict.__getitem__(value, k)) for k in govalue.sorted_keys(value)]
        if isinstance(value, int) and not isinstance(value, bool):
            if nvars > 1:
                self.error(f"can't use {value} to iterate over more than one variable")
            return [(i, i) for i in range(value)]
        if value is None or value is NO_VALUE or isinstance(value, _Heading):
            return []
        self.error(f"range can't iterate over {govalue.print_value(value)}")
        raise AssertionError

    def call_template(self, dot: object, node: _Call) -> None:
        self.node = node
        body = self.tpl.defs.get(node.name)
        if body is None:
            self.error(f"template {govalue.quote(node.name)} not defined")
        if self.depth >= _MAX_DEPTH:
            self.error(f"exceeded maximum template depth ({_MAX_DEPTH})")
        new_dot = self.pipeline(dot, node.pipe) if node.pipe else NO_VALUE
        saved = self.vars, self.name
        self.vars, self.name = [["$", new_dot]], node.name
        self.depth += 1
        try:
            self.walk(new_dot, body)
        finally:
            self.depth -= 1
            self.vars, self.name = saved

    # -- variables
    def var_value(self, name: str) -> object:
        for entry in reversed(self.vars):
            if entry[0] == name:
                return entry[1]
        self.error(f"undefined variable: {name}")

    def set_var(self, name: str, value: object) -> None:
        for entry in reversed(self.vars):
            if entry[0] == name:
                entry[1] = value
                return
        self.error(f"undefined variable: {name}")

    # -- expressions
    def pipeline(self, dot: object, pipe: _Pipe) -> object:
        value = _MISSING
        for cmd in pipe.cmds:
            value = self.command(dot, cmd, value)
        for name in pipe.decl:
            if pipe.assign:
                self.set_var(name, value)
            else:
                self.vars.append([name, value])
        return value

    def command(self, dot: object, cmd: _Command, final: object) -> object:
        first = cmd.args[0]
        t = type(first)
        if t is _Field:
            self.node = first
            return self.field_chain(dot, dot, first, first.names, cmd.args, final)
        if t is _Ident:
            return self.function(dot, first, cmd, final)
        if t is _Variable:
            return self.variable(dot, first, cmd.args, final)
        if t is _Chain:
            return self.chain(dot, first, cmd.args, final)
        self.node = first
        if len(cmd.args) > 1 or final is not _MISSING:
            self.error(f"can't give argument to non-function {first}")
        if t is _Pipe:
            return self.pipeline(dot, first)
        if t is _Dot:
            return dot
        if first.text == "nil":
            self.error("nil is not a command")
        return first.value

    def variable(self, dot: object, node: _Variable, args: list, final: object) -> object:
        self.node = node
        value = self.var_value(node.names[0])
        if len(node.names) == 1:
            if len(args) > 1 or final is not _MISSING:
                self.error(f"can't give argument to non-function {node}")
            return value
        return self.field_chain(dot, value, node, node.names[1:], args, final)

    def chain(self, dot: object, node: _Chain, args: list, final: object) -> object:
        receiver = self.arg(dot, _ANY, node.node)
        self.node = node
        return self.field_chain(dot, receiver, node, node.names, args, final)

    def field_chain(self, dot: object, receiver: object, node: _Node, names: list[str], args: list,
                    final: object) -> object:
        for name in names[:-1]:
            receiver = self.field(dot, name, node, None, _MISSING, receiver)
        return self.field(dot, names[-1], node, args, final, receiver)

    def field(self, dot: object, name: str, node: _Node, args: list | None, final: object, receiver: object) -> object:
        has_args = (args is not None and len(args) > 1) or final is not _MISSING
        if isinstance(receiver, _Heading):
            return receiver.child(name)
        if isinstance(receiver, dict):
            try:
                value = receiver[name]
            except KeyError:
                self.error(f"can't evaluate field {name} in type {govalue.go_type(receiver)}")
            if callable(value):
                argv = [self.arg(dot, _ANY, a) for a in (args or [])[1:]]
                if final is not _MISSING:
                    argv.append(_arg(final))
                self.node = node
                try:
                    return value(*argv)
                except TemplateError:
                    raise
                except Exception as e:  # a method's failure is the template's error, on one line
                    self.error(f"error calling {name}: {e}")
            if has_args and not isinstance(value, _Heading):
                self.error(f"{name} is not a method but has arguments")
            return value
        if receiver is NO_VALUE:
            return NO_VALUE
        if receiver is None:
            self.error(f"nil pointer evaluating interface {{}}.{name}")
        self.error(f"can't evaluate field {name} in type {govalue.go_type(receiver)}")

    def function(self, dot: object, ident: _Ident, cmd: _Command, final: object) -> object:
        name = ident.name
        self.node = ident
        args = cmd.args[1:]
        count = len(args) + (final is not _MISSING)
        if name in ("and", "or"):  # they stop at the first argument that decides, as Go's do
            if count < 1:
                self.error(f"wrong number of args for {name}: want at least 1 got 0")
            value: object = None
            for a in args:
                value = self.arg(dot, _ANY, a)
                if _truth(value) == (name == "or"):
                    return value
            return _arg(final) if final is not _MISSING else value
        fn, params, variadic = self.funcs[name]
        if variadic is None and count != len(params):
            self.error(f"wrong number of args for {name}: want {len(params)} got {count}")
        if variadic is not None and count < len(params):
            self.error(f"wrong number of args for {name}: want at least {len(params)} got {count}")
        argv = [self.arg(dot, params[i] if i < len(params) else variadic, a) for i, a in enumerate(args)]
        if final is not _MISSING:
            i = len(argv)
            argv.append(self.check(final, params[i] if i < len(params) else variadic))
        try:
            return fn(*argv)
        except _FuncError as e:
            self.node = cmd
            self.error(f"error calling {name}: {e}")

    def arg(self, dot: object, typ: str, node: _Node) -> object:
        """An argument evaluated for a parameter of type typ (Go's evalArg)."""
        self.node = node
        t = type(node)
        if t is _Dot:
            return self.check(dot, typ)
        if t is _Field:
            return self.check(self.field_chain(dot, dot, node, node.names, [node], _MISSING), typ)
        if t is _Variable:
            return self.check(self.variable(dot, node, [node], _MISSING), typ)
        if t is _Pipe:
            return self.check(self.pipeline(dot, node), typ)
        if t is _Ident:
            return self.check(self.function(dot, node, _single(node), _MISSING), typ)
        if t is _Chain:
            return self.check(self.chain(dot, node, [node], _MISSING), typ)
        # a literal
        if typ is _ANY:
            return node.value
        if node.text == "nil":
            self.error(f"cannot assign nil to {typ}")
        if typ is _STRING and isinstance(node.value, str):
            return node.value
        if typ is _INT and node.ival is not None and not isinstance(node.value, bool):
            return node.ival
        if typ is _STRING:
            self.error(f"expected string; found {node}")
        if typ is _INT:
            self.error(f"expected integer; found {node}")
        self.error(f"can't handle {node} for arg of type {typ}")

    def check(self, value: object, typ: str) -> object:
        """Go's validateType: a value computed at run time, against a parameter's type."""
        if typ is _ANY:
            return None if value is NO_VALUE else value
        if value is NO_VALUE or value is None:
            self.error(f"invalid value; expected {typ}")
        if typ is _STRING and isinstance(value, str):
            return value
        if typ is _INT and isinstance(value, int) and not isinstance(value, bool):
            return value
        if typ is _STRINGS and isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return value
        self.error(f"wrong type for value; expected {typ}; got {govalue.go_type(value)}")


def _single(ident: _Ident) -> _Command:
    """A bare function name used as an argument: a command of one word."""
    cmd = _Command(ident.pos)
    cmd.args.append(ident)
    return cmd


def _arg(value: object) -> object:
    return None if value is NO_VALUE else value


# ---------------------------------------------------------------------------------------------
# Values the way Go sees and prints them

def _truth(v: object) -> bool:
    if v is None or v is NO_VALUE or v is False:
        return False
    if v is True:
        return True
    if isinstance(v, (str, list, tuple, dict)):
        return len(v) > 0
    if isinstance(v, (int, float)):
        return v != 0
    return True


# ---------------------------------------------------------------------------------------------
# Functions: Go's builtins and docker's

def _kind(v: object) -> str | None:
    if v is None or v is NO_VALUE:
        return "nil"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"  # Go would refuse int against float64; docker recipes write both 0 and 0.0
    if isinstance(v, str):
        return "string"
    return None


def _eq(a: object, *others: object) -> bool:
    if not others:
        raise _FuncError("missing argument for comparison")
    ka = _kind(a)
    for b in others:
        kb = _kind(b)
        if ka is None or kb is None:
            raise _FuncError("invalid type for comparison")
        if "nil" in (ka, kb):
            if ka == kb:
                return True
            continue
        if ka != kb:
            raise _FuncError("incompatible types for comparison")
        if a == b:
            return True
    return False


def _lt(a: object, b: object) -> bool:
    ka, kb = _kind(a), _kind(b)
    if ka in (None, "bool", "nil") or kb in (None, "bool", "nil"):
        raise _FuncError("invalid type for comparison")
    if ka != kb:
        raise _FuncError("incompatible types for comparison")
    return a < b  # type: ignore[operator]


def _index(item: object, *indexes: object) -> object:
    for i in indexes:
        if item is None or item is NO_VALUE:
            raise _FuncError("index of untyped nil")
        if isinstance(item, _Heading):
            return item
        if isinstance(item, (list, tuple, str)):
            if i is None or isinstance(i, bool) or not isinstance(i, int):
                raise _FuncError(f"cannot index slice/array with type {govalue.go_type(i)}" if i is not None
                                 else "cannot index slice/array with nil")
            seq = item.encode() if isinstance(item, str) else item  # Go indexes a string's bytes
            if not 0 <= i < len(seq):
                raise _FuncError(f"index out of range: {i}")
            item = seq[i]
        elif isinstance(item, dict):
            if i is None or i is NO_VALUE:
                raise _FuncError("value is nil; should be of type string")
            if not isinstance(i, str) and (isinstance(i, (list, dict)) or any(isinstance(k, str) for k in item)):
                raise _FuncError(f"value has type {govalue.go_type(i)}; should be string")
            item = dict.__getitem__(item, i) if i in item else NO_VALUE
        else:
            raise _FuncError(f"can't index item of type {govalue.go_type(item)}")
    return item


def _slice(item: object, *indexes: object) -> object:
    if item is None or item is NO_VALUE:
        raise _FuncError("slice of untyped nil")
    if not isinstance(item, (list, tuple, str)):
        raise _FuncError(f"can't slice item of type {govalue.go_type(item)}")
    if len(indexes) > 3:
        raise _FuncError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str) and len(indexes) == 3:
        raise _FuncError("cannot 3-index slice a string")
    bounds = [0, len(item), len(item)]
    for n, i in enumerate(indexes):
        if isinstance(i, bool) or not isinstance(i, int):
            raise _FuncError(f"cannot index slice/array with type {govalue.go_type(i)}")
        if not 0 <= i <= len(item):
            raise _FuncError(f"index out of range: {i}")
        bounds[n] = i
    if len(indexes) < 2:
        bounds[1] = len(item)
    if bounds[0] > bounds[1]:
        raise _FuncError(f"invalid slice index: {bounds[0]} > {bounds[1]}")
    if len(indexes) == 3 and bounds[1] > bounds[2]:
        raise _FuncError(f"invalid slice index: {bounds[1]} > {bounds[2]}")
    return item[bounds[0]:bounds[1]]


def _len(item: object) -> int:
    if item is None or item is NO_VALUE:
        raise _FuncError("len of nil pointer")
    if isinstance(item, (str, list, tuple, dict)):
        return len(item)
    raise _FuncError(f"len of type {govalue.go_type(item)}")


def _call(fn: object, *args: object) -> object:
    if not callable(fn):
        raise _FuncError(f"non-function of type {govalue.go_type(fn)}")
    try:
        return fn(*args)
    except Exception as e:  # the function's failure is the template's error
        raise _FuncError(str(e)) from None


def _eval_args(args: tuple) -> str:
    return args[0] if len(args) == 1 and isinstance(args[0], str) else govalue.sprint(*args)


def _html(*args: object) -> str:
    s = _eval_args(args)
    for c, e in (("&", "&amp;"), ("'", "&#39;"), ('"', "&#34;"), ("<", "&lt;"), (">", "&gt;"), ("\0", "\ufffd")):
        s = s.replace(c, e)
    return s


def _js(*args: object) -> str:
    out = []
    for c in _eval_args(args):
        if c in "\\'\"":
            out.append("\\" + c)
        elif c in "<>&=" or c < " ":
            out.append(f"\\u{ord(c):04X}")
        elif c >= "\x80" and not c.isprintable():
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return "".join(out)


def _urlquery(*args: object) -> str:
    from urllib.parse import quote_plus

    return quote_plus(_eval_args(args), safe="")


def _docker_json(v: object) -> str:
    try:
        return govalue.to_json(v)
    except (govalue.UnsupportedValue, RecursionError):  # docker ignores the encoder's error: the result is empty
        return ""


def _split(s: str, sep: str) -> list[str]:
    if sep == "":
        return list(s)
    return s.split(sep)


def _title(s: str) -> str:
    """Go's strings.Title: the first letter of each word upper case, the rest left alone."""
    out, prev = [], " "
    for c in s:
        after_separator = not (prev.isalnum() or prev == "_") if prev < "\x80" else prev.isspace()
        up = c.upper()
        out.append(up if after_separator and len(up) == 1 else c)
        prev = c
    return "".join(out)


def _case(s: str, upper: bool) -> str:
    """Go's strings.ToUpper/ToLower: rune by rune (ß stays ß)."""
    if s.isascii():
        return s.upper() if upper else s.lower()
    out = []
    for c in s:
        m = c.upper() if upper else c.lower()
        out.append(m if len(m) == 1 else c)
    return "".join(out)


def _pad_fn(s: str, prefix: int, suffix: int) -> str:
    if prefix < 0 or suffix < 0:
        raise _FuncError("strings: negative Repeat count")
    return s and " " * prefix + s + " " * suffix


def _truncate(s: str, length: int) -> str:
    if length < 0:
        raise _FuncError(f"runtime error: slice bounds out of range [:{length}]")
    return s[:length]


def _same(v: object, *_: object) -> object:
    return v


def _not(v: object) -> bool:
    return not _truth(v)


# name: (function, parameter types, type of the variadic rest or None)
_FUNCS: dict[str, tuple] = {
    "and": (None, (_ANY,), _ANY),
    "or": (None, (_ANY,), _ANY),
    "not": (_not, (_ANY,), None),
    "len": (_len, (_ANY,), None),
    "index": (_index, (_ANY,), _ANY),
    "slice": (_slice, (_ANY,), _ANY),
    "print": (govalue.sprint, (), _ANY),
    "println": (lambda *a: " ".join(govalue.fmt_v(x) for x in a) + "\n", (), _ANY),
    "printf": (govalue.sprintf, (_STRING,), _ANY),
    "eq": (_eq, (_ANY,), _ANY),
    "ne": (lambda a, b: not _eq(a, b), (_ANY, _ANY), None),
    "lt": (_lt, (_ANY, _ANY), None),
    "le": (lambda a, b: _lt(a, b) or _eq(a, b), (_ANY, _ANY), None),
    "gt": (lambda a, b: not (_lt(a, b) or _eq(a, b)), (_ANY, _ANY), None),
    "ge": (lambda a, b: not _lt(a, b), (_ANY, _ANY), None),
    "html": (_html, (), _ANY),
    "js": (_js, (), _ANY),
    "urlquery": (_urlquery, (), _ANY),
    "call": (_call, (_ANY,), _ANY),
    # docker/cli templates.go
    "json": (_docker_json, (_ANY,), None),
    "split": (_split, (_STRING, _STRING), None),
    "join": (lambda items, sep: sep.join(items), (_STRINGS, _STRING), None),
    "title": (_title, (_STRING,), None),
    "lower": (lambda s: _case(s, False), (_STRING,), None),
    "upper": (lambda s: _case(s, True), (_STRING,), None),
    "pad": (_pad_fn, (_STRING, _INT, _INT), None),
    "truncate": (_truncate, (_STRING, _INT), None),
}

# docker's HeaderFunctions: a table's header row keeps the column names intact
_HEADER_FUNCS = {**_FUNCS,
                 "json": (_same, (_STRING,), None),
                 "split": (_same, (_STRING, _STRING), None),
                 "join": (_same, (_STRING, _STRING), None),
                 "title": (_same, (_STRING,), None),
                 "lower": (_same, (_STRING,), None),
                 "upper": (_same, (_STRING,), None),
                 "truncate": (_same, (_STRING, _INT), None)}


class _Heading(str):
    """A column's header text, standing in for the field while the header row is rendered."""

    def child(self, name: str) -> _Heading:
        return _heading(self.headers, self.path + "." + name)


def _heading(headers: dict[str, str], path: str) -> _Heading:
    h = _Heading(headers.get(path, path.upper()))
    h.path, h.headers = path, headers
    return h


class _Headings(dict):
    """The data of a table's header row: every field is its column's header."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__()
        self.headers = headers

    def __missing__(self, name: str) -> _Heading:
        return _heading(self.headers, name)


# ---------------------------------------------------------------------------------------------
# Public API

class Template:
    """A parsed template; execute it once per object."""

    __slots__ = ("text", "root", "defs")

    def __init__(self, text: str) -> None:
        parser = _Parser(text)
        self.text = text
        self.root = parser.parse()
        self.defs = parser.defs

    def execute(self, data: object) -> str:
        ex = _Exec(self, _FUNCS, data)
        ex.walk(data, self.root)
        return "".join(ex.out)

    def header(self, headers: dict[str, str]) -> str:
        """docker's table header row: the template run with each field standing for its column's
        header (headers[field], else the field's name in upper case) and docker's header functions,
        which leave the names intact. As in docker, an error ends the row where it happened."""
        data = _Headings(headers)
        ex = _Exec(self, _HEADER_FUNCS, data)
        try:
            ex.walk(data, self.root)
        except (TemplateError, _BreakLoop, _ContinueLoop):
            pass
        return "".join(ex.out)


_cache: dict[str, Template] = {}


def parse(text: str) -> Template:
    """The template for text, parsed once per string; TemplateError if it does not parse."""
    tpl = _cache.get(text)
    if tpl is None:
        tpl = Template(text)
        if len(_cache) >= 64:
            _cache.clear()
        _cache[text] = tpl
    return tpl


def render(text: str, data: object) -> str:
    """text run once over data."""
    return parse(text).execute(data)
