"""The pytest side of pi_stream.checks: `--site` and `--viewer`, and one test per check of the site's hosts.

    PI_STREAM_PASSWORD=... pytest --pyargs pi_stream.checks --site SITE_DIR [--viewer NAME] [--hosts pi1] [--junitxml FILE]

pytest loads this plugin through pi-stream's pytest11 entry point, or by name: `-p pi_stream.checks.plugin`.
It changes nothing for other test suites: only the tests of pi_stream/checks ask for `pi_stream_check`.

The checks are pi_stream.checks.plan's, run by pi_stream.checks.run exactly as `pi-stream verify` runs them:
each test asks its host's context for the check's outcome; the checks it needs run first, once (a test of
a camera logs in if the login's own test has not yet). A check whose prerequisite failed is skipped when
that prerequisite is a test of this run (its failure is reported there), and fails otherwise (`-k` left the
cause out, and a run with nothing failed must not pass). A check that does not apply now is skipped with
the reason (a camera waiting for an NVR session, a relay on standby).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pi_stream.checks.plan import Step
    from pi_stream.checks.run import HostContext, SiteRun

PLUGIN = "pi_stream.checks.plugin"
MARK = "pi_stream_checks"
PASSWORD_ENV = "PI_STREAM_PASSWORD"  # pi_stream.cli.PASSWORD_ENV: the same variable `pi-stream verify` reads
CHECKS_DIR = Path(__file__).resolve().parent
USAGE = "pytest --pyargs pi_stream.checks --site SITE_DIR [--viewer NAME] (the viewer's password in $PI_STREAM_PASSWORD)"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pi-stream", "pi-stream checks (pytest --pyargs pi_stream.checks --site SITE_DIR)")
    group.addoption("--site", metavar="DIR", help="the site directory (site.yml, inventory.yml) whose hosts the checks test")
    group.addoption("--viewer", metavar="NAME",
                    help=f"the viewer to log in as (default: the site's first); the password comes from ${PASSWORD_ENV}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARK}(group): the pi-stream checks of one group (pi_stream.checks.plan), one test each")


@dataclass(frozen=True)
class CheckRef:
    """A test's parameter: one check of one host."""

    context: HostContext
    step: Step

    @property
    def id(self) -> str:
        return f"{self.context.name}-{self.step.name}"


class Suite:
    """The run every check test of this pytest process shares, and which checks this session runs as tests."""

    def __init__(self, run: SiteRun, hosts: list[str]) -> None:
        self.run = run
        self.refs = [CheckRef(context, step) for context in run.hosts(hosts) for step in context.steps]
        self.order = {ref.id: index for index, ref in enumerate(self.refs)}
        self.selected: set[str] = set()


SUITE = pytest.StashKey["Suite"]()
LATE = pytest.StashKey[bool]()  # registered by pi_stream/checks/conftest.py: pytest did not load the plugin itself


def pytest_collectstart(collector: pytest.Collector) -> None:
    """Before the first check test is collected: the site, the viewer and the hosts, or a usage error naming what is missing."""
    if collector.path is not None and CHECKS_DIR in (collector.path, *collector.path.parents) and SUITE not in collector.config.stash:
        collector.config.stash[SUITE] = build_suite(collector.config)


