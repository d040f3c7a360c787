#!/usr/bin/env bash
# budu's main job, for now: make a busybox bundle from the host's static busybox and run a shell in
# it with budu-runtime, showing that it is isolated.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/budu-demo.XXXXXX)
id=budu-demo-$$
cleanup() { budu-runtime delete -f "$id" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
"$here/scripts/busybox-bundle.sh" "$work"
cd "$work"
python3 - <<'PY'
import json
c = json.load(open("config.json"))
c["process"]["terminal"] = False
c["process"]["args"] = ["sh", "-c",
    'echo "hostname: $(hostname)"; echo "my pid: $$"; echo "processes I can see:"; ps -o pid,comm;'
    ' echo "mounts:"; cut -d" " -f2,3,4 /proc/mounts | sed "s/^/  /"']
c["hostname"] = "budu-demo"
json.dump(c, open("config.json", "w"), indent=2)
PY
echo "== budu-runtime run $id (bundle $work)"
budu-runtime run "$id" -b "$work"

echo
echo "== budu image bootstrap busybox (an image from the host's busybox, no network needed)"
budu image bootstrap busybox
budu images
budu history busybox
