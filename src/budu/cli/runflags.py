"""`budu run` / `budu create` flags -> docker's create body (Config, HostConfig, NetworkingConfig).

The flags, their spelling and what they turn into are docker's: docker/cli
`cli/command/container/opts.go` on spf13/pflag, checked against the docker 28 client itself.  pflag's
rules hold: flags stop at the first argument that is not one (the image; the rest is the command),
`--flag=value` and `--flag value`, bundled short booleans (`-dit`), `--` ends the flags, and a
repeated flag accumulates.  A value is checked when its flag is read, and a bad one fails with
pflag's `invalid argument "V" for "-m, --memory" flag: ...`.

The checks docker leaves to its daemon (restart policy names, memory minimums, bind and mount specs,
namespace modes, ...) are the engine's (budu.engine.validate.check_body, which the API server runs
on a body off the wire); the CLI runs them too, so that a bad flag fails before anything is created.
Messages are docker's words, CLI's or daemon's, one line each.
"""

from __future__ import annotations

import os

from budu.engine.validate import (check_body, clean_path, go_bool, go_quote, parse_ip, user_defined_network,
                                  valid_ns_mode)
from budu.errors import ConfigError
from budu.plain import Plain


class RunRequest(Plain):
    __slots__ = ("image", "config", "host_config", "networking_config", "name", "detach", "rm", "pull",
                 "detach_keys", "sig_proxy", "platform", "runtime", "cidfile", "quiet")

    def __init__(self, image: str, config: dict, host_config: dict, networking_config: dict, name: str | None = None,
                 detach: bool = False, rm: bool = False, pull: str = "missing", detach_keys: str | None = None,
                 sig_proxy: bool = True, platform: str | None = None, runtime: str | None = None,
                 cidfile: str | None = None, quiet: bool = False) -> None:
        self.image = image                          # as typed
        self.config = config                        # docker's Config
        self.host_config = host_config              # docker's HostConfig
        self.networking_config = networking_config  # {"EndpointsConfig": {NET: EndpointSettings}}
        self.name = name                            # without docker's optional leading "/"
        self.detach = detach
        self.rm = rm                                # also host_config["AutoRemove"]
        self.pull = pull                            # missing|always|never
        self.detach_keys = detach_keys
        self.sig_proxy = sig_proxy
        self.platform = platform
        self.runtime = runtime                      # also host_config["Runtime"]
        self.cidfile = cidfile                      # also host_config["ContainerIDFile"]; written by the CLI
        self.quiet = quiet                          # -q: no pull progress

    def body(self) -> dict:
        """The create request body as the Engine API takes it."""
        return {**self.config, "HostConfig": self.host_config, "NetworkingConfig": self.networking_config}


# -- the flags ------------------------------------------------------------------------------------------

