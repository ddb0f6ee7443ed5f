"""Ship templates/, roles/, playbooks/ and ansible.cfg inside the wheel, as pi_stream/share/.

They stay at the top of the repository (plain ansible-playbook users and the
collection read them there); a wheel has only packages, so the build copies
them under pi_stream.share, where pi_stream.share.root() finds them with
importlib.resources. Everything else is declared in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED_DIRS = ("templates", "roles", "playbooks")
SHIPPED_FILES = ("ansible.cfg",)
LEFT_OUT = shutil.ignore_patterns("__pycache__", "*.pyc", "*.retry", ".*")


class BuildPyWithShare(build_py):
    def run(self):
        super().run()
        # An editable install reads them from the checkout itself.
        if getattr(self, "editable_mode", False):
            return
        share = Path(self.build_lib) / "pi_stream" / "share"
        for name in SHIPPED_DIRS:
            shutil.rmtree(share / name, ignore_errors=True)
            shutil.copytree(name, share / name, ignore=LEFT_OUT)
        for name in SHIPPED_FILES:
            shutil.copy2(name, share / name)


setup(cmdclass={"build_py": BuildPyWithShare})
