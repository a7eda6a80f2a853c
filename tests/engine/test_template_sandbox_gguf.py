"""A GGUF's chat template comes from a stranger: escapes from the Jinja sandbox fail, nothing runs.

Tiny GGUFs carrying hostile templates are generated with tests/tinymodel.py and loaded by real
llama.cpp. Each payload would create a marker file if it ran. A template hostile on every
conversation is refused when the model loads (``xiaoq serve`` exits with one line); one hostile
only for some input fails that request with a JSON 400 and the server goes on serving.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import make_settings, parse_sse
from tests.api.server import serve, wait_health
from tests.cli.procs import xiaoq_command
from tests.tinymodel import QWEN25_CHAT_TEMPLATE, build_tiny_gguf
from xiaoq.api.app import create_app
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.errors import ModelError

ESCAPES = {
    "mro_subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "cycler_globals": "{{ cycler.__init__.__globals__.os.popen('touch MARKER').read() }}",
    "joiner_globals": "{{ joiner.__init__.__globals__['os'].system('touch MARKER') }}",
    "lipsum_globals": "{{ lipsum.__globals__['os'].system('touch MARKER') }}",
    "namespace_globals": "{{ namespace.__init__.__globals__.os.system('touch MARKER') }}",
    "helper_globals": "{{ raise_exception.__globals__['os'].system('touch MARKER') }}",
    "attr_filter": "{{ (cycler|attr('__init__')|attr('__globals__'))['os'].system('touch MARKER') }}",
    "attr_probe": "{{ messages|attr('__class__') }}",
    "format_string": "{{ '{0.__class__.__init__.__globals__}'.format(cycler) }}",
}


def _hostile(tmp_path: Path, name: str, template: str, marker: Path) -> Path:
    return build_tiny_gguf(tmp_path / f"{name}.gguf", chat_template=template.replace("MARKER", str(marker)))


@pytest.mark.parametrize("name", sorted(ESCAPES))
async def test_an_escaping_template_is_refused_at_load_and_never_runs(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "pwned"
    path = _hostile(tmp_path, name, ESCAPES[name], marker)
    engine = LlamaEngine(path, make_settings(ctx=512, parallel=1, threads=1, kv_cache_mb=0))
    with pytest.raises(ModelError) as e:
        await engine.start()
    assert "sandbox" in e.value.message and str(path) in e.value.message
    assert not marker.exists()
    await engine.close()


def test_serve_with_an_escaping_template_exits_with_one_line(tmp_path: Path, cli_env_for_sandbox: dict[str, str]) -> None:
    marker = tmp_path / "pwned"
    path = _hostile(tmp_path, "serve", ESCAPES["cycler_globals"], marker)
    r = subprocess.run([*xiaoq_command(), "serve", "--model", str(path), "--port", "0"], env=cli_env_for_sandbox, capture_output=True, text=True, timeout=90)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "sandbox" in errors[0], r.stderr
    assert not marker.exists()


def test_a_template_hostile_to_some_input_fails_that_request_only(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    # Contents reach the template as placeholders (engine/llama_engine.py), so a trap can only
    # key on the conversation's shape: here, a long enough history.
    trap = "{% if messages|length > 6 %}" + ESCAPES["cycler_globals"] + "{% endif %}"
    path = _hostile(tmp_path, "conditional", trap + QWEN25_CHAT_TEMPLATE, marker)
    settings = make_settings(ctx=512, parallel=1, threads=1, kv_cache_mb=0)
    with serve(create_app(settings, LlamaEngine(path, settings), web_dir=None)) as url:
        wait_health(url)
        history = [{"user": "hi", "bot": "hello"}] * 3
        r = httpx.post(url + "/chat", json={"prompt": "and now?", "history": history, "max_tokens": 4}, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", r.text
        assert "unsafe" in r.json()["error"]["message"]
        messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}] * 3 + [{"role": "user", "content": "and now?"}]
        r = httpx.post(url + "/v1/chat/completions", json={"messages": messages, "max_tokens": 4}, timeout=30)
        assert r.status_code == 400
        assert not marker.exists()
        r = httpx.post(url + "/chat", json={"prompt": "hello", "max_tokens": 4}, timeout=30)
        assert r.status_code == 200 and parse_sse(r.text)[-1]["done"] is True
        assert httpx.get(url + "/health").status_code == 200


@pytest.fixture
def cli_env_for_sandbox(tmp_path: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("XIAOQ_", "HF_", "MODELSCOPE_"))}
    env.update(HF_HUB_OFFLINE="1", XIAOQ_THREADS="1", XIAOQ_PARALLEL="1", XIAOQ_DB=str(tmp_path / "x.db"), PYTHONUNBUFFERED="1")
    return env
