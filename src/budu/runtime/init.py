"""Container init: the forked side of `create`, one linear sequence from namespaces to execve.

    runtime            enter the pid namespace for its children only → fork init → leave it
                       (with a user or time namespace, C1 below forks init instead)
    intermediate (C1)  join namespaces by path → unshare user ns (parent writes the id maps)
                       → unshare the other namespaces → fork init → report its pid → exit
    init (pid 1)       join and unshare the other namespaces (when forked by the runtime)
                       → hostname → rootfs and mounts, up to the first cgroup mount → devices
                       (here if no later mount can cover them) → wait until the parent has put
                       us in our cgroup → cgroup ns → the other mounts → devices (if not yet)
                       → console → prestart/createRuntime hooks (parent) → createContainer hooks
                       → pivot_root → sysctl → masked/readonly paths → read-only root → cwd,
                       program and rlimits → report "created" → wait for `start` on the exec
                       fifo → startContainer hooks → user → capabilities → no_new_privs
                       → seccomp → execve

Any error is sent to the parent as one line, then init exits; the parent cleans up.
"""

from __future__ import annotations

import os

from budu.errors import BuduError, ConfigError
from budu.kernel import syscalls as sc
from budu.runtime import log, sync

NS_ORDER = ("user", "ipc", "uts", "network", "pid", "mount", "cgroup", "time")


def preload(proc_spec: dict, hooks: dict | None = None) -> None:
    """Import, before forking, every module the forked side will need: a child in a new user
    namespace may not be allowed to read the host's Python library, and after pivot_root (or a
    setns into the container's mounts) it cannot see it at all."""
    from budu.kernel import caps, fastjson  # noqa: F401
    from budu.runtime import process, rootfs  # noqa: F401

    if hooks and (hooks.get("createContainer") or hooks.get("startContainer")):
        import time  # noqa: F401  (hook timeouts)

        from budu.runtime import hooks as hk  # noqa: F401

    if proc_spec.get("terminal"):
        import fcntl  # noqa: F401
        import socket  # noqa: F401

        from budu.runtime import console  # noqa: F401


def join_namespaces(paths: dict[str, str]) -> None:
    """setns into each namespace by path; the user namespace first so the others are permitted."""
    fds = []
    for kind in NS_ORDER:
        if kind in paths:
            fds.append((kind, os.open(paths[kind], os.O_RDONLY | os.O_CLOEXEC)))
    for kind, fd in fds:
        try:
            sc.setns(fd, sc.ns_flag(kind), what=f"{kind} namespace {paths[kind]}")
        finally:
            os.close(fd)


def needs_intermediate(config: dict) -> bool:
    """Whether init must be forked from an intermediate process (C1) rather than the runtime.

    A new pid namespace must be owned by the container's user namespace (or /proc cannot be
    mounted in it), so with a user namespace C1 enters that first and then makes the pid
    namespace; a time namespace, like a pid namespace, only takes effect for children.  Without
    either, the runtime forks init straight into its pid namespace (`fork_in_pid_namespace`):
    one fork less on the way to the container's process.
    """
    kinds = {ns["type"] for ns in (config.get("linux") or {}).get("namespaces") or []}
    return "user" in kinds or "time" in kinds


def fork_in_pid_namespace(config: dict) -> int:
    """Runs in the runtime: fork, the child (init) in the container's pid namespace, new or joined
    by path.  The runtime enters it for its children only and returns to its own right after.
    Returns like os.fork: 0 in the child, its pid in the runtime."""
    pid_ns = next((ns for ns in (config.get("linux") or {}).get("namespaces") or [] if ns["type"] == "pid"), None)
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC) if pid_ns is not None else -1
    pid = -1
    try:
        if pid_ns is not None:
            if pid_ns.get("path"):
                join_namespaces({"pid": pid_ns["path"]})
            else:
                sc.unshare(sc.CLONE_NEWPID)
        pid = os.fork()
    finally:
        if own >= 0:
            if pid != 0:  # our later children (hooks) belong in our own pid namespace
                sc.setns(own, sc.CLONE_NEWPID, what="the runtime's own pid namespace")
            os.close(own)
    return pid


