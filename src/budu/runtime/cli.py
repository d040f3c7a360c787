"""`budu-runtime`: runc's command line, so that containerd, conmon and Podman can drive budu.

Kept lean on purpose: a container start is a fresh interpreter each time, so nothing here imports
more than the verb in hand needs.  Nothing at all at first: `create`, `run` and `exec` start the
cgroup primer (see primer.py) before anything else is imported, even `os` or budu's errors.
"""

import gc
import sys

# No cyclic garbage collection from here on: the imports alone would trigger ~10 collections
# (~0.6 ms), and in the forked init a collection would turn the page of every object it visits
# into a copy-on-write fault (wait_forwarding, which may last as long as the container, turns it
# back on).
gc.disable()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # global flags come before the verb
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 1
        name = argv[i - 1].partition("=")[0]
        if "=" not in argv[i - 1] and name in ("--root", "--log", "--log-format", "--rootless", "--criu"):
            i += 1
    rest = argv[i:]
    primer = 0
    if rest and rest[0] in ("create", "run", "exec") and "--help" not in rest and "-h" not in rest:
        # this call will move a process between cgroups: start the kernel's slow part first of all
        from budu.runtime.primer import prime_attach

        primer = prime_attach()

    import os

    from budu.errors import BuduError
    from budu.kernel.flags import parse
    from budu.runtime import log
    from budu.runtime.commands import GLOBAL, NEEDS_ID, USAGE, VERBS

    try:
        g, _ = parse(argv[:i], GLOBAL)
        log.configure(g["log"], g["log_format"], g["debug"])
        log.debug("main")
        if g["version"]:
            from budu import __version__

            print(f"budu-runtime version {__version__}\nspec: 1.2.0")
            return 0
        if g["help"] or not rest:
            sys.stdout.write(USAGE)
            return 0 if g["help"] else 1
        verb = rest[0]
        if verb not in VERBS:
            raise BuduError(f"unknown command {verb!r} (see budu-runtime --help)")
        opts, pos = parse(rest[1:], VERBS[verb], stop_at_positional=verb == "exec", where=f"{verb}: ")
        if opts.get("help"):
            sys.stdout.write(USAGE)
            return 0
        if verb in NEEDS_ID and not pos:
            raise BuduError(f"{verb}: a container id is required")
        from budu.runtime import container as ct
        from budu.runtime import state

        o = ct.Options(root=g["root"] or state.DEFAULT_ROOT, systemd_cgroup=g["systemd_cgroup"],
                       pid_file=_abs(opts.get("pid_file")), console_socket=_abs(opts.get("console_socket")),
                       preserve_fds=_count(opts.get("preserve_fds"), "--preserve-fds"))
        return _dispatch(verb, opts, pos, o) or 0
    except BuduError as e:
        log.error(str(e))
        return e.exit_code if e.exit_code != 0 else 1
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        log.error(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}")
        return 1
    except Exception as e:  # noqa: BLE001 - a bug must still be one line, not a traceback
        log.error(f"internal error: {type(e).__name__}: {e}")
        return 1
    finally:
        if primer:
            from budu.runtime.primer import release

            release()
            try:
                os.waitpid(primer, 0)
            except ChildProcessError:
                pass  # already reaped (run adopts and reaps what it finds)


def _count(value: str | None, flag: str) -> int:
    from budu.errors import BuduError

    if not value:
        return 0
    if not value.isdigit():
        raise BuduError(f"{flag} {value!r}: must be a non-negative number")
    return int(value)


def _abs(path: str | None) -> str | None:
    import os

    return os.path.abspath(path) if path else None