# long name, shorthand, value type as docker's help names it ("" = boolean), help text.
# Types "list", "map", "mount", "network" and "ulimit" accumulate; the others keep the last value.
FLAGS: tuple[tuple[str, str, str, str], ...] = (
    ("add-host", "", "list", "Add a custom host-to-IP mapping (host:ip)"),
    ("annotation", "", "map", "Add an annotation to the container (passed through to the OCI runtime)"),
    ("attach", "a", "list", "Attach to STDIN, STDOUT or STDERR"),
    ("cap-add", "", "list", "Add Linux capabilities"),
    ("cap-drop", "", "list", "Drop Linux capabilities"),
    ("cgroup-parent", "", "string", "Optional parent cgroup for the container"),
    ("cgroupns", "", "string", "Cgroup namespace to use (host|private)"),
    ("cidfile", "", "string", "Write the container ID to the file"),
    ("cpu-period", "", "int", "Limit CPU CFS (Completely Fair Scheduler) period"),
    ("cpu-quota", "", "int", "Limit CPU CFS (Completely Fair Scheduler) quota"),
    ("cpu-shares", "c", "int", "CPU shares (relative weight)"),
    ("cpus", "", "decimal", "Number of CPUs"),
    ("cpuset-cpus", "", "string", "CPUs in which to allow execution (0-3, 0,1)"),
    ("cpuset-mems", "", "string", "MEMs in which to allow execution (0-3, 0,1)"),
    ("detach", "d", "", "Run container in background and print container ID"),
    ("detach-keys", "", "string", "Override the key sequence for detaching a container"),
    ("device", "", "list", "Add a host device to the container"),
    ("device-cgroup-rule", "", "list", "Add a rule to the cgroup allowed devices list"),
    ("disable-content-trust", "", "", "Skip image verification (default true)"),
    ("dns", "", "list", "Set custom DNS servers"),
    ("dns-option", "", "list", "Set DNS options"),
    ("dns-search", "", "list", "Set custom DNS search domains"),
    ("domainname", "", "string", "Container NIS domain name"),
    ("entrypoint", "", "string", "Overwrite the default ENTRYPOINT of the image"),
    ("env", "e", "list", "Set environment variables"),
    ("env-file", "", "list", "Read in a file of environment variables"),
    ("expose", "", "list", "Expose a port or a range of ports"),
    ("group-add", "", "list", "Add additional groups to join"),
    ("health-cmd", "", "string", "Command to run to check health"),
    ("health-interval", "", "duration", "Time between running the check (ms|s|m|h) (default 0s)"),
    ("health-retries", "", "int", "Consecutive failures needed to report unhealthy"),
    ("health-start-interval", "", "duration",
     "Time between running the check during the start period (ms|s|m|h) (default 0s)"),
    ("health-start-period", "", "duration", "Start period for the container to initialize before starting "
     "health-retries countdown (ms|s|m|h) (default 0s)"),
    ("health-timeout", "", "duration", "Maximum time to allow one check to run (ms|s|m|h) (default 0s)"),
    ("help", "", "", "Print usage"),
    ("hostname", "h", "string", "Container host name"),
    ("init", "", "", "Run an init inside the container that forwards signals and reaps processes"),
    ("interactive", "i", "", "Keep STDIN open even if not attached"),
    ("ip", "", "string", "IPv4 address (e.g., 172.30.100.104)"),
    ("ip6", "", "string", "IPv6 address (e.g., 2001:db8::33)"),
    ("ipc", "", "string", "IPC mode to use"),
    ("label", "l", "list", "Set meta data on a container"),
    ("label-file", "", "list", "Read in a line delimited file of labels"),
    ("log-driver", "", "string", "Logging driver for the container"),
    ("log-opt", "", "list", "Log driver options"),
    ("mac-address", "", "string", "Container MAC address (e.g., 92:d0:c6:0a:29:33)"),
    ("memory", "m", "bytes", "Memory limit"),
    ("memory-reservation", "", "bytes", "Memory soft limit"),
    ("memory-swap", "", "bytes", "Swap limit equal to memory plus swap: '-1' to enable unlimited swap"),
    ("memory-swappiness", "", "int", "Tune container memory swappiness (0 to 100) (default -1)"),
    ("mount", "", "mount", "Attach a filesystem mount to the container"),
    ("name", "", "string", "Assign a name to the container"),
    ("network", "", "network", "Connect a container to a network"),
    ("network-alias", "", "list", "Add network-scoped alias for the container"),
    ("no-healthcheck", "", "", "Disable any container-specified HEALTHCHECK"),
    ("oom-kill-disable", "", "", "Disable OOM Killer"),
    ("oom-score-adj", "", "int", "Tune host's OOM preferences (-1000 to 1000)"),
    ("pid", "", "string", "PID namespace to use"),
    ("pids-limit", "", "int", "Tune container pids limit (set -1 for unlimited)"),
    ("platform", "", "string", "Set platform if server is multi-platform capable"),
    ("privileged", "", "", "Give extended privileges to this container"),
    ("publish", "p", "list", "Publish a container's port(s) to the host"),
    ("publish-all", "P", "", "Publish all exposed ports to random ports"),
    ("pull", "", "string", 'Pull image before running ("always", "missing", "never") (default "missing")'),
    ("quiet", "q", "", "Suppress the pull output"),
    ("read-only", "", "", "Mount the container's root filesystem as read only"),
    ("restart", "", "string", 'Restart policy to apply when a container exits (default "no")'),
    ("rm", "", "", "Automatically remove the container and its associated anonymous volumes when it exits"),
    ("runtime", "", "string", "Runtime to use for this container"),
    ("security-opt", "", "list", "Security Options"),
    ("shm-size", "", "bytes", "Size of /dev/shm"),
    ("sig-proxy", "", "", "Proxy received signals to the process (default true)"),
    ("stop-signal", "", "string", "Signal to stop the container"),
    ("stop-timeout", "", "int", "Timeout (in seconds) to stop a container"),
    ("sysctl", "", "map", "Sysctl options"),
    ("tmpfs", "", "list", "Mount a tmpfs directory"),
    ("tty", "t", "", "Allocate a pseudo-TTY"),
    ("ulimit", "", "ulimit", "Ulimit options"),
    ("user", "u", "string", "Username or UID (format: <name|uid>[:<group|gid>])"),
    ("userns", "", "string", "User namespace to use"),
    ("uts", "", "string", "UTS namespace to use"),
    ("volume", "v", "list", "Bind mount a volume"),
    ("volumes-from", "", "list", "Mount volumes from the specified container(s)"),
    ("workdir", "w", "string", "Working directory inside the container"),
)
_RUN_ONLY = ("detach", "detach-keys", "sig-proxy")
_HIDDEN_ALIASES = {"net": "network", "net-alias": "network-alias", "dns-opt": "dns-option"}
_TRUE_BY_DEFAULT = ("sig-proxy", "disable-content-trust")
# docker flags budu does not implement: refused by name rather than as unknown
_UNSUPPORTED = (
    "blkio-weight", "blkio-weight-device", "cpu-count", "cpu-percent", "cpu-rt-period", "cpu-rt-runtime",
    "device-read-bps", "device-read-iops", "device-write-bps", "device-write-iops", "gpus", "io-maxbandwidth",
    "io-maxiops", "isolation", "kernel-memory", "link", "link-local-ip", "storage-opt", "use-api-socket",
    "volume-driver",
)
_ACCUMULATE = ("list", "map", "mount", "network", "ulimit")


def run_usage(command: str = "run") -> str:
    """docker's `run --help` / `create --help`, every flag on one line."""
    what = "Create and run a new container from an image" if command == "run" else "Create a new container"
    rows = []
    for long, short, kind, text in _flags(command):
        if long == "pull" and command != "run":
            text = text.replace("before running", "before creating")
        left = f"  -{short}, --{long}" if short else f"      --{long}"
        rows.append((f"{left} {kind}".rstrip(), text))
    width = max(len(left) for left, _ in rows) + 3
    lines = "".join(f"{left.ljust(width)}{text}\n" for left, text in rows)
    return (f"Usage:  budu {command} [OPTIONS] IMAGE [COMMAND] [ARG...]\n\n{what}\n\nOptions:\n{lines}")


def _flags(command: str):  # noqa: ANN202
    return [f for f in FLAGS if command == "run" or f[0] not in _RUN_ONLY]


# -- reading argv, as pflag does ------------------------------------------------------------------------

def parse_run_args(argv: list[str], command: str = "run", environ: dict | None = None,
                   stdout=None) -> RunRequest | None:  # noqa: ANN001
    """`budu run|create [OPTIONS] IMAGE [COMMAND] [ARG...]` -> the create body docker's CLI would send.

    `environ` is where `-e NAME` and env files look names up (default: budu's own environment).
    With --help, the usage goes to `stdout` (default sys.stdout) and the answer is None, as argparse
    commands print their help and end.
    """
    env = os.environ if environ is None else environ
    values, rest = _scan(list(argv), command)
    if values.get("help"):
        if stdout is None:
            import sys

            stdout = sys.stdout
        stdout.write(run_usage(command))
        return None
    if not rest:
        raise ConfigError(f"'budu {command}' requires at least 1 argument")
    req = _build(values, rest[0], rest[1:], env)
    check_body(req.config, req.host_config, req.networking_config, name=req.name)
    return req


