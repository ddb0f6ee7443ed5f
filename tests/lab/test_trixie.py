"""Debian 13 trixie, the base of today's Raspberry Pi OS: the same site deploys, verifies and stays idempotent."""

from __future__ import annotations

import os

import pytest

from pi_stream.console import Console
from pi_stream.errors import ExitStatus
from pi_stream.render import render_site
from pi_stream.site import load_site
from pi_stream.verify import verify_site
from pi_stream.workflows import run_deploy
from tests.conftest import VIEWER, VIEWER_PASSWORD, write_site

LAB_NAME = "test-trixie"


@pytest.fixture(scope="module")
def trixie_site(tmp_path_factory):
    from pi_stream import lab

    state = lab.up(LAB_NAME, hosts=1, suite="trixie", progress=print)
    try:
        directory = write_site(
            tmp_path_factory.mktemp("trixie") / "site",
            {"name": "trixie", "cameras": [{"name": "yard", "source": {"type": "testsrc"}}]},
        )
        state.write_inventory(directory / "inventory.yml")
        yield load_site(directory)
    finally:
        if os.environ.get("PI_STREAM_KEEP_LAB") != "1":
            lab.down(LAB_NAME)


def test_trixie_deploys_verifies_and_is_idempotent(trixie_site):
    first = run_deploy(trixie_site, Console())
    assert first.status == ExitStatus.OK, first.failures
    result = verify_site(trixie_site, render_site(trixie_site), VIEWER, VIEWER_PASSWORD)
    assert result.ok, [(c.name, c.detail) for c in result.failed]
    again = run_deploy(trixie_site, Console(show_progress=False))
    assert again.status == ExitStatus.OK and again.stats["pi1"].changed == 0
