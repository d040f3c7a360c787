"""Output the way docker prints it: human sizes and times, tab-aligned tables, --format templates."""

from __future__ import annotations

import time

from budu.errors import ConfigError
from budu.units import human_duration  # noqa: F401  (re-exported: images and ps share docker's wording)


def human_size(n: float) -> str:
    """docker's units.HumanSize: decimal units, 3 significant digits (4.26MB, 1.2GB, 512B)."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000.0
        i += 1
    return f"{n:.3g}{units[i]}"


def ago(timestamp: float | None) -> str:
    if not timestamp:
        return "N/A"
    return human_duration(time.time() - timestamp) + " ago"


def table(rows: list[list[str]]) -> str:
    """Columns padded like docker's tabwriter (three spaces between columns)."""
    if not rows:
        return ""
    # docker's tabwriter: a cell is its text plus 3 spaces, at least 10 wide
    widths = [max(10, max(len(r[i]) for r in rows) + 3) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        out.append("".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(out) + "\n"


def render(template: str, obj: object) -> str:
    """One object through a Go template (budu.cli.gotemplate), as `docker inspect --format` does.

    \\t and \\n typed on the command line stand for a tab and a newline. Unknown fields are an
    error, as in docker; the message is docker's, on one line."""
    from budu.cli import gotemplate

    try:
        return gotemplate.parse(template.replace("\\t", "\t").replace("\\n", "\n")).execute(obj)
    except gotemplate.TemplateError as e:  # docker words a failure to run a template the same way
        raise ConfigError(f"template parsing error: {e}") from None


def format_rows(template: str, objs: list, headers: dict[str, str]) -> str:
    """--format for a list command, the way docker's formatter runs it.

    'table TEMPLATE' prints a header row (each field's header from headers, else its name in upper
    case, through docker's header functions) and aligns the columns; bare 'table' is the default
    table of headers' fields; 'json' is {{json .}}; anything else prints one line per object."""
    from budu.cli import gotemplate

    is_table = template.startswith("table")
    body = template[len("table"):] if is_table else "{{json .}}" if template == "json" else template
    body = body.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    if is_table and not body.strip():
        body = "\t".join("{{." + k + "}}" for k in headers)
    try:
        tpl = gotemplate.parse(body)
        lines = "".join(tpl.execute(o) + "\n" for o in objs)
    except gotemplate.TemplateError as e:
        raise ConfigError(f"template parsing error: {e}") from None
    if not is_table:
        return lines
    text = tpl.header(headers) + "\n" + lines
    rows = [line.split("\t") for line in text.split("\n")[:-1]]
    width = max(len(r) for r in rows)
    return table([r + [""] * (width - len(r)) for r in rows])


def print_inspected(objects: list[dict], template: str | None) -> None:
    """`inspect`'s output: a JSON array (non-ASCII as is, as docker's Go encoder writes it), or the
    template once per object."""
    import json
    import sys

    if template:
        for obj in objects:
            sys.stdout.write(render(template, obj) + "\n")
    else:
        sys.stdout.write(json.dumps(objects, indent=4, ensure_ascii=False) + "\n")


def inspect_each(names: list[str], fetch, template: str | None, error: str = "Error: ") -> int:  # noqa: ANN001
    """`X inspect NAME...`: each object fetched, errors one line each, then all printed; exit 1
    if any was missing (docker's)."""
    import sys

    from budu.errors import BuduError

    out, failed = [], False
    for name in names:
        try:
            out.append(fetch(name))
        except BuduError as e:
            sys.stderr.write(f"{error}{e}\n")
            failed = True
    print_inspected(out, template)
    return 1 if failed else 0


def print_pruned(title: str, lines: list[str], space: int | None = None) -> None:
    """What docker's `X prune` prints: the deleted under a title, then the space reclaimed (a
    blank line between); networks have no size, and neither the blank line nor the total."""
    if lines:
        print(title)
        for line in lines:
            print(line)
        if space is not None:
            print()
    if space is not None:
        print(f"Total reclaimed space: {human_size(space)}")
