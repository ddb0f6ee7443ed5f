"""OvenMediaEngine from source: the checksummed tarballs and the key of a build (webrtc.install_method source).

The role `webrtc_ome` (tasks/install-source.yml) builds a .deb named after
`inputs_key()`, as nginx_rtmp does for nginx: the same tarballs and build files
give the same package version, so a re-run finds it installed (or cached on
the controller) and builds nothing; a change to any input gives one new build.
The tarballs are downloaded and checked on the controller by nginx_source.fetch,
before Ansible starts.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from pi_stream import share
from pi_stream.nginx_source import SourceArchive

if TYPE_CHECKING:  # the site model imports this module for its role variables
    from pi_stream.site.model import Site
    from pi_stream.site.webrtc import OmeSource

BUILD_FILES_DIR = share.ROLES / "webrtc_ome" / "files" / "source-build"
PACKAGE_NAME = "pi-stream-ome"
# Bumped by hand only if the package's layout changes in a way the build files do not show.
RECIPE_REVISION = 1


def build_files() -> list[Path]:
    return sorted(p for p in BUILD_FILES_DIR.iterdir() if p.is_file())


def archives(source: OmeSource) -> tuple[SourceArchive, ...]:
    return (source.ome, source.spdlog)


def inputs_key(source: OmeSource) -> str:
    """sha256 over everything that decides the package's contents (the role adds the target's release and architecture)."""
    inputs = {
        "recipe": RECIPE_REVISION,
        "ome": [source.ome.version, source.ome.sha256],
        "spdlog": [source.spdlog.version, source.spdlog.sha256],
        "optimize": source.optimize,
        "files": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in build_files()},
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def role_vars(source: OmeSource) -> dict:
    """What the webrtc_ome role needs for the source method (the tarballs are found in the cache by checksum)."""

    def archive(a: SourceArchive) -> dict:
        return {"version": a.version, "sha256": a.sha256, "filename": a.filename}

    return {
        "ome": archive(source.ome),
        "spdlog": archive(source.spdlog),
        "inputs_key": inputs_key(source),
        "build_host": source.build_host,
        "optimize": source.optimize,
    }


def builds_ome(site: Site) -> bool:
    """Whether some host gets OME from source (a site with WebRTC cameras and install_method source)."""
    return site.webrtc is not None and site.webrtc.install_method == "source" and any(site.webrtc_cameras_on(h.name) for h in site.hosts)
