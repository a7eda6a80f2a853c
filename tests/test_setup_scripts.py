"""``start.sh`` / ``setup.sh`` on a copy of the checkout whose installers are shims that record each
call: serving sets up only what serving needs, and once set up no installer runs at all (so a
start needs no network); the test tools, npm packages and Chromium come with ``setup.sh --test``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECORD = '#!/bin/sh\necho "$(basename "$0") $*" >> "$CALLS"\n'
#: ``npm ci`` leaves node_modules/.package-lock.json behind, as the real one does.
NPM = RECORD + 'if [ "$1" = ci ]; then mkdir -p node_modules && touch node_modules/.package-lock.json; fi\n'


def shim(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The scripts, pyproject.toml and the front end's manifests, with a ``.venv`` whose python is
    this interpreter (so llama_cpp and xiaoq import) and whose pip and xiaoq only record."""
    root = tmp_path / "xiaoq"
    (root / "frontend").mkdir(parents=True)
    for name in ("start.sh", "setup.sh", "pyproject.toml", "frontend/package.json", "frontend/package-lock.json"):
        shutil.copy2(ROOT / name, root / name)
    venv = root / ".venv" / "bin"
    venv.mkdir(parents=True)
    shim(venv / "python", f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    shim(venv / "pip", RECORD)
    shim(venv / "xiaoq", RECORD)
    tools = tmp_path / "path"
    tools.mkdir()
    for name in ("apt-get", "pip", "pip3", "python3"):
        shim(tools / name, RECORD)
    shim(tools / "npm", NPM)
    shim(tools / "espeak-ng", RECORD)  # installed: the browser is the system package this test watches
    return root


def run(checkout: Path, *args: str) -> list[str]:
    """Run a script of the copy; the installer calls it made, in order."""
    calls = checkout.parent / "calls.log"
    calls.unlink(missing_ok=True)
    env = dict(
        os.environ,
        CALLS=str(calls),
        PATH=f"{checkout.parent / 'path'}{os.pathsep}{os.environ['PATH']}",
        PYTHONPATH=str(ROOT / "src"),  # `import xiaoq` works as after `pip install -e .`
        XIAOQ_CHROMIUM=str(checkout / "no-chromium"),
    )
    env.pop("XIAOQ_SKIP_BROWSER", None)
    r = subprocess.run(args, cwd=checkout, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return calls.read_text().splitlines() if calls.exists() else []


def test_start_sets_up_only_what_serving_needs_and_then_nothing(checkout: Path) -> None:
    first = run(checkout, "./start.sh", "--help")
    print("first start:", first)
    assert first == ["pip install -q -e .[dense]", "xiaoq serve --help"]  # runtime deps only: no [test], npm, apt
    again = run(checkout, "./start.sh", "--model", "m.gguf")
    print("second start:", again)
    assert again == ["xiaoq serve --model m.gguf"]  # set up: no installer, no network


def test_the_test_setup_installs_test_tools_once(checkout: Path) -> None:
    calls = run(checkout, "./setup.sh", "--test")
    print("test setup:", calls)
    assert calls[:2] == ["pip install -q -e .[dense]", "pip install -q -e .[test,dense,ocr]"]
    assert "npm ci --no-audit --no-fund --loglevel=error" in calls
    browser = [c for c in calls if c.startswith("apt-get")]
    assert browser == (["apt-get update -qq", "apt-get install -y -qq chromium"] if os.geteuid() == 0 else [])
    (checkout / "no-chromium").write_text("")  # as if apt-get had installed it
    (checkout / "no-chromium").chmod(0o755)
    assert run(checkout, "./setup.sh", "--test") == []
    assert run(checkout, "./start.sh") == ["xiaoq serve"]


def test_a_changed_dependency_list_installs_again(checkout: Path) -> None:
    run(checkout, "./start.sh")
    with (checkout / "pyproject.toml").open("a") as f:
        f.write("\n# a new dependency would be listed here\n")
    assert run(checkout, "./start.sh") == ["pip install -q -e .[dense]", "xiaoq serve"]


def test_setup_refuses_an_unknown_option(checkout: Path) -> None:
    r = subprocess.run(["./setup.sh", "--everything"], cwd=checkout, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "usage: ./setup.sh [--test]" in r.stderr
