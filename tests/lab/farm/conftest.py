"""The farm: two simulated Pis shared by test_appliance, test_identity and test_viewer_auth, booted once, torn down after all three.

Package-scoped, not session-scoped: a worker that goes on to other labs does not keep
this one (and its cameras) running until the end of the run.

The farm logs in by identity from its first deploy (issue 25), so test_identity needs no
deploy of its own to turn it on: an OpenID provider (oidc-provider-mock) that also serves
Cloudflare Access's key path runs in a client namespace on the lab bridge ("idp"), and
site.yml names it under login.oidc and login.proxy, with its test CA as login.ca_file.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pi_stream import credentials
from pi_stream.console import Console
from tests.conftest import VIEWER, VIEWER_PASSWORD, write_site
from tests.identity_provider import AUDIENCE
from tests.lab.conftest import LabIdentityProvider, booted_lab, identity_provider_beside, ssh

LAB_NAME = "test"
LIMITED_VIEWER, LIMITED_PASSWORD = "bob", "bob only sees the barn"
# Identity-only viewers (no line in viewers.htpasswd). ann may watch the barn alone, erin every camera. Not "alice":
# the farm's password viewer alice (tests.conftest.VIEWER) watches every camera, and a name is one viewer.
IDENTITY_VIEWER, IDENTITY_EMAIL, IDENTITY_OTHER_EMAIL = "ann", "ann@example.org", "ann@home.example"
ALL_CAMERAS_VIEWER, ALL_CAMERAS_EMAIL = "erin", "erin@example.org"
STRANGER_EMAIL = "stranger@example.org"  # verified at the provider, no viewer of the farm
OIDC_CLIENT_ID, OIDC_SECRET_FILE, IDENTITY_CA_FILE = "pi-stream", "oidc-client-secret", "identity-ca.pem"


class Curl:
    """curl in a client namespace, with its own cookie jar (test_viewer_auth, test_identity)."""

    def __init__(self, client, base: str, jar: Path) -> None:
        self.client, self.base, self.jar = client, base, jar

    def argv(self, *extra: str) -> list[str]:
        return [*self.client.exec_prefix, "curl", "-sk", "--max-time", "5", "-c", str(self.jar), "-b", str(self.jar), *extra]

    def request(self, path: str, *extra: str, body: dict | None = None) -> tuple[int, str]:
        argv = self.argv("-w", "\n%{http_code}", *extra)
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
        result = subprocess.run([*argv, f"{self.base}{path}"], input=json.dumps(body) if body is not None else None,
                                capture_output=True, text=True, timeout=30, check=False)
        text, _, code = result.stdout.rpartition("\n")
        return int(code) if code.isdigit() else 0, text

    def redirect(self, path: str, *extra: str) -> tuple[int, str]:
        """(status, the Location it redirects to, or "") of GET path, not followed."""
        result = subprocess.run([*self.argv("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", *extra), f"{self.base}{path}"],
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False)
        code, _, location = result.stdout.partition(" ")
        return int(code) if code.isdigit() else 0, location.strip()

    def login(self, user: str, password: str) -> tuple[int, str]:
        return self.request("/auth/login", body={"user": user, "password": password})

    def media_token(self, camera: str) -> str:
        return self.cookie("pi_stream_media", f"/hls/{camera}/")

    def cookie(self, name: str, path: str) -> str:
        for line in self.jar.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) == 7 and fields[2] == path and fields[5] == name:
                return fields[6]
        raise AssertionError(f"no cookie {name} for {path} in the jar")


@contextlib.contextmanager
def namespace_curl(lab_env, name: str, base: str, tmp_path: Path):
    from pi_stream import lab

    with lab.client_namespace(lab_env, name) as client:
        yield Curl(client, base, tmp_path / f"{name}.jar"), client


def banned(lab_env, jail: str, address: str, host: str = "pi1") -> bool:
    return address in ssh(lab_env, host, "fail2ban-client", "status", jail).stdout


@pytest.fixture(scope="package")
def lab_env():
    with booted_lab(LAB_NAME, hosts=2) as state:
        yield state


@pytest.fixture(scope="package")
def identity_provider(lab_env, tmp_path_factory) -> Iterator[LabIdentityProvider]:
    """The identity provider in a client namespace of the farm ("idp"), for as long as the farm, with the mock's users."""
    with identity_provider_beside(lab_env, tmp_path_factory.mktemp("identity-provider")) as provider:
        for email in (IDENTITY_EMAIL, IDENTITY_OTHER_EMAIL, ALL_CAMERAS_EMAIL, STRANGER_EMAIL):
            provider.mock.add_user(email, {"email": email, "email_verified": True})
        yield provider


@pytest.fixture(scope="package")
def site_dir(lab_env, identity_provider, tmp_path_factory) -> Path:
    """A two-Pi site: two test-pattern cameras on pi1, one on pi2; bob may watch only the barn (password);
    ann only the barn and erin every camera, both by identity alone (OpenID Connect or the proxy's assertion)."""
    directory = tmp_path_factory.mktemp("lab-site") / "farm"
    write_site(
        directory,
        {
            "name": "farm",
            "cameras": [
                {"name": "barn", "host": "pi1", "source": {"type": "testsrc"}},
                {"name": "yard", "host": "pi1", "source": {"type": "testsrc"}, "width": 320, "height": 180, "fps": 10},
                {"name": "gate", "host": "pi2", "source": {"type": "testsrc"}, "width": 320, "height": 180},
            ],
            "viewers": {
                LIMITED_VIEWER: {"cameras": ["barn"]},
                IDENTITY_VIEWER: {"emails": [IDENTITY_EMAIL, IDENTITY_OTHER_EMAIL], "cameras": ["barn"]},
                ALL_CAMERAS_VIEWER: {"emails": [ALL_CAMERAS_EMAIL]},
            },
            "login": {
                "oidc": {"issuer": identity_provider.url, "client_id": OIDC_CLIENT_ID, "client_secret_file": OIDC_SECRET_FILE,
                         "name": "Lab ID"},
                "proxy": {"type": "cloudflare_access", "team_domain": identity_provider.team_domain, "audience": AUDIENCE},
                "ca_file": IDENTITY_CA_FILE,
            },
            "fail2ban": {"maxretry": 3, "findtime_seconds": 600, "bantime_seconds": 600},
        },
        files={
            # Recognisable, so test_viewer_auth can look for it anywhere it must not be; random, so no file of
            # the repository or a previous run holds it by chance.
            OIDC_SECRET_FILE: f"farm-oidc-client-secret-{secrets.token_hex(16)}\n",
            IDENTITY_CA_FILE: identity_provider.ca_file.read_text(encoding="utf-8"),
        },
    )
    credentials.add_user(directory, LIMITED_VIEWER, LIMITED_PASSWORD)
    lab_env.write_inventory(directory / "inventory.yml")
    return directory


def oidc_client_secret(site_dir: Path) -> str:
    return (site_dir / OIDC_SECRET_FILE).read_text(encoding="utf-8").strip()


@pytest.fixture(scope="package")
def first_deploy(site_dir):
    from pi_stream.site import load_site
    from pi_stream.workflows import run_deploy

    return run_deploy(load_site(site_dir), Console())


@pytest.fixture(scope="package")
def viewer():
    return VIEWER, VIEWER_PASSWORD
