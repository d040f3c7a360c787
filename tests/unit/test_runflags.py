"""Tests for budu.cli.runflags: `budu run` / `budu create` argv -> docker's create body.

Each test is a real argv and the fields docker's CLI sends for it (values read off docker 28's own
requests), or the one-line error docker gives.  At the end, when a `docker` client is installed, the
same argvs go through it against a fake Engine API on a unix socket, and its bodies and errors are
compared with ours field by field.
"""

from __future__ import annotations

import http.server
import json
import shutil
import socketserver
import subprocess
import threading

import pytest

from budu.cli.runflags import RunRequest, detach_key_bytes, parse_run_args, read_env_file, run_usage
from budu.engine.validate import check_body
from budu.errors import ConfigError

ENV = {"HOME": "/root", "PATH": "/usr/bin:/bin", "FROM_HOST": "hostvalue"}


def parse(*argv: str, command: str = "run") -> RunRequest:
    return parse_run_args(list(argv), command, environ=ENV)


def config(*argv: str, command: str = "run") -> dict:
    return parse(*argv, command=command).config


def host(*argv: str, command: str = "run") -> dict:
    return parse(*argv, command=command).host_config


def error(*argv: str, command: str = "run") -> str:
    with pytest.raises(ConfigError) as e:
        parse(*argv, command=command)
    return str(e.value)


# -- the argv grammar (pflag) -------------------------------------------------------------------------------

def test_plain_image_gives_dockers_defaults():
    r = parse("busybox")
    assert r.image == "busybox" and r.name is None and r.pull == "missing" and r.sig_proxy and not r.detach
    c, h = r.config, r.host_config
    assert c["Image"] == "busybox" and c["Cmd"] is None and c["Entrypoint"] is None and c["Env"] is None
    assert c["Labels"] == {} and c["Volumes"] == {} and "ExposedPorts" not in c and "Healthcheck" not in c
    assert (c["AttachStdin"], c["AttachStdout"], c["AttachStderr"], c["OpenStdin"], c["StdinOnce"], c["Tty"]) == \
        (False, True, True, False, False, False)
    assert h["NetworkMode"] == "default" and h["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert h["LogConfig"] == {"Type": "", "Config": {}} and h["PortBindings"] == {} and h["Binds"] is None
    assert h["Dns"] == [] and h["Devices"] == [] and h["Ulimits"] == [] and h["MemorySwappiness"] == -1
    assert "Init" not in h and "Tmpfs" not in h and "Mounts" not in h and "Runtime" not in h
    assert r.networking_config == {"EndpointsConfig": {}}


def test_flags_stop_at_the_image_and_the_rest_is_the_command():
    r = parse("--rm", "busybox", "-it", "ls", "-l", "--rm")
    assert r.config["Cmd"] == ["-it", "ls", "-l", "--rm"] and not r.config["Tty"] and r.rm


def test_double_dash_ends_the_flags():
    assert config("--name=web", "--", "busybox", "ls")["Cmd"] == ["ls"]
    assert parse("--", "busybox").image == "busybox"


def test_bundled_short_booleans():
    c = config("-dit", "busybox")
    assert c["Tty"] and c["OpenStdin"]
    c = config("-it", "busybox")
    assert c["Tty"] and c["OpenStdin"] and c["AttachStdin"] and c["StdinOnce"]


def test_short_flag_takes_the_rest_of_a_bundle_or_the_next_argument():
    assert config("-ite", "A=1", "busybox")["Env"] == ["A=1"]
    assert config("-eA=1", "busybox")["Env"] == ["A=1"]
    assert config("-e=A=1", "busybox")["Env"] == ["A=1"]
    assert host("-Pe", "A=1", "busybox")["PublishAllPorts"]


def test_short_boolean_with_equals_value_applies_to_the_last_letter():
    c = config("-it=false", "busybox")  # pflag: -i, then -t=false
    assert c["OpenStdin"] and not c["Tty"]


def test_long_flags_with_equals_or_separate_value():
    assert parse("--name=web", "busybox").name == "web"
    assert parse("--name", "web", "busybox").name == "web"


def test_boolean_values_as_go_reads_them():
    assert not host("--rm=false", "busybox")["AutoRemove"]
    assert host("--rm=T", "busybox")["AutoRemove"]
    assert config("--interactive=1", "busybox")["OpenStdin"]
    assert not config("--tty=False", "busybox")["Tty"]
    assert not parse("--sig-proxy=false", "busybox").sig_proxy


def test_repeated_flags_accumulate_and_scalar_flags_keep_the_last():
    c = config("-e", "A=1", "--env", "B=2", "-l", "a=1", "--label", "b=2", "busybox")
    assert c["Env"] == ["A=1", "B=2"] and c["Labels"] == {"a": "1", "b": "2"}
    assert parse("--name", "one", "--name", "two", "busybox").name == "two"


def test_hidden_aliases_net_and_net_alias_and_dns_opt():
    r = parse("--net=mynet", "--net-alias", "web", "--dns-opt", "ndots:2", "busybox")
    assert r.host_config["NetworkMode"] == "mynet" and r.host_config["DnsOptions"] == ["ndots:2"]
    assert r.networking_config["EndpointsConfig"]["mynet"]["Aliases"] == ["web"]


def test_int_flags_read_as_go_does():
    assert host("-c", "512", "busybox")["CpuShares"] == 512
    assert host("--cpu-shares=0x10", "busybox")["CpuShares"] == 16
    assert host("--pids-limit", "-1", "busybox")["PidsLimit"] == -1


def test_help_prints_the_usage_and_stops_parsing(capsys):
    assert parse("--help") is None
    assert capsys.readouterr().out == run_usage("run")
    assert parse("--name", "x", "--help", "--bogus", command="create") is None
    assert capsys.readouterr().out == run_usage("create")


def test_create_has_no_run_only_flags():
    assert error("-d", "busybox", command="create") == "unknown shorthand flag: 'd' in -d"
    assert error("--detach-keys", "ctrl-x", "busybox", command="create") == "unknown flag: --detach-keys"
    assert error("--sig-proxy=false", "busybox", command="create") == "unknown flag: --sig-proxy"
    c = config("-i", "busybox", command="create")
    assert c["AttachStdin"] and c["AttachStdout"] and c["StdinOnce"]


def test_docker_flags_budu_lacks_are_named():
    assert error("--gpus", "all", "busybox") == "--gpus is not supported by budu"


# -- attach, detach, tty ------------------------------------------------------------------------------------

def test_detach_attaches_nothing():
    c = config("-d", "busybox")
    assert (c["AttachStdin"], c["AttachStdout"], c["AttachStderr"], c["StdinOnce"]) == (False,) * 4
    c = config("-dit", "busybox")
    assert c["OpenStdin"] and c["Tty"] and not c["AttachStdin"] and not c["StdinOnce"]


def test_attach_picks_streams_case_insensitively():
    c = config("-a", "stdin", "-a", "STDOUT", "busybox")
    assert (c["AttachStdin"], c["AttachStdout"], c["AttachStderr"], c["OpenStdin"]) == (True, True, False, False)
    c = config("-a", "stderr", "-i", "busybox")
    assert (c["AttachStdin"], c["AttachStdout"], c["AttachStderr"], c["StdinOnce"]) == (True, False, True, True)


def test_run_fields_outside_the_body():
    r = parse("-d", "--rm", "--detach-keys", "ctrl-x,x", "--sig-proxy=false", "--pull", "never",
              "--platform", "linux/arm64", "--runtime", "crun", "--cidfile", "/tmp/cid", "-q", "busybox")
    assert (r.detach, r.rm, r.detach_keys, r.sig_proxy, r.pull) == (True, True, "ctrl-x,x", False, "never")
    assert (r.platform, r.runtime, r.cidfile, r.quiet) == ("linux/arm64", "crun", "/tmp/cid", True)
    assert r.host_config["Runtime"] == "crun" and r.host_config["ContainerIDFile"] == "/tmp/cid"
    assert r.host_config["AutoRemove"]


def test_detach_keys_to_bytes():
    assert detach_key_bytes("ctrl-p,ctrl-q") == b"\x10\x11"
    assert detach_key_bytes("ctrl-@,a,DEL,ctrl-_") == b"\x00a\x7f\x1f"


def test_body_is_the_api_shape():
    body = parse("--name", "web", "busybox", "true").body()
    assert body["Image"] == "busybox" and body["Cmd"] == ["true"]
    assert body["HostConfig"]["NetworkMode"] == "default" and body["NetworkingConfig"] == {"EndpointsConfig": {}}


def test_name_may_have_dockers_leading_slash():
    assert parse("--name", "/web", "busybox").name == "web"


# -- Config fields ------------------------------------------------------------------------------------------

def test_user_workdir_hostname_domainname():
    c = config("-u", "1000:1000", "-w", "/app", "-h", "myhost", "--domainname", "example.com", "busybox")
    assert (c["User"], c["WorkingDir"], c["Hostname"], c["Domainname"]) == ("1000:1000", "/app", "myhost",
                                                                          "example.com")


def test_entrypoint_is_one_element_and_empty_clears():
    assert config("--entrypoint", "sh -c", "busybox")["Entrypoint"] == ["sh -c"]
    assert config("--entrypoint=", "busybox")["Entrypoint"] == [""]
    assert config("--entrypoint", "", "busybox", "ls")["Entrypoint"] == [""]


def test_stop_signal_and_timeout_only_when_given():
    c = config("--stop-signal", "SIGUSR1", "--stop-timeout", "5", "busybox")
    assert c["StopSignal"] == "SIGUSR1" and c["StopTimeout"] == 5
    assert config("--stop-timeout", "-1", "busybox")["StopTimeout"] == -1
    c = config("--stop-signal", "", "busybox")
    assert "StopSignal" not in c and "StopTimeout" not in c


def test_env_bare_name_takes_budus_value_or_stays_bare():
    # docker sends an unset NAME bare; its daemon then unsets NAME from the image's env
    assert config("-e", "FROM_HOST", "-e", "NOT_SET", "busybox")["Env"] == ["FROM_HOST=hostvalue", "NOT_SET"]


def test_env_name_given_twice_keeps_its_place_and_last_value():
    assert config("-e", "A=1", "-e", "B=1", "-e", "A=2", "busybox")["Env"] == ["A=2", "B=1"]


def test_env_file(tmp_path):
    f = tmp_path / "env"
    f.write_text("# comment\n\n  A=1\nB= spaced value \nFROM_HOST\nNOT_SET\n\tC=x=y\nQ=\"kept\"\r\nD=\n")
    assert config("--env-file", str(f), "-e", "A=2", "busybox")["Env"] == \
        ["A=2", "B= spaced value ", "FROM_HOST=hostvalue", "C=x=y", 'Q="kept"', "D="]


def test_read_env_file_for_exec(tmp_path):
    f = tmp_path / "env"
    f.write_text("A=1\nFROM_HOST\nNOT_SET\n")
    assert read_env_file(str(f), ENV) == ["A=1", "FROM_HOST=hostvalue"]


def test_env_file_utf8_bom_is_dropped(tmp_path):
    f = tmp_path / "env"
    f.write_bytes(b"\xef\xbb\xbfBOM=1\n")
    assert config("--env-file", str(f), "busybox")["Env"] == ["BOM=1"]


def test_env_file_errors(tmp_path):
    missing = tmp_path / "nope"
    assert error("--env-file", str(missing), "busybox") == f"open {missing}: no such file or directory"
    f = tmp_path / "env"
    f.write_text("x y=1\n")
    assert error("--env-file", str(f), "busybox") == f"invalid env file ({f}): variable 'x y' contains whitespaces"
    f.write_text("=1\n")
    assert error("--env-file", str(f), "busybox") == f"invalid env file ({f}): no variable name on line '=1'"
    f.write_bytes(b"\xff=1\n")
    assert error("--env-file", str(f), "busybox") == \
        f"invalid env file ({f}): invalid utf8 bytes at line 1: [255 61 49]"


def test_labels_and_label_file(tmp_path):
    f = tmp_path / "labels"
    f.write_text("a=b\n#c=d\nbare.key.left.out\ne=\"q\"\n")
    assert config("--label-file", str(f), "-l", "a=z", "-l", "flag.only", "busybox")["Labels"] == \
        {"a": "z", "e": '"q"', "flag.only": ""}
    missing = tmp_path / "nope"
    assert error("--label-file", str(missing), "busybox") == f"open {missing}: no such file or directory"


def test_healthcheck_durations_in_nanoseconds():
    c = config("--health-cmd", "curl -f localhost", "--health-interval", "30s", "--health-retries", "3",
               "--health-timeout", "1m30s", "--health-start-period", "500ms", "--health-start-interval", "2s",
               "busybox")
    assert c["Healthcheck"] == {"Test": ["CMD-SHELL", "curl -f localhost"], "Interval": 30_000_000_000,
                                "Timeout": 90_000_000_000, "StartPeriod": 500_000_000, "StartInterval": 2_000_000_000,
                                "Retries": 3}


def test_healthcheck_go_duration_forms():
    assert config("--health-interval", "1.5h", "busybox")["Healthcheck"] == {"Interval": 5_400_000_000_000}
    assert config("--health-interval", "1h2m3.5s4ms5us6ns", "busybox")["Healthcheck"] == {"Interval": 3723504005006}
    assert config("--health-interval", "1\u00b5s", "busybox")["Healthcheck"] == {"Interval": 1000}
    assert "Healthcheck" not in config("--health-interval", "0", "--health-cmd", "", "busybox")


def test_no_healthcheck():
    assert config("--no-healthcheck", "busybox")["Healthcheck"] == {"Test": ["NONE"]}


# -- resources ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, size", [
    ("64m", 64 << 20), ("512mb", 512 << 20), ("1g", 1 << 30), ("1GB", 1 << 30), ("1.5g", 3 << 29),
    ("1KiB", 1 << 10), ("7000000", 7000000), ("7000000b", 7000000), ("10 m", 10 << 20), ("1e7", 10_000_000),
    ("6.5m", 6815744), ("1t", 1 << 40), ("1p", 1 << 50),
])
def test_sizes(text, size):
    assert host("--shm-size", text, "busybox")["ShmSize"] == size


