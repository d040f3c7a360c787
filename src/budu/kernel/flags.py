"""A small command-line flag parser for the hot paths (argparse costs ~15 ms to import here).

Flags are declared as a table; `--name value`, `--name=value`, `-n value`, and repeated flags are
understood, and an unknown flag is a one-line error.  Parsing stops at the first positional
argument when `stop_at_positional` is set (for `exec ID ARGS...`) or at `--`.
"""

from __future__ import annotations

from budu.errors import ConfigError


class Flag:
    __slots__ = ("names", "dest", "value", "multi", "default")

    def __init__(self, names: str, dest: str, value: bool = False, multi: bool = False,
                 default: object = None) -> None:
        self.names = names.split(",")
        self.dest = dest
        self.value = value
        self.multi = multi
        self.default = [] if multi else (default if value else (default or False))


def parse(argv: list[str], flags: list[Flag], stop_at_positional: bool = False,
          where: str = "") -> tuple[dict, list[str]]:
    by_name = {n: f for f in flags for n in f.names}
    opts: dict = {f.dest: (list(f.default) if f.multi else f.default) for f in flags}
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            positional.extend(argv[i:])
            break
        if arg.startswith("-") and arg != "-":
            name, eq, inline = arg.partition("=")
            f = by_name.get(name)
            if f is None:
                raise ConfigError(f"{where}unknown flag {name}")
            if f.value:
                if eq:
                    val = inline
                elif i < len(argv):
                    val = argv[i]
                    i += 1
                else:
                    raise ConfigError(f"{where}flag {name} needs a value")
                if f.multi:
                    opts[f.dest].append(val)
                else:
                    opts[f.dest] = val
            else:
                opts[f.dest] = inline.lower() not in ("false", "0") if eq else True
            continue
        positional.append(arg)
        if stop_at_positional:
            positional.extend(argv[i:])
            break
    return opts, positional
