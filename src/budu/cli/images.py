"""Image commands: pull, images (image ls), rmi (image rm), tag, image inspect."""

from __future__ import annotations

import argparse
import sys
import time

from budu.cli import format as fmt
from budu.cli.common import confirm, each
from budu.errors import BuduError, ConfigError


class _Parser(argparse.ArgumentParser):
    """argparse that fails with docker's one-line error and exit status 125... of docker's CLI: 1."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message}")


def _images():
    from budu.images.service import Images

    return Images()


def _short(image_id: str, no_trunc: bool = False) -> str:
    return image_id if no_trunc else image_id[7:19]


# -- pull -------------------------------------------------------------------------------------------

class _PlainProgress:
    """docker's non-terminal pull output: one line per layer event."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.last: dict[str, str] = {}

    def __call__(self, event: str, digest: str, current: int, total: int) -> None:
        if self.quiet:
            return
        short = digest[7:19]
        text = {"exists": "Already exists", "downloaded": "Download complete", "extract": "Extracting",
                "download": "Downloading"}.get(event)
        if text is None or self.last.get(digest) == text:
            return
        self.last[digest] = text
        print(f"{short}: {text}", flush=True)


def _rich_progress(quiet: bool):  # noqa: ANN202
    """Per-layer bars (bytes, speed) on a terminal, as docker draws them."""
    if quiet or not sys.stdout.isatty():
        return None
    try:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
    except ImportError:
        return None
    bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    transient=False)
    tasks: dict[str, int] = {}

    def report(event: str, digest: str, current: int, total: int) -> None:
        if event == "resolved" or event == "done":
            return
        short = digest[7:19]
        if digest not in tasks:
            tasks[digest] = bars.add_task(short, total=total or None)
        label = {"exists": f"{short}: Already exists", "download": f"{short}: Downloading",
                 "downloaded": f"{short}: Download complete", "extract": f"{short}: Extracting"}[event]
        bars.update(tasks[digest], description=label, completed=current if event == "download" else current,
                    total=total or None)

    return bars, report


def cmd_pull(argv: list[str]) -> int:
    p = _Parser(prog="budu pull", description="Download an image from a registry")
    p.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
    p.add_argument("--platform", help="Set platform if server is multi-platform capable")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("-a", "--all-tags", action="store_true", help="Download all tagged images in the repository")
    a = p.parse_args(argv)
    from budu.images import reference
    from budu.images.service import parse_platform

    ref = reference.parse(a.name)
    platform = parse_platform(a.platform) if a.platform else None
    explicit = ref.digest is not None or ":" in a.name.rsplit("/", 1)[-1]
    if a.all_tags and explicit:
        raise ConfigError("tag can't be used with --all-tags/-a")
    images = _images()
    try:
        if a.all_tags:
            names = [f"{ref.name}:{t}" for t in images.remote_tags(ref.name, credentials=_credentials())]
            if not names:
                raise BuduError(f"repository {ref.familiar_name()} has no tags")
        else:
            if not a.quiet and not explicit:
                print("Using default tag: latest")
            names = [a.name]
        newer = False
        for name in names:
            one = reference.parse(name)
            if not a.quiet:
                print(f"{one.tag or one.digest}: Pulling from {one.path}", flush=True)
            existed = _exists(images, name)
            image = _pull_one(images, name, platform, a.quiet)
            newer = newer or existed != image.id
            if not a.quiet:
                digest = image.repo_digests[0].split("@", 1)[1] if image.repo_digests else image.manifest_digest
                for rd in image.repo_digests:  # the digest of this repository, when it has several
                    if rd.startswith(one.name + "@"):
                        digest = rd.split("@", 1)[1]
                print(f"Digest: {digest}")
                if not a.all_tags:
                    status = "Downloaded newer image" if newer else "Image is up to date"
                    print(f"Status: {status} for {one.familiar()}")
    finally:
        images.close()
    if a.all_tags:
        if not a.quiet:
            print(f"Status: {'Downloaded newer image' if newer else 'Image is up to date'} for {ref.familiar_name()}")
        print(ref.name)
    else:
        print(f"{ref.name}:{ref.tag}" if ref.tag else f"{ref.name}@{ref.digest}")
    return 0


def _pull_one(images, name: str, platform, quiet: bool):  # noqa: ANN001, ANN202
    rich = _rich_progress(quiet)
    if rich:
        bars, report = rich
        with bars:
            return images.pull(name, platform=platform, progress=report, credentials=_credentials())
    return images.pull(name, platform=platform, progress=_PlainProgress(quiet), credentials=_credentials())


def _exists(images, name: str) -> str | None:  # noqa: ANN001
    try:
        return images.get(name).id
    except BuduError:
        return None


def _credentials():  # noqa: ANN202
    """Credentials as `budu login`/`docker login` stored them (budu.images.auth)."""
    from budu.images import auth

    return auth.credentials


# -- images -------------------------------------------------------------------------------------------

