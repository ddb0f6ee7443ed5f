"""Every way in, from the rendered configs: a password or token check without a rate limit, an auth-log line a
fail2ban filter matches and an enabled jail reading it fails here; docs/security.md is the same rows, kept current."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pi_stream import PROJECT_ROOT, credentials
from pi_stream.render import render_site
from pi_stream.site import load_site
from tests.conftest import EXAMPLE_SITES, VIEWER, VIEWER_PASSWORD, write_public_keys
from tests.configs.attack_surface import (
    PASSWORD_ROUTES,
    Host,
    markdown,
    parse,
    password_handlers,
    select,
)

DOC = PROJECT_ROOT / "docs/security.md"
EXAMPLES = PROJECT_ROOT / "examples"
# One table per kind of host in docs/security.md: (title, example site, host).
SECTIONS = (
    ("Appliance, HTTPS (topology lan)", "testsrc-https", "pi1"),
    ("Appliance, plain HTTP (web.https: false)", "mixed-http", "pi1"),
    ("Appliance with proxied DVRs (dvr_proxy: shed behind viewer_auth, office with only its own login)", "dvr", "pi1"),
    ("Appliance with WebRTC (topology port_forward)", "webrtc", "pi1"),
    ("Relay site: the Pi", "relay", "pi1"),
    ("Relay site: a relay (the Pis' pages for relay.admins on 8443, DVR barn on 9443)", "relay", "relay1"),
    ("Identity logins (login.oidc and login.proxy): the Pi", "identity", "pi1"),
    ("Identity logins (login.oidc and login.proxy): a relay", "identity", "relay1"),
)


def hosts(site_dir: Path) -> dict[str, Host]:
    """Every host of a site, its bundle read (paths as on the Pi)."""
    site = load_site(site_dir)
    return {name: Host(name, {path: file.content for path, file in files.items()}, site)
            for name, files in sorted(render_site(site).items())}


def example_dir(tmp_path: Path, topology: str) -> Path:
    """examples/TOPOLOGY as a user would have it after `pi-stream user add` (and, for relay, the first deploy's keys)."""
    site_dir = tmp_path / topology
    shutil.copytree(EXAMPLES / topology, site_dir)
    credentials.add_user(site_dir, VIEWER, VIEWER_PASSWORD)
    if topology == "relay":
        write_public_keys(site_dir, ["pi1", "relay1", "relay2"])
    return site_dir


def problems(site_hosts: dict[str, Host], what: str) -> list[str]:
    return [f"{what} {name} port {row.port} {row.location}: {problem}"
            for name, host in site_hosts.items() for row in host.rows() for problem in row.problems]


@pytest.mark.parametrize("example", sorted(EXAMPLE_SITES))
def test_every_password_and_token_check_is_limited_logged_and_jailed(make_site, example):
    """The rule of docs/security.md, on every host of every example site; also: no port opened without a row."""
    found = problems(hosts(make_site(example)), example)
    assert not found, "ways in that break the rule (docs/security.md):\n" + "\n".join(found)


@pytest.mark.parametrize("topology", ["lan", "port_forward", "relay"])
def test_the_shipped_examples_keep_the_rule(tmp_path, topology):
    found = problems(hosts(example_dir(tmp_path, topology)), f"examples/{topology}")
    assert not found, "ways in that break the rule (docs/security.md):\n" + "\n".join(found)


def test_docs_security_md_is_what_the_templates_render(make_site, request):
    """docs/security.md is generated: regenerate with --update-golden, review the diff."""
    sites = {example: hosts(make_site(example)) for example in dict.fromkeys(e for _, e, _ in SECTIONS)}
    text = markdown([(title, sites[example][host].rows()) for title, example, host in SECTIONS])
    if request.config.getoption("--update-golden"):
        DOC.write_text(text, encoding="utf-8")
    assert DOC.read_text(encoding="utf-8") == text, (
        "docs/security.md differs from the current templates: .venv/bin/pytest tests/configs/test_attack_surface.py "
        "--update-golden, then review the diff"
    )


def test_every_password_route_of_the_login_service_is_known():
    """The rows find password checks by the login service's routes: a new handler calling the bcrypt check needs one here."""
    assert password_handlers() == set(PASSWORD_ROUTES)


# --------------------------------------------------------------------------- the rule catches the class


def mutated(make_site, edit) -> list[str]:
    """The rule's complaints about testsrc-https's pi1 with http.conf edited by `edit(text) -> text`."""
    site_dir = make_site("testsrc-https")
    host = hosts(site_dir)["pi1"]
    files = dict(host.files)
    conf = "etc/nginx/pi-stream/http.conf"
    edited = edit(files[conf].decode())
    assert edited != files[conf].decode(), "the edit changed nothing"
    files[conf] = edited.encode()
    return problems({"pi1": Host("pi1", files, host.site)}, "testsrc-https")


def add_location(text: str, location: str) -> str:
    """`location` added to the HTTPS server, before its catch-all `location / { return 404; }`."""
    head, sep, tail = text.rpartition("    location / {\n        return 404;")
    return head + location + "\n" + sep + tail


def test_a_generic_auth_location_is_a_password_check(make_site):
    """proxy_pass without a URI passes any /auth/ path, /auth/dvr/NAME/login too: unlimited and unlogged, it is a hole."""
    found = mutated(make_site, lambda text: add_location(text, "    location /auth/ {\n"
                                                              "        proxy_pass http://unix:/run/pi-stream-auth.sock:;\n    }"))
    assert [p for p in found if "`/auth/`: password (login service): no rate limit" in p], found
    assert [p for p in found if "`/auth/`: password (login service): a failure (401) is not logged" in p], found


def test_a_login_location_that_loses_its_limit_or_its_event_fails(make_site):
    def unlimited(text: str) -> str:
        return add_location(text, "    location = /auth/dvr/shed/login {\n"
                                  "        proxy_pass http://unix:/run/pi-stream-auth.sock:;\n"
                                  "        set $pi_stream_auth_event login-guess;\n"
                                  "        access_log /var/log/pi-stream/auth.log pi_stream_auth if=$pi_stream_login_failed;\n    }")

    found = mutated(make_site, unlimited)
    assert [p for p in found if "/auth/dvr/shed/login`: password (login service): no rate limit" in p], found
    assert [p for p in found if "/auth/dvr/shed/login`: password (login service): the logged event matches no" in p], found


def test_a_token_check_without_its_refusal_path_fails(make_site):
    """secure_link whose failure is answered in place (no rewrite to the logged, limited refusal location)."""
    found = mutated(make_site, lambda text: add_location(text, '    location ~ "^/x/(?<pi_stream_camera>[a-z]+)$" {\n'
                                                              "        secure_link $arg_s,$arg_e;\n"
                                                              '        if ($secure_link = "") { return 403; }\n    }'))
    assert [p for p in found if "media token (secure_link): no rate limit" in p], found
    assert [p for p in found if "media token (secure_link): a failure (403) is not logged" in p], found


# --------------------------------------------------------------------------- the parser


def test_the_parser_reads_quotes_comments_blocks_and_includes():
    files = {
        "etc/nginx/nginx.conf": b'http { include /etc/nginx/conf.d/*.conf; # a comment; with { braces\n}\n',
        "etc/nginx/conf.d/a.conf": (b'map $x $y { "~^a;b{1}$" 1; default \'q\\\'s\'; }\n'
                                    b'server { location ~ "^/(?<c>[a-z]{1,3})/$" { return 200 "a \\"quoted\\" }"; } }\n'),
    }
    (http,) = parse(files["etc/nginx/nginx.conf"].decode(), "nginx.conf", files)
    mapping, server = http.block
    assert (mapping.name, mapping.args, [(d.name, d.args) for d in mapping.block]) == (
        "map", ("$x", "$y"), [("~^a;b{1}$", ("1",)), ("default", ("q's",))])
    (location,) = server.children("location")
    assert location.args == ("~", "^/(?<c>[a-z]{1,3})/$")
    assert location.first("return").args == ("200", 'a "quoted" }')
    for broken in ("server {", "}", "listen 80", "{ }"):
        with pytest.raises(ValueError):
            parse(broken, "broken.conf")


@pytest.mark.parametrize(
    ("uri", "chosen"),
    [
        ("/auth/login", "/auth/ › = /auth/login"),  # exact, nested
        ("/auth/dvr/x/login", "/auth/"),  # the longest prefix, no regex matches
        ("/auth/x.js", "~ \\.js$"),  # a regex beats a plain prefix
        ("/static/x.js", "^~ /static/"),  # but not a ^~ one
        ("/hls/a/b.js", "/hls/ › ~ ^/hls/a/"),  # nested regexes first
        ("/elsewhere", "/"),
    ],
)
def test_location_selection_is_nginx_s(uri, chosen):
    text = ("server { location / {} location /auth/ { location = /auth/login {} } location ^~ /static/ {}"
            ' location /hls/ { location ~ "^/hls/a/" {} } location ~ "\\.js$" {} }')
    (server,) = parse(text, "server.conf")
    location, _ = select(server, (server,), uri)
    assert location.label().replace("`", "") == chosen
