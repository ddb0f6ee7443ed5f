"""pi-stream for Ansible users: the collection pi_stream.appliance (galaxy.yml), built and installed as a user
would, its playbook run with plain ansible-playbook from a directory outside the checkout, and the one
message a controller without pi-stream (or with another version of it) gets before any host is touched.

tests/lab/installed/test_collection.py provisions a lab Pi with it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import venv
from pathlib import Path

import pytest
import yaml

from pi_stream import PROJECT_ROOT, __version__
from tests.conftest import EXAMPLE_SITES, write_site

BIN = Path(sys.executable).parent
CALLBACKS = PROJECT_ROOT / "pi_stream" / "ansible_plugins" / "callback"
COLLECTION = "pi_stream.appliance"
# What the collection is: Ansible content and its documentation. Never the package, tests, venvs or builds.
TOP_LEVEL = {"MANIFEST.json", "FILES.json", "README.md", "LICENSE", "meta", "roles", "playbooks", "docs"}
ROLES = sorted(p.name for p in (PROJECT_ROOT / "roles").iterdir() if (p / "meta" / "argument_specs.yml").is_file())
# Every host is a closed port on loopback: a run that got past the controller fails at its first connection,
# so nothing here can touch this machine or any other.
CLOSED = {"ansible_host": "127.0.0.1", "ansible_port": 9}


def galaxy() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "galaxy.yml").read_text(encoding="utf-8"))


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def ansible_env(home: Path, collections: Path, path: str = f"{BIN}:/usr/bin:/bin", **extra: str) -> dict[str, str]:
    """A user's shell outside the checkout: no ansible.cfg, no roles path, the collection where -p put it."""
    return {"PATH": path, "HOME": str(home), "ANSIBLE_COLLECTIONS_PATH": str(collections), "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": str(home / ".ansible-tmp"), **extra}


def events(result: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> Path:
    """`ansible-galaxy collection build` in the checkout, as a release is built."""
    out = tmp_path_factory.mktemp("collection-build")
    result = run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out), str(PROJECT_ROOT)],
                 cwd=out, env=ansible_env(out, out), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("pi_stream-appliance-*.tar.gz")
    return built


