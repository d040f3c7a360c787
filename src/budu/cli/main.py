"""`budu`: the user's command line, with docker's commands, flags and output.

Commands are found in a table and their modules imported only when they run, so `budu --version`
and `budu --help` stay instant however many commands there are.
"""

from __future__ import annotations

import gc
import os
import sys

# command -> (module, function, one-line help)
_C, _R, _F = "budu.cli.containers", "budu.cli.run", "budu.cli.fsops"
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": (_R, "cmd_run", "Create and run a new container from an image"),
    "create": (_R, "cmd_create", "Create a new container"),
    "start": (_R, "cmd_start", "Start one or more stopped containers"),
    "attach": (_R, "cmd_attach", "Attach local standard input, output, and error streams to a running container"),
    "exec": (_R, "cmd_exec", "Execute a command in a running container"),
    "ps": (_C, "cmd_ps", "List containers"),
    "inspect": (_C, "cmd_inspect", "Return low-level information on budu objects"),
    "logs": (_C, "cmd_logs", "Fetch the logs of a container"),
    "stop": (_C, "cmd_stop", "Stop one or more running containers"),
    "restart": (_C, "cmd_restart", "Restart one or more containers"),
    "kill": (_C, "cmd_kill", "Kill one or more running containers"),
    "rm": (_C, "cmd_rm", "Remove one or more containers"),
    "pause": (_C, "cmd_pause", "Pause all processes within one or more containers"),
    "unpause": (_C, "cmd_unpause", "Unpause all processes within one or more containers"),
    "wait": (_C, "cmd_wait", "Block until one or more containers stop, then print their exit codes"),
    "rename": (_C, "cmd_rename", "Rename a container"),
    "top": (_C, "cmd_top", "Display the running processes of a container"),
    "stats": (_C, "cmd_stats", "Display a live stream of container(s) resource usage statistics"),
    "update": (_C, "cmd_update", "Update configuration of one or more containers"),
    "port": (_C, "cmd_port", "List port mappings or a specific mapping for the container"),
    "events": (_C, "cmd_events", "Get real time events from the server"),
    "cp": (_F, "cmd_cp", "Copy files/folders between a container and the local filesystem"),
    "diff": (_F, "cmd_diff", "Inspect changes to files or directories on a container's filesystem"),
    "export": (_F, "cmd_export", "Export a container's filesystem as a tar archive"),
    "commit": (_F, "cmd_commit", "Create a new image from a container's changes"),
    "info": ("budu.cli.system", "cmd_info", "Display system-wide information"),
    "version": ("budu.cli.system", "cmd_version", "Show the budu version information"),
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
CONTAINER_COMMANDS: dict[str, tuple[str, str, str]] = {
    **{k: COMMANDS[k] for k in ("run", "create", "start", "attach", "exec", "logs", "stop", "restart", "kill",
                                "rm", "pause", "unpause", "wait", "rename", "top", "stats", "update", "port",
                                "cp", "diff", "export", "commit")},
    "ls": COMMANDS["ps"], "ps": COMMANDS["ps"], "list": COMMANDS["ps"],
    "inspect": (_C, "cmd_container_inspect", "Display detailed information on one or more containers"),
    "prune": (_C, "cmd_prune", "Remove all stopped containers"),
    "cleanup": (_C, "cmd_cleanup", ""),  # internal: what a monitor runs after the last exit
}
VOLUME_COMMANDS: dict[str, tuple[str, str, str]] = {
    "create": ("budu.cli.volumes", "cmd_create", "Create a volume"),
    "ls": ("budu.cli.volumes", "cmd_ls", "List volumes"),
    "list": ("budu.cli.volumes", "cmd_ls", "List volumes"),
    "inspect": ("budu.cli.volumes", "cmd_inspect", "Display detailed information on one or more volumes"),
    "rm": ("budu.cli.volumes", "cmd_rm", "Remove one or more volumes"),
    "prune": ("budu.cli.volumes", "cmd_prune", "Remove unused local volumes"),
}
NETWORK_COMMANDS: dict[str, tuple[str, str, str]] = {
    name: ("budu.cli.networks", f"cmd_{func}", help_) for name, func, help_ in (
        ("create", "create", "Create a network"), ("ls", "ls", "List networks"), ("list", "ls", "List networks"),
        ("inspect", "inspect", "Display detailed information on one or more networks"),
        ("rm", "rm", "Remove one or more networks"), ("prune", "prune", "Remove all unused networks"),
        ("connect", "connect", "Connect a container to a network"),
        ("disconnect", "disconnect", "Disconnect a container from a network"))
}
SYSTEM_COMMANDS: dict[str, tuple[str, str, str]] = {
    "df": ("budu.cli.images", "cmd_system_df", "Show budu disk usage"),
    "info": COMMANDS["info"],
    "prune": ("budu.cli.system", "cmd_prune", "Remove unused data"),
    "events": COMMANDS["events"],
    "restore": ("budu.cli.system", "cmd_restore", "Start the containers a restart policy brings back after a reboot"),
}

USAGE = """Usage:  budu [OPTIONS] COMMAND

A container engine: docker's commands, flags and output.

Options:
      --root string   Root of budu's state (default /var/lib/budu, or $BUDU_ROOT)
  -v, --version       Print version information and quit

Management Commands:
  container   Manage containers
  image       Manage images
  network     Manage networks
  system      Manage budu
  volume      Manage volumes

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
    if argv[:1] in (["--version"], ["-v"]):
        from budu import __version__

        print(f"budu version {__version__}")
        return 0
    if not argv or argv[:1] in (["--help"], ["-h"], ["help"]):
        sys.stdout.write(_usage())
        return 0
    name, args = argv[0], argv[1:]
    table = COMMANDS
    groups = {"image": (IMAGE_COMMANDS, "Manage images"), "system": (SYSTEM_COMMANDS, "Manage budu"),
              "container": (CONTAINER_COMMANDS, "Manage containers"), "volume": (VOLUME_COMMANDS, "Manage volumes"),
              "network": (NETWORK_COMMANDS, "Manage networks")}
    if name in groups:
        sub, what = groups[name]
        if not args or args[0] in ("--help", "-h"):
            sys.stdout.write(f"Usage:  budu {name} COMMAND\n\n{what}\n\nCommands:\n" + "".join(
                f"  {n:<9} {h}\n" for n, (_, _, h) in sorted(sub.items()) if n not in ("list",) and h))
            return 0
        table, name, args = sub, args[0], args[1:]
    if name not in table:
        sys.stderr.write(f"budu: '{name}' is not a budu command.\nSee 'budu --help'\n")
        return 1
    module, func, _ = table[name]
    from budu.errors import BuduError

    try:
        # __import__ rather than importlib.import_module: the importlib package is one more import;
        # and no cyclic garbage collection meanwhile: imports make no garbage, only ~10 needless
        # collections (~0.6 ms)
        gc.disable()
        try:
            command = getattr(__import__(module, fromlist=[func]), func)
        finally:
            gc.enable()
        return command(args) or 0
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
