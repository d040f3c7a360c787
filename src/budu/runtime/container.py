"""The runtime's side of the container lifecycle (runtime-spec runtime.md): create, start, kill,
delete, exec, run, pause and resume.  The forked side lives in init.py.

Every step that can fail after the container id is reserved is undone on the way out, so a failed
`create` leaves no process, cgroup, mount or state directory behind.
"""

from __future__ import annotations

import errno
import os
import time

from budu.errors import BuduError, ConfigError, NotFound, StateError
from budu.runtime import state
from budu.runtime.state import State

# What only create, run and exec need is imported in them: start, state, kill and delete are each
# a process of their own too (containerd and podman call them one by one), and import no more
# than they use.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from budu.runtime import sync

SIGKILL = 9
_FORWARDED = (1, 2, 3, 10, 12, 15, 28)


class Options:
    """What the caller of create/run/exec asked for, beyond the bundle."""

    __slots__ = ("root", "systemd_cgroup", "pid_file", "console_socket", "preserve_fds")

    def __init__(self, root: str = state.DEFAULT_ROOT, systemd_cgroup: bool = False,
                 pid_file: str | None = None, console_socket: str | None = None, preserve_fds: int = 0) -> None:
        self.root = root
        self.systemd_cgroup = systemd_cgroup
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.preserve_fds = preserve_fds


def parse_signal(sig: str | int) -> int:
    if isinstance(sig, int) or sig.isdigit():
        return int(sig)
    from budu.kernel import signals  # only `kill` parses a name: not imported on every start

    num = signals.number(sig)
    if num is None:
        raise ConfigError(f"invalid signal {sig!r}")
    return num


def _raise_child(payload: str) -> None:
    code, _, msg = payload.partition(":")
    err = BuduError(msg)
    err.exit_code = int(code) if code.isdigit() else 1
    raise err


def _write_pid_file(path: str, pid: int) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def _hook_state(st: State, status: str) -> dict:
    out = {"ociVersion": st.data.get("ociVersion", "1.0.2"), "id": st.id, "status": status,
           "pid": st.pid, "bundle": st.data.get("bundle", "")}
    if st.data.get("annotations"):
        out["annotations"] = st.data["annotations"]
    return out


