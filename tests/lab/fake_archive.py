"""Tiny apt archives for the security-update tests: one package, in versions a test chooses, under a label it chooses.

A real Pi's pending security updates change every week, so a test that needs one
("a security fix is pending", "only the security archive is used") brings its own:
a flat repository (`deb [trusted=yes] file:/DIR ./`) whose Release file says
Origin: Debian and the Label and Suite of Debian's security archive, or of its
main archive. apt and unattended-upgrades judge an archive by those fields alone.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

PACKAGE = "pi-stream-canary"


def build_deb(out: Path, version: str) -> Path:
    """An empty Architecture: all package of PACKAGE at `version`, built with dpkg-deb."""
    tree = out / f"tree-{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "usr/share/doc" / PACKAGE).mkdir(parents=True)
    (tree / "usr/share/doc" / PACKAGE / "version").write_text(version + "\n")
    (tree / "DEBIAN/control").write_text(
        f"Package: {PACKAGE}\nVersion: {version}\nArchitecture: all\nMaintainer: pi-stream tests <tests@invalid>\n"
        "Description: marker package for pi-stream's security-update tests\n"
    )
    deb = out / f"{PACKAGE}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)], check=True, capture_output=True, timeout=60)
    return deb


def write_archive(directory: Path, version: str, label: str, suite: str) -> None:
    """A flat archive in `directory` holding PACKAGE at `version`, its Release naming Origin Debian, `label`, `suite`."""
    directory.mkdir(parents=True, exist_ok=True)
    deb = build_deb(directory, version)
    data = deb.read_bytes()
    control = subprocess.run(["dpkg-deb", "--field", str(deb)], check=True, capture_output=True, text=True, timeout=60).stdout
    packages = (
        control.rstrip("\n")
        + f"\nFilename: ./{deb.name}\nSize: {len(data)}\nSHA256: {hashlib.sha256(data).hexdigest()}\n\n"
    )
    (directory / "Packages").write_text(packages)
    digest = hashlib.sha256(packages.encode()).hexdigest()
    (directory / "Release").write_text(
        f"Origin: Debian\nLabel: {label}\nSuite: {suite}\nCodename: {suite}\nArchitectures: all\n"
        f"SHA256:\n {digest} {len(packages.encode())} Packages\n"
    )
