"""Registry commands: push, login, logout — docker's flags, output and messages."""

from __future__ import annotations

import sys

from budu.cli.images import _Parser
from budu.errors import BuduError, ConfigError

HUB_GREETING = ("Login with your Docker ID to push and pull images from Docker Hub. If you don't have a Docker ID, "
                "head over to https://hub.docker.com to create one.")
PLAINTEXT_WARNING = ("WARNING! Your password will be stored unencrypted in {path}.\n"
                     "Configure a credential helper to remove this warning. See\n"
                     "https://docs.docker.com/engine/reference/commandline/login/#credentials-store\n")


class LoginFailed(BuduError):
    """The registry refused the credentials (or could not be asked): docker's daemon-style error."""

    daemon_style = True


def _images():
    from budu.images.service import Images

    return Images()


# -- push -------------------------------------------------------------------------------------------

class _PushLines:
    """docker's non-terminal push output: a line per layer when it starts and when it is done."""

    TEXT = {"preparing": "Preparing", "exists": "Layer already exists", "pushed": "Pushed"}

    def __init__(self, ids: dict[str, str]) -> None:
        self.ids = ids

    def __call__(self, event: str, digest: str, *details: object) -> None:
        text = f"Mounted from {details[0]}" if event == "mounted" else self.TEXT.get(event)
        if text:
            print(f"{self.ids.get(digest, digest[7:19])}: {text}", flush=True)


def _rich_push(ids: dict[str, str], sizes: dict[str, int]):  # noqa: ANN202
    """Per-layer bars on a terminal, labelled as docker labels them."""
    if not sys.stdout.isatty():
        return None
    try:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
    except ImportError:
        return None
    bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    tasks: dict[str, int] = {}

    def report(event: str, digest: str, *details) -> None:  # noqa: ANN002
        short = ids.get(digest, digest[7:19])
        if digest not in tasks:
            tasks[digest] = bars.add_task(f"{short}: Preparing", total=sizes.get(digest) or None)
        task = tasks[digest]
        if event == "pushing":
            bars.update(task, description=f"{short}: Pushing", completed=details[0], total=details[1] or None)
        elif event in ("exists", "mounted", "pushed"):
            text = f"Mounted from {details[0]}" if event == "mounted" else _PushLines.TEXT[event]
            total = sizes.get(digest) or 0
            bars.update(task, description=f"{short}: {text}", completed=total, total=total or None)

    return bars, report


def cmd_push(argv: list[str]) -> int:
    p = _Parser(prog="budu push", description="Upload an image to a registry")
    p.add_argument("name", metavar="NAME[:TAG]")
    p.add_argument("-a", "--all-tags", action="store_true", help="Push all tags of an image to the repository")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("--disable-content-trust", action="store_true", default=True,
                   help="Skip image signing (default true)")
    a = p.parse_args(argv)
    from budu.images import auth, push, reference

    ref = reference.parse(a.name)
    explicit_tag = ref.digest is not None or ":" in a.name.rsplit("/", 1)[-1]
    if a.all_tags and explicit_tag:
        raise ConfigError("tag can't be used with --all-tags/-a")
    if not a.all_tags and not explicit_tag and not a.quiet:
        print("Using default tag: latest")
    images = _images()
    try:
        if not a.quiet:
            print(f"The push refers to repository [{ref.name}]", flush=True)
        try:
            names = _all_tags(images, ref) if a.all_tags else [str(ref)]
            for name in names:
                _push_one(images, name, a.quiet, auth.credentials, push)
        except BuduError as e:  # after the header docker prints the stream's error as it is
            sys.stderr.write(f"{e}\n")
            return 1
    finally:
        images.close()
    if a.quiet:
        print(names[-1] if not a.all_tags else ref.name)
    return 0


def _all_tags(images, ref) -> list[str]:  # noqa: ANN001
    from budu.images.push import NoSuchTag

    tags = sorted(t for img in images.list() for t in img.tags if t.rsplit(":", 1)[0] == ref.name)
    if not tags:
        raise NoSuchTag(f"An image does not exist locally with the tag: {ref.familiar_name()}")
    return tags