def direct(ch: sync.Channel, config: dict, console_fd: int | None) -> int:
    """Init forked by `fork_in_pid_namespace`: join and make the other namespaces (the cgroup
    namespace later, from inside the container's cgroup), then go on as init."""
    try:
        namespaces = (config.get("linux") or {}).get("namespaces") or []
        join_namespaces({ns["type"]: ns["path"] for ns in namespaces if ns.get("path") and ns["type"] != "pid"})
        flags = 0
        for ns in namespaces:
            if not ns.get("path") and ns["type"] not in ("pid", "cgroup"):
                flags |= sc.ns_flag(ns["type"])
        if flags:
            sc.unshare(flags)
    except BaseException as e:  # noqa: BLE001 - every failure must reach the parent as one line
        _report(ch, e)
        return 1
    new_cgroupns = any(ns["type"] == "cgroup" and not ns.get("path") for ns in namespaces)
    return init(ch, config, new_cgroupns, False, console_fd)


def intermediate(ch: sync.Channel, config: dict, console_fd: int | None) -> int:
    """Runs in the first fork (C1) when `needs_intermediate`; returns its exit status."""
    try:
        lx = config.get("linux") or {}
        namespaces = lx.get("namespaces") or []
        join_namespaces({ns["type"]: ns["path"] for ns in namespaces if ns.get("path")})
        new = [ns["type"] for ns in namespaces if not ns.get("path")]
        if "user" in new:
            sc.unshare(sc.CLONE_NEWUSER)
            ch.send(sync.USERMAP)
            ch.expect(sync.GO)
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        flags = 0
        for kind in new:
            if kind not in ("user", "cgroup"):  # cgroup: after the parent places init in its cgroup
                flags |= sc.ns_flag(kind)
        if flags:
            sc.unshare(flags)
        pid = os.fork()
        if pid == 0:
            os._exit(init(ch, config, "cgroup" in new, "user" in namespaces_types(namespaces), console_fd))
        ch.send(sync.PID, str(pid))
        return 0
    except BaseException as e:  # noqa: BLE001 - every failure must reach the parent as one line
        _report(ch, e)
        return 1


def namespaces_types(namespaces: list[dict]) -> set[str]:
    return {ns["type"] for ns in namespaces}


