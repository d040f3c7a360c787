#!/usr/bin/env bash
# Run budu's whole test suite (as root: the tests make real containers).  Installs or updates
# what the tests need first, so it works on a fresh clone too.  Extra arguments go to pytest.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
BUDU_NO_DEMO=1 "$here/scripts/install.sh" >/dev/null
cd "$here"
exec "${BUDU_VENV:-/opt/budu/venv}/bin/pytest" -p no:cacheprovider "$@" tests
