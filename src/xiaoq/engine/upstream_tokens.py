"""What XiaoQ learns from an upstream when it has no model file: the model's name, its context
size, and a tokenize endpoint.

Each server family spells these differently, so each is tried in turn:
- context: llama-server ``GET /props`` (``default_generation_settings.n_ctx``, per slot), vLLM
  ``GET /v1/models`` (``max_model_len``); other servers say nothing and ``--ctx`` stands;
- tokenize: llama-server ``POST /tokenize {"content"}``, vLLM ``POST /tokenize {"prompt"}``,
  llama-cpp-python ``POST /extras/tokenize {"input"}``; all answer ``{"tokens": [...]}``.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import httpx

from ..errors import ModelError

log = logging.getLogger(__name__)

#: Characters per tokenize request (XiaoQ's own /tokenize takes up to 100,000).
PIECE_CHARS = 50_000
TOKENIZE_ENDPOINTS: tuple[tuple[str, str], ...] = (("/tokenize", "content"), ("/tokenize", "prompt"), ("/extras/tokenize", "input"))


async def _get_json(client: httpx.AsyncClient, url: str) -> Optional[Any]:
    try:
        r = await client.get(url, timeout=5.0)
        return r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


async def discover_model(client: httpx.AsyncClient, base: str) -> Optional[str]:
    """The first model id the upstream lists."""
    body = await _get_json(client, base + "/v1/models")
    data = body.get("data") if isinstance(body, dict) else None
    if data and isinstance(data[0], dict) and data[0].get("id"):
        return str(data[0]["id"])
    return None


async def discover_context(client: httpx.AsyncClient, base: str) -> Optional[int]:
    """Tokens per conversation the upstream allows, if it says."""
    props = await _get_json(client, base + "/props")
    if isinstance(props, dict):
        n = (props.get("default_generation_settings") or {}).get("n_ctx") or props.get("n_ctx")
        if isinstance(n, int) and n > 0:
            return n
    body = await _get_json(client, base + "/v1/models")
    for model in (body or {}).get("data") or [] if isinstance(body, dict) else []:
        n = model.get("max_model_len") if isinstance(model, dict) else None
        if isinstance(n, int) and n > 0:
            return n
    return None


class RemoteTokenizer:
    """Tokenizes through an upstream's endpoint; blocking (call it off the event loop)."""

    def __init__(self, base: str, path: str, field: str, headers: dict[str, str]):
        self.base, self.path, self.field = base, path, field
        self.client = httpx.Client(timeout=10.0, headers=headers)

    @classmethod
    async def find(cls, base: str, headers: dict[str, str]) -> "RemoteTokenizer":
        async with httpx.AsyncClient(timeout=5.0, headers=headers) as client:
            for path, field in TOKENIZE_ENDPOINTS:
                try:
                    r = await client.post(base + path, json={field: "你好"})
                    if r.status_code == 200 and isinstance(r.json().get("tokens"), list):
                        log.info("counting tokens with %s%s", base, path)
                        return cls(base, path, field, headers)
                except (httpx.HTTPError, ValueError, AttributeError):
                    continue
        raise ModelError(f"the upstream {base} has no tokenize endpoint: give --model the GGUF it serves (its vocabulary is enough)")

    def tokenize(self, text: str) -> list[int]:
        """Long texts go in pieces (servers cap request bodies); a cut can split one token in two,
        which makes a count at most one token high per piece: harmless for a budget."""
        tokens: list[int] = []
        for start in range(0, len(text), PIECE_CHARS):
            r = self.client.post(self.base + self.path, json={self.field: text[start : start + PIECE_CHARS]})
            r.raise_for_status()
            tokens += [int(t) for t in r.json()["tokens"]]
        return tokens

    def close(self) -> None:
        self.client.close()