def test_memory_swap_and_reservation():
    h = host("-m", "1g", "--memory-swap", "2g", "--memory-reservation", "512m", "busybox")
    assert (h["Memory"], h["MemorySwap"], h["MemoryReservation"]) == (1 << 30, 2 << 30, 512 << 20)
    assert host("-m", "10m", "--memory-swap", "-1", "busybox")["MemorySwap"] == -1
    assert host("--memory-swap", "-1", "busybox")["MemorySwap"] == -1


def test_cpus_to_nano_cpus():
    assert host("--cpus", "1.5", "busybox")["NanoCpus"] == 1_500_000_000
    assert host("--cpus", "3/2", "busybox")["NanoCpus"] == 1_500_000_000
    assert host("--cpus=0.001", "busybox")["NanoCpus"] == 1_000_000


def test_cpu_and_cpuset_and_pids():
    h = host("--cpu-period", "100000", "--cpu-quota", "50000", "-c", "512", "--cpuset-cpus", "0-1",
             "--cpuset-mems", "0", "--pids-limit", "100", "busybox")
    assert (h["CpuPeriod"], h["CpuQuota"], h["CpuShares"], h["CpusetCpus"], h["CpusetMems"], h["PidsLimit"]) == \
        (100000, 50000, 512, "0-1", "0", 100)


def test_shm_size_oom_and_swappiness():
    h = host("--shm-size", "64m", "--oom-kill-disable", "--oom-score-adj", "500", "--memory-swappiness", "10",
             "--cgroup-parent", "/mine", "busybox")
    assert (h["ShmSize"], h["OomKillDisable"], h["OomScoreAdj"], h["MemorySwappiness"], h["CgroupParent"]) == \
        (64 << 20, True, 500, 10, "/mine")