def _push_one(images, name: str, quiet: bool, credentials, push) -> None:  # noqa: ANN001
    ref, image = push.local_image(images, name)
    layers = push.layers(images, image)
    ids = {layer.digest: layer.diff_id[7:19] for layer in layers}
    rich = None if quiet else _rich_push(ids, {layer.digest: layer.size for layer in layers})
    if rich:
        bars, report = rich
        with bars:
            digest = push.push(images, name, progress=report, credentials=credentials)
    else:
        digest = push.push(images, name, progress=None if quiet else _PushLines(ids), credentials=credentials)
    if not quiet:
        print(f"{ref.tag}: digest: {digest} size: {images.content.size(digest)}")


# -- login, logout ----------------------------------------------------------------------------------

def _registry_host(key: str) -> str:
    from budu.images import auth

    return "docker.io" if key == auth.HUB_KEY else auth.hostname(key)


def verify(host: str, username: str, password: str) -> None:
    """Log in to the registry now, as docker's daemon does before it lets the CLI store anything."""
    from budu.images.registry import Registry, RegistryError

    with Registry(host, credentials=lambda _host: (username, password)) as reg:
        try:
            reg.login()
        except RegistryError as e:
            why = str(e).removesuffix(f" for {reg.host}")
            raise LoginFailed(f'Get "{reg.base_url}/v2/": {why}') from None


def _prompt(key: str, user: str | None, password: str | None = None,
            default_user: str | None = None) -> tuple[str, str]:
    """Ask for what the flags did not give (docker asks the username only if -u is missing)."""
    import getpass

    if not sys.stdin.isatty():
        raise ConfigError("Cannot perform an interactive login from a non TTY device")
    from budu.images import auth

    if not user:
        if key == auth.HUB_KEY:
            print(HUB_GREETING)
        user = input(f"Username ({default_user}): " if default_user else "Username: ").strip() or (default_user or "")
    if not user:
        raise ConfigError("Non-null Username Required")
    if not password:
        password = getpass.getpass("Password: ")
    if not password:
        raise ConfigError("Password Required")
    return user, password


def cmd_login(argv: list[str]) -> int:
    p = _Parser(prog="budu login", description="Log in to a registry")
    p.add_argument("server", nargs="?", metavar="SERVER")
    p.add_argument("-u", "--username", help="Username")
    p.add_argument("-p", "--password", help="Password")
    p.add_argument("--password-stdin", action="store_true", help="Take the password from stdin")
    a = p.parse_args(argv)
    from budu.images import auth

    if a.password is not None:
        sys.stderr.write("WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n")
        if a.password_stdin:
            raise ConfigError("--password and --password-stdin are mutually exclusive")
    if a.password_stdin:
        if not a.username:
            raise ConfigError("Must provide --username with --password-stdin")
        a.password = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    key = auth.server_key(a.server or auth.HUB_KEY)
    host = _registry_host(key)
    user, password = (a.username or "").strip(), a.password
    if not user and not password:
        stored = auth.load(host)
        if stored is not None:
            print("Authenticating with existing credentials...")
            try:
                verify(host, *stored)
                print("Login Succeeded")
                return 0
            except LoginFailed as e:
                sys.stderr.write(f"Login did not succeed, error: {e}\n")
        user, password = _prompt(key, None, None, stored[0] if stored else None)
    elif not user or not password:
        user, password = _prompt(key, user, password)
    verify(host, user, password)
    where = auth.store(key, user, password)
    if where == auth.config_path():
        sys.stderr.write(PLAINTEXT_WARNING.format(path=where))
    print("Login Succeeded")
    return 0


def cmd_logout(argv: list[str]) -> int:
    p = _Parser(prog="budu logout", description="Log out from a registry")
    p.add_argument("server", nargs="?", metavar="SERVER")
    a = p.parse_args(argv)
    from budu.images import auth

    key = auth.server_key(a.server or auth.HUB_KEY)
    if auth.erase(key):
        print(f"Removing login credentials for {key}")
    else:
        print(f"Not logged in to {key}")
    return 0
