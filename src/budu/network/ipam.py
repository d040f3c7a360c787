"""host-local's state, as gc sees it: a directory per network under budu's root, a file per
address holding "<container id>\r\n<ifname>", guarded by the plugin's own lock file."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from collections.abc import Collection, Iterator
from contextlib import contextmanager


class HostLocal:
    def __init__(self, dir_: str) -> None:
        self.dir = dir_

    def leases(self, network_id: str) -> dict[str, str]:
        """address -> container id."""
        d = os.path.join(self.dir, network_id)
        out = {}
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return {}
        for f in names:
            if f == "lock" or f.startswith("last_reserved_ip"):
                continue
            try:
                with open(os.path.join(d, f)) as fh:
                    out[f] = fh.read().split()[0]
            except (OSError, IndexError):
                continue
        return out

    def stale(self, networks: Collection[str], recorded: Collection[tuple[str, str]],
              live: Collection[str]) -> list[str]:
        """Leases of containers that are gone and that no endpoint row (network, container) accounts
        for; whole directories of networks that are gone."""
        try:
            dirs = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        out = []
        for d in dirs:
            if d not in networks:
                out.append(os.path.join(self.dir, d))
                continue
            for ip, cid in self.leases(d).items():
                if cid not in live and (d, cid) not in recorded:
                    out.append(os.path.join(self.dir, d, ip))
        return out

    @contextmanager
    def _locked(self, network_dir: str) -> Iterator[None]:
        fd = os.open(os.path.join(network_dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def release(self, path: str) -> None:
        """Drop a lease file (under host-local's lock) or a removed network's directory."""
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
            return
        with self._locked(os.path.dirname(path)):
            try:
                os.unlink(path)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    raise

    def remove_network(self, network_id: str) -> None:
        shutil.rmtree(os.path.join(self.dir, network_id), ignore_errors=True)
