"""Credentials as docker keeps them (config.json and credential helpers), and `budu login`/`logout`
against registries behind Basic auth and behind a token server."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import sys

import pytest

from budu.images import auth
from budu.images.registry import Registry


def config(d) -> dict:
    return json.loads((d / "config.json").read_text())


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def budu(monkeypatch, capsys):
    """`budu ARGS` through the real entry point; stdin is `stdin` (not a terminal).  Returns (exit
    status, stdout, stderr)."""
    from budu.cli import main as cli

    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        rc = cli.main(list(args))
        out, err = capsys.readouterr()
        return rc, out, err

    return run


# -- the file -----------------------------------------------------------------------------------------

def test_store_load_erase_keep_the_rest_of_the_file(docker_config):
    docker_config.mkdir()
    theirs = {"auths": {"ghcr.io": {"auth": b64("bob:tok")}}, "psFormat": "table {{.ID}}",
              "HttpHeaders": {"X-Meta": "1"}}
    (docker_config / "config.json").write_text(json.dumps(theirs))
    assert auth.load("127.0.0.1:5000") is None
    assert auth.store("127.0.0.1:5000", "alice", "pa:ss") == str(docker_config / "config.json")
    c = config(docker_config)
    assert c["auths"]["127.0.0.1:5000"] == {"auth": b64("alice:pa:ss")}
    assert {k: v for k, v in c.items() if k != "auths"} == {"psFormat": "table {{.ID}}", "HttpHeaders": {"X-Meta": "1"}}
    assert c["auths"]["ghcr.io"] == theirs["auths"]["ghcr.io"]
    assert stat.S_IMODE(os.stat(docker_config / "config.json").st_mode) == 0o600
    assert auth.load("127.0.0.1:5000") == ("alice", "pa:ss")  # a password may hold ':'
    assert auth.credentials("ghcr.io") == ("bob", "tok")
    assert auth.erase("127.0.0.1:5000") is True
    assert auth.erase("127.0.0.1:5000") is False
    c = config(docker_config)
    assert "127.0.0.1:5000" not in c["auths"] and c["psFormat"] == "table {{.ID}}"
    assert [n for n in os.listdir(docker_config)] == ["config.json"]  # no temp or lock file left


def test_docker_hub_and_legacy_keys(docker_config):
    auth.store("docker.io", "alice", "pw")
    assert list(config(docker_config)["auths"]) == [auth.HUB_KEY]
    for host in ("docker.io", "index.docker.io", "registry-1.docker.io", auth.HUB_KEY):
        assert auth.load(host) == ("alice", "pw")
    # keys older docker versions wrote, with a scheme or a path, still count
    legacy = {"auths": {"https://reg.example:5000/v2/": {"auth": b64("u:p")}}}
    (docker_config / "config.json").write_text(json.dumps(legacy))
    assert auth.load("reg.example:5000") == ("u", "p")
    auth.store("reg.example:5000", "u", "new")
    assert config(docker_config)["auths"] == {"reg.example:5000": {"auth": b64("u:new")}}
    assert auth.server_key("HTTPS://Reg.Example:5000/") == "reg.example:5000"


def test_budu_config_comes_first(tmp_path, monkeypatch, docker_config):
    auth.store("r.example", "docker-user", "pw")
    monkeypatch.setenv("BUDU_CONFIG", str(tmp_path / "budu-config"))
    assert auth.load("r.example") is None
    auth.store("r.example", "budu-user", "pw")
    assert auth.load("r.example") == ("budu-user", "pw")
    assert config(docker_config)["auths"]["r.example"] == {"auth": b64("docker-user:pw")}


def test_a_broken_file_is_reported_not_overwritten(docker_config):
    docker_config.mkdir()
    (docker_config / "config.json").write_text("{not json")
    with pytest.raises(auth.CredentialsError, match="config.json is not valid JSON"):
        auth.load("r.example")
    with pytest.raises(auth.CredentialsError):
        auth.store("r.example", "u", "p")
    assert (docker_config / "config.json").read_text() == "{not json"


def test_a_symlinked_config_is_written_through(tmp_path, docker_config):
    docker_config.mkdir()
    real = tmp_path / "dotfiles" / "docker.json"
    real.parent.mkdir()
    real.write_text("{}")
    (docker_config / "config.json").symlink_to(real)
    auth.store("r.example", "u", "p")
    assert (docker_config / "config.json").is_symlink()
    assert json.loads(real.read_text())["auths"]["r.example"] == {"auth": b64("u:p")}


# -- credential helpers ---------------------------------------------------------------------------

@pytest.fixture
def fake_helper(tmp_path, monkeypatch):
    """`docker-credential-fake` on PATH, keeping what it is given in a JSON file (the protocol of
    docker-credential-helpers: get/store/erase, the server URL or a JSON document on stdin)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    db = tmp_path / "helper-db.json"
    db.write_text("{}")
    script = bindir / "docker-credential-fake"
    script.write_text(f"""#!{sys.executable}
import json, sys
db = {str(db)!r}
data = json.load(open(db))
action, payload = sys.argv[1], sys.stdin.read()
if action == "store":
    doc = json.loads(payload)
    data[doc["ServerURL"]] = [doc["Username"], doc["Secret"]]
elif action == "get":
    if payload.strip() not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    user, secret = data[payload.strip()]
    print(json.dumps({{"ServerURL": payload.strip(), "Username": user, "Secret": secret}}))
elif action == "erase":
    if data.pop(payload.strip(), None) is None:
        print("credentials not found in native keychain")
        sys.exit(1)
json.dump(data, open(db, "w"))
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return db


def test_creds_store_helper(docker_config, fake_helper):
    docker_config.mkdir()
    (docker_config / "config.json").write_text(json.dumps({"credsStore": "fake"}))
    assert auth.load("r.example") is None
    assert auth.store("r.example", "alice", "secret") == "docker-credential-fake"
    assert json.loads(fake_helper.read_text()) == {"r.example": ["alice", "secret"]}
    assert config(docker_config)["auths"] == {"r.example": {}}  # as docker: listed, no secret in the file
    assert auth.load("r.example") == ("alice", "secret")
    assert auth.erase("r.example") is True
    assert json.loads(fake_helper.read_text()) == {} and config(docker_config)["auths"] == {}
    assert auth.erase("r.example") is False


def test_cred_helpers_per_host_and_missing_helpers(docker_config, fake_helper):
    docker_config.mkdir()
    fake_helper.write_text(json.dumps({"ghcr.io": ["gh-user", "gh-token"]}))
    (docker_config / "config.json").write_text(json.dumps({
        "credHelpers": {"ghcr.io": "fake", "quay.io": "not-installed"},
        "auths": {"quay.io": {"auth": b64("q:from-file")}, "ghcr.io": {"auth": b64("stale:x")}},
    }))
    assert auth.load("ghcr.io") == ("gh-user", "gh-token")  # the helper wins over the file
    assert auth.load("quay.io") == ("q", "from-file")  # a helper that is not installed is ignored


# -- budu login / logout --------------------------------------------------------------------------

def test_login_and_logout(auth_registry, kit, budu, docker_config):
    host = auth_registry.host
    rc, out, err = budu("login", "-u", kit.USER, "-p", kit.PASSWORD, host)
    assert (rc, out) == (0, "Login Succeeded\n"), err
    lines = err.splitlines()
    assert lines[0] == "WARNING! Using --password via the CLI is insecure. Use --password-stdin."
    assert lines[1] == f"WARNING! Your password will be stored unencrypted in {docker_config / 'config.json'}."
    assert config(docker_config)["auths"][host] == {"auth": b64(f"{kit.USER}:{kit.PASSWORD}")}
    with Registry(host, credentials=auth.credentials) as reg:
        reg.login()  # what was stored lets a client in

    # no flags: the stored login is tried first
    rc, out, err = budu("login", host)
    assert (rc, out) == (0, "Authenticating with existing credentials...\nLogin Succeeded\n"), err

    rc, out, err = budu("logout", host)
    assert (rc, out) == (0, f"Removing login credentials for {host}\n")
    assert host not in config(docker_config)["auths"]
    rc, out, err = budu("logout", host)
    assert (rc, out) == (0, f"Not logged in to {host}\n")
    rc, out, err = budu("logout")
    assert (rc, out) == (0, "Not logged in to https://index.docker.io/v1/\n")


def test_login_with_password_stdin(auth_registry, kit, budu, docker_config):
    rc, out, err = budu("login", "-u", kit.USER, "--password-stdin", f"http://{auth_registry.host}/",
                        stdin=kit.PASSWORD + "\n")
    assert (rc, out) == (0, "Login Succeeded\n"), err
    assert "--password-stdin" not in err  # no warning for the safe way
    assert auth.load(auth_registry.host) == (kit.USER, kit.PASSWORD)
    rc, out, err = budu("login", "--password-stdin", auth_registry.host, stdin="x")
    assert rc == 1 and err == "Error: Must provide --username with --password-stdin\n"
    rc, out, err = budu("login", "-u", kit.USER, "-p", "x", "--password-stdin", auth_registry.host)
    assert rc == 1 and "--password and --password-stdin are mutually exclusive" in err


def test_wrong_password_stores_nothing(auth_registry, kit, budu, docker_config):
    host = auth_registry.host
    rc, out, err = budu("login", "-u", kit.USER, "-p", "wrong", host)
    assert rc == 1 and out == ""
    assert err.splitlines()[-1] == \
        f'Error response from daemon: Get "http://{host}/v2/": unauthorized: incorrect username or password'
    assert not (docker_config / "config.json").exists()
    # nor does it spoil a good login
    auth.store(host, kit.USER, kit.PASSWORD)
    rc, out, err = budu("login", "-u", kit.USER, "--password-stdin", host, stdin="wrong")
    assert rc == 1
    assert auth.load(host) == (kit.USER, kit.PASSWORD)


def test_login_without_a_terminal_or_credentials(auth_registry, budu):
    rc, out, err = budu("login", auth_registry.host)
    assert rc == 1 and err == "Error: Cannot perform an interactive login from a non TTY device\n"


def test_login_to_a_token_registry(token_registry, kit, budu):
    host = token_registry.host
    rc, out, err = budu("login", "-u", kit.USER, "-p", "wrong", host)
    assert rc == 1 and "unauthorized: incorrect username or password" in err
    assert auth.load(host) is None
    rc, out, err = budu("login", "-u", kit.USER, "--password-stdin", host, stdin=kit.PASSWORD)
    assert (rc, out) == (0, "Login Succeeded\n"), err
    assert any(user == kit.USER for user, _ in token_registry.tokens.issued)
    assert auth.load(host) == (kit.USER, kit.PASSWORD)