def test_ulimits_sorted_by_name_and_later_wins():
    assert host("--ulimit", "nproc=10", "--ulimit", "nofile=1024:2048", "--ulimit", "nproc=20", "busybox")["Ulimits"] \
        == [{"Name": "nofile", "Hard": 2048, "Soft": 1024}, {"Name": "nproc", "Hard": 20, "Soft": 20}]
    assert host("--ulimit", "nproc=5:-1", "--ulimit", "core=-1", "busybox")["Ulimits"] == \
        [{"Name": "core", "Hard": -1, "Soft": -1}, {"Name": "nproc", "Hard": -1, "Soft": 5}]


# -- security -----------------------------------------------------------------------------------------------

def test_capabilities_uppercased_prefixed_sorted_once():
    h = host("--cap-add", "net_admin", "--cap-add", "CAP_SYS_ADMIN", "--cap-add", "NET_ADMIN",
             "--cap-drop", "all", "--cap-drop", "cap_chown", "busybox")
    assert h["CapAdd"] == ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"] and h["CapDrop"] == ["ALL", "CAP_CHOWN"]


def test_privileged_read_only_init_group_add():
    h = host("--privileged", "--read-only", "--init", "--group-add", "audio", "--group-add", "10", "busybox")
    assert h["Privileged"] and h["ReadonlyRootfs"] and h["Init"] is True and h["GroupAdd"] == ["audio", "10"]
    assert host("--init=false", "busybox")["Init"] is False


def test_security_opts_kept_as_typed():
    opts = ["no-new-privileges", "no-new-privileges:true", "no-new-privileges=false", "seccomp=unconfined",
            "seccomp:builtin", "apparmor=unconfined", "label=disable", "label:type:foo"]
    assert host(*[a for o in opts for a in ("--security-opt", o)], "busybox")["SecurityOpt"] == opts


def test_seccomp_profile_file_is_sent_inline_and_compacted(tmp_path):
    f = tmp_path / "profile.json"
    f.write_text('{\n  "defaultAction": "SCMP_ACT_ERRNO",\n  "syscalls": [ {"names": ["a b", "\\u00e9"]} ]\n}\n')
    assert host("--security-opt", f"seccomp={f}", "busybox")["SecurityOpt"] == \
        ['seccomp={"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["a b","\\u00e9"]}]}']
    assert host("--security-opt", f"seccomp:{f}", "busybox")["SecurityOpt"][0].startswith("seccomp={")


def test_seccomp_profile_errors(tmp_path):
    missing = tmp_path / "nope.json"
    assert error("--security-opt", f"seccomp={missing}", "busybox") == \
        f"opening seccomp profile ({missing}) failed: open {missing}: no such file or directory"
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    assert error("--security-opt", f"seccomp={bad}", "busybox").startswith(
        f"compacting json for seccomp profile ({bad}) failed: ")


def test_systempaths_unconfined_empties_masked_and_readonly_paths():
    h = host("--security-opt", "systempaths=unconfined", "busybox")
    assert h["SecurityOpt"] == [] and h["MaskedPaths"] == [] and h["ReadonlyPaths"] == []


def test_namespaces():
    h = host("--ipc", "host", "--pid", "container:db", "--uts", "host", "--userns", "host", "--cgroupns", "private",
             "busybox")
    assert (h["IpcMode"], h["PidMode"], h["UTSMode"], h["UsernsMode"], h["CgroupnsMode"]) == \
        ("host", "container:db", "host", "host", "private")
    assert host("--ipc", "shareable", "busybox")["IpcMode"] == "shareable"


def test_sysctls_annotations_devices_cgroup_rules():
    h = host("--sysctl", "net.ipv4.ip_forward=1", "--sysctl", "kernel.msgmax=65536", "--annotation", "a=b",
             "--annotation", "c", "--device-cgroup-rule", "c 1:3 mr", "busybox")
    assert h["Sysctls"] == {"net.ipv4.ip_forward": "1", "kernel.msgmax": "65536"}
    assert h["Annotations"] == {"a": "b", "c": ""} and h["DeviceCgroupRules"] == ["c 1:3 mr"]


@pytest.mark.parametrize("spec, device", [
    ("/dev/fuse", ("/dev/fuse", "/dev/fuse", "rwm")),
    ("/dev/fuse:/dev/f", ("/dev/fuse", "/dev/f", "rwm")),
    ("/dev/fuse:rw", ("/dev/fuse", "/dev/fuse", "rw")),
    ("/dev/fuse:/dev/f:r", ("/dev/fuse", "/dev/f", "r")),
    ("/dev/fuse:/dev/f/", ("/dev/fuse", "/dev/f", "rwm")),
    ("/dev//fuse/", ("/dev/fuse", "/dev/fuse", "rwm")),
])
def test_devices(spec, device):
    assert host("--device", spec, "busybox")["Devices"] == \
        [dict(zip(("PathOnHost", "PathInContainer", "CgroupPermissions"), device))]


# -- logging, restart ---------------------------------------------------------------------------------------

def test_log_driver_and_options():
    assert host("--log-driver", "json-file", "--log-opt", "max-size=10m", "--log-opt", "max-file=3",
                "--log-opt", "x", "busybox")["LogConfig"] == \
        {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3", "x": ""}}


@pytest.mark.parametrize("text, policy", [
    ("no", ("no", 0)), ("always", ("always", 0)), ("unless-stopped", ("unless-stopped", 0)),
    ("on-failure", ("on-failure", 0)), ("on-failure:3", ("on-failure", 3)), ("on-failure:", ("on-failure", 0)),
    ("", ("", 0)),
])
def test_restart_policies(text, policy):
    assert host("--restart", text, "busybox")["RestartPolicy"] == dict(zip(("Name", "MaximumRetryCount"), policy))


def test_detach_with_rm_is_fine():
    r = parse("-d", "--rm", "busybox")
    assert r.detach and r.rm and r.host_config["AutoRemove"]


# -- volumes and mounts -------------------------------------------------------------------------------------

def test_volume_binds_kept_as_typed_and_anonymous_volumes():
    r = parse("-v", "/data", "-v", "/tmp:/in", "-v", "/tmp:/ro:ro,z", "-v", "myvol:/v:nocopy",
              "-v", "/tmp:/p:rw,Z,rshared", "-v", "/tmp:/in", "busybox")
    assert r.config["Volumes"] == {"/data": {}}
    assert r.host_config["Binds"] == ["/tmp:/in", "/tmp:/ro:ro,z", "myvol:/v:nocopy", "/tmp:/p:rw,Z,rshared"]


def test_volume_dot_relative_host_path_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    binds = host("-v", "./data:/data", "-v", ".:/here:ro", "-v", "../up:/up", "busybox")["Binds"]
    assert binds == [f"{tmp_path}/data:/data", f"{tmp_path}:/here:ro", f"{tmp_path.parent}/up:/up"]


def test_tmpfs():
    assert host("--tmpfs", "/run", "--tmpfs", "/tmp:rw,size=64m,mode=1777", "busybox")["Tmpfs"] == \
        {"/run": "", "/tmp": "rw,size=64m,mode=1777"}


def test_mount_bind(tmp_path):
    assert host("--mount", f"type=bind,source={tmp_path},target=/data,readonly", "busybox")["Mounts"] == \
        [{"Type": "bind", "Source": str(tmp_path), "Target": "/data", "ReadOnly": True}]
    assert host("--mount", f"type=bind,src={tmp_path},dst=/d,ro=false,bind-propagation=rshared", "busybox")["Mounts"] \
        == [{"Type": "bind", "Source": str(tmp_path), "Target": "/d", "BindOptions": {"Propagation": "rshared"}}]


def test_mount_bind_relative_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rel").mkdir()
    assert host("--mount", "src=./rel,dst=/x,type=bind", "busybox")["Mounts"][0]["Source"] == f"{tmp_path}/rel"


def test_mount_volume_options():
    assert host("--mount", "type=volume,src=v,dst=/data,volume-nocopy,volume-opt=a=b,volume-opt=c=d,"
                "volume-label=l=1,volume-driver=local,volume-subpath=sub", "busybox")["Mounts"] == \
        [{"Type": "volume", "Source": "v", "Target": "/data",
          "VolumeOptions": {"NoCopy": True, "Labels": {"l": "1"}, "Subpath": "sub",
                            "DriverConfig": {"Name": "local", "Options": {"a": "b", "c": "d"}}}}]
    assert host("--mount", "target=/data", "busybox")["Mounts"] == [{"Type": "volume", "Target": "/data"}]
    assert host("--mount", "type=volume,dst=/x,volume-nocopy=false", "busybox")["Mounts"] == \
        [{"Type": "volume", "Target": "/x", "VolumeOptions": {"DriverConfig": {}}}]


def test_mount_tmpfs_size_and_octal_mode():
    assert host("--mount", "type=tmpfs,dst=/t,tmpfs-size=64m,tmpfs-mode=1770", "busybox")["Mounts"] == \
        [{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 64 << 20, "Mode": 0o1770}}]


