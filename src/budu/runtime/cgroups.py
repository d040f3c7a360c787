"""Container cgroups for budu-runtime on cgroup v1, hybrid and v2 hosts.

The runtime puts every container in its own cgroup so that its resources can be limited
(OCI ``linux.resources``), its processes found, frozen and killed as a group, and its usage
reported.  Which files are written, and how OCI values translate to v2 files, follows runc's
libcontainer/cgroups (``fs`` for v1, ``fs2`` for v2) so containers behave the same under both.

Performance: this module is imported on the container start hot path, so it imports only
``os``, ``errno``, ``time`` and ``budu.errors``, and keeps syscalls few (no subprocesses, no
globbing, one read of mountinfo per ``Cgroup``).
"""

from __future__ import annotations

import errno
import os
import time

from budu.errors import ConfigError, KernelError
from budu.kernel.files import unescape_mountinfo

DEFAULT_ROOT = "/sys/fs/cgroup"
DEFAULT_MOUNTINFO = "/proc/self/mountinfo"
PROC_SELF_CGROUP = "/proc/self/cgroup"

_SIGKILL = 9  # the signal module costs too much to import here; SIGKILL is 9 on every Linux arch

# v1 controller names as they appear in a cgroup mount's super options (plus "name=..." hierarchies).
_V1_CONTROLLERS = frozenset(
    (
        "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "net_prio",
        "blkio", "perf_event", "hugetlb", "pids", "rdma", "misc",
    )
)
# v1 hierarchies a container always gets a directory in, needed or not, so that a later
# `update`, `pause` or `stats` finds them (runc joins every mounted subsystem).
_V1_ALWAYS = ("pids", "memory", "cpu", "cpuacct", "cpuset", "freezer", "devices", "blkio", "name=systemd")
# v2 controllers always enabled for the container's subtree, for the same reason.
_V2_ALWAYS = ("cpu", "cpuset", "io", "memory", "pids")
# v1 reports "no limit" as PAGE_COUNTER_MAX * PAGE_SIZE (about 2**63); anything this big is no limit.
_V1_UNLIMITED = 1 << 62
_V2_DEFAULT_PERIOD = 100000  # cpu.max's default period (kernel cgroup-v2 docs), as runc writes it

_BLKIO_THROTTLE = (
    ("throttleReadBpsDevice", "blkio.throttle.read_bps_device", "rbps"),
    ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device", "wbps"),
    ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device", "riops"),
    ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device", "wiops"),
)


# --------------------------------------------------------------------------- small file helpers


def _read(path: str) -> str | None:
    """Whole file as text, or None when it does not exist (a missing control file means 'unsupported')."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks).decode()
    finally:
        os.close(fd)


def _read_int(path: str) -> int | None:
    """Integer control file; None when missing or "max" (no limit)."""
    text = _read(path)
    if text is None:
        return None
    text = text.strip()
    if not text or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _write(path: str, value: str) -> None:
    """One write(2) per value: cgroupfs parses each write as one command.

    O_CREAT is harmless on cgroupfs (the files already exist) and lets the unit tests use a
    plain directory tree as a fake cgroupfs.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _set_error(path: str, value: str, err: OSError) -> KernelError:
    """The one-line error for a refused write, naming the file and the value."""
    code = err.errno or 0
    if code in (errno.ENOENT, errno.EACCES, errno.EPERM) and not os.path.exists(path):
        reason = "no such file (controller not available?)"
    else:
        reason = os.strerror(code)
    return KernelError(f"cgroup: cannot set {os.path.basename(path)} to {value}: {reason}")


def _set(d: str, name: str, value: str) -> None:
    """Write one control file, turning a refusal into a KernelError."""
    path = d + "/" + name
    try:
        _write(path, value)
    except OSError as e:
        raise _set_error(path, value, e) from None


