"""engine.spec: docker's create body → OCI config.json.  Unit checks of docker's rules on real
dicts, then real containers (budu-runtime, and runc as the referee for the security settings)
that check what a docker user would see inside."""

from __future__ import annotations

import json
import os
import resource
import uuid

import pytest

from budu.engine import resources, seccomp_profile, spec, users
from budu.engine.spec import build_spec
from budu.errors import ConfigError

DOCKER_DEFAULT_CAPS = 0x00000000A80425FB


def host_capbnd() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))


def status_field(out: str, field: str) -> int:
    return int(next(line.split()[1] for line in out.splitlines() if line.startswith(field + ":")), 16)


def make(rootfs, volumes, config=None, host_config=None, image_config=None, netns=None, files=None, mounts=None):
    return build_spec(container_id="f" * 64, rootfs=rootfs, image_config=image_config or {},
                      config=config if config is not None else {"Cmd": ["true"]}, host_config=host_config or {},
                      mounts=mounts or [], files=files or {}, netns=netns, cgroups_path="/budu/x", volumes=volumes)


def allowed(seccomp: dict, name: str) -> bool:
    """Whether a syscall has an unconditional allow rule in an OCI seccomp object."""
    return any(name in r["names"] and r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
               for r in seccomp["syscalls"])


# -- process -------------------------------------------------------------------------------------


@pytest.mark.parametrize("image, config, want", [
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {}, ["/ep", "a"]),
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {"Cmd": ["b"]}, ["/ep", "b"]),
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {"Entrypoint": ["/other"]}, ["/other"]),
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {"Entrypoint": ["/other"], "Cmd": ["c"]}, ["/other", "c"]),
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {"Entrypoint": [""]}, ["a"]),   # --entrypoint "" clears
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {"Entrypoint": []}, ["a"]),
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {"Entrypoint": [], "Cmd": ["x"]}, ["x"]),
    ({"Cmd": ["sh"]}, {}, ["sh"]),
    ({}, {"Cmd": ["ls", "-l"]}, ["ls", "-l"]),
])
def test_command_follows_dockers_override_rules(image, config, want):
    assert spec.command(image, config) == want


def test_no_command_is_an_error():
    with pytest.raises(ConfigError, match="no command specified"):
        spec.command({"Entrypoint": ["/ep"]}, {"Entrypoint": [""]})
    with pytest.raises(ConfigError, match="no command specified"):
        spec.command({}, {})


def test_environment_order_and_overrides():
    image = {"Env": ["PATH=/img/bin", "A=image", "B=image"]}
    config = {"Env": ["A=mine", "C=mine", "HOSTNAME=custom"]}
    env = spec.environment(image, config, "h1", tty=True)
    assert env == ["PATH=/img/bin", "HOSTNAME=custom", "TERM=xterm", "A=mine", "C=mine", "B=image"]
    env = spec.environment({}, {"Env": ["X=1", "TERM"]}, "h2", tty=True)
    assert env == [f"PATH={spec.DEFAULT_PATH}", "HOSTNAME=h2", "X=1"]  # bare TERM unsets it
    assert "TERM=xterm" not in spec.environment({}, {}, "h", tty=False)


