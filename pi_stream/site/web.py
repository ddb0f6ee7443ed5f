"""site.yml `web:`: HTTPS or not, HTTP/2, the ports, the server name, a certificate of the site's own, CORS origins.

Certificate paths are relative to the site directory and must exist when the site
is loaded; without them an HTTPS site gets a self-signed certificate (roles.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pi_stream.site.fields import Fields, text_problem


ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d+)?$")


@dataclass(frozen=True)
class Web:
    https: bool
    https_port: int
    http_port: int
    server_name: str
    cert_file: Path | None
    key_file: Path | None
    cors_origins: tuple[str, ...]
    http2: bool = True  # offered (ALPN h2) on the page and HLS when https is on: one connection for a whole camera grid


def parse_web(web: Fields, directory: Path) -> Web:
    https = web.boolean("https", True)
    cert = web.string("certificate", "")
    key = web.string("certificate_key", "")
    cert_file = key_file = None
    if bool(cert) != bool(key):
        web.error("certificate" if key else "certificate_key", "give both certificate and certificate_key, or neither")
    elif cert:
        cert_file, key_file = directory / cert, directory / key
        for field_name, path in (("certificate", cert_file), ("certificate_key", key_file)):
            if not path.is_file():
                web.error(field_name, f"{path} does not exist (paths are relative to the site directory)")
    origins = []
    for i, origin in enumerate(web.items("cors_origins")):
        if not isinstance(origin, str) or text_problem(origin, ORIGIN_RE):
            web.error(f"cors_origins[{i}]", f"{origin!r} is not an origin like https://example.org")
        else:
            origins.append(origin)
    http2 = web.boolean("http2", https)
    if http2 and not https:
        web.error("http2", "browsers speak HTTP/2 only over TLS: set web.https: true, or leave http2 out")
    result = Web(
        https=https,
        https_port=web.integer("https_port", 443, 1, 65535),
        http_port=web.integer("http_port", 80, 1, 65535),
        server_name=web.string("server_name", "_", re.compile(r"^[A-Za-z0-9_.*-]+$"), "a DNS name like cam.example.org"),
        cert_file=cert_file,
        key_file=key_file,
        cors_origins=tuple(origins),
        http2=http2,
    )
    web.done()
    return result
