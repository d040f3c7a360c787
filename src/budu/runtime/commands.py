"""budu-runtime's command line as data: the usage text, the global flags and each verb's flags."""

from __future__ import annotations

from budu.kernel.flags import Flag

USAGE = """usage: budu-runtime [global flags] COMMAND [flags] [arguments]

An OCI runtime (runtime-spec 1.x) with runc's command line.

Commands:
  create     create a container from a bundle, its process waiting for `start`
  start      run the process of a created container
  run        create and start a container, wait for it, then delete it (unless --keep)
  state      print the state of a container as JSON
  kill       send a signal to a container's init (or, with --all, to all its processes)
  delete     delete a container and everything it holds
  exec       run another process in a running container
  list       list containers
  ps         show the processes of a container
  pause      freeze every process of a container
  resume     thaw a paused container
  update     change a container's cgroup resources
  features   print what this runtime supports, as JSON
  spec       write a default config.json

Global flags:
  --root DIR            state directory (default /run/budu-runtime)
  --log FILE            also write errors to FILE
  --log-format FORMAT   text or json
  --debug               log debug messages
  --systemd-cgroup      read cgroupsPath as slice:prefix:name
  --version, -v         print the version
"""

GLOBAL = [
    Flag("--root", "root", value=True), Flag("--log", "log", value=True),
    Flag("--log-format", "log_format", value=True, default="text"), Flag("--debug", "debug"),
    Flag("--systemd-cgroup", "systemd_cgroup"), Flag("--rootless", "rootless", value=True),
    Flag("--criu", "criu", value=True), Flag("--version,-v", "version"), Flag("--help,-h", "help"),
]
_CREATE = [
    Flag("--bundle,-b", "bundle", value=True, default="."), Flag("--pid-file", "pid_file", value=True),
    Flag("--console-socket", "console_socket", value=True), Flag("--no-pivot", "no_pivot"),
    Flag("--no-new-keyring", "no_new_keyring"), Flag("--preserve-fds", "preserve_fds", value=True),
    Flag("--help,-h", "help"),
]
VERBS: dict[str, list[Flag]] = {
    "create": _CREATE,
    "run": _CREATE + [Flag("--detach,-d", "detach"), Flag("--keep", "keep")],
    "start": [Flag("--help,-h", "help")],
    "state": [Flag("--help,-h", "help")],
    "kill": [Flag("--all,-a", "all"), Flag("--help,-h", "help")],
    "delete": [Flag("--force,-f", "force"), Flag("--help,-h", "help")],
    "exec": [
        Flag("--process,-p", "process", value=True), Flag("--tty,-t", "tty"), Flag("--detach,-d", "detach"),
        Flag("--pid-file", "pid_file", value=True), Flag("--console-socket", "console_socket", value=True),
        Flag("--env,-e", "env", value=True, multi=True), Flag("--user,-u", "user", value=True),
        Flag("--cwd", "cwd", value=True), Flag("--cap,-c", "cap", value=True, multi=True),
        Flag("--no-new-privs", "no_new_privs"), Flag("--preserve-fds", "preserve_fds", value=True),
        Flag("--additional-gids,-g", "gids", value=True, multi=True),
        Flag("--process-label", "label", value=True), Flag("--apparmor", "apparmor", value=True),
        Flag("--ignore-paused", "ignore_paused"), Flag("--help,-h", "help"),
    ],
    "list": [Flag("--format,-f", "format", value=True, default="table"), Flag("--quiet,-q", "quiet"),
             Flag("--help,-h", "help")],
    "ps": [Flag("--format,-f", "format", value=True, default="table"), Flag("--help,-h", "help")],
    "pause": [Flag("--help,-h", "help")],
    "resume": [Flag("--help,-h", "help")],
    "update": [Flag("--resources,-r", "resources", value=True), Flag("--memory", "memory", value=True),
               Flag("--pids-limit", "pids_limit", value=True), Flag("--cpu-quota", "cpu_quota", value=True),
               Flag("--cpu-period", "cpu_period", value=True), Flag("--cpu-share", "cpu_shares", value=True),
               Flag("--cpuset-cpus", "cpuset_cpus", value=True), Flag("--help,-h", "help")],
    "features": [Flag("--help,-h", "help")],
    "spec": [Flag("--bundle,-b", "bundle", value=True, default="."), Flag("--rootless", "rootless"),
             Flag("--help,-h", "help")],
}
VERBS["ls"] = VERBS["list"]
NEEDS_ID = {"create", "run", "start", "state", "kill", "delete", "exec", "ps", "pause", "resume", "update"}