def test_mount_csv_quotes():
    assert host("--mount", 'type=tmpfs,"dst=/t"', "busybox")["Mounts"] == [{"Type": "tmpfs", "Target": "/t"}]


# -- ports and network --------------------------------------------------------------------------------------

def b(ip: str, port: str) -> dict:
    return {"HostIp": ip, "HostPort": port}


@pytest.mark.parametrize("spec, bindings", [
    ("80", {"80/tcp": [b("", "")]}),
    ("8080:80", {"80/tcp": [b("", "8080")]}),
    ("127.0.0.1:8080:80/udp", {"80/udp": [b("127.0.0.1", "8080")]}),
    ("127.0.0.1::80", {"80/tcp": [b("127.0.0.1", "")]}),
    ("[::1]:8080:80", {"80/tcp": [b("::1", "8080")]}),
    ("::1:8080:80", {"80/tcp": [b("::1", "8080")]}),
    ("8080:80/SCTP", {"80/sctp": [b("", "8080")]}),
    ("8000-8002:80-82", {"80/tcp": [b("", "8000")], "81/tcp": [b("", "8001")], "82/tcp": [b("", "8002")]}),
    ("8000-8010:80", {"80/tcp": [b("", "8000-8010")]}),
    ("80-82", {"80/tcp": [b("", "")], "81/tcp": [b("", "")], "82/tcp": [b("", "")]}),
    ("0:80", {"80/tcp": [b("", "0")]}),
    (":80", {"80/tcp": [b("", "")]}),
    ("080:080/", {"80/tcp": [b("", "80")]}),
    ("target=80,published=8080", {"80/tcp": [b("", "8080")]}),
    ("target=80,published=8080,protocol=udp,mode=host", {"80/udp": [b("", "8080")]}),
])
def test_publish(spec, bindings):
    r = parse("-p", spec, "busybox")
    assert r.host_config["PortBindings"] == bindings
    assert r.config["ExposedPorts"] == {port: {} for port in bindings}


def test_publish_same_port_twice_binds_twice():
    assert host("-p", "8080:80", "-p", "8081:80", "busybox")["PortBindings"] == \
        {"80/tcp": [b("", "8080"), b("", "8081")]}


def test_expose_and_publish_all():
    r = parse("-P", "--expose", "80", "--expose", "90-92/udp", "--expose", "7/", "busybox")
    assert r.config["ExposedPorts"] == {"80/tcp": {}, "90/udp": {}, "91/udp": {}, "92/udp": {}, "7/tcp": {}}
    assert r.host_config["PublishAllPorts"] and r.host_config["PortBindings"] == {}


def test_dns_normalized_like_go():
    h = host("--dns", "8.8.8.8", "--dns", "0:0::1", "--dns", "::ffff:1.2.3.4", "--dns-search", "example.com.",
             "--dns-search", ".", "--dns-option", "ndots:2", "busybox")
    assert h["Dns"] == ["8.8.8.8", "::1", "1.2.3.4"] and h["DnsSearch"] == ["example.com", "."]
    assert h["DnsOptions"] == ["ndots:2"]


def test_add_host():
    assert host("--add-host", "foo:1.2.3.4", "--add-host", "bar=::1", "--add-host", "gw:host-gateway",
                "--add-host", "v6:[::2]", "busybox")["ExtraHosts"] == \
        ["foo:1.2.3.4", "bar:::1", "gw:host-gateway", "v6:::2"]


def test_network_modes_without_endpoint_settings():
    for mode in ("host", "none", "bridge", "mynet", "container:db"):
        r = parse("--network", mode, "busybox")
        assert r.host_config["NetworkMode"] == mode and r.networking_config == {"EndpointsConfig": {}}


def test_network_alias_and_ip_go_to_the_network():
    r = parse("--network", "mynet", "--network-alias", "web", "--network-alias", "w2", "--ip", "10.0.0.5",
              "--ip6", "fd00::5", "--mac-address", "02:42:ac:11:00:02", "busybox")
    assert r.networking_config == {"EndpointsConfig": {"mynet": {
        "Aliases": ["web", "w2"], "IPAMConfig": {"IPv4Address": "10.0.0.5", "IPv6Address": "fd00::5"},
        "MacAddress": "02:42:ac:11:00:02"}}}


def test_network_long_syntax_and_several_networks():
    r = parse("--network", "name=Front,alias=a,ip=10.0.0.2,driver-opt=K=V", "--network", "back", "busybox")
    assert r.host_config["NetworkMode"] == "front"  # docker lowercases the long syntax
    assert r.networking_config == {"EndpointsConfig": {
        "front": {"Aliases": ["a"], "IPAMConfig": {"IPv4Address": "10.0.0.2"}, "DriverOpts": {"k": "v"}},
        "back": {}}}
    assert host("--network", "MyNet", "busybox")["NetworkMode"] == "MyNet"


def test_volumes_from():
    assert host("--volumes-from", "db:ro", "busybox")["VolumesFrom"] == ["db:ro"]


# -- errors docker's CLI gives, verbatim (budu for docker) ---------------------------------------------------

