"""Planning a container's mounts at create time, with docker's rules (moby daemon/volumes.go and
volume/mounts/linux_parser.go), and docker's copy-up of image content into a new volume.

`plan_mounts` turns HostConfig.Binds, HostConfig.Mounts, Config.Volumes and the image's Volumes
into docker MountPoint dicts — what `inspect` shows under "Mounts" — creating the volumes they
name.  Decisions the spec builder and the engine need later ride along under private keys that
start with "_" (inspect drops them):

    _copy_up      a volume that gets the image's files at its mount point on first start
    _anonymous    a volume made for this container alone (`rm -v` removes it)
    _mkdir        a `-v /host:/ctr` bind whose missing source is created (docker does, --mount not)
    _nonrecursive BindOptions.NonRecursive: "bind" instead of "rbind"
    _tmpfs        the tmpfs data options of a --mount type=tmpfs (size=…,mode=…)

HostConfig.Tmpfs entries are not MountPoints in docker's inspect; the spec builder mounts them.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat

from budu.engine.validate import valid_name
from budu.engine.volumes import Volumes
from budu.errors import ConfigError
from budu.runtime.rootfs import secure_join

_RW_MODES = {"ro", "rw"}
_LABEL_MODES = {"z", "Z"}
PROPAGATIONS = ("private", "rprivate", "slave", "rslave", "shared", "rshared")
_CONSISTENCY = {"consistent", "cached", "delegated"}
DEFAULT_PROPAGATION = "rprivate"


def clean(path: str) -> str:
    """Go's path.Clean for an absolute path."""
    p = posixpath.normpath(path)
    return "/" + p.lstrip("/") if p.startswith("//") else p


def public(mounts: list[dict]) -> list[dict]:
    """The MountPoints as docker's inspect shows them (private keys dropped)."""
    return [{k: v for k, v in m.items() if not k.startswith("_")} for m in mounts]


# -- parsing -------------------------------------------------------------------------------------


def _valid_mode(mode: str) -> bool:
    if mode == "":
        return True
    counts = [0, 0, 0, 0, 0]
    for o in mode.split(","):
        if o in _RW_MODES:
            counts[0] += 1
        elif o in _LABEL_MODES:
            counts[1] += 1
        elif o in PROPAGATIONS:
            counts[2] += 1
        elif o == "nocopy":
            counts[3] += 1
        elif o in _CONSISTENCY:
            counts[4] += 1
        else:
            return False
    return max(counts) <= 1


def _check_target(target: str, kind: str) -> str:
    if not target:
        raise ConfigError(f'invalid mount config for type "{kind}": field Target must not be empty')
    if not target.startswith("/"):
        raise ConfigError(f'invalid mount config for type "{kind}": invalid mount path: \'{target}\' '
                          f"mount path must be absolute")
    if clean(target) == "/":
        raise ConfigError(f'invalid mount config for type "{kind}": invalid specification: destination can\'t be \'/\'')
    return clean(target)


def _parse_bind(raw: str) -> dict:
    """One HostConfig.Binds entry: SRC:DST[:MODE] or a bare DST (an anonymous volume)."""
    invalid = f"invalid volume specification: '{raw}'"
    arr = raw.split(":", 3)
    if arr[0] == "":
        raise ConfigError(invalid)
    mode = ""
    if len(arr) == 1:
        src, dst = "", arr[0]
    elif len(arr) == 2:
        if _valid_mode(arr[1]):
            raise ConfigError(invalid)  # /foo:rw is a destination and a mode, not a volume
        src, dst = arr
    elif len(arr) == 3:
        src, dst, mode = arr
    else:
        raise ConfigError(invalid)
    if not _valid_mode(mode):
        raise ConfigError(f"invalid mode: {mode}")
    opts = mode.split(",") if mode else []
    kind = "bind" if src.startswith("/") else "volume"
    propagation = next((o for o in opts if o in PROPAGATIONS), "")
    try:
        dst = _check_target(dst, kind)
    except ConfigError as e:
        raise ConfigError(f"{invalid}: {e}") from None
    rw = "ro" not in opts
    if kind == "bind":
        return {"Type": "bind", "Source": clean(src), "Destination": dst, "Mode": mode, "RW": rw,
                "Propagation": propagation or DEFAULT_PROPAGATION, "_mkdir": True}
    if propagation:
        raise ConfigError(f'{invalid}: invalid mount config for type "volume": field BindOptions must not be specified')
    if src and not valid_name(src):
        raise ConfigError(f'create {src}: "{src}" includes invalid characters for a local volume name, only '
                          f'"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, '
                          f"use absolute path")
    entry = {"Type": "volume", "Name": src, "Source": "", "Destination": dst, "Driver": "local",
             "Mode": mode or "z", "RW": rw, "Propagation": ""}
    if "nocopy" not in opts:
        entry["_copy_up"] = True
    if not src:
        entry["_anonymous"] = True
    return entry