def init(ch: sync.Channel, config: dict, new_cgroupns: bool, in_userns: bool, console_fd: int | None) -> int:
    from budu.kernel import fastjson
    from budu.runtime import process as proc
    from budu.runtime import rootfs as rfs

    try:
        extra = config["_budu"]  # what the parent knew before forking: fifo, console, fds to keep
        lx = config.get("linux") or {}
        p = config["process"]
        root = config["root"]["path"]
        if any(ns.get("type") == "network" and not ns.get("path") for ns in lx.get("namespaces") or ()):
            sc.loopback_up()  # a new network namespace has lo down; runc and crun bring it up
        if config.get("hostname"):
            sc.sethostname(config["hostname"])
        if config.get("domainname"):
            sc.setdomainname(config["domainname"])

        log.debug("init: start")
        propagation = lx.get("rootfsPropagation", "")
        rfs.prepare_root(root, propagation)
        mounts = config.get("mounts") or []
        bind_dev = any(m["destination"] == "/dev" and "bind" in (m.get("options") or []) + [m.get("type")]
                       for m in mounts)

        def make_dev() -> None:
            rfs.create_devices(root, lx.get("devices") or [], in_userns, bind_dev)
            if not bind_dev:
                rfs.setup_dev_links(root)

        # The parent makes our cgroup and puts us in it meanwhile.  Only the cgroup namespace and
        # the cgroup mounts need to wait for that: the mounts before the first cgroup mount, and
        # /dev's nodes and links if no later mount can cover them, overlap with the parent's work.
        first_cgroup = next((i for i, m in enumerate(mounts) if m.get("type") == "cgroup"), len(mounts))
        for m in mounts[:first_cgroup]:
            rfs.mount_one(root, m, None, in_userns)
        dev_first = not rfs.covers_dev(root, mounts[first_cgroup:])
        if dev_first:
            make_dev()
        log.debug("init: waiting for cgroup")
        go = fastjson.loads(ch.expect(sync.GO))
        extra["state"] = go["state"]
        log.debug("init: in cgroup")
        if new_cgroupns:
            sc.unshare(sc.CLONE_NEWCGROUP)
        for m in mounts[first_cgroup:]:
            rfs.mount_one(root, m, go["cgroupPath"], in_userns)
        if not dev_first:
            make_dev()

        if p.get("terminal"):
            # as runc does: the pty becomes our session's terminal and stdio now, so that the
            # caller's stdio pipes close when `create` exits (containerd-shim waits for their EOF)
            from budu.runtime import console

            console.make_controlling(_setup_console(root, p, console_fd, extra.get("consoleSocket")))

        hooks = config.get("hooks") or {}
        if hooks.get("prestart") or hooks.get("createRuntime"):
            ch.send(sync.READY)
            ch.expect(sync.GO)  # the parent has run them, in the runtime's namespaces
        if hooks.get("createContainer"):
            from budu.runtime import hooks as hk

            hk.run_in_process(hooks["createContainer"], extra["state"], "createContainer")

        fifo = extra["fifoFd"]
        rfs.pivot(root)
        log.debug("init: pivoted")
        for key, value in (lx.get("sysctl") or {}).items():
            _sysctl(key, value)
        rfs.mask_paths(lx.get("maskedPaths") or [])
        rfs.readonly_paths(lx.get("readonlyPaths") or [])
        rfs.finish_root(config["root"].get("readonly", False), propagation)

        exe = proc.prepare(p)
        if "oomScoreAdj" in p:
            _write("/proc/self/oom_score_adj", str(p["oomScoreAdj"]))

        log.debug("init: created")
        ch.send(sync.CREATED)
        ch.close()
        # wait for `start`: it writes one byte into the fifo we hold open
        while True:
            try:
                if os.read(fifo, 1):
                    break
            except InterruptedError:
                continue
        os.close(fifo)
        if hooks.get("startContainer"):
            from budu.runtime import hooks as hk

            hk.run_in_process(hooks["startContainer"], dict(extra["state"], status="running"), "startContainer")
        proc.finalize(p, extra.get("seccomp"))
        log.debug("init: exec")
        proc.exec_process(exe, p, extra.get("preserveFds") or 0)
    except BaseException as e:  # noqa: BLE001
        _report(ch, e)
        return 1
    return 0  # not reached


def _setup_console(root: str, p: dict, console_fd: int | None, console_socket: str | None) -> int:
    """Open a pty from the container's devpts, mount it at /dev/console, hand the master over."""
    from budu.runtime import console

    ptmx = os.path.join(root, "dev/pts/ptmx")
    if not os.path.exists(ptmx):
        ptmx = "/dev/ptmx"
    slave, slave_path = console.new_console(ptmx, p, console_fd if console_fd is not None else console_socket)  # type: ignore[arg-type]
    target = os.path.join(root, "dev/console")
    if not os.path.lexists(target):
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    sc.mount(slave_path, target, None, sc.MS_BIND)
    return slave


def _sysctl(key: str, value: str) -> None:
    path = "/proc/sys/" + key.replace(".", "/")
    if ".." in key.split(".") or "/" in key:
        raise ConfigError(f"linux.sysctl: invalid key {key!r}")
    try:
        _write(path, value)
    except OSError as e:
        raise ConfigError(f"linux.sysctl.{key}: cannot set to {value!r}: {e.strerror}") from None


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _report(ch: sync.Channel, e: BaseException) -> None:
    if isinstance(e, BuduError):
        msg = str(e)
        code = e.exit_code
    elif isinstance(e, OSError):
        msg = e.strerror if not e.args or len(e.args) < 2 else str(e.args[1])
        if e.filename:
            msg = f"{e.filename}: {msg}"
        code = 1
    else:
        msg = f"{type(e).__name__}: {e}"
        code = 1
    try:
        ch.send(sync.ERROR, f"{code}:{msg}")
    except (sync.ChildDied, sync.ChildError):
        pass  # the runtime has given up on us (and says why itself)
    except OSError:
        # after `create` returned nobody listens: the container's stderr is all that is left
        try:
            os.write(2, f"budu-runtime: {msg}\n".encode())
        except OSError:
            pass
