"""Base images made on this host: busybox from the static busybox, Debian with debootstrap.

busybox is tested whole (contents, config, reproducibility, a container on it).  For Debian the
mirror detection is checked against apt's own view of the host's sources, and the real debootstrap
run (about 80 s on the reference machine: Debian's mirror through the host's apt configuration)
is part of the suite.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess

import pytest
from budutest import BUSYBOX
from test_image_archive import Budu, _closing, run_image, store_state

from budu.errors import ConfigError
from budu.images.bootstrap import (DEFAULT_MIRROR, PATH_ENV, apt_sources, bootstrap_busybox, bootstrap_debian,
                                   debootstrap_command, detect_mirror, is_static)
from budu.images.service import Images


def layer_dir(images: Images, chain_id: str) -> str:
    """The directory of a one-layer image's snapshot (a view of one layer is a bind of it)."""
    key = f"look-{os.urandom(4).hex()}"
    [m] = images.snapshots.view(key, chain_id)
    images.snapshots.remove(key)
    assert m.type == "bind"
    return m.source


def test_bootstrap_busybox(tmp_path):
    budu = Budu(str(tmp_path / "root"))
    image_id = budu("image", "bootstrap", "busybox").stdout.strip()
    assert budu("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout == f"busybox:latest {image_id[7:19]}\n"
    with _closing(budu.images()) as images:
        img = images.get("busybox")
        config = images.config(img)
        assert img.id == image_id and len(images.manifest(img)["layers"]) == 1
        root = layer_dir(images, img.chain_id)
    assert config["config"] == {"Env": [PATH_ENV], "Cmd": ["sh"]}
    assert config["os"] == "linux" and len(config["rootfs"]["diff_ids"]) == 1
    assert config["history"][0]["created_by"].startswith("budu image bootstrap busybox: BusyBox v")

    with open(BUSYBOX, "rb") as f:
        assert open(os.path.join(root, "bin/busybox"), "rb").read() == f.read()
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for a in set(applets) - {"busybox"}:
        assert os.readlink(os.path.join(root, "bin", a)) == "busybox", a
    modes = {d: stat.S_IMODE(os.lstat(os.path.join(root, d)).st_mode) for d in ("tmp", "root", "proc", "sys", "dev")}
    assert modes == {"tmp": 0o1777, "root": 0o700, "proc": 0o555, "sys": 0o555, "dev": 0o755}
    assert open(os.path.join(root, "etc/passwd")).read().startswith("root:x:0:0:root:/root:/bin/sh\n")
    assert "root:x:0:" in open(os.path.join(root, "etc/group")).read()

    out = run_image(budu.root, "busybox", tmp_path, ["sh", "-c", "echo $PATH; id -u; touch /tmp/x && echo ok"])
    assert out == f"{PATH_ENV[5:]}\n0\nok\n"


def test_bootstrap_busybox_is_reproducible_and_tags(tmp_path):
    a, b = Budu(str(tmp_path / "a")), Budu(str(tmp_path / "b"))
    first = a("image", "bootstrap", "busybox").stdout
    assert b("image", "bootstrap", "busybox", "--tag", "example.com/base/bb:1").stdout == first
    assert b.inspect("example.com/base/bb:1")["Id"] == first.strip()
    assert b("image", "bootstrap", "busybox").stdout == first  # again: nothing new, one more tag
    assert len(store_state(b.root)[1]) == 1  # one snapshot


def test_bootstrap_refuses_a_dynamic_busybox(tmp_path):
    images = Images(str(tmp_path / "root"))
    try:
        before = store_state(images.root)
        assert is_static(BUSYBOX) and not is_static("/bin/ls")
        with pytest.raises(ConfigError, match="/bin/ls is dynamically linked"):
            bootstrap_busybox(images, busybox="/bin/ls")
        with pytest.raises(ConfigError, match="is not an ELF executable"):
            bootstrap_busybox(images, busybox="/etc/passwd")
        assert store_state(images.root) == before
    finally:
        images.close()


# -- Debian -----------------------------------------------------------------------------------------

def write(path, text: str) -> None:  # noqa: ANN001
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def test_mirror_from_deb822_sources(tmp_path):
    write(tmp_path / "etc/apt/sources.list.d/debian.sources",
          "Types: deb\n# a comment\nURIs: http://security.debian.org/debian-security\nSuites: bookworm-security\n"
          "Components: main\n\n"
          "Types: deb-src deb\nURIs: http://ftp.fr.debian.org/debian/\nSuites: bookworm bookworm-updates\n"
          "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    write(tmp_path / "etc/apt/sources.list.d/a-disabled.sources",
          "Enabled: no\nTypes: deb\nURIs: http://disabled.example/debian\nSuites: bookworm\n")
    write(tmp_path / "etc/apt/sources.list.d/google.list.disabled", "deb http://ignored.example/debian x main\n")
    assert detect_mirror(str(tmp_path)) == "http://ftp.fr.debian.org/debian"
    assert [u for _, u, _ in apt_sources(str(tmp_path))] == [
        "http://security.debian.org/debian-security", "http://ftp.fr.debian.org/debian/"]


def test_mirror_from_one_line_sources(tmp_path):
    write(tmp_path / "etc/apt/sources.list",
          "# deb http://commented.example/debian bookworm main\n"
          "deb-src http://src-only.example/debian bookworm main\n"
          "deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] https://mirror.example.org/debian bookworm main\n")
    assert detect_mirror(str(tmp_path)) == "https://mirror.example.org/debian"
    write(tmp_path / "snap/etc/apt/sources.list",
          "deb http://snapshot.debian.org/archive/debian/20250520T000000Z bookworm main\n")
    assert detect_mirror(str(tmp_path / "snap")) == "http://snapshot.debian.org/archive/debian/20250520T000000Z"


def test_mirror_defaults_to_deb_debian_org(tmp_path):
    write(tmp_path / "etc/apt/sources.list.d/nodesource.list", "deb https://deb.nodesource.com/node_20.x nodistro main\n")
    assert detect_mirror(str(tmp_path)) == DEFAULT_MIRROR
    assert detect_mirror(str(tmp_path / "nothing-here")) == DEFAULT_MIRROR


def test_mirror_of_this_host_is_one_apt_uses():
    """apt itself is the referee: the mirror must be one that `apt-cache policy` lists."""
    mirror = detect_mirror()
    policy = subprocess.run(["apt-cache", "policy"], capture_output=True, text=True, check=True).stdout
    used = set(re.findall(r"^\s+\d+\s+(\S+)\s", policy, re.M))
    assert mirror in {u.rstrip("/") for u in used}, (mirror, used)


def test_debootstrap_command():
    assert debootstrap_command("bookworm", "/t/rootfs", "http://deb.debian.org/debian") == [
        "debootstrap", "--variant=minbase", "bookworm", "/t/rootfs", "http://deb.debian.org/debian"]
    assert debootstrap_command("trixie", "/t", "http://m/debian", arch="arm64")[2] == "--arch=arm64"
    with pytest.raises(ConfigError, match="invalid Debian suite"):
        debootstrap_command("../etc", "/t", "http://m/debian")
    with pytest.raises(ConfigError, match="invalid mirror"):
        debootstrap_command("bookworm", "/t", "--foreign")


@pytest.mark.timeout(900)
def test_bootstrap_debian_for_real(tmp_path):
    """debootstrap from the host's mirror (about 80 s here), one layer, and a container on it."""
    images = Images(str(tmp_path / "root"))
    try:
        img = bootstrap_debian(images, "bookworm")
        assert img.tags == ("docker.io/library/debian:bookworm",)
        config = images.config(img)
        assert config["config"]["Cmd"] == ["bash"] and len(config["rootfs"]["diff_ids"]) == 1
        root = layer_dir(images, img.chain_id)
        assert os.listdir(os.path.join(root, "dev")) == []
        assert sorted(os.listdir(os.path.join(root, "var/lib/apt/lists"))) in (["lock", "partial"], ["partial"])
        assert os.path.getsize(os.path.join(root, "etc/resolv.conf")) == 0
        assert os.listdir(os.path.join(images.root, "tmp")) == []
    finally:
        images.close()
    out = run_image(str(tmp_path / "root"), "debian:bookworm", tmp_path,
                    ["bash", "-c", "cat /etc/debian_version; dpkg-query -W -f '${Package}\\n' apt"])
    version, pkg = out.split()
    assert version.startswith("12.") and pkg == "apt"
    assert config["history"][0]["created_by"].startswith("debootstrap --variant=minbase bookworm <rootfs> http")