def _scan(argv: list[str], command: str) -> tuple[dict, list[str]]:
    by_long = {f[0]: f for f in _flags(command)}
    by_short = {f[1]: f for f in by_long.values() if f[1]}
    values: dict = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            return values, argv[i:]
        if not arg.startswith("-") or arg == "-":
            return values, argv[i - 1:]
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if not name or name[0] in "-=":
                raise ConfigError(f"bad flag syntax: {arg}")
            flag = by_long.get(_HIDDEN_ALIASES.get(name, name))
            if flag is None:
                if name in _UNSUPPORTED:
                    raise ConfigError(f"--{name} is not supported by budu")
                raise ConfigError(f"unknown flag: --{name}")
            if not eq:
                if flag[2] == "":
                    value = "true"
                elif i < len(argv):
                    value, i = argv[i], i + 1
                else:
                    raise ConfigError(f"flag needs an argument: --{name}")
            _set(values, flag, value)
            if values.get("help"):
                return values, []
            continue
        shorts = arg[1:]
        while shorts:
            flag = by_short.get(shorts[0])
            if flag is None:
                raise ConfigError(f"unknown shorthand flag: '{shorts[0]}' in -{shorts}")
            if len(shorts) > 2 and shorts[1] == "=":
                value, shorts = shorts[2:], ""
            elif flag[2] == "":
                value, shorts = "true", shorts[1:]
            elif len(shorts) > 1:
                value, shorts = shorts[1:], ""
            elif i < len(argv):
                value, shorts, i = argv[i], "", i + 1
            else:
                raise ConfigError(f"flag needs an argument: '{shorts[0]}' in -{shorts}")
            _set(values, flag, value)
    return values, []


def _set(values: dict, flag: tuple, raw: str) -> None:
    long, short, kind, _ = flag
    try:
        if kind == "":
            value = go_bool(raw)
        elif kind in _ACCUMULATE:
            check = _CHECKS.get(long)
            values.setdefault(long, []).append(check(raw) if check else raw)
            return
        elif kind == "int":
            value = _go_int(raw)
        elif kind == "bytes":
            value = -1 if long == "memory-swap" and raw == "-1" else ram_in_bytes(raw)
        elif kind == "decimal":
            value = _nano_cpus(raw)
        elif kind == "duration":
            value = go_duration(raw)
        else:
            value = raw
    except ValueError as e:
        names = f"-{short}, --{long}" if short else f"--{long}"
        raise ConfigError(f"invalid argument {go_quote(raw)} for {go_quote(names)} flag: {e}") from None
    values[long] = value


# -- values: what one flag's argument may be (ValueError -> "invalid argument ... flag: ...") -------------

def _go_int(text: str) -> int:
    """strconv.ParseInt(text, 0, 64), pflag's int flags: 0x.. 0o.. 0b.. and 0.. (octal) as Go reads them."""
    s = text[1:] if text[:1] in "+-" else text
    base, digits = 10, s
    if s[:2].lower() in ("0x", "0o", "0b"):
        base, digits = {"x": 16, "o": 8, "b": 2}[s[1].lower()], s[2:]
    elif len(s) > 1 and s[0] == "0":
        base, digits = 8, s[1:]
    if not digits or any(c not in "0123456789abcdef"[:base] for c in digits.lower()):
        raise ValueError(f"strconv.ParseInt: parsing {go_quote(text)}: invalid syntax")
    n = int(digits, base) * (-1 if text[:1] == "-" else 1)
    if not -(1 << 63) <= n < (1 << 63):
        raise ValueError(f"strconv.ParseInt: parsing {go_quote(text)}: value out of range")
    return n


def _dec_int(text: str, func: str = "ParseInt", signed: bool = True, bits: int = 64) -> int:
    """strconv.ParseInt/ParseUint(text, 10, bits) with Go's messages."""
    s = text[1:] if signed and text[:1] in "+-" else text
    if not s or not s.isascii() or not s.isdigit():
        raise ValueError(f"strconv.{func}: parsing {go_quote(text)}: invalid syntax")
    n = int(text) if signed else int(s)
    lo, hi = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
    if not lo <= n < hi:
        raise ValueError(f"strconv.{func}: parsing {go_quote(text)}: value out of range")
    return n


def ram_in_bytes(text: str) -> int:
    """go-units RAMInBytes: `512m`, `1.5g`, `1GiB`, `64mb`, `100 k`; binary multiples, case-insensitive."""
    sep = max(text.rfind(c) for c in "0123456789. ")
    if sep == -1:
        raise ValueError(f"invalid size: '{text}'")
    num, suffix = (text[:sep + 1], text[sep + 1:]) if text[sep] != " " else (text[:sep], text[sep + 1:])
    try:
        if not num or any(c not in "0123456789.eE+-" for c in num):
            raise ValueError
        size = float(num)
    except ValueError:
        raise ValueError(f"strconv.ParseFloat: parsing {go_quote(num)}: invalid syntax") from None
    if size < 0:
        raise ValueError(f"invalid size: '{text}'")
    low = suffix.lower()
    if low and low != "b":
        mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}.get(low[0])
        if mult is None or len(low) > 3 or (len(low) == 2 and low[1] != "b") or (len(low) == 3 and low[1:] != "ib"):
            raise ValueError(f"invalid suffix: '{low}'")
        size *= mult
    if size >= 1 << 63:
        raise ValueError(f"invalid size: '{text}'")
    return int(size)


def _nano_cpus(text: str) -> int:
    """--cpus: a rational number of CPUs (`1.5`, `3/2`) to billionths, exactly, as docker's NanoCPUs."""
    from fractions import Fraction

    try:
        if not text or any(c.isspace() or c == "_" for c in text):
            raise ValueError
        nano = Fraction(text) * 1_000_000_000
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"failed to parse {text} as a rational number") from None
    if nano.denominator != 1:
        raise ValueError("value is too precise")
    return int(nano)


_DURATION_UNITS = {"ns": 1, "us": 1000, "\u00b5s": 1000, "\u03bcs": 1000, "ms": 10**6, "s": 10**9,
                   "m": 60 * 10**9, "h": 3600 * 10**9}


