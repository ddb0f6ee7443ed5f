"""The pi-stream command. Click only: options in, one library call, an ExitStatus out.

Errors are raised as PiStreamError anywhere below and caught once, in main().
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pi_stream import __version__
from pi_stream.console import Console, table
from pi_stream.errors import ExitStatus, PiStreamError, SiteError

if TYPE_CHECKING:
    from pi_stream.site import Site

SITE_ARG = click.argument("site_dir", type=click.Path(file_okay=False, path_type=Path))
PASSWORD_STDIN = click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
PASSWORD_ENV = "PI_STREAM_PASSWORD"


def console(ctx: click.Context) -> Console:
    return ctx.obj["console"]


def load(ctx: click.Context, site_dir: Path) -> Site:
    """The site, its notes (site.yml's passwords readable by others) said once, as each command that loads it does."""
    from pi_stream.site import load_site

    site = load_site(site_dir)
    for note in site.notes:
        console(ctx).warn(note)
    return site


@click.group()
@click.version_option(__version__, prog_name="pi-stream")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output, only results.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """Turn a Raspberry Pi into a camera streaming appliance, from one site.yml."""
    ctx.ensure_object(dict)
    ctx.obj.setdefault("console", Console(show_progress=not quiet))
    ctx.obj["debug"] = debug


@cli.command()
@SITE_ARG
@click.option("--host", "address", default="raspberrypi.local", show_default=True, help="Address of the Pi.")
@click.option("--ssh-user", default="root", show_default=True, help="SSH user Ansible connects as.")
@click.option("--force", is_flag=True, help="Overwrite an existing site.yml and inventory.yml.")
@click.pass_context
def init(ctx: click.Context, site_dir: Path, address: str, ssh_user: str, force: bool) -> None:
    """Write a commented site.yml (one test-pattern camera) and an inventory for one host."""
    from pi_stream.scaffold import init_site

    for path in init_site(site_dir, address=address, user=ssh_user, force=force):
        console(ctx).info(f"wrote {path}")
    console(ctx).info(f"next: pi-stream user add {site_dir} NAME")


@cli.group()
def user() -> None:
    """Manage the viewers who may watch (the site's viewers.htpasswd)."""


def read_new_password(password_stdin: bool) -> str:
    """From stdin (automation) or a hidden prompt asked twice. Never from argv."""
    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@user.command("add")
@SITE_ARG
@click.argument("name")
@PASSWORD_STDIN
@click.pass_context
def user_add(ctx: click.Context, site_dir: Path, name: str, password_stdin: bool) -> None:
    """Add a viewer (or change their password)."""
    from pi_stream import credentials

    credentials.check_user_name(name)
    existed = credentials.add_user(site_dir, name, read_new_password(password_stdin))
    verb = "changed the password of" if existed else "added"
    console(ctx).info(f"{verb} viewer {name!r}; run `pi-stream deploy {site_dir}` to apply")


@user.command("passwd")
@SITE_ARG
@click.argument("name")
@PASSWORD_STDIN
@click.pass_context
def user_passwd(ctx: click.Context, site_dir: Path, name: str, password_stdin: bool) -> None:
    """Change a viewer's password."""
    from pi_stream import credentials

    if name not in credentials.list_users(site_dir):
        raise PiStreamError(f"no viewer named {name!r}; add one with `pi-stream user add {site_dir} {name}`")
    credentials.add_user(site_dir, name, read_new_password(password_stdin))
    console(ctx).info(f"changed the password of {name!r}; run `pi-stream deploy {site_dir}` to apply")


@user.command("remove")
@SITE_ARG
@click.argument("name")
@click.pass_context
def user_remove(ctx: click.Context, site_dir: Path, name: str) -> None:
    """Remove a viewer."""
    from pi_stream import credentials

    credentials.remove_user(site_dir, name)
    console(ctx).info(f"removed viewer {name!r}; run `pi-stream deploy {site_dir}` to apply")


@user.command("list")
@SITE_ARG
@click.pass_context
def user_list(ctx: click.Context, site_dir: Path) -> None:
    """List the viewers and the cameras each may watch."""
    from pi_stream import credentials

    names = credentials.list_users(site_dir)
    try:
        access = load(ctx, site_dir).camera_access
    except SiteError:
        access = None  # the names alone still help while the site has a problem (deploy reports it)
    for name in names:
        if access is None:
            console(ctx).info(name)
        else:
            cameras = access.get(name)
            console(ctx).info(f"{name}\t{'all cameras' if cameras is None else ', '.join(cameras) or 'no camera'}")


@cli.command()
@SITE_ARG
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output directory.")
@click.option(
    "--secrets-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write each host's secrets (RTSP credentials) here, 0600; the playbook uses this. The bundle never holds them.",
)
@click.pass_context
def render(ctx: click.Context, site_dir: Path, out: Path, secrets_dir: Path | None) -> None:
    """Write every config file of every host, exactly as deploy installs them (secrets excluded)."""
    from pi_stream.render import render_to, write_secrets

    site = load(ctx, site_dir)
    bundle = render_to(site, out)
    if secrets_dir is not None:
        write_secrets(site, secrets_dir)
    count = sum(len(files) for files in bundle.values())
    console(ctx).info(f"rendered {count} files for {len(bundle)} host(s) into {out}")


@cli.command("fetch-sources")
@SITE_ARG
@click.option(
    "--cache", type=click.Path(file_okay=False, path_type=Path), help="Cache directory (default: $PI_STREAM_CACHE or ~/.cache/pi-stream)."
)
@click.pass_context
def fetch_sources(ctx: click.Context, site_dir: Path, cache: Path | None) -> None:
    """Download nginx's and the RTMP module's sources for the source method and check their sha256."""
    from pi_stream.workflows import run_fetch_sources

    run_fetch_sources(load(ctx, site_dir), console(ctx), cache)


@cli.command()
@SITE_ARG
@click.option("--check", is_flag=True, help="Dry run: show what would change (Ansible check mode).")
@click.pass_context
def deploy(ctx: click.Context, site_dir: Path, check: bool) -> int:
    """Provision the site's host(s) over SSH with Ansible."""
    from pi_stream.workflows import run_deploy

    return run_deploy(load(ctx, site_dir), console(ctx), check=check).status


@cli.command()
@SITE_ARG
@click.option("--user", "user_name", help="Viewer to test with (default: the first one).")
@click.option("--password-stdin", is_flag=True, help=f"Read that viewer's password from stdin (or set ${PASSWORD_ENV}).")
@click.pass_context
def verify(ctx: click.Context, site_dir: Path, user_name: str | None, password_stdin: bool) -> int:
    """Prove the appliance works: services, ports, auth, a live playlist, a decodable segment."""
    from pi_stream.workflows import run_verify

    site = load(ctx, site_dir)
    user_name = user_name or site.viewers[0]
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = os.environ.get(PASSWORD_ENV) or click.prompt(f"Password of {user_name}", hide_input=True)
    return run_verify(site, user_name, password, console(ctx)).status


@cli.command()
@SITE_ARG
@click.option("--json", "as_json", is_flag=True, help="Print the supervisors' status documents as JSON.")
@click.pass_context
def status(ctx: click.Context, site_dir: Path, as_json: bool) -> int:
    """Per camera: state, codec, fps, bitrate, sessions, last error; per NVR: sessions against the budget."""
    from pi_stream.workflows import run_status

    return run_status(load(ctx, site_dir), console(ctx), as_json=as_json)


@cli.group()
def lab() -> None:
    """Simulated Pis on this Linux machine (root; systemd-nspawn containers)."""


@lab.command("up")
@click.option("--name", default="demo", show_default=True)
@click.option("--hosts", default=1, show_default=True, type=click.IntRange(1, 16))
@click.option("--suite", default="bookworm", show_default=True, type=click.Choice(["bookworm", "trixie"]))
@click.option("--arch", default="amd64", show_default=True, type=click.Choice(["amd64", "arm64"]))
@click.option("--inventory", type=click.Path(dir_okay=False, path_type=Path), help="Also write an Ansible inventory here.")
@click.pass_context
def lab_up(ctx: click.Context, name: str, hosts: int, suite: str, arch: str, inventory: Path | None) -> None:
    """Boot simulated Pis (idempotent)."""
    from pi_stream import lab as lab_module

    running = lab_module.up(name, hosts=hosts, suite=suite, arch=arch, progress=console(ctx).progress)
    if inventory:
        running.write_inventory(inventory)
    console(ctx).info(describe_lab(running))


@lab.command("down")
@click.option("--name", default="demo", show_default=True)
@click.pass_context
def lab_down(ctx: click.Context, name: str) -> None:
    """Stop and remove a lab (idempotent); caches are kept."""
    from pi_stream import lab as lab_module

    lab_module.down(name)
    console(ctx).info(f"lab {name} is down")


@lab.command("status")
@click.option("--name", default=None, help="One lab (default: all).")
@click.pass_context
def lab_status(ctx: click.Context, name: str | None) -> int:
    """Show running labs."""
    from pi_stream import lab as lab_module

    names = [name] if name else lab_module.list_labs()
    if not names:
        console(ctx).info("no labs")
    for lab_name in names:
        state = lab_module.status(lab_name)
        console(ctx).info(describe_lab(state) if state else f"lab {lab_name}: not up")
    return ExitStatus.OK


@lab.command("ssh", context_settings={"ignore_unknown_options": True})
@click.option("--name", default="demo", show_default=True)
@click.argument("host", default="pi1")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def lab_ssh(name: str, host: str, command: tuple[str, ...]) -> None:
    """Open a shell (or run COMMAND) on a lab host."""
    from pi_stream import lab as lab_module

    state = lab_module.status(name)
    if state is None:
        raise PiStreamError(f"lab {name} is not up; start it with `pi-stream lab up --name {name}`")
    argv = lab_module.ssh_argv(state, host, *command)
    os.execvp(argv[0], argv)  # hand the terminal to ssh


def describe_lab(state) -> str:
    rows = [(h.name, h.address, h.machine) for h in state.hosts]
    return f"lab {state.name} ({state.suite}/{state.arch}), host side {state.host_address}\n" + table(
        rows, ("host", "address", "container")
    )


@cli.command()
@click.option("--site-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-site"), show_default=True)
@click.option("--suite", default="bookworm", show_default=True, type=click.Choice(["bookworm", "trixie"]))
@click.option("--arch", default="amd64", show_default=True, type=click.Choice(["amd64", "arm64"]))
@click.pass_context
def demo(ctx: click.Context, site_dir: Path, suite: str, arch: str) -> int:
    """Lab up + a default site + deploy + verify; prints the URL and credentials."""
    from pi_stream.workflows import run_demo

    return run_demo(site_dir, console(ctx), suite=suite, arch=arch)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run click in standalone-less mode and map every failure to one ExitStatus."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    out = Console()
    try:
        result = cli.main(args=argv, prog_name="pi-stream", standalone_mode=False, obj={"console": out})
    except PiStreamError as exc:
        if debug:
            raise
        out.error(exc.message)
        return int(exc.status)
    except click.exceptions.Abort:
        out.error("interrupted")
        return int(ExitStatus.INTERRUPTED)
    except KeyboardInterrupt:
        out.error("interrupted")
        return int(ExitStatus.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        return int(exc.exit_code)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    if isinstance(result, int):
        return result
    return int(ExitStatus.OK)


if __name__ == "__main__":
    raise SystemExit(main())