def _dispatch(verb: str, opts: dict, pos: list[str], o) -> int | None:  # noqa: C901 - a flat switch
    from budu.kernel import fastjson
    from budu.runtime import container as ct

    cid = pos[0] if pos else ""
    if verb == "create":
        ct.create(cid, opts["bundle"], o)
    elif verb == "run":
        return ct.run(cid, opts["bundle"], o, opts["detach"], opts["keep"])
    elif verb == "start":
        ct.start(cid, o)
    elif verb == "state":
        from budu.runtime import state

        print(fastjson.dumps(state.load(o.root, cid).oci_state(), indent=2))
    elif verb == "kill":
        ct.kill(cid, pos[1] if len(pos) > 1 else "TERM", opts["all"], o)
    elif verb == "delete":
        ct.delete(cid, opts["force"], o)
    elif verb == "exec":
        return _exec(cid, opts, pos[1:], o)
    elif verb in ("list", "ls"):
        _list(opts, o)
    elif verb == "ps":
        _ps(cid, opts, pos[1:], o)
    elif verb == "pause":
        ct.pause(cid, o)
    elif verb == "resume":
        ct.resume(cid, o)
    elif verb == "update":
        _update(cid, opts, o)
    elif verb == "features":
        from budu.runtime import features

        print(fastjson.dumps(features.document(), indent=4))
    elif verb == "spec":
        from budu.runtime import features

        features.write_default_spec(opts["bundle"], opts["rootless"])
    return 0


def _exec(cid: str, opts: dict, args: list[str], o) -> int:
    from budu.errors import ConfigError
    from budu.kernel import fastjson
    from budu.runtime import container as ct
    from budu.runtime import state

    if opts["process"]:
        try:
            with open(opts["process"], "rb") as f:
                process = fastjson.loads(f.read())
        except (OSError, ValueError) as e:
            raise ConfigError(f"--process {opts['process']}: {getattr(e, 'strerror', None) or e}") from None
        if not isinstance(process, dict):
            raise ConfigError(f"--process {opts['process']}: must be a JSON object")
        if opts["tty"]:
            process["terminal"] = True
    else:
        if not args:
            raise ConfigError("exec: a command is required (or --process FILE)")
        st = state.load(o.root, cid)
        process = ct.default_exec_process(st, args, opts["env"], opts["cwd"], opts["user"], opts["tty"],
                                          opts["cap"], opts["no_new_privs"])
        if opts["gids"]:
            process.setdefault("user", {})["additionalGids"] = [int(g) for g in opts["gids"]]
    return ct.exec_process(cid, process, o, opts["detach"])


def _list(opts: dict, o) -> None:
    from budu.kernel import fastjson
    from budu.runtime import container as ct

    states = ct.list_states(o)
    if opts["quiet"]:
        for s in states:
            print(s["id"])
    elif opts["format"] == "json":
        print(fastjson.dumps(states))
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"] or "root")
                 for s in states]
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        for r in rows:
            print("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _ps(cid: str, opts: dict, ps_args: list[str], o) -> None:
    from budu.kernel import fastjson
    from budu.runtime import container as ct

    pids = ct.container_pids(cid, o)
    if opts["format"] == "json":
        print(fastjson.dumps(pids))
        return
    import subprocess

    out = subprocess.run(["ps"] + (ps_args or ["-ef"]), capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    if not lines:
        return
    header = lines[0].split()
    col = header.index("PID") if "PID" in header else 1
    print(lines[0])
    wanted = {str(p) for p in pids}
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col] in wanted:
            print(line)


def _update(cid: str, opts: dict, o) -> None:
    from budu.errors import ConfigError, StateError
    from budu.kernel import fastjson
    from budu.runtime import state

    st = state.load(o.root, cid)
    if st.status() == "stopped":
        raise StateError(f"cannot update container {cid}: it is stopped")
    if opts["resources"]:
        src = sys.stdin.buffer.read() if opts["resources"] == "-" else open(opts["resources"], "rb").read()
        try:
            resources = fastjson.loads(src)
        except ValueError as e:
            raise ConfigError(f"--resources: {e}") from None
    else:
        resources = {}
        if opts["memory"]:
            resources["memory"] = {"limit": int(opts["memory"])}
        if opts["pids_limit"]:
            resources["pids"] = {"limit": int(opts["pids_limit"])}
        cpu = {}
        for key, dest in (("cpu_quota", "quota"), ("cpu_period", "period"), ("cpu_shares", "shares")):
            if opts[key]:
                cpu[dest] = int(opts[key])
        if opts["cpuset_cpus"]:
            cpu["cpus"] = opts["cpuset_cpus"]
        if cpu:
            resources["cpu"] = cpu
    from budu.runtime.spec import _validate_resources

    _validate_resources(resources)  # type: ignore[arg-type]
    st.cgroup().update(resources)  # type: ignore[union-attr]


if __name__ == "__main__":
    sys.exit(main())
