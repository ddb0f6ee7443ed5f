"""site.yml `login:` and viewers' `emails:`: identity logins load, and every mistake is named at its field."""

from __future__ import annotations

import json

import pytest

from pi_stream.console import Console
from pi_stream.errors import PiStreamError
from pi_stream.render import render_site
from pi_stream.site import load_site
from pi_stream.workflows import run_verify
from tests.conftest import VIEWER, write_site
from tests.unit.test_site import problems_by_path

CAMERAS = [{"name": "garden", "source": {"type": "testsrc"}}, {"name": "door", "source": {"type": "testsrc"}}]
OIDC = {"issuer": "https://id.example.org", "client_id": "pi-stream", "client_secret_file": "oidc-client-secret"}
CLOUDFLARE = {"type": "cloudflare_access", "team_domain": "family.cloudflareaccess.com", "audience": "aud-tag"}


def site_with(tmp_path, login: dict, viewers: dict | None = None, htpasswd: bool = True, **more):
    site = {"cameras": CAMERAS, "login": login, **more}
    if viewers is not None:
        site["viewers"] = viewers
    return write_site(tmp_path / "s", site, viewers=htpasswd)


def test_identities_map_lower_cased_emails_to_viewers_and_identity_only_viewers_need_no_password(tmp_path):
    site = load_site(site_with(tmp_path, {"oidc": OIDC}, {"bob": {"emails": ["Bob@Example.ORG"], "cameras": ["door"]},
                                                          "carol": {"emails": ["carol@example.org", "c@example.net"]}}))
    assert site.identities == {"bob@example.org": "bob", "carol@example.org": "carol", "c@example.net": "carol"}
    assert site.viewers == (VIEWER, "bob", "carol") and site.password_viewers == (VIEWER,)
    assert site.camera_access == {"bob": ("door",)}, "carol, with no cameras:, sees every camera"
    access = json.loads(render_site(site)["pi1"]["etc/pi-stream/auth/access.json"].content)
    assert access["access"] == {VIEWER: ["garden", "door"], "bob": ["door"], "carol": ["garden", "door"]}
    assert access["oidc"] == {"issuer": "https://id.example.org", "client_id": "pi-stream", "scopes": "openid email", "name": "id.example.org"}
    assert "s3cret" not in json.dumps(access) and "client_secret" not in json.dumps(access)


def test_a_site_of_identity_logins_alone_needs_no_viewers_file(tmp_path):
    directory = site_with(tmp_path, {"password": False, "proxy": CLOUDFLARE}, {"alice": {"emails": ["alice@example.org"]}}, htpasswd=False)
    site = load_site(directory)
    assert site.password_viewers == () and site.viewers == ("alice",)
    assert site.login.proxy.jwks_uri == "https://family.cloudflareaccess.com/cdn-cgi/access/certs"
    bundle = render_site(site)["pi1"]
    page = bundle["var/www/pi-stream/index.html"].content.decode()
    assert "data-proxy-login" in page and 'name="password"' not in page, "no password form on a site that turned it off"
    unit = bundle["etc/systemd/system/pi-stream-auth.service"].content.decode()
    assert "PrivateNetwork=yes" not in unit and "AF_INET" in unit, "the service reaches the provider's keys"


def test_without_identity_logins_the_service_keeps_no_network(tmp_path):
    unit = render_site(load_site(write_site(tmp_path / "s", {"cameras": CAMERAS})))["pi1"]["etc/systemd/system/pi-stream-auth.service"]
    assert "PrivateNetwork=yes" in unit.content.decode() and "oidc-client-secret" not in unit.content.decode()


@pytest.mark.parametrize(
    ("login", "viewers", "path", "words"),
    [
        ({"oidc": {**OIDC, "issuer": "http://id.example.org"}}, None, "login.oidc.issuer", "https://"),
        ({"oidc": {**OIDC, "issuer": "https://id.example.org/"}}, None, "login.oidc.issuer", "trailing"),
        ({"oidc": {k: v for k, v in OIDC.items() if k != "client_id"}}, None, "login.oidc.client_id", "missing"),
        ({"oidc": {**OIDC, "client_secret_file": "nope"}}, None, "login.oidc.client_secret_file", "does not exist"),
        ({"proxy": {**CLOUDFLARE, "audience": ""}}, None, "login.proxy.audience", "AUD tag"),
        ({"proxy": {"type": "oidc", "issuer": "https://id.example.org", "audience": "x", "header": "X-Email"}}, None,
         "login.proxy.header", "no signature"),
        ({"proxy": {**CLOUDFLARE, "type": "basic"}}, None, "login.proxy.type", "cloudflare_access, oidc"),
        ({"password": False}, None, "login.password", "no way to log in"),
        ({"ca_file": "ca.pem", "oidc": OIDC}, None, "login.ca_file", "does not exist"),
        ({"oidc": OIDC}, {}, "login.oidc", "no viewer has emails"),
        ({}, {"bob": {"emails": ["bob@example.org"]}}, "login", "no identity login"),
        ({"oidc": OIDC}, {"bob": {"emails": ["not an address"]}}, "viewers.bob.emails[0]", "not an e-mail"),
        ({"oidc": OIDC}, {"bob": {"emails": ["x@example.org"]}, "eve": {"emails": ["X@example.org"]}}, "viewers.eve.emails[0]",
         "already logs in as viewer 'bob'"),
        ({"oidc": OIDC}, {"Bad Name": {"emails": ["x@example.org"]}}, "viewers.Bad Name", "not a valid viewer name"),
        ({"oidc": OIDC}, {"dave": {"cameras": ["door"]}}, "viewers.dave", "give it emails"),
    ],
)
def test_each_mistake_is_named_at_its_field(tmp_path, login, viewers, path, words):
    if viewers is None:
        viewers = {"bob": {"emails": ["bob@example.org"]}}
    directory = site_with(tmp_path, login, viewers)
    for missing in ("nope", "ca.pem"):  # write_site makes the files login: names
        (directory / missing).unlink(missing_ok=True)
    problems = problems_by_path(directory)
    assert words in problems.get(path, ""), problems


