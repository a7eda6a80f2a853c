"""``engine/early_load.py``: ``xiaoq serve --model F`` starts reading F before its settings exist,
and the engine takes that model only when it is the same file with the same load parameters;
``llama_logs.quiet_llama_logs``: load logs dropped natively, a failure's reason still reported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xiaoq.config import Settings
from xiaoq.engine import early_load
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.engine.types import GenerationRequest, SamplingParams
from xiaoq.errors import ModelError


@pytest.fixture(autouse=True)
def _nothing_pending():
    early_load.take(Path("/nonexistent"), (True, True))  # drop (and free) whatever a test left
    yield
    early_load.take(Path("/nonexistent"), (True, True))


def test_plan_reads_only_what_it_can_be_sure_of(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF")
    plan = early_load.plan
    assert plan(["serve", "--model", str(f)], {}) == (f, (True, True))
    assert plan(["serve", f"--model={f}", "--no-mmap", "--deterministic"], {}) == (f, (False, False))
    assert plan(["serve", "--deterministic", "--no-deterministic", "--model", str(f)], {}) == (f, (True, True))
    assert plan(["serve"], {"XIAOQ_MODEL": str(f), "XIAOQ_MMAP": "false"}) == (f, (False, True))
    # not sure, or not a local load: no early load
    assert plan(["chat", "--model", str(f)], {}) is None
    assert plan(["serve", "--model", str(f), "--help"], {}) is None
    assert plan(["serve", "--model", str(f), "--upstream", "http://x"], {}) is None
    assert plan(["serve", "--model", str(f)], {"XIAOQ_CPUS": "0"}) is None
    assert plan(["serve", "--model", str(f)], {"XIAOQ_MMAP": "maybe"}) is None
    assert plan(["serve", "--model"], {}) is None
    assert plan(["serve", "--model", str(tmp_path / "missing.gguf")], {}) is None
    assert plan(["serve"], {}) is None  # the default model: resolved by the settings, not guessed


def _settings(**kw) -> Settings:
    return Settings(threads=1, parallel=1, ctx=512, batch=32, kv_cache_mb=0, kv_disk_mb=0, seed=1, **kw)


async def _greedy(e: LlamaEngine) -> str:
    g = await e.submit(GenerationRequest(prompt="hello world", sampling=SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)))
    return await g.text()


async def test_the_engine_takes_the_early_model_of_its_file_and_parameters(tiny_gguf: Path) -> None:
    plain = LlamaEngine(tiny_gguf, _settings())
    await plain.start()
    expected = await _greedy(plain)
    await plain.close()

    assert early_load.start(["serve", "--model", str(tiny_gguf)], {})
    e = LlamaEngine(tiny_gguf, _settings())
    await e.start()
    try:
        assert early_load._pending is None  # taken
        assert await _greedy(e) == expected
    finally:
        await e.close()


async def test_a_mismatched_early_model_is_freed_and_the_usual_load_runs(tiny_gguf: Path) -> None:
    assert early_load.start(["serve", "--model", str(tiny_gguf), "--no-mmap"], {})
    e = LlamaEngine(tiny_gguf, _settings())  # mmap on: another load key
    await e.start()
    try:
        assert early_load._pending is None
        assert await _greedy(e)
    finally:
        await e.close()


async def test_a_failed_load_still_says_why_with_the_logs_dropped(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64)  # a GGUF header, then garbage
    assert early_load.start(["serve", "--model", str(bad)], {})
    e = LlamaEngine(bad, _settings())
    with pytest.raises(ModelError) as err:
        await e.start()
    assert "could not load the model" in err.value.message and ": " in err.value.message.split(str(bad), 1)[1]


#: Starts the early load in a fresh interpreter and, once the model is loaded, prints which of the
#: serve path's other modules the loading thread pulled in (none: the main thread imported nothing).
_LOADER_ONLY = """
import json, sys
from pathlib import Path
from xiaoq.engine import early_load
assert early_load.start(["serve", "--model", sys.argv[1]], {})
model = early_load.take(Path(sys.argv[1]), early_load.key(True, False))
assert model, "no early model"
watched = ("asyncio", "pydantic", "click", "xiaoq.engine.types", "xiaoq.engine.context", "xiaoq.config")
print(json.dumps(sorted(m for m in watched if m in sys.modules)))
"""

#: Runs the console script's entry up to the moment click is first imported: was the model's
#: load already under way then?
_ENTRY_ORDER = """
import importlib.abc, json, sys
seen = {}
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "click" and "click" not in seen:
            early = sys.modules.get("xiaoq.engine.early_load")
            seen["click"] = bool(early is not None and early._pending is not None)
            print(json.dumps(seen), flush=True)
            raise SystemExit(0)
        return None
sys.meta_path.insert(0, Watch())
sys.argv = ["xiaoq", "serve", "--model", sys.argv[1]]
from xiaoq.launch import main
main()
"""


def _run(script: str, *args: str) -> str:
    r = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


def test_the_early_load_imports_only_what_loading_needs(tiny_gguf: Path) -> None:
    # Anything else it imported would hold the GIL against the main thread's own imports before
    # the load could even begin (the engine's types pulled in asyncio).
    assert _run(_LOADER_ONLY, str(tiny_gguf)) == "[]"


def test_the_console_script_starts_the_load_before_importing_the_command_line(tiny_gguf: Path) -> None:
    import tomllib

    scripts = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["xiaoq"] == "xiaoq.launch:main"
    assert _run(_ENTRY_ORDER, str(tiny_gguf)) == '{"click": true}'