def test_process_basics(rootfs, volumes):
    s = make(rootfs, volumes, {"Cmd": ["sh"], "Tty": True, "WorkingDir": "/srv/app/"},
             {"OomScoreAdj": 200, "ConsoleSize": [30, 100]})
    p = s["process"]
    assert p["terminal"] is True and p["consoleSize"] == {"height": 30, "width": 100}
    assert p["cwd"] == "/srv/app" and os.path.isdir(os.path.join(rootfs, "srv/app"))
    assert p["oomScoreAdj"] == 200 and p["noNewPrivileges"] is False
    assert p["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}
    assert s["hostname"] == "f" * 12 and "HOSTNAME=" + "f" * 12 in p["env"]
    assert s["root"] == {"path": "rootfs", "readonly": False}
    assert make(rootfs, volumes, {"Cmd": ["sh"]}, image_config={"WorkingDir": "/w"})["process"]["cwd"] == "/w"
    assert make(rootfs, volumes)["process"]["cwd"] == "/"
    with pytest.raises(ConfigError, match="needs to be an absolute path"):
        make(rootfs, volumes, {"Cmd": ["sh"], "WorkingDir": "rel"})


def test_workdir_symlink_cannot_escape_the_rootfs(rootfs, volumes, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), os.path.join(rootfs, "escape"))  # absolute: resolved inside the rootfs
    os.symlink("../../../../../../..", os.path.join(rootfs, "up"))
    make(rootfs, volumes, {"Cmd": ["sh"], "WorkingDir": "/escape/made"})
    make(rootfs, volumes, {"Cmd": ["sh"], "WorkingDir": "/up/made2"})
    assert os.listdir(outside) == []
    assert os.path.isdir(os.path.join(rootfs, str(outside).lstrip("/"), "made"))
    assert os.path.isdir(os.path.join(rootfs, "made2"))
    with open(os.path.join(rootfs, "file"), "w"):
        pass
    with pytest.raises(ConfigError, match="not a directory"):
        make(rootfs, volumes, {"Cmd": ["sh"], "WorkingDir": "/file/sub"})


def test_security_opts():
    assert spec._security_opts(["no-new-privileges"])["no-new-privileges"] is True
    assert spec._security_opts(["no-new-privileges:true"])["no-new-privileges"] is True
    assert spec._security_opts(["no-new-privileges=false"])["no-new-privileges"] is False
    assert spec._security_opts(["seccomp=unconfined", "apparmor=unconfined"])["seccomp"] == "unconfined"
    with pytest.raises(ConfigError, match="invalid --security-opt"):
        spec._security_opts(["bogus=1"])


# -- users ---------------------------------------------------------------------------------------


def write(rootfs: str, path: str, text: str) -> None:
    with open(os.path.join(rootfs, path.lstrip("/")), "w") as f:
        f.write(text)


def test_user_resolution(rootfs):
    write(rootfs, "/etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/sh\n"
                                 "app:x:1000:1000::/home/app:/bin/sh\n")
    write(rootfs, "/etc/group", "root:x:0:\ntty:x:5:app\nnogroup:x:65534:\napp:x:1000:\nvideo:x:44:app,nobody\n")
    assert users.resolve(rootfs, "") == users.ExecUser(0, 0, (0,), "/root")
    assert users.resolve(rootfs, "nobody") == users.ExecUser(65534, 65534, (65534, 44), "/home")
    assert users.resolve(rootfs, "1000").additional_gids == (1000, 5, 44)
    # an explicit group: no supplementary groups from membership
    assert users.resolve(rootfs, "app:video") == users.ExecUser(1000, 44, (44,), "/home/app")
    assert users.resolve(rootfs, "app:123").gid == 123
    assert users.resolve(rootfs, "4242") == users.ExecUser(4242, 0, (0,), "/")
    assert users.resolve(rootfs, "app", ["tty", "777"]).additional_gids == (1000, 5, 44, 777)
    with pytest.raises(ConfigError, match="unable to find user ghost: no matching entries in passwd file"):
        users.resolve(rootfs, "ghost")
    with pytest.raises(ConfigError, match="unable to find group ghosts: no matching entries in group file"):
        users.resolve(rootfs, "app:ghosts")
    with pytest.raises(ConfigError, match="Unable to find group nope"):
        users.resolve(rootfs, "app", ["nope"])


def test_user_files_are_read_inside_the_rootfs(rootfs, tmp_path):
    evil = tmp_path / "host-passwd"
    evil.write_text("evil:x:4321:4321::/:/bin/sh\n")
    os.unlink(os.path.join(rootfs, "etc/passwd"))
    os.symlink(str(evil), os.path.join(rootfs, "etc/passwd"))  # resolves to ROOTFS/tmp/.../host-passwd
    with pytest.raises(ConfigError, match="unable to find user evil"):
        users.resolve(rootfs, "evil")
    os.unlink(os.path.join(rootfs, "etc/passwd"))
    os.mkfifo(os.path.join(rootfs, "etc/passwd"))  # must not block the engine
    assert users.resolve(rootfs, "7").uid == 7


