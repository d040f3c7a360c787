"""The network layer on the real kernel: bridges, veths, netfilter rules, aardvark-dns.

Every test runs against a budu root of its own and, whatever happens, leaves the host's links,
addresses, routes and netfilter rules exactly as it found them (`host_state` compares).  The
default network uses a bridge and subnet of its own (budut0, 10.199.0.0/16), so a real budu on
the same host is never touched.
"""

from __future__ import annotations

import pytest
from nettest import Env, FakeResolver, host_state, port_free, wait_for


@pytest.fixture(autouse=True)
def unchanged_host():
    before = host_state()
    yield
    # a deleted namespace's veth goes at the kernel's pace (net cleanup runs from a workqueue)
    after = wait_for(lambda: (lambda s: s if s == before else None)(host_state()), timeout=15) or host_state()
    for key in before:
        gone = [x for x in before[key] if x not in after[key]]
        new = [x for x in after[key] if x not in before[key]]
        assert after[key] == before[key], f"the host's {key} changed: gone {gone}, new {new}"


@pytest.fixture
def env(unchanged_host, tmp_path):
    e = Env(str(tmp_path / "root"))
    yield e
    e.close()


@pytest.fixture
def resolver():
    """A resolver on 127.0.0.53, where systemd-resolved would be."""
    if not port_free(53, "127.0.0.53"):
        pytest.fail("127.0.0.53:53 is taken")
    r = FakeResolver("127.0.0.53", {"outside.example": "198.51.100.7"})
    yield r
    r.close()


@pytest.fixture
def free_port():
    """A host port that nothing on the host listens on (8080 if it is free)."""
    def pick(preferred: int = 8080) -> int:
        for p in [preferred, *range(18080, 18200)]:
            if port_free(p):
                return p
        raise AssertionError("no free port")
    return pick