def _num(value: object) -> int:
    """An OCI integer field; absent (None) counts as 0, which runc treats as 'not set'."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"cgroup: expected an integer, got {value!r}")
    return value


# --------------------------------------------------------------------------- mounts and paths


def _parse_mountinfo(mountinfo: str, root: str) -> tuple[str | None, dict[str, str]]:
    """(cgroup2 mount point or None, {v1 controller: mount point}) from a mountinfo file.

    The cgroup2 mount at `root` is preferred over any other cgroup2 mount.
    """
    try:
        text = _read(mountinfo)
    except OSError as e:
        raise KernelError(f"cgroup: cannot read {mountinfo}: {e.strerror}") from None
    if text is None:
        raise KernelError(f"cgroup: cannot read {mountinfo}: No such file or directory")
    v2: str | None = None
    v1: dict[str, str] = {}
    for line in text.splitlines():
        if " - cgroup" not in line:  # cheap filter: hosts with containers have thousands of mounts
            continue
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        rf = right.split()
        if not rf or (rf[0] != "cgroup2" and rf[0] != "cgroup"):
            continue
        lf = left.split()
        if len(lf) < 5:
            continue
        mnt = unescape_mountinfo(lf[4])
        if rf[0] == "cgroup2":
            if v2 is None or mnt == root:
                v2 = mnt
        else:
            for opt in (rf[2] if len(rf) > 2 else "").split(","):
                if opt in _V1_CONTROLLERS or opt.startswith("name="):
                    v1.setdefault(opt, mnt)
    return v2, v1


def _mode_of(v2: str | None, v1: dict[str, str], root: str) -> str:
    if v2 is not None and v2 == root:
        return "v2"
    if any(not k.startswith("name=") for k in v1):
        return "hybrid" if v2 is not None else "v1"
    if v2 is not None:
        return "v2"  # cgroup2 mounted somewhere else and no v1 controllers: still a v2 host
    raise KernelError("cgroup: no cgroup filesystem is mounted")


def detect_mode(mountinfo: str = DEFAULT_MOUNTINFO, root: str = DEFAULT_ROOT) -> str:
    """The host's cgroup layout, "v2", "hybrid" or "v1": each needs different files written.

    "v2": cgroup2 is mounted at `root` (/sys/fs/cgroup); "hybrid": v1 controllers plus a cgroup2
    mount elsewhere (e.g. /sys/fs/cgroup/unified); "v1": v1 controllers only.
    """
    v2, v1 = _parse_mountinfo(mountinfo, os.path.normpath(root))
    return _mode_of(v2, v1, os.path.normpath(root))


def _own_cgroups(proc_cgroup: str | None = None) -> dict[str, str]:
    """{controller: this process's cgroup} from /proc/self/cgroup ("" is the v2 hierarchy)."""
    own: dict[str, str] = {}
    for line in (_read(proc_cgroup or PROC_SELF_CGROUP) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if not parts[1]:
            own[""] = parts[2]
        else:
            for c in parts[1].split(","):
                own[c] = parts[2]
    return own


def _expand_slice(name: str) -> str:
    """systemd's slice to path mapping: "a-b.slice" -> "/a.slice/a-b.slice", "-.slice" -> ""."""
    if name == "-.slice":
        return ""
    base = name[:-6]
    if not base or base[0] == "-" or base[-1] == "-" or "--" in base:
        raise ConfigError(f"cgroupsPath: invalid systemd slice name {name!r}")
    path = ""
    prefix = ""
    for comp in base.split("-"):
        prefix = comp if not prefix else prefix + "-" + comp
        path += "/" + prefix + ".slice"
    return path


def _systemd_path(spec: str) -> str | None:
    """The cgroupfs path systemd would give "slice:prefix:name", or None when spec is not that form."""
    parts = spec.split(":")
    if len(parts) != 3:
        return None
    slc, prefix, name = parts
    if "/" in slc or (slc and not slc.endswith(".slice")):
        return None
    if not name or "/" in name or "/" in prefix:
        raise ConfigError(f"cgroupsPath: invalid systemd form {spec!r} (want slice:prefix:name)")
    # runc: a scope named prefix-name unless the name is itself a slice; the default slice is system.slice.
    unit = name if name.endswith(".slice") else prefix + "-" + name + ".scope"
    return _expand_slice(slc or "system.slice") + "/" + unit


def _clean(path: str) -> str:
    """Normalise an absolute cgroup path; it can never climb above the hierarchy root."""
    p = os.path.normpath("/" + path.lstrip("/"))
    if p.startswith("//"):
        p = "/" + p.lstrip("/")
    return p


def resolve_path(
    cgroups_path: str | None,
    container_id: str,
    systemd: bool,
    proc_cgroup: str | None = None,
) -> str:
    """The container's cgroup path relative to each hierarchy root, from OCI linux.cgroupsPath.

    Empty: "/<id>".  Absolute: used as is.  Relative: under this process's own cgroup (the v2
    entry of /proc/self/cgroup on a v2 host, else the name=systemd one; pass a relative path
    to ``Cgroup`` directly to resolve it per v1 controller).  With systemd=True, the
    "slice:prefix:name" form podman and containerd pass is mapped as systemd would map it.
    """
    if not cgroups_path:
        p = "/" + container_id
    else:
        sp = _systemd_path(cgroups_path) if systemd else None
        if sp is not None:
            p = sp
        elif cgroups_path.startswith("/"):
            p = cgroups_path
        else:
            own = _own_cgroups(proc_cgroup)
            if "" in own and len(own) == 1:
                base = own[""]
            else:
                base = own.get("name=systemd") or own.get("") or "/"
            p = base.rstrip("/") + "/" + cgroups_path
    p = _clean(p)
    if p == "/":
        raise ConfigError(f"cgroupsPath {cgroups_path!r} names the cgroup root; a container needs its own cgroup")
    return p


# --------------------------------------------------------------------------- rmdir


def _rmdir(path: str) -> None:
    """rmdir, retrying while EBUSY: a killed container's processes take a moment to leave."""
    delay = 0.005
    for attempt in range(10):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno == errno.ENOTEMPTY and attempt < 9:
                # cgroupfs never says ENOTEMPTY (a populated cgroup is EBUSY), so this is a plain
                # directory tree such as the unit tests' fake cgroupfs: its control "files" are
                # real files that must go first.
                for entry in os.scandir(path):
                    if not entry.is_dir(follow_symlinks=False):
                        os.unlink(entry.path)
                continue
            if e.errno != errno.EBUSY or attempt == 9:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.32)


def _remove_tree(d: str) -> None:
    """Remove a cgroup and every cgroup below it (children first); missing is fine."""
    try:
        os.rmdir(d)  # the usual case: no cgroups below, no process left
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    for top, _dirs, _files in os.walk(d, topdown=False):
        _rmdir(top)


# --------------------------------------------------------------------------- the cgroup


class Cgroup:
    """One container's cgroup in every hierarchy of this host (v1 controllers, hybrid, or v2).

    `path` comes from ``resolve_path`` (a relative path is resolved per hierarchy against this
    process's cgroups).  `root` and `mountinfo` only exist so tests can point it at a fake tree.
    On v2, ``devices`` keeps the device rules of the last create/update: v2 has no devices files
    (runc attaches an eBPF program instead), so they are recorded for the caller and skipped here.
    """

    freeze_timeout = 10.0  # seconds to wait for FROZEN (runc waits 10 s on v2)

    def __init__(
        self,
        path: str,
        mode: str | None = None,
        root: str = DEFAULT_ROOT,
        mountinfo: str = DEFAULT_MOUNTINFO,
    ) -> None:
        if not path:
            raise ConfigError("cgroup: empty cgroup path")
        if mode is not None and mode not in ("v1", "v2", "hybrid"):
            raise ConfigError(f"cgroup: unknown cgroup mode {mode!r}")
        root = os.path.normpath(root)
        if mode == "v2":
            v2mnt: str | None = root
            v1mnts: dict[str, str] = {}
        else:
            v2mnt, v1mnts = _parse_mountinfo(mountinfo, root)
            if mode is None:
                mode = _mode_of(v2mnt, v1mnts, root)
        self.mode: str = mode
        self.path: str = path
        self.devices: list[dict] = []
        own = None if path.startswith("/") else _own_cgroups()

        def under(mnt: str, key: str) -> str:
            rel = path if own is None else own.get(key, "/").rstrip("/") + "/" + path
            p = _clean(rel)
            if p == "/":
                raise ConfigError(f"cgroup: path {path!r} names the cgroup root; a container needs its own cgroup")
            return mnt.rstrip("/") + p

        self._v1: dict[str, str] = {}
        self._v1_mnt: dict[str, str] = {}
        self._unified: str | None = None
        self._unified_mnt: str | None = None
        if mode == "v2":
            if v2mnt is None:
                raise KernelError("cgroup: cgroup2 is not mounted")
            self._unified_mnt = v2mnt
            self._unified = under(v2mnt, "")
        else:
            if not v1mnts:
                raise KernelError("cgroup: no cgroup v1 controller is mounted")
            self._v1_mnt = v1mnts
            self._v1 = {c: under(m, c) for c, m in v1mnts.items()}
            if mode == "hybrid" and v2mnt is not None:
                self._unified_mnt = v2mnt
                self._unified = under(v2mnt, "")

    @classmethod
    def recorded(cls, path: str, mode: str, paths: dict[str, str]) -> "Cgroup":
        """The cgroup a container was created in, from the mode and `paths` that create recorded
        (as runc keeps cgroup_paths): what a later verb removes is what create made, and it needs
        no mountinfo.  Not for `create` itself, which needs the mount points."""
        if mode not in ("v1", "v2", "hybrid") or not isinstance(paths, dict):
            raise ConfigError(f"cgroup: state records an unknown cgroup mode {mode!r}")
        cg = cls.__new__(cls)
        cg.mode, cg.path, cg.devices = mode, path, []
        cg._v1 = {k: v for k, v in paths.items() if k}
        cg._unified = paths.get("")
        cg._v1_mnt, cg._unified_mnt = {}, None
        return cg

    # ----------------------------------------------------------------- introspection

    @property
    def paths(self) -> dict[str, str]:
        """{controller: directory}; "" is the v2 (unified) directory.  For state files and joining."""
        out = dict(self._v1)
        if self._unified is not None:
            out[""] = self._unified
        return out

    def _dirs(self) -> list[str]:
        """Every directory this cgroup has, one per hierarchy (shared mounts counted once)."""
        seen: list[str] = []
        for d in self._v1.values():
            if d not in seen:
                seen.append(d)
        if self._unified is not None:
            seen.append(self._unified)
        return seen

    def exists(self) -> bool:
        """Whether any of the cgroup's directories exists (leftovers count: they need a destroy)."""
        return any(os.path.isdir(d) for d in self._dirs())

    # ----------------------------------------------------------------- create

    def create(self, resources: dict | None = None) -> None:
        """Make the cgroup's directories, enable what it needs, then apply `resources`.

        On failure the caller should ``destroy()``: directories made so far stay for it to remove.
        """
        r = resources or {}
        if self.mode == "v2":
            self._create_v2(r)
        else:
            if r.get("unified"):
                raise ConfigError("cgroup: linux.resources.unified needs cgroup v2; this host uses cgroup v1")
            wanted = list(_V1_ALWAYS)
            if r.get("hugepageLimits"):
                wanted.append("hugetlb")
            net = r.get("network") or {}
            if net.get("classID") is not None:
                wanted.append("net_cls")
            if net.get("priorities"):
                wanted.append("net_prio")
            done: set[str] = set()
            for ctrl in wanted:
                d = self._v1.get(ctrl)
                if d is None or d in done:
                    continue
                done.add(d)
                made = self._mkdirs(self._v1_mnt[ctrl], d)
                if d == self._v1.get("cpuset"):
                    self._cpuset_fill(d, made, r.get("cpu") or {})
            if self._unified is not None and self._unified_mnt is not None:
                self._mkdirs(self._unified_mnt, self._unified)
        self.update(r)

    @staticmethod
    def _mkdirs(mnt: str, d: str) -> list[str]:
        """mkdir -p below a mount point; returns the directories made here, top first."""
        made: list[str] = []
        cur = mnt.rstrip("/")
        for comp in d[len(cur) :].strip("/").split("/"):
            cur = cur + "/" + comp
            try:
                os.mkdir(cur, 0o755)
                made.append(cur)
            except FileExistsError:
                pass
            except OSError as e:
                raise KernelError(f"cgroup: cannot create {cur}: {e.strerror}") from None
        return made

    @staticmethod
    def _cpuset_fill(leaf: str, made: list[str], cpu: dict) -> None:
        """v1 cpusets start empty and an empty cpuset takes no tasks: copy the parent's cpus/mems.

        Only directories budu made (and the leaf) are touched; for the leaf, values that the
        resources set are left to ``update`` (as runc does, to respect cpu_exclusive siblings).
        """
        targets = made if leaf in made else made + [leaf]
        for d in targets:
            parent = os.path.dirname(d)
            for name, key in (("cpuset.cpus", "cpus"), ("cpuset.mems", "mems")):
                if d == leaf and cpu.get(key):
                    continue
                cur = _read(d + "/" + name)
                if cur is None or cur.strip():
                    continue
                val = (_read(parent + "/" + name) or "").strip()
                if val:
                    _set(d, name, val)

    def _create_v2(self, r: dict) -> None:
        """mkdir each level, enabling the needed controllers in every ancestor's subtree_control."""
        assert self._unified is not None and self._unified_mnt is not None
        need = set(_V2_ALWAYS)
        if r.get("hugepageLimits"):
            need.add("hugetlb")
        if r.get("rdma"):
            need.add("rdma")
        for key in r.get("unified") or {}:
            ctrl = key.partition(".")[0]
            if ctrl != "cgroup":
                need.add(ctrl)
        cur = self._unified_mnt.rstrip("/")
        inherited: list[str] = []
        for comp in self._unified[len(cur) :].strip("/").split("/"):
            inherited = self._enable_v2(cur, need, inherited)
            cur = cur + "/" + comp
            try:
                os.mkdir(cur, 0o755)
            except FileExistsError:
                pass
            except OSError as e:
                raise KernelError(f"cgroup: cannot create {cur}: {e.strerror}") from None

    @staticmethod
    def _enable_v2(d: str, need: set[str], inherited: list[str]) -> list[str]:
        """Enable in d's cgroup.subtree_control the needed controllers d has; returns what d's children get.

        Only controllers listed in d's cgroup.controllers can be enabled.  Like runc, failures are
        not fatal here (e.g. a parent with processes of its own): writing the limit will say so.
        """
        text = _read(d + "/cgroup.controllers")
        avail = text.split() if text is not None else inherited
        want = [c for c in avail if c in need]
        enabled = {c.lstrip("+") for c in (_read(d + "/cgroup.subtree_control") or "").split()}
        missing = [c for c in want if c not in enabled]
        if missing:
            try:
                _write(d + "/cgroup.subtree_control", " ".join("+" + c for c in missing))
                enabled.update(missing)
            except OSError:
                for c in missing:
                    try:
                        _write(d + "/cgroup.subtree_control", "+" + c)
                        enabled.add(c)
                    except OSError:
                        pass
        return [c for c in avail if c in enabled]

    # ----------------------------------------------------------------- update

    def update(self, resources: dict | None) -> None:
        """Apply OCI linux.resources to the existing cgroup (at create, and on `budu-runtime update`)."""
        if not resources:
            return
        if self.mode == "v2":
            self._update_v2(resources)
        else:
            self._update_v1(resources)

    # v1 ---------------------------------------------------------------

    def _update_v1(self, r: dict) -> None:
        if r.get("unified"):
            raise ConfigError("cgroup: linux.resources.unified needs cgroup v2; this host uses cgroup v1")
        v = self._v1
        cpu = r.get("cpu") or {}
        d = v.get("cpuset")
        if d is not None:
            if cpu.get("cpus"):
                _set(d, "cpuset.cpus", cpu["cpus"])
            if cpu.get("mems"):
                _set(d, "cpuset.mems", cpu["mems"])
        d = v.get("devices")
        if d is not None and r.get("devices") is not None:
            rules = [(bool(dev.get("allow")), _device_rule(dev)) for dev in r["devices"]]
            # As runc's v1 path does: start from deny-all, then apply the list in order.
            _set(d, "devices.deny", "a")
            for allow, rule in rules:
                _set(d, "devices.allow" if allow else "devices.deny", rule)
        d = v.get("memory")
        if d is not None and r.get("memory"):
            self._memory_v1(d, r["memory"])
        d = v.get("cpu")
        if d is not None and cpu:
            self._cpu_v1(d, cpu)
        d = v.get("pids")
        pids = r.get("pids")
        if d is not None and pids:
            limit = _num(pids.get("limit"))
            if limit:
                _set(d, "pids.max", str(limit) if limit > 0 else "max")
        d = v.get("blkio")
        if d is not None and r.get("blockIO"):
            self._blkio_v1(d, r["blockIO"])
        d = v.get("hugetlb")
        if d is not None:
            for hp in r.get("hugepageLimits") or ():
                size = _page_size(hp)
                _set(d, f"hugetlb.{size}.limit_in_bytes", str(_num(hp.get("limit"))))
                if os.path.exists(f"{d}/hugetlb.{size}.rsvd.limit_in_bytes"):
                    _set(d, f"hugetlb.{size}.rsvd.limit_in_bytes", str(_num(hp.get("limit"))))
        net = r.get("network") or {}
        d = v.get("net_cls")
        if d is not None and net.get("classID") is not None:
            _set(d, "net_cls.classid", str(_num(net["classID"])))
        d = v.get("net_prio")
        if d is not None:
            for prio in net.get("priorities") or ():
                _set(d, "net_prio.ifpriomap", f"{prio['name']} {_num(prio.get('priority'))}")

    @staticmethod
    def _memory_v1(d: str, mem: dict) -> None:
        limit = _num(mem.get("limit"))
        swap = _num(mem.get("swap"))
        # memsw exists only with swap accounting (CONFIG_MEMCG_SWAP and swapaccount=1).
        if not os.path.exists(d + "/memory.memsw.limit_in_bytes"):
            swap = 0
        elif limit == -1 and swap == 0:
            swap = -1  # unlimited memory without a swap value means unlimited memory+swap (runc)
        # The kernel wants memory.limit <= memsw.limit at every moment, so the order matters:
        # raising both needs memsw first, lowering both needs memory first.
        memsw_first = False
        if limit and swap:
            cur = _read_int(d + "/memory.limit_in_bytes")
            memsw_first = swap == -1 or (cur is not None and cur < swap)
        if memsw_first:
            _set(d, "memory.memsw.limit_in_bytes", str(swap))
        if limit:
            _set(d, "memory.limit_in_bytes", str(limit))
        if swap and not memsw_first:
            _set(d, "memory.memsw.limit_in_bytes", str(swap))
        # memory.kernel is ignored, as in runc >= 1.2 (kernel memory limits are deprecated).
        reservation = _num(mem.get("reservation"))
        if reservation:
            _set(d, "memory.soft_limit_in_bytes", str(reservation))
        tcp = _num(mem.get("kernelTCP"))
        if tcp and os.path.exists(d + "/memory.kmem.tcp.limit_in_bytes"):
            _set(d, "memory.kmem.tcp.limit_in_bytes", str(tcp))
        if mem.get("disableOOMKiller"):
            _set(d, "memory.oom_control", "1")
        swappiness = mem.get("swappiness")
        if swappiness is not None and swappiness != -1:
            if not isinstance(swappiness, int) or not 0 <= swappiness <= 100:
                raise ConfigError(f"memory.swappiness must be 0-100, got {swappiness!r}")
            _set(d, "memory.swappiness", str(swappiness))

    @staticmethod
    def _cpu_v1(d: str, cpu: dict) -> None:
        shares = _num(cpu.get("shares"))
        if shares:
            _set(d, "cpu.shares", str(shares))
        _pair(d, "cpu.cfs_period_us", _num(cpu.get("period")), "cpu.cfs_quota_us", _num(cpu.get("quota")))
        if cpu.get("burst") is not None:
            _set(d, "cpu.cfs_burst_us", str(_num(cpu["burst"])))
        _pair(
            d,
            "cpu.rt_period_us",
            _num(cpu.get("realtimePeriod")),
            "cpu.rt_runtime_us",
            _num(cpu.get("realtimeRuntime")),
        )
        if cpu.get("idle") is not None:
            _set(d, "cpu.idle", str(_num(cpu["idle"])))

    @staticmethod
    def _blkio_v1(d: str, bio: dict) -> None:
        # CFQ had blkio.weight; on blk-mq kernels BFQ offers blkio.bfq.weight instead (runc picks likewise).
        if not os.path.exists(d + "/blkio.weight") and os.path.exists(d + "/blkio.bfq.weight"):
            wfile, wdfile = "blkio.bfq.weight", "blkio.bfq.weight_device"
        else:
            wfile, wdfile = "blkio.weight", "blkio.weight_device"
        weight = _num(bio.get("weight"))
        if weight:
            _set(d, wfile, str(weight))
        # Leaf weights were CFQ only (gone since kernel 5.0): set them only where the file exists.
        leaf = _num(bio.get("leafWeight"))
        if leaf and os.path.exists(d + "/blkio.leaf_weight"):
            _set(d, "blkio.leaf_weight", str(leaf))
        for wd in bio.get("weightDevice") or ():
            dev = _dev(wd)
            if _num(wd.get("weight")):
                _set(d, wdfile, f"{dev} {_num(wd['weight'])}")
            if _num(wd.get("leafWeight")) and os.path.exists(d + "/blkio.leaf_weight_device"):
                _set(d, "blkio.leaf_weight_device", f"{dev} {_num(wd['leafWeight'])}")
        for key, fname, _v2name in _BLKIO_THROTTLE:
            for td in bio.get(key) or ():
                _set(d, fname, f"{_dev(td)} {_num(td.get('rate'))}")

    # v2 ---------------------------------------------------------------

    def _update_v2(self, r: dict) -> None:
        d = self._unified
        assert d is not None
        pids = r.get("pids")
        if pids:
            limit = _num(pids.get("limit"))
            if limit:
                _set(d, "pids.max", str(limit) if limit > 0 else "max")
        mem = r.get("memory")
        if mem:
            self._memory_v2(d, mem)
        bio = r.get("blockIO")
        if bio:
            self._io_v2(d, bio)
        cpu = r.get("cpu") or {}
        if cpu:
            self._cpu_v2(d, cpu)
        if r.get("devices") is not None:
            # v2 has no devices.allow/deny: access is enforced by an eBPF program attached to the
            # cgroup (runc: BPF_CGROUP_DEVICE).  Record the rules for whoever attaches it; skip here.
            self.devices = list(r["devices"])
        if cpu.get("cpus"):
            _set(d, "cpuset.cpus", cpu["cpus"])
        if cpu.get("mems"):
            _set(d, "cpuset.mems", cpu["mems"])
        for hp in r.get("hugepageLimits") or ():
            size = _page_size(hp)
            _set(d, f"hugetlb.{size}.max", str(_num(hp.get("limit"))))
            if os.path.exists(f"{d}/hugetlb.{size}.rsvd.max"):
                _set(d, f"hugetlb.{size}.rsvd.max", str(_num(hp.get("limit"))))
        unified = r.get("unified") or {}
        for key, value in unified.items():
            self._unified_v2(d, key, value)

    @staticmethod
    def _memory_v2(d: str, mem: dict) -> None:
        limit = _num(mem.get("limit"))
        swap = _num(mem.get("swap"))
        reservation = _num(mem.get("reservation"))
        if not (limit or swap or reservation):
            return
        # OCI swap is memory+swap (v1 semantics); v2's memory.swap.max is swap alone.
        if limit == -1 and swap == 0:
            swap_v2 = -1
        elif swap in (-1, 0):
            swap_v2 = swap
        elif limit in (0, -1):
            raise ConfigError("memory.swap needs a memory.limit on cgroup v2")
        elif limit < 0:
            raise ConfigError(f"invalid memory.limit {limit}")
        elif swap < limit:
            raise ConfigError(f"memory.swap ({swap}) must be >= memory.limit ({limit})")
        else:
            swap_v2 = swap - limit
        swap_str = _v2num(swap_v2)
        if not swap_str and swap > 0:
            swap_str = "0"  # swap == limit: no swap at all
        if swap_str:
            path = d + "/memory.swap.max"
            try:
                _write(path, swap_str)
            except OSError as e:
                # No swap accounting: "no swap" and "unlimited swap" are what we have anyway.
                if os.path.exists(path) or swap_str not in ("max", "0"):
                    raise _set_error(path, swap_str, e) from None
        if limit:
            _set(d, "memory.max", _v2num(limit))
        # memory.kernel / kernelTCP / swappiness / disableOOMKiller have no v2 file: ignored (runc too).
        if reservation:
            _set(d, "memory.low", _v2num(reservation))

    @staticmethod
    def _cpu_v2(d: str, cpu: dict) -> None:
        if _num(cpu.get("realtimeRuntime")) or _num(cpu.get("realtimePeriod")):
            raise ConfigError("cpu.realtimeRuntime/realtimePeriod need cgroup v1 (v2 has no realtime group scheduling)")
        idle = cpu.get("idle")
        if idle is not None:
            _set(d, "cpu.idle", str(_num(idle)))
        shares = _num(cpu.get("shares"))
        if shares and not idle:  # the kernel refuses cpu.weight while cpu.idle is set
            _set(d, "cpu.weight", str(shares_to_weight(shares)))
        quota = _num(cpu.get("quota"))
        period = _num(cpu.get("period"))
        burst = None
        if cpu.get("burst") is not None:
            burst = str(_num(cpu["burst"]))
            try:
                _write(d + "/cpu.max.burst", burst)
                burst = None
            except OSError as e:
                # A burst above the old quota is refused; retry once the new quota is in.
                if e.errno != errno.EINVAL or not quota:
                    raise _set_error(d + "/cpu.max.burst", burst, e) from None
        if quota or period:
            value = (str(quota) if quota > 0 else "max") + " " + str(period or _V2_DEFAULT_PERIOD)
            _set(d, "cpu.max", value)
            if burst is not None:
                _set(d, "cpu.max.burst", burst)

    @staticmethod
    def _io_v2(d: str, bio: dict) -> None:
        weight = _num(bio.get("weight"))
        bfq = None
        if weight or bio.get("weightDevice"):
            bfq = _read(d + "/io.bfq.weight")
        if weight:
            if bfq is not None:
                _set(d, "io.bfq.weight", str(weight))  # BFQ takes blkio's 10..1000 scale as is
            else:
                _set(d, "io.weight", str(blkio_to_io_weight(weight)))
        # Per-device weights need BFQ with per-device support ("default N" format, kernel >= 5.4).
        if bfq is not None and bfq.startswith("default"):
            for wd in bio.get("weightDevice") or ():
                if _num(wd.get("weight")):
                    _set(d, "io.bfq.weight", f"{_dev(wd)} {_num(wd['weight'])}")
        for key, _v1name, name in _BLKIO_THROTTLE:
            for td in bio.get(key) or ():
                rate = _num(td.get("rate"))
                if rate:
                    _set(d, "io.max", f"{_dev(td)} {name}={rate}")

    @staticmethod
    def _unified_v2(d: str, key: str, value: str) -> None:
        if not isinstance(key, str) or not key or "/" in key:
            raise ConfigError(f"linux.resources.unified key {key!r} must be a file name")
        path = d + "/" + key
        try:
            _write(path, str(value))
        except OSError as e:
            if not os.path.exists(path):
                ctrl, dot, _rest = key.partition(".")
                if not dot:
                    raise ConfigError(f"linux.resources.unified key {key!r} must be CONTROLLER.PARAMETER") from None
                avail = (_read(d + "/cgroup.controllers") or "").split()
                if ctrl != "cgroup" and ctrl not in avail:
                    raise KernelError(
                        f"cgroup: cannot set {key} to {value}: controller {ctrl!r} not available"
                    ) from None
            raise _set_error(path, str(value), e) from None

    # ----------------------------------------------------------------- processes

    def add(self, pid: int) -> None:
        """Move `pid` into the cgroup in every hierarchy (v1: each controller; hybrid: unified too)."""
        added = False
        for d in self._dirs():
            try:
                _write(d + "/cgroup.procs", str(pid))
                added = True
            except FileNotFoundError:
                # v1: a hierarchy the container got no directory in (e.g. net_cls when unused).
                if self.mode == "v2":
                    raise KernelError(f"cgroup: cannot add pid {pid} to {d}: the cgroup does not exist") from None
            except OSError as e:
                raise KernelError(f"cgroup: cannot add pid {pid} to {d}: {e.strerror}") from None
        if not added:
            raise KernelError(f"cgroup: cannot add pid {pid}: cgroup {self.path} does not exist")

    def _procs_dir(self) -> str | None:
        if self.mode == "v2":
            return self._unified
        for key in ("pids", "freezer", "memory", "name=systemd"):
            if key in self._v1:
                return self._v1[key]
        return next(iter(self._v1.values()), None)

    def pids(self) -> list[int]:
        """Every pid in the cgroup and its descendants (v1: the pids hierarchy; v2: unified)."""
        d = self._procs_dir()
        out: list[int] = []
        if d is None:
            return out
        seen: set[int] = set()
        for top, _dirs, _files in os.walk(d):
            for tok in (_read(top + "/cgroup.procs") or "").split():
                try:
                    pid = int(tok)
                except ValueError:
                    continue
                if pid not in seen:
                    seen.add(pid)
                    out.append(pid)
        return out

    # ----------------------------------------------------------------- freezer

    def freeze(self) -> None:
        """Stop every process in the cgroup (pause), returning once the kernel says FROZEN."""
        self._freeze(self.freeze_timeout)

    def _freeze(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if self.mode == "v2":
            d = self._unified
            assert d is not None
            _set(d, "cgroup.freeze", "1")
            try:
                state = (_read(d + "/cgroup.freeze") or "").strip()
                if state != "1":
                    raise KernelError(f"cgroup: cannot freeze {self.path}: cgroup.freeze reads {state!r}")
                while True:
                    events = _read(d + "/cgroup.events")
                    if events is None:
                        raise KernelError(f"cgroup: cannot freeze {self.path}: no cgroup.events")
                    if _events_frozen(events):
                        return
                    if time.monotonic() > deadline:
                        raise KernelError(f"cgroup: cannot freeze {self.path}: not frozen after {timeout:g} s")
                    time.sleep(0.01)
            except BaseException:
                _try_write(d + "/cgroup.freeze", "0")  # never leave a half-frozen cgroup behind
                raise
        d = self._v1.get("freezer")
        if d is None:
            raise KernelError("cgroup: cannot freeze: the freezer controller is not mounted")
        try:
            i = 0
            while True:
                if i % 50 == 49:
                    # v1 may stay FREEZING while tasks keep forking; a brief thaw helps (runc does this).
                    _try_write(d + "/freezer.state", "THAWED")
                    time.sleep(0.01)
                _set(d, "freezer.state", "FROZEN")
                state = (_read(d + "/freezer.state") or "").strip()
                if state == "FROZEN":
                    return
                if state != "FREEZING":
                    raise KernelError(f"cgroup: cannot freeze {self.path}: freezer.state is {state!r}")
                if time.monotonic() > deadline:
                    raise KernelError(f"cgroup: cannot freeze {self.path}: still FREEZING after {timeout:g} s")
                time.sleep(0.001 if i < 20 else 0.01)
                i += 1
        except BaseException:
            _try_write(d + "/freezer.state", "THAWED")
            raise

    def thaw(self) -> None:
        """Resume the cgroup's processes (unpause); a no-op where there is no freezer."""
        if self.mode == "v2":
            assert self._unified is not None
            if os.path.exists(self._unified + "/cgroup.freeze"):
                _set(self._unified, "cgroup.freeze", "0")
            return
        d = self._v1.get("freezer")
        if d is not None and os.path.exists(d + "/freezer.state"):
            _set(d, "freezer.state", "THAWED")

    def frozen(self) -> bool:
        """Whether the cgroup is fully frozen (FREEZING, half-way, counts as not frozen)."""
        if self.mode == "v2":
            assert self._unified is not None
            if (_read(self._unified + "/cgroup.freeze") or "").strip() != "1":
                return False
            return _events_frozen(_read(self._unified + "/cgroup.events") or "")
        d = self._v1.get("freezer")
        return d is not None and (_read(d + "/freezer.state") or "").strip() == "FROZEN"

    # ----------------------------------------------------------------- kill / destroy

    def kill_all(self, sig: int) -> None:
        """Send `sig` to every process in the cgroup.

        SIGKILL on v2 uses cgroup.kill when the kernel has it (atomic, no fork races); otherwise,
        like runc, the cgroup is frozen while pids are read and signalled so nothing forks past
        the kill, then thawed (on v1 frozen tasks only die once thawed).
        """
        if sig == _SIGKILL and self.mode == "v2":
            assert self._unified is not None
            if os.path.exists(self._unified + "/cgroup.kill"):
                _set(self._unified, "cgroup.kill", "1")
                return
        froze = False
        if sig == _SIGKILL:
            try:
                self._freeze(1.0)
                froze = True
            except (KernelError, OSError):
                pass  # best effort: signal anyway
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if froze or sig == _SIGKILL:
                try:
                    self.thaw()
                except (KernelError, OSError):
                    pass

    def destroy(self) -> None:
        """Remove the cgroup (and cgroups below it) from every hierarchy; idempotent.

        Parent directories are left alone even if budu made them (like runc): other containers
        may share them.  Retries briefly on EBUSY while just-killed processes exit.
        """
        first: tuple[str, OSError] | None = None
        for d in self._dirs():
            try:
                _remove_tree(d)
            except OSError as e:
                if first is None:
                    first = (d, e)
        if first is not None:
            d, e = first
            raise KernelError(f"cgroup: cannot remove {d}: {e.strerror}")

    # ----------------------------------------------------------------- stats

    def stats(self) -> dict:
        """Memory, CPU and pids usage, the same shape on v1 and v2 (for the `stats` command)."""
        if self.mode == "v2":
            d = self._unified
            assert d is not None
            usage_ns = 0
            for line in (_read(d + "/cpu.stat") or "").splitlines():
                key, _sp, val = line.partition(" ")
                if key == "usage_usec":
                    usage_ns = int(val) * 1000
                    break
            return {
                "memory": {
                    "usage": _read_int(d + "/memory.current") or 0,
                    "limit": _read_int(d + "/memory.max"),
                    "max_usage": _read_int(d + "/memory.peak"),
                },
                "cpu": {"usage_ns": usage_ns},
                "pids": {"current": _read_int(d + "/pids.current") or 0, "limit": _read_int(d + "/pids.max")},
            }
        m = self._v1.get("memory")
        limit = _read_int(m + "/memory.limit_in_bytes") if m else None
        if limit is not None and limit >= _V1_UNLIMITED:
            limit = None
        acct = self._v1.get("cpuacct")
        p = self._v1.get("pids")
        return {
            "memory": {
                "usage": (_read_int(m + "/memory.usage_in_bytes") if m else None) or 0,
                "limit": limit,
                "max_usage": _read_int(m + "/memory.max_usage_in_bytes") if m else None,
            },
            "cpu": {"usage_ns": (_read_int(acct + "/cpuacct.usage") if acct else None) or 0},
            "pids": {
                "current": (_read_int(p + "/pids.current") if p else None) or 0,
                "limit": _read_int(p + "/pids.max") if p else None,
            },
        }


# --------------------------------------------------------------------------- helpers for update


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144) to cpu.weight (1..10000), runc's linear mapping."""
    if shares <= 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_to_io_weight(weight: int) -> int:
    """blkio.weight (10..1000) to io.weight (1..10000), runc's linear mapping."""
    if weight <= 0:
        return 0
    return 1 + ((weight - 10) * 9999) // 990


def _v2num(value: int) -> str:
    """v2 limit text: 0 is 'unset' (""), -1 is "max"."""
    if value == 0:
        return ""
    if value == -1:
        return "max"
    return str(value)


def _pair(d: str, period_file: str, period: int, quota_file: str, quota: int) -> None:
    """Write a period and a quota/runtime in an order the kernel accepts.

    A new period can be refused (EINVAL) against the old quota; then write the quota first and
    the period after it (runc's approach for cfs and rt).
    """
    pending = None
    if period:
        try:
            _write(d + "/" + period_file, str(period))
        except OSError as e:
            if e.errno != errno.EINVAL or not quota:
                raise _set_error(d + "/" + period_file, str(period), e) from None
            pending = str(period)
    if quota:
        _set(d, quota_file, str(quota))
        if pending is not None:
            _set(d, period_file, pending)


def _dev(entry: dict) -> str:
    """The "major:minor" of a blockIO device entry."""
    return f"{_num(entry.get('major'))}:{_num(entry.get('minor'))}"


def _device_rule(dev: dict) -> str:
    """A v1 devices.allow/deny line ("c 1:3 rwm") from an OCI linux.resources.devices entry."""
    kind = dev.get("type") or "a"
    if kind not in ("a", "b", "c"):
        raise ConfigError(f"linux.resources.devices: invalid type {kind!r} (want a, b or c)")
    access = dev.get("access") or "rwm"
    if any(ch not in "rwm" for ch in access):
        raise ConfigError(f"linux.resources.devices: invalid access {access!r} (want letters of rwm)")
    major = dev.get("major")
    minor = dev.get("minor")
    ma = "*" if major is None or major < 0 else str(major)
    mi = "*" if minor is None or minor < 0 else str(minor)
    return f"{kind} {ma}:{mi} {access}"


def _page_size(hp: dict) -> str:
    """The hugetlb file infix ("2MB") of a hugepageLimits entry, checked against the schema."""
    size = hp.get("pageSize") or ""
    if not (
        isinstance(size, str)
        and len(size) >= 3
        and size[-2:] in ("KB", "MB", "GB")
        and size[:-2].isdigit()
        and size[0] != "0"
    ):
        raise ConfigError(f"linux.resources.hugepageLimits: invalid pageSize {size!r}")
    return size


def _events_frozen(events: str) -> bool:
    for line in events.splitlines():
        if line.startswith("frozen "):
            return line[7:].strip() == "1"
    return False


def _try_write(path: str, value: str) -> None:
    try:
        _write(path, value)
    except OSError:
        pass