# -- capabilities and seccomp -------------------------------------------------------------------


def caps_of(host_config: dict) -> list[str]:
    return spec.capabilities(host_config)


def mask(names: list[str]) -> int:
    from budu.kernel.caps import NUMBERS

    return sum(1 << NUMBERS[n] for n in names)


def test_capabilities():
    assert mask(caps_of({})) == DOCKER_DEFAULT_CAPS
    assert caps_of({"CapDrop": ["ALL"]}) == []
    assert caps_of({"CapDrop": ["all"], "CapAdd": ["net_admin"]}) == ["CAP_NET_ADMIN"]
    c = caps_of({"CapAdd": ["SYS_ADMIN", "CAP_SYS_PTRACE"], "CapDrop": ["chown", "CAP_KILL"]})
    assert "CAP_SYS_ADMIN" in c and "CAP_SYS_PTRACE" in c and "CAP_CHOWN" not in c and "CAP_KILL" not in c
    assert mask(caps_of({"Privileged": True})) == host_capbnd()
    assert mask(caps_of({"CapAdd": ["ALL"], "CapDrop": ["MKNOD"]})) == host_capbnd() & ~(1 << 27)
    with pytest.raises(ConfigError, match='unknown capability: "CAP_FOO"'):
        caps_of({"CapAdd": ["foo"]})


def test_capabilities_in_spec_skip_inheritable_and_ambient(rootfs, volumes):
    c = make(rootfs, volumes)["process"]["capabilities"]
    assert set(c) == {"bounding", "effective", "permitted"}
    assert c["bounding"] == c["effective"] == c["permitted"] == list(spec.DEFAULT_CAPS)