def test_a_client_secret_others_can_read_is_refused_and_never_shown(tmp_path):
    directory = site_with(tmp_path, {"oidc": OIDC}, {"bob": {"emails": ["bob@example.org"]}})
    (directory / "oidc-client-secret").chmod(0o640)
    problems = problems_by_path(directory)
    assert "chmod 600" in problems["login.oidc.client_secret_file"]
    assert "s3cret" not in json.dumps(problems)


def test_oidc_needs_https_on_the_site(tmp_path):
    directory = site_with(tmp_path, {"oidc": OIDC}, {"bob": {"emails": ["bob@example.org"]}}, web={"https": False})
    assert "web.https" in problems_by_path(directory)["login.oidc"]


def test_relay_admins_may_be_identity_only_viewers(make_site):
    site = load_site(make_site("identity"))
    assert site.remote.admins == ("carol",) and "carol" not in site.password_viewers


def test_verify_says_at_once_when_it_cannot_log_in_with_a_password(tmp_path):
    directory = site_with(tmp_path, {"oidc": OIDC}, {"bob": {"emails": ["bob@example.org"]}})
    with pytest.raises(PiStreamError, match="logs in by identity only"):
        run_verify(load_site(directory), "bob", "x", Console(show_progress=False))
    off = site_with(tmp_path, {"oidc": OIDC, "password": False}, {"bob": {"emails": ["bob@example.org"]}})
    with pytest.raises(PiStreamError, match="password login off"):
        run_verify(load_site(off), VIEWER, "x", Console(show_progress=False))


def test_with_password_login_off_verify_checks_all_but_what_needs_a_login(tmp_path):
    from pi_stream.checks.plan import IDENTITY, login_check
    from pi_stream.checks.run import SiteRun

    directory = site_with(tmp_path, {"oidc": OIDC, "password": False}, {"bob": {"emails": ["bob@example.org"]}})
    [context] = SiteRun(load_site(directory), "", None).hosts()
    names = [step.name for step in context.steps]
    assert IDENTITY in names and "garden: playlist refused before login" in names
    assert login_check("") not in names and not [name for name in names if "advancing" in name or "capture state" in name]
    [with_password] = SiteRun(load_site(site_with(tmp_path / "on", {"oidc": OIDC}, {"bob": {"emails": ["bob@example.org"]}})),
                              VIEWER, "x").hosts()
    assert login_check(VIEWER) in [step.name for step in with_password.steps]


def test_user_list_says_how_each_viewer_logs_in(tmp_path, monkeypatch, capsys):
    from tests.unit.test_cli import run_cli

    directory = site_with(tmp_path, {"oidc": OIDC}, {"bob": {"emails": ["bob@example.org"], "cameras": ["door"]},
                                                     VIEWER: {"emails": ["alice@example.org"], "cameras": ["garden"]}})
    status, out = run_cli(["user", "list", str(directory)], monkeypatch, capsys)[:2]
    assert out.splitlines() == [f"{VIEWER}\tgarden\tpassword and identity alice@example.org", "bob\tdoor\tidentity bob@example.org"]


def test_deploy_and_verify_name_the_redirect_uris_to_register(tmp_path):
    from pi_stream.workflows import print_urls

    site = load_site(site_with(tmp_path, {"oidc": OIDC}, {"bob": {"emails": ["bob@example.org"]}}))
    lines = []
    console = Console(show_progress=False)
    console.info = lines.append
    print_urls(site, console)
    assert lines[-2:] == ["OpenID Connect: register these redirect URIs for client pi-stream at https://id.example.org:",
                          "  https://192.0.2.10/auth/oidc/callback"]


def test_a_ca_file_tls_cannot_load_is_refused_before_it_reaches_the_pi(tmp_path):
    directory = site_with(tmp_path, {"oidc": OIDC, "ca_file": "ca.pem"}, {"bob": {"emails": ["bob@example.org"]}})
    (directory / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIBnotreally\n-----END CERTIFICATE-----\n")
    assert "not a PEM CA certificate that TLS can load" in problems_by_path(directory)["login.ca_file"]
