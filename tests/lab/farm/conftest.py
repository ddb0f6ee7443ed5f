"""The farm: two simulated Pis shared by test_appliance and test_viewer_auth, booted once, torn down after both.

Package-scoped, not session-scoped: a worker that goes on to other labs does not keep
this one (and its cameras) running until the end of the run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pi_stream import credentials
from pi_stream.console import Console
from tests.conftest import VIEWER, VIEWER_PASSWORD, write_site
from tests.lab.conftest import booted_lab

LAB_NAME = "test"
LIMITED_VIEWER, LIMITED_PASSWORD = "bob", "bob only sees the barn"


@pytest.fixture(scope="package")
def lab_env():
    with booted_lab(LAB_NAME, hosts=2) as state:
        yield state


@pytest.fixture(scope="package")
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


@pytest.fixture(scope="package")
def first_deploy(site_dir):
    from pi_stream.site import load_site
    from pi_stream.workflows import run_deploy

    return run_deploy(load_site(site_dir), Console())


@pytest.fixture(scope="package")
def viewer():
    return VIEWER, VIEWER_PASSWORD