CLI_ERRORS = [
    (["-m", "abc", "busybox"], "invalid argument \"abc\" for \"-m, --memory\" flag: invalid size: 'abc'"),
    (["-m", "-1", "busybox"], "invalid argument \"-1\" for \"-m, --memory\" flag: invalid size: '-1'"),
    (["-m", "1x", "busybox"], "invalid argument \"1x\" for \"-m, --memory\" flag: invalid suffix: 'x'"),
    (["-m", " 1g", "busybox"],
     'invalid argument " 1g" for "-m, --memory" flag: strconv.ParseFloat: parsing " 1": invalid syntax'),
    (["--memory-swap=abc", "busybox"], "invalid argument \"abc\" for \"--memory-swap\" flag: invalid size: 'abc'"),
    (["--shm-size", "-1", "busybox"], "invalid argument \"-1\" for \"--shm-size\" flag: invalid size: '-1'"),
    (["--cpus", "abc", "busybox"],
     'invalid argument "abc" for "--cpus" flag: failed to parse abc as a rational number'),
    (["--cpus", "0.0000000001", "busybox"], 'invalid argument "0.0000000001" for "--cpus" flag: value is too precise'),
    (["-c", "abc", "busybox"],
     'invalid argument "abc" for "-c, --cpu-shares" flag: strconv.ParseInt: parsing "abc": invalid syntax'),
    (["--pids-limit", "1.5", "busybox"],
     'invalid argument "1.5" for "--pids-limit" flag: strconv.ParseInt: parsing "1.5": invalid syntax'),
    (["--stop-timeout", "abc", "busybox"],
     'invalid argument "abc" for "--stop-timeout" flag: strconv.ParseInt: parsing "abc": invalid syntax'),
    (["--rm=maybe", "busybox"],
     'invalid argument "maybe" for "--rm" flag: strconv.ParseBool: parsing "maybe": invalid syntax'),
    (["--foo", "busybox"], "unknown flag: --foo"),
    (["-x", "busybox"], "unknown shorthand flag: 'x' in -x"),
    (["-ix", "busybox"], "unknown shorthand flag: 'x' in -x"),
    (["--name"], "flag needs an argument: --name"),
    (["-e"], "flag needs an argument: 'e' in -e"),
    ([], "'budu create' requires at least 1 argument"),
    (["--rm"], "'budu create' requires at least 1 argument"),
    (["-e", "=x", "busybox"], 'invalid argument "=x" for "-e, --env" flag: invalid environment variable: =x'),
    (["-l", "=x", "busybox"], "invalid argument \"=x\" for \"-l, --label\" flag: invalid label '=x': empty name"),
    (["-a", "bogus", "busybox"],
     'invalid argument "bogus" for "-a, --attach" flag: valid streams are STDIN, STDOUT and STDERR'),
    (["--ulimit", "bogus=1", "busybox"], 'invalid argument "bogus=1" for "--ulimit" flag: invalid ulimit type: bogus'),
    (["--ulimit", "NOFILE=1", "busybox"],
     'invalid argument "NOFILE=1" for "--ulimit" flag: invalid ulimit type: NOFILE'),
    (["--ulimit", "nofile", "busybox"],
     'invalid argument "nofile" for "--ulimit" flag: invalid ulimit argument: nofile'),
    (["--ulimit", "nofile=2048:1024", "busybox"], 'invalid argument "nofile=2048:1024" for "--ulimit" flag: '
     "ulimit soft limit must be less than or equal to hard limit: 2048 > 1024"),
    (["--ulimit", "nofile=1:2:3", "busybox"], 'invalid argument "nofile=1:2:3" for "--ulimit" flag: '
     "too many limit value arguments - 1:2:3, can only have up to two, `soft[:hard]`"),
    (["--ulimit", "nofile=1:abc", "busybox"], 'invalid argument "nofile=1:abc" for "--ulimit" flag: '
     'strconv.ParseInt: parsing "abc": invalid syntax'),
    (["--sysctl", "vm.x=1", "busybox"], "invalid argument \"vm.x=1\" for \"--sysctl\" flag: sysctl 'vm.x=1' is not "
     "allowed"),
    (["--sysctl", "net.x", "busybox"], "invalid argument \"net.x\" for \"--sysctl\" flag: sysctl 'net.x' is not "
     "allowed"),
    (["--dns", "abc", "busybox"],
     'invalid argument "abc" for "--dns" flag: IP address is not correctly formatted: abc'),
    (["--dns-search", "-bad", "busybox"],
     'invalid argument "-bad" for "--dns-search" flag: -bad is not a valid domain'),
    (["--dns-search", "123", "busybox"], 'invalid argument "123" for "--dns-search" flag: 123 is not a valid domain'),
    (["--add-host", "foo", "busybox"], 'invalid argument "foo" for "--add-host" flag: bad format for add-host: "foo"'),
    (["--add-host", "foo:abc", "busybox"],
     'invalid argument "foo:abc" for "--add-host" flag: invalid IP address in add-host: "abc"'),
    (["--health-interval", "abc", "busybox"],
     'invalid argument "abc" for "--health-interval" flag: time: invalid duration "abc"'),
    (["--health-interval", "10", "busybox"],
     'invalid argument "10" for "--health-interval" flag: time: missing unit in duration "10"'),
    (["--health-timeout", "5x", "busybox"],
     'invalid argument "5x" for "--health-timeout" flag: time: unknown unit "x" in duration "5x"'),
    (["--device-cgroup-rule", "bogus", "busybox"],
     "invalid argument \"bogus\" for \"--device-cgroup-rule\" flag: invalid device cgroup format 'bogus'"),
    (["--mount", "type=bind,src=/tmp", "busybox"],
     'invalid argument "type=bind,src=/tmp" for "--mount" flag: target is required'),
    (["--mount", "type=bind,src=/tmp,dst=/x,bogus=1", "busybox"],
     "invalid argument \"type=bind,src=/tmp,dst=/x,bogus=1\" for \"--mount\" flag: unexpected key 'bogus' in "
     "'bogus=1'"),
    (["--mount", "type=bind,src=/tmp,dst=/x,readonly=maybe", "busybox"],
     'invalid argument "type=bind,src=/tmp,dst=/x,readonly=maybe" for "--mount" flag: invalid value for readonly: '
     "maybe"),
    (["--mount", "type=bind,src=/tmp,dst=/x,volume-nocopy", "busybox"],
     "invalid argument \"type=bind,src=/tmp,dst=/x,volume-nocopy\" for \"--mount\" flag: cannot mix 'volume-*' "
     "options with mount type 'bind'"),
    (["--mount", "type=volume,src=v,dst=/x,bind-propagation=shared", "busybox"],
     "invalid argument \"type=volume,src=v,dst=/x,bind-propagation=shared\" for \"--mount\" flag: cannot mix "
     "'bind-*' options with mount type 'volume'"),
    (["--mount", "type=tmpfs,dst=/t,tmpfs-size=abc", "busybox"],
     'invalid argument "type=tmpfs,dst=/t,tmpfs-size=abc" for "--mount" flag: invalid value for tmpfs-size: abc'),
    (["--mount", "type=tmpfs,dst=/t,tmpfs-mode=999", "busybox"],
     'invalid argument "type=tmpfs,dst=/t,tmpfs-mode=999" for "--mount" flag: invalid value for tmpfs-mode: 999'),
    (["--mount", "type=bind,src=/tmp,dst=/x,bind-create", "busybox"],
     "invalid argument \"type=bind,src=/tmp,dst=/x,bind-create\" for \"--mount\" flag: invalid field 'bind-create' "
     "must be a key=value pair"),
    (["--network", "name=n,bogus=1", "busybox"],
     'invalid argument "name=n,bogus=1" for "--network" flag: invalid field key bogus'),
    (["--network", "alias=x", "busybox"],
     'invalid argument "alias=x" for "--network" flag: network name/id is not specified'),
    (["-p", "8080:80/foo", "busybox"], "invalid proto: foo"),
    (["-p", "abc", "busybox"], "invalid containerPort: abc"),
    (["-p", "70000", "busybox"], "invalid containerPort: 70000"),
    (["-p", "80-78", "busybox"], "invalid containerPort: 80-78"),
    (["-p", "+80", "busybox"], "invalid containerPort: +80"),
    (["-p", "65536:80", "busybox"], "invalid hostPort: 65536"),
    (["-p", "1.2.3.4:80", "busybox"], "invalid hostPort: 1.2.3.4"),
    (["-p", "1.2.3:80:80", "busybox"], "invalid IP address: 1.2.3"),
    (["-p", "localhost:80:80", "busybox"], "invalid IP address: localhost"),
    (["-p", "[::1:80:80", "busybox"], "invalid IP address [::1: address [::1:: missing ']' in address"),
    (["-p", "8000-8001:80-82", "busybox"],
     "invalid ranges specified for container and host Ports: 80-82 and 8000-8001"),
    (["-p", "8080:", "busybox"], "no port specified: 8080:<empty>"),
    (["-p", "published=8080", "busybox"], "no port specified: 8080:/tcp<empty>"),
    (["-p", "target=80,published", "busybox"],
     "invalid publish opts format (should be name=value but got 'published')"),
    (["--expose", "80-70", "busybox"],
     "invalid range format for --expose: 80-70, error: invalid range specified for port: 80-70"),
    (["--expose", "abc", "busybox"],
     'invalid range format for --expose: abc, error: strconv.ParseUint: parsing "abc": invalid syntax'),
    (["--expose", "70000", "busybox"],
     'invalid range format for --expose: 70000, error: strconv.ParseUint: parsing "70000": value out of range'),
    (["--env-file", "nope", "busybox"], "open nope: no such file or directory"),
    (["--label-file", "nope", "busybox"], "open nope: no such file or directory"),
    (["--security-opt", "seccomp=nope.json", "busybox"],
     "opening seccomp profile (nope.json) failed: open nope.json: no such file or directory"),
    (["-v", "", "busybox"], "invalid empty volume spec"),
    (["-v", "/tmp:/data:ro:extra", "busybox"], "invalid spec: /tmp:/data:ro:extra: too many colons"),
    (["-v", ":/data", "busybox"], "invalid spec: :/data: empty section between colons"),
    (["-v", "/tmp:", "busybox"], "invalid spec: /tmp:: empty section between colons"),
    (["--device", "/dev/fuse:/dev/f:x", "busybox"], "bad mode specified: x"),
    (["--device", "/dev/fuse:/dev/f:", "busybox"], "bad mode specified: "),
    (["--device", "/dev/fuse:f", "busybox"], "f is not an absolute path"),
    (["--device", "fuse", "busybox"], "fuse is not an absolute path"),
    (["--device", "a:b:c:d", "busybox"], "bad format for path: a:b:c:d"),
    (["--restart", "always", "--rm", "busybox"], "conflicting options: cannot specify both --restart and --rm"),
    (["--restart", ":3", "busybox"], "invalid restart policy format: no policy provided before colon"),
    (["--restart", "on-failure:x", "busybox"],
     "invalid restart policy format: maximum retry count must be an integer"),
    (["--no-healthcheck", "--health-cmd", "x", "busybox"], "--no-healthcheck conflicts with --health-* options"),
    (["--health-interval", "-1s", "busybox"], "--health-interval cannot be negative"),
    (["--health-retries", "-1", "busybox"], "--health-retries cannot be negative"),
    (["--log-driver", "none", "--log-opt", "a=b", "busybox"], "invalid logging opts for driver none"),
    (["--security-opt", "bogus", "busybox"], 'Invalid --security-opt: "bogus"'),
    (["--security-opt", "seccomp=", "busybox"], 'Invalid --security-opt: "seccomp="'),
    (["--pid", "bogus", "busybox"], "--pid: invalid PID mode"),
    (["--pid", "container:", "busybox"], "--pid: invalid PID mode"),
    (["--uts", "bogus", "busybox"], "--uts: invalid UTS mode"),
    (["--userns", "private", "busybox"], "--userns: invalid USER mode"),
    (["--cgroupns", "bogus", "busybox"], "--cgroupns: invalid CGROUP mode"),
    (["--memory-swappiness", "101", "busybox"], "invalid value: 101. Valid memory swappiness range is 0-100"),
    (["--mac-address", "zz", "busybox"], "zz is not a valid mac address"),
    (["--network-alias", "web", "busybox"], "network-scoped aliases are only supported for user-defined networks"),
    (["--network", "bridge", "--network-alias", "x", "busybox"],
     "network-scoped aliases are only supported for user-defined networks"),
    (["--network", "host", "--network", "mynet", "busybox"],
     "conflicting options: cannot attach both user-defined and non-user-defined network-modes"),
    (["--network", "name=n,alias=a", "--network-alias", "b", "busybox"],
     "conflicting options: cannot specify both --network-alias and per-network alias"),
    (["--network", "a", "--network", "a", "busybox"], 'network "a" is specified multiple times'),
    (["--network", "", "busybox"], "no name set for network"),
    (["BusyBox"], "invalid reference format: repository name must be lowercase"),
    (["busybox:"], "invalid reference format"),
]