@pytest.fixture(scope="module")
def collections(tarball, tmp_path_factory) -> Path:
    """`ansible-galaxy collection install -p DIR` of the tarball: a collections path of its own."""
    path = tmp_path_factory.mktemp("collections")
    result = run([str(BIN / "ansible-galaxy"), "collection", "install", "-p", str(path), str(tarball)],
                 cwd=path, env=ansible_env(path, path), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (path / "ansible_collections" / "pi_stream" / "appliance" / "playbooks" / "site.yml").is_file()
    return path


@pytest.fixture
def home(tmp_path) -> Path:
    """A working directory outside the checkout."""
    path = tmp_path / "home"
    path.mkdir()
    assert PROJECT_ROOT not in path.parents
    return path


def test_the_collection_is_the_package_version_for_the_ansible_core_it_needs():
    """One version for the package and the collection: the playbook refuses a pi-stream of another."""
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert galaxy()["version"] == pyproject["project"]["version"] == __version__
    assert (galaxy()["namespace"], galaxy()["name"]) == ("pi_stream", "appliance")
    (core,) = [d for d in pyproject["project"]["dependencies"] if d.startswith("ansible-core")]
    runtime = yaml.safe_load((PROJECT_ROOT / "meta" / "runtime.yml").read_text(encoding="utf-8"))
    assert runtime["requires_ansible"] == core.removeprefix("ansible-core") + ".0"
    for role in ROLES:
        meta = yaml.safe_load((PROJECT_ROOT / "roles" / role / "meta" / "main.yml").read_text(encoding="utf-8"))
        assert runtime["requires_ansible"] == f">={meta['galaxy_info']['min_ansible_version']}.0", role


def test_the_tarball_holds_the_roles_playbooks_and_docs_and_nothing_else(tarball):
    with tarfile.open(tarball) as archive:
        members = {m.name: m for m in archive.getmembers()}
        manifest = json.load(archive.extractfile("MANIFEST.json"))
        files = json.load(archive.extractfile("FILES.json"))
    names = set(members)
    assert {name.split("/", 1)[0] for name in names} == TOP_LEVEL
    assert not [n for n in names if re.search(r"(^|/)(__pycache__|\.[^/]+)(/|$)|\.pyc$|\.retry$", n)]
    assert not [m.name for m in members.values() if m.issym() or m.islnk()], "links would point out of the collection"
    tracked = subprocess.run(["git", "-C", str(PROJECT_ROOT), "ls-files", "roles", "playbooks", "docs", "meta"],
                             capture_output=True, text=True, check=True, timeout=60).stdout.split()
    assert len(tracked) > 80 and set(tracked) <= names, set(tracked) - names
    assert {f"roles/{role}/README.md" for role in ROLES} <= names
    info = manifest["collection_info"]
    assert (info["namespace"], info["name"], info["version"]) == ("pi_stream", "appliance", __version__)
    assert (info["readme"], info["license_file"], info["dependencies"]) == ("README.md", "LICENSE", {})
    # FILES.json is what `ansible-galaxy collection verify` checks an installed copy against.
    listed = {entry["name"] for entry in files["files"] if entry["ftype"] == "file"}
    assert listed == {n for n, m in members.items() if m.isfile()} - {"MANIFEST.json", "FILES.json"}


def test_the_collection_playbook_runs_from_any_directory_with_the_collection_roles(collections, home):
    """`ansible-playbook pi_stream.appliance.site` finds its roles in the collection, with no roles path and no
    ansible.cfg, run directly or imported by a playbook of the user's; ansible-doc reads the roles' specs."""
    site = write_site(home / "mysite", *EXAMPLE_SITES["testsrc-https"])
    env = ansible_env(home, collections)
    (home / "mine.yml").write_text(f"- name: My site\n  ansible.builtin.import_playbook: {COLLECTION}.site\n")
    for playbook in (f"{COLLECTION}.site", "mine.yml"):
        result = run([str(BIN / "ansible-playbook"), "-i", str(site / "inventory.yml"), playbook, "--list-tasks"], home, env)
        assert result.returncode == 0, result.stdout + result.stderr
        listed = set(re.findall(r"(\S+) : ", result.stdout))
        assert {f"{COLLECTION}.{role}" for role in ROLES if role != "bundle_files"} <= listed, listed
        assert not [name for name in listed if "." not in name], "a role resolved outside the collection"
    result = run([str(BIN / "ansible-doc"), "-t", "role", "--json", f"{COLLECTION}.nginx_rtmp"], home, env)
    assert result.returncode == 0, result.stderr
    (doc,) = json.loads(result.stdout).values()
    assert "nginx_rtmp_install_method" in doc["entry_points"]["main"]["options"]


def python_without_pi_stream(root: Path) -> Path:
    """A Python with Ansible and every other package of this one's, but not pi-stream: the venv's site-packages
    holds links to this interpreter's packages, pi-stream's own (and its editable-install hook) left out."""
    venv.EnvBuilder(with_pip=False).create(root)
    ours = Path(sysconfig.get_paths()["purelib"])
    theirs = Path(sysconfig.get_paths(vars={"base": str(root), "platbase": str(root)})["purelib"])
    for entry in ours.iterdir():
        if not entry.name.lower().startswith(("pi_stream", "__editable__.pi_stream", "__editable___pi_stream")):
            (theirs / entry.name).symlink_to(entry)
    python = root / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import ansible, yaml; import pi_stream"], cwd=root, capture_output=True, text=True, timeout=60)
    assert "No module named 'pi_stream'" in probe.stderr, probe.stderr
    return python


def fake_pi_stream(directory: Path, version: str) -> Path:
    directory.mkdir(parents=True)
    script = directory / "pi-stream"
    script.write_text(f"#!/bin/sh\necho 'pi-stream, version {version}'\n")
    script.chmod(0o755)
    return directory


@pytest.mark.parametrize("controller", ["no pi-stream", "another version", "pi-stream on PATH"])
def test_the_controller_s_pi_stream_is_found_or_named_before_any_host_is_touched(controller, collections, home, tmp_path):
    """Ansible installed apart from pi-stream: ansible-playbook's Python cannot import pi_stream. The first play
    then uses `pi-stream` on PATH if it is this version (pipx), or stops with one message naming the fix."""
    python = python_without_pi_stream(tmp_path / "ansible-venv")
    path = "/usr/bin:/bin"
    if controller == "another version":
        path = f"{fake_pi_stream(tmp_path / 'old', '0.0.1')}:{path}"
    elif controller == "pi-stream on PATH":
        (tmp_path / "pipx-bin").mkdir()
        (tmp_path / "pipx-bin" / "pi-stream").symlink_to(BIN / "pi-stream")
        path = f"{tmp_path / 'pipx-bin'}:{path}"
    site = write_site(home / "mysite", *EXAMPLE_SITES["testsrc-https"])
    (site / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": {"pi1": CLOSED}}}))
    env = ansible_env(home, collections, path=path, ANSIBLE_STDOUT_CALLBACK="pi_stream_events", ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS))
    result = run([str(python), str(BIN / "ansible-playbook"), "-i", str(site / "inventory.yml"), f"{COLLECTION}.site"], home, env)
    assert result.returncode != 0
    happened = events(result)
    failed = [e for e in happened if e["event"] in ("failed", "unreachable")]
    if controller == "pi-stream on PATH":
        # Rendered by pi-stream from PATH, then stopped at the first connection to the host.
        assert (site / ".pi-stream" / "bundle" / "pi1" / "etc" / "nginx" / "nginx.conf").is_file()
        assert [(e["event"], e["task"]) for e in failed] == [("unreachable", "Refresh the apt package index when it is older than an hour")]
        return
    (failure,) = failed
    message = " ".join(failure["message"].split())
    if controller == "no pi-stream":
        assert failure["task"] == "Stop here if the controller has no pi-stream"
        assert f"`{python} -m pi_stream`: {python}: No module named pi_stream; `pi-stream`: not found on PATH" in message
        assert f"pipx install pi-stream=={__version__}" in message
    else:
        assert failure["task"] == "Stop here if the controller's pi-stream is of another version"
        assert f"render the site with pi-stream {__version__}" in message and "`pi-stream`: pi-stream, version 0.0.1" in message
        assert f"pipx install --force pi-stream=={__version__}" in message
        assert "ansible-galaxy collection install --force pi_stream.appliance:==0.0.1" in message
    assert f"{python} -m pip install pi-stream" in message and "Nothing was changed on any host." in message
    # Nothing ran after the message: no render, no host contacted.
    assert happened[happened.index(failure) + 1:] == [e for e in happened if e["event"] == "stats"]
    assert not (site / ".pi-stream" / "bundle").exists()


def test_the_role_readmes_are_generated_from_the_argument_specs():
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "role_readmes.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    for role in ROLES:
        text = (PROJECT_ROOT / "roles" / role / "README.md").read_text(encoding="utf-8")
        assert f"ansible-doc -t role {COLLECTION}.{role}" in text


def test_docs_tell_ansible_users_the_commands():
    text = (PROJECT_ROOT / "docs" / "ansible.md").read_text(encoding="utf-8")
    for command in ("ansible-galaxy collection install", f"ansible-playbook -i mysite/inventory.yml {COLLECTION}.site",
                    "pipx install pi-stream", f"ansible-doc -t role {COLLECTION}.", "pi_stream_site"):
        assert command in text, command
