"""Scenarios that start and stop the server processes themselves: cold start and restart.

The other scenarios run against servers that are already up (``bench/scenarios.py``); these two
measure what a user sees around a process start, so each repetition spawns its own servers:

- **cold start** (scenario 9): from just before the process is spawned to the first streamed
  token of a short prompt. The runner polls ``/health`` every ``POLL`` seconds (both servers say
  503 while they load, 200 once a request can be served), then sends the request. The model
  file is in the page cache for every start alike (the earlier scenarios read it): this measures
  the process, not the disk.
- **restart** (scenario 10): a long first turn, the server stopped (SIGTERM: XiaoQ writes its
  states to the disk tier in its data directory, which is kept), started again with the same
  data directory, and the conversation's second turn timed; then the same second-turn prompt
  with a new nonce (nothing can match it) on the same server: the cold prefill of the same
  length. llama-server keeps nothing across a restart, so its resumed turn is a cold prefill too:
  its resumed / cold ratio is how far two equal cold prefills differ in this run.
- **memory, every slot filled** (scenario 11): a server with ``fill_slots`` (8) slots of ``--ctx``
  (4096) tokens gets one distinct ~3,900-token prompt per slot, all at once, and its peak resident
  memory (VmHWM, the kernel's high-water mark) is read before it stops: the memory a server of
  that capacity needs when it is used to capacity, not only what a light workload touched.

Every failure lands in the repetition's ``errors``; servers are always stopped.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from dataclasses import replace
from typing import Any, Callable, Optional, Protocol

import httpx

from bench import workload as W
from bench.client import REQUEST_TIMEOUT, StreamResult, chat_body, stream_chat
from bench.servers import RunningServer, ServerError, ServerSpec, free_port

#: Seconds between two /health polls while a server starts (also the figure's resolution).
POLL = 0.05
#: Generated tokens of the cold-start request and of the restart scenario's turns.
SHORT_REPLY = 8
TURN_REPLY = 16
STOP_GRACE = 60.0


class Pool(Protocol):
    """What these scenarios need of ``bench.servers.ServerPool``."""

    def start(self, spec: ServerSpec, *, health_timeout: float = ..., poll: float = ...) -> RunningServer: ...

    def stop(self, server: RunningServer, *, keep_scratch: bool = False, grace: float = ...) -> None: ...


def respawn(spec: ServerSpec) -> ServerSpec:
    """The same server on a new free port, with the same scratch (data) directory."""
    port = free_port()
    argv = list(spec.argv)
    argv[argv.index("--port") + 1] = str(port)
    return replace(spec, argv=argv, port=port)


async def _chat(client: httpx.AsyncClient, srv: RunningServer, messages: list[dict[str, str]],
                max_tokens: int, timeout: httpx.Timeout = REQUEST_TIMEOUT) -> StreamResult:
    return await stream_chat(client, srv.base_url, chat_body(messages, max_tokens, seed=1234), timeout=timeout)


def _err(res: StreamResult, what: str) -> list[str]:
    return [] if res.ok else [f"{what}: {res.error or 'no token received'}"]


async def _start(pool: Pool, spec: ServerSpec) -> RunningServer:
    return await asyncio.to_thread(pool.start, spec, poll=POLL)


def _failed(what: str, exc: ServerError) -> dict[str, Any]:
    """A repetition's result when a server did not start: the first line of why."""
    return {"errors": [f"{what}: {str(exc).splitlines()[0]}"]}


async def cold_start(pool: Pool, make_spec: Callable[[], ServerSpec], client: httpx.AsyncClient,
                     wl: Any, tag: str) -> dict[str, Any]:
    """Scenario 9: process start -> /health 200 -> first streamed token of a short prompt."""
    spec = make_spec()
    t0 = time.perf_counter()
    try:
        srv = await _start(pool, spec)
    except ServerError as exc:
        return _failed("start", exc)
    ready = time.perf_counter() - t0
    try:
        res = await _chat(client, srv, W.short_messages(tag), SHORT_REPLY)
    finally:
        await asyncio.to_thread(pool.stop, srv)
    return {"ready": ready, "first_token": (res.t_first - t0) if res.t_first is not None else None,
            "request_ttft": res.ttft, "pid": srv.proc.pid, "errors": _err(res, "first request")}


