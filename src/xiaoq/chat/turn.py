"""One turn of a stored conversation, from the user's words to the stored reply.

The life of a turn, in order (:func:`open_turn`, then :meth:`ReplyTurn.events`):

1. the question is committed first when it is new (a crash never loses what the user typed);
2. the budget plans the prompt that fits (``chat/summaries.py``);
3. the first request is admitted BEFORE the response starts, so a full server is an HTTP 503 and a
   prompt that cannot fit a 400, with nothing changed: the summary request when one is due, else
   the reply itself;
4. the reply row is created (``incomplete``, empty) and the stream starts at once with ``start``;
5. when a summary is due: ``{"status": "summarizing"}``, the summary (bounded by a deadline, else
   the trimmed plan), then the reply is submitted;
6. ``token`` events through the code-fence repairer, each stored after the client took it (saved
   at least every second, and during a stall);
7. the reply is settled exactly once, whatever ends it (done, error, stop, disconnect, shutdown):
   ``complete`` / ``incomplete`` / ``error`` with its finish reason, usage and budget. A turn that
   REPLACES messages (regenerate, edit) deletes them in the same write when it completes, and
   otherwise discards itself: the conversation keeps its previous reply until a new one exists.

A turn that CONTINUES a stored reply (``TurnSpec.continues``) sends the reply so far as an open
assistant message (``continue_last``), streams into that same row, and, unless it completes,
writes the row back as it was: a stopped or failed continue leaves the reply untouched.

Events are plain dicts in the wire shapes of ``docs/api.md``; the API only frames them as SSE.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Callable, Optional

from xiaoq.chat.budget import BudgetPlan
from xiaoq.chat.grounding import submit_answer
from xiaoq.chat.fences import FenceRepairer
from xiaoq.chat.summaries import Planned, Summaries, SummaryRun
from xiaoq.engine.types import ChatMessage, Engine, Generation, GenerationRequest, GenerationResult, SamplingParams, Timings, Usage
from xiaoq.errors import EngineError, NotFound, XiaoQError
from xiaoq.store import ReplyWriter, Store

log = logging.getLogger("xiaoq.chat")

#: Wraps the reply's generation for the consumer (the API measures it for /metrics).
Track = Callable[[Generation], AsyncIterator[str]]


@dataclass
class TurnSpec:
    """What a turn answers and what it replaces, decided by the service."""

    conversation_id: str
    system: str
    past: list[dict[str, Any]]  # stored messages before the question
    question: str
    sampling: SamplingParams
    user_message_id: Optional[int] = None  # the stored question; None: store ``question`` as new
    replaces: list[int] = field(default_factory=list)  # deleted when the reply completes
    continues: Optional[dict[str, Any]] = None  # the stored reply this turn goes on with
    #: What the model reads as the question when it differs from what is stored (the question with
    #: its retrieved passages as data); None: ``question``.
    prompt: Optional[str] = None
    #: The knowledge-base grounding of this turn (citations and what was retrieved), if any.
    grounding: Optional[Any] = None
    #: Work that must run inside the stream before the reply is submitted (a document summary's
    #: map step); it yields status events and sets ``prompt``.
    prepare: Optional[Callable[["ReplyTurn"], AsyncIterator[dict[str, Any]]]] = None
    #: Messages between the system message and the history (the worked turns of an answer from
    #: passages), as stable as the system message.
    prefix: list[ChatMessage] = field(default_factory=list)


@dataclass
class TurnDeps:
    store: Store
    engine: Engine
    summaries: Summaries
    release: Callable[["ReplyTurn"], None]


async def open_turn(deps: TurnDeps, spec: TurnSpec, turn: "ReplyTurn") -> "ReplyTurn":
    """Steps 1-4 of the module docstring. On any failure nothing the turn wrote stays."""
    new_rows: list[int] = []
    try:
        if spec.user_message_id is None:
            user = await asyncio.to_thread(deps.store.add_message, spec.conversation_id, "user", spec.question)
            spec.user_message_id = user["id"]
            new_rows.append(user["id"])
        if spec.continues:
            # A continuation is not repaired: the repairer judges fences from a reply's first line
            # and would misread one that closes a block opened before the cut.
            turn.repairer = None
            turn.reply_tokens = await _reply_tokens(deps.engine, spec.continues)
        # The reply so far is part of the prompt: the plan keeps room for it as for the answer.
        room = spec.sampling.max_tokens + turn.reply_tokens
        planned = await deps.summaries.plan(spec.conversation_id, spec.system, spec.past, spec.prompt or spec.question, room, spec.prefix)
        await turn.admit(planned)
        reply = spec.continues or await asyncio.to_thread(
            deps.store.add_message, spec.conversation_id, "assistant", "", "incomplete", budget=planned.plan.report
        )
    except BaseException:
        turn.cancel()
        deps.release(turn)
        if new_rows:
            await asyncio.to_thread(deps.store.delete_messages, spec.conversation_id, new_rows)
        raise
    turn.writer = ReplyWriter(deps.store, reply["id"], text=reply["content"])
    turn.new_rows = new_rows
    return turn


async def _reply_tokens(engine: Engine, reply: Optional[dict[str, Any]]) -> int:
    return len(await asyncio.to_thread(engine.tokenize, reply["content"])) if reply else 0


class ReplyTurn:
    """A reply in progress. Whoever holds it iterates :meth:`events` to the end or calls
    :meth:`close` (the API does both), so the reply is settled and the conversation freed."""

    def __init__(self, deps: TurnDeps, spec: TurnSpec):
        self.deps, self.spec = deps, spec
        self.writer: Optional[ReplyWriter] = None
        self.new_rows: list[int] = []
        self.planned: Optional[Planned] = None
        self.summary: Optional[SummaryRun] = None
        self.generation: Optional[Generation] = None
        self.repairer: Optional[FenceRepairer] = FenceRepairer()
        self.reply_tokens = 0  # tokens of the continued reply's stored text
        self._raw: list[str] = []  # the engine's text before fence repair (the loop guard counts in it)
        self.stopped = False
        self.final: Optional[dict[str, Any]] = None  # the stored reply once settled
        self._settled: Optional[asyncio.Future[None]] = None
        self._stored = asyncio.Event()  # set once the final row is written (or its write failed)

    @property
    def conversation_id(self) -> str:
        return self.spec.conversation_id

    @property
    def message_id(self) -> int:
        assert self.writer is not None
        return self.writer.message_id

    @property
    def budget(self) -> dict[str, Any]:
        assert self.planned is not None
        return self.planned.plan.report

    # ---- admission -----------------------------------------------------------------------------
    async def admit(self, planned: Planned) -> None:
        """Submit the summary request when one is due (and the engine takes it), else the reply
        (unless the turn has work to prepare first: the reply is then submitted after it)."""
        self.planned = planned
        if self.spec.prepare is not None:
            return
        if planned.plan.summarize is not None and not self._refused:
            run = SummaryRun(self.deps.engine, planned)
            if await run.begin():
                self.summary = run
                if self.stopped:
                    run.cancel()
                return
        await self._submit(planned.plan)

    @property
    def _refused(self) -> bool:
        """The retrieval gate answered this turn: no model call, so no summary is waited for."""
        return getattr(self.spec.grounding, "refusal", None) is not None

    async def _submit(self, plan: BudgetPlan) -> None:
        assert self.planned is not None
        self.planned.plan = plan
        reply = self.spec.continues
        messages = plan.messages if reply is None else [*plan.messages, ChatMessage(role="assistant", content=reply["content"])]
        max_tokens = plan.max_tokens if reply is None else max(1, min(self.spec.sampling.max_tokens, plan.max_tokens - self.reply_tokens))
        sampling = replace(self.spec.sampling, max_tokens=max_tokens)
        request = GenerationRequest(messages=messages, sampling=sampling, affinity_key=self.conversation_id, continue_last=reply is not None)
        self.generation = await submit_answer(self.deps.engine, request, self.spec.grounding)
        if self.stopped:
            self.generation.cancel()

    def cancel(self) -> None:
        """Stop the summary or the reply; :meth:`events` then ends with ``finish_reason: "cancelled"``."""
        self.stopped = True
        if self.summary is not None:
            self.summary.cancel()
        if self.generation is not None:
            self.generation.cancel()

    # ---- the stream ------------------------------------------------------------------------------
    def start_event(self) -> dict[str, Any]:
        return {"start": True, "user_message_id": self.spec.user_message_id, "message_id": self.message_id}

    async def events(self, track: Optional[Track] = None) -> AsyncIterator[dict[str, Any]]:
        """``start``, ``status``?, ``token``…, then ``done`` (or ``error``), storing as it goes."""
        try:
            yield self.start_event()
            if self.summary is not None:
                yield {"status": "summarizing"}
                plan = await self.deps.summaries.finish(self.conversation_id, self.planned, self.summary)  # type: ignore[arg-type]
                await self._submit(plan)
            if self.spec.prepare is not None:
                async for event in self.spec.prepare(self):
                    yield event
                s = self.spec
                await self._submit((await self.deps.summaries.plan(s.conversation_id, s.system, s.past, s.prompt or s.question, s.sampling.max_tokens, s.prefix)).plan)
            assert self.generation is not None
            async for text in self._sent(track(self.generation) if track else self.generation):
                yield {"token": text}
            result = self._result()
            if result.finish_reason == "error":
                yield await self._fail(EngineError(result.error or "Generation failed."), result)
                return
            kept = self._kept_length(result)
            await self._settle("incomplete" if result.finish_reason == "cancelled" else "complete", result)
            yield {**self._done(result), **({"text_length": kept} if kept is not None else {})}
        except XiaoQError as e:  # the reply refused after the summary (busy, too long)
            yield await self._fail(e, None)
        except Exception as exc:  # a store or repairer failure: say so on the stream, keep the text
            log.exception("conversation %s: reply stream failed", self.conversation_id)
            yield await self._fail(EngineError("Generation failed unexpectedly."), None, f"reply failed: {type(exc).__name__}")
        finally:  # left early (disconnect, shutdown) or ended: the engine stops, the reply is settled
            self.cancel()
            await self._settle("incomplete", self._result())

    async def _sent(self, pieces: AsyncIterator[str]) -> AsyncIterator[str]:
        """Repaired text; each piece is stored after the consumer took it (the code after ``yield``
        runs when the next event is requested), so the stored text never runs ahead of the sent."""
        async for piece in _stall_saving(pieces, self._writer()):
            self._raw.append(piece)
            out = self.repairer.feed(piece) if self.repairer else piece
            if out:
                yield out
                await self._keep(out)
        rest = self.repairer.flush() if self.repairer else ""
        if rest:
            yield rest
            await self._keep(rest)

    def _kept_length(self, result: GenerationResult) -> Optional[int]:
        """When the loop guard ended the reply: cut the stored text to what it keeps and return that
        length in characters of the text sent (which went through fence repair)."""
        if result.text_length is None:
            return None
        kept = "".join(self._raw)[: result.text_length]
        if self.repairer is not None:
            repairer = FenceRepairer()
            kept = repairer.feed(kept) + repairer.flush()
        base = len(self.spec.continues["content"]) if self.spec.continues else 0
        sent = self._writer().text[base:]
        n = 0
        while n < min(len(kept), len(sent)) and kept[n] == sent[n]:
            n += 1
        self._writer().cut(base + n)
        return n

    async def _keep(self, text: str) -> None:
        if self._settled is None:  # after a shutdown settled the reply, later text is not stored
            await self._writer().aappend(text)

    def _writer(self) -> ReplyWriter:
        assert self.writer is not None
        return self.writer

    def _result(self) -> GenerationResult:
        gen = self.generation
        if gen is not None and gen.result is not None:
            return gen.result
        return GenerationResult("cancelled", Usage(prompt_tokens=gen.prompt_tokens if gen else 0), Timings())

    def _done(self, result: GenerationResult) -> dict[str, Any]:
        return {
            "done": True,
            "message_id": self.message_id,
            "finish_reason": result.finish_reason,
            "usage": result.usage.to_openai(),
            "timings": result.timings.to_dict(result.usage.completion_tokens),
            "budget": self.budget,
            **self._grounding(event=True),
        }

    def _grounding(self, event: bool) -> dict[str, Any]:
        """``citations`` (and what was retrieved) of a knowledge-base answer, for the done event
        (``retrieved``) or the stored message (``retrieval``)."""
        g = self.spec.grounding
        return g.fields("retrieved" if event else "retrieval") if g is not None else {}

    async def _fail(self, error: XiaoQError, result: Optional[GenerationResult], stored: Optional[str] = None) -> dict[str, Any]:
        await self._settle("error", result, error=stored or error.message)
        return {**error.to_dict(), "message_id": self.message_id}

    # ---- settling: the one final write -----------------------------------------------------------
    async def _settle(self, status: str, result: Optional[GenerationResult], error: Optional[str] = None) -> None:
        """Write the final state once (later calls wait for the first). The write runs in its own
        task, so cancelling the caller (a disconnect, shutdown) never cancels the write itself."""
        if self._settled is None:
            fields = self._fields(status, result, error)
            self._settled = asyncio.ensure_future(asyncio.to_thread(self._write_final, status, fields))
            self._settled.add_done_callback(self._on_stored)
        await asyncio.shield(self._settled)

    def _on_stored(self, _: "asyncio.Future[None]") -> None:
        self._stored.set()
        self.deps.release(self)

    async def wait_stored(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until the stream has settled the reply, without settling it
        here: the stream's own ending writes what it sent. Why: Stop answers once the stopped reply
        is stored, so a reload right after Stop shows the whole partial, not the last periodic save."""
        try:
            await asyncio.wait_for(self._stored.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def _fields(self, status: str, result: Optional[GenerationResult], error: Optional[str]) -> dict[str, Any]:
        fields: dict[str, Any] = {"budget": self.budget, "finish_reason": "error" if error else self._result().finish_reason, **self._grounding(event=False)}
        if error is not None:
            fields["error"] = error
        if result is not None:
            earlier = (self.spec.continues or {}).get("completion_tokens") or 0
            fields.update(
                prompt_tokens=result.usage.prompt_tokens,
                completion_tokens=earlier + result.usage.completion_tokens,
                cached_tokens=result.usage.cached_tokens,
                timings=result.timings.to_dict(result.usage.completion_tokens),
            )
        elif self.generation is not None:
            fields["prompt_tokens"] = self.generation.prompt_tokens
        return fields

    def _write_final(self, status: str, fields: dict[str, Any]) -> None:
        writer = self._writer()
        try:
            if self.spec.continues and status != "complete":
                writer.revert(self.spec.continues)
            elif self.spec.replaces and status != "complete":
                writer.discard(self.conversation_id, self.new_rows)
            else:
                self.final = writer.finish(status, replaces=self.spec.replaces, **fields)
        except NotFound:  # the conversation was deleted while it streamed
            pass
        except Exception:
            log.exception("conversation %s: storing the reply failed", self.conversation_id)

    def close(self) -> None:
        """Synchronous end hook (``EventStream.on_close``): cancel, and settle in the background
        when :meth:`events` never ran."""
        self.cancel()
        if self._settled is None:
            try:
                asyncio.get_running_loop().create_task(self._settle("incomplete", self._result()))
            except RuntimeError:  # no loop (interpreter shutdown): the last periodic save stands
                self.deps.release(self)

    async def wait_settled(self) -> None:
        """Server shutdown: settle now (``incomplete``) unless the stream already did."""
        self.cancel()
        await self._settle("incomplete", self._result())


async def _stall_saving(pieces: AsyncIterator[str], writer: ReplyWriter) -> AsyncIterator[str]:
    """``pieces`` as they come; while none comes for the writer's interval (another user's long
    prefill, a summary elsewhere), save the text already sent, so a crash loses at most one interval
    of what the user saw. The pending read is kept across waits, never cancelled mid-piece."""
    source = pieces.__aiter__()
    pending: Optional[asyncio.Future[str]] = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(source.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=writer.interval)
            if not done:
                await writer.asave_if_due()
                continue
            try:
                piece = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield piece
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
