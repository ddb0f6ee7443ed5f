"""Rules of the codebase that a reviewer would otherwise have to remember."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def python_files():
    return [p for p in (ROOT / "pi_stream").rglob("*.py")]


def test_no_shell_true_in_the_package():
    offenders = [str(p) for p in python_files() if re.search(r"shell\s*=\s*True", p.read_text())]
    assert not offenders, f"subprocesses take argv lists: {offenders}"


def test_subprocess_only_through_the_helper():
    """proc.run is the one helper; deploy streams events and lab supervises containers, both with argv lists."""
    allowed = {"proc.py", "deploy.py"}
    offenders = [
        str(p.relative_to(ROOT))
        for p in python_files()
        if "subprocess.run(" in p.read_text() and p.name not in allowed and "lab" not in p.parts
    ]
    assert not offenders


def test_ruff_is_clean():
    """Lint rules live in pyproject.toml; ruff comes with the test extras."""
    import shutil
    import subprocess
    import sys

    ruff = Path(sys.executable).with_name("ruff")
    ruff = str(ruff) if ruff.exists() else shutil.which("ruff")
    assert ruff, "ruff is not installed: pip install -e '.[test]'"
    result = subprocess.run([ruff, "check", str(ROOT)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout


def test_every_module_imports_first():
    """No import cycle that only works in one order: each module is imported first, in a clean slate."""
    import subprocess
    import sys

    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in python_files() if p.name != "__main__.py"  # running it is the CLI itself
    )
    code = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {modules!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'pi_stream' or m.startswith('pi_stream.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as exc:\n"
        # A library only another Python has (fake_nvr's gi: the system python3) is not a cycle of ours.
        "        if (exc.name or 'pi_stream').startswith('pi_stream'):\n"
        "            failed.append(f'{name}: {exc}')\n"
        "print('\\n'.join(failed))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=120, cwd=ROOT, check=True)
    assert result.stdout.strip() == "", result.stdout


def test_anchored_patterns_are_matched_whole():
    """A pattern written "^...$" is meant to cover the whole string, and re.match's "$" also matches before a
    trailing newline: "cam\\n" passed every name check (security review, finding 6). Such patterns go through
    fullmatch (or the site model's text_problem), in the package and in the programs it installs on the Pi."""
    files = [*python_files(), *(ROOT / "templates").rglob("*.py")]
    sources = {p: p.read_text() for p in files}
    definition = re.compile(r"^\s*([A-Z_][A-Z0-9_]*)\s*=\s*re\.compile\(\s*r?(['\"])[^\n]*\$\2", re.MULTILINE)
    anchored_names = {name for text in sources.values() for name, _quote in definition.findall(text)}
    offenders = []
    for path, text in sources.items():
        for number, line in enumerate(text.splitlines(), 1):
            calls = re.findall(r"\b([A-Z_][A-Z0-9_]*)\.match\(", line)
            if any(name in anchored_names for name in calls) or re.search(r"\bre\.match\(\s*r?(['\"])[^'\"]*\$\1", line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert anchored_names, "the scan found no anchored pattern at all: it no longer reads the code"
    assert not offenders, "use fullmatch for a pattern anchored with $:\n" + "\n".join(offenders)
