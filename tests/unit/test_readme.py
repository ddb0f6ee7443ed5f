"""The README's promises that code can hold: its exit code table is the one `pi-stream --help` prints, and
its first two code blocks are the demo and the tests, as the project's brief and .ci/run require."""

from __future__ import annotations

import re

from pi_stream import PROJECT_ROOT
from pi_stream.errors import exit_codes_table

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")


def code_blocks(text: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S)]


def test_the_exit_code_table_is_the_one_help_prints():
    section = README[README.index("## Exit codes"):]
    assert code_blocks(section)[0] == exit_codes_table().strip()


def test_the_first_two_commands_are_the_demo_and_the_tests():
    demo, tests = code_blocks(README)[:2]
    assert demo == "bash scripts/install.sh && .venv/bin/pi-stream demo"
    assert tests == "bash scripts/install.sh && .venv/bin/pytest"
    ci = (PROJECT_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.strip().splitlines()[-1] == tests
