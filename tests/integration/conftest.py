"""Shared fixtures for the integration tests: real Podman and a real containerd driving budu-runtime.

Nothing here touches the host's own Podman or containerd state:

* Podman gets its own storage root, run root, tmp dir, containers.conf and storage.conf (all in
  a temporary directory), cgroupfs, file events and no network.  Images are made locally: a busybox
  root filesystem is tarred and `podman import`ed.
* containerd is started for the test session with its own config file, root, state, socket,
  and runtime root (`ctr run --runc-root`), the CRI plugin disabled; the image is an OCI image
  layout built by hand and imported with `ctr images import`.

Every container is removed at the end of each test, even a failed one, and the session's daemons,
mounts and directories go when the session ends.  A missing tool fails the tests; nothing is skipped.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pty
import resource
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid

import pytest

CTR_NAMESPACE = "budu-test"
PODMAN_IMAGE = "localhost/budu-busybox:test"
CTR_IMAGE = "docker.io/library/budu-busybox:test"

# the capabilities Podman gives a container by default: those of the containers.conf that Podman
# ships (its built-in list has three more), written into the tests' own containers.conf
PODMAN_DEFAULT_CAPS = {
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
}
from budu.kernel.caps import NAMES as CAP_NAMES  # noqa: E402
from budutest import make_busybox_rootfs  # noqa: E402

# One script whose output must be the same whichever runtime ran it (runc is the referee):
# identity, privileges, devices, mounts (but the rootfs, whose overlay paths differ, and the cgroup
# tree, which runc and budu lay out differently on a v1 host), masked and read-only paths, limits.
# No pids but $$: runc's Go threads use up pids of the container's namespace before the execve.
COMPARE_SCRIPT = r"""exec 2>&1
id; pwd; umask
grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status
echo "pid1: $(tr '\0' ' ' < /proc/1/cmdline)"
echo "me: $$"
stat -c '%A %u:%g %t:%T %n' /dev/* /dev/pts/* /dev/shm /dev/mqueue
awk '$2 !~ /^\/sys\/fs\/cgroup/ && $2 != "/" {print $2, $3, $4}' /proc/self/mounts | sort
ls /proc/acpi /proc/keys /proc/kcore /proc/timer_list /sys/firmware | sort
echo x > /proc/sys/kernel/domainname; echo "sysctl write: $?"
touch /sys/x; echo "sysfs write: $?"
ulimit -a
env | grep -v -E '^(HOSTNAME|container)=' | sort
ps -o user,args
"""


def require(tool: str) -> str:
    """The full path of a tool the tests need, or a failure that says it is missing."""
    path = shutil.which(tool)
    if not path:
        pytest.fail(f"{tool!r} is not installed (not found on PATH={os.environ.get('PATH')}): "
                    f"the integration tests need it", pytrace=False)
    return path


def run(argv: list[str], *, timeout: float = 60, check: bool = True, input: str | None = None,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command, capture its output as text; on failure (when `check`) or timeout, fail the
    test with the command line and everything it printed."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input, env=env,
                           stdin=subprocess.DEVNULL if input is None else None)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"timed out after {timeout}s: {shlex.join(argv)}\nstdout:\n{_text(e.stdout)}\n"
                    f"stderr:\n{_text(e.stderr)}", pytrace=False)
    if check and p.returncode != 0:
        pytest.fail(f"exit status {p.returncode}: {shlex.join(argv)}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}",
                    pytrace=False)
    return p


def _text(b: bytes | str | None) -> str:
    if b is None:
        return ""
    return b if isinstance(b, str) else b.decode(errors="replace")


def run_in_pty(argv: list[str], send: bytes, *, prompt: bytes = b"# ", timeout: float = 30,
               env: dict | None = None) -> tuple[int, bytes]:
    """Run `argv` on a new pseudo-terminal, as a person at a terminal would: wait for the shell's
    prompt, type `send`, and read everything until the program exits.  Returns (exit code, output)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session leader whose controlling terminal is the pty
        try:
            os.execvpe(argv[0], argv, env if env is not None else os.environ)
        finally:
            os._exit(127)
    out = b""
    deadline = time.monotonic() + timeout
    sent = False
    status = None
    try:
        while time.monotonic() < deadline:
            if not sent and prompt in out:
                os.write(fd, send)
                sent = True
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: every process holding the terminal is gone
                    data = b""
                if not data:
                    break
                out += data
        while time.monotonic() < deadline:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(st)
                break
            time.sleep(0.05)
    finally:
        if status is None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
        os.close(fd)
    if status is None:
        pytest.fail(f"timed out after {timeout}s on a terminal: {shlex.join(argv)}\n"
                    f"sent {send!r}: {'yes' if sent else 'no (no prompt seen)'}\noutput: {out!r}", pytrace=False)
    return status, out


def pty_lines(out: bytes) -> list[str]:
    return out.decode(errors="replace").replace("\r", "").split("\n")


def capabilities(status_text: str) -> dict[str, set[str]]:
    """{'CapEff': {'CAP_CHOWN', ...}, ...} from /proc/PID/status lines."""
    out = {}
    for line in status_text.splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Cap"):
            mask = int(value.strip(), 16)
            out[key] = {name for bit, name in enumerate(CAP_NAMES) if mask >> bit & 1}
    return out


def run_ulimits() -> list[str]:
    """Podman asks for nofile/nproc limits above ours by default; without CAP_SYS_RESOURCE no
    runtime may raise a hard limit, so ask for what this process may give."""
    args = []
    for flag, num, want in (("nofile", resource.RLIMIT_NOFILE, 20000), ("nproc", resource.RLIMIT_NPROC, 32768)):
        _soft, hard = resource.getrlimit(num)
        value = want if hard == resource.RLIM_INFINITY else min(want, hard)
        args += ["--ulimit", f"{flag}={value}:{value}"]
    return args


_THIS_MODULE = sys.modules[__name__]


@pytest.fixture(scope="session")
def it():
    """The helpers and constants of this file, for the test modules: `it.run_in_pty(...)`.

    (`from conftest import ...` would depend on which of the suite's conftest.py files pytest
    imported last under that module name.)"""
    return _THIS_MODULE


# -- images -------------------------------------------------------------------------------------

def tar_dir(src: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name in sorted(os.listdir(src)):
            tf.add(os.path.join(src, name), arcname=name)
    return buf.getvalue()


def oci_archive(rootfs: str, out: str, ref: str) -> str:
    """An OCI image layout (one gzip layer, config, manifest, index) as a tar, named `ref`."""
    layer = tar_dir(rootfs)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    with tarfile.open(out, "w") as tf:
        def add(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            tf.addfile(ti, io.BytesIO(data))

        def blob(data: bytes, media_type: str) -> dict:
            digest = hashlib.sha256(data).hexdigest()
            add(f"blobs/sha256/{digest}", data)
            return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

        add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        layer_desc = blob(gzip.compress(layer, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip")
        config = {
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/bin/sh"],
                       "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": "budu integration tests"}],
        }
        config_desc = blob(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": config_desc, "layers": [layer_desc]}
        manifest_desc = blob(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
        manifest_desc["platform"] = {"architecture": "amd64", "os": "linux"}
        manifest_desc["annotations"] = {"io.containerd.image.name": ref,
                                        "org.opencontainers.image.ref.name": ref.rpartition(":")[2]}
        add("index.json", json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                      "manifests": [manifest_desc]}).encode())
    return out


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory) -> str:
    return make_busybox_rootfs(str(tmp_path_factory.mktemp("busybox") / "rootfs"))


@pytest.fixture(scope="session")
def budu_runtime() -> str:
    return require("budu-runtime")


@pytest.fixture(scope="session")
def runc() -> str:
    return require("runc")


# -- host hygiene -------------------------------------------------------------------------------

def _mounts_under(path: str) -> list[str]:
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mountpoint = line.split()[4].replace("\\040", " ")
            if mountpoint == path or mountpoint.startswith(path + "/"):
                found.append(mountpoint)
    return found


def unmount_all_under(path: str) -> None:
    for mountpoint in sorted(set(_mounts_under(path)), key=len, reverse=True):
        if subprocess.run(["umount", mountpoint], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", mountpoint], capture_output=True)


def pids_with_cmdline(needle: str) -> list[int]:
    """Processes whose command line mentions `needle` (a temporary path of ours)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline:
            pids.append(int(name))
    return pids


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class CreatedDirs:
    """Directories outside our temporary tree that a tool creates whatever it is told (Podman's
    blob-info cache and netavark run dir, the shim sockets' dir): removed at the end if, and only
    if, they did not exist before the session and are empty of anything but what we made."""

    def __init__(self, paths: list[str]) -> None:
        self.missing = [p for p in paths if not os.path.lexists(p)]

    def remove(self, keep_if_contains: tuple[str, ...] = ()) -> None:
        for path in self.missing:
            if not os.path.isdir(path):
                continue
            names = os.listdir(path)
            if any(n in keep_if_contains for n in names):
                continue
            shutil.rmtree(path, ignore_errors=True)


# -- Podman -------------------------------------------------------------------------------------

class Podman:
    """`podman` with its own storage, run root, tmp dir and configuration."""

    def __init__(self, base: str, podman: str) -> None:
        self.base = base
        self.root = os.path.join(base, "root")
        self.runroot = os.path.join(base, "runroot")
        self.tmpdir = os.path.join(base, "tmp")
        os.makedirs(os.path.join(base, "imgtmp"))
        conf = os.path.join(base, "containers.conf")
        caps = ", ".join(f'"{c}"' for c in sorted(PODMAN_DEFAULT_CAPS))
        with open(conf, "w") as f:
            f.write(f"""[containers]
netns = "none"
default_capabilities = [{caps}]
[network]
network_backend = "netavark"
network_config_dir = "{base}/networks"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{base}/events.log"
image_copy_tmp_dir = "{base}/imgtmp"
tmp_dir = "{self.tmpdir}"
volume_path = "{base}/volumes"
""")
        storage_conf = os.path.join(base, "storage.conf")
        with open(storage_conf, "w") as f:
            f.write(f'[storage]\ndriver = "overlay"\ngraphroot = "{self.root}"\nrunroot = "{self.runroot}"\n')
        registries = os.path.join(base, "registries.conf")
        with open(registries, "w") as f:
            f.write("unqualified-search-registries = []\n")
        self.env = dict(os.environ, CONTAINERS_CONF=conf, CONTAINERS_STORAGE_CONF=storage_conf,
                        CONTAINERS_REGISTRIES_CONF=registries, TMPDIR=os.path.join(base, "imgtmp"))
        self.argv0 = [podman, "--root", self.root, "--runroot", self.runroot, "--tmpdir", self.tmpdir,
                      "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
        self.run_opts = ["--network", "none", *run_ulimits()]
        self.image = PODMAN_IMAGE

    def argv(self, runtime: str, *args: str) -> list[str]:
        return [*self.argv0, "--runtime", runtime, *args]

    def __call__(self, runtime: str, *args: str, check: bool = True, timeout: float = 60,
                 input: str | None = None) -> subprocess.CompletedProcess:
        return run(self.argv(runtime, *args), check=check, timeout=timeout, input=input, env=self.env)

    def run_argv(self, runtime: str, *args: str) -> list[str]:
        """`podman run` with this host's necessary options, then `args` (options, image, command)."""
        return self.argv(runtime, "run", *self.run_opts, *args)

    def run(self, runtime: str, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return run(self.run_argv(runtime, *args), check=check, timeout=timeout, env=self.env)

    def container_ids(self) -> list[str]:
        return run([*self.argv0, "ps", "-aq", "--no-trunc"], env=self.env, check=False).stdout.split()

    def remove_all_containers(self) -> None:
        ids = self.container_ids()
        if ids:
            # each container remembers its own runtime: no --runtime needed
            run([*self.argv0, "rm", "-f", "-t", "0", *ids], env=self.env, check=False, timeout=120)

    def close(self) -> None:
        try:
            self.remove_all_containers()
            run([*self.argv0, "rmi", "-af"], env=self.env, check=False, timeout=120)
        finally:
            kill_pids(pids_with_cmdline(self.base))  # a conmon left by a test that died mid-way
            unmount_all_under(self.base)
            shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def podman_session(busybox_rootfs, budu_runtime, runc):
    podman = require("podman")
    require("conmon")
    host_dirs = CreatedDirs(["/var/lib/containers", "/run/containers"])
    base = tempfile.mkdtemp(prefix="budu-it-podman-", dir="/tmp")
    p = Podman(base, podman)
    try:
        archive = os.path.join(base, "rootfs.tar")
        with open(archive, "wb") as f:
            f.write(tar_dir(busybox_rootfs))
        p(budu_runtime, "import", "--change", "CMD=/bin/sh", archive, PODMAN_IMAGE, timeout=120)
        yield p
    finally:
        p.close()
        host_dirs.remove(keep_if_contains=("storage",))


@pytest.fixture
def podman(podman_session):
    """The session's Podman; every container a test leaves is removed after it, pass or fail."""
    yield podman_session
    podman_session.remove_all_containers()


@pytest.fixture
def name():
    return f"budu-it-{uuid.uuid4().hex[:12]}"


# -- containerd ---------------------------------------------------------------------------------

class Containerd:
    """A containerd of our own: its own config, root, state and sockets; `ctr` talks to it."""

    def __init__(self, base: str, containerd: str, ctr: str) -> None:
        self.base = base
        self.ctr_bin = ctr
        self.address = os.path.join(base, "containerd.sock")
        self.fifo_dir = os.path.join(base, "fifo")
        self.config = os.path.join(base, "config.toml")
        self.log_path = os.path.join(base, "containerd.log")
        self.image = CTR_IMAGE
        with open(self.config, "w") as f:
            f.write(f"""version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{self.address}"

[ttrpc]
  address = "{self.address}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/opt"
""")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([containerd, "-c", self.config], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"containerd exited with status {self.proc.returncode}:\n{self.log_tail()}", pytrace=False)
            if os.path.exists(self.address) and self.ctr("version", check=False, timeout=10).returncode == 0:
                return
            time.sleep(0.1)
        pytest.fail(f"containerd did not answer on {self.address} within {timeout}s:\n{self.log_tail()}",
                    pytrace=False)

    def log_tail(self, n: int = 40) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def argv(self, *args: str) -> list[str]:
        return [self.ctr_bin, "--address", self.address, "--namespace", CTR_NAMESPACE, *args]

    def ctr(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return run(self.argv(*args), check=check, timeout=timeout)

    def runtime_opts(self, runtime: str) -> list[str]:
        """`ctr run` options that make the runc v2 shim use `runtime`, with its own state root."""
        return ["--runc-binary", runtime, "--runc-root", os.path.join(self.base, "runtime-root", os.path.basename(runtime)),
                "--fifo-dir", self.fifo_dir]

    def tasks(self, check: bool = True) -> dict[str, tuple[int, str]]:
        """{container id: (pid, status)} from `ctr task ls`."""
        out = {}
        for line in self.ctr("task", "ls", check=check).stdout.splitlines()[1:]:
            fields = line.split()
            if len(fields) == 3:
                out[fields[0]] = (int(fields[1]), fields[2])
        return out

    def remove_all_containers(self) -> None:
        for cid in self.ctr("task", "ls", "-q", check=False).stdout.split():
            self.ctr("task", "kill", "-a", "-s", "SIGKILL", cid, check=False)
            for _ in range(100):
                if self.tasks(check=False).get(cid, (0, "STOPPED"))[1] == "STOPPED":
                    break
                time.sleep(0.05)
            self.ctr("task", "delete", "-f", cid, check=False)
        for cid in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("containers", "delete", cid, check=False)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.remove_all_containers()
                self.proc.terminate()
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(15)
        finally:
            self.log.close()
            # a shim whose task could not be deleted: its command line names our socket
            kill_pids(pids_with_cmdline(self.base))
            unmount_all_under(self.base)
            shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def containerd_session(busybox_rootfs, budu_runtime, runc):
    containerd = require("containerd")
    ctr = require("ctr")
    require("containerd-shim-runc-v2")
    # the runc v2 shim puts its socket in /run/containerd/s whatever containerd's config says
    host_dirs = CreatedDirs(["/run/containerd"])
    # short: unix socket paths are limited to 108 bytes
    base = tempfile.mkdtemp(prefix="budu-it-ctd-", dir="/tmp")
    c = Containerd(base, containerd, ctr)
    try:
        c.wait_ready()
        archive = oci_archive(busybox_rootfs, os.path.join(base, "image.tar"), CTR_IMAGE)
        c.ctr("images", "import", archive, timeout=120)
        yield c
    finally:
        c.close()
        host_dirs.remove(keep_if_contains=("containerd.sock",))


@pytest.fixture
def containerd(containerd_session):
    """The session's containerd; every task and container a test leaves is removed after it."""
    yield containerd_session
    containerd_session.remove_all_containers()