def go_duration(text: str) -> int:
    """Go's time.ParseDuration (`30s`, `1m30s`, `500ms`, `1.5h`) to nanoseconds."""
    s = text[1:] if text[:1] in "+-" else text
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"time: invalid duration {go_quote(text)}")
    total = 0
    while s:
        j = 0
        while j < len(s) and s[j] in "0123456789":
            j += 1
        whole, s = s[:j], s[j:]
        frac = ""
        if s.startswith("."):
            k = 1
            while k < len(s) and s[k] in "0123456789":
                k += 1
            frac, s = s[1:k], s[k:]
        elif not whole:
            raise ValueError(f"time: invalid duration {go_quote(text)}")
        if not whole and not frac:
            raise ValueError(f"time: invalid duration {go_quote(text)}")
        k = 0
        while k < len(s) and s[k] not in ".0123456789":
            k += 1
        unit, s = s[:k], s[k:]
        if not unit:
            raise ValueError(f"time: missing unit in duration {go_quote(text)}")
        if unit not in _DURATION_UNITS:
            raise ValueError(f"time: unknown unit {go_quote(unit)} in duration {go_quote(text)}")
        mult = _DURATION_UNITS[unit]
        total += int(whole or 0) * mult + (int(frac) * mult // 10 ** len(frac) if frac else 0)
    if total >= 1 << 63:
        raise ValueError(f"time: invalid duration {go_quote(text)}")
    return -total if text[:1] == "-" else total


def _check_env(value: str) -> str:
    if not value.partition("=")[0]:
        raise ValueError(f"invalid environment variable: {value}")
    return value


def _check_label(value: str) -> str:
    if not value.partition("=")[0].strip():
        raise ValueError(f"invalid label '{value}': empty name")
    return value


def _check_attach(value: str) -> str:
    if value.lower() not in ("stdin", "stdout", "stderr"):
        raise ValueError("valid streams are STDIN, STDOUT and STDERR")
    return value.lower()


def _ip_string(addr) -> str:  # noqa: ANN001
    """Go's net.IP.String(): IPv4-mapped IPv6 addresses print as IPv4."""
    mapped = getattr(addr, "ipv4_mapped", None)
    return str(mapped or addr)


def _check_dns(value: str) -> str:
    addr = parse_ip(value.strip())
    if addr is None:
        raise ValueError(f"IP address is not correctly formatted: {value}")
    return _ip_string(addr)


def _check_dns_search(value: str) -> str:
    value = value.strip(" ")
    if value == ".":
        return value
    domain = value.rstrip()
    domain = domain[:-1] if domain.endswith(".") else domain
    labels = domain.split(".")
    ok = (any(c.isascii() and c.isalpha() for c in value) and len(domain) < 255
          and all(lbl and lbl.isascii() and lbl.replace("-", "").isalnum() and lbl[0] != "-" and lbl[-1] != "-"
                  for lbl in labels))
    if not ok:
        raise ValueError(f"{value} is not a valid domain")
    return domain


def _check_extra_host(value: str) -> str:
    host, sep, addr = value.partition("=")
    if not sep:
        host, sep, addr = value.partition(":")
    if not sep or not host or ":" in host:
        raise ValueError(f"bad format for add-host: {go_quote(value)}")
    if addr != "host-gateway":
        if len(addr) > 2 and addr[0] == "[" and addr[-1] == "]":
            addr = addr[1:-1]
        if parse_ip(addr.strip()) is None:
            raise ValueError(f"invalid IP address in add-host: {go_quote(addr)}")
    return f"{host}:{addr}"


_ULIMITS = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
            "rtprio", "rttime", "sigpending", "stack")


def _check_ulimit(value: str) -> dict:
    name, sep, limits = value.partition("=")
    if not sep:
        raise ValueError(f"invalid ulimit argument: {value}")
    if name not in _ULIMITS:
        raise ValueError(f"invalid ulimit type: {name}")
    parts = limits.split(":")
    if len(parts) > 2:
        raise ValueError(f"too many limit value arguments - {limits}, can only have up to two, `soft[:hard]`")
    hard = _dec_int(parts[1]) if len(parts) == 2 else None
    soft = _dec_int(parts[0])
    hard = soft if hard is None else hard
    if hard != -1 and soft > hard:
        raise ValueError(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
    return {"Name": name, "Hard": hard, "Soft": soft}


_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
            "kernel.shmmni", "kernel.shm_rmid_forced")


def _check_sysctl(value: str) -> str:
    key, sep, _ = value.partition("=")
    if not sep or not (key in _SYSCTLS or key.startswith(("net.", "fs.mqueue."))):
        raise ValueError(f"sysctl '{value}' is not allowed")
    return value


def _check_cgroup_rule(value: str) -> str:
    import re

    if not re.fullmatch(r"[acb] ([0-9]+|\*):([0-9]+|\*) [rwm]{1,3}", value):
        raise ValueError(f"invalid device cgroup format '{value}'")
    return value


def _has_key_value(value: str) -> bool:
    """re.search(r"\w+=\w+", value, re.ASCII), without importing re for every `--network`."""
    def word(ch: str) -> bool:
        return ch.isascii() and (ch.isalnum() or ch == "_")

    return any(ch == "=" and 0 < i < len(value) - 1 and word(value[i - 1]) and word(value[i + 1])
               for i, ch in enumerate(value))


def _check_network(value: str) -> dict:
    """`NAME` or docker's long syntax `name=NET,alias=A,ip=IP,ip6=IP,mac-address=M,driver-opt=K=V`."""
    if not _has_key_value(value):
        return {"Target": value}
    import csv

    net: dict = {"Target": ""}
    for fld in next(csv.reader([value])):
        key, sep, val = fld.lower().partition("=")  # docker lowercases the whole field
        key, val = key.strip(), val.strip()
        if not sep or not key:
            raise ValueError(f"invalid field {fld}")
        if key == "name":
            net["Target"] = val
        elif key == "alias":
            net.setdefault("Aliases", []).append(val)
        elif key in ("ip", "ip6", "mac-address"):
            net[{"ip": "IPv4Address", "ip6": "IPv6Address", "mac-address": "MacAddress"}[key]] = val
        elif key == "driver-opt":
            k, sep, v = val.partition("=")
            if not sep or not k:
                raise ValueError("invalid key value pair format in driver options")
            net.setdefault("DriverOpts", {})[k.strip()] = v.strip()
        else:
            raise ValueError(f"invalid field key {key}")
    if not net["Target"]:
        raise ValueError("network name/id is not specified")
    return net


