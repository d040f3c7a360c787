"""Registry credentials, kept where docker keeps them: `config.json` and its credential helpers.

The file is docker's own, so `docker login` and `budu login` see each other's logins:

    {"auths": {"127.0.0.1:5000": {"auth": "<base64 user:password>"}},
     "credsStore": "pass", "credHelpers": {"ghcr.io": "gh"}}

Where it is: `$BUDU_CONFIG/config.json` if BUDU_CONFIG is set (a directory, like DOCKER_CONFIG: for
budu-only credentials), else `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.

Keys are what docker files them under: the bare host (`127.0.0.1:5000`, `ghcr.io`) for every
registry but Docker Hub, whose key is `https://index.docker.io/v1/`.  Older keys with a scheme or a
path (`https://ghcr.io/v2/`) still match, as they do for docker.

A helper named for the host in `credHelpers`, else the `credsStore` one, is asked first — by running
`docker-credential-<name> get|store|erase` (the docker-credential-helpers protocol) — when its binary
is on PATH; a helper that is named but not installed is ignored and the file is used.  The file is
rewritten atomically (temporary file, fsync, rename), mode 0600, with every key budu does not
manage left as it was; writers on one machine take turns (flock on the directory).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

from budu.errors import BuduError, ConfigError

HUB_KEY = "https://index.docker.io/v1/"  # Docker Hub's key, in docker's config and its helpers
HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
CONFIG_NAME = "config.json"
_HELPER_TIMEOUT = 30.0


class CredentialsError(BuduError):
    """The config file or a credential helper could not be read or written."""


# -- where ------------------------------------------------------------------------------------------

def config_dir() -> str:
    """The directory of the config file: $BUDU_CONFIG, $DOCKER_CONFIG, or ~/.docker."""
    return os.environ.get("BUDU_CONFIG") or os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")


def config_path() -> str:
    return os.path.join(config_dir(), CONFIG_NAME)


def hostname(server: str) -> str:
    """docker's ConvertToHostname: `https://ghcr.io/v2/` -> `ghcr.io` (scheme and path dropped)."""
    server = server.strip()
    for scheme in ("http://", "https://"):
        if server.lower().startswith(scheme):
            server = server[len(scheme):]
            break
    return server.split("/", 1)[0].lower()


def server_key(server: str) -> str:
    """The key a registry's credentials are filed under: Hub's URL, or the bare host."""
    if not server or server.strip() == HUB_KEY:
        return HUB_KEY
    host = hostname(server)
    if not host:
        raise ConfigError(f"invalid registry address {server!r}")
    return HUB_KEY if host in HUB_HOSTS else host


# -- the three operations ---------------------------------------------------------------------------

def load(host: str) -> tuple[str, str] | None:
    """(username, password) for a registry host, or None if there are none."""
    key = server_key(host)
    config = _read(config_path())
    helper = _helper_for(config, key)
    if helper is not None:
        return _helper_get(helper, key)
    auths = config.get("auths")
    entry = _find_entry(auths, key) if isinstance(auths, dict) else None
    return _decode(entry, key) if entry is not None else None


def store(host: str, username: str, password: str) -> str:
    """Save credentials for `host`; returns where: the file's path or the helper's program name."""
    if not username or ":" in username:
        raise ConfigError("a username is required, and must not contain ':'")
    key = server_key(host)
    with _locked():
        path = config_path()
        config = _read(path)
        helper = _helper_for(config, key)
        auths = config.get("auths")
        if not isinstance(auths, dict):
            auths = config["auths"] = {}
        for old in _matching_keys(auths, key):
            del auths[old]  # one entry per registry, under today's key
        if helper is not None:
            _helper_run(helper, "store", json.dumps({"ServerURL": key, "Username": username, "Secret": password}))
            auths[key] = {}  # docker keeps an empty entry: it lists the registries logged in to
            where = helper
        else:
            auths[key] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode("ascii")}
            where = path
        _write(path, config)
    return where