def test_default_seccomp_profile(rootfs, volumes):
    s = make(rootfs, volumes)["linux"]["seccomp"]
    assert s["defaultAction"] == "SCMP_ACT_ERRNO" and s["defaultErrnoRet"] == 1
    goarch, native = seccomp_profile.host_arch()
    if goarch == "amd64":
        assert s["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        assert allowed(s, "arch_prctl")
    assert allowed(s, "read") and allowed(s, "chown")
    for call in ("mount", "umount2", "unshare", "setns", "reboot", "kcmp"):
        assert not allowed(s, call), call
    assert not any("comment" in r or "includes" in r for r in s["syscalls"])
    # clone: only with namespace flags masked out, clone3 answers ENOSYS (so libcs fall back)
    assert any(r["names"] == ["clone"] and r.get("args") for r in s["syscalls"])
    assert any(r["names"] == ["clone3"] and r.get("errnoRet") == 38 for r in s["syscalls"])


def test_cap_add_sys_admin_opens_mount_syscalls(rootfs, volumes):
    s = make(rootfs, volumes, host_config={"CapAdd": ["SYS_ADMIN"]})["linux"]["seccomp"]
    for call in ("mount", "umount2", "unshare", "setns", "clone", "clone3"):
        assert allowed(s, call), call
    # the excludes.caps entries are gone: no masked clone rule, no ENOSYS clone3
    assert not any(r["names"] == ["clone"] and r.get("args") for r in s["syscalls"])
    assert not any(r["names"] == ["clone3"] and r["action"] == "SCMP_ACT_ERRNO" for r in s["syscalls"])
    s = make(rootfs, volumes, host_config={"CapAdd": ["SYS_PTRACE", "SYS_TIME"]})["linux"]["seccomp"]
    assert allowed(s, "kcmp") and allowed(s, "settimeofday") and not allowed(s, "mount")


def test_seccomp_unconfined_privileged_and_custom(rootfs, volumes):
    assert "seccomp" not in make(rootfs, volumes, host_config={"SecurityOpt": ["seccomp=unconfined"]})["linux"]
    assert "seccomp" not in make(rootfs, volumes, host_config={"Privileged": True})["linux"]
    custom = {"defaultAction": "SCMP_ACT_ALLOW",
              "archMap": [{"architecture": seccomp_profile.host_arch()[1], "subArchitectures": []}],
              "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                           {"name": "rmdir", "action": "SCMP_ACT_ERRNO", "includes": {"minKernel": "99.0"}},
                           {"names": ["chdir"], "action": "SCMP_ACT_ERRNO", "excludes": {"minKernel": "3.0"}},
                           {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "includes": {"arches": ["nope"]}}]}
    s = make(rootfs, volumes, host_config={"SecurityOpt": ["seccomp=" + json.dumps(custom)]})["linux"]["seccomp"]
    assert s == {"defaultAction": "SCMP_ACT_ALLOW", "architectures": [seccomp_profile.host_arch()[1]],
                 "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
    with pytest.raises(ConfigError, match="Decoding seccomp profile failed"):
        make(rootfs, volumes, host_config={"SecurityOpt": ["seccomp={not json"]})
    assert seccomp_profile.kernel_version("6.1.0-18-amd64") == (6, 1)
    assert seccomp_profile.kernel_version("4.19.282+") == (4, 19)


# -- mounts --------------------------------------------------------------------------------------


def dests(s: dict) -> list[str]:
    return [m["destination"] for m in s["mounts"]]


def by_dest(s: dict, d: str) -> dict:
    return next(m for m in s["mounts"] if m["destination"] == d)


def test_default_mounts_in_dockers_order(rootfs, volumes):
    s = make(rootfs, volumes, files={"/etc/hosts": "/x/hosts", "/etc/resolv.conf": "/x/resolv"})
    assert dests(s) == ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm",
                        "/etc/hosts", "/etc/resolv.conf"]
    assert by_dest(s, "/dev/shm")["options"] == ["nosuid", "noexec", "nodev", "mode=1777", f"size={64 << 20}"]
    assert "ro" in by_dest(s, "/sys")["options"] and "ro" in by_dest(s, "/sys/fs/cgroup")["options"]
    assert by_dest(s, "/etc/hosts") == {"destination": "/etc/hosts", "type": "bind", "source": "/x/hosts",
                                       "options": ["rbind", "rprivate"]}
    assert s["linux"]["maskedPaths"] and "/proc/kcore" in s["linux"]["maskedPaths"]
    assert "/proc/sys" in s["linux"]["readonlyPaths"]
    s = make(rootfs, volumes, host_config={"ShmSize": 1 << 20, "IpcMode": "private"})
    assert f"size={1 << 20}" in by_dest(s, "/dev/shm")["options"]
    assert "/dev/shm" not in dests(make(rootfs, volumes, host_config={"IpcMode": "none"}))


def test_privileged_and_read_only_mounts(rootfs, volumes):
    s = make(rootfs, volumes, host_config={"Privileged": True})
    assert "ro" not in by_dest(s, "/sys")["options"] and "ro" not in by_dest(s, "/sys/fs/cgroup")["options"]
    assert "maskedPaths" not in s["linux"] and "readonlyPaths" not in s["linux"]
    s = make(rootfs, volumes, host_config={"SecurityOpt": ["systempaths=unconfined"]})
    assert "maskedPaths" not in s["linux"]
    s = make(rootfs, volumes, host_config={"ReadonlyRootfs": True, "Tmpfs": {"/run": ""}})
    assert s["root"]["readonly"] is True
    assert "ro" not in by_dest(s, "/dev/shm")["options"] and "ro" not in by_dest(s, "/run")["options"]


