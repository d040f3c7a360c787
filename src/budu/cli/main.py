"""`budu`: the user's command line (docker's commands and flags).  Commands arrive with the engine."""

from __future__ import annotations

import sys

USAGE = """usage: budu [--version] [--help] COMMAND

budu is a container engine: it runs containers the way docker does.

The engine's commands arrive in the next steps; today budu ships its OCI runtime,
`budu-runtime`, which speaks runc's command line (try `budu-runtime --help`).
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--version"], ["-v"], ["version"]):
        from budu import __version__

        print(f"budu version {__version__}")
        return 0
    if not argv or argv[:1] in (["--help"], ["-h"], ["help"]):
        sys.stdout.write(USAGE)
        return 0
    sys.stderr.write(f"budu: {argv[0]!r} is not a budu command. See 'budu --help'.\n")
    return 1
