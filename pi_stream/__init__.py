"""pi-stream: a camera streaming appliance for the Raspberry Pi, from one site.yml."""

from pathlib import Path

__version__ = "0.1.0"

# The repository (or installed share) root: templates/, roles/ and playbooks/ live here.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