def _rows(images, show_digests: bool, no_trunc: bool) -> list[dict]:  # noqa: ANN001
    from budu.images import reference

    out = []
    for img in images.list():
        created = _created(images, img)
        base = {"ID": _short(img.id, no_trunc), "CreatedSince": fmt.ago(created),
                "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(created)) if created else "",
                "Size": fmt.human_size(img.size), "Containers": "N/A"}
        digests = {d.split("@")[0]: d.split("@")[1] for d in img.repo_digests}
        names = img.tags or tuple(f"{d.split('@')[0]}:<none>" for d in img.repo_digests) or ("<none>:<none>",)
        for t in names:
            repo, _, tag = t.rpartition(":")
            fam_repo = reference.parse(f"{repo}:x").familiar().rsplit(":", 1)[0] if repo != "<none>" else "<none>"
            out.append(dict(base, Repository=fam_repo, Tag=tag, Digest=digests.get(repo, "<none>")))
    return out


def _created(images, img) -> float | None:  # noqa: ANN001
    try:
        text = images.config(img).get("created")
    except (BuduError, OSError, ValueError):
        return None
    if not text:
        return None
    return parse_time(text)


def parse_time(text: str) -> float | None:
    """RFC 3339 with up to nanoseconds (what image configs carry) to a timestamp."""
    import datetime

    text = text.strip().replace("Z", "+00:00")
    main, dot, rest = text.partition(".")
    if dot:
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{main}.{digits[:6].ljust(6, '0')}{rest}"
    try:
        dt = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.timestamp()


def cmd_images(argv: list[str]) -> int:
    p = _Parser(prog="budu images", description="List images")
    p.add_argument("repository", nargs="?")
    p.add_argument("-a", "--all", action="store_true", help="Show all images")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("--digests", action="store_true", help="Show digests")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("-f", "--filter", action="append", default=[], help="Filter output based on conditions provided")
    a = p.parse_args(argv)
    images = _images()
    try:
        rows = _rows(images, a.digests, a.no_trunc)
    finally:
        images.close()
    if a.repository:
        repo, tag = a.repository, None
        if ":" in repo.rsplit("/", 1)[-1]:  # a tag, not a registry's port
            repo, _, tag = repo.rpartition(":")
        rows = [r for r in rows if r["Repository"] == repo and (tag is None or r["Tag"] == tag)]
    for f in a.filter:
        key, _, value = f.partition("=")
        if key == "reference":
            import fnmatch

            rows = [r for r in rows if fnmatch.fnmatch(f"{r['Repository']}:{r['Tag']}", value)
                    or fnmatch.fnmatch(r["Repository"], value)]
        elif key == "dangling":
            want = value.lower() == "true"
            rows = [r for r in rows if (r["Repository"] == "<none>") == want]
        else:
            raise ConfigError(f"invalid filter '{key}'")
    if a.quiet:
        seen = []
        for r in rows:
            if r["ID"] not in seen:
                seen.append(r["ID"])
        sys.stdout.write("".join(f"{i}\n" for i in seen))
        return 0
    if a.format:
        sys.stdout.write(fmt.format_rows(a.format, rows, {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID",
                                                          "CreatedSince": "CREATED", "Size": "SIZE", "Digest": "DIGEST",
                                                          "CreatedAt": "CREATED AT"}))
        return 0
    cols = ["REPOSITORY", "TAG"] + (["DIGEST"] if a.digests else []) + ["IMAGE ID", "CREATED", "SIZE"]
    table = [cols]
    for r in rows:
        table.append([r["Repository"], r["Tag"]] + ([r["Digest"]] if a.digests else [])
                     + [r["ID"], r["CreatedSince"], r["Size"]])
    sys.stdout.write(fmt.table(table))
    return 0


# -- rmi, tag, inspect -----------------------------------------------------------------------------------

def cmd_rmi(argv: list[str]) -> int:
    p = _Parser(prog="budu rmi", description="Remove one or more images")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-f", "--force", action="store_true", help="Force removal of the image")
    p.add_argument("--no-prune", action="store_true", help="Do not delete untagged parents")
    a = p.parse_args(argv)
    images = _images()
    try:
        users = _container_users(images)

        def remove(name: str) -> None:
            for what, value in images.remove(name, force=a.force, users=users):
                print(f"{what}: {value}")

        return each(a.images, remove)
    finally:
        images.close()


def _container_users(images) -> dict[str, str]:  # noqa: ANN001
    """image id -> a container made from it: images in use are not deleted."""
    return {r["image_id"]: r["id"] for r in images.db.query("SELECT image_id, id FROM containers")}


def cmd_tag(argv: list[str]) -> int:
    p = _Parser(prog="budu tag", description="Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")
    p.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    p.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    a = p.parse_args(argv)
    images = _images()
    try:
        images.tag(a.source, a.target)
    finally:
        images.close()
    return 0


