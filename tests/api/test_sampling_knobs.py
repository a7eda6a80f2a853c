"""llama-server's sampling knobs (``min_p``, ``repeat_penalty``) on /chat and the OpenAI API: the
server's defaults (settings) apply when a request leaves them out, a request's value wins, and an
out-of-range value is a 422 naming the field."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import wait_ready

USER = [{"role": "user", "content": "hi"}]


def _post(c: TestClient, route: str, **fields):
    if route == "/chat":
        return c.post("/chat", json={"prompt": "hi", **fields})
    return c.post("/v1/chat/completions", json={"messages": USER, **fields})


@pytest.mark.parametrize("route", ["/chat", "/v1"])
def test_defaults_come_from_settings_and_requests_override_them(app_factory, route: str) -> None:
    app, engine = app_factory(min_p=0.05, repeat_penalty=1.1)
    with TestClient(app) as c:
        wait_ready(c)
        assert _post(c, route).status_code == 200
        s = engine.requests[-1].sampling
        assert (s.min_p, s.repeat_penalty) == (0.05, 1.1)
        assert _post(c, route, min_p=0.2, repeat_penalty=1.0).status_code == 200
        s = engine.requests[-1].sampling
        assert (s.min_p, s.repeat_penalty) == (0.2, 1.0)


def test_chat_takes_frequency_and_presence_penalties(client: TestClient, engine) -> None:
    assert _post(client, "/chat", frequency_penalty=0.3, presence_penalty=-0.5).status_code == 200
    s = engine.requests[-1].sampling
    assert (s.frequency_penalty, s.presence_penalty) == (0.3, -0.5)


@pytest.mark.parametrize("route", ["/chat", "/v1"])
@pytest.mark.parametrize("field,value", [("min_p", -0.1), ("min_p", 1.5), ("repeat_penalty", 0), ("repeat_penalty", 2.5), ("repeat_penalty", "x")])
def test_out_of_range_is_422_naming_the_field(client: TestClient, route: str, field: str, value) -> None:
    r = _post(client, route, **{field: value})
    assert r.status_code == 422
    err = r.json()["error"]
    assert field in err["message"] and err["type"] == "invalid_request_error"


def test_settings_refuse_out_of_range_defaults() -> None:
    from pydantic import ValidationError

    from xiaoq.config import Settings

    with pytest.raises(ValidationError):
        Settings(min_p=2)
    with pytest.raises(ValidationError):
        Settings(repeat_penalty=0)
