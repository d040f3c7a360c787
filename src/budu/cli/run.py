"""`budu run`, `create`, `start`, `attach` and `exec`: the commands that start things and stay with them."""

from __future__ import annotations

import os
import sys

import _signal  # not `signal`: its enums cost ~8 ms of every `budu run` here

from budu.cli import attach as att
from budu.engine import monitor as mon
from budu.errors import BuduError, ConfigError, NotFound


def _engine():
    from budu.engine.engine import Engine

    return Engine()


class _PullProgress:
    """docker run's pull output, on stderr so that stdout stays the container's."""

    def __init__(self) -> None:
        self.plain = None  # budu.cli.images (argparse, json) is imported only if a pull happens

    def announce(self, ref: str) -> None:
        from budu.images import reference

        r = reference.parse(ref)
        sys.stderr.write(f"Unable to find image '{r.familiar()}' locally\n")
        sys.stderr.write(f"{r.tag or r.digest}: Pulling from {r.path}\n")

    def __call__(self, *a) -> None:  # noqa: ANN002
        if self.plain is None:
            from budu.cli.images import _PlainProgress

            self.plain = _PlainProgress(False)
        saved, sys.stdout = sys.stdout, sys.stderr
        try:
            self.plain(*a)
        finally:
            sys.stdout = saved


def _create(req, engine):  # noqa: ANN001, ANN202
    from budu.errors import ConfigError as CE

    if req.platform:
        from budu.images.service import parse_platform

        parse_platform(req.platform)
    try:
        c = engine.create(req.image, req.config, req.host_config, req.networking_config, name=req.name,
                          pull=req.pull, platform=req.platform, progress=_PullProgress())
    except BuduError as e:
        e.exit_code = 125
        raise
    if getattr(req, "cidfile", None):
        try:
            with open(req.cidfile, "x") as f:
                f.write(c.id)
        except FileExistsError:
            raise CE(f"container ID file found, make sure the other container isn't running or delete {req.cidfile}") from None
    return c


def _fail_start(e: BuduError) -> BuduError:
    """docker's codes: 126/127 when the command could not run (RunError knows), else 125."""
    from budu.engine.engine import RunError

    if not isinstance(e, RunError):
        e.exit_code = 125
    return e


def _parse(argv: list[str], command: str):  # noqa: ANN202
    from budu.cli.runflags import parse_run_args

    try:
        return parse_run_args(argv, command)
    except BuduError as e:
        e.exit_code = 125  # docker: the engine's own failure, before any container ran
        raise


def cmd_create(argv: list[str]) -> int:
    req = _parse(argv, "create")
    if req is None:
        return 0
    engine = _engine()
    try:
        c = _create(req, engine)
    finally:
        engine.close()
    print(c.id)
    return 0


def cmd_run(argv: list[str]) -> int:
    req = _parse(argv, "run")
    if req is None:
        return 0
    engine = _engine()
    try:
        c = _create(req, engine)
        cfg = c.config
        if req.detach:
            try:
                engine.start(c)
            except BuduError as e:
                if req.rm:
                    engine.remove(engine.get(c.id), force=True, volumes=True)
                raise _fail_start(e) from None
            print(c.id)
            return 0
        flags = (mon.WANT_STDOUT if cfg.get("AttachStdout", True) else 0) | \
                (mon.WANT_STDERR if cfg.get("AttachStderr", True) else 0)
        stdin = bool(cfg.get("OpenStdin") and cfg.get("AttachStdin"))
        if stdin:
            flags |= mon.SENDS_STDIN
        if req.rm:
            flags |= mon.CLEANS_UP
        try:
            sock = engine.start(c, attach_flags=flags, tty_size=att.terminal_size())
        except BuduError as e:
            if req.rm:
                engine.remove(engine.get(c.id), force=True, volumes=True)
            raise _fail_start(e) from None
        return _stay_attached(engine, c, sock, stdin, req.rm, req.detach_keys, req.sig_proxy)
    finally:
        engine.close()


def _stay_attached(engine, c, sock, stdin: bool, rm: bool, detach_keys: str | None, sig_proxy: bool) -> int:  # noqa: ANN001
    tty = bool(c.config.get("Tty"))
    keys = att.parse_detach_keys(detach_keys)
    restore = []
    if sig_proxy and not tty:
        def forward(signum: int, _frame: object) -> None:
            try:
                engine.kill(engine.get(c.id), str(signum))
            except BuduError:
                pass
        for s in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1, _signal.SIGUSR2):
            restore.append((s, _signal.signal(s, forward)))
    try:
        code = att.attach(sock, tty, stdin, keys)
    finally:
        for s, h in restore:
            _signal.signal(s, h)
    if code is att.DETACHED:
        sock.close()
        att.print_escape()
        return 0
    if code is None:  # the monitor went away without a word: report what it recorded
        sock.close()
        try:
            st = engine.state(engine.get(c.id))
        except NotFound:
            return 0
        return st.exit_code
    if rm:
        try:
            engine.remove(engine.get(c.id), force=True, volumes=True)
        except NotFound:
            pass
    sock.close()
    return int(code)


