"""The engine as a docker user meets it: the `budu` command on a root of its own.

One root per session holds a busybox image (`budu image bootstrap busybox`, no network); each test
removes every container it made, even when it fails, and at the end nothing budu started is left:
no monitor, no container process, no mount under the root.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from budutest import host_state, wait_for
from containertest import TEST_BRIDGE, TEST_SUBNET, Budu, monitors, mounts_under


@pytest.fixture(scope="session")
def budu_root(tmp_path_factory):
    before = host_state()
    root = str(tmp_path_factory.mktemp("engine") / "root")
    b = Budu(root)
    b("image", "bootstrap", "busybox", timeout=300)
    yield root
    _forget(root)
    # everything budu made on the host for this root is gone: links, addresses, routes, rules
    after = wait_for(lambda: (lambda s: s if s == before else None)(host_state()), timeout=15) or host_state()
    for key in before:
        assert after[key] == before[key], (f"the host's {key} changed: gone {[x for x in before[key] if x not in after[key]]},"
                                           f" new {[x for x in after[key] if x not in before[key]]}")


def _forget(root: str) -> None:
    for pid in monitors(root):  # nothing may outlive the tests, even after a failure
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for rt in ("budu-runtime", "runc", "crun"):
        rt_root = os.path.join(root, "run", "runtime", rt)
        if os.path.isdir(rt_root):
            for cid in os.listdir(rt_root):
                subprocess.run([rt, "--root", rt_root, "delete", "--force", cid], capture_output=True)
    for m in sorted(mounts_under(root), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)
    from budu.metadata import Database
    from budu.network import NetworkConfig, Networks

    config = NetworkConfig.from_env({"BUDU_DEFAULT_SUBNET": TEST_SUBNET, "BUDU_DEFAULT_BRIDGE": TEST_BRIDGE})
    Networks(root, os.path.join(root, "run"), Database(root), config).shutdown()


@pytest.fixture
def budu(budu_root):
    b = Budu(budu_root)
    yield b
    ids = b("ps", "-aq", "--no-trunc", ok=False).stdout.split()
    if ids:
        b("rm", "-f", "-v", *ids, ok=False, timeout=120)
    leftover = b("ps", "-aq", ok=False).stdout.split()
    assert not leftover, f"containers left behind: {leftover}"
    assert not monitors(budu_root), "a monitor outlived its container's removal"
    assert not [m for m in mounts_under(budu_root) if "/containers/" in m], "a container rootfs is still mounted"
