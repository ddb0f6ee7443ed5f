"""The end-to-end lab: two simulated Pis booted once per test session, torn down at the end.

Set PI_STREAM_KEEP_LAB=1 to leave the lab up for debugging (`pi-stream lab ssh --name test`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest

from pi_stream import credentials
from pi_stream.console import Console
from tests.conftest import VIEWER, VIEWER_PASSWORD, write_site

LAB_NAME = "test"
LIMITED_VIEWER, LIMITED_PASSWORD = "bob", "bob only sees the barn"


@contextlib.contextmanager
def booted_lab(name: str, hosts: int, suite: str = "bookworm"):
    """A lab of its own for a test module; down afterwards unless PI_STREAM_KEEP_LAB=1."""
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces, systemd-nspawn); deselect them with -m 'not lab'")
    from pi_stream import lab

    state = lab.up(name, hosts=hosts, suite=suite, progress=print)
    try:
        yield state
    finally:
        if os.environ.get("PI_STREAM_KEEP_LAB") != "1":
            lab.down(name)


@pytest.fixture(scope="session")
def lab_env():
    with booted_lab(LAB_NAME, hosts=2) as state:
        yield state


@pytest.fixture(scope="session")
def site_dir(lab_env, tmp_path_factory) -> Path:
    """A two-Pi site: two test-pattern cameras on pi1, one on pi2; bob may watch only the barn."""
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
            "viewers": {LIMITED_VIEWER: {"cameras": ["barn"]}},
            "fail2ban": {"maxretry": 3, "findtime_seconds": 600, "bantime_seconds": 600},
        },
    )
    credentials.add_user(directory, LIMITED_VIEWER, LIMITED_PASSWORD)
    lab_env.write_inventory(directory / "inventory.yml")
    return directory


@pytest.fixture(scope="session")
def first_deploy(site_dir):
    from pi_stream.site import load_site
    from pi_stream.workflows import run_deploy

    return run_deploy(load_site(site_dir), Console())


@pytest.fixture(scope="session")
def viewer():
    return VIEWER, VIEWER_PASSWORD


def ssh(lab_state, host: str, *command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    from pi_stream import lab

    return subprocess.run(
        lab.ssh_argv(lab_state, host, *command), capture_output=True, text=True, timeout=timeout, check=False
    )