def cmd_inspect(argv: list[str]) -> int:
    p = _Parser(prog="budu image inspect", description="Display detailed information on one or more images")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-f", "--format", help="Format output using a custom template")
    a = p.parse_args(argv)
    images = _images()
    try:
        return fmt.inspect_each(a.images, lambda name: inspect_image(images, images.get(name)), a.format)
    finally:
        images.close()


def inspect_image(images, img) -> dict:  # noqa: ANN001
    """The shape of docker's `image inspect` (the Engine API's ImageInspect)."""
    from budu.images import reference

    cfg = images.config(img)
    return {
        "Id": img.id,
        "RepoTags": [reference.parse(t).familiar() for t in img.tags],
        "RepoDigests": [reference.parse(d).familiar() for d in img.repo_digests],
        "Parent": "",
        "Comment": (cfg.get("history") or [{}])[-1].get("comment", "") if cfg.get("history") else "",
        "Created": cfg.get("created", ""),
        "DockerVersion": "",
        "Author": cfg.get("author", ""),
        "Config": cfg.get("config") or {},
        "Architecture": cfg.get("architecture", ""),
        "Variant": cfg.get("variant"),
        "Os": cfg.get("os", ""),
        "Size": img.size,
        "GraphDriver": {"Name": "overlay2", "Data": None},
        "RootFS": {"Type": "layers", "Layers": (cfg.get("rootfs") or {}).get("diff_ids") or []},
        "Metadata": {"LastTagTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(img.created))},
    }


def cmd_prune(argv: list[str]) -> int:
    p = _Parser(prog="budu image prune", description="Remove unused images")
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused images, not just dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], help="Provide filter values")
    a = p.parse_args(argv)
    what = "all images without at least one container associated to them" if a.all else "all dangling images"
    if not a.force and not confirm(f"WARNING! This will remove {what}."):
        return 0
    images = _images()
    try:
        lines, reclaimed = images.prune(all_images=a.all, in_use=set(_container_users(images)))
    finally:
        images.close()
    fmt.print_pruned("Deleted Images:", [f"{kind.lower()}: {ref}" for kind, ref in lines], reclaimed)
    return 0


def cmd_history(argv: list[str]) -> int:
    p = _Parser(prog="budu history", description="Show the history of an image")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("-H", "--human", default="true", help="Print sizes and dates in human readable format")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("--format", help="Format output using a custom template")
    a = p.parse_args(argv)
    images = _images()
    try:
        img = images.get(a.image)
        steps = images.history(img)
    finally:
        images.close()
    rows = []
    for s in steps:
        ident = _short(s["id"], a.no_trunc) if s.get("id") else "<missing>"
        created = parse_time(s["created"]) if s["created"] else None
        by = s["created_by"].replace("\t", " ").replace("\n", " ")
        if not a.no_trunc and len(by) > 45:
            by = by[:44] + "…"
        rows.append({"ID": ident, "CreatedSince": fmt.ago(created), "CreatedBy": by,
                     "Size": fmt.human_size(s["size"]), "Comment": s["comment"]})
    if a.quiet:
        sys.stdout.write("".join(r["ID"] + "\n" for r in rows))
    elif a.format:
        sys.stdout.write(fmt.format_rows(a.format, rows, {"ID": "IMAGE", "CreatedSince": "CREATED",
                                                          "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}))
    else:
        sys.stdout.write(fmt.table([["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]] +
                                   [[r["ID"], r["CreatedSince"], r["CreatedBy"], r["Size"], r["Comment"]] for r in rows]))
    return 0


def cmd_system_df(argv: list[str]) -> int:
    p = _Parser(prog="budu system df", description="Show budu disk usage")
    p.add_argument("-v", "--verbose", action="store_true", help="Show detailed information on space usage")
    p.add_argument("--format", help="Format output using a custom template")
    a = p.parse_args(argv)
    images = _images()
    try:
        du = images.disk_usage()
    finally:
        images.close()
    total = du["total"]
    rows = [
        {"Type": "Images", "TotalCount": str(du["images"]), "Active": str(du["active"]), "Size": fmt.human_size(total),
         "Reclaimable": f"{fmt.human_size(total)} ({100 if total else 0}%)"},
        {"Type": "Containers", "TotalCount": "0", "Active": "0", "Size": "0B", "Reclaimable": "0B"},
        {"Type": "Local Volumes", "TotalCount": "0", "Active": "0", "Size": "0B", "Reclaimable": "0B"},
        {"Type": "Build Cache", "TotalCount": "0", "Active": "0", "Size": "0B", "Reclaimable": "0B"},
    ]
    if a.format:
        sys.stdout.write(fmt.format_rows(a.format, rows, {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE",
                                                          "Size": "SIZE", "Reclaimable": "RECLAIMABLE"}))
    else:
        sys.stdout.write(fmt.table([["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]] +
                                   [[r["Type"], r["TotalCount"], r["Active"], r["Size"], r["Reclaimable"]] for r in rows]))
    return 0
