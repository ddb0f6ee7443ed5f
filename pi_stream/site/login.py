"""site.yml `login:`: the ways a viewer proves who they are.

- `password` (default on): the user/password form, checked against viewers.htpasswd.
- `oidc`: "Sign in with ..." through an OpenID provider (authorization code flow with PKCE).
- `proxy`: the host sits behind an identity-aware proxy (Cloudflare Access, or an OIDC-speaking
  proxy such as oauth2-proxy) that signs a JWT on every request; the login service verifies it.

An identity maps to a viewer through `viewers: {NAME: {emails: [...]}}` (viewers.py). Nothing
here is secret: the OIDC client secret stays in its own file, which the viewer_auth role copies
to the Pi and the login service gets as a systemd credential.
"""

from __future__ import annotations

import re
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pi_stream.site.dvr_proxy import DNS_NAME_RE
from pi_stream.site.fields import Fields

PROXY_TYPES = ("cloudflare_access", "oidc")
CLOUDFLARE_HEADER = "Cf-Access-Jwt-Assertion"
# oauth2-proxy's --pass-authorization-header sends "Authorization: Bearer ID_TOKEN".
OIDC_PROXY_HEADER = "Authorization"
HEADER_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
CLIENT_ID_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
AUDIENCE_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
# Headers a client can set on its own: never an identity. The proxy's signed JWT is.
UNSIGNED_HEADERS = ("x-email", "x-forwarded-email", "x-forwarded-user", "x-auth-request-email", "remote-user")


@dataclass(frozen=True)
class Oidc:
    issuer: str
    client_id: str
    client_secret_file: Path | None  # None: a public client (PKCE only)
    name: str  # the button says "Sign in with NAME"
    scopes: str = "openid email"


@dataclass(frozen=True)
class IdentityProxy:
    kind: str  # cloudflare_access or oidc
    issuer: str
    jwks_uri: str  # "" = from the issuer's discovery document
    audience: str
    header: str
    bearer: bool  # the header's value starts with "Bearer "


@dataclass(frozen=True)
class Login:
    password: bool = True
    oidc: Oidc | None = None
    proxy: IdentityProxy | None = None
    ca_file: Path | None = None  # a PEM CA trusted for the identity provider, besides the system's
    ca_pem: str = ""  # its contents, read once here: every host's bundle installs them

    @property
    def identity(self) -> bool:
        """Whether any identity login is on: the login service then needs PyJWT and the network."""
        return self.oidc is not None or self.proxy is not None


def loads_as_ca(pem: str) -> bool:
    """Whether TLS takes the text as trusted certificates, exactly as the login service loads login.ca_file."""
    try:
        ssl.create_default_context().load_verify_locations(cadata=pem)
    except (ssl.SSLError, ValueError):
        return False
    return "-----BEGIN CERTIFICATE-----" in pem


def https_url_problem(value: str) -> str:
    """What is wrong with an issuer URL, or "". https only: the ID token and the code cross this connection."""
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        return f"{value!r} is not an https:// URL: identity providers are reached over TLS only"
    if parts.query or parts.fragment or value.endswith("/"):
        return f"{value!r}: give the issuer exactly as the provider's discovery document says it, without a trailing '/', query or fragment"
    return ""


def parse_login(section: Fields, directory: Path, https: bool) -> Login:
    """`login: {password: true, oidc: {...}, proxy: {...}, ca_file: FILE}`."""
    password = section.boolean("password", True)
    oidc = None if section.absent("oidc") else parse_oidc(section.sub("oidc"), directory, https)
    proxy = None if section.absent("proxy") else parse_proxy(section.sub("proxy"))
    ca_file, ca_pem = None, ""
    if not section.absent("ca_file"):
        ca_file = site_file(section, "ca_file", directory, secret=False)
        ca_pem = ca_file.read_text(encoding="ascii", errors="replace") if ca_file is not None else ""
        if ca_file is not None and not loads_as_ca(ca_pem):
            # Checked here, as the Pi's login service will load it: a file it cannot load would stop the service.
            section.error("ca_file", f"{ca_file} is not a PEM CA certificate that TLS can load (-----BEGIN CERTIFICATE----- ...)")
            ca_file, ca_pem = None, ""
    if not password and oidc is None and proxy is None:
        section.error("password", "false leaves no way to log in: add login.oidc or login.proxy, or set password: true")
    section.done()
    return Login(password=password, oidc=oidc, proxy=proxy, ca_file=ca_file, ca_pem=ca_pem)


