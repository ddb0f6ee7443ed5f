"""pi-stream as a user installs it: a wheel built from the sdist, in a venv outside the checkout, and one lab Pi.

Shared by the modules of this package (one lab, booted once; tests/conftest.py LAB_GROUPS
runs them in order: the quick start provisions the Pi, the checks suite breaks and repairs
it, removal empties it, and the collection provisions it again from nothing).
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

from pi_stream import PROJECT_ROOT
from tests.lab.conftest import booted_lab

# Another name lets two developers (or a developer and a CI clone) run this package side by side.
LAB_NAME = os.environ.get("PI_STREAM_INSTALLED_LAB", "installed")


@pytest.fixture(scope="package")
def installed_lab():
    with booted_lab(LAB_NAME, hosts=1) as state:
        yield state


@pytest.fixture(scope="package")
def dist(tmp_path_factory) -> Path:
    """The sdist and the wheel built from it, as a release is built (`python -m build`)."""
    out = tmp_path_factory.mktemp("dist")
    run_checked([sys.executable, "-m", "build", "--outdir", str(out), str(PROJECT_ROOT)], timeout=600)
    return out


@dataclass(frozen=True)
class Installed:
    """A venv with only the wheel installed, and a working directory outside the checkout."""

    venv: Path
    home: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PI_STREAM_SITE"))}
        env.update({"HOME": str(self.home), "PATH": f"{self.bin}{os.pathsep}{env.get('PATH', '')}"})
        env.update(extra)
        return env

    def run(self, *argv: str, input: str | None = None, timeout: float = 120, **extra_env: str) -> subprocess.CompletedProcess:
        """argv[0] is looked up in the venv first; runs in the home directory, never in the checkout."""
        return subprocess.run(
            list(argv), cwd=self.home, env=self.env(**extra_env), input=input, capture_output=True, text=True, timeout=timeout
        )


@pytest.fixture(scope="package")
def installed(dist, tmp_path_factory) -> Installed:
    root = tmp_path_factory.mktemp("installed")
    assert PROJECT_ROOT not in root.parents
    (wheel,) = dist.glob("pi_stream-*.whl")
    venv.EnvBuilder(with_pip=True).create(root / "venv")
    home = root / "home"
    home.mkdir()
    run_checked([str(root / "venv/bin/python"), "-m", "pip", "install", "--quiet", str(wheel)], timeout=900, cwd=home)
    return Installed(root / "venv", home)


def run_checked(argv: list[str], timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert result.returncode == 0, (argv, result.stdout[-3000:], result.stderr[-3000:])
    return result