def _turns(tag: str, words: int, reply: Optional[str] = None) -> list[dict[str, str]]:
    first = [W.system_message(tag), {"role": "user", "content": W.document_question(tag, words, seed=11)}]
    if reply is None:
        return first
    return first + [{"role": "assistant", "content": reply}, {"role": "user", "content": W.user_followups(0)[0]}]


async def restart(pool: Pool, make_spec: Callable[[], ServerSpec], client: httpx.AsyncClient,
                  wl: Any, tag: str) -> dict[str, Any]:
    """Scenario 10: a conversation's second turn after a server restart, and a cold prefill of the
    same length on the restarted server."""
    spec = make_spec()
    try:
        srv = await _start(pool, spec)
    except ServerError as exc:
        return _failed("start", exc)
    try:
        first = await _chat(client, srv, _turns(tag, wl.restart_doc_words), TURN_REPLY)
    finally:
        await asyncio.to_thread(pool.stop, srv, keep_scratch=True, grace=STOP_GRACE)
    if not first.ok:
        await asyncio.to_thread(pool.stop, srv)  # removes the scratch directory kept above
        return {"errors": _err(first, "first turn")}
    try:
        again = await _start(pool, respawn(spec))
    except ServerError as exc:
        await asyncio.to_thread(pool.stop, srv)
        return _failed("restart", exc)
    try:
        resumed = await _chat(client, again, _turns(tag, wl.restart_doc_words, first.text), TURN_REPLY)
        cold = await _chat(client, again, _turns(f"{tag}-cold", wl.restart_doc_words, first.text), TURN_REPLY)
    finally:
        await asyncio.to_thread(pool.stop, again)
    return {"resumed_ttft": resumed.ttft, "cold_ttft": cold.ttft, "resumed_cached": resumed.cached_tokens,
            "prompt_tokens": resumed.prompt_tokens, "cold_prompt_tokens": cold.prompt_tokens,
            "pid": again.proc.pid, "errors": _err(resumed, "resumed turn") + _err(cold, "cold prefill")}


#: Generated tokens of each request of the memory scenario (its prompts are what fills the slots).
FILL_REPLY = 8
#: The last of the memory scenario's requests waits for seven ~3,900-token prefills before its own
#: (with a quantized V cache, CPU flash attention makes each take minutes).
FILL_TIMEOUT = httpx.Timeout(connect=10.0, read=1800.0, write=30.0, pool=1800.0)


def fill_messages(tag: str, slot: int, words: int) -> list[dict[str, str]]:
    """A prompt of ``words`` distinct filler words for one slot (no prefix shared with another)."""
    text = W.filler(words, seed=zlib.crc32(f"{tag}-{slot}".encode()))
    return [{"role": "user", "content": f"({W.short_code(f'{tag}-{slot}')}) {text}\n\nSummarize the text above."}]


async def memory_fill(pool: Pool, make_spec: Callable[[], ServerSpec], client: httpx.AsyncClient,
                      wl: Any, tag: str) -> dict[str, Any]:
    """Scenario 11: peak resident memory of a server whose every slot holds a ~3,900-token prompt."""
    spec = make_spec()
    try:
        srv = await _start(pool, spec)
    except ServerError as exc:
        return _failed("start", exc)
    try:
        results = await asyncio.gather(*(_chat(client, srv, fill_messages(tag, i, wl.fill_words), FILL_REPLY, FILL_TIMEOUT)
                                         for i in range(wl.fill_slots)))
        peak = srv.peak_rss_mb()
    finally:
        await asyncio.to_thread(pool.stop, srv)
    errors = [e for i, res in enumerate(results) for e in _err(res, f"slot {i + 1}")]
    return {"peak_rss_mb": peak, "prompt_tokens": [res.prompt_tokens for res in results], "pid": srv.proc.pid,
            "errors": errors}


#: key -> (name in the results, scenario function)
SCENARIOS: dict[str, tuple[str, Callable[..., Any]]] = {"9": ("cold_start", cold_start), "10": ("restart", restart),
                                                        "11": ("memory_fill", memory_fill)}