def parse_oidc(section: Fields, directory: Path, https: bool) -> Oidc:
    issuer = section.string("issuer")
    if not issuer:
        section.error("issuer", "missing: the provider's issuer URL, e.g. https://accounts.google.com")
    elif problem := https_url_problem(issuer):
        section.error("issuer", problem)
    client_id = section.string("client_id", pattern=CLIENT_ID_RE, hint="the client ID the provider gave this site")
    if not client_id:
        section.error("client_id", "missing: the client ID you registered at the provider for this site")
    secret = None if section.absent("client_secret_file") else site_file(section, "client_secret_file", directory, secret=True)
    name = section.string("name", "", hint="")
    if not name:
        name = urlsplit(issuer).hostname or "your provider"
    if len(name) > 40:
        section.error("name", "at most 40 characters: it is a button's label")
    if not https:
        section.error("", "needs web.https: true: the provider sends the browser back with a login code, "
                          "which must not cross the network in clear")
    section.done()
    return Oidc(issuer=issuer, client_id=client_id, client_secret_file=secret, name=name)


def parse_proxy(section: Fields) -> IdentityProxy:
    kind = section.choice("type", PROXY_TYPES, "cloudflare_access")
    audience = section.string("audience", pattern=AUDIENCE_RE, hint="the audience the proxy's tokens carry")
    if not audience:
        what = ("the Access application's AUD tag (Zero Trust > Access > Applications)" if kind == "cloudflare_access"
                else "the client ID the proxy's tokens are issued to")
        section.error("audience", f"missing: {what}")
    if kind == "cloudflare_access":
        team = section.string("team_domain").removeprefix("https://").rstrip("/")
        if not team:
            section.error("team_domain", "missing: your Cloudflare team domain, e.g. myteam.cloudflareaccess.com")
        elif not DNS_NAME_RE.fullmatch(team.rpartition(":")[0] if re.search(r":\d{1,5}$", team) else team):
            section.error("team_domain", f"{team!r} is not a host name, e.g. myteam.cloudflareaccess.com")
        issuer = f"https://{team}"
        section.done()
        return IdentityProxy(kind, issuer, f"{issuer}/cdn-cgi/access/certs", audience, CLOUDFLARE_HEADER, bearer=False)
    issuer = section.string("issuer")
    if not issuer:
        section.error("issuer", "missing: the issuer of the proxy's tokens (its OpenID provider), e.g. https://auth.example.org")
    elif problem := https_url_problem(issuer):
        section.error("issuer", problem)
    header = section.string("header", OIDC_PROXY_HEADER, HEADER_RE, "an HTTP header name, e.g. Authorization")
    if header.lower() in UNSIGNED_HEADERS:
        section.error("header", f"{header} carries no signature, so anyone could send it: name the header with the proxy's signed JWT "
                                "(oauth2-proxy: --pass-authorization-header sends Authorization: Bearer ID_TOKEN)")
    section.done()
    return IdentityProxy("oidc", issuer, "", audience, header, bearer=header.lower() == "authorization")


def site_file(section: Fields, key: str, directory: Path, secret: bool) -> Path | None:
    """A file the site names, relative to its directory; a secret one must be readable by its owner alone."""
    value = section.string(key)
    if not value:
        section.error(key, "give a file name (relative to the site directory)")
        return None
    path = (directory / value).resolve() if not Path(value).is_absolute() else Path(value)
    if not path.is_file():
        section.error(key, f"{path} does not exist")
        return None
    if secret:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            section.error(key, f"{path} has permissions {mode:04o}: a secret must be readable by you alone; run `chmod 600 {path}`")
            return None
        text = path.read_text(encoding="utf-8", errors="replace").strip()
        if not text or "\n" in text:
            section.error(key, f"{path} must hold the secret on one line")
            return None
    return path
