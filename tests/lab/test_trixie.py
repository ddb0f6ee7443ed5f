"""Debian 13 trixie, the base of today's Raspberry Pi OS: the same site deploys, verifies and stays idempotent."""

from __future__ import annotations

import time

import pytest

from pi_stream.console import Console
from pi_stream.errors import ExitStatus
from pi_stream.render import render_site
from pi_stream.site import load_site
from pi_stream.status import read_host_status
from pi_stream.verify import verify_site
from pi_stream.workflows import run_deploy
from tests.conftest import VIEWER, VIEWER_PASSWORD, write_site
from tests.lab.conftest import booted_lab

LAB_NAME = "test-trixie"
STEADY_SECONDS = 60


@pytest.fixture(scope="module")
def trixie_site(tmp_path_factory):
    with booted_lab(LAB_NAME, hosts=1, suite="trixie") as state:
        directory = write_site(
            tmp_path_factory.mktemp("trixie") / "site",
            {"name": "trixie", "cameras": [{"name": "yard", "source": {"type": "testsrc"}}]},
        )
        state.write_inventory(directory / "inventory.yml")
        yield load_site(directory)


def test_trixie_deploys_verifies_and_is_idempotent(trixie_site):
    first = run_deploy(trixie_site, Console())
    assert first.status == ExitStatus.OK, first.failures
    result = verify_site(trixie_site, render_site(trixie_site), VIEWER, VIEWER_PASSWORD)
    assert result.ok, [(c.name, c.detail) for c in result.failed]
    again = run_deploy(trixie_site, Console(show_progress=False))
    assert again.status == ExitStatus.OK and again.stats["pi1"].changed == 0


def test_trixie_live_stream_stays_up_beside_snapshots(trixie_site):
    """ffmpeg 7 once held the live output back to the snapshot cadence: nginx-rtmp dropped it as idle every ~40 s."""
    yard = camera_status(trixie_site)
    # Long enough for several snapshot intervals and more than one drop_idle_publisher window.
    time.sleep(max(0.0, STEADY_SECONDS - (yard["updated"] - yard["since"])))
    yard = camera_status(trixie_site)
    assert yard["state"] == "live" and yard["updated"] - yard["since"] >= STEADY_SECONDS, yard
    assert (yard["failures"], yard["last_error"]) == (0, None), yard
    assert yard["snapshots"]["latest_at"], yard
    result = verify_site(trixie_site, render_site(trixie_site), VIEWER, VIEWER_PASSWORD)
    assert result.ok, [(c.name, c.detail) for c in result.failed]


def camera_status(site) -> dict:
    status = read_host_status(site, "pi1")
    assert not status.error, status.error
    (yard,) = status.document["cameras"]
    return yard
