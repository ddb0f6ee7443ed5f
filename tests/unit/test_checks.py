"""pi_stream.checks: one list of checks (plan), run once each after what they need (run), by `pi-stream verify` and by
pytest (plugin). The plugin runs here as a user runs it, a pytest of its own from another directory, on a made-up
plan (every outcome a check can have) and on a real one against a host whose SSH port refuses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

from pi_stream.checks import plan as checks_plan
from pi_stream.checks.plan import CAMERAS, HOST, SSH, WEB, NotApplicable, Step, log_in_as
from pi_stream.checks.run import BLOCKED, FAILED, NOT_APPLICABLE, PASSED, Outcome, SiteRun
from pi_stream.site import load_site
from pi_stream.verify import verify_site
from tests.conftest import EXAMPLE_SITES, VIEWER, VIEWER_PASSWORD, write_site

ROOT = Path(__file__).resolve().parents[2]
CHECKS_DIR = ROOT / "pi_stream" / "checks"


def names(run: SiteRun, host: str) -> list[str]:
    return [step.name for step in run.context(host).steps]


@pytest.fixture
def sites(tmp_path) -> dict:
    return {name: load_site(write_site(tmp_path / name, site, hosts)) for name, (site, hosts) in EXAMPLE_SITES.items()}


def test_the_checks_keep_the_names_verify_has_always_shown(sites):
    """Users' CI and this repository's lab tests look checks up by name: a rename is a change they see."""
    run = SiteRun(sites["testsrc-https"], VIEWER, VIEWER_PASSWORD)
    assert names(run, "pi1") == [
        "ssh reachable", "deployed files = rendered bundle",
        "service nginx active", "service fail2ban active", "service pi-stream-firewall active", "service pi-stream-auth.socket active",
        "service pi-stream-capture active", "service pi-stream-retention.timer active",
        "port 80/tcp listening", "port 443/tcp listening", "RTMP on loopback only", "HLS segments on tmpfs", "firewall table loaded",
        "fail2ban jail pi-stream-auth", "fail2ban jail pi-stream-media", "H.264 encoder", "security updates",
        "TLS certificate served", "HTTP/2 offered", "page served before login, naming no camera", "security headers, no version",
        "testcam: playlist refused before login", "login as alice",
        "testcam: capture state", "testcam: playlist live and advancing", "testcam: segment decodes as H.264", "testcam: latest snapshot",
    ]
    plain = names(SiteRun(sites["mixed-http"], VIEWER, VIEWER_PASSWORD), "pi1")
    assert "port 8080/tcp listening" in plain and not {"TLS certificate served", "HTTP/2 offered", "port 443/tcp listening"} & set(plain)

    webrtc = names(SiteRun(sites["webrtc"], VIEWER, VIEWER_PASSWORD), "pi1")
    assert {"service pi-stream-ome active", "WebRTC relay 3478/tcp listening", "OvenMediaEngine has every WebRTC camera",
            "drive: WebRTC signalling refused before login", "gate: WebRTC offer through the relay"} <= set(webrtc)
    assert "yard: WebRTC offer through the relay" not in webrtc  # yard is HLS only

    relay = SiteRun(sites["relay"], VIEWER, VIEWER_PASSWORD)
    assert {"service wg-quick@pistream active", "service pi-stream-relay active", "tunnel to every relay", "relay in use"} <= set(
        names(relay, "pi1"))
    assert names(relay, "relay2")[-7:] == ["tunnel to every Pi", "TLS certificate served", "page served before login, naming no camera",
                                           "login as alice", "standby", "porch: playlist live and advancing", "porch: segment decodes as H.264"]
    assert [c.name for c in relay.hosts()] == ["pi1", "relay1", "relay2"], "the Pis first: a relay asks them which relay is in use"


def test_every_check_has_a_test_module_a_meaning_and_what_it_needs_before_it(sites):
    documented = check_patterns()
    for site_name, site in sites.items():
        run = SiteRun(site, VIEWER, VIEWER_PASSWORD)
        for context in run.hosts():
            seen: list[str] = []
            for step in context.steps:
                where = f"{site_name} {context.name}: {step.name!r}"
                assert (CHECKS_DIR / f"test_{step.group}.py").exists(), where
                assert all(need in seen for need in step.needs), f"{where} needs {step.needs}, not all before it"
                assert step.needs or step.name == SSH, f"{where}: every check but SSH's needs the host to answer"
                assert any(pattern.fullmatch(step.name) for pattern in documented), f"{where}: not in docs/checks.md"
                seen.append(step.name)


def check_patterns() -> list[re.Pattern]:
    """docs/checks.md's check names, `like this`, with UPPERCASE words as placeholders (CAMERA, SERVICE, PORT, ...)."""
    text = (ROOT / "docs" / "checks.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([^`]+)` \|", text, flags=re.MULTILINE)
    assert len(rows) > 20, "docs/checks.md lists the checks in a table: | `name` | meaning |"
    patterns = []
    for row in rows:
        parts = re.split(r"\b([A-Z][A-Z0-9_]{2,})\b", row)  # odd indexes: the uppercase words
        patterns.append(re.compile("".join(
            r"[\w@.:/-]+" if index % 2 and part not in ("RTMP", "HLS", "TLS", "HTTP") else re.escape(part) for index, part in enumerate(parts)
        )))
    return patterns


