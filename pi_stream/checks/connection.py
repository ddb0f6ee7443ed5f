"""How the checks reach a host: SSH as the site's inventory says (testinfra over Ansible's inventory), and HTTP(S)
pinned to the certificate installed on the host."""

from __future__ import annotations

import hashlib
import os
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path

import requests
import testinfra
from requests.adapters import HTTPAdapter

from pi_stream.render import DEFAULT_PATHS
from pi_stream.site import INVENTORY_FILE, Host, Site

HTTP_TIMEOUT = 10.0


def testinfra_host(site: Site, host: Host, inventory: Path | None = None):
    """The host over SSH, with the settings the inventory gives Ansible (the site's own unless `inventory` is given)."""
    # testinfra's ansible backend runs `ansible-inventory` from PATH: make it this environment's.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    inventory = (inventory or site.directory / INVENTORY_FILE).resolve()
    forget_if_changed(inventory)
    return testinfra.get_host(f"ansible://{host.name}?ansible_inventory={inventory}")


# sha256 of each inventory as testinfra last read it.
_inventories_read: dict[str, str] = {}


def forget_if_changed(inventory: Path) -> None:
    """Drop testinfra's cached reading of an inventory whose contents changed since it was read.

    testinfra keeps one `ansible-inventory --list` per inventory path, and each host it made from it, for the
    life of the process. A process that rewrites an inventory (a test, a long-running tool) would then reach a
    host by a stale address or user, or, for a host the old file lacked, by its bare inventory name (seen in CI:
    "Could not resolve hostname pi2" after a build host was added). testinfra has no public way to forget.
    """
    from testinfra.host import Host as TestinfraHost
    from testinfra.utils.ansible_runner import AnsibleRunner

    path = str(inventory)
    digest = hashlib.sha256(inventory.read_bytes()).hexdigest() if inventory.is_file() else ""
    if _inventories_read.get(path, digest) != digest:
        AnsibleRunner._runners.pop(path, None)
        for key in [k for k in TestinfraHost._host_cache if f"ansible_inventory={path}" in k[0]]:
            del TestinfraHost._host_cache[key]
    _inventories_read[path] = digest


def base_url(site: Site, host: Host) -> str:
    if site.web.https:
        port = "" if site.web.https_port == 443 else f":{site.web.https_port}"
        return f"https://{host.address}{port}/"
    port = "" if site.web.http_port == 80 else f":{site.web.http_port}"
    return f"http://{host.address}{port}/"


@dataclass(frozen=True)
class PinnedCertificate:
    """The certificate a host must serve: the one installed on it, read over SSH (which the host key vouches for).

    Every connection that may carry a password, a cookie or a token is checked against it, Pis and relays
    alike (a relay's traffic crosses the internet). The check is the exact certificate, not a name: verify
    reaches a host by its inventory address, which the certificate need not name.
    """

    pem: str  # the leaf: the first certificate of the installed file (a provided one may hold its chain)
    provided: bool  # web.certificate: its chain must also lead to a CA this machine trusts

    @classmethod
    def installed(cls, text: str, site: Site) -> PinnedCertificate:
        begin = text.find(ssl.PEM_HEADER)
        end = text.find(ssl.PEM_FOOTER, begin)
        if begin < 0 or end < 0:
            raise ValueError(f"{DEFAULT_PATHS['tls_cert']} on the host holds no PEM certificate: deploy again")
        return cls(text[begin:end + len(ssl.PEM_FOOTER)] + "\n", site.web.cert_file is not None)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(self.pem)).hexdigest()

    def ssl_context(self) -> ssl.SSLContext:
        """For a WebSocket: this certificate is the only trust anchor (partial chain: a provided leaf is no CA)."""
        context = ssl.create_default_context(cadata=self.pem)  # no system CAs: nothing else is trusted
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        context.check_hostname = False  # the address verify dials need not be a name in it; the certificate is the check
        return context


class PinnedAdapter(HTTPAdapter):
    """Every connection's certificate must have this sha256 (urllib3 checks it right after the handshake,
    before a byte of the request is sent)."""

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint  # before HTTPAdapter.__init__, which makes the pool manager
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):  # type: ignore[override]
        kwargs["assert_fingerprint"] = self.fingerprint
        super().init_poolmanager(*args, **kwargs)


class Http(requests.Session):
    """GETs with a timeout always, and `verify` that environment CA settings cannot override.

    requests lets REQUESTS_CA_BUNDLE replace a session's own `verify`; passing it per
    request keeps the pinned certificate in charge. With a pin, every HTTPS connection
    must present exactly that certificate.
    """

    def __init__(self, pin: PinnedCertificate | None = None) -> None:
        super().__init__()
        self.pin = pin
        if pin is not None:
            self.mount("https://", PinnedAdapter(pin.sha256))
            # A self-signed certificate is its own CA: the fingerprint is the whole check, so no chain is
            # asked for. A provided one must also chain to a trusted CA, as it must for browsers.
            self.verify = pin.provided

    def request(self, method, url, **kwargs):  # type: ignore[override]
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        kwargs.setdefault("verify", self.verify)
        return super().request(method, url, **kwargs)


def media_cookie(session: requests.Session, path: str) -> str:
    """The Cookie header a browser sends to `path`: the camera's token the login set there."""
    tokens = [c.value for c in session.cookies if c.name == "pi_stream_media" and c.path == path]
    return f"pi_stream_media={tokens[0]}" if tokens else ""


def ssl_context_of(session: requests.Session) -> ssl.SSLContext:
    """The session's trust for a WebSocket, which carries the camera's token: the pinned certificate, else the
    CA file the session was given, else this machine's CAs with the name checked. Never no check at all."""
    pin = getattr(session, "pin", None)
    if pin is not None:
        return pin.ssl_context()
    if isinstance(session.verify, str):
        return ssl.create_default_context(cafile=session.verify)
    if session.verify is False:
        raise ValueError("the session checks no certificate: no token goes over a WebSocket without one (pin the host's)")
    return ssl.create_default_context()


def tls_refusal(session: requests.Session, exc: requests.exceptions.SSLError) -> str:
    """Why the connection was refused before anything was sent, in the user's terms."""
    pin = getattr(session, "pin", None)
    if pin is not None and "Fingerprints did not match" in str(exc):
        return (f"the certificate served is not the one installed on the host (sha256 {pin.sha256[:16]}…): "
                "someone else answers at this address, or the host's nginx serves another certificate (deploy again)")
    return f"TLS: {exc}"