@pytest.mark.parametrize("argv, message", CLI_ERRORS)
def test_cli_errors(argv, message):
    assert error(*argv, command="create").startswith(message)


def test_errors_only_run_has():
    assert error("-a", "stdout", "-d", "busybox") == "conflicting options: cannot specify both --attach and --detach"
    assert error("--pull", "bogus", "busybox") == \
        "invalid pull option: 'bogus': must be one of \"always\", \"missing\" or \"never\""
    assert error("--detach-keys", "ctrl-1", "busybox") == "Invalid detach keys (ctrl-1) provided"
    assert error() == "'budu run' requires at least 1 argument"


# -- errors docker leaves to its daemon, made here too --------------------------------------------------------

DAEMON_ERRORS = [
    (["-m", "4m", "busybox"], "Minimum memory limit allowed is 6MB"),
    (["-m", "1.5", "busybox"], "Minimum memory limit allowed is 6MB"),
    (["--memory-swap", "1g", "busybox"],
     "You should always set the Memory limit when using Memoryswap limit, see usage"),
    (["-m", "10m", "--memory-swap", "5m", "busybox"],
     "Minimum memoryswap limit should be larger than memory limit, see usage"),
    (["--memory-reservation", "1m", "busybox"], "Minimum memory reservation allowed is 6MB"),
    (["-m", "10m", "--memory-reservation", "1g", "busybox"],
     "Minimum memory limit can not be less than memory reservation limit, see usage"),
    (["--cpus", "1", "--cpu-period", "100000", "busybox"],
     "Conflicting options: Nano CPUs and CPU Period cannot both be set"),
    (["--cpus", "1", "--cpu-quota", "50000", "busybox"],
     "Conflicting options: Nano CPUs and CPU Quota cannot both be set"),
    (["--cpus", "-1", "busybox"], "range of CPUs is from 0.01 to "),
    (["--cpus", "100000", "busybox"], "range of CPUs is from 0.01 to "),
    (["--cpu-period", "500", "busybox"],
     "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"),
    (["--cpu-quota", "500", "busybox"], "CPU cfs quota can not be less than 1ms (i.e. 1000)"),
    (["--cpu-shares", "-5", "busybox"], "invalid CPU shares (-5): value must be a positive integer"),
    (["--oom-score-adj", "2000", "busybox"], "Invalid value 2000, range for oom score adj is [-1000, 1000]"),
    (["--restart", "always:3", "busybox"],
     "invalid restart policy: maximum retry count can only be used with 'on-failure'"),
    (["--restart", "unless-stopped:-1", "busybox"],
     "invalid restart policy: maximum retry count can only be used with 'on-failure' and cannot be negative"),
    (["--restart", "on-failure:-1", "busybox"], "invalid restart policy: maximum retry count cannot be negative"),
    (["--restart", "sometimes", "busybox"], "invalid restart policy: unknown policy 'sometimes'; use one of 'no', "
     "'always', 'on-failure', or 'unless-stopped'"),
    (["--name", "bad name", "busybox"],
     "Invalid container name (bad name), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"),
    (["--name", "a", "busybox"], "Invalid container name (a), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"),
    (["-w", "rel", "busybox"], "the working directory 'rel' is invalid, it needs to be an absolute path"),
    (["--stop-signal", "SIGBOGUS", "busybox"], "Invalid signal: SIGBOGUS"),
    (["--stop-signal", "0", "busybox"], "Invalid signal: 0"),
    (["--ipc", "bogus", "busybox"], "invalid IPC mode: bogus"),
    (["--cap-add", "bogus", "busybox"], 'unknown capability: "CAP_BOGUS"'),
    (["--cap-drop", "", "busybox"], 'unknown capability: "CAP_"'),
    (["--security-opt", "bogus=1", "busybox"], 'invalid --security-opt 2: "bogus=1"'),
    (["--security-opt", "no-new-privileges=maybe", "busybox"], 'invalid --security-opt 2: "no-new-privileges=maybe"'),
    (["-v", "/tmp:/data:bogus", "busybox"], "invalid mode: bogus"),
    (["-v", "/tmp:/data:ro,rw", "busybox"], "invalid mode: ro,rw"),
    (["-v", "/tmp:/data:z,Z", "busybox"], "invalid mode: z,Z"),
    (["-v", "/data:ro", "busybox"], "invalid volume specification: '/data:ro'"),
    (["-v", "/tmp:data", "busybox"], "invalid volume specification: '/tmp:data': invalid mount config for type "
     "\"bind\": invalid mount path: 'data' mount path must be absolute"),
    (["-v", "/tmp:/", "busybox"], "invalid volume specification: '/tmp:/': invalid mount config for type \"bind\": "
     "invalid specification: destination can't be '/'"),
    (["-v", "data", "busybox"], "invalid volume specification: 'data': invalid mount config for type \"volume\": "
     "invalid mount path: 'data' mount path must be absolute"),
    (["-v", "hostdir/x:/data", "busybox"], 'create hostdir/x: "hostdir/x" includes invalid characters for a local '
     'volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use '
     "absolute path"),
    (["-v", "/a:/data", "-v", "/b:/data/", "busybox"], "Duplicate mount point: /data"),
    (["--tmpfs", "relative", "busybox"], "invalid mount path: 'relative' mount path must be absolute"),
    (["--tmpfs", "/", "busybox"], "invalid specification: destination can't be '/'"),
    (["--mount", "type=foo,dst=/x", "busybox"], 'invalid mount config for type "foo": mount type unknown'),
    (["--mount", "type=bind,dst=/x", "busybox"],
     'invalid mount config for type "bind": field Source must not be empty'),
    (["--mount", "type=bind,src=/tmp,dst=x", "busybox"],
     "invalid mount config for type \"bind\": invalid mount path: 'x' mount path must be absolute"),
    (["--mount", "type=bind,src=rel,dst=/x", "busybox"],
     "invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must be absolute"),
    (["--mount", "type=bind,src=/no/such/dir,dst=/x", "busybox"],
     'invalid mount config for type "bind": bind source path does not exist: /no/such/dir'),
    (["--mount", "type=bind,src=/tmp,dst=/x,bind-propagation=bogus", "busybox"],
     'invalid mount config for type "bind": invalid propagation mode: bogus'),
    (["--mount", "type=tmpfs,dst=/t,src=/x", "busybox"],
     'invalid mount config for type "tmpfs": field Source must not be specified'),
    (["--mount", "type=volume,dst=/x,ro", "busybox"],
     'invalid mount config for type "volume": must not set ReadOnly mode when using anonymous volumes'),
    (["--mount", "type=tmpfs,dst=/", "busybox"],
     "invalid mount config for type \"tmpfs\": invalid specification: destination can't be '/'"),
    (["-v", "/tmp:/x", "--mount", "type=tmpfs,dst=/x", "busybox"], "Duplicate mount point: /x"),
    (["--ip", "10.0.0.5", "busybox"], "user specified IP address is supported on user defined networks only"),
    (["--network", "host", "--ip", "10.0.0.5", "busybox"],
     "user specified IP address is supported on user defined networks only"),
    (["--network", "mynet", "--ip", "zz", "busybox"], "invalid IPv4 address: zz"),
    (["--network", "mynet", "--ip", "::1", "busybox"], "invalid IPv4 address: ::1"),
    (["--network", "mynet", "--ip6", "1.2.3.4", "busybox"], "invalid IPv6 address: 1.2.3.4"),
]


