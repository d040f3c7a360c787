#!/usr/bin/env bash
# Install budu and everything it needs on a Debian 12 machine (idempotent), then run the main job.
#   BUDU_VENV      where the Python environment goes (default /opt/budu/venv)
#   BUDU_NO_DEMO=1 install only
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${BUDU_VENV:-/opt/budu/venv}

if [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (it installs system packages and /usr/local/bin links)" >&2
    exit 1
fi

# System packages: the runtimes budu is compared with and drives (runc, crun, podman, containerd),
# image tools (skopeo, umoci, docker-registry), busybox and debootstrap for images made here,
# libseccomp for seccomp, the network tools, gcc for budu's small C container monitor, and tini
# (docker's `--init`).
pkgs=(runc crun podman containerd conmon skopeo umoci docker-registry busybox-static debootstrap
      libseccomp2 gcc libc6-dev python3-dev tini aardvark-dns iproute2 iptables nftables containernetworking-plugins procps util-linux
      hyperfine bats ca-certificates python3 python3-venv)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Debian's docker-registry and containerd start services on install; budu's tests start their own.
for svc in docker-registry containerd; do
    if command -v systemctl >/dev/null && systemctl is-active -q "$svc" 2>/dev/null; then
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
done

# Python: 3.11 or newer.  Debian's own interpreter first: it is built with PGO and LTO and starts
# a container ~25% faster than a plain source build (every runtime call is a fresh interpreter).
py=""
for cand in /usr/bin/python3 python3.13 python3.12 python3.11 python3; do
    if command -v "$cand" >/dev/null; then
        real=$("$cand" -c 'import sys; print(sys.executable if sys.version_info >= (3, 11) else "")' 2>/dev/null || true)
        if [ -n "$real" ]; then py=$real; break; fi
    fi
done
[ -n "$py" ] || { echo "install.sh: Python 3.11 or newer is required" >&2; exit 1; }
if [ -f "$venv/pyvenv.cfg" ] && ! grep -q "^home = $(dirname "$py")\$" "$venv/pyvenv.cfg"; then
    rm -rf "$venv"   # made from another interpreter: start over
fi
if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -e "$here[test]"
"$here/scripts/build-runtime-ext.sh" "$venv/bin/python"   # budu-runtime's C extension (mandatory)

"$venv/bin/python" -m compileall -q "$here/src" >/dev/null   # a start must not compile bytecode

# pip's console-script wrappers import `re` and run site (~20 ms together): the runtime starts a
# container per call, so its launchers skip both and name their paths themselves.
"$venv/bin/pip" uninstall -q -y setuptools >/dev/null 2>&1 || true   # its .pth hook costs ~1 ms a start
purelib=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
for cmd in budu:budu.cli.main budu-runtime-py:budu.runtime.cli; do
    name=${cmd%%:*}; mod=${cmd#*:}
    cat > "$venv/bin/$name" <<PY
#!$venv/bin/python -IS
import sys
sys.path[:0] = ["$here/src", "$purelib"]
from $mod import main
rc = main()
sys.stdout.flush()
sys.stderr.flush()
import os
os._exit(rc)  # no interpreter teardown: nothing is left to clean up, and it costs milliseconds
PY
    chmod 755 "$venv/bin/$name"
done
ln -sf "$venv/bin/budu" /usr/local/bin/budu
# budu-runtime itself is a small C program (src/budu/runtime/front/): start, state, kill and delete
# in their common case take it 1-2 ms, where through Python they took ~20; it hands everything else
# to budu-runtime-py, the Python runtime, next to it.
"$here/scripts/build-static.sh" src/budu/runtime/front "$venv/bin/budu-runtime"
ln -sf "$venv/bin/budu-runtime" /usr/local/bin/budu-runtime

# The container monitor: one small C process per running container (see src/budu/monitor/).
mkdir -p /opt/budu/libexec
"$here/scripts/build-static.sh" src/budu/monitor /opt/budu/libexec/budu-monitor

# After a reboot, bring back the containers whose restart policy says so (docker's daemon does it
# at start; budu has no daemon, so a oneshot unit does).
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    cat > /etc/systemd/system/budu-restore.service <<UNIT
[Unit]
Description=budu: start the containers a restart policy brings back after boot
After=local-fs.target network-online.target
Wants=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/local/bin/budu system restore
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
UNIT
    systemctl daemon-reload >/dev/null 2>&1 || true
    systemctl enable budu-restore.service >/dev/null 2>&1 || true
fi

echo "budu installed: $(budu --version)"
if [ "${BUDU_NO_DEMO:-}" != 1 ]; then
    exec "$here/scripts/demo.sh"
fi