def create(cid: str, bundle: str, opts: Options, console_fd: int | None = None, config: dict | None = None,
           start: bool = False) -> State:
    """Create a container from `bundle` (its config.json already loaded by the caller, or not).

    With `start` (run), the start signal goes into the exec fifo right away: init goes on to the
    user's process as soon as it is created, without a round trip through this process.
    """
    from budu.kernel import fastjson
    from budu.runtime import init, log, primer, spec, sync

    log.debug("create: start")
    if config is None:
        config = spec.load(bundle)
    if "process" not in config:
        raise ConfigError("process: missing (a container needs a process to run)")
    lx = config.get("linux") or {}
    ns_types = [ns["type"] for ns in lx.get("namespaces") or []]
    if "mount" not in ns_types:
        raise ConfigError("linux.namespaces: budu-runtime needs a mount namespace")
    if config["process"].get("terminal") and console_fd is None and not opts.console_socket:
        raise ConfigError("process.terminal is true but no --console-socket was given")
    hooks = config.get("hooks") or {}
    compiled = None
    if lx.get("seccomp") is not None:
        from budu.runtime import seccomp_filter

        compiled = seccomp_filter.prepare(opts.root, lx["seccomp"])  # checks it too: before any state

    st = state.new(opts.root, cid)
    cg = None
    pid = 0
    c1 = 0
    try:
        os.mkfifo(st.fifo, 0o600)
        # init holds the fifo from here on: it may not be able to open it itself (a user namespace)
        fifo_fd = os.open(st.fifo, os.O_RDWR | os.O_CLOEXEC)
        config["_budu"] = {"fifo": st.fifo, "consoleSocket": opts.console_socket, "preserveFds": opts.preserve_fds,
                           "fifoFd": fifo_fd, "seccomp": compiled}
        # every module the container's side needs, imported once here rather than after the fork
        # in a child whose every new page would be a copy-on-write fault
        init.preload(config["process"], hooks)
        parent, child = sync.pair()
        # Fork as soon as the config is known to be valid: the child's namespaces and mounts (on
        # one core) overlap with the state file and the cgroup made here (on the other).
        log.debug("create: fork")
        if init.needs_intermediate(config):
            c1 = os.fork()
            if c1 == 0:
                parent.close()
                os._exit(init.intermediate(child, config, console_fd))
        else:
            try:
                pid = init.fork_in_pid_namespace(config)
            except BaseException:
                child.close()
                raise
            if pid == 0:
                parent.close()
                os._exit(init.direct(child, config, console_fd))
        child.close()
        if start:
            os.write(fifo_fd, b"0")  # init reads it only once it has reported "created"
        os.close(fifo_fd)
        try:
            from budu.runtime import cgroups

            cg_path = cgroups.resolve_path(lx.get("cgroupsPath"), cid, opts.systemd_cgroup)
            st.data = {
                "id": cid, "ociVersion": config["ociVersion"], "bundle": os.path.abspath(bundle),
                "rootfs": config["root"]["path"], "created": state.iso_now(), "creating": True,
                "cgroupPath": cg_path, "annotations": config.get("annotations") or {},
                "namespaces": lx.get("namespaces") or [], "process": config["process"],
                "seccomp": lx.get("seccomp"),
                "hooks": {k: hooks[k] for k in ("poststart", "poststop") if k in hooks},
            }
            st.save()  # from here a crash leaves a record that `delete -f` can clean up
            cg = st.cgroup()  # from the cgroupPath recorded above; the state keeps this one object
            # where it is in each hierarchy, for the later verbs (and budu-runtime's C front door)
            st.data["cgroupMode"] = cg.mode
            st.data["cgroupPaths"] = cg.paths
            cg.create(_with_default_devices(lx.get("resources")))
            log.debug("create: cgroup made")
            if c1:  # init's pid comes from C1, after the user namespace's id maps
                tag, payload = parent.recv()
                if tag == sync.USERMAP:
                    _write_id_maps(c1, lx)
                    parent.send(sync.GO)
                    tag, payload = parent.recv()
                if tag == sync.ERROR:
                    _raise_child(payload)
                pid = int(payload)
            log.debug("create: cgroup add")
            cg.add(pid)
            log.debug("create: cgroup added")
            st.data["pid"] = pid
            parent.send(sync.GO, fastjson.dumps({"state": _hook_state(st, "created"), "cgroupPath": cg_path}))
            primer.release()  # the kernel's lock for moves need not stay warm any longer
            st.data["pidStartTime"] = state.proc_start_time(pid)
            if c1:
                _reap(c1)
            if hooks.get("prestart") or hooks.get("createRuntime"):
                from budu.runtime import hooks as hk

                parent.expect(sync.READY)
                log.debug("create: init ready")
                creating = _hook_state(st, "creating")
                hk.run_hooks(hooks.get("prestart"), creating, "prestart")
                hk.run_hooks(hooks.get("createRuntime"), creating, "createRuntime")
                parent.send(sync.GO)
            parent.expect(sync.CREATED)
            log.debug("create: created")
        except sync.ChildError as e:
            _raise_child(str(e))
        except sync.ChildDied as e:
            raise BuduError(f"container init failed: {e}") from None
        finally:
            parent.close()
            if c1:
                _reap(c1)
        del st.data["creating"]
        st.save()
        if opts.pid_file:
            _write_pid_file(opts.pid_file, pid)
        return st
    except BaseException:
        _kill_and_wait(pid, st.data.get("pidStartTime"))
        if cg is not None:
            try:
                cg.kill_all(SIGKILL)
            except OSError:
                pass
            cg.destroy()
        _remove_dir(st.dir)
        raise


# What every container may use whatever its config says (as runc allows): mknod of any node, and
# the default devices and ptys in full.
_DEFAULT_DEVICE_RULES = [
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
]


