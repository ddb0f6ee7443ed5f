"""The pi-stream command. Click only: options in, one library call, an ExitStatus out.

Errors are raised as PiStreamError anywhere below and caught once, in main().
Commands are listed in `--help` in the order they are defined here: a site's workflow.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pi_stream import __version__
from pi_stream.console import Console, table
from pi_stream.errors import MEANINGS, ExitStatus, PiStreamError, SiteError, UsageError, exit_codes_table

if TYPE_CHECKING:
    from pi_stream.site import Site

SITE_ARG = click.argument("site_dir", type=click.Path(file_okay=False, path_type=Path))
PASSWORD_STDIN = click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
PASSWORD_ENV = "PI_STREAM_PASSWORD"
COMPLETE_VAR = "_PI_STREAM_COMPLETE"  # click's, from the program's name
ROOT_EPILOG = f"""\b
Exit codes:
{exit_codes_table()}

\b
Shell completion of commands, options and site directories:
  eval "$({COMPLETE_VAR}=bash_source pi-stream)"     # in ~/.bashrc
  eval "$({COMPLETE_VAR}=zsh_source pi-stream)"      # in ~/.zshrc
  {COMPLETE_VAR}=fish_source pi-stream > ~/.config/fish/completions/pi-stream.fish
"""


class WorkflowGroup(click.Group):
    """Lists its commands in the order they are defined (a site's workflow), not alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


def exit_codes(*statuses: ExitStatus) -> str:
    """A command's epilog: the exit codes it gives, with their meanings from errors.MEANINGS (the one source)."""
    lines = [f"{int(status):>3}  {MEANINGS[status]}" for status in (ExitStatus.OK, *statuses)]
    return "\b\nExit codes (all: pi-stream --help):\n" + "\n".join(lines)


def no_terminal(what: str, how: str) -> UsageError:
    return UsageError(f"no terminal to ask for {what} on (stdin is not a terminal): {how}")


def has_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def read_stdin_password(example: str) -> str:
    """--password-stdin: the first line of stdin; nothing there is a usage error, not an empty password."""
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line:
        raise UsageError(f"--password-stdin: nothing on stdin; pipe the password in: {example}")
    return line.rstrip("\n")


def stdin_example(command: str) -> str:
    return f"printf '%s\\n' \"$PASSWORD\" | pi-stream {command} --password-stdin"


def console(ctx: click.Context) -> Console:
    return ctx.obj["console"]


def load(ctx: click.Context, site_dir: Path) -> Site:
    """The site, its notes (site.yml's passwords readable by others) said once, as each command that loads it does."""
    from pi_stream.site import load_site

    site = load_site(site_dir)
    for note in site.notes:
        console(ctx).warn(note)
    return site


@click.group(cls=WorkflowGroup, epilog=ROOT_EPILOG)
@click.version_option(__version__, prog_name="pi-stream")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output, only results.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """Turn a Raspberry Pi into a camera streaming appliance, from one site.yml.

    The controller (this machine) needs Python and ssh; the Pi needs Raspberry Pi OS
    or Debian 12/13 with SSH and a user with sudo. `pi-stream COMMAND --help` shows
    each command's options and examples.

    \b
    A site, from nothing to a verified appliance:
      ssh-copy-id pi@raspberrypi.local                   # your SSH key on the Pi, once
      pi-stream init my-cameras --host raspberrypi.local
      pi-stream user add my-cameras alice                # a viewer; asks for a password
      pi-stream deploy my-cameras                        # ends with the URL to open
      pi-stream verify my-cameras                        # proves it end to end
      pi-stream status my-cameras                        # any time after
    """
    ctx.ensure_object(dict)
    out = ctx.obj.setdefault("console", Console())
    if quiet:  # main() passes its console in: -q turns its progress off
        out.show_progress = False
    ctx.obj["debug"] = debug


@cli.command(short_help="Start a site: site.yml, inventory.yml, .gitignore.", epilog=exit_codes(ExitStatus.ERROR))
@SITE_ARG
@click.option("--host", "address", default="raspberrypi.local", show_default=True, help="Address of the Pi.")
@click.option(
    "--ssh-user", default="pi", show_default=True,
    help="SSH user Ansible logs in as; it becomes root with sudo (Raspberry Pi OS has no root login over SSH).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing site.yml and inventory.yml.")
@click.pass_context
def init(ctx: click.Context, site_dir: Path, address: str, ssh_user: str, force: bool) -> None:
    """Write a commented site.yml (one test-pattern camera), an inventory for one Pi and a .gitignore.

    site.yml also holds commented examples of every section (cameras, NVRs, webrtc:,
    relay:, ...); the .gitignore keeps pi-stream's working files, the viewers' password
    hashes and private keys out of git.

    \b
    Examples:
      pi-stream init my-cameras --host raspberrypi.local
      pi-stream init shop --host 192.168.1.40 --ssh-user admin
    """
    from pi_stream.scaffold import GITIGNORE, init_site

    out = console(ctx)
    for path in init_site(site_dir, address=address, user=ssh_user, force=force):
        out.info(f"wrote {path}")
    out.info(f"{site_dir / GITIGNORE} lists what must never be committed (.pi-stream/, viewers.htpasswd, keys)")
    site = shlex.quote(str(site_dir))
    out.info("next:")
    out.info(f"  ssh-copy-id {shlex.quote(f'{ssh_user}@{address}')}    # once: your SSH key on the Pi")
    out.info(f"  pi-stream user add {site} NAME    # a viewer; then edit {site}/site.yml for your cameras")
    out.info(f"  pi-stream deploy {site}")
    out.info(f"  pi-stream verify {site}")


@cli.group(cls=WorkflowGroup, short_help="Add, change, remove and list the viewers.")
def user() -> None:
    """Manage the viewers who may watch (the site's viewers.htpasswd).

    \b
    Examples:
      pi-stream user add my-cameras alice                 # asks for the password twice
      printf '%s\\n' "$PASSWORD" | pi-stream user add my-cameras bob --password-stdin
      pi-stream user list my-cameras
    """


USER_EXITS = exit_codes(ExitStatus.ERROR, ExitStatus.USAGE, ExitStatus.INVALID_SITE)


def read_new_password(password_stdin: bool) -> str:
    """From stdin (automation) or a hidden prompt asked twice, on a terminal only. Never from argv."""
    example = stdin_example("user add SITE NAME")
    if password_stdin:
        return read_stdin_password(example)
    if not has_terminal():
        raise no_terminal("the password", f"pipe it in with --password-stdin: {example}")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@user.command("add", short_help="Add a viewer, or change their password.", epilog=USER_EXITS)
@SITE_ARG
@click.argument("name")
@PASSWORD_STDIN
@click.pass_context
def user_add(ctx: click.Context, site_dir: Path, name: str, password_stdin: bool) -> None:
    """Add a viewer (or change their password); `pi-stream deploy` applies it.

    \b
    Examples:
      pi-stream user add my-cameras alice
      printf '%s\\n' "$PASSWORD" | pi-stream user add my-cameras alice --password-stdin
    """
    from pi_stream import credentials

    credentials.check_user_name(name)
    existed = credentials.add_user(site_dir, name, read_new_password(password_stdin))
    verb = "changed the password of" if existed else "added"
    console(ctx).info(f"{verb} viewer {name!r}; run `pi-stream deploy {site_dir}` to apply")


@user.command("passwd", epilog=USER_EXITS)
@SITE_ARG
@click.argument("name")
@PASSWORD_STDIN
@click.pass_context
def user_passwd(ctx: click.Context, site_dir: Path, name: str, password_stdin: bool) -> None:
    """Change a viewer's password; `pi-stream deploy` applies it.

    \b
    Example:
      pi-stream user passwd my-cameras alice
    """
    from pi_stream import credentials

    if name not in credentials.list_users(site_dir):
        raise PiStreamError(f"no viewer named {name!r}; add one with `pi-stream user add {site_dir} {name}`")
    credentials.add_user(site_dir, name, read_new_password(password_stdin))
    console(ctx).info(f"changed the password of {name!r}; run `pi-stream deploy {site_dir}` to apply")


@user.command("remove", epilog=exit_codes(ExitStatus.ERROR, ExitStatus.INVALID_SITE))
@SITE_ARG
@click.argument("name")
@click.pass_context
def user_remove(ctx: click.Context, site_dir: Path, name: str) -> None:
    """Remove a viewer; `pi-stream deploy` applies it.

    \b
    Example:
      pi-stream user remove my-cameras bob
    """
    from pi_stream import credentials

    credentials.remove_user(site_dir, name)
    console(ctx).info(f"removed viewer {name!r}; run `pi-stream deploy {site_dir}` to apply")


@user.command("list", epilog=exit_codes(ExitStatus.ERROR, ExitStatus.INVALID_SITE))
@SITE_ARG
@click.pass_context
def user_list(ctx: click.Context, site_dir: Path) -> None:
    """List the viewers and the cameras each may watch.

    \b
    Example:
      pi-stream user list my-cameras
    """
    from pi_stream import credentials

    names = credentials.list_users(site_dir)
    try:
        site = load(ctx, site_dir)
    except SiteError:
        site = None  # the names alone still help while the site has a problem (deploy reports it)
    if site is None:
        for name in names:
            console(ctx).info(name)
        return
    for name in site.viewers:
        cameras = site.camera_access.get(name)
        emails = sorted(email for email, viewer in site.identities.items() if viewer == name)
        how = ("password" if name in site.password_viewers else "") + (" and " if emails and name in site.password_viewers else "")
        how += f"identity {', '.join(emails)}" if emails else ""
        console(ctx).info(f"{name}\t{'all cameras' if cameras is None else ', '.join(cameras) or 'no camera'}\t{how}")


@cli.command(short_help="Write every config file, as deploy installs them.", epilog=exit_codes(ExitStatus.ERROR, ExitStatus.INVALID_SITE))
@SITE_ARG
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output directory.")
@click.option(
    "--secrets-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write each host's secrets (RTSP credentials) here, 0600; the playbook uses this. The bundle never holds them.",
)
@click.pass_context
def render(ctx: click.Context, site_dir: Path, out: Path, secrets_dir: Path | None) -> None:
    """Write every config file of every host, exactly as deploy installs them (secrets excluded).

    \b
    Examples:
      pi-stream render my-cameras -o rendered        # review, or diff against the last render
      pi-stream render my-cameras -o /tmp/r && diff -r rendered /tmp/r
    """
    from pi_stream.render import render_to, write_secrets

    site = load(ctx, site_dir)
    bundle = render_to(site, out)
    if secrets_dir is not None:
        write_secrets(site, secrets_dir)
    count = sum(len(files) for files in bundle.values())
    console(ctx).info(f"rendered {count} files for {len(bundle)} host(s) into {out}")


LIMIT_OPTION = click.option(
    "--limit", metavar="PATTERN",
    help="Only these hosts: Ansible's --limit (pi1, 'pi*', 'all:!pi3'). Only they are probed first.",
)


@cli.command(
    short_help="Provision the Pi(s) over SSH; print the URL to open.",
    epilog=exit_codes(ExitStatus.ERROR, ExitStatus.INVALID_SITE, ExitStatus.DEPLOY_FAILED, ExitStatus.UNREACHABLE),
)
@SITE_ARG
@click.option("--check", is_flag=True, help="Dry run: show what would change (Ansible check mode).")
@LIMIT_OPTION
@click.option("--tags", metavar="TAGS", help="Only the tasks with these tags: Ansible's --tags (comma-separated). The render step always runs.")
@click.option(
    "-v", "--verbose", "verbosity", count=True,
    help="Each host's result of every task, and ansible-playbook's own output; -vv, -vvv, ... as ansible-playbook's.",
)
@click.option("-K", "--ask-become-pass", is_flag=True, help="ansible-playbook asks for the sudo password (when sudo on the Pi needs one).")
@click.pass_context
def deploy(ctx: click.Context, site_dir: Path, check: bool, limit: str | None, tags: str | None, verbosity: int,
           ask_become_pass: bool) -> int:
    """Provision the site's hosts over SSH with Ansible, then print the URL(s) to open.

    Every host is probed first: one that does not answer SSH stops the deploy
    before anything changes (exit 6). Progress is a line per task; the run's
    events are kept in SITE/.pi-stream/runs/. Run it again after any change to
    site.yml or the viewers; run again with no change, it changes nothing.

    \b
    Examples:
      pi-stream deploy my-cameras
      pi-stream deploy my-cameras --check              # what would change, changing nothing
      pi-stream deploy my-cameras --limit pi2 -K       # one Pi whose sudo asks a password
      pi-stream deploy my-cameras -vv                  # ansible-playbook's own output too
    """
    from pi_stream.workflows import run_deploy

    site = load(ctx, site_dir)
    return run_deploy(site, console(ctx), check=check, limit=limit, tags=tags, verbosity=verbosity, ask_become_pass=ask_become_pass).status


@cli.command(
    short_help="Prove the appliance works; print the URL to open.",
    epilog=exit_codes(ExitStatus.ERROR, ExitStatus.USAGE, ExitStatus.INVALID_SITE, ExitStatus.VERIFY_FAILED, ExitStatus.UNREACHABLE),
)
@SITE_ARG
@click.option("--user", "user_name", help="Viewer to test with (default: the first one).")
@click.option("--password-stdin", is_flag=True, help=f"Read that viewer's password from stdin (or set ${PASSWORD_ENV}).")
@click.pass_context
def verify(ctx: click.Context, site_dir: Path, user_name: str | None, password_stdin: bool) -> int:
    """Prove the appliance works, then print the URL(s) to open.

    Services, ports, the firewall and bans, the deployed files against `render`,
    a login, a live playlist and a segment, on every Pi and relay. It logs in as
    a viewer, so it needs their password: asked on the terminal, or given by
    --password-stdin or the environment variable PI_STREAM_PASSWORD.

    \b
    Examples:
      pi-stream verify my-cameras                      # asks for the first viewer's password
      pi-stream verify my-cameras --user alice
      printf '%s\\n' "$PASSWORD" | pi-stream verify my-cameras --password-stdin
      PI_STREAM_PASSWORD=... pi-stream verify my-cameras   # CI
    """
    from pi_stream.workflows import check_password_login, run_verify

    site = load(ctx, site_dir)
    if not site.login.password:  # nobody can log in with a password: verify checks all but the cameras
        check_password_login(site, user_name or "")
        return run_verify(site, "", "", console(ctx)).status
    user_name = user_name or (site.password_viewers or site.viewers)[0]
    check_password_login(site, user_name)
    if password_stdin:
        password = read_stdin_password(stdin_example(f"verify {shlex.quote(str(site_dir))}"))
    elif os.environ.get(PASSWORD_ENV):
        password = os.environ[PASSWORD_ENV]
    elif has_terminal():
        password = click.prompt(f"Password of {user_name}", hide_input=True)
    else:
        raise no_terminal(f"{user_name}'s password", f"pass it with --password-stdin, or set {PASSWORD_ENV}")
    return run_verify(site, user_name, password, console(ctx)).status


@cli.command(
    short_help="Each camera's state; each Pi's updates and relay.",
    epilog=exit_codes(ExitStatus.ERROR, ExitStatus.INVALID_SITE, ExitStatus.VERIFY_FAILED, ExitStatus.UNREACHABLE),
)
@SITE_ARG
@click.option("--json", "as_json", is_flag=True, help="Print the supervisors' status documents as JSON.")
@click.pass_context
def status(ctx: click.Context, site_dir: Path, as_json: bool) -> int:
    """Per camera: state, codec, fps, bitrate, sessions, last error; per NVR: sessions against the budget.

    Also each Pi's security updates, WebRTC viewers and relay in use. Exit 5 when
    a camera is failing or disabled or a host needs attention: fit for a cron job.

    \b
    Examples:
      pi-stream status my-cameras
      pi-stream status my-cameras --json | jq '.pi1.cameras'
    """
    from pi_stream.workflows import run_status

    return run_status(load(ctx, site_dir), console(ctx), as_json=as_json)


@cli.command(
    short_help="Remove pi-stream from the hosts (asks first).",
    epilog=exit_codes(ExitStatus.ERROR, ExitStatus.USAGE, ExitStatus.INVALID_SITE, ExitStatus.DEPLOY_FAILED, ExitStatus.UNREACHABLE),
)
@SITE_ARG
@LIMIT_OPTION
@click.option("--yes", is_flag=True, help="Remove without asking (needed when there is no terminal to ask on).")
@click.pass_context
def remove(ctx: click.Context, site_dir: Path, limit: str | None, yes: bool) -> int:
    """Remove pi-stream from the site's hosts (asks first); the site directory is kept.

    \b
    Examples:
      pi-stream remove my-cameras                      # asks before it removes anything
      pi-stream remove my-cameras --limit pi2 --yes
    """
    from pi_stream.deploy import limited_hosts

    site = load(ctx, site_dir)
    hosts = ", ".join(f"{h.name} ({h.address})" for h in limited_hosts(site, limit))
    if not yes:
        if not has_terminal():
            raise no_terminal("a confirmation", f"pass --yes to remove pi-stream from {hosts}")
        if not click.confirm(f"Remove pi-stream from {hosts}? Its cameras stop streaming there", default=False):
            console(ctx).info("nothing was removed")
            return ExitStatus.ERROR
    from pi_stream.remove import run_remove

    return run_remove(site, console(ctx), limit=limit).status


@cli.command(
    "fetch-sources", short_help="Download and check the sources a site builds.",
    epilog=exit_codes(ExitStatus.ERROR, ExitStatus.INVALID_SITE),
)
@SITE_ARG
@click.option(
    "--cache", type=click.Path(file_okay=False, path_type=Path), help="Cache directory (default: $PI_STREAM_CACHE or ~/.cache/pi-stream)."
)
@click.pass_context
def fetch_sources(ctx: click.Context, site_dir: Path, cache: Path | None) -> None:
    """Download the sources a site builds (nginx and its RTMP module, OvenMediaEngine) and check their sha256.

    deploy does this itself; run it ahead, e.g. before taking the controller offline.

    \b
    Example:
      pi-stream fetch-sources my-cameras
    """
    from pi_stream.workflows import run_fetch_sources

    run_fetch_sources(load(ctx, site_dir), console(ctx), cache)


@cli.group(cls=WorkflowGroup, short_help="Simulated Pis on this Linux machine (root).")
def lab() -> None:
    """Simulated Pis on this Linux machine (root; systemd-nspawn containers).

    \b
    Examples:
      pi-stream lab up --hosts 2 --inventory my-lab/inventory.yml
      pi-stream lab ssh pi1 systemctl status nginx
      pi-stream lab down
    """


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


@cli.command(
    short_help="A simulated Pi, deployed and verified (root).",
    epilog=exit_codes(ExitStatus.ERROR, ExitStatus.DEPLOY_FAILED, ExitStatus.VERIFY_FAILED, ExitStatus.LAB_FAILED),
)
@click.option("--site-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-site"), show_default=True)
@click.option("--suite", default="bookworm", show_default=True, type=click.Choice(["bookworm", "trixie"]))
@click.option("--arch", default="amd64", show_default=True, type=click.Choice(["amd64", "arm64"]))
@click.pass_context
def demo(ctx: click.Context, site_dir: Path, suite: str, arch: str) -> int:
    """Lab up + a default site + deploy + verify; prints the URL and credentials.

    Needs root on Linux (systemd-nspawn, network namespaces): a simulated Pi on this machine.

    \b
    Examples:
      sudo pi-stream demo
      sudo pi-stream demo --suite trixie --arch arm64   # slow: arm64 under emulation
    """
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
