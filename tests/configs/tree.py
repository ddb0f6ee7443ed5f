"""A rendered site installed under a temporary root, the way the roles install it on a Pi."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

from pi_stream.render import paths_under, render_site
from pi_stream.site import load_site


# The one rule for moving a rendered tree under a temporary root lives with the renderer.
rooted_paths = paths_under


def install_tree(make_site, example: str, root: Path) -> Path:
    site = load_site(make_site(example))
    bundle = render_site(site, rooted_paths(root))
    host = sorted(bundle)[0]
    for target, file in bundle[host].items():
        path = root / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(file.content)
    return site.directory


def auth_tool_argv(root: Path, *args: str) -> list[str]:
    """The installed pi_stream_auth.py, pointed at the tree's access.json, viewers and site key."""
    auth = root / "etc/pi-stream/auth"
    return ["/usr/bin/python3", str(root / "usr/local/lib/pi-stream/pi_stream_auth.py"), "--config", str(auth / "access.json"),
            "--viewers", str(auth / "viewers"), "--key", str(auth / "token.key"), *args]


def install_auth_secrets(site_dir: Path, root: Path) -> None:
    """What the viewer_auth role does on the host: viewers file, site key, and nginx's token keys from the real tool."""
    auth = root / "etc/pi-stream/auth"
    shutil.copy(site_dir / "viewers.htpasswd", auth / "viewers")
    (auth / "token.key").write_text(secrets.token_hex(32) + "\n")
    keys = subprocess.run(auth_tool_argv(root, "nginx-map"), capture_output=True, text=True, timeout=30, check=True)
    (auth / "nginx-token-keys.conf").write_text(keys.stdout)


def make_certificate(root: Path) -> None:
    (root / "etc/pi-stream/tls").mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
         "-subj", "/CN=test", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(root / "etc/pi-stream/tls/key.pem"),
         "-out", str(root / "etc/pi-stream/tls/cert.pem")],
        check=True, capture_output=True, timeout=30,
    )