def _with_default_devices(resources: dict | None) -> dict | None:
    if not resources or not resources.get("devices"):
        return resources
    out = dict(resources)
    out["devices"] = list(resources["devices"]) + _DEFAULT_DEVICE_RULES
    return out


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _write_id_maps(pid: int, lx: dict) -> None:
    for key, name in (("uidMappings", "uid_map"), ("gidMappings", "gid_map")):
        lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in lx.get(key) or [])
        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(lines)
        except OSError as e:
            raise ConfigError(f"linux.{key}: cannot write {name}: {e.strerror}") from None


def _kill_and_wait(pid: int, start_time: int | None, timeout: float = 10.0) -> None:
    if pid <= 0 or state.proc_start_time(pid) is None:
        return
    if start_time is not None and state.proc_start_time(pid) != start_time:
        return
    try:
        os.kill(pid, SIGKILL)
    except ProcessLookupError:
        return
    _wait_gone(pid, start_time, timeout)


def _wait_gone(pid: int, start_time: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it is ours (run, subreaper)
            if done:
                return True
        except ChildProcessError:
            pass
        now = state.proc_start_time(pid)
        if now is None or (start_time is not None and now != start_time):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def _remove_dir(path: str) -> None:
    """Remove a state directory (flat: a few files). Not shutil.rmtree: it imports `re` (~15 ms)."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(path, name))
        except IsADirectoryError:
            _remove_dir(os.path.join(path, name))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def start(cid: str, opts: Options) -> State:
    return _start(state.load(opts.root, cid))


def _start(st: State) -> State:
    cid = st.id
    status = st.status()
    if status != "created":
        raise StateError(f"cannot start container {cid}: it is {status}, not created")
    try:
        fd = os.open(st.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ENOENT):
            raise StateError(f"cannot start container {cid}: its init process is gone") from None
        raise
    try:
        os.unlink(st.fifo)
        os.write(fd, b"0")
    finally:
        os.close(fd)
    _started(st)
    return st


def _started(st: State) -> None:
    """The container's process is on its way: poststart hooks (their failure is only a warning)."""
    poststart = (st.data.get("hooks") or {}).get("poststart")
    if not poststart:
        return
    from budu.runtime import hooks as hk

    try:
        hk.run_hooks(poststart, _hook_state(st, "running"), "poststart")
    except BuduError as e:
        _warn(f"{e} (the container keeps running)")


def _warn(msg: str) -> None:
    from budu.runtime import log

    log.warning(msg)


def kill(cid: str, sig: str | int, all_: bool, opts: Options) -> None:
    st = state.load(opts.root, cid)
    signum = parse_signal(sig)
    status = st.status()
    if status not in ("created", "running", "paused"):
        raise StateError(f"cannot kill container {cid}: it is {status}")
    cg = st.cgroup()
    if all_ and cg is not None:
        cg.kill_all(signum)
        if status == "paused" and signum == SIGKILL:
            cg.thaw()
        return
    try:
        os.kill(st.pid, signum)
    except ProcessLookupError:
        raise StateError(f"cannot kill container {cid}: it is not running") from None


def delete(cid: str, force: bool, opts: Options) -> None:
    try:
        st = state.load(opts.root, cid)
    except NotFound:
        # a state directory without a state file is what a killed `create` leaves: clean it with -f;
        # like runc, `delete -f` of a container that does not exist succeeds (conmon and podman
        # call it after a failed create)
        path = os.path.join(opts.root, cid)
        if force:
            if os.path.isdir(path):
                _remove_dir(path)
            return
        raise
    _destroy(st, force)


def _destroy(st: State, force: bool) -> None:
    """Stop what is left of the container, run poststop hooks, free its cgroup and state."""
    cid = st.id
    status = st.status()
    if status in ("running", "paused") and not force:
        raise StateError(f"cannot delete container {cid} that is not stopped: {status}")
    cg = st.cgroup()
    if status != "stopped":
        own_pidns = any(ns["type"] == "pid" and not ns.get("path") for ns in st.data.get("namespaces") or [])
        if cg is not None and (force or not own_pidns):
            cg.kill_all(SIGKILL)
        if cg is not None and status == "paused":
            cg.thaw()
        _kill_and_wait(st.pid, st.data.get("pidStartTime"))
    if cg is not None and not st.data.get("creating"):
        # processes outside our pid namespace (no private pidns) must be gone too
        for _ in range(200):
            pids = cg.pids()
            if not pids:
                break
            cg.kill_all(SIGKILL)
            time.sleep(0.005)
    poststop = (st.data.get("hooks") or {}).get("poststop")
    if poststop:
        from budu.runtime import hooks as hk

        try:
            hk.run_hooks(poststop, _hook_state(st, "stopped"), "poststop")
        except BuduError as e:
            _warn(str(e))
    if cg is not None:
        cg.destroy()
    _remove_dir(st.dir)


def pause(cid: str, opts: Options) -> None:
    st = state.load(opts.root, cid)
    status = st.status()
    if status != "running":
        raise StateError(f"cannot pause container {cid}: it is {status}")
    st.cgroup().freeze()  # type: ignore[union-attr]


def resume(cid: str, opts: Options) -> None:
    st = state.load(opts.root, cid)
    status = st.status()
    if status != "paused":
        raise StateError(f"cannot resume container {cid}: it is {status}, not paused")
    st.cgroup().thaw()  # type: ignore[union-attr]


def wait_forwarding(pid: int, master: int | None = None) -> int:
    """Wait for our (adopted) child `pid`, forwarding signals to it; return a shell-style code."""
    import _signal
    import gc

    gc.enable()  # this may last as long as the container does

    def forward(signum: int, _frame: object) -> None:
        if signum == 28 and master is not None:
            from budu.runtime import console

            size = console.get_size(0)
            if size:
                console.set_size(master, *size)
            return
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for s in _FORWARDED:
        _signal.signal(s, forward)
    if master is not None:
        from budu.runtime import console

        console.proxy(master, pid)
    while True:
        try:
            done, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return 255
        if done == pid:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code


def run(cid: str, bundle: str, opts: Options, detach: bool, keep: bool) -> int:
    from budu.kernel import syscalls as sc
    from budu.runtime import log, spec

    config = spec.load(bundle)
    console_pair = None
    if (config.get("process") or {}).get("terminal") and not opts.console_socket:
        if detach:
            raise ConfigError("cannot allocate a terminal for a detached container without --console-socket")
        import socket

        console_pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    if not detach:
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    st = create(cid, bundle, opts, console_fd=console_pair[1].fileno() if console_pair else None, config=config,
                start=True)
    try:
        master = None
        if console_pair:
            from budu.runtime import console

            console_pair[1].close()
            master = console.recv_fd(console_pair[0].detach())
        os.unlink(st.fifo)  # the start signal went with create: the container is running
        _started(st)
        log.debug("run: started")
        if detach:
            return 0
        code = wait_forwarding(st.pid, master)
    except BaseException:
        if not detach:
            _destroy(st, True)
        raise
    log.debug("run: container exited")
    if not keep:
        _destroy(st, True)
    log.debug("run: deleted")
    return code


def exec_process(cid: str, process: dict, opts: Options, detach: bool) -> int:
    """Run another process in a running container: every namespace, its cgroup, its own user,
    capabilities, no_new_privs and the container's seccomp profile."""
    from budu.kernel import syscalls as sc
    from budu.runtime import primer, spec, sync

    st = state.load(opts.root, cid)
    status = st.status()
    if status not in ("created", "running"):
        raise StateError(f"cannot exec in container {cid}: it is {status}")
    spec._validate_process(process, "process")
    pid = st.pid
    paths = {}
    for ns in st.data.get("namespaces") or []:
        paths[ns["type"]] = f"/proc/{pid}/ns/{sc.NS_PROC_NAMES[ns['type']]}"
    console_pair = None
    if process.get("terminal") and not opts.console_socket:
        if detach:
            raise ConfigError("cannot allocate a terminal for a detached process without --console-socket")
        import socket

        console_pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    console_conn = None
    if process.get("terminal") and opts.console_socket:
        # connect here, as runc does: after the setns into the container's mounts the path is gone
        import socket

        console_conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            console_conn.connect(opts.console_socket)
        except OSError as e:
            console_conn.close()
            raise BuduError(f"console socket {opts.console_socket}: {e.strerror}") from None
    if not detach:
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    compiled = None
    if st.data.get("seccomp") is not None:
        from budu.runtime import seccomp_filter

        compiled = seccomp_filter.prepare(opts.root, st.data["seccomp"])  # before we enter its mounts
    parent, child = sync.pair()
    c1 = os.fork()
    if c1 == 0:
        parent.close()
        os._exit(_exec_child(child, paths, process, compiled, opts,
                             console_pair[1].fileno() if console_pair else
                             console_conn.fileno() if console_conn else None))
    child.close()
    if console_conn is not None:
        console_conn.close()
    pid2 = 0
    try:
        cg = st.cgroup()
        if cg is not None:
            cg.add(c1)
        primer.release()
        parent.send(sync.GO)
        pid2 = int(parent.expect(sync.PID))
        _reap(c1)
        try:
            tag, payload = parent.recv()
            if tag == sync.ERROR:
                _raise_child(payload)
        except sync.ChildDied:
            pass  # the write end closed on execve: the process runs
    except sync.ChildError as e:
        _reap(c1)
        _raise_child(str(e))
    finally:
        parent.close()
    if opts.pid_file:
        _write_pid_file(opts.pid_file, pid2)
    if detach:
        return 0
    master = None
    if console_pair:
        from budu.runtime import console

        console_pair[1].close()
        master = console.recv_fd(console_pair[0].detach())
    return wait_forwarding(pid2, master)


def _exec_child(ch: sync.Channel, paths: dict[str, str], process: dict, seccomp: tuple[bytes, int] | None,
                opts: Options, console_fd: int | None) -> int:
    from budu.runtime import init, sync  # imported by exec_process before the fork
    from budu.runtime import process as proc

    try:
        init.preload(process)  # while still in the host's namespaces; the parent meanwhile joins us to the cgroup
        ch.expect(sync.GO)
        init.join_namespaces(paths)
        os.chdir("/")
        c2 = os.fork()
        if c2:
            ch.send(sync.PID, str(c2))
            return 0
        exe = proc.prepare(process)
        if process.get("terminal"):
            from budu.runtime import console

            slave, _ = console.new_console("/dev/ptmx", process,
                                           console_fd if console_fd is not None else opts.console_socket)  # type: ignore[arg-type]
            console.make_controlling(slave)
        proc.finalize(process, seccomp)
        proc.exec_process(exe, process, opts.preserve_fds)
    except BaseException as e:  # noqa: BLE001
        init._report(ch, e)
        return 1
    return 0


def default_exec_process(st: State, args: list[str], env: list[str], cwd: str | None, user: str | None,
                         tty: bool, caps: list[str], no_new_privs: bool) -> dict:
    """runc's `exec ARGS...`: the container's own process, with these overrides."""
    p = dict(st.data.get("process") or {})
    p["args"] = args
    p["env"] = list(p.get("env") or []) + env
    p["terminal"] = tty
    p.pop("consoleSize", None)
    if cwd:
        p["cwd"] = cwd
    if user:
        uid, _, gid = user.partition(":")
        try:
            p["user"] = {"uid": int(uid), "gid": int(gid) if gid else 0}
        except ValueError:
            raise ConfigError(f"--user {user!r}: must be UID[:GID]") from None
    if caps:
        c = {k: list(v) for k, v in (p.get("capabilities") or {}).items()}
        for name in caps:
            for key in ("bounding", "effective", "permitted", "inheritable", "ambient"):
                if name not in c.setdefault(key, []):
                    c[key].append(name)
        p["capabilities"] = c
    if no_new_privs:
        p["noNewPrivileges"] = True
    return p


def list_states(opts: Options) -> list[dict]:
    out = []
    for cid in state.list_ids(opts.root):
        try:
            out.append(state.load(opts.root, cid).oci_state())
        except BuduError:
            continue
    return out


def container_pids(cid: str, opts: Options) -> list[int]:
    st = state.load(opts.root, cid)
    cg = st.cgroup()
    return sorted(cg.pids()) if cg is not None else ([st.pid] if st.alive() else [])