def test_user_mounts_sorted_by_depth_and_overriding_defaults(rootfs, volumes, tmp_path):
    mounts = [
        {"Type": "bind", "Source": str(tmp_path), "Destination": "/a/b/c", "RW": False, "Propagation": "rprivate"},
        {"Type": "bind", "Source": str(tmp_path), "Destination": "/a", "RW": True, "Propagation": "rprivate",
         "_nonrecursive": True},
        {"Type": "tmpfs", "Source": "", "Destination": "/dev/shm", "RW": True, "_tmpfs": "size=1m"},
    ]
    s = make(rootfs, volumes, host_config={"Tmpfs": {"/a/b": "exec,size=2m", "/t": ""}}, mounts=mounts,
             files={"/etc/hostname": "/x/hostname"})
    user = dests(s)[dests(s).index("/sys/fs/cgroup") + 2:]
    assert user == ["/a", "/t", "/dev/shm", "/a/b", "/etc/hostname", "/a/b/c"]
    assert dests(s).count("/dev/shm") == 1 and by_dest(s, "/dev/shm")["type"] == "tmpfs"
    assert by_dest(s, "/a/b/c")["options"] == ["rbind", "ro", "rprivate"]
    assert by_dest(s, "/a")["options"] == ["bind", "rprivate"]
    assert by_dest(s, "/a/b")["options"] == ["nosuid", "nodev", "rprivate", "exec", "size=2m"]
    assert by_dest(s, "/t")["options"] == ["noexec", "nosuid", "nodev", "rprivate"]
    assert by_dest(s, "/dev/shm")["options"] == ["noexec", "nosuid", "nodev", "rprivate", "size=1m"]
    with pytest.raises(ConfigError, match="Invalid tmpfs option"):
        make(rootfs, volumes, host_config={"Tmpfs": {"/x": "bogus=1"}})


def test_a_users_etc_hosts_wins_over_the_engines(rootfs, volumes, tmp_path):
    m = {"Type": "bind", "Source": str(tmp_path), "Destination": "/etc/hosts", "RW": True, "Propagation": "rprivate"}
    s = make(rootfs, volumes, mounts=[m], files={"/etc/hosts": "/engine/hosts"})
    assert [x["source"] for x in s["mounts"] if x["destination"] == "/etc/hosts"] == [str(tmp_path)]


def test_init_binds_tini(rootfs, volumes):
    s = make(rootfs, volumes, {"Cmd": ["sleep", "1"]}, {"Init": True, "ReadonlyRootfs": True})
    assert s["process"]["args"] == ["/sbin/docker-init", "--", "sleep", "1"]
    assert by_dest(s, "/sbin/docker-init") == {"destination": "/sbin/docker-init", "type": "bind",
                                              "source": "/usr/bin/tini-static", "options": ["bind", "ro"]}


def test_shared_propagation_needs_a_shared_source(rootfs, volumes, tmp_path):
    m = {"Type": "bind", "Source": str(tmp_path), "Destination": "/x", "RW": True, "Propagation": "rshared"}
    info = spec._mount_of(str(tmp_path))
    optional = info[6:info.index("-")]
    if any(o.startswith("shared:") for o in optional):
        assert make(rootfs, volumes, mounts=[m])["linux"]["rootfsPropagation"] == "rshared"
    else:
        with pytest.raises(ConfigError, match="is not a shared mount"):
            make(rootfs, volumes, mounts=[m])


# -- namespaces, devices, resources, sysctls, rlimits -------------------------------------------


def ns_types(s: dict) -> list:
    return [(n["type"], n.get("path")) for n in s["linux"]["namespaces"]]


def test_namespaces(rootfs, volumes):
    cgroup = [("cgroup", None)] if resources.cgroup_v2() else []
    s = make(rootfs, volumes)
    assert ns_types(s) == [("mount", None), ("network", None), ("uts", None), ("pid", None), ("ipc", None), *cgroup]
    assert "hooks" not in s  # lo comes up by the runtime itself, as with runc and crun
    s = make(rootfs, volumes, netns="host", host_config={"PidMode": "host", "IpcMode": "host",
                                                         "CgroupnsMode": "private"})
    assert ns_types(s) == [("mount", None), ("uts", None), ("cgroup", None)]
    assert s["hostname"] == os.uname().nodename and "hooks" not in s
    s = make(rootfs, volumes, netns="/proc/1/ns/net", host_config={"UTSMode": "host"})
    assert ("network", "/proc/1/ns/net") in ns_types(s) and ("uts", None) not in ns_types(s)
    assert "hostname" not in s and "hooks" not in s
    with pytest.raises(ConfigError, match="Conflicting options: hostname and the UTS mode"):
        make(rootfs, volumes, {"Cmd": ["x"], "Hostname": "h"}, {"UTSMode": "host"})


