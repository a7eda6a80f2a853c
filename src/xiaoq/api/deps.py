"""Request dependencies as ``Annotated`` aliases (the fastapi full-stack template's pattern).

Routes declare ``engine: EngineDep`` instead of reaching into ``request.app.state``, so what a route
needs is visible in its signature and tests can override one dependency.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from xiaoq.api.metrics import Metrics
from xiaoq.api.streaming import Draining
from xiaoq.config import Settings
from xiaoq.engine.types import Engine
from xiaoq.errors import ModelError, XiaoQError


def get_engine(request: Request) -> Engine:
    """The engine, for routes that generate. After a failed model load they get that error (500)
    rather than "still loading" forever; /health and /metrics read ``app.state.engine`` directly."""
    load_error = request.app.state.load_error
    if load_error is not None:
        raise ModelError(f"The model failed to load: {load_error}")
    return request.app.state.engine


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def get_draining(request: Request) -> Draining:
    return request.app.state.draining


def get_conversations(request: Request) -> Any:
    """The :class:`~xiaoq.chat.conversation.ConversationService` wired by ``create_app(store=...)``,
    seeing only the asking user's conversations when accounts are on (the store refuses
    otherwise, so a route that skipped this would fail rather than show everyone's)."""
    service = getattr(request.app.state, "conversations", None)
    if service is None:
        raise XiaoQError("Conversation storage is not enabled on this server.")
    user = request.scope.get("xiaoq.user")
    return service if user is None else service.for_user(user)


def viewer_kbs(request: Request, kbs: Any) -> Any:
    """The knowledge bases (``app.state.kb``) as the request's user may see them; unchanged
    without accounts. With accounts the unscoped store refuses, so skipping this fails closed."""
    user = request.scope.get("xiaoq.user")
    return kbs.for_viewer(user) if kbs is not None and user is not None else kbs


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
DrainingDep = Annotated[Draining, Depends(get_draining)]
#: The conversation service over that store and the engine.
ConversationsDep = Annotated[Any, Depends(get_conversations)]
