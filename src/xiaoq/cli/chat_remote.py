"""What every terminal chat backend shares, and the one that talks to a running server.

:class:`Reply` is what a backend returns for one answer; :class:`RemoteBackend` posts to a XiaoQ
server and shows its SSE ``token`` events as they arrive. Both ``cli/chat.py`` and
``cli/chat_stored.py`` import from here (and never from each other).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Optional

from xiaoq.engine.types import SamplingParams
from xiaoq.errors import XiaoQError

Turn = tuple[str, str]  # (user, assistant)
Write = Callable[[str], None]


@dataclass
class Reply:
    """One answer: the text shown and why it ended ('stop', 'length', 'cancelled', 'error')."""

    text: str
    finish_reason: str
    error: Optional[str] = None


class RemoteBackend:
    """A running XiaoQ server's ``POST /chat`` (SSE), with ``Authorization: Bearer`` when a key is set."""

    def __init__(self, url: str, api_key: Optional[str] = None, timeout: float = 600.0, send: Optional[Collection[str]] = None):
        self.url = url.rstrip("/")
        self.name = self.url
        self.api_key = api_key
        self.timeout = timeout
        #: Which of the /chat fields ("system", "max_tokens", ...) to send; None: all. Leaving one
        #: out lets the server apply its own configured default (e.g. its system prompt).
        self.send = None if send is None else frozenset(send)

    def _request(self, path: str, body: Optional[dict[str, Any]] = None) -> urllib.request.Request:
        headers = {"Accept": "text/event-stream" if body is not None else "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode() if body is not None else None
        return urllib.request.Request(self.url + path, data=data, headers=headers, method="POST" if body is not None else "GET")

    def start(self, wait: float = 300.0) -> None:
        """Check the server is there; wait (bounded) while it is still loading its model."""
        deadline = time.monotonic() + wait
        while True:
            try:
                with urllib.request.urlopen(self._request("/health"), timeout=10) as resp:
                    resp.read()
                model = self._model_name()
                if model:
                    self.name = f"{model} at {self.url}"
                return
            except urllib.error.HTTPError as e:
                if e.code != 503 or time.monotonic() > deadline:
                    raise XiaoQError(f"server at {self.url} answered /health with HTTP {e.code}: {error_message(e)}") from None
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                raise XiaoQError(f"cannot reach a XiaoQ server at {self.url}: {reason}") from None
            time.sleep(0.5)

    def _model_name(self) -> Optional[str]:
        """The served model's name, from ``/v1/models`` (behind the key: the public ``/health`` says
        only the status). None when it cannot be read; a wrong key shows on the first message."""
        try:
            with urllib.request.urlopen(self._request("/v1/models"), timeout=10) as resp:
                data = json.loads(resp.read() or b"{}").get("data") or [{}]
                return data[0].get("id")
        except (urllib.error.URLError, OSError, ValueError, AttributeError):
            return None

    def answer(self, system: str, history: list[Turn], prompt: str, sampling: SamplingParams, write: Write) -> Reply:
        options: dict[str, Any] = {
            "system": system,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": sampling.seed,
        }
        body: dict[str, Any] = {"prompt": prompt, "history": [{"user": u, "bot": b} for u, b in history]}
        body.update((k, v) for k, v in options.items() if v is not None and (self.send is None or k in self.send))
        return self.post_stream("/chat", body, write)

    def post_stream(self, path: str, body: dict[str, Any], write: Write) -> Reply:
        """POST ``body`` and show the SSE ``token`` events as they arrive; the ``done`` or ``error``
        event ends the reply. Ctrl-C closes the connection, which the server takes as a cancel."""
        parts: list[str] = []
        try:
            resp = urllib.request.urlopen(self._request(path, body), timeout=self.timeout)
        except urllib.error.HTTPError as e:
            return Reply("", "error", f"HTTP {e.code}: {error_message(e)}")
        except (urllib.error.URLError, OSError) as e:
            return Reply("", "error", f"cannot reach {self.url}: {getattr(e, 'reason', e)}")
        except KeyboardInterrupt:
            return Reply("", "cancelled")
        try:
            with resp:  # leaving the block closes the connection: the server cancels the generation
                for event in _sse_events(resp):
                    if "token" in event:
                        parts.append(event["token"])
                        write(event["token"])
                    elif event.get("done"):
                        return Reply("".join(parts), str(event.get("finish_reason") or "stop"))
                    elif "error" in event:
                        err = event["error"]
                        return Reply("".join(parts), "error", err.get("message") if isinstance(err, dict) else str(err))
        except KeyboardInterrupt:
            return Reply("".join(parts), "cancelled")
        except (OSError, ValueError) as e:
            return Reply("".join(parts), "error", f"connection lost: {e}")
        return Reply("".join(parts), "error", "the server closed the stream before it finished")

    def close(self) -> None:
        pass


def _sse_events(resp: Any) -> Any:
    """JSON payloads of the ``data:`` lines of an SSE response, in order."""
    for raw in resp:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        if data:
            yield json.loads(data)


def error_message(e: urllib.error.HTTPError) -> str:
    """The message of XiaoQ's one JSON error shape, or the raw body."""
    try:
        raw = e.read()
        payload = json.loads(raw)
        err = payload.get("error", payload)
        return str(err.get("message") or err) if isinstance(err, dict) else str(err)
    except Exception:
        return e.reason if isinstance(e.reason, str) else "request failed"