def _check_mount(value: str) -> dict:
    """--mount's CSV (docker/cli opts/mount.go) -> an API Mount."""
    import csv

    m: dict = {"Type": "volume"}
    bind: dict = {}
    vol: dict = {}
    tmpfs: dict = {}
    used = set()
    for fld in next(csv.reader([value]), []):
        key, sep, val = fld.partition("=")
        if not sep:
            if key in ("readonly", "ro"):
                m["ReadOnly"] = True
            elif key == "volume-nocopy":
                vol["NoCopy"] = True
                used.add("volume")
            elif key == "bind-nonrecursive":
                bind["NonRecursive"] = True
                used.add("bind")
            else:
                raise ValueError(f"invalid field '{fld}' must be a key=value pair")
            continue
        if key == "type":
            m["Type"] = val.lower()
        elif key in ("source", "src"):
            m["Source"] = os.path.abspath(val) if val == "." or val.startswith("./") else val
        elif key in ("target", "dst", "destination"):
            m["Target"] = val
        elif key in ("readonly", "ro", "bind-nonrecursive", "volume-nocopy"):
            try:
                flag = go_bool(val)
            except ValueError:
                raise ValueError(f"invalid value for {key}: {val}") from None
            if key == "bind-nonrecursive":
                bind["NonRecursive"] = flag
                used.add("bind")
            elif key == "volume-nocopy":
                vol["NoCopy"] = flag
                used.add("volume")
            else:
                m["ReadOnly"] = flag
        elif key == "consistency":
            m["Consistency"] = val.lower()
        elif key == "bind-propagation":
            bind["Propagation"] = val.lower()
            used.add("bind")
        elif key in ("volume-label", "volume-opt"):
            k, _, v = val.partition("=")
            if k:
                (vol.setdefault("Labels", {}) if key == "volume-label"
                 else vol.setdefault("DriverConfig", {}).setdefault("Options", {}))[k] = v
            used.add("volume")
        elif key == "volume-driver":
            vol.setdefault("DriverConfig", {})["Name"] = val
            used.add("volume")
        elif key == "volume-subpath":
            vol["Subpath"] = val
            used.add("volume")
        elif key == "tmpfs-size":
            try:
                tmpfs["SizeBytes"] = ram_in_bytes(val)
            except ValueError:
                raise ValueError(f"invalid value for {key}: {val}") from None
            used.add("tmpfs")
        elif key == "tmpfs-mode":
            if not val or any(c not in "01234567" for c in val) or int(val, 8) >= 1 << 32:
                raise ValueError(f"invalid value for {key}: {val}")
            tmpfs["Mode"] = int(val, 8)
            used.add("tmpfs")
        else:
            raise ValueError(f"unexpected key '{key}' in '{fld}'")
    if not m["Type"]:
        raise ValueError("type is required")
    if not m.get("Target"):
        raise ValueError("target is required")
    for kind in ("volume", "bind", "tmpfs"):
        if kind in used and m["Type"] != kind:
            raise ValueError(f"cannot mix '{kind}-*' options with mount type '{m['Type']}'")
    if bind:
        m["BindOptions"] = {k: v for k, v in bind.items() if v}
    if "volume" in used:
        vol.setdefault("DriverConfig", {})
        m["VolumeOptions"] = {k: v for k, v in vol.items() if v or k == "DriverConfig"}
    if tmpfs:
        m["TmpfsOptions"] = {k: v for k, v in tmpfs.items() if v}
    if not m.get("ReadOnly"):
        m.pop("ReadOnly", None)
    if not m.get("Source"):
        m.pop("Source", None)
    return m


_CHECKS = {
    "env": _check_env, "label": _check_label, "attach": _check_attach, "dns": _check_dns,
    "dns-search": _check_dns_search, "add-host": _check_extra_host, "ulimit": _check_ulimit,
    "sysctl": _check_sysctl, "device-cgroup-rule": _check_cgroup_rule, "network": _check_network,
    "mount": _check_mount,
}


# -- the body ---------------------------------------------------------------------------------------------

def _build(v: dict, image: str, args: list[str], env) -> RunRequest:  # noqa: ANN001
    """The flag values `v` (by long name; only the flags given) -> the request."""
    _check_image(image)
    binds, volumes = _volumes(v.get("volume", []))
    exposed, bindings = _ports(v.get("publish", []), v.get("expose", []))
    config = _config(v, image, args, env, volumes, exposed)
    host = _host_config(v, binds, bindings)
    pull = v.get("pull", "missing")
    if pull not in ("always", "missing", "never"):
        raise ConfigError(f"invalid pull option: '{pull}': must be one of \"always\", \"missing\" or \"never\"")
    if "detach-keys" in v:
        detach_key_bytes(v["detach-keys"])
    name = v.get("name") or None
    return RunRequest(
        image=image, config=config, host_config=host, networking_config={"EndpointsConfig": _endpoints(v)},
        name=name[1:] if name and name.startswith("/") else name, detach=v.get("detach", False),
        rm=v.get("rm", False), pull=pull, detach_keys=v.get("detach-keys"), sig_proxy=v.get("sig-proxy", True),
        platform=v.get("platform") or None, runtime=v.get("runtime") or None, cidfile=v.get("cidfile") or None,
        quiet=v.get("quiet", False))


def _config(v: dict, image: str, args: list[str], env, volumes: dict, exposed: dict) -> dict:  # noqa: ANN001
    attach, stdin = v.get("attach", []), v.get("interactive", False)
    config = {
        "Hostname": v.get("hostname", ""), "Domainname": v.get("domainname", ""), "User": v.get("user", ""),
        "AttachStdin": "stdin" in attach or stdin,
        "AttachStdout": "stdout" in attach or not attach, "AttachStderr": "stderr" in attach or not attach,
        "Tty": v.get("tty", False), "OpenStdin": stdin, "StdinOnce": False,
        "Env": _env(v.get("env-file", []), v.get("env", []), env) or None,
        "Cmd": args or None, "Image": image, "Volumes": volumes, "WorkingDir": v.get("workdir", ""),
        "Entrypoint": [v["entrypoint"]] if "entrypoint" in v else None,  # --entrypoint= clears: [""]
        "Labels": _labels(v.get("label-file", []), v.get("label", [])),
    }
    config["StdinOnce"] = config["OpenStdin"] and config["AttachStdin"]  # stdin closes when the client goes
    if v.get("detach"):
        if attach:
            raise ConfigError("conflicting options: cannot specify both --attach and --detach")
        config.update(AttachStdin=False, AttachStdout=False, AttachStderr=False, StdinOnce=False)
    if v.get("stop-signal"):
        config["StopSignal"] = v["stop-signal"]
    if "stop-timeout" in v:
        config["StopTimeout"] = v["stop-timeout"]
    health = _healthcheck(v)
    if health is not None:
        config["Healthcheck"] = health
    if exposed:
        config["ExposedPorts"] = exposed
    return config


