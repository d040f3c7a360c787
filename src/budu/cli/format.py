"""Output the way docker prints it: human sizes and times, tab-aligned tables, --format templates."""

from __future__ import annotations

import json
import re
import time


def human_size(n: float) -> str:
    """docker's units.HumanSize: decimal units, 3 significant digits (4.26MB, 1.2GB, 512B)."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000.0
        i += 1
    return f"{n:.3g}{units[i]}"


def human_duration(seconds: float) -> str:
    """docker's units.HumanDuration: 'About a minute', '3 hours', '2 months'."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"


def ago(timestamp: float | None) -> str:
    if not timestamp:
        return "N/A"
    return human_duration(time.time() - timestamp) + " ago"


def table(rows: list[list[str]]) -> str:
    """Columns padded like docker's tabwriter (three spaces between columns)."""
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        out.append("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(out) + "\n"


_FIELD = re.compile(r"{{\s*(json\s+)?\.([A-Za-z0-9_.]*)\s*}}")


def render(template: str, obj: dict) -> str:
    """The Go-template forms people use with docker: {{.Field}}, {{.A.B}}, {{json .}}, {{json .X}}.

    Unknown fields are an error, as in docker."""
    template = template.replace("\\t", "\t").replace("\\n", "\n")

    def sub(m: re.Match) -> str:
        as_json, path = m.group(1), m.group(2)
        value: object = obj
        for part in [p for p in path.split(".") if p]:
            if not isinstance(value, dict) or part not in value:
                from budu.errors import ConfigError

                raise ConfigError(f"template: can't evaluate field {part}")
            value = value[part]
        if as_json:
            return json.dumps(value, separators=(",", ":"))
        if isinstance(value, (list, tuple)):
            return "[" + " ".join(str(v) for v in value) + "]"
        if isinstance(value, dict):
            return "map[" + " ".join(f"{k}:{v}" for k, v in value.items()) + "]"
        if isinstance(value, bool):
            return "true" if value else "false"
        return "" if value is None else str(value)

    return _FIELD.sub(sub, template)


def format_rows(template: str, objs: list[dict], headers: dict[str, str]) -> str:
    """--format: 'table ...' prints a header row and aligns columns; otherwise one line each."""
    if template.startswith("table"):
        body = template[5:].strip() or "\t".join("{{." + k + "}}" for k in headers)
        head = _FIELD.sub(lambda m: headers.get(m.group(2), m.group(2).upper()), body.replace("\\t", "\t"))
        rows = [head.split("\t")] + [render(body, o).split("\t") for o in objs]
        width = max(len(r) for r in rows)
        return table([r + [""] * (width - len(r)) for r in rows])
    return "".join(render(template, o) + "\n" for o in objs)
