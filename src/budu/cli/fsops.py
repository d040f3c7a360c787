"""A container's files: cp, diff, export, commit — docker's flags and output."""

from __future__ import annotations

import os
import sys

from budu.cli import format as fmt
from budu.cli.common import write_whole
from budu.cli.images import _Parser
from budu.errors import BuduError, ConfigError


def _engine():  # noqa: ANN202
    from budu.engine.engine import Engine

    return Engine()


def _daemon(e: BuduError) -> BuduError:
    """docker prints what its daemon refused as `Error response from daemon: ...`; errors that
    say for themselves whose they are keep their word."""
    if not hasattr(e, "daemon_style"):
        e.daemon_style = True
    return e


# -- cp -------------------------------------------------------------------------------------------

CP_USAGE = """budu cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-
       budu cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH"""
CP_HELP = """Copy files/folders between a container and the local filesystem

Use '-' as the source to read a tar archive from stdin
and extract it to a directory destination in a container.
Use '-' as the destination to stream a tar archive of a
container source to stdout."""


def split_cp_arg(arg: str) -> tuple[str, str]:
    """docker's splitCpArg: CONTAINER:PATH, unless the argument is an absolute path or starts
    with `.` before its first `:` (`./file:name.txt` is local)."""
    if arg.startswith("/"):
        return "", arg
    container, sep, path = arg.partition(":")
    if not sep or container.startswith("."):
        return "", arg
    return container, path


def cmd_cp(argv: list[str]) -> int:
    import argparse

    p = _Parser(prog="budu cp", usage=CP_USAGE, description=CP_HELP,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="SRC")
    p.add_argument("destination", metavar="DEST")
    p.add_argument("-a", "--archive", action="store_true", help="Archive mode (copy all uid/gid information)")
    p.add_argument("-L", "--follow-link", action="store_true", help="Always follow symbol link in SRC_PATH")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="Suppress progress output during copy. Progress output is automatically suppressed "
                        "if no terminal is attached")
    a = p.parse_args(argv)
    if not a.source:
        raise ConfigError("source can not be empty")
    if not a.destination:
        raise ConfigError("destination can not be empty")
    src_container, src_path = split_cp_arg(a.source)
    dst_container, dst_path = split_cp_arg(a.destination)
    if src_container and dst_container:
        raise ConfigError("copying between containers is not supported")
    if not src_container and not dst_container:
        raise ConfigError("must specify at least one container source")
    quiet = a.quiet or not sys.stdout.isatty()  # docker: no terminal, no progress

    from budu.engine import fsops

    engine = _engine()
    try:
        name = src_container or dst_container
        try:
            c = engine.get(name)
        except BuduError as e:
            raise _daemon(e) from None
        try:
            if src_container:
                if dst_path == "-":
                    out = sys.stdout.buffer
                    fsops.archive_from_container(engine, c, src_path, out, a.follow_link, name=name)
                    out.flush()
                    return 0
                n = fsops.copy_from_container(engine, c, src_path, dst_path, a.follow_link, a.archive, name=name)
                where = fsops.host_path(dst_path)
            else:
                if src_path == "-":
                    if sys.stdin is None:
                        raise ConfigError("requested copy from stdin, but there is no stdin")
                    fsops.extract_to_container(engine, c, dst_path, sys.stdin.buffer, a.archive, name=name)
                    return 0
                n = fsops.copy_to_container(engine, c, src_path, dst_path, a.follow_link, a.archive, name=name)
                where = f"{name}:{dst_path}"
        except BuduError as e:
            raise _daemon(e) from None
    finally:
        engine.close()
    if not quiet:
        sys.stderr.write(f"Successfully copied {fmt.human_size(n)} to {where}\n")
    return 0


# -- diff -----------------------------------------------------------------------------------------

def cmd_diff(argv: list[str]) -> int:
    p = _Parser(prog="budu diff", description="Inspect changes to files or directories on a container's filesystem")
    p.add_argument("container", metavar="CONTAINER")
    a = p.parse_args(argv)
    from budu.engine import fsops

    engine = _engine()
    try:
        try:
            lines = [str(ch) for ch in fsops.changes(engine, engine.get(a.container))]
        except BuduError as e:
            raise _daemon(e) from None
    finally:
        engine.close()
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")
    return 0


# -- export ---------------------------------------------------------------------------------------

def cmd_export(argv: list[str]) -> int:
    p = _Parser(prog="budu export", description="Export a container's filesystem as a tar archive")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("-o", "--output", help="Write to a file, instead of STDOUT")
    a = p.parse_args(argv)
    from budu.engine import fsops

    if not a.output and sys.stdout.isatty():
        raise ConfigError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    engine = _engine()
    try:
        try:
            c = engine.get(a.container)
        except BuduError as e:
            raise _daemon(e) from None
        if not a.output:
            out = sys.stdout.buffer
            fsops.export(engine, c, out)
            out.flush()
        else:
            _export_to_file(engine, c, a.output)
    finally:
        engine.close()
    return 0


def _export_to_file(engine, c, path: str) -> None:  # noqa: ANN001
    """Write beside `path` and rename over it once complete: a failed export leaves no file."""
    from budu.engine import fsops

    def open_error(path: str, e: OSError) -> BuduError | None:
        if isinstance(e, FileNotFoundError):
            return ConfigError(f"failed to export container: invalid output path: directory "
                               f'"{os.path.dirname(path)}" does not exist')
        return None

    write_whole(path, lambda f: fsops.export(engine, c, f), ".budu-export-", open_error, buffering=1 << 20)


# -- commit ---------------------------------------------------------------------------------------

def _bool_flags(argv: list[str]) -> list[str]:
    """Go's bool flags take `--pause=false` (never `--pause false`): spelled for argparse."""
    out = []
    for arg in argv:
        if arg == "--":
            out += argv[len(out):]
            break
        flag, eq, value = arg.partition("=")
        if eq and flag in ("-p", "--pause"):
            v = value.lower()
            if v in ("1", "t", "true"):
                arg = "--pause"
            elif v in ("0", "f", "false"):
                arg = "--no-pause"
            else:
                raise ConfigError(f'invalid argument "{value}" for "-p, --pause" flag: '
                                  f'strconv.ParseBool: parsing "{value}": invalid syntax')
        out.append(arg)
    return out


def cmd_commit(argv: list[str]) -> int:
    p = _Parser(prog="budu commit", description="Create a new image from a container's changes",
                usage="budu commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")
    p.add_argument("-a", "--author", default="", help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
    p.add_argument("-c", "--change", action="append", default=[],
                   help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", default="", help="Commit message")
    p.add_argument("-p", "--pause", dest="pause", action="store_true", default=True,
                   help="Pause container during commit (default true)")
    p.add_argument("--no-pause", dest="pause", action="store_false", help="Disable pausing container during commit")
    a = p.parse_args(_bool_flags(argv))
    from budu.engine import fsops

    engine = _engine()
    try:
        try:
            image = fsops.commit(engine, engine.get(a.container), a.repository, a.author, a.message, a.change,
                                 pause=a.pause)
        except BuduError as e:
            raise _daemon(e) from None
    finally:
        engine.close()
    print(image.id)
    return 0
