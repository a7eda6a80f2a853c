"""``xiaoq serve --upstream``: the flag repeats, the environment takes a comma-separated list, no
local model is loaded, and a real server answers through a real upstream."""

from __future__ import annotations

from pathlib import Path

import httpx

from xiaoq.cli.options import build_settings

from tests.cli.procs import assert_one_line_error, free_port, run_xiaoq, start_server, stop, wait_healthy
from tests.engine.upstreams import start_llama_cpp_server


def test_upstream_list_from_flags_and_env(monkeypatch) -> None:
    monkeypatch.setenv("XIAOQ_UPSTREAM", "http://a:1, http://b:2")
    assert build_settings({}).upstream == ["http://a:1", "http://b:2"]
    assert build_settings({"upstream": ("http://c:3", "http://d:4,http://e:5")}).upstream == ["http://c:3", "http://d:4", "http://e:5"]
    assert build_settings({"upstream": ()}).upstream == ["http://a:1", "http://b:2"]  # no flag given: env


def test_serve_through_an_upstream_from_the_environment(cli_env: dict[str, str], tiny_gguf: Path, serve_proc: list, tmp_path: Path) -> None:
    proc_up, url = start_llama_cpp_server(tiny_gguf, tmp_path / "upstream.log")
    try:
        dead = f"http://127.0.0.1:{free_port()}"
        port = free_port()
        env = {**cli_env, "XIAOQ_UPSTREAM": f"{dead},{url}"}
        proc = start_server(["--port", str(port)], env, serve_proc)  # no --model at all
        assert wait_healthy(proc, port)["status"] == "ok"
        r = httpx.post(f"http://127.0.0.1:{port}/chat", json={"prompt": "你好", "max_tokens": 4}, timeout=60)
        assert r.status_code == 200 and '"done":true' in r.text.replace(" ", "")
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert f'xiaoq_upstream_up{{upstream="{dead}"}} 0' in metrics and f'xiaoq_upstream_up{{upstream="{url}"}} 1' in metrics
        status, err = stop(proc)
        assert status == 0, err
        assert "2 upstream(s)" in err
    finally:
        proc_up.terminate()
        proc_up.wait(timeout=10)


def test_a_bad_upstream_url_is_one_line(cli_env: dict[str, str]) -> None:
    assert_one_line_error(run_xiaoq(["serve", "--upstream", "10.0.0.5:8080"], cli_env), 1, "--upstream", "http://")
