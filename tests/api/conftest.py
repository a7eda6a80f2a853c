"""Fixtures for the API tests: settings without env/CLI influence, a FakeEngine-backed app, and a
sync TestClient that runs the app's lifespan (so ``engine.start()`` runs as in production)."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from xiaoq.api.app import create_app
from xiaoq.config import Settings
from xiaoq.engine.fake import FakeEngine

from tests.api.helpers import make_settings, wait_ready


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def engine(settings: Settings) -> FakeEngine:
    return FakeEngine(settings)


@pytest.fixture
def app(settings: Settings, engine: FakeEngine) -> FastAPI:
    return create_app(settings, engine, web_dir=None)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        wait_ready(c)
        yield c


@pytest.fixture
def app_factory() -> Callable[..., tuple[FastAPI, FakeEngine]]:
    """``app_factory(engine_kwargs={...}, **settings_overrides)`` for tests needing other settings."""

    def build(engine_kwargs: dict[str, Any] | None = None, **overrides: Any) -> tuple[FastAPI, FakeEngine]:
        s = make_settings(**overrides)
        eng = FakeEngine(s, **(engine_kwargs or {}))
        return create_app(s, eng, web_dir=None), eng

    return build