def test_devices(rootfs, volumes):
    s = make(rootfs, volumes, host_config={"Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull",
                                                        "CgroupPermissions": "rw"}]})
    assert s["linux"]["devices"] == [{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666,
                                      "uid": 0, "gid": 0}]
    assert s["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"},
                                                  {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}]
    with pytest.raises(ConfigError, match='error gathering device information while adding custom device '
                                          '"/dev/nope": no such file or directory'):
        make(rootfs, volumes, host_config={"Devices": [{"PathOnHost": "/dev/nope"}]})
    s = make(rootfs, volumes, host_config={"Privileged": True})
    paths = {d["path"] for d in s["linux"]["devices"]}
    assert {"/dev/null", "/dev/zero"} <= paths and "/dev/console" not in paths
    assert not any(p.startswith("/dev/pts/") for p in paths)
    assert s["linux"]["resources"]["devices"][-1] == {"allow": True, "access": "rwm"}


def test_resources(rootfs, volumes):
    r = make(rootfs, volumes, host_config={"Memory": 64 << 20, "MemoryReservation": 32 << 20, "NanoCpus": 1_500_000_000,
                                           "CpuShares": 512, "CpusetCpus": "0", "PidsLimit": 100,
                                           "OomKillDisable": True, "MemorySwappiness": 10})["linux"]["resources"]
    assert r["memory"]["limit"] == 64 << 20 and r["memory"]["reservation"] == 32 << 20
    assert r["memory"]["disableOOMKiller"] is True and r["memory"]["swappiness"] == 10
    if resources._swap_accounting():
        assert r["memory"]["swap"] == 128 << 20  # docker's default: swap as large as memory
    assert r["cpu"] == {"period": 100000, "quota": 150000, "shares": 512, "cpus": "0"}
    assert r["pids"] == {"limit": 100}
    for unlimited in (0, -1):
        r = make(rootfs, volumes, host_config={"PidsLimit": unlimited})["linux"]["resources"]
        assert "pids" not in r  # unlimited is said by saying nothing: crun writes -1 as is
    assert "memory" not in make(rootfs, volumes)["linux"]["resources"]
    errors = [({"Memory": 1 << 20}, "Minimum memory limit allowed is 6MB"),
              ({"MemorySwap": 1 << 30}, "You should always set the Memory limit"),
              ({"Memory": 1 << 30, "MemorySwap": 1 << 29}, "Minimum memoryswap limit should be larger"),
              ({"NanoCpus": 10**9, "CpuQuota": 5000}, "Nano CPUs and CPU Quota cannot both be set"),
              ({"NanoCpus": 10**9 * 100000}, "Range of CPUs is from 0.01")]
    for hc, msg in errors:
        with pytest.raises(ConfigError, match=msg):
            make(rootfs, volumes, host_config=hc)


def test_sysctls(rootfs, volumes):
    s = make(rootfs, volumes, host_config={"Sysctls": {"net.core.somaxconn": "1024", "kernel.shmmax": "1000000"}})
    assert s["linux"]["sysctl"] == {"net.ipv4.ping_group_range": "0 2147483647",
                                    "net.ipv4.ip_unprivileged_port_start": "0",
                                    "net.core.somaxconn": "1024", "kernel.shmmax": "1000000"}
    assert "sysctl" not in make(rootfs, volumes, netns="host")["linux"]
    with pytest.raises(ConfigError, match='sysctl "net.core.somaxconn" is not allowed in the host network namespace'):
        make(rootfs, volumes, netns="host", host_config={"Sysctls": {"net.core.somaxconn": "1"}})
    with pytest.raises(ConfigError, match='sysctl "kernel.sem" is not allowed in the host IPC'):
        make(rootfs, volumes, host_config={"IpcMode": "host", "Sysctls": {"kernel.sem": "1"}})
    with pytest.raises(ConfigError, match='sysctl "vm.swappiness" is not allowed'):
        make(rootfs, volumes, host_config={"Sysctls": {"vm.swappiness": "1"}})


