"""OCI hooks: run a program with the container state on stdin, within its timeout."""

from __future__ import annotations

import os
import time

from budu.errors import BuduError
from budu.kernel import fastjson


def run_hooks(hooks: list[dict] | None, state: dict, kind: str) -> None:
    """Run hooks in order; the first failure stops the rest and raises (the caller decides
    whether that is fatal, as the spec says it is for all kinds but poststart/poststop)."""
    if not hooks:
        return
    import subprocess

    payload = fastjson.dumps(state).encode()
    for i, h in enumerate(hooks):
        args = h.get("args") or [h["path"]]
        env = h.get("env")
        try:
            proc = subprocess.run(
                args, executable=h["path"], input=payload, env={} if env is None else _env(env),
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=h.get("timeout"),
            )
        except subprocess.TimeoutExpired:
            raise BuduError(f"{kind} hook {i} ({h['path']}): timed out after {h['timeout']}s") from None
        except OSError as e:
            raise BuduError(f"{kind} hook {i} ({h['path']}): {e.strerror}") from None
        if proc.returncode != 0:
            msg = proc.stderr.decode(errors="replace").strip().splitlines()
            detail = f": {msg[-1]}" if msg else ""
            raise BuduError(f"{kind} hook {i} ({h['path']}) exited with status {proc.returncode}{detail}")


def _env(env: list[str]) -> dict[str, str]:
    out = {}
    for item in env:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def run_in_process(hooks: list[dict] | None, state: dict, kind: str) -> None:
    """Run hooks from the container's init (createContainer, startContainer) without subprocess:
    fork and exec directly, so no threads are started inside the container's namespaces."""
    if not hooks:
        return
    payload = fastjson.dumps(state).encode()
    for i, h in enumerate(hooks):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(w)
                os.dup2(r, 0)
                os.execve(h["path"], h.get("args") or [h["path"]], _env(h.get("env") or []))
            except OSError:
                os._exit(127)
        os.close(r)
        try:
            os.write(w, payload)
        except OSError:
            pass
        os.close(w)
        status = _wait_timeout(pid, h.get("timeout"))
        if status is None:
            raise BuduError(f"{kind} hook {i} ({h['path']}): timed out after {h['timeout']}s")
        if status != 0:
            raise BuduError(f"{kind} hook {i} ({h['path']}) exited with status {status}")


def _wait_timeout(pid: int, timeout: int | None) -> int | None:
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.001
    while True:
        done, status = os.waitpid(pid, 0 if deadline is None else os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:  # type: ignore[operator]
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
