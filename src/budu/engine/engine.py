"""The engine: the one interface the CLI and the Docker API call to create and run containers.

Each container is a record (engine.records), a writable snapshot over its image, a directory
holding its bundle and logs, and — while it runs — a budu-monitor that owns it.  Every operation
on a container takes its lock (flock on its directory), so many budu processes can act at once;
every multi-step change marks the record first (`removing` + owner pid), so a budu killed halfway
leaves something the next command finishes instead of something nobody can see or remove.
"""

from __future__ import annotations

import fcntl
import os
import struct
import time

from budu.engine import events, netfiles, status
from budu.engine.netops import NetworkOps
from budu.engine.records import Container, ContainerStore, pid_alive
from budu.engine.validate import check_name
from budu.errors import BuduError, ConfigError, NotFound, StateError
from budu.kernel import fastjson, signals
from budu.kernel.files import escape_mountinfo, rmtree, which
from budu.metadata import Database

DEFAULT_ROOT = "/var/lib/budu"
DEFAULT_RUNTIME = "budu-runtime"
DEFAULT_NETWORK = "bridge"  # docker's default: the default bridge network
LOG_DEFAULTS = {"max-size": "20m", "max-file": "5"}  # rotation on by default (docker's `local` driver sizes)


def root_dir() -> str:
    return os.environ.get("BUDU_ROOT") or DEFAULT_ROOT


class RunError(BuduError):
    """The container's command could not be run: 126 (cannot execute) or 127 (not found), as docker."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.exit_code = _classify(message)


def _classify(message: str) -> int:
    low = message.lower()
    if "not found" in low or "no such file" in low:
        return 127
    if "permission denied" in low or "not executable" in low or "exec format error" in low:
        return 126
    return 125


def docker_size(text: str) -> int:
    """docker's FromHumanSize (decimal units: 10k = 10000), for --log-opt max-size."""
    t = text.strip().lower().rstrip("b")
    mult = 1
    for unit, m in (("k", 1000), ("m", 1000**2), ("g", 1000**3), ("t", 1000**4)):
        if t.endswith(unit):
            t, mult = t[:-1], m
            break
    try:
        n = float(t)
    except ValueError:
        raise ConfigError(f"invalid size: '{text}'") from None
    if n < 0:
        raise ConfigError(f"invalid size: '{text}'")
    return int(n * mult)


