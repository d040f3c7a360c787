"""Running CNI plugins the way libcni does: a conflist is a chain, ADD runs it in order feeding
each plugin the previous one's result (prevResult), DEL runs it in reverse with the result ADD
produced.  The caller keeps that result (budu stores it with the endpoint) so DEL works after a
crash, even with the network namespace gone."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Callable, Sequence

from budu.errors import KernelError
from budu.network.host import TOOL_PATH

CNI_VERSION = "1.0.0"
DEFAULT_PATH = ("/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni")


class CNIError(KernelError):
    """A plugin failed; `msg` is what it said."""

    def __init__(self, plugin: str, command: str, msg: str, code: int = 0) -> None:
        super().__init__(f"network {command.lower()} failed in the CNI {plugin} plugin: {msg}")
        self.plugin, self.command, self.msg, self.code = plugin, command, msg, code


class CNI:
    def __init__(self, path: Sequence[str] = DEFAULT_PATH, timeout: float = 60,
                 inherit: Callable[[], Sequence[int]] = tuple) -> None:
        self.path = [p for p in path if p]
        self.timeout = timeout
        # fds a plugin inherits: the caller's lock, so that a plugin still running when budu is
        # killed keeps others (gc's DEL) waiting until it is done
        self.inherit = inherit

    def find(self, plugin: str) -> str:
        for d in self.path:
            exe = os.path.join(d, plugin)
            if os.access(exe, os.X_OK):
                return exe
        raise KernelError(f"CNI plugin {plugin} not found in {':'.join(self.path)}: install "
                          "containernetworking-plugins, or set BUDU_CNI_PATH")

    @staticmethod
    def plugin_config(conflist: dict, plugin: dict, runtime_config: dict, prev_result: dict | None) -> dict:
        """What one plugin reads on stdin: its own section with the list's name and version, the
        runtimeConfig keys it declared capabilities for, and the previous result."""
        conf = copy.deepcopy(plugin)
        conf["cniVersion"] = conflist["cniVersion"]
        conf["name"] = conflist["name"]
        caps = conf.pop("capabilities", {}) or {}
        rc = {k: v for k, v in runtime_config.items() if caps.get(k) and v not in (None, [], "")}
        if rc:
            conf["runtimeConfig"] = rc
        if prev_result is not None:
            conf["prevResult"] = prev_result
        return conf

    def exec(self, command: str, conf: dict, container_id: str, netns: str, ifname: str) -> dict | None:
        plugin = conf["type"]
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns,
               "CNI_IFNAME": ifname, "CNI_PATH": ":".join(self.path), "PATH": TOOL_PATH, "LC_ALL": "C"}
        try:
            p = subprocess.run([self.find(plugin)], input=json.dumps(conf).encode(), capture_output=True,
                               env=env, timeout=self.timeout, pass_fds=tuple(self.inherit()))
        except subprocess.TimeoutExpired:
            raise CNIError(plugin, command, f"no answer in {self.timeout:g}s") from None
        out = p.stdout.decode(errors="replace").strip()
        if p.returncode != 0:
            try:
                err = json.loads(out)
                msg = err.get("msg") or "failed"
                if err.get("details"):
                    msg += f" ({err['details']})"
                code = int(err.get("code") or 0)
            except (ValueError, AttributeError):
                msg, code = (out or p.stderr.decode(errors="replace").strip() or f"exit status {p.returncode}"), 0
            raise CNIError(plugin, command, msg, code)
        if command != "ADD":
            return None
        try:
            return json.loads(out)
        except ValueError:
            raise CNIError(plugin, command, f"unreadable result: {out[:200]!r}") from None

    def add(self, conflist: dict, container_id: str, netns: str, ifname: str,
            runtime_config: dict | None = None) -> dict:
        """Run the chain; on a failure, DEL what ran so far, then raise."""
        rc = runtime_config or {}
        result: dict | None = None
        for i, plugin in enumerate(conflist["plugins"]):
            conf = self.plugin_config(conflist, plugin, rc, result)
            try:
                result = self.exec("ADD", conf, container_id, netns, ifname)
            except CNIError:
                partial = {**conflist, "plugins": conflist["plugins"][: i + 1]}
                try:
                    self.delete(partial, container_id, netns, ifname, rc, result)
                except KernelError:
                    pass   # the caller's DEL (or gc) finishes it: the endpoint row is still there
                raise
        return result or {}

    def delete(self, conflist: dict, container_id: str, netns: str, ifname: str,
               runtime_config: dict | None = None, prev_result: dict | None = None) -> None:
        """Run every plugin's DEL, last first; all run even if one fails, the first error is raised."""
        rc = runtime_config or {}
        first: CNIError | None = None
        for plugin in reversed(conflist["plugins"]):
            conf = self.plugin_config(conflist, plugin, rc, prev_result)
            try:
                self.exec("DEL", conf, container_id, netns, ifname)
            except CNIError as e:
                first = first or e
        if first:
            raise first
