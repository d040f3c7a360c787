"""`budu`: the user's command line, with docker's commands, flags and output.

Commands are found in a table and their modules imported only when they run, so `budu --version`
and `budu --help` stay instant however many commands there are.
"""

from __future__ import annotations

import os
import sys

# command -> (module, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "pull": ("budu.cli.images", "cmd_pull", "Download an image from a registry"),
    "images": ("budu.cli.images", "cmd_images", "List images"),
    "rmi": ("budu.cli.images", "cmd_rmi", "Remove one or more images"),
    "tag": ("budu.cli.images", "cmd_tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
    "history": ("budu.cli.images", "cmd_history", "Show the history of an image"),
    "push": ("budu.cli.registry", "cmd_push", "Upload an image to a registry"),
    "login": ("budu.cli.registry", "cmd_login", "Log in to a registry"),
    "logout": ("budu.cli.registry", "cmd_logout", "Log out from a registry"),
    "save": ("budu.cli.archive", "cmd_save", "Save one or more images to a tar archive (streamed to STDOUT by default)"),
    "load": ("budu.cli.archive", "cmd_load", "Load an image from a tar archive or STDIN"),
    "import": ("budu.cli.archive", "cmd_import", "Import the contents from a tarball to create a filesystem image"),
}
# `budu image SUB`: docker's management-command spelling of the same
IMAGE_COMMANDS: dict[str, tuple[str, str, str]] = {
    "ls": COMMANDS["images"], "list": COMMANDS["images"], "pull": COMMANDS["pull"], "rm": COMMANDS["rmi"],
    "tag": COMMANDS["tag"], "inspect": ("budu.cli.images", "cmd_inspect", "Display detailed information on images"),
    "prune": ("budu.cli.images", "cmd_prune", "Remove unused images"), "history": COMMANDS["history"],
    "push": COMMANDS["push"], "save": COMMANDS["save"], "load": COMMANDS["load"], "import": COMMANDS["import"],
    "bootstrap": ("budu.cli.archive", "cmd_bootstrap", "Make a base image on this host (busybox, debian)"),
}
SYSTEM_COMMANDS: dict[str, tuple[str, str, str]] = {
    "df": ("budu.cli.images", "cmd_system_df", "Show budu disk usage"),
}

USAGE = """Usage:  budu [OPTIONS] COMMAND

A container engine: docker's commands, flags and output.

Options:
      --root string   Root of budu's state (default /var/lib/budu, or $BUDU_ROOT)
  -v, --version       Print version information and quit

Management Commands:
  image       Manage images
  system      Manage budu

Commands:
{commands}
The OCI runtime is `budu-runtime` (runc's command line).
Run 'budu COMMAND --help' for more information on a command.
"""


def _usage() -> str:
    lines = "".join(f"  {name:<11} {help_}\n" for name, (_, _, help_) in sorted(COMMANDS.items()))
    return USAGE.format(commands=lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    while argv[:1] and argv[0].startswith("--root"):
        flag = argv.pop(0)
        if "=" in flag:
            os.environ["BUDU_ROOT"] = flag.split("=", 1)[1]
        elif argv:
            os.environ["BUDU_ROOT"] = argv.pop(0)
    if argv[:1] in (["--version"], ["-v"], ["version"]):
        from budu import __version__

        print(f"budu version {__version__}")
        return 0
    if not argv or argv[:1] in (["--help"], ["-h"], ["help"]):
        sys.stdout.write(_usage())
        return 0
    name, args = argv[0], argv[1:]
    table = COMMANDS
    groups = {"image": (IMAGE_COMMANDS, "Manage images"), "system": (SYSTEM_COMMANDS, "Manage budu")}
    if name in groups:
        sub, what = groups[name]
        if not args or args[0] in ("--help", "-h"):
            sys.stdout.write(f"Usage:  budu {name} COMMAND\n\n{what}\n\nCommands:\n" + "".join(
                f"  {n:<9} {h}\n" for n, (_, _, h) in sorted(sub.items()) if n not in ("list",)))
            return 0
        table, name, args = sub, args[0], args[1:]
    if name not in table:
        sys.stderr.write(f"budu: '{name}' is not a budu command.\nSee 'budu --help'\n")
        return 1
    module, func, _ = table[name]
    import importlib

    from budu.errors import BuduError

    try:
        return getattr(importlib.import_module(module), func)(args) or 0
    except BuduError as e:
        sys.stderr.write(f"Error response from daemon: {e}\n" if getattr(e, "daemon_style", False) else f"Error: {e}\n")
        return e.exit_code if e.exit_code else 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        sys.stderr.write(f"Error: {where}{e.strerror or e}\n")
        return 1
    except Exception as e:  # noqa: BLE001 - a bug must still be one line, not a traceback
        sys.stderr.write(f"Error: internal error: {type(e).__name__}: {e}\n")
        return 1