def toy_run(site, steps: list[Step], password: str | None = VIEWER_PASSWORD) -> SiteRun:
    return SiteRun(site, VIEWER, password, bundle={}, planner=lambda run, host: list(steps))


def test_each_check_runs_once_after_what_it_needs_and_a_failure_stops_what_depends_on_it(sites):
    calls: list[str] = []

    def probe(name: str, result):
        def run(context):
            calls.append(name)
            if isinstance(result, Exception):
                raise result
            return result
        return run

    steps = [
        Step(SSH, HOST, probe(SSH, (True, "192.0.2.10")), needs=()),
        Step("files", HOST, probe("files", (False, "differ: /etc/nginx/nginx.conf"))),
        Step("login", WEB, probe("login", (True, "0.20 s"))),
        Step("after files", HOST, probe("after files", (True, "")), needs=(SSH, "files")),
        Step("after after files", HOST, probe("after after files", (True, "")), needs=("after files",)),
        Step("waiting", CAMERAS, probe("waiting", NotApplicable("not live: waiting: NVR budget")), needs=("login",)),
        Step("after waiting", CAMERAS, probe("after waiting", (True, "")), needs=("waiting",)),
        Step("crash", HOST, probe("crash", KeyError("PI_STREAM_ENCODER"))),
    ]
    context = toy_run(sites["testsrc-https"], steps).context("pi1")
    # Asked out of order, as a pytest -k selection or another module's test may ask: prerequisites run first.
    assert context.outcome("after after files") == Outcome(BLOCKED, "differ: /etc/nginx/nginx.conf", "files")
    assert calls == [SSH, "files"]
    assert context.outcome("after waiting") == Outcome(NOT_APPLICABLE, "not live: waiting: NVR budget")
    assert context.outcome("crash") == Outcome(FAILED, "KeyError: 'PI_STREAM_ENCODER'")
    assert [context.outcome(s.name).state for s in steps] == [PASSED, FAILED, PASSED, BLOCKED, BLOCKED, NOT_APPLICABLE, NOT_APPLICABLE, FAILED]
    assert calls == [SSH, "files", "login", "waiting", "crash"], "each probe once; none after a failed or not applicable prerequisite"

    loop = toy_run(sites["testsrc-https"], [Step("a", HOST, probe("a", (True, "")), needs=("b",)),
                                            Step("b", HOST, probe("b", (True, "")), needs=("a",))]).context("pi1")
    with pytest.raises(RuntimeError, match="check 'a' needs itself: a -> b -> a"):
        loop.outcome("a")
    with pytest.raises(ValueError, match="two checks share a name"):
        toy_run(sites["testsrc-https"], [steps[0], steps[0]]).context("pi1")


