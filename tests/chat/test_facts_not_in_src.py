"""The memory tests' facts never leak into the product: no prompt, docstring or built asset under
``src/`` may contain them, or a summary that merely echoes its own prompt would pass those tests."""

from __future__ import annotations

from pathlib import Path

from tests.chat import facts

SRC = Path(__file__).resolve().parents[2] / "src"


def test_the_memory_tests_facts_appear_nowhere_in_src() -> None:
    leaks = []
    for path in sorted(SRC.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore").lower()
        leaks += [f"{path.relative_to(SRC)}: {fact}" for fact in facts.ALL if fact.lower() in text]
    assert not leaks, leaks
