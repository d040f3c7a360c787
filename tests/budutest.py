"""Helpers shared by every test directory (imported by name: tests/ is on sys.path through the
root conftest)."""

from __future__ import annotations

import os
import shutil
import subprocess

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def make_busybox_rootfs(dest: str) -> str:
    """A minimal root filesystem: static busybox, its applet links, passwd/group."""
    for d in ("bin", "proc", "sys", "dev", "etc", "tmp", "root", "home"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    shutil.copy2(BUSYBOX, os.path.join(dest, "bin/busybox"))
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for a in applets:
        link = os.path.join(dest, "bin", a)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(dest, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/sh\n")
    with open(os.path.join(dest, "etc/group"), "w") as f:
        f.write("root:x:0:\ntty:x:5:\nnogroup:x:65534:\n")
    return dest
