"""The checks as a user runs them from the installed wheel (issue 24, part 3): `pytest --pyargs pi_stream.checks --site SITE`
from a directory outside the checkout, with a JUnit XML for their CI.

On a deployed Pi every test passes. A broken Pi (fail2ban stopped, a byte added to nginx.conf) fails exactly the tests
of what broke, by their readable ids, and passes the rest; `pi-stream verify` fails with exit code 5 naming the same
checks. A deploy repairs it, and the Pi is left deployed and passing for the modules after this one.

The module deploys its own site (it does not rely on the quick start having run); a deploy on a deployed Pi is quick.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pi_stream.checks.run import SiteRun
from pi_stream.site import load_site
from tests.conftest import VIEWER, VIEWER_PASSWORD, write_site
from tests.lab.conftest import ssh

pytestmark = pytest.mark.lab

PLUGIN = "pi_stream.checks.plugin"
SITE = {"name": "checks", "cameras": [{"name": "yard", "source": {"type": "testsrc"}}]}
# What the breakage breaks: the file check, the stopped service, and fail2ban's two jails (fail2ban-client asks the server).
BROKEN = {"pi1-deployed files = rendered bundle", "pi1-service fail2ban active", "pi1-fail2ban jail pi-stream-auth",
          "pi1-fail2ban jail pi-stream-media"}


def on_pi(lab_state, command: str, timeout: float = 120) -> str:
    result = ssh(lab_state, "pi1", command, timeout=timeout)
    assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
    return result.stdout


def deploy(installed, site_dir: Path) -> None:
    result = installed.run("pi-stream", "deploy", str(site_dir), timeout=1800)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])


@pytest.fixture(scope="module")
def site_dir(installed_lab, installed, tmp_path_factory) -> Path:
    directory = write_site(tmp_path_factory.mktemp("checks") / "site", SITE)
    installed_lab.write_inventory(directory / "inventory.yml")
    deploy(installed, directory)
    return directory


@pytest.fixture(scope="module")
def suite(installed, site_dir, tmp_path_factory):
    """run(*pytest args) -> (exit code, {test id: (outcome, message, detail)}): the shipped suite from the installed venv."""
    probe = installed.run(str(installed.bin / "python"), "-c",
                          f"import importlib.metadata as m; print({PLUGIN!r} in [e.name for e in m.entry_points(group='pytest11')])")
    assert probe.returncode == 0, probe.stderr
    # The short form when the wheel registers the plugin; `-p` (documented for PYTEST_DISABLE_PLUGIN_AUTOLOAD) until then.
    plugin = [] if probe.stdout.strip() == "True" else ["-p", PLUGIN]
    runs = tmp_path_factory.mktemp("junit")

    def run(*args: str, name: str) -> tuple[int, dict, str]:
        junit = runs / f"{name}.xml"
        result = installed.run(str(installed.bin / "pytest"), *plugin, "--pyargs", "pi_stream.checks", "--site", str(site_dir),
                               "--junitxml", str(junit), *args, timeout=900, PI_STREAM_PASSWORD=VIEWER_PASSWORD)
        return result.returncode, read_junit(junit), result.stdout[-6000:] + result.stderr[-3000:]

    return run


def read_junit(path: Path) -> dict[str, tuple[str, str, str]]:
    cases = {}
    for case in ET.parse(path).iter("testcase"):
        outcome = next((child for child in case if child.tag in ("failure", "skipped", "error")), None)
        detail = next((p.get("value") for p in case.iter("property") if p.get("name") == "detail"), "")
        test_id = re.fullmatch(r"test_\w+\[(.*)\]", case.get("name")).group(1)
        if outcome is None:
            cases[test_id] = ("passed", "", detail)
        else:
            cases[test_id] = (outcome.tag, outcome.get("message") or "", detail)
    return cases


def plan_ids(site_dir: Path) -> list[str]:
    run = SiteRun(load_site(site_dir), VIEWER, VIEWER_PASSWORD)
    return [f"pi1-{step.name}" for step in run.context("pi1").steps]


def test_every_check_passes_on_the_deployed_pi(suite, site_dir):
    code, cases, output = suite(name="deployed")
    assert code == 0, output
    assert list(cases) == plan_ids(site_dir), "one test per check, in verify's order"
    assert {outcome for outcome, _, _ in cases.values()} == {"passed"}, output
    assert cases["pi1-yard: segment decodes as H.264"][2].startswith("h264 640x360 "), cases["pi1-yard: segment decodes as H.264"]
    assert cases["pi1-service nginx active"][2] == "running, enabled"


def test_a_broken_pi_fails_exactly_the_broken_checks_then_a_deploy_repairs_it(suite, installed, installed_lab, site_dir):
    assert on_pi(installed_lab, "head -c 1 /etc/nginx/nginx.conf") == "#", "the header comment: the byte added is in a comment"
    on_pi(installed_lab, "sed -i '1s/^#/##/' /etc/nginx/nginx.conf && systemctl stop fail2ban")
    try:
        code, cases, output = suite(name="broken")
        assert code == 1, output
        failed = {test_id for test_id, (outcome, _, _) in cases.items() if outcome == "failure"}
        assert failed == BROKEN, output
        assert {outcome for test_id, (outcome, _, _) in cases.items() if test_id not in BROKEN} == {"passed"}, output
        assert list(cases) == plan_ids(site_dir)
        assert cases["pi1-deployed files = rendered bundle"][1] == "Failed: differ: /etc/nginx/nginx.conf"
        assert cases["pi1-service fail2ban active"][1] == "Failed: not running"

        verified = installed.run("pi-stream", "verify", str(site_dir), timeout=900, PI_STREAM_PASSWORD=VIEWER_PASSWORD)
        assert verified.returncode == 5, (verified.stdout[-3000:], verified.stderr[-3000:])
        said = verified.stdout + verified.stderr
        names = [test_id.removeprefix("pi1-") for test_id in plan_ids(site_dir)]
        failing = {name for name in names for line in said.splitlines() if "FAIL" in line and re.search(rf"\b{re.escape(name)}\b", line)}
        assert failing == {test_id.removeprefix("pi1-") for test_id in BROKEN}, said[-3000:]
    finally:
        deploy(installed, site_dir)  # repairs: the file copied again, fail2ban started

    code, cases, output = suite(name="repaired")
    assert code == 0 and {outcome for outcome, _, _ in cases.values()} == {"passed"}, output
