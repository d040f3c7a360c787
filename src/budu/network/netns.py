"""Persistent network namespaces, made the way `ip netns` makes them (a bind mount of the namespace
under /run/netns), so they outlive the processes in them and `ip netns exec` can enter them."""

from __future__ import annotations

import os

from budu.errors import KernelError
from budu.network.host import run

NETNS_DIR = "/run/netns"
PREFIX = "budu-"


def name_for(container_id: str) -> str:
    return PREFIX + container_id[:12]


def path_for(container_id: str) -> str:
    return os.path.join(NETNS_DIR, name_for(container_id))


def exists(path: str) -> bool:
    """A namespace file still bind-mounted (a stale, unmounted file does not count): a mounted
    namespace lives on nsfs, whose device differs from its directory's."""
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path)).st_dev
    except OSError:
        return False


def create(container_id: str) -> str:
    """The container's namespace, made if missing (idempotent)."""
    path = path_for(container_id)
    if exists(path):
        return path
    if os.path.exists(path):   # a leftover file (the mount is gone): `ip netns add` would refuse it
        _delete(path)
    p = run(["ip", "netns", "add", name_for(container_id)], check=False)
    if p.returncode != 0 and not exists(path):
        raise KernelError(f"cannot create network namespace {path}: {p.stderr.strip()}")
    return path


def delete(path: str) -> None:
    """Unmount and remove a namespace budu made; a missing one is fine."""
    if not path.startswith(NETNS_DIR + "/" + PREFIX):
        raise KernelError(f"{path} is not a budu network namespace")
    if os.path.exists(path):
        _delete(path)


def _delete(path: str) -> None:
    p = run(["ip", "netns", "delete", os.path.basename(path)], check=False)
    if p.returncode != 0 and os.path.exists(path):
        raise KernelError(f"cannot delete network namespace {path}: {p.stderr.strip()}")