def _host_config(v: dict, binds: list[str], bindings: dict) -> dict:
    security, masked = _security_opts(v.get("security-opt", []))
    restart = restart_policy(v.get("restart", "no"))
    if v.get("rm") and restart["Name"] not in ("", "no"):
        raise ConfigError("conflicting options: cannot specify both --restart and --rm")
    log_opts = _kv_map(v.get("log-opt", []))
    if v.get("log-driver") == "none" and log_opts:
        raise ConfigError("invalid logging opts for driver none")
    for flag, what in (("pid", "PID"), ("uts", "UTS"), ("userns", "USER"), ("cgroupns", "CGROUP")):
        if not valid_ns_mode(flag, v.get(flag, "")):
            raise ConfigError(f"--{flag}: invalid {what} mode")
    swappiness = v.get("memory-swappiness", -1)
    if swappiness != -1 and not 0 <= swappiness <= 100:
        raise ConfigError(f"invalid value: {swappiness}. Valid memory swappiness range is 0-100")
    host = {
        "Binds": binds or None, "ContainerIDFile": v.get("cidfile", ""),
        "LogConfig": {"Type": v.get("log-driver", ""), "Config": log_opts},
        "NetworkMode": v["network"][0]["Target"] if v.get("network") else "default",
        "PortBindings": bindings, "RestartPolicy": restart,
        "AutoRemove": v.get("rm", False), "CapAdd": _caps(v.get("cap-add")), "CapDrop": _caps(v.get("cap-drop")),
        "CgroupnsMode": v.get("cgroupns", ""),
        "Dns": v.get("dns", []), "DnsOptions": v.get("dns-option", []), "DnsSearch": v.get("dns-search", []),
        "ExtraHosts": v.get("add-host"), "GroupAdd": v.get("group-add"), "IpcMode": v.get("ipc", ""),
        "OomScoreAdj": v.get("oom-score-adj", 0), "PidMode": v.get("pid", ""),
        "Privileged": v.get("privileged", False), "PublishAllPorts": v.get("publish-all", False),
        "ReadonlyRootfs": v.get("read-only", False), "SecurityOpt": security, "UTSMode": v.get("uts", ""),
        "UsernsMode": v.get("userns", ""), "ShmSize": v.get("shm-size", 0), "VolumesFrom": v.get("volumes-from"),
        # resources
        "CgroupParent": v.get("cgroup-parent", ""), "CpuShares": v.get("cpu-shares", 0),
        "Memory": v.get("memory", 0), "NanoCpus": v.get("cpus", 0),
        "CpuPeriod": v.get("cpu-period", 0), "CpuQuota": v.get("cpu-quota", 0),
        "CpusetCpus": v.get("cpuset-cpus", ""), "CpusetMems": v.get("cpuset-mems", ""),
        "Devices": [_device(d) for d in v.get("device", [])], "DeviceCgroupRules": v.get("device-cgroup-rule"),
        "MemoryReservation": v.get("memory-reservation", 0), "MemorySwap": v.get("memory-swap", 0),
        "MemorySwappiness": swappiness, "OomKillDisable": v.get("oom-kill-disable", False),
        "PidsLimit": v.get("pids-limit", 0), "Ulimits": _ulimits(v.get("ulimit", [])),
        "MaskedPaths": masked, "ReadonlyPaths": masked,
    }
    # fields docker leaves out unless set
    if v.get("tmpfs"):
        host["Tmpfs"] = {path: opts for path, _, opts in (t.partition(":") for t in v["tmpfs"])}
    if v.get("sysctl"):
        host["Sysctls"] = _kv_map(v["sysctl"])
    if v.get("mount"):
        host["Mounts"] = v["mount"]
    if "init" in v:
        host["Init"] = v["init"]
    if v.get("runtime"):
        host["Runtime"] = v["runtime"]
    if v.get("annotation"):
        host["Annotations"] = _kv_map(v["annotation"])
    return host


def _check_image(image: str) -> None:
    """docker's ParseAnyReference: a full image ID, or a reference in docker's grammar."""
    hexpart = image[7:] if image.startswith("sha256:") else image
    if len(hexpart) == 64 and all(c in "0123456789abcdef" for c in hexpart):
        return
    from budu.images import reference

    reference.parse(image)


