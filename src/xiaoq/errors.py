"""Domain exceptions. Every layer raises these; ``api/errors.py`` maps them to HTTP in one place and
the CLI prints their message on one line. The wire shape is always
``{"error": {"message", "type", "code"}}`` (OpenAI style).
"""

from __future__ import annotations

from typing import Any, Optional


class XiaoQError(Exception):
    """Base of every error XiaoQ reports to a user. ``status`` is the HTTP status it maps to."""

    status: int = 500
    type: str = "server_error"
    code: Optional[str] = None

    def __init__(self, message: str, *, code: Optional[str] = None, headers: Optional[dict[str, str]] = None, **extra: Any):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        """The one JSON error shape."""
        err: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        err.update(self.extra)
        return {"error": err}


class InvalidRequest(XiaoQError):
    """The request is well-formed JSON but asks for something impossible (400)."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class ContextLengthExceeded(InvalidRequest):
    """Prompt tokens + max_tokens do not fit the context window (400, with both counts)."""

    code = "context_length_exceeded"

    def __init__(self, prompt_tokens: int, max_tokens: int, n_ctx: int):
        super().__init__(
            f"This model's context is {n_ctx} tokens, but the request needs {prompt_tokens + max_tokens} "
            f"({prompt_tokens} in the prompt + {max_tokens} for the reply). Shorten the prompt or lower max_tokens.",
            prompt_tokens=prompt_tokens,
            max_tokens=max_tokens,
            n_ctx=n_ctx,
        )


class Unauthorized(XiaoQError):
    """Missing or wrong API key (401)."""

    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class InvalidHost(InvalidRequest):
    """A ``Host`` header the server does not answer (400): the mark of DNS rebinding."""

    code = "invalid_host"


class Forbidden(XiaoQError):
    """A request the server refuses whoever sends it (403), e.g. a state change from a foreign origin."""

    status = 403
    type = "permission_error"
    code = "forbidden"


class UnsupportedMediaType(XiaoQError):
    """A body in a content type the route does not take (415), e.g. a form post to a JSON route."""

    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class NotFound(XiaoQError):
    """Unknown id or route (404)."""

    status = 404
    type = "not_found_error"
    code = "not_found"


class Conflict(XiaoQError):
    """The thing to create exists already (409)."""

    status = 409
    type = "invalid_request_error"
    code = "conflict"


class NotImplementedHere(XiaoQError):
    """Something this server's engine cannot do (501), e.g. continue a reply on an upstream that
    always starts a new one."""

    status = 501
    type = "invalid_request_error"
    code = "not_implemented"


class PayloadTooLarge(XiaoQError):
    """Body over the configured size limit (413)."""

    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class Busy(XiaoQError):
    """The admission queue is full (503 with Retry-After)."""

    status = 503
    type = "server_busy"
    code = "queue_full"

    def __init__(self, message: str = "XiaoQ is busy: every slot and queue place is taken. Retry shortly.", retry_after: int = 2):
        super().__init__(message, headers={"Retry-After": str(retry_after)}, retry_after=retry_after)


class TooManyRequests(XiaoQError):
    """A per-user limit or the login throttle (429 with Retry-After): slow down, then retry."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float = 1, *, code: Optional[str] = None):
        seconds = max(1, int(retry_after + 0.999))
        super().__init__(message, code=code, headers={"Retry-After": str(seconds)}, retry_after=seconds)


class ModelLoading(XiaoQError):
    """The model is not loaded yet (503)."""

    status = 503
    type = "server_busy"
    code = "model_loading"

    def __init__(self, message: str = "The model is still loading. Retry shortly."):
        super().__init__(message, headers={"Retry-After": "2"})


class ModelError(XiaoQError):
    """The model file is missing, truncated or not a GGUF (startup error, printed on one line)."""

    status = 500
    type = "model_error"
    code = "model_error"


class EngineError(XiaoQError):
    """llama.cpp failed while generating (500; reported mid-stream as an error event)."""

    status = 500
    type = "server_error"
    code = "engine_error"


class InvalidAudio(InvalidRequest):
    """An upload that is not audio any decoder here understands, is empty, or is too long (400)."""

    code = "invalid_audio"


class VoiceUnavailable(XiaoQError):
    """Speech recognition or synthesis is off, not installed or has no model (503, no Retry-After:
    retrying does not help; the message names what the operator has to do)."""

    status = 503
    type = "server_error"
    code = "voice_unavailable"


class StorageFull(XiaoQError):
    """The database cannot grow (disk full, or its size limit): nothing was written (507)."""

    status = 507
    type = "server_error"
    code = "storage_full"


class StorageReadOnly(XiaoQError):
    """The database refuses writes (read-only file system or mode): nothing was written (503)."""

    status = 503
    type = "server_error"
    code = "storage_read_only"


class ShuttingDown(XiaoQError):
    """The server is stopping (SIGTERM): a running stream ends with this error event (503)."""

    status = 503
    type = "server_busy"
    code = "server_shutting_down"

    def __init__(self, message: str = "XiaoQ is shutting down; the reply so far is kept. Retry when it is back."):
        super().__init__(message, headers={"Retry-After": "5"})
