"""Fixtures shared by the configs tests: rendered trees under a temporary root, checked by real programs."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.fixture
def short_root():
    """A Pi's tree off the Pi, at a short path: nginx refuses a unix socket path (demand.sock) over 107 bytes,
    and pytest's own temporary paths are long (pytest-xdist adds /popen-gwN/)."""
    directory = Path(tempfile.mkdtemp(prefix="ps-root-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