def _kv_map(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def _read_kv_file(path: str, lookup) -> list[str]:  # noqa: ANN001
    """docker's env/label file: KEY=VALUE lines; `#` comments and blank lines skipped; a bare KEY is
    looked up (env files) or left out (label files)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"open {path}: {e.strerror.lower() if e.strerror else e}") from None
    out = []
    for n, raw in enumerate(data.split(b"\n"), 1):
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        try:
            line = raw.decode()
        except UnicodeDecodeError:
            raise ConfigError(f"invalid env file ({path}): invalid utf8 bytes at line {n}: "
                              f"[{' '.join(str(b) for b in raw)}]") from None
        line = (line[1:] if n == 1 and line.startswith("\ufeff") else line).lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, _ = line.partition("=")
        if not key:
            raise ConfigError(f"invalid env file ({path}): no variable name on line '{line}'")
        if " " in key or "\t" in key:
            raise ConfigError(f"invalid env file ({path}): variable '{key}' contains whitespaces")
        if sep:
            out.append(line)
        elif lookup is not None and key in lookup:
            out.append(f"{key}={lookup[key]}")
    return out


def read_env_file(path: str, environ: dict | None = None) -> list[str]:
    """An --env-file's `NAME=VALUE` entries (a bare NAME takes its value from `environ`, or is left out)."""
    return _read_kv_file(path, os.environ if environ is None else environ)


def _env(files: list[str], flags: list[str], env) -> list[str]:  # noqa: ANN001
    """Env files, then -e; `-e NAME` takes NAME's value from `env`, or stays bare when unset (docker
    sends it so, and the daemon then unsets NAME from the image's env).  A name given twice keeps its
    first place and its last value, which is what the container ends up with under docker too."""
    entries = [e for path in files for e in _read_kv_file(path, env)]
    for item in flags:
        if "=" not in item and item in env:
            item = f"{item}={env[item]}"
        entries.append(item)
    merged: dict[str, str] = {}
    for item in entries:
        merged[item.partition("=")[0]] = item
    return list(merged.values())


def _labels(files: list[str], flags: list[str]) -> dict:
    return _kv_map([e for path in files for e in _read_kv_file(path, None)] + flags)


def _healthcheck(v: dict) -> dict | None:
    keys = (("health-interval", "Interval"), ("health-timeout", "Timeout"), ("health-start-period", "StartPeriod"),
            ("health-start-interval", "StartInterval"), ("health-retries", "Retries"))
    given = bool(v.get("health-cmd")) or any(v.get(flag) for flag, _ in keys)
    if v.get("no-healthcheck"):
        if given:
            raise ConfigError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not given:
        return None
    health: dict = {"Test": ["CMD-SHELL", v["health-cmd"]]} if v.get("health-cmd") else {}
    for flag, key in keys:
        if v.get(flag, 0) < 0:
            raise ConfigError(f"--{flag} cannot be negative")
        if v.get(flag):
            health[key] = v[flag]
    return health


def restart_policy(text: str) -> dict:
    if not text:
        return {"Name": "", "MaximumRetryCount": 0}
    name, sep, count = text.partition(":")
    if sep and not name:
        raise ConfigError("invalid restart policy format: no policy provided before colon")
    try:
        retries = _dec_int(count) if count else 0
    except ValueError:
        raise ConfigError("invalid restart policy format: maximum retry count must be an integer") from None
    return {"Name": name, "MaximumRetryCount": retries}


def _caps(names: list[str] | None) -> list[str] | None:
    """As docker's CLI stores them: upper case, CAP_ prefixed (but ALL), sorted, once each."""
    if not names:
        return None
    return sorted({n.upper() if n.upper() == "ALL" else "CAP_" + n.upper().removeprefix("CAP_") for n in names})


def _ulimits(items: list[dict]) -> list[dict]:
    by_name = {u["Name"]: u for u in items}  # a later --ulimit for the same name wins
    return [by_name[n] for n in sorted(by_name)]


def _security_opts(opts: list[str]) -> tuple[list[str] | None, list[str] | None]:
    """Checked as docker's CLI does; a seccomp profile file is read and sent inline, compacted JSON.
    `systempaths=unconfined` becomes empty MaskedPaths/ReadonlyPaths and is not sent."""
    out, masked = [], None
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep and key != "no-new-privileges":
            key, sep, value = opt.partition(":")
        if (not sep or not value) and key != "no-new-privileges":
            raise ConfigError(f"Invalid --security-opt: {go_quote(opt)}")
        if key == "seccomp" and value not in ("builtin", "unconfined"):
            opt = "seccomp=" + _seccomp_profile(value)
        if opt == "systempaths=unconfined":
            masked = []
            continue
        out.append(opt)
    return (out if out or masked is not None else None), masked


def _seccomp_profile(path: str) -> str:
    import json

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        why = f"open {path}: {e.strerror.lower()}" if isinstance(e, OSError) and e.strerror else str(e)
        raise ConfigError(f"opening seccomp profile ({path}) failed: {why}") from None
    try:
        json.loads(text, parse_constant=_no_constant)
    except ValueError as e:
        raise ConfigError(f"compacting json for seccomp profile ({path}) failed: {e}") from None
    return _compact_json(text)


def _no_constant(name: str) -> None:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


def _compact_json(text: str) -> str:
    """Go's json.Compact: insignificant whitespace dropped, everything else byte for byte."""
    out, in_string, escaped = [], False, False
    for c in text:
        if in_string:
            out.append(c)
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
            out.append(c)
        elif c not in " \t\r\n":
            out.append(c)
    return "".join(out)


def _device(spec: str) -> dict:
    """HOST[:CONTAINER][:PERMS], PERMS from rwm (docker's validateLinuxPath + parseLinuxDevice)."""
    if spec.count(":") > 2 or not spec.split(":")[0]:
        raise ConfigError(f"bad format for path: {spec}")
    parts = spec.split(":")
    src, dst, perms = parts[0], "", "rwm"
    if len(parts) == 1:
        src = clean_path(src)
        target = src
    elif len(parts) == 2 and _device_mode(parts[1]):
        src, perms, target = clean_path(src), parts[1], src
    elif len(parts) == 2:
        target, dst = parts[1], clean_path(parts[1])
    else:
        target, dst, perms = parts[1], parts[1], parts[2]
        if not _device_mode(perms):
            raise ConfigError(f"bad mode specified: {perms}")
    if not target.startswith("/"):
        raise ConfigError(f"{target} is not an absolute path")
    return {"PathOnHost": src, "PathInContainer": dst or src, "CgroupPermissions": perms}


def _device_mode(mode: str) -> bool:
    return bool(mode) and all(c in "rwm" for c in mode) and len(set(mode)) == len(mode)


def _volumes(specs: list[str]) -> tuple[list[str], dict]:
    """-v: SRC:DST[:OPTS] binds go to HostConfig.Binds (a `.`-relative host path made absolute), a lone
    DST is an anonymous volume in Config.Volumes; split as docker/cli's volumespec does."""
    binds, volumes = [], {}
    for spec in dict.fromkeys(specs):  # docker keeps each distinct spec once
        source, target = _split_volume_spec(spec)
        if not source:
            volumes[target] = {}
            continue
        host, sep, rest = spec.partition(":")
        if host.startswith("."):
            spec = os.path.abspath(host) + sep + rest
        binds.append(spec)
    return binds, volumes


def _split_volume_spec(spec: str) -> tuple[str, str]:
    if not spec:
        raise ConfigError("invalid empty volume spec")
    if len(spec) <= 2:
        return "", spec
    fields, buf = [], ""
    for c in spec + "\0":
        if c == ":" and len(buf) == 1 and buf.isascii() and buf.isalpha():  # a Windows drive letter
            buf += c
        elif c in ":\0":
            if not buf:
                raise ConfigError(f"invalid spec: {spec}: empty section between colons")
            if len(fields) == 2 and c == ":":
                raise ConfigError(f"invalid spec: {spec}: too many colons")
            fields.append(buf)
            buf = ""
        else:
            buf += c
    return ("", fields[0]) if len(fields) == 1 else (fields[0], fields[1])


def _ports(publish: list[str], expose: list[str]) -> tuple[dict, dict]:
    """-p `[ip:][hostPort:]containerPort[/proto]` (ranges too) or `target=,published=,protocol=`, and
    --expose `port[-end][/proto]`, as go-connections/nat parses them."""
    exposed: dict = {}
    bindings: dict = {}
    for spec in publish:
        for port, binding in _port_spec(_standard_notation(spec)):
            exposed[port] = {}
            bindings.setdefault(port, []).append(binding)
    for spec in expose:
        if ":" in spec:
            raise ConfigError(f"invalid port format for --expose: {spec}")
        port, _, proto = spec.partition("/")
        try:
            start, end = _port_range(port)
        except ValueError as e:
            raise ConfigError(f"invalid range format for --expose: {spec}, error: {e}") from None
        for p in range(start, end + 1):
            exposed[f"{p}/{proto or 'tcp'}"] = {}
    return exposed, bindings


def _standard_notation(spec: str) -> str:
    if "=" not in spec:
        return spec
    params = {"protocol": "tcp"}
    for param in spec.split(","):
        key, sep, value = param.partition("=")
        if not sep or not key:
            raise ConfigError(f"invalid publish opts format (should be name=value but got '{param}')")
        params[key] = value
    return f"{params.get('published', '')}:{params.get('target', '')}/{params['protocol']}"


def _port_range(text: str) -> tuple[int, int]:
    if not text:
        raise ValueError("empty string specified for ports")
    if "-" not in text:
        port = _dec_int(text, "ParseUint", signed=False, bits=16)
        return port, port
    parts = text.split("-")
    start = _dec_int(parts[0], "ParseUint", signed=False, bits=16)
    end = _dec_int(parts[1], "ParseUint", signed=False, bits=16)
    if end < start:
        raise ValueError(f"invalid range specified for port: {text}")
    return start, end


def _port_spec(raw: str) -> list[tuple[str, dict]]:
    parts = raw.split(":")
    ip, host_port, container = ("", "", parts[0]) if len(parts) == 1 else \
        ("", parts[0], parts[1]) if len(parts) == 2 else (":".join(parts[:-2]), parts[-2], parts[-1])
    container, _, proto = container.partition("/")
    if not container:
        raise ConfigError(f"no port specified: {raw}<empty>")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise ConfigError(f"invalid proto: {proto}")
    if ip.startswith("["):
        if not ip.endswith("]"):
            raise ConfigError(f"invalid IP address {ip}: address {ip}:: missing ']' in address")
        ip = ip[1:-1]
    if ip and parse_ip(ip) is None:
        raise ConfigError(f"invalid IP address: {ip}")
    try:
        start, end = _port_range(container)
    except ValueError:
        raise ConfigError(f"invalid containerPort: {container}") from None
    host_start = host_end = 0
    if host_port:
        try:
            host_start, host_end = _port_range(host_port)
        except ValueError:
            raise ConfigError(f"invalid hostPort: {host_port}") from None
        if end - start != host_end - host_start and end != start:
            raise ConfigError(f"invalid ranges specified for container and host Ports: {container} and {host_port}")
    count = end - start + 1
    out = []
    for i in range(count):
        hp = ""
        if host_port:
            hp = str(host_start + i) + (f"-{host_end}" if count == 1 and host_start != host_end else "")
        out.append((f"{start + i}/{proto}", {"HostIp": ip, "HostPort": hp}))
    return out


def _endpoints(v: dict) -> dict:
    """NetworkingConfig.EndpointsConfig: --network-alias, --ip, --ip6, --mac-address belong to the first
    network.  An endpoint with nothing in it is left out when there is a single network."""
    nets = v.get("network") or [{"Target": "default"}]
    endpoints: dict = {}
    user_defined = []
    for i, net in enumerate(nets):
        net = dict(net)
        if "network" in v:
            user_defined.append(user_defined_network(net["Target"]))
        if i == 0:
            for flag, key in (("network-alias", "Aliases"), ("ip", "IPv4Address"), ("ip6", "IPv6Address"),
                              ("mac-address", "MacAddress")):
                if v.get(flag) and net.get(key):
                    what = {"Aliases": "per-network alias", "IPv4Address": "per-network IPv4 address",
                            "IPv6Address": "per-network IPv6 address", "MacAddress": "per-network MAC address"}
                    raise ConfigError(f"conflicting options: cannot specify both --{flag} and {what[key]}")
                if v.get(flag):
                    net[key] = list(v[flag]) if key == "Aliases" else v[flag]
        target = net.pop("Target")
        if not target.strip():
            raise ConfigError("no name set for network")
        if net.get("Aliases") and not user_defined_network(target):
            raise ConfigError("network-scoped aliases are only supported for user-defined networks")
        ep: dict = {}
        if net.get("Aliases"):
            ep["Aliases"] = net["Aliases"]
        ipam = {k: net[k] for k in ("IPv4Address", "IPv6Address") if net.get(k)}
        if ipam:
            ep["IPAMConfig"] = ipam
        if net.get("MacAddress"):
            if not _valid_mac(net["MacAddress"]):
                raise ConfigError(f"{net['MacAddress']} is not a valid mac address")
            ep["MacAddress"] = net["MacAddress"]
        if net.get("DriverOpts"):
            ep["DriverOpts"] = net["DriverOpts"]
        if target in endpoints:
            raise ConfigError(f"network {go_quote(target)} is specified multiple times")
        if ep or len(nets) > 1:
            endpoints[target] = ep
    if True in user_defined and False in user_defined:
        raise ConfigError("conflicting options: cannot attach both user-defined and non-user-defined network-modes")
    return endpoints


def _valid_mac(text: str) -> bool:
    """net.ParseMAC: 6, 8 or 20 hex octets separated by ':' or '-'."""
    for sep in ":-":
        octets = text.split(sep)
        if len(octets) in (6, 8, 20) and all(len(o) == 2 and all(c in "0123456789abcdefABCDEF" for c in o)
                                              for o in octets):
            return True
    return False


def detach_key_bytes(keys: str) -> bytes:
    """--detach-keys (`ctrl-p,ctrl-q`, `a`, `DEL`) to the bytes to watch for, as moby/term reads them."""
    ctrl = "@abcdefghijklmnopqrstuvwxyz[\\]^_"
    out = bytearray()
    for key in keys.split(","):
        if len(key.encode()) == 1:
            out += key.encode()
        elif key.startswith("ctrl-") and len(key) == 6 and key[5] in ctrl:
            out.append(ctrl.index(key[5]))
        elif key == "DEL":
            out.append(127)
        else:
            raise ConfigError(f"Invalid detach keys ({keys}) provided")
    return bytes(out)


# -- what docker's daemon would refuse --------------------------------------------------------------------
