"""Looking at containers: logs, exec, ps, inspect, top, stats, events, and the small commands."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time


def _wait_log(budu, name: str, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in budu("logs", name).stdout and time.monotonic() < deadline:
        time.sleep(0.05)


def test_logs_json_file_tail_timestamps_since(budu):
    budu("run", "--name", "talker", "busybox", "sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; echo oops >&2")
    p = budu("logs", "talker")
    assert p.stdout == "".join(f"line{i}\n" for i in range(1, 6)) and p.stderr == "oops\n"
    assert budu("logs", "--tail", "2", "talker").stdout == "line5\n"
    stamped = budu("logs", "-t", "--tail", "1", "talker").stderr
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z oops\n", stamped)
    assert budu("logs", "--since", "1h", "talker").stdout.count("\n") == 5
    assert budu("logs", "--until", "2000-01-01T00:00:00Z", "talker").stdout == ""
    path = budu.inspect("talker")["LogPath"]
    with open(path) as f:
        first = json.loads(f.readline())
    assert first["log"] == "line1\n" and first["stream"] == "stdout" and first["time"].endswith("Z")


def test_logs_follow(budu):
    budu("run", "-d", "--name", "ticker", "busybox", "sh", "-c", "for i in 1 2 3; do echo tick$i; sleep 0.2; done")
    p = budu("logs", "-f", "ticker", timeout=20)
    assert p.stdout == "tick1\ntick2\ntick3\n"


def test_logs_rotate(budu):
    budu("run", "--name", "chatty", "--log-opt", "max-size=2k", "--log-opt", "max-file=2", "busybox", "sh", "-c",
         "i=0; while [ $i -lt 300 ]; do echo message-number-$i; i=$((i+1)); done")
    log = budu.inspect("chatty")["LogPath"]
    files = sorted(f for f in os.listdir(os.path.dirname(log)) if f.startswith(os.path.basename(log)))
    assert len(files) == 2
    assert all(os.path.getsize(os.path.join(os.path.dirname(log), f)) <= 2048 + 200 for f in files)
    out = budu("logs", "chatty").stdout.splitlines()
    assert out[-1] == "message-number-299" and 0 < len(out) < 300


def test_exec(budu):
    budu("run", "-d", "--name", "host", "-e", "FROM_RUN=1", "-w", "/tmp", "busybox", "sleep", "300")
    assert budu("exec", "host", "sh", "-c", "echo $FROM_RUN $(pwd)").stdout == "1 /tmp\n"
    assert budu("exec", "-e", "X=2", "-w", "/", "-u", "nobody", "host", "sh", "-c", "echo $X $(pwd) $(id -u)").stdout == "2 / 65534\n"
    assert budu("exec", "host", "sh", "-c", "exit 5", ok=False).returncode == 5
    p = budu("exec", "host", "nope", ok=False)
    assert p.returncode in (126, 127) and "nope" in p.stderr
    assert budu("exec", "-i", "host", "cat", input="piped\n").stdout == "piped\n"
    budu("exec", "-d", "host", "sh", "-c", "echo bg > /tmp/bg")
    deadline = time.monotonic() + 5
    while budu("exec", "host", "cat", "/tmp/bg", ok=False).stdout != "bg\n" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert budu("exec", "host", "cat", "/tmp/bg").stdout == "bg\n"
    pids = budu("exec", "host", "ps", "-o", "pid,comm").stdout
    assert re.search(r"^\s*1 sleep", pids, re.M)
    budu("stop", "-t", "0", "host")
    p = budu("exec", "host", "true", ok=False)
    assert p.returncode != 0 and "is not running" in p.stderr


def test_ps_filters_and_formats(budu):
    budu("run", "-d", "--name", "alpha", "-l", "app=a", "busybox", "sleep", "300")
    budu("run", "--name", "beta", "-l", "app=b", "busybox", "sh", "-c", "exit 2", ok=False)
    budu("create", "--name", "gamma", "busybox", "true")
    assert budu("ps", "--format", "{{.Names}}").stdout == "alpha\n"
    assert budu("ps", "-a", "--format", "{{.Names}}").stdout == "gamma\nbeta\nalpha\n"
    assert budu("ps", "-a", "-n", "1", "--format", "{{.Names}}").stdout == "gamma\n"
    assert budu("ps", "-l", "--format", "{{.Names}}").stdout == "gamma\n"
    assert budu("ps", "-a", "--filter", "status=exited", "--format", "{{.Names}}").stdout == "beta\n"
    assert budu("ps", "-a", "--filter", "exited=2", "--format", "{{.Names}}").stdout == "beta\n"
    assert budu("ps", "-a", "--filter", "label=app=a", "--format", "{{.Names}}").stdout == "alpha\n"
    assert budu("ps", "-a", "--filter", "name=amm", "--format", "{{.Names}}").stdout == "gamma\n"
    assert budu("ps", "-a", "--filter", "status=created", "-q").stdout.strip() == \
        budu("inspect", "--format", "{{.Id}}", "gamma").stdout.strip()[:12]
    assert budu("ps", "-a", "--filter", "ancestor=busybox", "-q").stdout.count("\n") == 3
    full = budu("ps", "-a", "--no-trunc", "-q").stdout.split()
    assert all(len(i) == 64 for i in full)
    out = budu("ps", "-a", "--format", "table {{.Names}}\t{{.State}}").stdout.splitlines()
    assert re.fullmatch(r"NAMES\s+STATE", out[0]) and re.fullmatch(r"gamma\s+created", out[1])
    js = [json.loads(line) for line in budu("ps", "-a", "--format", "{{json .}}").stdout.splitlines()]
    assert {j["Names"] for j in js} == {"alpha", "beta", "gamma"}
    sized = budu("ps", "-s", "--format", "{{.Size}}").stdout
    assert re.fullmatch(r"\d+(\.\d+)?[kMG]?B \(virtual [\d.]+[kMG]?B\)\n", sized)
    p = budu("ps", "--filter", "bogus=1", ok=False)
    assert p.returncode != 0 and "bogus" in p.stderr


def test_inspect_shapes_and_templates(budu):
    budu("run", "-d", "--name", "shape", "--restart", "on-failure:3", "-e", "K=V", "-v", "/data", "busybox", "sleep", "300")
    info = budu.inspect("shape")
    for key in ("Id", "Created", "Path", "Args", "State", "Image", "Name", "RestartCount", "HostConfig",
                "Config", "Mounts", "NetworkSettings", "GraphDriver", "LogPath"):
        assert key in info
    assert info["Path"] == "sleep" and info["Args"] == ["300"]
    assert info["State"]["Running"] is True and info["State"]["Pid"] > 0
    assert info["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert "K=V" in info["Config"]["Env"]
    (mount,) = info["Mounts"]
    assert mount["Type"] == "volume" and mount["Destination"] == "/data" and len(mount["Name"]) == 64
    assert budu("inspect", "-f", "{{.Name}} {{.State.Status}} {{index .Config.Env 0}}", "shape").stdout.startswith("/shape running ")
    assert budu("inspect", "-f", "{{range .Mounts}}{{.Destination}}{{end}}", "shape").stdout == "/data\n"
    assert budu("inspect", "-f", "{{join .Args \",\"}}", "shape").stdout == "300\n"
    assert budu("inspect", "-f", "{{json .HostConfig.RestartPolicy}}", "shape").stdout == \
        '{"Name":"on-failure","MaximumRetryCount":3}\n'
    image = json.loads(budu("inspect", "busybox").stdout)[0]
    assert image["Id"].startswith("sha256:") and "RootFS" in image
    p = budu("inspect", "nothing-by-this-name", ok=False)
    assert p.returncode == 1 and "No such object: nothing-by-this-name" in p.stderr
    budu("rm", "-f", "-v", "shape")
    assert mount["Name"] not in budu("volume", "ls", "-q").stdout


def test_top_and_stats(budu):
    budu("run", "-d", "--name", "watched", "--memory", "64m", "busybox", "sh", "-c", "sleep 300")
    out = budu("top", "watched").stdout.splitlines()
    assert re.match(r"UID\s+PID\s+PPID\s+C\s+STIME\s+TTY\s+TIME\s+CMD", out[0])
    assert any(line.endswith("sleep 300") for line in out[1:])
    out = budu("top", "watched", "-o", "pid,comm").stdout.splitlines()
    assert out[0].split() == ["PID", "COMMAND"] and out[1].split()[1] in ("sh", "sleep")
    out = budu("stats", "--no-stream", "watched").stdout.splitlines()
    assert re.match(r"CONTAINER ID\s+NAME\s+CPU %\s+MEM USAGE / LIMIT\s+MEM %\s+NET I/O\s+BLOCK I/O\s+PIDS", out[0])
    assert "watched" in out[1] and "/ 64MiB" in out[1]
    fmt = budu("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "watched").stdout
    assert fmt in ("watched 1\n", "watched 2\n")


def test_rename_update_port_wait(budu):
    budu("run", "-d", "--name", "old", "busybox", "sleep", "300")
    budu("rename", "old", "new")
    assert budu("ps", "--format", "{{.Names}}").stdout == "new\n"
    budu("update", "--memory", "48m", "--pids-limit", "30", "new")
    pid = budu("inspect", "--format", "{{.State.Pid}}", "new").stdout.strip()
    limit = budu("exec", "new", "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null "
                 "|| cat /sys/fs/cgroup/memory.max").stdout.strip()
    assert limit == str(48 << 20), pid
    assert budu("inspect", "--format", "{{.HostConfig.Memory}}", "new").stdout == f"{48 << 20}\n"
    assert budu("port", "new").stdout == ""
    budu("kill", "new")
    assert budu("wait", "new").stdout == "137\n"


def test_events(budu):
    since = str(time.time() - 1)
    budu("run", "--rm", "--name", "eventful", "busybox", "true")
    out = budu("events", "--since", since, "--until", str(time.time() + 0.5), "--filter", "container=eventful",
               "--format", "{{.Action}}").stdout.split()
    assert out[:1] == ["create"] and "start" in out and "die" in out and out[-1] == "destroy"


def test_prune_info_version(budu):
    budu("create", "--name", "p1", "busybox", "true")
    budu("run", "-d", "--name", "p2", "busybox", "sleep", "300")
    out = budu("container", "prune", "-f").stdout
    assert "Deleted Containers:" in out and "Total reclaimed space:" in out
    assert budu("ps", "-a", "--format", "{{.Names}}").stdout == "p2\n"
    info = budu("info").stdout
    assert "Containers: 1" in info and "Running: 1" in info and "Storage Driver: overlay2" in info
    assert budu("info", "--format", "{{.ContainersRunning}}").stdout == "1\n"
    assert budu("version", "--format", "{{.Server.ApiVersion}}").stdout == "1.47\n"
    assert budu("container", "ls", "--format", "{{.Names}}").stdout == "p2\n"


def test_volume_commands(budu):
    assert budu("volume", "create", "--label", "k=v", "named").stdout == "named\n"
    info = json.loads(budu("volume", "inspect", "named").stdout)[0]
    assert info["Name"] == "named" and info["Driver"] == "local" and info["Labels"] == {"k": "v"}
    assert os.path.isdir(info["Mountpoint"])
    budu("run", "-d", "--name", "user", "-v", "named:/v", "busybox", "sleep", "300")
    p = budu("volume", "rm", "named", ok=False)
    assert p.returncode == 1 and "in use" in p.stderr
    assert "named" in budu("volume", "ls", "--filter", "label=k=v", "-q").stdout
    budu("rm", "-f", "user")
    out = budu("volume", "prune", "-f").stdout
    assert "named" not in out  # docker 23+: prune keeps named volumes unless --all
    budu("volume", "rm", "named")
    assert budu("volume", "ls", "-q").stdout == ""


def test_system_prune_keeps_what_is_used(budu):
    budu("run", "-d", "--name", "keeper", "busybox", "sleep", "300")
    budu("create", "--name", "goner", "busybox", "true")
    out = budu("system", "prune", "-f").stdout
    assert "Total reclaimed space" in out
    assert budu("ps", "-a", "--format", "{{.Names}}").stdout == "keeper\n"
    assert "busybox" in budu("images", "--format", "{{.Repository}}").stdout


def test_inspect_writes_non_ascii_as_docker_does(budu):
    # docker's Go encoder writes UTF-8 as is: `"café"`, not `"caf\u00e9"`, for containers and images alike
    budu("create", "--name", "utf8", "--network", "none", "--label", "note=café", "busybox", "true")
    try:
        budu("commit", "-c", "LABEL note=café", "utf8", "utf8img")
        assert '"note": "café"' in budu("inspect", "utf8").stdout
        assert '"note": "café"' in budu("image", "inspect", "utf8img").stdout
    finally:
        budu("rmi", "-f", "utf8img", ok=False)
