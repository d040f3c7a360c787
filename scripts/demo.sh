#!/usr/bin/env bash
# budu's main job: make the busybox image if it is missing, then run a container the way a docker
# user would — isolated, limited, logged, and removed cleanly — and show each of those.
set -euo pipefail
name=budu-demo-$$
web=budu-demo-web-$$
www=$(mktemp -d /tmp/budu-demo-www.XXXXXX)
cleanup() { budu rm -f "$name" "$web" >/dev/null 2>&1 || true; rm -rf "$www"; }
trap cleanup EXIT

if ! budu image inspect busybox >/dev/null 2>&1; then
    echo "== budu image bootstrap busybox (an image from the host's busybox, no network needed)"
    budu image bootstrap busybox
fi
budu images

echo
echo "== budu run --rm --memory 64m --pids-limit 100 --hostname demo busybox ..."
budu run --rm --memory 64m --pids-limit 100 --hostname demo busybox sh -c '
    echo "hostname:     $(hostname)"
    echo "my pid:       $$ (PID 1 of its own namespace); processes I can see:"; ps -o pid,user,comm | sed "s/^/  /"
    echo "memory limit: $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max) bytes"
    echo "pids limit:   $(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)"
    echo "capabilities: $(grep CapEff /proc/self/status | cut -f2) (docker default set)"
    echo "seccomp:      mode $(grep Seccomp: /proc/self/status | cut -f2) (docker default profile)"
    touch /proc/sys/kernel/hostname 2>/dev/null || echo "/proc/sys:    read-only"'

echo
echo "== budu run -d --name $name busybox (a service), then budu ps, logs, exec, stop, rm"
budu run -d --name "$name" busybox sh -c 'trap "exit 0" TERM; i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.2; done' >/dev/null
sleep 1
budu ps --filter "name=$name"
echo "-- budu logs --tail 3 $name"
budu logs --tail 3 "$name"
echo "-- budu exec $name uname -n"
budu exec "$name" uname -n
budu stop -t 1 "$name" >/dev/null
budu ps -a --filter "name=$name" --format 'table {{.Names}}\t{{.Status}}'
budu rm "$name" >/dev/null
echo "-- removed: $(budu ps -aq --filter "name=$name" | wc -l) containers named $name left"

echo
echo "== budu run -d -p PORT:80 busybox httpd: a page served from a container on a published port"
echo "<h1>served by budu</h1>" > "$www/index.html"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
budu run -d --name "$web" -p "127.0.0.1:$port:80" -v "$www:/www:ro" busybox httpd -f -p 80 -h /www >/dev/null
budu port "$web"
for i in $(seq 50); do
    page=$(python3 -c "import urllib.request,sys; print(urllib.request.urlopen('http://127.0.0.1:$port/', timeout=1).read().decode().strip())" 2>/dev/null) && break
    sleep 0.1
done
echo "-- GET http://127.0.0.1:$port/ -> ${page:-nothing}"
budu rm -f "$web" >/dev/null
echo "-- removed, with its veth, address and port rules"