def test_verify_shows_what_ran_and_leaves_out_what_did_not(sites, monkeypatch):
    steps = [
        Step(SSH, HOST, lambda c: (True, c.host.address), needs=()),
        Step("login as alice", WEB, lambda c: (False, "HTTP 401 wrong password?")),
        Step("barn: capture state", CAMERAS, lambda c: (True, "live"), needs=(SSH, "login as alice")),
        Step("standby", CAMERAS, lambda c: (_ for _ in ()).throw(NotApplicable("in use"))),
    ]
    monkeypatch.setattr("pi_stream.checks.run.plan", lambda run, host: list(steps))
    shown = []
    result = verify_site(sites["two-pis"], {}, VIEWER, VIEWER_PASSWORD, on_check=shown.append)
    assert [(c.host, c.name, c.ok, c.detail) for c in result.checks] == [
        ("pi1", SSH, True, "192.0.2.10"), ("pi1", "login as alice", False, "HTTP 401 wrong password?"),
        ("pi2", SSH, True, "192.0.2.11"), ("pi2", "login as alice", False, "HTTP 401 wrong password?"),
    ]
    assert shown == result.checks and not result.ok and result.status == 5
    assert [c.host for c in verify_site(sites["two-pis"], {}, VIEWER, VIEWER_PASSWORD, hosts=["pi2"]).checks] == ["pi2", "pi2"]


def test_without_a_password_the_login_fails_saying_how_to_give_one(sites):
    context = SimpleNamespace(run=SimpleNamespace(password=None, user=VIEWER))
    assert log_in_as(context, ()) == (False, "not tried: no password given (set PI_STREAM_PASSWORD)")


def test_cameras_are_probed_only_live_and_relays_only_in_use(sites, monkeypatch):
    camera = sites["relay"].cameras[0]
    live = checks_plan.when_live(camera, lambda c: (True, "probed"))
    assert live(SimpleNamespace(capture={camera.name: {"state": "live"}})) == (True, "probed")
    with pytest.raises(NotApplicable, match="not live: waiting: 3 of 3 sessions"):
        live(SimpleNamespace(capture={camera.name: {"state": "waiting", "detail": "3 of 3 sessions"}}))

    monkeypatch.setattr("pi_stream.checks.run.testinfra_host", lambda site, host, inventory=None: object())
    monkeypatch.setattr("pi_stream.checks.run.relay_in_use", lambda remote: "relay1")
    run = SiteRun(sites["relay"], VIEWER, VIEWER_PASSWORD)
    for relay in ("relay1", "relay2"):
        context = run.context(relay)
        for name in (SSH, "login as alice"):
            context.outcomes[name] = Outcome(PASSED, "")
    assert run.context("relay2").outcome("standby") == Outcome(PASSED, "no Pi pushes here now: its cameras are served by the relay in use")
    assert run.context("relay2").outcome("porch: playlist live and advancing") == Outcome(NOT_APPLICABLE, "standby: no Pi pushes here now")
    assert run.context("relay1").outcome("standby") == Outcome(NOT_APPLICABLE, "in use: the cameras are checked through this relay")


# The pytest suite as a user runs it: a pytest of its own, in a directory of its own.

TOY_PLAN = '''
"""A plan of every outcome, for the plugin's tests: loaded with -p before the checks are collected."""
from pi_stream.checks import run
from pi_stream.checks.plan import CAMERAS, HOST, SSH, WEB, NotApplicable, Step


def not_applicable(context):
    raise NotApplicable("in use: the cameras are checked through this relay")


def plan(site_run, host):
    return [
        Step(SSH, HOST, lambda c: (True, c.host.address), needs=()),
        Step("service nginx active", HOST, lambda c: (False, "not running")),
        Step("H.264 encoder", HOST, lambda c: 1 / 0),
        Step("login as alice", WEB, lambda c: (False, "HTTP 401 wrong password?")),
        Step("barn: capture state", CAMERAS, lambda c: (True, "live"), needs=(SSH, "login as alice")),
        Step("standby", CAMERAS, not_applicable),
    ]


run.plan = plan
'''