def erase(host: str) -> bool:
    """Forget the credentials for `host`; False if there were none."""
    key = server_key(host)
    with _locked():
        path = config_path()
        config = _read(path)
        helper = _helper_for(config, key)
        auths = config.get("auths") if isinstance(config.get("auths"), dict) else {}
        keys = _matching_keys(auths, key)
        erased = False
        if helper is not None:
            try:
                _helper_run(helper, "erase", key)
                erased = True
            except CredentialsError:
                erased = False  # "credentials not found": nothing stored there
        for k in keys:
            del auths[k]
        if keys:
            _write(path, config)
        return erased or bool(keys)


def credentials(host: str) -> tuple[str, str] | None:
    """The `credentials` callback for Registry: what `budu login` (or `docker login`) stored."""
    return load(host)


# -- the file ---------------------------------------------------------------------------------------

def _read(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise CredentialsError(f"cannot read {path}: {e.strerror}") from None
    if not text.strip():
        return {}
    try:
        config = json.loads(text)
    except ValueError as e:
        raise CredentialsError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}): fix or remove it") from None
    if not isinstance(config, dict):
        raise CredentialsError(f"{path} is not a JSON object: fix or remove it")
    return config


def _write(path: str, config: dict) -> None:
    """Replace the file atomically; a symlinked config.json is written through to its target."""
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=directory)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(config, f, indent="\t")
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Serialize read-modify-write of the file between processes (flock on its directory: no lock
    file is left next to docker's config)."""
    directory = config_dir()
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise CredentialsError(f"cannot use {directory}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _matching_keys(auths: dict, key: str) -> list[str]:
    """The entries for a registry: its key, and legacy spellings (`https://host`, `http://host/v2/`)."""
    out = [key] if key in auths else []
    for k in auths:
        if k != key and isinstance(k, str) and server_key(k) == key:
            out.append(k)
    return out


def _find_entry(auths: dict, key: str) -> dict | None:
    for k in _matching_keys(auths, key):
        entry = auths[k]
        if isinstance(entry, dict) and (entry.get("auth") or entry.get("username")):
            return entry
    return None


def _decode(entry: dict, key: str) -> tuple[str, str] | None:
    if entry.get("auth"):
        try:
            raw = base64.b64decode(str(entry["auth"]), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise CredentialsError(f"the credentials for {key} in {config_path()} are not valid base64") from None
        user, sep, password = raw.partition(":")
        if not sep or not user:
            raise CredentialsError(f"the credentials for {key} in {config_path()} are not user:password")
        return user, password
    if entry.get("username"):  # very old files kept them in clear
        return str(entry["username"]), str(entry.get("password") or "")
    return None


# -- credential helpers -----------------------------------------------------------------------------

def _helper_for(config: dict, key: str) -> str | None:
    """The helper program for `key` if one is configured and installed (else the file is used)."""
    helpers = config.get("credHelpers") if isinstance(config.get("credHelpers"), dict) else {}
    name = helpers.get(key) or helpers.get(hostname(key)) or config.get("credsStore")
    if not isinstance(name, str) or not name:
        return None
    program = f"docker-credential-{name}"
    return program if shutil.which(program) else None


def _helper_run(program: str, action: str, payload: str) -> str:
    try:
        p = subprocess.run([program, action], input=payload, capture_output=True, text=True,
                           timeout=_HELPER_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise CredentialsError(f"{program} {action} did not answer within {_HELPER_TIMEOUT:g}s") from None
    except OSError as e:
        raise CredentialsError(f"cannot run {program}: {e.strerror}") from None
    if p.returncode != 0:
        why = " ".join((p.stdout.strip() or p.stderr.strip() or f"exit status {p.returncode}").split())
        raise CredentialsError(f"{program} {action}: {why}")
    return p.stdout


def _helper_get(program: str, key: str) -> tuple[str, str] | None:
    try:
        out = _helper_run(program, "get", key)
    except CredentialsError as e:
        if "credentials not found" in str(e).lower():
            return None
        raise
    try:
        data = json.loads(out)
        user, secret = data.get("Username") or "", data.get("Secret") or ""
    except (ValueError, AttributeError):
        raise CredentialsError(f"{program} get answered something that is not its JSON") from None
    return (str(user), str(secret)) if user or secret else None
