"""pyproject.toml builds without deprecation warnings from setuptools (the ``project.license`` table
form stops building after 2027-02-18; the SPDX string needs setuptools >= 77)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_applies_without_setuptools_warnings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    (tmp_path / "README.md").write_text("readme")
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dist = apply_configuration(Distribution(), "pyproject.toml")
    assert dist.metadata.license_expression == "MIT"


def test_the_build_requires_a_setuptools_that_reads_spdx_licenses() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    floor = re.search(r'"setuptools>=(\d+)', text)
    assert floor and int(floor.group(1)) >= 77, "license = \"MIT\" (SPDX) needs setuptools >= 77"



def test_the_wheel_ships_the_code_runner() -> None:
    """The sandbox's scripts always, and Pyodide's files whenever npm has put them in src/xiaoq/pyodide."""
    from fnmatch import fnmatch

    from setuptools.config.pyprojecttoml import read_configuration

    from xiaoq.api.routes_sandbox import PYODIDE_FILES

    patterns = read_configuration(ROOT / "pyproject.toml")["tool"]["setuptools"]["package-data"]["xiaoq"]
    package = ROOT / "src" / "xiaoq"
    shipped = {p.relative_to(package).as_posix() for pattern in patterns for p in package.glob(pattern)}
    assert {"sandbox/runner.js", "sandbox/pyworker.js", "sandbox/jsprelude.js"} <= shipped
    for name in PYODIDE_FILES:
        assert any(fnmatch(f"pyodide/{name}", pattern) for pattern in patterns), name