class Engine(NetworkOps):
    def __init__(self, root: str | None = None) -> None:
        self.root = root or root_dir()
        self.run_root = "/run/budu" if self.root == DEFAULT_ROOT else os.path.join(self.root, "run")
        self.db = Database(self.root)
        self.store = ContainerStore(self.db)
        self._images = None
        self._volumes = None
        self._networks = None
        self._held: set[str] = set()
        self._image_configs: dict[str, dict] = {}

    def close(self) -> None:
        if self._images is not None:
            self._images.close()
        self.db.close()

    # -- parts, made when first needed (a `ps` needs neither) --------------------------------------

    @property
    def images(self):  # noqa: ANN201
        if self._images is None:
            from budu.images.service import Images

            self._images = Images(self.root)
        return self._images

    @property
    def networks(self):  # noqa: ANN201
        if self._networks is None:
            from budu.network import Networks

            self._networks = Networks(self.root, self.run_root, self.db)
        return self._networks

    @property
    def volumes(self):  # noqa: ANN201
        if self._volumes is None:
            from budu.engine.volumes import Volumes

            self._volumes = Volumes(self.root, self.db)
        return self._volumes

    def dir(self, cid: str) -> str:
        return os.path.join(self.root, "containers", cid)

    def runtime_argv(self, c: Container) -> list[str]:
        name = c.host_config.get("Runtime") or DEFAULT_RUNTIME
        path = which(name) if "/" not in name else name
        if not path:
            raise ConfigError(f"unknown or invalid runtime name: {name}")
        argv = [path, "--root", os.path.join(self.run_root, "runtime", os.path.basename(name))]
        if os.path.basename(path) == "crun" and _hybrid_cgroups():
            # crun 1.8 refuses a hybrid host outright ("drop all controllers from cgroupv2"): it
            # runs in a mount namespace of its own where the v2 mount is hidden, and sees pure v1.
            argv = [which("unshare") or "/usr/bin/unshare", "-m", "--propagation", "private", "sh", "-c",
                    'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"', "sh", *argv]
        return argv

    def _runtime(self, c: Container, *args: str, check: bool = True):  # noqa: ANN202
        import subprocess

        p = subprocess.run([*self.runtime_argv(c), *args], capture_output=True, text=True)
        if check and p.returncode != 0:
            raise StateError(_runtime_message(p.stderr) or f"runtime {args[0]} failed")
        return p

    def _runtime_has(self, c: Container) -> bool:
        """Does the runtime still hold state for it?  (runc, crun and budu-runtime keep a
        directory per container under --root.)"""
        try:
            root = self.runtime_argv(c)
        except ConfigError:
            return False
        return os.path.exists(os.path.join(root[root.index("--root") + 1], c.id))

    def lock(self, c: Container) -> ContainerLock:
        """`with engine.lock(c) as c:` holds the container's lock and gives its record as it is now
        (it may have changed).  Re-entrant: a step that needs the lock may run inside another."""
        return ContainerLock(self, c.id)

    # -- lookup -----------------------------------------------------------------------------------

    def get(self, ref: str) -> Container:
        return self.store.get(ref)

    def state(self, c: Container) -> status.State:
        """What it is doing; finishes what a killed budu or a dead monitor left behind."""
        if c.removing:
            owner = int(c.extra.get("owner") or 0)
            if not pid_alive(owner):
                self._destroy(c, volumes=bool(c.extra.get("remove_volumes")))
                raise NotFound(f"No such container: {c.id}")
            if c.extra.get("phase") == "creating":
                return status.State(status="created")
        st = status.read(self.dir(c.id), c.id, paused=c.paused, removing=c.removing)
        if st.orphaned:
            st = self._reap_orphan(c)
        return st

    def list(self) -> list[tuple[Container, status.State]]:
        out = []
        for c in self.store.list():
            try:
                out.append((c, self.state(c)))
            except NotFound:
                continue
        return out

    def _reap_orphan(self, c: Container) -> status.State:
        """Its monitor is gone (killed, or the host rebooted): stop what is left, record an exit."""
        with self.lock(c) as c:
            st = status.read(self.dir(c.id), c.id, paused=c.paused)
            if not st.orphaned:
                return st
            self._runtime(c, "kill", c.id, "KILL", check=False)
            self._runtime(c, "delete", "--force", c.id, check=False)
            _unmount(os.path.join(self.dir(c.id), "rootfs"))
            self._net_down(c)
            raw = dict(st.raw, status="exited", exit_code=255, pid=0,
                       finished_at=st.raw.get("finished_at") if st.raw.get("finished_at", "").startswith(("1", "2"))
                       else _now_rfc3339(), error="the container's monitor is gone")
            netfiles.write_atomic(os.path.join(self.dir(c.id), "status"), fastjson.dumps(raw))
            if c.paused:
                self.store.update(c.id, paused=False)
            return status.read(self.dir(c.id), c.id)

    # -- create -----------------------------------------------------------------------------------

    def create(self, image_ref: str, config: dict, host_config: dict, networking_config: dict | None = None,
               name: str | None = None, pull: str = "missing", platform: str | None = None,
               progress=None) -> Container:  # noqa: ANN001
        image = self.resolve_image(image_ref, pull, platform, progress)
        image_config = self._image_config(image.id)
        config = dict(config, Image=image_ref)
        host_config = _host_defaults(host_config)
        if host_config["RestartPolicy"]["Name"] not in ("", "no") and host_config.get("AutoRemove"):
            raise ConfigError("can't create 'AutoRemove' container with restart policy")
        name = check_name(name) if name else None
        cid = os.urandom(32).hex()
        c = Container(id=cid, name=name or "", image_id=image.id, image_ref=image_ref, created=time.time(),
                      config=config, host_config=host_config, snapshot=f"container-{cid}", removing=True,
                      extra={"owner": os.getpid(), "phase": "creating",
                             "networking_config": networking_config or {},
                             # what `ps` shows as COMMAND, kept here so that it needs no image
                             "image_config": {"Entrypoint": image_config.get("Entrypoint"),
                                              "Cmd": image_config.get("Cmd")},
                             "image_exposed": image_config.get("ExposedPorts") or {}})
        for _ in range(3):
            if not name:
                from budu.engine.names import random_name

                c.name = random_name(self.store.names())
            try:
                self.store.add(c)  # a name in use fails here, before anything is made
                break
            except ConfigError:
                if name:
                    raise
        try:
            os.makedirs(self.dir(cid), mode=0o710)
            self.images.snapshots.prepare(c.snapshot, image.chain_id, labels={"container": cid})
            from budu.engine.mounts import plan_mounts

            c.mounts = plan_mounts(config, host_config, image_config, self.volumes)
            c.removing, c.extra = False, {k: v for k, v in c.extra.items() if k not in ("owner", "phase")}
            self.store.update(cid, mounts=c.mounts, removing=False, extra=c.extra)
        except BaseException:
            self._destroy(c, volumes=True)
            raise
        self.emit(c, "create")
        return c

    def resolve_image(self, ref: str, pull: str = "missing", platform: str | None = None, progress=None):  # noqa: ANN001, ANN201
        if pull == "always":
            return self.images.pull(ref, progress=progress)
        try:
            return self.images.get(ref)
        except NotFound:
            if pull == "never":
                raise NotFound(f"No such image: {ref}") from None
        if progress is not None and hasattr(progress, "announce"):
            progress.announce(ref)
        return self.images.pull(ref, progress=progress)

    # -- start ------------------------------------------------------------------------------------

    def start(self, c: Container, attach_flags: int | None = None,
              tty_size: tuple[int, int] | None = None):  # noqa: ANN201
        """Start it under a new monitor; with `attach_flags`, attach before it starts (nothing is
        missed, and a terminal has the user's size from its first line) and return the socket."""
        from budu.engine import monitor

        with self.lock(c) as c:
            if c.removing:
                raise StateError(f"container {c.id} is marked for removal and cannot be started")
            st = self.state(c)
            if st.running:
                return None
            d = self.dir(c.id)
            for f in ("stop-requested", "status"):
                _unlink(os.path.join(d, f))
            rootfs = os.path.join(d, "rootfs")
            self._mount_rootfs(c, rootfs)
            try:
                spec = self._bundle(c, rootfs)
                netfiles.write_atomic(os.path.join(d, "config.json"), fastjson.dumps(spec))
                sync = monitor.spawn(self._monitor_args(c))
            except monitor.CreateFailed as e:
                self._net_down(c)
                _unmount(rootfs)
                raise RunError(str(e)) from None
            except BaseException:
                self._net_down(c)
                _unmount(rootfs)
                raise
            sock = None
            try:
                if attach_flags is not None:
                    sock = monitor.connect(d, attach_flags)
                    if sock is not None and tty_size and c.config.get("Tty"):
                        sock.sendall(monitor.frame(monitor.RESIZE, struct.pack(">HH", *tty_size)))
                sync.start()
            except monitor.CreateFailed as e:
                if sock is not None:
                    sock.close()
                self._net_down(c)
                raise RunError(str(e)) from None
            except BaseException:
                sync.abandon()
                if sock is not None:
                    sock.close()
                self._net_down(c)
                raise
            return sock

    def _mount_rootfs(self, c: Container, target: str) -> None:
        from budu.kernel import syscalls

        os.makedirs(target, exist_ok=True)
        _unmount(target)  # a leftover of a crash
        (m,) = self.images.snapshots.mounts(c.snapshot)
        if m.type == "bind":
            syscalls.mount(m.source, target, None, syscalls.MS_BIND | syscalls.MS_REC)
        else:
            syscalls.mount(m.source, target, m.type, 0, ",".join(m.options))

    def _bundle(self, c: Container, rootfs: str) -> dict:
        """Write the files the container gets and return its OCI config."""
        from budu.engine.spec import build_spec

        d = self.dir(c.id)
        image_config = self._image_config(c.image_id)
        hc = c.host_config
        from budu.engine import netsetup

        plan = netsetup.up(self, c)  # the caller takes it down again if the start fails
        host_net = plan.host_network
        hostname = c.config.get("Hostname") or (os.uname().nodename if host_net else c.id[:12])
        netfiles.write_atomic(os.path.join(d, "hostname"), hostname + "\n")
        if plan.hosts_from:  # container:X shares X's view of names
            for f in ("hosts", "resolv.conf"):
                with open(os.path.join(plan.hosts_from, f), "rb") as src:
                    netfiles.write_atomic(os.path.join(d, f), src.read())
        else:
            netfiles.write_atomic(os.path.join(d, "hosts"), netfiles.hosts(
                hostname, hc.get("ExtraHosts") or [], plan.addresses, host_net))
            netfiles.write_atomic(os.path.join(d, "resolv.conf"), netfiles.resolv_conf(
                host_net, hc.get("Dns") or plan.dns, hc.get("DnsSearch") or [], hc.get("DnsOptions") or []))
        files = {"/etc/hostname": os.path.join(d, "hostname"), "/etc/hosts": os.path.join(d, "hosts"),
                 "/etc/resolv.conf": os.path.join(d, "resolv.conf")}
        self._copy_up(c, rootfs)
        return build_spec(container_id=c.id, rootfs=rootfs, image_config=image_config, config=c.config,
                          host_config=hc, mounts=c.mounts, files=files, netns=plan.netns,
                          cgroups_path=f"/budu/{c.id}", volumes=self.volumes)

    def _copy_up(self, c: Container, rootfs: str) -> None:
        """A new, empty volume gets the image's files at its mount point, once (docker's copy-up)."""
        pending = [m for m in c.mounts if m.get("_copy_up")]
        if not pending:
            return
        from budu.engine.mounts import copy_up

        for m in pending:
            copy_up(self.volumes.mount_source(self.volumes.get(m["Name"])), rootfs, m["Destination"])
            m.pop("_copy_up", None)
        self.store.update(c.id, mounts=c.mounts)

    def _monitor_args(self, c: Container) -> list[str]:
        rt = self.runtime_argv(c)
        args = ["--id", c.id, "--bundle", self.dir(c.id), "--runtime", rt[0], "--name", c.name,
                "--image", c.image_ref, "--events-file", os.path.join(self.root, events.FILE)]
        for a in rt[1:]:
            args += ["--runtime-arg", a]
        log = c.host_config.get("LogConfig") or {}
        kind = log.get("Type") or "json-file"
        if kind not in ("json-file", "none"):
            raise ConfigError(f'logging driver "{kind}" is not supported (json-file, none)')
        opts = dict(LOG_DEFAULTS, **(log.get("Config") or {}))
        args += ["--log-driver", kind, "--log-max-size", str(docker_size(opts["max-size"])),
                 "--log-max-file", str(int(opts.get("max-file") or 1))]
        cfg = c.config
        if cfg.get("Tty"):
            args.append("--terminal")
        if cfg.get("OpenStdin"):
            args.append("--stdin")
            if cfg.get("StdinOnce"):
                args.append("--stdin-once")
        rp = c.host_config.get("RestartPolicy") or {}
        args += ["--restart", rp.get("Name") or "no", "--max-retries", str(rp.get("MaximumRetryCount") or 0)]
        if c.host_config.get("AutoRemove") or c.extra.get("network"):  # --rm, or a network to release
            budu = which("budu") or "/usr/local/bin/budu"
            args += ["--exit-command", budu]
            for a in ("--root", self.root, "container", "cleanup", c.id):
                args += ["--exit-command-arg", a]
        args += self._health_args(c)
        return args

    def _image_config(self, image_id: str) -> dict:
        """The `config` of an image's config blob, read once per process (`budu run` needs it in
        create, in the bundle and for the healthcheck); an image never changes under its id."""
        if image_id not in self._image_configs:
            self._image_configs[image_id] = self.images.config(self.images.store.get(image_id)).get("config") or {}
        return self._image_configs[image_id]

    def _health_args(self, c: Container) -> list[str]:
        hc = c.config.get("Healthcheck")
        if hc is None:
            hc = self._image_config(c.image_id).get("Healthcheck")
        test = (hc or {}).get("Test") or []
        if not test or test[0] == "NONE":
            return []
        argv = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:] if test[0] == "CMD" else test
        args: list[str] = []
        for a in argv:
            args += ["--health-arg", a]
        for key, flag in (("Interval", "--health-interval"), ("Timeout", "--health-timeout"),
                          ("StartPeriod", "--health-start-period")):
            if hc.get(key):
                args += [flag, str(int(hc[key]) // 1_000_000)]
        if hc.get("Retries"):
            args += ["--health-retries", str(int(hc["Retries"]))]
        return args

    # -- stop, kill, wait ---------------------------------------------------------------------

    def stop(self, c: Container, timeout: int | None = None, signal: str | None = None) -> None:
        st = self.state(c)
        if not st.running:
            return
        d = self.dir(c.id)
        _touch(os.path.join(d, "stop-requested"))
        sig = signal or c.config.get("StopSignal") or self._image_stop_signal(c) or "SIGTERM"
        if timeout is None:
            timeout = c.config.get("StopTimeout")
        if timeout is None:
            timeout = 10
        if st.status != "restarting":
            self._runtime(c, "kill", c.id, _signame(sig), check=False)
            if c.paused:
                self.unpause(c, check=False)
            if timeout < 0 or self._wait_stopped(c, timeout):
                self._after_stop(c)
                return
        self._runtime(c, "kill", c.id, "KILL", check=False)
        self._wait_stopped(c, 30)
        self._after_stop(c)

    def _after_stop(self, c: Container) -> None:
        """What the monitor's exit command would do, done now so `stop` returns with it done."""
        with self.lock(c) as c:
            if not self.state(c).running:
                self._net_down(c)

    def _net_down(self, c: Container) -> None:
        if c.extra.get("network"):
            from budu.engine import netsetup

            netsetup.down(self, c)

    def _image_stop_signal(self, c: Container) -> str | None:
        try:
            return self._image_config(c.image_id).get("StopSignal")
        except BuduError:
            return None

    def kill(self, c: Container, signal: str = "KILL") -> None:
        st = self.state(c)
        if st.status not in ("running", "paused"):
            raise StateError(f"cannot kill container: {c.name}: container {c.id} is not running")
        sig = _signame(signal)
        if sig in ("KILL", "TERM", "INT", "QUIT"):
            _touch(os.path.join(self.dir(c.id), "stop-requested"))
        self._runtime(c, "kill", c.id, sig)
        if sig == "KILL" and c.paused:
            self.unpause(c, check=False)
        if sig == "KILL":
            self._wait_stopped(c, 10)

    def _wait_stopped(self, c: Container, timeout: float) -> bool:
        """Until its monitor has recorded the exit and let go of the rootfs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = status.read(self.dir(c.id), c.id)
            if st.status not in ("running", "restarting") or st.orphaned:
                if st.orphaned:
                    self._reap_orphan(c)
                # the monitor writes `exited` and then unmounts: wait for it to be gone too
                while pid_alive(st.monitor_pid) and status.monitor_alive(st.monitor_pid, c.id) \
                        and time.monotonic() < deadline and _is_mount(os.path.join(self.dir(c.id), "rootfs")):
                    time.sleep(0.005)
                return True
            time.sleep(0.01)
        return False

    def wait(self, c: Container, condition: str = "not-running") -> int:
        """docker wait: block until it stops; its exit code."""
        from budu.engine import monitor

        st = self.state(c)
        if condition == "next-exit" or st.running:
            code = monitor.wait_exit(self.dir(c.id))
            if code is not None and condition == "next-exit":
                return code
        while True:
            st = self.state(c)
            if not st.running:
                return st.exit_code
            time.sleep(0.05)

    def restart(self, c: Container, timeout: int | None = None) -> None:
        self.stop(c, timeout)
        self.start(self.store.get(c.id))

    def pause(self, c: Container) -> None:
        st = self.state(c)
        if st.status == "paused":
            raise StateError(f"container {c.id} is already paused")
        if st.status != "running":
            raise StateError(f"container {c.id} is not running")
        self._runtime(c, "pause", c.id)
        self.store.update(c.id, paused=True)
        c.paused = True
        self.emit(c, "pause")

    def unpause(self, c: Container, check: bool = True) -> None:
        if check:
            st = self.state(c)
            if st.status != "paused":
                raise StateError(f"container {c.id} is not paused")
        self._runtime(c, "resume", c.id, check=check)
        self.store.update(c.id, paused=False)
        c.paused = False
        self.emit(c, "unpause")

    def rootfs(self, c: Container) -> MountedRootfs:
        """`with engine.rootfs(c) as root:` the container's root as it sees it: /proc/PID/root while
        it runs (volumes included), else its overlay mounted for the duration (under its lock, so it
        cannot start meanwhile)."""
        return MountedRootfs(self, c)

    def upper_dir(self, c: Container) -> str:
        """Its writable layer: what `diff` and `commit` read."""
        return self.images.snapshots.upper_dir(c.snapshot)

    # -- exec -------------------------------------------------------------------------------------

    def exec(self, c: Container, cmd: list[str], env: list[str] | None = None, workdir: str | None = None,
             user: str | None = None, tty: bool = False, interactive: bool = False, detach: bool = False,
             privileged: bool = False) -> int:
        """Run `cmd` in the running container through its runtime's exec; the command's exit code
        (126 when it cannot run, 127 when it is not found — docker's)."""
        import subprocess

        st = self.state(c)
        if st.status == "paused":
            raise StateError(f"container {c.id} is paused, unpause the container before exec")
        if st.status != "running":
            raise StateError(f"container {c.id} is not running")
        root = f"/proc/{st.pid}/root"
        spec = self._spec(c)
        proc = spec.get("process") or {}
        path_env = next((e[5:] for e in [*(proc.get("env") or []), *(env or [])] if e.startswith("PATH=")), "")
        if not _find_in(root, cmd[0], path_env, workdir or proc.get("cwd") or "/"):
            raise RunError(f'OCI runtime exec failed: exec failed: unable to start container process: '
                           f'exec: "{cmd[0]}": executable file not found in $PATH')
        args = [*self.runtime_argv(c), "exec"]
        if tty:
            args.append("--tty")
        if detach:
            args.append("--detach")
        for e in env or []:
            args += ["--env", e]
        if workdir:
            args += ["--cwd", workdir]
        if user:
            from budu.engine.users import resolve

            u = resolve(root, user)
            args += ["--user", f"{u.uid}:{u.gid}"]
            for g in u.additional_gids:
                if g != u.gid:
                    args += ["--additional-gids", str(g)]
        if privileged:
            for name in _bounding_caps():
                args += ["--cap", name]
        pid_file = os.path.join(self.dir(c.id), f"exec-{os.urandom(6).hex()}.pid")
        args += ["--pid-file", pid_file, c.id, *cmd]
        stdin = None if interactive else subprocess.DEVNULL
        p = subprocess.run(args, stdin=stdin, stderr=subprocess.PIPE if tty else None)
        started = os.path.exists(pid_file)
        _unlink(pid_file)
        if not started and p.returncode != 0:
            message = _runtime_message(p.stderr.decode(errors="replace")) if tty and p.stderr else ""
            e = RunError(f"OCI runtime exec failed: {message or 'the command could not be started'}")
            e.exit_code = _classify(message) if message else 126
            raise e
        if tty and p.stderr:
            os.write(2, p.stderr)
        self.emit(c, f"exec_start: {' '.join(cmd)}")
        return p.returncode

    def _spec(self, c: Container) -> dict:
        try:
            with open(os.path.join(self.dir(c.id), "config.json"), "rb") as f:
                return fastjson.loads(f.read())
        except (OSError, ValueError):
            return {}

    # -- remove -----------------------------------------------------------------------------------

    def remove(self, c: Container, force: bool = False, volumes: bool = False) -> None:
        with self.lock(c) as c:
            st = self.state(c)
            if st.running and not force:
                verb = "paused" if st.status == "paused" else "running"
                raise StateError(f'cannot remove container "/{c.name}": container is {verb}: '
                                 f'stop the container before removing or force remove')
            c.extra = dict(c.extra, owner=os.getpid(), remove_volumes=volumes)
            self.store.update(c.id, removing=True, extra=c.extra)
            if st.running:
                _touch(os.path.join(self.dir(c.id), "stop-requested"))
                self._runtime(c, "kill", c.id, "KILL", check=False)
                if c.paused:
                    self._runtime(c, "resume", c.id, check=False)
                self._wait_stopped(c, 10)
            self._destroy(c, volumes)
        self.emit(c, "destroy")

    def _destroy(self, c: Container, volumes: bool) -> None:
        """Everything a container holds, each step safe to repeat; its record goes last."""
        d = self.dir(c.id)
        st = status.read(d, c.id)
        if st.status in ("running", "restarting") and status.monitor_alive(st.monitor_pid, c.id):
            # a removal that a killed budu left halfway may find its container still running
            _touch(os.path.join(d, "stop-requested"))
            self._runtime(c, "kill", c.id, "KILL", check=False)
            self._runtime(c, "resume", c.id, check=False)
            self._wait_stopped(c, 10)
            st = status.read(d, c.id)
        # a live monitor deletes the runtime's container itself (a --rm run is told of the exit
        # first, so that both go on at once); only what nobody will delete is deleted here
        if not status.monitor_alive(st.monitor_pid, c.id) and self._runtime_has(c):
            try:
                self._runtime(c, "delete", "--force", c.id, check=False)
            except ConfigError:
                pass
        self._net_down(c)
        _unmount(os.path.join(d, "rootfs"))
        try:
            self.images.snapshots.remove(c.snapshot)
        except NotFound:
            pass
        if volumes:
            for m in c.mounts:
                if m.get("Type") == "volume" and m.get("_anonymous"):
                    try:
                        self.volumes.remove(m["Name"])
                    except BuduError:
                        pass
        rmtree(d)
        self.store.remove(c.id)

    def cleanup(self, c: Container) -> None:
        """Run by a monitor after its container's last exit: release its network; --rm."""
        with self.lock(c) as c:
            if not self.state(c).running:
                self._net_down(c)
        if c.host_config.get("AutoRemove"):
            try:
                self.remove(c, force=True, volumes=True)
            except NotFound:
                pass

    # -- changes --------------------------------------------------------------------------------

    def rename(self, c: Container, new: str) -> None:
        new = check_name(new)
        old = c.name
        if new == old:
            raise ConfigError("Renaming a container with the same name as its current name")
        self.store.update(c.id, name=new)
        c.name = new
        self.emit(c, "rename", oldName="/" + old)

    def update(self, c: Container, changes: dict) -> None:
        """docker update: resources apply at once through the runtime; a restart policy from the
        next start (the monitor took its policy when it started)."""
        import subprocess

        from budu.engine.stats import check_update, update_resources

        with self.lock(c) as c:
            hc = dict(c.host_config, **changes)
            rp = changes.get("RestartPolicy")
            if rp and rp.get("Name") not in ("", "no") and hc.get("AutoRemove"):
                raise ConfigError("Restart policy cannot be updated because AutoRemove is enabled for the container")
            check_update(hc)
            res = update_resources({k: v for k, v in changes.items() if k != "RestartPolicy"})
            st = self.state(c)
            if res and st.status in ("running", "paused"):
                p = subprocess.run([*self.runtime_argv(c), "update", "--resources", "-", c.id],
                                   input=fastjson.dumps(res).encode(), capture_output=True)
                if p.returncode != 0:
                    raise StateError(f"Cannot update container {c.id}: "
                                     f"{_runtime_message(p.stderr.decode(errors='replace'))}")
            self.store.update(c.id, host_config=hc)
            c.host_config = hc
        self.emit(c, "update")

    def emit(self, c: Container, action: str, **attrs: str) -> None:
        labels = {k: str(v) for k, v in (c.config.get("Labels") or {}).items()}
        events.emit(self.root, "container", action, c.id, dict(labels, image=c.image_ref, name=c.name, **attrs))

    # -- after a reboot -----------------------------------------------------------------------

    def restore(self) -> list[Container]:
        """Bring back what docker's daemon brings back on start: `always`, and `unless-stopped`
        unless a user stopped it."""
        started = []
        for c, st in self.list():
            policy = (c.host_config.get("RestartPolicy") or {}).get("Name") or "no"
            stopped_by_user = os.path.exists(os.path.join(self.dir(c.id), "stop-requested"))
            if st.running or policy not in ("always", "unless-stopped"):
                continue
            if st.status == "created" or (policy == "unless-stopped" and stopped_by_user):
                continue
            if policy == "always" and stopped_by_user and st.error != "the container's monitor is gone":
                continue
            try:
                self.start(c)
                started.append(c)
            except BuduError:
                continue
        return started


def _host_defaults(hc: dict) -> dict:
    hc = dict(hc)
    if not hc.get("NetworkMode") or hc["NetworkMode"] == "default":
        hc["NetworkMode"] = DEFAULT_NETWORK
    hc.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
    if not hc["RestartPolicy"].get("Name"):
        hc["RestartPolicy"] = {"Name": "no", "MaximumRetryCount": 0}
    hc.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
    if not hc["LogConfig"].get("Type"):
        hc["LogConfig"] = {"Type": "json-file", "Config": hc["LogConfig"].get("Config") or {}}
    return hc


def _runtime_message(stderr: str) -> str:
    """The runtime's error, from text or JSON log lines."""
    for line in reversed(stderr.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                rec = fastjson.loads(line)
                if rec.get("level") == "error" or "msg" in rec:
                    return rec.get("msg", line)
            except ValueError:
                pass
        if line:
            return line
    return ""


class ContainerLock:
    """Engine.lock's context manager: flock on the container's directory.  (Classes rather than
    contextlib.contextmanager, whose import costs ~5 ms of every CLI start here.)"""

    __slots__ = ("engine", "cid", "fd")

    def __init__(self, engine: Engine, cid: str) -> None:
        self.engine = engine
        self.cid = cid
        self.fd: int | None = None

    def __enter__(self) -> Container:
        e = self.engine
        if self.cid in e._held:
            return e.store.get(self.cid)
        try:
            fd = os.open(e.dir(self.cid), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"No such container: {self.cid}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            e._held.add(self.cid)
            self.fd = fd
            return e.store.get(self.cid)
        except BaseException:
            self._release(fd)
            raise

    def __exit__(self, *exc: object) -> bool:
        if self.fd is not None:
            self._release(self.fd)
        return False

    def _release(self, fd: int) -> None:
        self.fd = None
        self.engine._held.discard(self.cid)
        os.close(fd)


class MountedRootfs:
    """Engine.rootfs's context manager."""

    __slots__ = ("engine", "c", "lock", "target")

    def __init__(self, engine: Engine, c: Container) -> None:
        self.engine = engine
        self.c = c
        self.lock: ContainerLock | None = None
        self.target = ""

    def __enter__(self) -> str:
        e = self.engine
        st = e.state(self.c)
        if st.status in ("running", "paused") and st.pid:
            return f"/proc/{st.pid}/root"
        lock = e.lock(self.c)
        c = lock.__enter__()
        try:
            target = os.path.join(e.dir(c.id), "rootfs")
            e._mount_rootfs(c, target)
        except BaseException:
            lock.__exit__(None, None, None)
            raise
        self.lock, self.target = lock, target
        return target

    def __exit__(self, *exc: object) -> bool:
        if self.lock is not None:
            try:
                _unmount(self.target)
            finally:
                self.lock.__exit__(None, None, None)
        return False


def _signame(sig: str | int) -> str:
    """NAME without SIG, as the runtime's `kill` takes it (a number becomes its name)."""
    num = signals.number(sig)
    if num is None:
        raise ConfigError(f"Invalid signal: {sig}")
    s = str(sig).strip().upper()
    if s.isdigit():
        return signals.name(num)
    return s[3:] if s.startswith("SIG") else s


def _hybrid_cgroups() -> bool:
    return os.path.isdir("/sys/fs/cgroup/memory") and os.path.exists("/sys/fs/cgroup/unified/cgroup.controllers")


def _bounding_caps() -> list[str]:
    """The capabilities budu itself may hand out: its own bounding set."""
    from budu.kernel.caps import NAMES

    with open("/proc/self/status") as f:
        bits = int(next(ln.split()[1] for ln in f if ln.startswith("CapBnd:")), 16)
    return [n for i, n in enumerate(NAMES) if bits >> i & 1]


def _find_in(root: str, exe: str, path: str, cwd: str) -> bool:
    """Is `exe` there to run inside the container whose root is `root`?  (A best-effort look, so a
    missing command gets docker's 127; the runtime has the last word.)"""
    if "/" in exe:
        full = exe if exe.startswith("/") else os.path.join(cwd, exe)
        return os.path.lexists(root + full)
    for d in (path or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").split(":"):
        if d and os.path.lexists(os.path.join(root + d, exe)):
            return True
    return False


def _now_rfc3339() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


def _touch(path: str) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _is_mount(path: str) -> bool:
    """From mountinfo: a bind mount on the same filesystem fools os.path.ismount."""
    want = escape_mountinfo(os.path.realpath(path))
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split(" ", 5)[4] == want for line in f)
    except OSError:
        return False


def _unmount(path: str) -> None:
    from budu.kernel import syscalls

    for _ in range(8):  # stacked mounts from crashes, one layer at a time
        if not _is_mount(path):
            return
        try:
            syscalls.umount(path, syscalls.MNT_DETACH)
        except BuduError:
            return