def build_suite(config: pytest.Config) -> Suite:
    # Imported here, not at the top: this plugin loads in every pytest run of the environment, and only a run of
    # the checks needs the site model, the renderer and testinfra.
    from pi_stream.checks.run import SiteRun
    from pi_stream.errors import PiStreamError
    from pi_stream.site import load_site

    site_dir = config.getoption("site")
    if not site_dir:
        late = f"\n  pytest did not load the plugin that takes --site: add -p {PLUGIN}" if config.stash.get(LATE, False) else ""
        raise pytest.UsageError(
            f"pi_stream.checks needs --site: the checks compare each host with what the site deploys (files, services, cameras).\n"
            f"  {USAGE}\n  testinfra's --hosts chooses among the site's hosts; --ansible-inventory connects as another inventory says.{late}"
        )
    try:
        site = load_site(Path(site_dir))
    except PiStreamError as exc:
        raise pytest.UsageError(f"--site {site_dir}: {exc}") from exc
    user = config.getoption("viewer") or next(iter((*site.password_viewers, *site.viewers)), "")
    if not site.login.password:
        user = ""  # password login off (login.password: false): the checks that log in are left out
    elif user not in site.viewers:
        raise pytest.UsageError(f"--viewer {user!r} is not a viewer of {site_dir} (viewers: {', '.join(site.viewers) or 'none'})")
    inventory = config.getoption("ansible_inventory", None)
    run = SiteRun(site, user, os.environ.get(PASSWORD_ENV), inventory=Path(inventory) if inventory else None)
    return Suite(run, chosen_hosts(site, config.getoption("hosts", None)))


def chosen_hosts(site, option: str | None) -> list[str]:
    """The site's hosts, or those testinfra's --hosts names (`pi1`, `ansible://pi1`, `ansible://all`)."""
    names = [host.name for host in site.provisioned_hosts]
    if not option:
        return names
    chosen = []
    for spec in (part.strip() for part in option.split(",") if part.strip()):
        name = spec.removeprefix("ansible://")
        if name == "all":
            return names
        if name not in names:
            raise pytest.UsageError(
                f"--hosts {spec}: the checks test the site's hosts, by their inventory names ({', '.join(names)}); "
                "they connect as the site's inventory says (or --ansible-inventory)"
            )
        chosen.append(name)
    return [name for name in names if name in chosen]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pi_stream_check" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker(MARK)
    group = marker.args[0] if marker else None
    refs = [ref for ref in metafunc.config.stash[SUITE].refs if ref.step.group == group]
    metafunc.parametrize("pi_stream_check", refs, ids=[ref.id for ref in refs], indirect=True)


def check_of(item: pytest.Item) -> CheckRef | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("pi_stream_check") if callspec is not None else None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The checks run in the plan's order, as verify runs them (host by host); other tests keep their places."""
    if SUITE not in config.stash:
        return
    order = config.stash[SUITE].order
    slots = [index for index, item in enumerate(items) if check_of(item) is not None]
    ordered = sorted((items[index] for index in slots), key=lambda item: order[check_of(item).id])
    for index, item in zip(slots, ordered, strict=True):
        items[index] = item


def pytest_collection_finish(session: pytest.Session) -> None:
    if SUITE in session.config.stash:
        session.config.stash[SUITE].selected = {ref.id for ref in map(check_of, session.items) if ref is not None}


def pytest_sessionfinish(session: pytest.Session) -> None:
    if SUITE in session.config.stash:
        session.config.stash[SUITE].run.close()  # logs the viewer out


@pytest.fixture
def pi_stream_check(request: pytest.FixtureRequest):
    """Runs this test's check: passes, fails with the check's detail, or skips saying why it was not run."""
    from pi_stream.checks.run import BLOCKED, FAILED, NOT_APPLICABLE

    ref: CheckRef = request.param
    suite = request.config.stash[SUITE]

    def check() -> None:
        outcome = ref.context.outcome(ref.step.name)
        detail = outcome.detail
        if outcome.state == BLOCKED:
            cause = f"{ref.context.name}-{outcome.cause}"
            reported = cause in suite.selected
            detail = f"not run: needs {cause}{'' if reported else ' (not a test of this run)'}, which failed: {outcome.detail}"
        request.node.user_properties.append(("detail", detail))  # in the JUnit XML, whatever the outcome
        if outcome.state == FAILED or (outcome.state == BLOCKED and not reported):
            pytest.fail(detail, pytrace=False)
        if outcome.state in (NOT_APPLICABLE, BLOCKED):
            pytest.skip(detail)

    return check
