"""``/health`` through the background model load, ``/metrics`` in Prometheus text format."""

from __future__ import annotations

import re
import time

from fastapi.testclient import TestClient

from xiaoq.api.app import create_app
from xiaoq.engine.fake import FakeEngine

from tests.api.helpers import make_settings, wait_ready


def test_health_loading_then_ok(app_factory) -> None:
    app, engine = app_factory(engine_kwargs={"load_delay": 0.3})
    with TestClient(app) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json() == {"status": "loading"}
        assert not engine.ready
        wait_ready(c)
        r = c.get("/health")
        assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_health_reports_a_failed_load(app_factory) -> None:
    app, _ = app_factory(engine_kwargs={"load_error": "not a GGUF file: /tmp/x.gguf"})
    with TestClient(app) as c:
        deadline = time.monotonic() + 5
        while c.get("/health").status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.01)
        r = c.get("/health")
        assert r.status_code == 500
        assert r.json() == {"status": "error"}  # the details (a path) only behind the key
        err = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}).json()["error"]
        assert err["code"] == "model_error" and "not a GGUF file" in err["message"]
        assert c.get("/metrics").status_code == 200


def test_engine_closed_at_shutdown() -> None:
    settings = make_settings()
    engine = FakeEngine(settings)
    with TestClient(create_app(settings, engine, web_dir=None)) as c:
        wait_ready(c)
        assert engine.ready
    assert engine._closed and not engine.ready


def test_api_config(client: TestClient) -> None:
    body = client.get("/api/config").json()
    assert body["model"] == "fake-model" and body["auth_required"] is False
    assert body["n_ctx"] == 4096 and body["max_tokens"] == 2048 and body["default_max_tokens"] == 1024
    assert (body["temperature"], body["top_p"]) == (0.7, 0.9)


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_prometheus_format(client: TestClient, engine: FakeEngine) -> None:
    engine.enqueue("abcd", "xy")
    client.post("/chat", json={"prompt": "hi"})
    client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    # Every sample belongs to a metric with HELP and TYPE, all prefixed xiaoq_.
    types = dict(re.findall(r"^# TYPE (\S+) (\w+)$", text, re.M))
    helps = set(re.findall(r"^# HELP (\S+) ", text, re.M))
    assert set(types) == helps and all(n.startswith("xiaoq_") for n in types)
    for line in text.splitlines():
        if line and not line.startswith("#"):
            base = re.sub(r"(_bucket|_sum|_count)$", "", line.split("{")[0].split(" ")[0])
            assert base in types or line.split("{")[0].split(" ")[0] in types, line
    s = _samples(text)
    assert types["xiaoq_tokens_generated_total"] == "counter" and s["xiaoq_tokens_generated_total"] == 6
    assert types["xiaoq_slots_total"] == "gauge" and s["xiaoq_slots_total"] == 2
    assert s['xiaoq_requests_finished_total{finish_reason="stop"}'] == 2
    assert types["xiaoq_queue_depth"] == "gauge" and s["xiaoq_queue_depth"] == 0
    assert s['xiaoq_http_generations_total{route="/chat",finish_reason="stop"}'] == 1
    assert s['xiaoq_http_generations_total{route="/v1/chat/completions",finish_reason="stop"}'] == 1
    assert types["xiaoq_http_time_to_first_token_seconds"] == "histogram"
    assert s["xiaoq_http_time_to_first_token_seconds_count"] == 2
    assert s['xiaoq_http_time_to_first_token_seconds_bucket{le="+Inf"}'] == 2
    assert s["xiaoq_http_decode_tokens_per_second_count"] == 2  # both answers had more than one token