def _tmpfs_data(opts: dict | None, read_only: bool) -> str:
    """TmpfsOptions → mount data, as docker writes it (size with the largest exact suffix)."""
    raw = ["ro"] if read_only else []
    opts = opts or {}
    if opts.get("Mode"):
        raw.append(f"mode={opts['Mode']:o}")
    size = opts.get("SizeBytes") or 0
    if size:
        if size < 0:
            raise ConfigError(f"invalid tmpfs size {size}")
        for suffix, div in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
            if size % div == 0:
                raw.append(f"size={size // div}{suffix}")
                break
        else:
            raw.append(f"size={size}")
    for opt in opts.get("Options") or []:
        if not 1 <= len(opt) <= 2:
            raise ConfigError("invalid option array length")
        if opt[0] not in ("exec", "noexec"):
            raise ConfigError(f"invalid option: {opt[0]}")
        raw.append(opt[0] if len(opt) == 1 else f"{opt[0]}={opt[1]}")
    return ",".join(raw)


def _parse_mount(m: dict) -> dict:
    """One HostConfig.Mounts entry (the --mount flag)."""
    kind = m.get("Type") or ""
    if kind not in ("bind", "volume", "tmpfs"):
        if kind in ("npipe", "cluster", "image"):
            raise ConfigError(f'invalid mount config for type "{kind}": not supported by budu')
        raise ConfigError(f'invalid mount config for type "{kind}": mount type unknown')
    dst = _check_target(m.get("Target") or "", kind)
    src = m.get("Source") or ""
    bind_opts, vol_opts = m.get("BindOptions"), m.get("VolumeOptions")
    err = f'invalid mount config for type "{kind}"'
    rw = not m.get("ReadOnly")
    if kind == "bind":
        if not src:
            raise ConfigError(f"{err}: field Source must not be empty")
        if vol_opts:
            raise ConfigError(f"{err}: field VolumeOptions must not be specified")
        if not src.startswith("/"):
            raise ConfigError(f"{err}: invalid mount path: '{src}' mount path must be absolute")
        bind_opts = bind_opts or {}
        propagation = bind_opts.get("Propagation") or DEFAULT_PROPAGATION
        if propagation not in PROPAGATIONS:
            raise ConfigError(f"{err}: invalid propagation mode: {propagation}")
        src = clean(src)
        if not os.path.lexists(src):
            if not bind_opts.get("CreateMountpoint"):
                raise ConfigError(f"{err}: bind source path does not exist: {src}")
        entry = {"Type": "bind", "Source": src, "Destination": dst, "Mode": "", "RW": rw, "Propagation": propagation}
        if bind_opts.get("CreateMountpoint"):
            entry["_mkdir"] = True
        if bind_opts.get("NonRecursive"):
            entry["_nonrecursive"] = True
        return entry
    if kind == "volume":
        if bind_opts:
            raise ConfigError(f"{err}: field BindOptions must not be specified")
        vol_opts = vol_opts or {}
        if vol_opts.get("Subpath"):
            raise ConfigError(f"{err}: VolumeOptions.Subpath is not supported by budu yet")
        if not src and not rw:
            raise ConfigError(f"{err}: must not set ReadOnly mode when using anonymous volumes")
        if src and not valid_name(src):
            raise ConfigError(f'create {src}: "{src}" includes invalid characters for a local volume name, only '
                              f'"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed')
        driver = (vol_opts.get("DriverConfig") or {}).get("Name") or "local"
        if driver != "local":
            raise ConfigError(f'error looking up volume plugin {driver}: plugin "{driver}" not found')
        entry = {"Type": "volume", "Name": src, "Source": "", "Destination": dst, "Driver": "local",
                 "Mode": "z", "RW": rw, "Propagation": ""}
        if not vol_opts.get("NoCopy"):
            entry["_copy_up"] = True
        if not src:
            entry["_anonymous"] = True
        entry["_create"] = {"labels": vol_opts.get("Labels") or {},
                            "options": (vol_opts.get("DriverConfig") or {}).get("Options") or {}}
        return entry
    if src:
        raise ConfigError(f"{err}: field Source must not be specified")
    if bind_opts:
        raise ConfigError(f"{err}: field BindOptions must not be specified")
    return {"Type": "tmpfs", "Source": "", "Destination": dst, "Mode": "", "RW": rw, "Propagation": "",
            "_tmpfs": _tmpfs_data(m.get("TmpfsOptions"), not rw)}


