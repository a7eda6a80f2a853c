"""The README documents every setting (datasette's pattern): a new field in Settings without a row in
the README's configuration table fails here, so the docs cannot drift from the one settings model."""

from pathlib import Path

import pytest

from xiaoq.config import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_setting_is_documented(name: str) -> None:
    field = Settings.model_fields[name]
    flag = (field.json_schema_extra or {})["flag"]
    assert f"`XIAOQ_{name.upper()}`" in README, f"README lacks env var XIAOQ_{name.upper()}"
    assert f"`{flag}`" in README, f"README lacks flag {flag}"
    assert field.description, f"setting {name} has no description"


def test_readme_commands_exist() -> None:
    root = Path(__file__).resolve().parents[1]
    for script in ("setup.sh", "start.sh", "test.sh"):
        assert f"./{script}" in README
        assert (root / script).stat().st_mode & 0o111, f"{script} is not executable"
    assert (root / ".ci" / "run").read_text().strip().endswith("exec ./test.sh")
