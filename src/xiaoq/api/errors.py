"""The one place where failures become HTTP responses.

Every error leaves the server as ``{"error": {"message", "type", "code", ...}}`` (OpenAI style), so
clients (the openai SDK, the web UI, ``xiaoq chat --url``) need one parser. Domain exceptions carry
their own status and headers; FastAPI/Starlette errors are translated here; bad input is never a 500.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from xiaoq.errors import XiaoQError

log = logging.getLogger("xiaoq.api")

_HTTP_TYPES = {
    400: ("invalid_request_error", "bad_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("not_found_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "payload_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
}


class ErrorDetail(BaseModel):
    """The inside of every error response; some carry more (``param``, token counts, ``limit``)."""

    model_config = ConfigDict(extra="allow")
    message: str
    type: str
    code: Optional[str] = None


class ErrorBody(BaseModel):
    """``{"error": {...}}``: the one error shape, declared in the OpenAPI schema."""

    error: ErrorDetail


_DESCRIPTIONS = {
    400: "Bad request: invalid JSON or UTF-8, a request that cannot be served (context_length_exceeded)",
    401: "Missing or wrong API key",
    403: "Forbidden",
    404: "Unknown id or route",
    409: "A reply is already being generated in this conversation",
    413: "Request body too large",
    415: "Unsupported content type",
    429: "Too many requests: a per-user limit or the login throttle (Retry-After says when)",
    422: "A field is missing, of the wrong type or out of range (validation_error, naming it)",
    500: "Internal error, or the model failed to load",
    503: "Busy (queue_full, model_loading, server_shutting_down, storage_read_only): retry later",
    507: "The conversations database is full (storage_full)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route or router: these statuses answer with :class:`ErrorBody` as JSON
    (named explicitly: on a streaming route FastAPI would list it under the stream's media type)."""
    json_body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    return {status: {"model": ErrorBody, "content": json_body, "description": _DESCRIPTIONS[status]} for status in statuses}


#: What any route may answer (security middleware, validation, body limits, server trouble).
COMMON_ERRORS = error_responses(400, 401, 403, 413, 415, 422, 500, 503)


def error_body(message: str, type_: str, code: Optional[str], **extra: Any) -> dict[str, Any]:
    """The wire shape, for errors that are not :class:`XiaoQError` instances."""
    return {"error": {"message": message, "type": type_, "code": code, **extra}}


def error_response(exc: XiaoQError) -> JSONResponse:
    """JSON response of a domain error, with its status and headers (e.g. Retry-After)."""
    return JSONResponse(exc.to_dict(), status_code=exc.status, headers=exc.headers or None)


def field_path(loc: Sequence[Any]) -> str:
    """``("body", "history", 0, "user")`` -> ``"history[0].user"`` (the name a client sent)."""
    parts = list(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)
    out = ""
    for p in parts:
        if isinstance(p, str) and ("[" in p or "-" in p):
            continue  # a pydantic union/validator tag such as "function-after[...]", not a field
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "body"


def validation_response(exc: RequestValidationError, request: Request) -> JSONResponse:
    """422 naming the field (``"temperature: Input should be ..."``); invalid JSON is a 400."""
    errors = list(exc.errors())
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": "value_error"}
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "")
        pos = first["loc"][-1] if first.get("loc") else "?"
        msg = f"Request body is not valid JSON ({detail} at position {pos})"
        return JSONResponse(error_body(msg, "invalid_request_error", "invalid_json"), status_code=400)
    messages = []
    for e in errors[:5]:
        path = field_path(e.get("loc", ()))
        msg = e.get("msg", "invalid value")
        if path == "body" and e.get("type") in ("model_attributes_type", "dict_type"):
            ctype = request.headers.get("content-type", "")
            msg = f"the body must be a JSON object (send Content-Type: application/json; got {ctype or 'none'})"
        messages.append(f"{path}: {msg}")
    if len(errors) > 5:
        messages.append(f"... and {len(errors) - 5} more")
    body = error_body("; ".join(messages), "invalid_request_error", "validation_error", param=field_path(first.get("loc", ())))
    return JSONResponse(body, status_code=422)


def http_exception_response(exc: StarletteHTTPException) -> JSONResponse:
    type_, code = _HTTP_TYPES.get(exc.status_code, ("invalid_request_error" if exc.status_code < 500 else "server_error", None))
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    cause = exc.__cause__
    if isinstance(cause, UnicodeDecodeError):  # FastAPI's "There was an error parsing the body"
        bad = cause.object[cause.start : cause.start + 1].hex()
        message, code = f"Request body is not valid UTF-8 (byte 0x{bad} at position {cause.start})", "invalid_utf8"
    if exc.status_code == 404 and message == "Not Found":
        message = "Not found: no such route"
    return JSONResponse(error_body(message, type_, code), status_code=exc.status_code, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register every mapping on ``app``."""

    @app.exception_handler(XiaoQError)
    async def _xiaoq(request: Request, exc: XiaoQError) -> JSONResponse:
        if exc.status >= 500 and exc.status != 503:
            log.error("%s %s failed: %s", request.method, request.url.path, exc.message)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_response(exc, request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return http_exception_response(exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette's ServerErrorMiddleware calls this, then re-raises so the server logs the traceback.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("Internal server error", "server_error", "internal_error"), status_code=500)