# -- planning ------------------------------------------------------------------------------------


def plan_mounts(config: dict, host_config: dict, image_config: dict, volumes: Volumes) -> list[dict]:
    """The container's MountPoints; every entry is checked before any volume is created, and the
    anonymous volumes made here are removed again if creating a later one fails."""
    driver = host_config.get("VolumeDriver") or "local"
    if driver != "local":
        raise ConfigError(f'error looking up volume plugin {driver}: plugin "{driver}" not found')
    tmpfs = set()
    for dest in host_config.get("Tmpfs") or {}:
        tmpfs.add(_check_target(dest, "tmpfs"))

    planned: list[dict] = []
    taken: set[str] = set()

    def add(entry: dict) -> None:
        dest = entry["Destination"]
        if dest in taken or dest in tmpfs:
            raise ConfigError(f"Duplicate mount point: {dest}")
        taken.add(dest)
        planned.append(entry)

    for raw in host_config.get("Binds") or []:
        add(_parse_bind(raw))
    for m in host_config.get("Mounts") or []:
        add(_parse_mount(m))
    wanted = set()
    for source in (config.get("Volumes") or {}, image_config.get("Volumes") or {}):
        for dest in source:
            wanted.add(_check_target(dest, "volume"))
    for dest in sorted(wanted - taken - tmpfs):
        planned.append({"Type": "volume", "Name": "", "Source": "", "Destination": dest, "Driver": "local",
                        "Mode": "", "RW": True, "Propagation": "", "_copy_up": True, "_anonymous": True})

    created: list[str] = []
    try:
        for entry in planned:
            if entry["Type"] == "bind" and entry.get("_mkdir"):
                _make_source(entry["Source"])
            if entry["Type"] != "volume":
                continue
            extra = entry.pop("_create", {})
            anonymous = bool(entry.get("_anonymous"))
            vol = volumes.create(entry["Name"] or None, labels=extra.get("labels"), options=extra.get("options"),
                                 anonymous=anonymous)
            if anonymous:
                created.append(vol.name)
            entry["Name"], entry["Source"] = vol.name, vol.mountpoint
    except BaseException:
        for name in created:
            try:
                volumes.remove(name, force=True)
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass
        raise
    return planned


def _make_source(path: str) -> None:
    """docker creates a missing `-v` source directory (0755)."""
    if not os.path.lexists(path):
        try:
            os.makedirs(path, 0o755, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"error while creating mount source path '{path}': mkdir {path}: {e.strerror}") from None


# -- copy-up -------------------------------------------------------------------------------------


def copy_up(volume_path: str, rootfs: str, destination: str) -> bool:
    """Copy what the image has at `destination` into an empty volume (docker's populate): file
    types, owners, modes, times, xattrs and hard links are kept; the volume's root takes the
    owner and mode of the image's directory.  Returns whether anything was copied."""
    src = secure_join(rootfs, destination)
    try:
        st = os.lstat(src)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode) or os.listdir(volume_path):
        return False
    _copy_dir_contents(src, volume_path, {})
    os.chown(volume_path, st.st_uid, st.st_gid)
    os.chmod(volume_path, stat.S_IMODE(st.st_mode))
    return True


def _copy_dir_contents(src: str, dst: str, links: dict[tuple[int, int], str]) -> None:
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        s, d = os.path.join(src, e.name), os.path.join(dst, e.name)
        st = os.lstat(s)
        mode = st.st_mode
        if not stat.S_ISDIR(mode) and st.st_nlink > 1 and (st.st_dev, st.st_ino) in links:
            os.link(links[(st.st_dev, st.st_ino)], d)
            continue
        if stat.S_ISDIR(mode):
            os.mkdir(d, 0o700)
            _copy_dir_contents(s, d, links)
        elif stat.S_ISREG(mode):
            _copy_file(s, d)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(s), d)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(d, 0o600)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            os.mknod(d, mode, st.st_rdev)
        else:
            continue  # sockets are not copied
        if not stat.S_ISDIR(mode) and st.st_nlink > 1:
            links[(st.st_dev, st.st_ino)] = d
        _copy_metadata(s, d, st)


def _copy_file(src: str, dst: str) -> None:
    fin = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            while True:  # os.sendfile: no userspace copy, and no shutil import on the start path
                if os.sendfile(fout, fin, None, 1 << 30) == 0:
                    break
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def _copy_metadata(src: str, dst: str, st: os.stat_result) -> None:
    try:
        for name in os.listxattr(src, follow_symlinks=False):
            try:
                os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
            except OSError:
                pass  # e.g. trusted.* or security.* the host refuses: the data matters more
    except OSError as e:
        if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))  # after chown, which clears setuid bits
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
