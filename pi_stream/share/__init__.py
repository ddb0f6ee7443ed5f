"""What pi-stream ships besides its code: templates/, roles/, playbooks/ and ansible.cfg.

In a checkout they stay at the top of the repository, where contributors and
plain `ansible-playbook` users find them. A wheel carries them inside this
package (pyproject.toml maps each directory to a subpackage of this one at
build time), so an installed pi-stream finds them with importlib.resources,
from any directory, without the checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pi_stream.errors import PiStreamError

# What must be there for pi-stream to work: a wheel or a checkout missing one of these is broken.
SHIPPED = ("templates", "roles", "playbooks/site.yml", "ansible.cfg")


class ResourcesMissing(PiStreamError):
    """pi-stream was installed without its templates, roles or playbooks (a broken build)."""


def locate() -> Path:
    """The directory holding templates/, roles/, playbooks/ and ansible.cfg: this package in a wheel, the checkout otherwise.

    Never raises, so importing pi-stream always works; require() says what is missing when it is used.
    """
    packaged = Path(str(resources.files(__name__)))
    checkout = Path(__file__).resolve().parent.parent.parent
    for candidate in (packaged, checkout):
        if all((candidate / name).exists() for name in SHIPPED):
            return candidate
    return packaged


ROOT = locate()
TEMPLATES = ROOT / "templates"
ROLES = ROOT / "roles"
PLAYBOOKS = ROOT / "playbooks"
ANSIBLE_CFG = ROOT / "ansible.cfg"


def require(path: Path) -> Path:
    """path, or a one-line error saying the installed pi-stream is incomplete and how to fix it."""
    if not path.exists():
        raise ResourcesMissing(
            f"{path} is missing: this pi-stream was installed without its templates, roles and playbooks "
            "(a wheel built without setup.py's share step); reinstall it from a release wheel or sdist: "
            "pipx install --force pi-stream"
        )
    return path