@pytest.mark.parametrize("argv, message", DAEMON_ERRORS)
def test_daemon_errors_made_at_parse_time(argv, message):
    assert error(*argv).startswith(message)


def test_daemon_rules_pass_on_good_values(tmp_path):
    r = parse("-m", "6m", "--memory-swap", "12m", "--memory-reservation", "6m", "--cpus", "0.5", "-w", "/x",
              "--stop-signal", "RTMIN+3", "--cap-add", "all", "--restart", "on-failure:5", "-v", "vol:/v",
              "--mount", f"type=bind,src={tmp_path},dst=/b", "--network", "mynet", "--ip", "10.0.0.9", "busybox")
    assert r.host_config["Memory"] == 6 << 20 and r.host_config["RestartPolicy"]["MaximumRetryCount"] == 5


def test_check_body_takes_a_sparse_api_body():
    check_body({"Image": "busybox"}, {})
    check_body({"Image": "busybox"}, {"Binds": ["/data"]}, {"EndpointsConfig": {"default": {}}})
    with pytest.raises(ConfigError, match="Minimum memory limit allowed is 6MB"):
        check_body({}, {"Memory": 1024})
    with pytest.raises(ConfigError, match="can't create 'AutoRemove' container with restart policy"):
        check_body({}, {"AutoRemove": True, "RestartPolicy": {"Name": "always"}})


# -- usage --------------------------------------------------------------------------------------------------

def test_usage_lists_every_flag():
    from budu.cli.runflags import FLAGS

    text = run_usage("run")
    assert text.startswith("Usage:  budu run [OPTIONS] IMAGE [COMMAND] [ARG...]\n")
    for long, short, _, _ in FLAGS:
        assert f"--{long}" in text
    assert "  -d, --detach " in text and "  -m, --memory bytes " in text
    create = run_usage("create")
    assert "--detach" not in create and "--sig-proxy" not in create and "before creating" in create
    assert "--net " not in text and "--dns-opt " not in text  # hidden aliases


# -- the same argvs through docker's own client -------------------------------------------------------------

DOCKER = shutil.which("docker")

BODY_CASES = [
    ["busybox"],
    ["-it", "--rm", "--name", "web", "-e", "A=1", "-e", "FROM_HOST", "-e", "NOT_SET", "-l", "a=b", "busybox", "sh"],
    ["-a", "stdin", "-a", "stdout", "busybox"],
    ["-a", "stderr", "-i", "busybox"],
    ["-it=false", "busybox"],
    ["-u", "1000:1000", "-w", "/app", "-h", "myhost", "--domainname", "example.com", "busybox"],
    ["--entrypoint", "sh -c", "busybox"],
    ["--entrypoint=", "busybox", "ls"],
    ["--stop-signal", "KILL", "--stop-timeout", "5", "--init", "busybox"],
    ["--init=false", "busybox"],
    ["-m", "512mb", "--memory-swap", "-1", "--memory-reservation", "64m", "busybox"],
    ["-m", "1.5g", "--memory-swap", "3g", "--shm-size", "1KiB", "busybox"],
    ["-m", "1e7", "busybox"],
    ["--cpus", "1.5", "--cpu-shares", "0x10", "--cpuset-cpus", "0-1", "--cpuset-mems", "0", "busybox"],
    ["--cpus", "3/2", "busybox"],
    ["--cpu-period", "100000", "--cpu-quota", "50000", "--pids-limit", "-1", "busybox"],
    ["--oom-kill-disable", "--oom-score-adj", "500", "--memory-swappiness", "10", "--cgroup-parent", "/x", "busybox"],
    ["--ulimit", "nproc=10", "--ulimit", "nofile=1024:2048", "--ulimit", "core=-1", "--ulimit", "nproc=20",
     "busybox"],
    ["--cap-add", "net_admin", "--cap-add", "CAP_SYS_ADMIN", "--cap-add", "NET_ADMIN", "--cap-drop", "all",
     "--cap-drop", "chown", "busybox"],
    ["--privileged", "--read-only", "--group-add", "audio", "--group-add", "10", "busybox"],
    ["--security-opt", "no-new-privileges", "--security-opt", "seccomp=unconfined", "--security-opt",
     "apparmor=unconfined", "--security-opt", "label:type:foo", "busybox"],
    ["--security-opt", "systempaths=unconfined", "busybox"],
    ["--ipc", "host", "--pid", "host", "--uts", "host", "--userns", "host", "--cgroupns", "private", "busybox"],
    ["--pid", "container:db", "--ipc", "shareable", "busybox"],
    ["--tmpfs", "/run", "--tmpfs", "/tmp:rw,size=64m,mode=1777", "busybox"],
    ["-v", "/data", "-v", "/tmp:/in", "-v", "/tmp:/ro:ro,z", "-v", "myvol:/v:nocopy", "-v", "/tmp:/in", "busybox"],
    ["-v", "./rel:/rel", "-v", ".:/here:ro", "busybox"],
    ["--mount", "type=bind,source=/tmp,target=/data,readonly", "--mount",
     "type=bind,src=/tmp,dst=/d,bind-propagation=rshared", "busybox"],
    ["--mount", "type=volume,src=v,dst=/data,volume-nocopy,volume-opt=a=b,volume-label=l=1,volume-driver=local",
     "busybox"],
    ["--mount", "target=/data", "--mount", "type=volume,dst=/x,volume-nocopy=false", "busybox"],
    ["--mount", "type=tmpfs,dst=/t,tmpfs-size=64m,tmpfs-mode=1770", "busybox"],
    ["--device", "/dev/fuse", "--device", "/dev/null:/dev/n:r", "--device", "/dev/zero:rw", "--device",
     "/dev/full:/dev/f/", "busybox"],
    ["--sysctl", "net.ipv4.ip_forward=1", "--sysctl", "kernel.msgmax=65536", "--annotation", "a=b",
     "--device-cgroup-rule", "c 1:3 mr", "busybox"],
    ["--health-cmd", "curl -f localhost", "--health-interval", "30s", "--health-retries", "3", "--health-timeout",
     "1m30s", "--health-start-period", "500ms", "--health-start-interval", "1h2m3.5s", "busybox"],
    ["--health-interval", "5s", "busybox"],
    ["--no-healthcheck", "busybox"],
    ["--log-driver", "json-file", "--log-opt", "max-size=10m", "--log-opt", "max-file=3", "busybox"],
    ["--restart", "on-failure:3", "busybox"],
    ["--restart", "unless-stopped", "busybox"],
    ["--restart", "", "busybox"],
    ["-p", "8080:80", "-p", "127.0.0.1:8081:81/udp", "-p", "[::1]:8082:82", "-p", "8000-8002:90-92", "busybox"],
    ["-p", "8000-8010:80", "-p", "80-82", "-p", "0:100", "-p", ":101", "-p", "080:102/SCTP", "busybox"],
    ["-p", "target=80,published=8080,protocol=udp", "-p", "8080:80", "-p", "8081:80", "busybox"],
    ["-P", "--expose", "80", "--expose", "90-92/udp", "--expose", "7/", "busybox"],
    ["--dns", "8.8.8.8", "--dns", "0:0::1", "--dns-search", "example.com.", "--dns-option", "ndots:2", "busybox"],
    ["--add-host", "foo:1.2.3.4", "--add-host", "bar=::1", "--add-host", "gw:host-gateway", "--add-host",
     "v6:[::2]", "busybox"],
    ["--network", "host", "busybox"],
    ["--net=none", "busybox"],
    ["--network", "mynet", "--network-alias", "web", "--network-alias", "w2", "--ip", "10.0.0.5", "--ip6",
     "fd00::5", "--mac-address", "02:42:ac:11:00:02", "busybox"],
    ["--network", "name=Front,alias=a,ip=10.0.0.2,driver-opt=K=V", "--network", "back", "busybox"],
    ["--network", "MyNet", "busybox"],
    ["--volumes-from", "db:ro", "--runtime", "runc", "busybox"],  # no --cidfile: docker would write it
    # files in the work directory (written by the fake_engine fixture)
    ["--env-file", "env", "-e", "A=2", "-e", "Z=1", "busybox"],
    ["--label-file", "labels", "-l", "a=z", "-l", "flag.only", "busybox"],
    ["--security-opt", "seccomp=profile.json", "--security-opt", "seccomp:profile.json", "busybox"],
]


