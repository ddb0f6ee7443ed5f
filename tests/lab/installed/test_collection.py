"""pi-stream as an Ansible user runs it (docs/ansible.md): the collection built from this checkout, installed into
a collections path of its own, and its playbook run with plain `ansible-playbook` from a directory outside the
checkout. The Pi is provisioned from whatever state it is in (blank after test_removal, fresh when this module
runs alone), verified by the installed pi-stream, then provisioned again with nothing changed.

ansible-playbook is the installed venv's, whose Python has pi-stream (tests/unit/test_collection.py covers an
Ansible without it). Idempotence comes from Ansible's own stats, as `pi-stream deploy` reads them: the package's
stdout callback, one JSON object per event, loaded from the installed package, never from Ansible's text.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pi_stream import PROJECT_ROOT
from tests.conftest import VIEWER, VIEWER_PASSWORD, write_site

DEPLOY_TIMEOUT_SECONDS = 1500


@pytest.fixture(scope="module")
def collections(installed, tmp_path_factory) -> Path:
    """`ansible-galaxy collection build` in the checkout, then `install -p` into a path of the test's own."""
    built = tmp_path_factory.mktemp("collection-build")
    path = tmp_path_factory.mktemp("collections")
    galaxy = str(installed.bin / "ansible-galaxy")
    result = installed.run(galaxy, "collection", "build", "--output-path", str(built), str(PROJECT_ROOT), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (tarball,) = built.glob("pi_stream-appliance-*.tar.gz")
    result = installed.run(galaxy, "collection", "install", "-p", str(path), str(tarball), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return path


@pytest.fixture(scope="module")
def site(installed_lab, installed) -> Path:
    directory = write_site(
        installed.home / "collection-site", {"name": "collection", "cameras": [{"name": "porch", "source": {"type": "testsrc"}}]}
    )
    installed_lab.write_inventory(directory / "inventory.yml")
    return directory


def callback_dir(installed) -> str:
    """The events callback `pi-stream deploy` uses, as the installed package holds it."""
    result = installed.run(
        str(installed.bin / "python"), "-c",
        "import pathlib, pi_stream; print(pathlib.Path(pi_stream.__file__).parent / 'ansible_plugins' / 'callback')",
    )
    assert result.returncode == 0, result.stderr
    path = result.stdout.strip()
    assert Path(path, "pi_stream_events.py").is_file() and PROJECT_ROOT not in Path(path).parents, path
    return path


def ansible_playbook(installed, collections: Path, site: Path) -> tuple[int, dict, list[dict]]:
    """`ansible-playbook -i SITE/inventory.yml pi_stream.appliance.site`, as docs/ansible.md says: its exit code, the
    per-host stats Ansible ends with, and the failures."""
    result = installed.run(
        str(installed.bin / "ansible-playbook"), "-i", str(site / "inventory.yml"), "pi_stream.appliance.site",
        timeout=DEPLOY_TIMEOUT_SECONDS,
        ANSIBLE_COLLECTIONS_PATH=str(collections),
        ANSIBLE_STDOUT_CALLBACK="pi_stream_events",
        ANSIBLE_CALLBACK_PLUGINS=callback_dir(installed),
        # The setting docs/ansible.md recommends: fewer SSH round trips per task.
        ANSIBLE_PIPELINING="1",
    )
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    stats = [e for e in events if e["event"] == "stats"]
    assert len(stats) == 1, (result.returncode, result.stdout[-3000:], result.stderr[-3000:])
    failures = [e for e in events if e["event"] in ("failed", "unreachable", "item_failed") and not e.get("ignored")]
    return result.returncode, stats[0]["hosts"], failures


def test_the_collection_provisions_a_pi_and_a_second_run_changes_nothing(installed, collections, site):
    rc, stats, failures = ansible_playbook(installed, collections, site)
    assert (rc, failures) == (0, []), failures
    assert stats["pi1"]["failures"] == stats["pi1"]["unreachable"] == 0 and stats["pi1"]["ok"] > 0, stats
    # The Pi serves what the installed pi-stream renders for this site: services, files, login, a live stream.
    result = installed.run("pi-stream", "verify", str(site), "--user", VIEWER, "--password-stdin", input=VIEWER_PASSWORD + "\n",
                           timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rc, stats, failures = ansible_playbook(installed, collections, site)
    assert (rc, failures) == (0, []), failures
    assert stats["pi1"]["changed"] == 0, stats
    assert stats["pi1"]["ok"] > 0 and stats["pi1"]["failures"] == stats["pi1"]["unreachable"] == 0, stats
