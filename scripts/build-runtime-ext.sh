#!/usr/bin/env bash
# Build budu-runtime's C extension (src/budu/kernel/_budukernel.c) next to its source, for the
# given Python (default: budu's venv).  install.sh runs it; run it again after editing the C file.
#   scripts/build-runtime-ext.sh [PYTHON]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
py=${1:-${BUDU_VENV:-/opt/budu/venv}/bin/python}
inc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
suffix=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
if [ ! -f "$inc/Python.h" ] || ! command -v gcc >/dev/null; then
    # Python.h comes with Debian's python3-dev (for /usr/bin/python3, which the venv is made from)
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends gcc libc6-dev python3-dev
fi
src="$here/src/budu/kernel/_budukernel.c"
out="$here/src/budu/kernel/_budukernel$suffix"
gcc -shared -fPIC -O2 -Wall -I"$inc" -o "$out.tmp" "$src"
mv -f "$out.tmp" "$out"