def cmd_start(argv: list[str]) -> int:
    from budu.cli.images import _Parser

    p = _Parser(prog="budu start", description="Start one or more stopped containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-a", "--attach", action="store_true", help="Attach STDOUT/STDERR and forward signals")
    p.add_argument("-i", "--interactive", action="store_true", help="Attach container's STDIN")
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    a = p.parse_args(argv)
    engine = _engine()
    try:
        if a.attach or a.interactive:
            if len(a.containers) > 1:
                raise ConfigError("you cannot start and attach multiple containers at once")
            c = engine.get(a.containers[0])
            stdin = bool(a.interactive and c.config.get("OpenStdin"))
            flags = mon.WANT_STDOUT | mon.WANT_STDERR | (mon.SENDS_STDIN if stdin else 0)
            try:
                sock = engine.start(c, attach_flags=flags, tty_size=att.terminal_size())
            except BuduError as e:
                raise _fail_start(e) from None
            if sock is None:  # already running: attach to it
                sock = mon.connect(engine.dir(c.id), flags)
                if sock is None:
                    return engine.state(c).exit_code
            return _stay_attached(engine, c, sock, stdin, False, a.detach_keys, True)
        failed = False
        for ref in a.containers:
            try:
                engine.start(engine.get(ref))
                print(ref)
            except BuduError as e:
                sys.stderr.write(f"Error response from daemon: {e}\n")
                failed = True
        if failed:
            sys.stderr.write("Error: failed to start containers: " + ", ".join(a.containers) + "\n")
        return 1 if failed else 0
    finally:
        engine.close()


def cmd_attach(argv: list[str]) -> int:
    from budu.cli.images import _Parser

    p = _Parser(prog="budu attach", description="Attach local standard input, output, and error streams to a running container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    p.add_argument("--no-stdin", action="store_true", help="Do not attach STDIN")
    p.add_argument("--sig-proxy", default="true", help="Proxy all received signals to the process")
    a = p.parse_args(argv)
    engine = _engine()
    try:
        c = engine.get(a.container)
        st = engine.state(c)
        if st.status == "paused":
            raise ConfigError("You cannot attach to a paused container, unpause it first")
        if not st.running:
            raise ConfigError("You cannot attach to a stopped container, start it first")
        stdin = bool(c.config.get("OpenStdin")) and not a.no_stdin
        flags = mon.WANT_STDOUT | mon.WANT_STDERR | (mon.SENDS_STDIN if stdin else 0)
        sock = mon.connect(engine.dir(c.id), flags)
        if sock is None:
            raise ConfigError("You cannot attach to a stopped container, start it first")
        return _stay_attached(engine, c, sock, stdin, False, a.detach_keys, a.sig_proxy.lower() != "false")
    finally:
        engine.close()


def cmd_exec(argv: list[str]) -> int:
    """docker exec: the runtime's exec, with docker's flags; its exit code is the command's."""
    opts: dict = {"env": [], "env_file": []}
    i = 0
    bools = {"-i": "interactive", "--interactive": "interactive", "-t": "tty", "--tty": "tty",
             "-d": "detach", "--detach": "detach", "--privileged": "privileged"}
    values = {"-e": "env", "--env": "env", "-w": "workdir", "--workdir": "workdir", "-u": "user", "--user": "user",
              "--env-file": "env_file", "--detach-keys": "detach_keys"}
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        arg = argv[i]
        if arg in ("-h", "--help"):
            sys.stdout.write(EXEC_USAGE)
            return 0
        name, eq, val = arg.partition("=")
        if name in bools:
            opts[bools[name]] = True
        elif name in values:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise ConfigError(f"flag needs an argument: {name}")
                val = argv[i]
            key = values[name]
            if key in ("env", "env_file"):
                opts[key].append(val)
            else:
                opts[key] = val
        elif not arg.startswith("--") and len(arg) > 2 and all(f"-{ch}" in bools for ch in arg[1:]):
            for ch in arg[1:]:
                opts[bools[f"-{ch}"]] = True
        else:
            raise ConfigError(f"unknown flag: {name}\nSee 'budu exec --help'.")
        i += 1
    rest = argv[i:]
    if len(rest) < 2:
        raise ConfigError('"budu exec" requires at least 2 arguments.\nSee \'budu exec --help\'.')
    engine = _engine()
    try:
        c = engine.get(rest[0])
        env = list(opts["env"])
        for path in opts["env_file"]:
            from budu.cli.runflags import read_env_file

            env = read_env_file(path) + env
        return engine.exec(c, rest[1:], env=env, workdir=opts.get("workdir"), user=opts.get("user"),
                           tty=bool(opts.get("tty")), interactive=bool(opts.get("interactive")),
                           detach=bool(opts.get("detach")), privileged=bool(opts.get("privileged")))
    finally:
        engine.close()


EXEC_USAGE = """Usage:  budu exec [OPTIONS] CONTAINER COMMAND [ARG...]

Execute a command in a running container

Options:
  -d, --detach               Detached mode: run command in the background
      --detach-keys string   Override the key sequence for detaching a container
  -e, --env list             Set environment variables
      --env-file list        Read in a file of environment variables
  -i, --interactive          Keep STDIN open even if not attached
      --privileged           Give extended privileges to the command
  -t, --tty                  Allocate a pseudo-TTY
  -u, --user string          Username or UID (format: "<name|uid>[:<group|gid>]")
  -w, --workdir string       Working directory inside the container
"""