@pytest.fixture(scope="module")
def fake_engine(tmp_path_factory):
    """An Engine API that answers _ping and containers/create, and keeps the create bodies."""
    bodies: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def reply(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Api-Version", "1.47")
            self.send_header("OSType", "linux")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_HEAD(self) -> None:  # noqa: N802
            self.reply(200, b"")

        def do_GET(self) -> None:  # noqa: N802
            self.reply(200 if "_ping" in self.path else 404, b"OK" if "_ping" in self.path else b'{"message":"no"}')

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if "/containers/create" in self.path:
                bodies.append(json.loads(body))
                self.reply(201, b'{"Id":"0123456789abcdef","Warnings":[]}')
            else:
                self.reply(404, b'{"message":"no"}')

        def log_message(self, *args) -> None:  # noqa: ANN002
            pass

    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

        def get_request(self):  # noqa: ANN202
            conn, _ = super().get_request()
            return conn, ("local", 0)

    tmp = tmp_path_factory.mktemp("engine")
    sock = str(tmp / "d.sock")
    server = Server(sock, Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp / "config").mkdir()
    (tmp / "work").mkdir()
    (tmp / "work" / "env").write_text("# c\n\n  A=1\nB= spaced \nFROM_HOST\nNOT_SET\n\tC=x=y\nQ=\"q\"\r\n")
    (tmp / "work" / "labels").write_text("a=b\n#c=d\nbare.key\ne='q'\n")
    (tmp / "work" / "profile.json").write_text(
        '{\n "defaultAction": "SCMP_ACT_ERRNO",\n "names": [ "a b", "\\u00e9" ]\n}\n')
    env = dict(ENV, DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(tmp / "config"))

    def docker(argv: list[str], command: str = "create") -> tuple[dict | None, str]:
        bodies.clear()
        p = subprocess.run([DOCKER, command, *argv], env=env, cwd=tmp / "work", capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=30)
        return (bodies[0] if bodies else None), p.stderr.strip().splitlines()[0] if p.stderr.strip() else ""

    yield docker, tmp / "work"
    server.shutdown()
    server.server_close()


def _env_effect(env: list[str] | None) -> dict:
    """What a container gets from an Env list: a later NAME replaces an earlier one (docker's daemon)."""
    return {e.partition("=")[0]: e for e in env or []}


def _differences(ours: dict, theirs: dict) -> list[str]:
    """Fields we send that docker sends differently, and optional fields docker sends that we miss."""
    out = []
    optional = {"": ("ExposedPorts", "StopSignal", "StopTimeout", "Healthcheck"),
                "HostConfig": ("Tmpfs", "Sysctls", "Mounts", "Init", "Runtime", "Annotations")}
    for section in ("", "HostConfig"):
        mine = ours[section] if section else ours
        docker = theirs.get(section, {}) if section else theirs
        for key, value in mine.items():
            if key in ("HostConfig", "NetworkingConfig"):
                continue
            if key == "Env":
                same = _env_effect(value) == _env_effect(docker.get(key))
            elif key == "Binds":  # docker goes through a Go map: any order
                same = sorted(value or []) == sorted(docker.get(key) or [])
            else:
                same = docker.get(key, "<absent>") == value
            if not same:
                out.append(f"{section}.{key}: ours {value!r}, docker {docker.get(key, '<absent>')!r}")
        out += [f"{section}.{k}: missing, docker {docker[k]!r}"
                for k in optional[section] if k in docker and k not in mine]
    mine_eps = ours["NetworkingConfig"]["EndpointsConfig"]
    docker_eps = theirs.get("NetworkingConfig", {}).get("EndpointsConfig") or {}
    for name, ep in docker_eps.items():
        meaningful = {k: v for k, v in ep.items() if v not in (None, "", 0, {}, [])}
        if name not in mine_eps and (meaningful or len(docker_eps) > 1):
            out.append(f"endpoint {name}: missing, docker {meaningful}")
        for key, value in mine_eps.get(name, {}).items():
            docker_value = ep.get(key)
            if key == "IPAMConfig":  # docker sends every address field, set or not
                docker_value = {k: v for k, v in (docker_value or {}).items() if v}
            if docker_value != value:
                out.append(f"endpoint {name}.{key}: ours {value!r}, docker {ep.get(key)!r}")
    out += [f"endpoint {name}: docker has none" for name in mine_eps if name not in docker_eps]
    return out


def needs_docker(test):  # noqa: ANN001, ANN201
    """These compare with the real docker client, which these machines have: its absence fails them."""
    def check(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        assert DOCKER is not None, "the docker CLI (28.x) is required for this test"
        return test(*args, **kwargs)

    import functools

    return functools.wraps(test)(check)


@needs_docker
@pytest.mark.parametrize("argv", BODY_CASES, ids=[" ".join(a)[:60] for a in BODY_CASES])
def test_same_body_as_docker_cli(fake_engine, monkeypatch, argv):
    docker, workdir = fake_engine
    theirs, stderr = docker(argv)
    assert theirs is not None, stderr
    monkeypatch.chdir(workdir)
    ours = parse_run_args(argv, "create", environ=ENV).body()
    # the daemon-side checks would refuse a relative bind of a directory that does not exist: not here
    assert _differences(ours, theirs) == []


@needs_docker
@pytest.mark.parametrize("argv", [["-d", "busybox"], ["-dit", "busybox"], ["-d", "--rm", "busybox"]])
def test_same_run_body_as_docker_cli(fake_engine, argv):
    docker, _ = fake_engine
    theirs, stderr = docker(argv, "run")
    assert theirs is not None, stderr
    assert _differences(parse_run_args(argv, "run", environ=ENV).body(), theirs) == []


@needs_docker
@pytest.mark.parametrize("argv, message", CLI_ERRORS, ids=[m[:60] for _, m in CLI_ERRORS])
def test_same_errors_as_docker_cli(fake_engine, argv, message):
    docker, _ = fake_engine
    theirs, stderr = docker(argv)
    assert theirs is None
    said = stderr.removeprefix("docker: ").replace("'docker create'", "'budu create'")
    if message.startswith("invalid reference format"):  # budu's reference parser words these its own way
        assert said.startswith("invalid reference format")
    else:
        assert said == message