def run_checks(tmp_path: Path, *args: str, toy: bool = True, password: str | None = VIEWER_PASSWORD, plugin: bool = True,
               **env_vars: str) -> tuple[subprocess.CompletedProcess, list]:
    """`pytest --pyargs pi_stream.checks ARGS` in tmp_path/run with a JUnit XML; (the process, [(id, outcome, message, detail)])."""
    (tmp_path / "run").mkdir(exist_ok=True)
    (tmp_path / "toy_plan.py").write_text(TOY_PLAN, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PI_STREAM"))}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
    if password is not None:
        env["PI_STREAM_PASSWORD"] = password
    env.update(env_vars)
    junit = tmp_path / "run" / "checks.xml"
    junit.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "pytest", *(["-p", "pi_stream.checks.plugin"] if plugin else []), *(["-p", "toy_plan"] if toy else []),
            "-p", "no:cacheprovider",
            "--pyargs", "pi_stream.checks", "--junitxml", str(junit), *args]
    process = subprocess.run(argv, cwd=tmp_path / "run", env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    cases = []
    if junit.exists():
        for case in ET.parse(junit).iter("testcase"):
            outcome = next((child for child in case if child.tag in ("failure", "skipped", "error")), None)
            detail = next((p.get("value") for p in case.iter("property") if p.get("name") == "detail"), None)
            case_id = re.fullmatch(r"test_\w+\[(.*)\]", case.get("name")).group(1)
            message = (outcome.get("message") or "").removeprefix("Failed: ") if outcome is not None else ""  # pytest's prefix
            cases.append((case_id, outcome.tag if outcome is not None else "passed", message, detail))
    return process, cases


def test_the_suite_is_one_test_per_check_with_readable_ids_and_junit_xml(tmp_path):
    site = write_site(tmp_path / "site", *EXAMPLE_SITES["two-pis"])
    process, cases = run_checks(tmp_path, "--site", str(site))
    assert process.returncode == 1, process.stdout + process.stderr
    expected = [
        ("ssh reachable", "passed", "", None),
        ("service nginx active", "failure", "not running", "not running"),
        ("H.264 encoder", "failure", "ZeroDivisionError: division by zero", "ZeroDivisionError: division by zero"),
        ("login as alice", "failure", "HTTP 401 wrong password?", "HTTP 401 wrong password?"),
        ("barn: capture state", "skipped", "not run: needs {host}-login as alice, which failed: HTTP 401 wrong password?", None),
        ("standby", "skipped", "in use: the cameras are checked through this relay", None),
    ]
    want = []
    for host, address in (("pi1", "192.0.2.10"), ("pi2", "192.0.2.11")):  # in the plan's order, host by host, as verify runs them
        for name, outcome, message, detail in expected:
            message = message.format(host=host)
            detail = {"ssh reachable": address}.get(name, detail or message)
            want.append((f"{host}-{name}", outcome, message, detail))
    assert cases == want
    assert "FAILED" in process.stdout and "pi1-service nginx active" in process.stdout


def test_a_check_whose_cause_is_not_a_test_of_the_run_fails(tmp_path):
    """-k that leaves the failed login out: the camera's check cannot pass or hide behind a skip."""
    site = write_site(tmp_path / "site", *EXAMPLE_SITES["testsrc-https"])
    process, cases = run_checks(tmp_path, "--site", str(site), "-k", "capture")
    assert process.returncode == 1
    assert cases == [("pi1-barn: capture state", "failure",
                      "not run: needs pi1-login as alice (not a test of this run), which failed: HTTP 401 wrong password?",
                      "not run: needs pi1-login as alice (not a test of this run), which failed: HTTP 401 wrong password?")]


def test_testinfra_hosts_choose_among_the_sites_hosts(tmp_path):
    site = write_site(tmp_path / "site", *EXAMPLE_SITES["two-pis"])
    _, cases = run_checks(tmp_path, "--site", str(site), "--hosts", "ansible://pi2")
    assert {case[0].split("-", 1)[0] for case in cases} == {"pi2"}
    _, cases = run_checks(tmp_path, "--site", str(site), "--hosts", "ansible://all")
    assert {case[0].split("-", 1)[0] for case in cases} == {"pi1", "pi2"}


@pytest.mark.parametrize("args,message", [
    ((), "pi_stream.checks needs --site"),
    (("--site", "{site}", "--hosts", "ssh://root@192.0.2.10"), "--hosts ssh://root@192.0.2.10: the checks test the site's hosts, by their "
                                                                "inventory names (pi1)"),
    (("--site", "{site}", "--viewer", "mallory"), "--viewer 'mallory' is not a viewer of"),
    (("--site", "{missing}"), "nowhere: not a directory (create a site with `pi-stream init DIR`)"),
], ids=["no-site", "foreign-host", "unknown-viewer", "no-site-file"])
def test_usage_errors_say_what_to_give(args, message, tmp_path):
    site = write_site(tmp_path / "site", *EXAMPLE_SITES["testsrc-https"])
    args = tuple(a.format(site=site, missing=tmp_path / "nowhere") for a in args)
    process, cases = run_checks(tmp_path, *args)
    assert process.returncode == pytest.ExitCode.USAGE_ERROR, process.stdout + process.stderr
    assert message in process.stderr and cases == []


def test_without_the_plugin_loaded_the_checks_say_how_to_load_it(tmp_path):
    """No -p and no plugin autoload: the package's conftest.py registers the plugin late, in time to say what is missing."""
    process, cases = run_checks(tmp_path, plugin=False, toy=False, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    assert process.returncode == pytest.ExitCode.USAGE_ERROR, process.stdout + process.stderr
    assert "pi_stream.checks needs --site" in process.stderr and "add -p pi_stream.checks.plugin" in process.stderr


def test_the_real_checks_against_a_host_that_refuses_ssh(tmp_path):
    """The shipped plan, no toy: SSH's check fails saying why, and every other check is skipped naming it."""
    site = write_site(tmp_path / "site", EXAMPLE_SITES["testsrc-https"][0],
                      {"pi1": {"ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_user": "root"}})
    process, cases = run_checks(tmp_path, "--site", str(site), toy=False, password=None)
    assert process.returncode == 1, process.stdout + process.stderr
    assert cases[0][:2] == ("pi1-ssh reachable", "failure") and "Connection refused" in cases[0][2]
    ids = [case[0] for case in cases]
    assert ids == [f"pi1-{name}" for name in names(SiteRun(load_site(site), VIEWER, None), "pi1")]
    assert all(outcome == "skipped" and message.startswith("not run: needs pi1-ssh reachable, which failed: exit 255: ssh: connect to host")
               for _, outcome, message, _ in cases[1:])


def test_a_rewritten_inventory_is_read_again_not_taken_from_testinfras_cache(tmp_path):
    """testinfra caches an inventory's reading per path for the process: a build host added to the file later was
    reached by its bare name ("Could not resolve hostname pi2", seen in CI's source-build lab)."""
    from pi_stream.checks.connection import testinfra_host

    site_dir = write_site(tmp_path / "site", {"name": "cache", "cameras": [{"name": "yard", "source": {"type": "testsrc"}}]})
    site = load_site(site_dir)

    def address(host) -> str:
        backend = testinfra_host(site, host).backend
        return backend.ansible_runner.get_variables(backend.host)["ansible_host"]

    assert address(site.hosts[0]) == "192.0.2.10"
    write_site(site_dir, {"name": "cache", "cameras": [{"name": "yard", "source": {"type": "testsrc"}}]},
               hosts={"pi1": {"ansible_host": "192.0.2.11", "ansible_user": "root"},
                      "pi_stream_builders": {"hosts": {"pi2": {"ansible_host": "192.0.2.12", "ansible_user": "root"}}}})
    site = load_site(site_dir)
    assert address(site.hosts[0]) == "192.0.2.11"
    (builder,) = site.build_hosts
    assert address(builder) == "192.0.2.12"
