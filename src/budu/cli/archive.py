"""Image file commands: save, load, import, and `image bootstrap` (images made on this host)."""

from __future__ import annotations

import sys

from budu.cli.common import write_whole
from budu.cli.images import _images, _Parser
from budu.errors import BuduError, ConfigError, NotFound


def _open_input(path: str):  # noqa: ANN202
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise NotFound(f"open {path}: no such file or directory") from None
    except IsADirectoryError:
        raise ConfigError(f"read {path}: is a directory") from None
    except PermissionError:
        raise ConfigError(f"open {path}: permission denied") from None


# -- save -----------------------------------------------------------------------------------------

def cmd_save(argv: list[str]) -> int:
    p = _Parser(prog="budu save", description="Save one or more images to a tar archive (streamed to STDOUT by default)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-o", "--output", help="Write to a file, instead of STDOUT")
    p.add_argument("--format", default="docker-archive", choices=("docker-archive", "oci-archive"),
                   help="Archive format: docker-archive (what docker save writes) or oci-archive")
    a = p.parse_args(argv)
    from budu.images.archive import save

    if not a.output and sys.stdout.isatty():
        raise ConfigError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    images = _images()
    try:
        if not a.output:
            out = sys.stdout.buffer
            save(images, a.images, out, a.format)
            out.flush()
            return 0
        _save_to_file(images, a.images, a.output, a.format)
    finally:
        images.close()
    return 0


def _save_to_file(images, names: list[str], path: str, fmt: str) -> None:  # noqa: ANN001
    """Write next to `path` and rename over it once complete: a failed save leaves no file."""
    from budu.images.archive import save

    def open_error(path: str, e: OSError) -> BuduError | None:
        if isinstance(e, FileNotFoundError):
            return NotFound(f"open {path}: no such file or directory")
        if isinstance(e, PermissionError):
            return ConfigError(f"open {path}: permission denied")
        return None

    write_whole(path, lambda f: save(images, names, f, fmt), ".budu-save-", open_error)


# -- load -----------------------------------------------------------------------------------------

def cmd_load(argv: list[str]) -> int:
    p = _Parser(prog="budu load", description="Load an image from a tar archive or STDIN")
    p.add_argument("-i", "--input", help="Read from tar archive file, instead of STDIN")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress the load output")
    a = p.parse_args(argv)
    from budu.images.archive import load

    if a.input:
        stream = _open_input(a.input)
    elif sys.stdin is None or sys.stdin.isatty():
        raise ConfigError("requested load from stdin, but stdin is empty")
    else:
        stream = sys.stdin.buffer
    images = _images()
    try:
        names = load(images, stream)
    finally:
        images.close()
        if a.input:
            stream.close()
    ids = {i for i in names if i.startswith("sha256:") and len(i) == 71}
    for name in names:
        print(f"Loaded image ID: {name}" if name in ids else f"Loaded image: {name}")
    return 0


# -- import ---------------------------------------------------------------------------------------

def cmd_import(argv: list[str]) -> int:
    p = _Parser(prog="budu import", description="Import the contents from a tarball to create a filesystem image")
    p.add_argument("file", metavar="file|-")
    p.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")
    p.add_argument("-c", "--change", action="append", default=[], help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", help="Set commit message for imported image")
    p.add_argument("--platform", help="Set platform if server is multi-platform capable")
    a = p.parse_args(argv)
    from budu.images.archive import apply_changes, import_rootfs

    if a.platform:
        from budu.images.service import host_platform, parse_platform

        if parse_platform(a.platform).architecture != host_platform().architecture:
            raise ConfigError(f"budu import: --platform {a.platform}: only the host's platform ({host_platform()}) is supported")
    if "://" in a.file:
        raise ConfigError(f"budu import: importing from a URL is not supported ({a.file}): download it and import the file")
    apply_changes({}, a.change)  # a bad change fails before the tarball is read
    if a.file == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise ConfigError("budu import: no tarball on stdin (pipe one in, or name a file)")
        stream = sys.stdin.buffer
    else:
        stream = _open_input(a.file)
    images = _images()
    try:
        image = import_rootfs(images, stream, a.repository, a.change, a.message)
    finally:
        images.close()
        if a.file != "-":
            stream.close()
    print(image.id)
    return 0


# -- image bootstrap ------------------------------------------------------------------------------

def cmd_bootstrap(argv: list[str]) -> int:
    p = _Parser(prog="budu image bootstrap",
                description="Make a base image on this host: busybox (from the host's static busybox) or "
                            "debian (with debootstrap --variant=minbase)")
    p.add_argument("kind", choices=("busybox", "debian"))
    p.add_argument("-t", "--tag", help="Name the image (default busybox:latest, debian:SUITE)")
    p.add_argument("--suite", default="bookworm", help="Debian suite (default bookworm)")
    p.add_argument("--mirror", help="Debian mirror (default: the host's apt mirror)")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress debootstrap's output")
    a = p.parse_args(argv)
    from budu.images import bootstrap

    if a.kind == "busybox" and (a.mirror or a.suite != "bookworm"):
        raise ConfigError("budu image bootstrap: --suite and --mirror are for debian")
    images = _images()
    try:
        if a.kind == "busybox":
            image = bootstrap.bootstrap_busybox(images, ref=a.tag or "busybox:latest")
        else:
            image = bootstrap.bootstrap_debian(images, suite=a.suite, ref=a.tag, mirror=a.mirror,
                                               log=None if a.quiet else sys.stderr)
    finally:
        images.close()
    print(image.id)
    return 0
