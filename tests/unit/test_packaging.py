"""What `pipx install pi-stream` gets: the wheel built from the sdist holds every template, role and playbook,
and that copy alone, outside the checkout, inits, renders byte for byte what the checkout renders, and fails
loudly when it is incomplete. (tests/lab/installed runs the installed wheel against a lab Pi.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from pi_stream import PROJECT_ROOT, __version__
from pi_stream.render import render_site
from pi_stream.site import load_site

SHIPPED = ("templates", "roles", "playbooks")


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """sdist, then the wheel built from the unpacked sdist: what a release (and pipx from an sdist) builds."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(PROJECT_ROOT)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def unpacked(dist, tmp_path_factory) -> Path:
    """The wheel's files as pip lays them out in site-packages (a wheel is a zip of exactly that)."""
    (wheel,) = dist.glob(f"pi_stream-{__version__}-*.whl")
    target = tmp_path_factory.mktemp("site-packages")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return target


@pytest.fixture(scope="module")
def compiled(unpacked, tmp_path_factory) -> Path:
    """The wheel as pip installs it: every .py byte-compiled, templates/'s programs included."""
    target = tmp_path_factory.mktemp("compiled") / "site-packages"
    shutil.copytree(unpacked, target)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(target)], check=True, timeout=300)
    assert list((target / "pi_stream" / "share" / "templates").rglob("*.pyc"))
    return target


def tracked_files() -> list[str]:
    """The files a release ships from the top-level directories: git's list in a checkout with .git, else the tree."""
    if (PROJECT_ROOT / ".git").exists():
        listed = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "ls-files", "-z", "--", *SHIPPED, "ansible.cfg"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout
        return sorted(p for p in listed.split("\0") if p and (PROJECT_ROOT / p).is_file())
    return sorted(
        str(p.relative_to(PROJECT_ROOT)) for top in SHIPPED for p in (PROJECT_ROOT / top).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ) + ["ansible.cfg"]


def test_the_wheel_ships_every_template_role_and_playbook_byte_for_byte(unpacked):
    share = unpacked / "pi_stream" / "share"
    files = tracked_files()
    assert len(files) > 100, files
    different = [f for f in files if not (share / f).is_file() or (share / f).read_bytes() != (PROJECT_ROOT / f).read_bytes()]
    assert different == []
    assert (unpacked / "pi_stream" / "scaffold" / "site.yml").is_file()
    assert (unpacked / "pi_stream" / "ansible_plugins" / "callback" / "pi_stream_events.py").is_file()
    assert not list(unpacked.rglob("__pycache__")) and not list(unpacked.glob("tests"))


def test_the_sdist_carries_what_the_wheel_is_built_from(dist):
    (sdist,) = dist.glob(f"pi_stream-{__version__}.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"setup.py", "MANIFEST.in", "ansible.cfg", "playbooks/site.yml", "pi_stream/scaffold/site.yml"} <= names
    assert set(tracked_files()) <= names


def run_unpacked(unpacked: Path, cwd: Path, *argv: str, input: str | None = None) -> subprocess.CompletedProcess:
    """pi-stream from the wheel's copy: first on sys.path, run from a directory outside the checkout."""
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    return subprocess.run(
        [sys.executable, "-m", "pi_stream", *argv], cwd=cwd, env=env, input=input, capture_output=True, text=True, timeout=120
    )


def test_the_wheels_copy_inits_and_renders_what_the_checkout_renders(compiled, tmp_path):
    unpacked = compiled
    where = run_unpacked(unpacked, tmp_path, "--version")
    assert where.returncode == 0 and __version__ in where.stdout, where
    located = subprocess.run(
        [sys.executable, "-c", "import pi_stream.share as s; print(s.ROOT)"], cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(unpacked)}, capture_output=True, text=True, timeout=60,
    )
    assert located.stdout.strip() == str(unpacked / "pi_stream" / "share"), located

    steps = [
        (("init", "home", "--host", "192.0.2.10"), None),
        (("user", "add", "home", "alice", "--password-stdin"), "correct horse battery\n"),
        (("render", "home", "-o", "bundle"), None),
    ]
    for argv, stdin in steps:
        result = run_unpacked(unpacked, tmp_path, *argv, input=stdin)
        assert result.returncode == 0, (argv, result.stdout, result.stderr)

    expected = render_site(load_site(tmp_path / "home"))
    bundle = tmp_path / "bundle"
    for host, files in expected.items():
        written = {str(p.relative_to(bundle / host)) for p in (bundle / host).rglob("*") if p.is_file()}
        assert written == set(files), (host, sorted(written ^ set(files))[:10])
        different = [target for target, file in files.items() if (bundle / host / target).read_bytes() != file.content]
        assert different == [], (host, different)


def test_a_wheel_missing_its_templates_fails_in_one_line_and_writes_nothing(unpacked, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(unpacked, broken)
    shutil.rmtree(broken / "pi_stream" / "share" / "templates")
    assert run_unpacked(broken, tmp_path, "init", "home", "--host", "192.0.2.10").returncode == 0
    assert run_unpacked(broken, tmp_path, "user", "add", "home", "alice", "--password-stdin", input="correct horse battery\n").returncode == 0
    result = run_unpacked(broken, tmp_path, "render", "home", "-o", "bundle")
    assert result.returncode == 1, result
    (line,) = result.stderr.strip().splitlines()
    assert "missing" in line and "pipx install --force pi-stream" in line and "Traceback" not in result.stderr
    assert not (tmp_path / "bundle").exists()