def test_rlimits():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    inf = 2**64 - 1
    assert resources.rlimits([]) == [{"type": "RLIMIT_NOFILE", "soft": soft if soft >= 0 else inf,
                                      "hard": hard if hard >= 0 else inf}]
    r = resources.rlimits([{"Name": "nofile", "Soft": 512, "Hard": 1024}, {"Name": "nproc", "Soft": 10, "Hard": 20}])
    assert r == [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024}, {"type": "RLIMIT_NPROC", "soft": 10, "hard": 20}]
    if not resources._may_raise_limits() and hard >= 0:
        (big,) = resources.rlimits([{"Name": "nofile", "Soft": hard * 10, "Hard": hard * 10}])
        assert big == {"type": "RLIMIT_NOFILE", "soft": hard, "hard": hard}
    with pytest.raises(ConfigError, match="ulimit soft limit must be less than or equal to hard limit: 5 > 4"):
        resources.rlimits([{"Name": "nofile", "Soft": 5, "Hard": 4}])
    with pytest.raises(ConfigError, match="invalid ulimit type: bogus"):
        resources.rlimits([{"Name": "bogus", "Soft": 1, "Hard": 1}])


# -- real containers: the security settings, with budu-runtime and runc --------------------------


def test_default_container_security(runtime):
    out = runtime.sh("grep -E '^(CapEff|CapBnd|CapPrm|CapInh|CapAmb|Seccomp|NoNewPrivs):' /proc/self/status; "
                     "echo masked=$(cat /proc/timer_list /proc/keys /proc/kcore 2>/dev/null | wc -c); "
                     "echo x 2>/dev/null > /proc/sys/kernel/hostname; "
                     "echo sysw=$?; ls /dev; id; hostname")
    assert status_field(out, "CapEff") == DOCKER_DEFAULT_CAPS
    assert status_field(out, "CapBnd") == DOCKER_DEFAULT_CAPS
    assert status_field(out, "CapPrm") == DOCKER_DEFAULT_CAPS
    assert status_field(out, "CapInh") == 0 and status_field(out, "CapAmb") == 0
    assert "Seccomp:\t2" in out and "NoNewPrivs:\t0" in out
    assert "masked=0" in out and "sysw=1" in out
    assert "uid=0(root) gid=0(root) groups=0(root)" in out
    for dev in ("null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue"):
        assert dev in out.split()


def test_cap_drop_all_and_no_new_privileges(runtime):
    out = runtime.sh("grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status",
                     {"CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges"]})
    assert status_field(out, "CapEff") == 0 and status_field(out, "CapBnd") == 0
    assert "NoNewPrivs:\t1" in out


def test_privileged_gets_every_capability_and_no_seccomp(runtime):
    out = runtime.sh("grep -E '^(CapEff|CapBnd|Seccomp):' /proc/self/status; grep -E ' /sys ' /proc/mounts; "
                     "echo masked=$(cat /proc/timer_list | wc -c)", {"Privileged": True})
    assert status_field(out, "CapBnd") == host_capbnd() and status_field(out, "CapEff") == host_capbnd()
    assert "Seccomp:\t0" in out
    assert " rw," in next(line for line in out.splitlines() if " /sys " in line)
    assert "masked=0" not in out


def test_seccomp_unconfined(runtime):
    out = runtime.sh("grep Seccomp: /proc/self/status", {"SecurityOpt": ["seccomp=unconfined"]})
    assert "Seccomp:\t0" in out


def test_cap_add_sys_admin_lets_mount_through(runtime):
    script = "mkdir -p /mnt/t; mount -t tmpfs none /mnt/t && echo mounted; unshare -m true && echo unshared"
    assert runtime.sh(script, {"CapAdd": ["SYS_ADMIN"]}).split() == ["mounted", "unshared"]
    r = runtime.run({"Cmd": ["sh", "-c", script]})
    assert "mounted" not in r.out and "unshared" not in r.out


# -- real containers: what docker users see ----------------------------------------------------


def test_read_only_rootfs_keeps_shm_and_tmpfs_writable(budu):
    out = budu.sh("touch /probe 2>/dev/null; echo root=$?; touch /dev/shm/x; echo shm=$?; touch /run/x; echo run=$?; "
                  "grep -E ' /run ' /proc/mounts", {"ReadonlyRootfs": True, "Tmpfs": {"/run": "size=1m"}})
    assert "root=1" in out and "shm=0" in out and "run=0" in out
    assert "size=1024k" in out and "noexec" in out


def test_user_nobody_and_group_add(budu):
    out = budu.sh("id; echo $HOME", config={"User": "nobody"}, host_config={"GroupAdd": ["tty"]})
    assert "uid=65534(nobody) gid=65534(nogroup) groups=5(tty),65534(nogroup)" in out
    assert out.split()[-1] == "/home"
    with pytest.raises(ConfigError, match="unable to find user ghost"):
        budu.run({"Cmd": ["id"], "User": "ghost"})


def test_ulimit_nofile(budu):
    assert budu.sh("ulimit -n; ulimit -Hn", {"Ulimits": [{"Name": "nofile", "Soft": 512, "Hard": 1024}]}).split() == [
        "512", "1024"]
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert budu.sh("ulimit -n").split() == [str(soft) if soft >= 0 else "unlimited"]


def test_init_is_pid_1(budu):
    out = budu.sh("echo $$; tr '\\0' ' ' < /proc/1/cmdline", {"Init": True})
    pid, cmdline = out.split("\n", 1)
    assert int(pid) > 1
    assert cmdline.startswith("/sbin/docker-init -- sh -c")


def test_memory_limit_in_the_cgroup(budu):
    out = budu.sh("cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
                  {"Memory": 64 << 20, "PidsLimit": 50})
    assert out.strip() == str(64 << 20)


def test_network_none_has_loopback_up_and_docker_sysctls(runtime):
    out = runtime.sh("ip -o addr show lo; ip -o link show lo; cat /proc/sys/net/ipv4/ip_unprivileged_port_start")
    assert "inet 127.0.0.1/8" in out and ",UP" in out
    assert out.split()[-1] == "0"


def test_environment_hostname_workdir_and_files(budu, tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    out = budu.sh("hostname; pwd; echo $FOO $HOSTNAME; cat /etc/hosts; echo '10.0.0.1 added' >> /etc/hosts",
                  config={"Hostname": "web1", "WorkingDir": "/app/sub", "Env": ["FOO=bar"]},
                  image_config={"Env": ["FOO=image", "BAR=1"]}, files={"/etc/hosts": str(hosts)})
    assert out.split("\n")[:4] == ["web1", "/app/sub", "bar web1", "127.0.0.1 localhost"]
    assert "10.0.0.1 added" in hosts.read_text()  # docker's /etc/hosts is writable


def test_custom_device(budu):
    out = budu.sh("stat -c '%t:%T %F' /dev/mynull; echo x > /dev/mynull && echo wrote",
                  {"Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull",
                                "CgroupPermissions": "rwm"}]})
    assert out.split("\n")[:2] == ["1:3 character special file", "wrote"]


def test_volumes_and_binds_in_containers(runtime, tmp_path):
    host = tmp_path / "hostdir"
    host.mkdir()
    (host / "hello").write_text("from host\n")
    name = f"vol-{uuid.uuid4().hex[:8]}"
    out = runtime.sh("echo kept > /data/file; cat /ro/hello; echo nope 2>/dev/null > /ro/x; echo ro=$?",
                     {"Binds": [f"{name}:/data", f"{host}:/ro:ro"]})
    assert "from host" in out and "ro=1" in out
    out = runtime.sh("cat /again/file", {"Binds": [f"{name}:/again"]})
    assert out.strip() == "kept"
    assert not os.path.exists(host / "x")
