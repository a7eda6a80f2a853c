"""The conversation service: one turn of a stored conversation, from the user's words to the stored
reply.

Why a service between the API and the engine: the HTTP routes, ``/chat`` with a
``conversation_id`` and the terminal chat all need the same sequence, and its order is what makes
conversations durable and fast:

1. refuse a second running reply in the same conversation (409), then commit the user message
   BEFORE anything is generated (a crash never loses what the user typed);
2. build the prompt that fits (``chat/budget.py``): system prompt, stored summary of earlier turns,
   as many recent whole turns as fit, the new message, room for ``max_tokens``; when turns drop out
   of the window the model writes a new summary first (a low-priority greedy request) and it is
   stored for later turns. The budget trims in chunks, so the token prefix stays identical for
   several turns and the engine's KV cache (slots, RAM, disk) serves it;
3. submit the reply (so ``Busy`` / ``ContextLengthExceeded`` surface before any streaming);
4. stream the pieces through the code-fence repairer; a :class:`~xiaoq.store.ReplyWriter` saves the
   reply ``incomplete`` at least every second, ``complete`` at the end, ``incomplete`` with what was
   sent on stop / disconnect / shutdown, ``error`` on an engine failure; usage, timings and what the
   budget did are recorded on the message.

Events are plain dicts in the wire shapes of ``docs/api.md`` (``start``, ``token``, ``done``,
``error``); the API only frames them as SSE. The store is synchronous, so every call goes through
``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from dataclasses import dataclass
from typing import Any, AsyncIterator, Optional

import anyio

from xiaoq.chat.budget import BudgetPlan, Turn, plan_context, turns_covered
from xiaoq.chat.fences import FenceRepairer
from xiaoq.chat.memory import model_part, notes_block, self_statements, trim_loops
from xiaoq.chat.summary import clean_summary, conversation_language, summary_messages
from xiaoq.chat.titles import heuristic_title
from xiaoq.config import Settings
from xiaoq.engine.types import Engine, Generation, GenerationRequest, GenerationResult, SamplingParams, Timings, Usage
from xiaoq.errors import EngineError, InvalidRequest, NotFound, XiaoQError
from xiaoq.chat.token_counts import counted_turns
from xiaoq.store import ReplyWriter, Store

log = logging.getLogger("xiaoq.chat")

#: Characters of each assistant reply shown to the summarizer (see :func:`for_summary`).
SUMMARY_REPLY_CHARS = 200
#: Greedy decoding of a 0.5B model falls into loops ("坚固的防御武器、坚固的防御路线、…"); a mild
#: repeat penalty keeps the summary moving on to the next fact.
SUMMARY_REPEAT_PENALTY = 1.15


def for_summary(turn: Turn) -> Turn:
    """A dropped turn as the summarizer sees it: the user's words whole, the reply's beginning.

    What must survive a summary is mostly what the USER said (names, facts, wishes); a small
    model given a 600-character essay per reply summarizes the essays and drops the user's
    one-line facts. The reply's head keeps what it was about."""
    reply = turn.assistant
    if len(reply) > SUMMARY_REPLY_CHARS:
        reply = reply[:SUMMARY_REPLY_CHARS].rstrip() + "…"
    return Turn(user=turn.user, assistant=reply, id=turn.id)


class ConversationBusy(XiaoQError):
    """A reply is already being generated in this conversation (409): one at a time, so turns never
    interleave. Stop it first (``POST /api/conversations/{id}/stop``) or wait for it to end."""

    status = 409
    type = "invalid_request_error"
    code = "conversation_busy"


@dataclass
class SamplingOverrides:
    """Per-request sampling (None: the conversation's settings, else the server's defaults)."""

    temperature: Optional[float] = None
    top_p: Optional[float] = None
    max_tokens: Optional[int] = None
    seed: Optional[int] = None
    stop: Optional[list[str]] = None


class _Running:
    """The registry entry of a conversation with a reply in progress (set before any await, so
    two concurrent sends cannot both pass the check)."""

    def __init__(self) -> None:
        self.generation: Optional[Generation] = None
        self.turn: Optional["ReplyTurn"] = None
        self.stopped = False

    def cancel(self) -> None:
        self.stopped = True
        if self.generation is not None:
            self.generation.cancel()


class ReplyTurn:
    """A submitted reply: its ids, the running :class:`Generation`, and :meth:`events`.

    Whoever holds it must either iterate :meth:`events` to the end or call :meth:`close`
    (the API does both: ``EventStream(..., on_close=turn.close)``), so the stored reply is
    finalized and the conversation is free again.
    """

    def __init__(
        self,
        service: "ConversationService",
        conversation_id: str,
        user_message_id: int,
        message_id: int,
        generation: Generation,
        writer: ReplyWriter,
        budget: dict[str, Any],
    ):
        self.service = service
        self.conversation_id = conversation_id
        self.user_message_id = user_message_id
        self.message_id = message_id
        self.generation = generation
        self.writer = writer
        self.budget = budget
        self.repairer = FenceRepairer()
        self.finalized = False
        self.final: Optional[dict[str, Any]] = None  # the stored reply once finalized
        self._finalizing: Optional[asyncio.Task[None]] = None
        # Serializes the ticker's saves with the final write (a late "incomplete" save must never
        # overwrite the final row).
        self._io = threading.Lock()
        self._final_written = False
        self._ticked_len = 0

    def start_event(self) -> dict[str, Any]:
        return {"start": True, "user_message_id": self.user_message_id, "message_id": self.message_id}

    def cancel(self) -> None:
        """Stop generating; :meth:`events` then ends with ``finish_reason: "cancelled"``."""
        self.generation.cancel()

    async def events(self, pieces: Optional[AsyncIterator[str]] = None) -> AsyncIterator[dict[str, Any]]:
        """``start``, ``token``…, then ``done`` (or ``error``), storing the reply as it goes.

        ``pieces`` lets the API pass the generation wrapped in its metrics tracking (default: the
        generation itself). A token is recorded in the store only after the consumer took it
        (the code after ``yield`` runs when the next event is requested, i.e. after the previous
        one was written to the socket), so the stored text never runs ahead of what was sent.
        """
        source = pieces if pieces is not None else self.generation
        ticker = asyncio.get_running_loop().create_task(self._tick())
        try:
            yield self.start_event()
            async for piece in source:
                out = self.repairer.feed(piece)
                if out:
                    yield {"token": out}
                    await self.writer.aappend(out)
            rest = self.repairer.flush()
            if rest:
                yield {"token": rest}
                await self.writer.aappend(rest)
            result = self.generation.result or _cancelled_result(self.generation)
            if result.finish_reason == "error":
                message = result.error or "Generation failed."
                await self._finalize("error", result, error=message)
                yield {**EngineError(message).to_dict(), "message_id": self.message_id}
                return
            status = "incomplete" if result.finish_reason == "cancelled" else "complete"
            await self._finalize(status, result)
            yield {
                "done": True,
                "message_id": self.message_id,
                "finish_reason": result.finish_reason,
                "usage": result.usage.to_openai(),
                "timings": result.timings.to_dict(result.usage.completion_tokens),
                "budget": self.budget,
            }
        except Exception as exc:  # a store or repairer failure: say so on the stream, keep the text
            log.exception("conversation %s: reply stream failed", self.conversation_id)
            if not self.finalized:
                await self._finalize("error", None, error=f"reply failed: {type(exc).__name__}")
            yield {**EngineError("Generation failed unexpectedly.").to_dict(), "message_id": self.message_id}
        finally:
            # Left early (client disconnect, server shutdown) or ended: the engine stops and the
            # reply keeps what was sent, as ``incomplete``.
            ticker.cancel()
            self.generation.cancel()
            if not self.finalized:
                await self._finalize("incomplete", self.generation.result)

    def close(self) -> None:
        """Synchronous end hook (``EventStream.on_close``): cancel, and finalize in the background
        when :meth:`events` never ran or could not finish its own ``finally``."""
        self.generation.cancel()
        if not self.finalized and self._finalizing is None:
            try:
                self._finalizing = asyncio.get_running_loop().create_task(self._finalize("incomplete", self.generation.result))
            except RuntimeError:  # no loop (interpreter shutdown): the last periodic save stands
                self.service._release(self.conversation_id, self)

    async def _finalize(self, status: str, result: Optional[GenerationResult], error: Optional[str] = None) -> None:
        if self.finalized:
            return
        self.finalized = True
        fields: dict[str, Any] = {"budget": self.budget}
        if error is not None:
            fields["error"] = error
        if result is not None:
            fields.update(
                prompt_tokens=result.usage.prompt_tokens,
                completion_tokens=result.usage.completion_tokens,
                cached_tokens=result.usage.cached_tokens,
                timings=result.timings.to_dict(result.usage.completion_tokens),
            )
        else:
            fields["prompt_tokens"] = self.generation.prompt_tokens
        # The write runs in a worker thread and is shielded: a disconnect or shutdown cancels the
        # task that awaits it, but must never cancel the write itself (the executor job would be
        # dropped before it started, leaving the reply empty).
        future = asyncio.get_running_loop().run_in_executor(None, functools.partial(self._write_final, status, fields))
        try:
            with anyio.CancelScope(shield=True):
                await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(lambda _: self._done())
            raise
        self._done()

    def _write_final(self, status: str, fields: dict[str, Any]) -> None:
        with self._io:
            self._final_written = True
            try:
                self.final = self.writer.finish(status, **fields)
            except NotFound:  # the conversation was deleted while it streamed
                pass
            except Exception:
                log.exception("conversation %s: storing the reply failed", self.conversation_id)

    async def _tick(self) -> None:
        """Save text that was sent but not yet stored when no new piece comes to trigger the
        save (a stall: another user's long prefill, a slow client), so a crash still loses at
        most one interval of what the user saw."""
        writer = self.writer
        while True:
            await asyncio.sleep(writer.interval)
            if writer.due:
                text = writer.text
                if len(text) != self._ticked_len:
                    self._ticked_len = len(text)
                    await asyncio.to_thread(self._tick_write, text)

    def _tick_write(self, text: str) -> None:
        with self._io:
            if not self._final_written:
                try:
                    self.writer.store.update_message(self.message_id, content=text, status="incomplete", touch=False)
                except NotFound:
                    pass

    def _done(self) -> None:
        self.service._release(self.conversation_id, self)


def _cancelled_result(generation: Generation) -> GenerationResult:
    return GenerationResult("cancelled", Usage(prompt_tokens=generation.prompt_tokens), Timings())


class ConversationService:
    """Stored conversations over one engine. Create once per app; :meth:`close` at shutdown."""

    def __init__(self, store: Store, engine: Engine, settings: Settings):
        self.store = store
        self.engine = engine
        self.settings = settings
        self._running: dict[str, _Running] = {}

    # ---- plain storage (async wrappers so routes never block the loop) -----------------------
    async def _db(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def list(self, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        return await self._db(self.store.list_conversations, limit, offset)

    async def create(self, title: Optional[str] = None, system_prompt: Optional[str] = None, settings: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        return await self._db(self.store.create_conversation, title or "", system_prompt, settings)

    async def get(self, conversation_id: str, messages: bool = True) -> dict[str, Any]:
        return await self._db(self.store.get_conversation, conversation_id, messages=messages)

    async def update(self, conversation_id: str, **fields: Any) -> dict[str, Any]:
        return await self._db(self.store.update_conversation, conversation_id, **fields)

    async def delete(self, conversation_id: str) -> None:
        self.stop(conversation_id)
        await self._db(self.store.delete_conversation, conversation_id)

    async def export(self, conversation_id: str, fmt: str) -> Any:
        if fmt == "json":
            return await self._db(self.store.export_json, conversation_id)
        if fmt == "md":
            return await self._db(self.store.export_markdown, conversation_id)
        raise InvalidRequest(f"format must be 'md' or 'json', not {fmt!r}", code="invalid_format")

    async def search(self, q: str, limit: int = 20) -> list[dict[str, Any]]:
        return await self._db(self.store.search, q, limit)

    async def suggestions(self, q: str, limit: int = 8) -> list[str]:
        return await self._db(self.store.suggestions, q, limit)

    def is_running(self, conversation_id: str) -> bool:
        return conversation_id in self._running

    # ---- turns ---------------------------------------------------------------------------------
    async def send(self, conversation_id: str, content: str, overrides: Optional[SamplingOverrides] = None) -> ReplyTurn:
        """Commit ``content`` as the next user message and start the reply."""
        _check_content(content)
        running = self._claim(conversation_id)
        user: Optional[dict[str, Any]] = None
        try:
            conv = await self.get(conversation_id, messages=False)
            user = await self._db(self.store.add_message, conversation_id, "user", content)
            if not conv["title"]:
                conv = await self._db(self.store.update_conversation, conversation_id, title=heuristic_title(content))
            return await self._answer(conv, running, overrides)
        except BaseException:
            self._release(conversation_id, running)
            if user is not None:  # nothing was generated: a retry must not store the question twice
                await _quietly(self._db(self.store.delete_message, user["id"]))
            raise

    async def regenerate(self, conversation_id: str, overrides: Optional[SamplingOverrides] = None) -> ReplyTurn:
        """Answer the last user message again, replacing the reply after it (if any)."""
        running = self._claim(conversation_id)
        try:
            conv = await self.get(conversation_id, messages=False)
            last_user = await self._db(self.store.last_message, conversation_id, "user")
            if last_user is None:
                raise InvalidRequest("This conversation has no user message to answer again.", code="nothing_to_regenerate")
            await self._db(self.store.delete_messages_after, conversation_id, last_user["id"])
            return await self._answer(conv, running, overrides)
        except BaseException:
            self._release(conversation_id, running)
            raise

    async def edit(self, conversation_id: str, message_id: int, content: str, overrides: Optional[SamplingOverrides] = None) -> ReplyTurn:
        """Give user message ``message_id`` new content, delete everything after it, answer again.

        Idempotent, so a client may simply retry it after a 503."""
        _check_content(content)
        running = self._claim(conversation_id)
        try:
            conv = await self.get(conversation_id, messages=False)
            msg = await self._db(self.store.get_message, message_id)
            if msg["conversation_id"] != conversation_id:
                raise NotFound(f"No message {message_id} in conversation {conversation_id!r}")
            if msg["role"] != "user":
                raise InvalidRequest("Only user messages can be edited.", code="not_a_user_message")
            await self._db(self.store.delete_messages_after, conversation_id, message_id)
            await self._db(self.store.update_message, message_id, content=content)
            return await self._answer(conv, running, overrides)
        except BaseException:
            self._release(conversation_id, running)
            raise

    def stop(self, conversation_id: str) -> bool:
        """Cancel the reply being generated in this conversation; False when none runs."""
        running = self._running.get(conversation_id)
        if running is None:
            return False
        running.cancel()
        return True

    async def close(self) -> None:
        """Server shutdown: stop every running reply and store each as ``incomplete``."""
        turns = [r.turn for r in self._running.values() if r.turn is not None]
        for r in list(self._running.values()):
            r.cancel()
        for turn in turns:
            if not turn.finalized:
                await turn._finalize("incomplete", turn.generation.result)

    # ---- internals -------------------------------------------------------------------------------
    def _claim(self, conversation_id: str) -> _Running:
        if conversation_id in self._running:
            raise ConversationBusy("A reply is already being generated in this conversation; stop it or wait for it to finish.")
        running = _Running()
        self._running[conversation_id] = running
        return running

    def _release(self, conversation_id: str, owner: object) -> None:
        running = self._running.get(conversation_id)
        if running is not None and (running is owner or running.turn is owner):
            del self._running[conversation_id]

    def sampling(self, conv: dict[str, Any], overrides: Optional[SamplingOverrides]) -> SamplingParams:
        """Request overrides, else the conversation's settings, else the server's; max_tokens capped."""
        o = overrides or SamplingOverrides()
        cs = conv.get("settings") or {}
        s = self.settings

        def pick(name: str, default: Any) -> Any:
            v = getattr(o, name)
            if v is None:
                v = cs.get(name)
            return default if v is None else v

        max_tokens = int(pick("max_tokens", s.default_max_tokens))
        return SamplingParams(
            temperature=float(pick("temperature", s.temperature)),
            top_p=float(pick("top_p", s.top_p)),
            max_tokens=max(1, min(max_tokens, s.max_tokens)),
            seed=pick("seed", s.seed),
            stop=list(o.stop or []),
        )

    def system_prompt(self, conv: dict[str, Any]) -> str:
        sp = conv.get("system_prompt")
        return self.settings.system_prompt if sp is None else sp

    async def _answer(self, conv: dict[str, Any], running: _Running, overrides: Optional[SamplingOverrides]) -> ReplyTurn:
        """Plan the prompt (summarizing when needed), submit, create the reply row."""
        cid = conv["id"]
        sampling = self.sampling(conv, overrides)
        stored = await self._db(self.store.get_messages, cid)
        user = stored[-1]
        assert user["role"] == "user", "a turn answers the conversation's last (user) message"
        plan = await self._plan(conv, running, stored[:-1], user["content"], sampling.max_tokens)
        sampling.max_tokens = plan.max_tokens
        generation = await self.engine.submit(GenerationRequest(messages=plan.messages, sampling=sampling))  # Busy etc. before streaming
        running.generation = generation
        if running.stopped:
            generation.cancel()
        try:
            reply = await self._db(self.store.add_message, cid, "assistant", "", "incomplete", budget=plan.report)
        except BaseException:
            generation.cancel()
            raise
        turn = ReplyTurn(self, cid, user["id"], reply["id"], generation, ReplyWriter(self.store, reply["id"]), plan.report)
        running.turn = turn
        return turn

    async def _plan(self, conv: dict[str, Any], running: _Running, past: list[dict[str, Any]], new_message: str, max_tokens: int) -> BudgetPlan:
        """The prompt that fits (``chat/budget.py``); when more turns dropped out than the stored
        summary covers, the model writes a new summary first, which is stored and used."""
        cid = conv["id"]
        turns = await counted_turns(self.store, self.engine, cid, past)
        stored = await self._db(self.store.get_summary, cid)
        summary = stored["summary"] if stored else None
        covered = turns_covered(turns, stored["upto_message_id"]) if stored else 0
        options = dict(system=self.system_prompt(conv), turns=turns, new_message=new_message, n_ctx=self.engine.n_ctx,
                       max_tokens=max_tokens, count=self.engine.count_prompt_tokens, max_turns=self.settings_max_turns())
        # Counting renders and tokenizes: a worker thread, so other streams keep flowing.
        plan = await asyncio.to_thread(functools.partial(plan_context, **options, summary=summary, summary_turns=covered))
        job = plan.summarize
        if job is None:
            return plan
        # What the user said about themselves in every dropped turn is kept verbatim at the head
        # of the summary (chat/memory.py: a 0.5B model's summary loses it); the model summarizes
        # the newly dropped turns on top of its previous summary, in the room that is left.
        language = conversation_language([t.user for t in turns])
        notes = notes_block(self_statements([t.user for t in turns[: job.end]], language), language)
        room = max(32, job.max_tokens - (len(await asyncio.to_thread(self.engine.tokenize, notes)) if notes else 0))
        previous = model_part(summary) if summary and job.start > 0 else None
        dropped = [for_summary(t) for t in turns[job.start : job.end]]
        written = trim_loops(await self._summarize(running, previous, dropped, room))
        if not written:  # could not write one (busy, stopped, failed): answer from the plan as it is
            return plan
        text = notes + written
        await self._db(self.store.set_summary, cid, text, job.upto_id, len(await asyncio.to_thread(self.engine.tokenize, text)))
        return await asyncio.to_thread(functools.partial(plan_context, **options, summary=text, summary_turns=job.end))

    async def _summarize(self, running: _Running, previous: Optional[str], turns: list[Turn], max_tokens: int) -> str:
        """The model's summary of ``previous`` + ``turns``: greedy, short, low priority (a summary
        waits behind other users' answers rather than delaying them).

        When the turns do not fit one request even shortened, they are summarized in order in
        two halves, the first half's summary becoming the ``previous`` of the second (a rolling
        summary), so a long stretch of dropped turns never makes the summary impossible."""
        count, budget = self.engine.count_prompt_tokens, self.engine.n_ctx - max_tokens
        messages = await asyncio.to_thread(functools.partial(summary_messages, previous, turns, max_tokens=max_tokens, count=count, budget=budget))
        if await self.engine.acount_prompt_tokens(messages) > budget:
            if len(turns) < 2:
                log.warning("summary not written: one turn does not fit a summary request")
                return ""
            half = len(turns) // 2
            first = await self._summarize(running, previous, turns[:half], max_tokens)
            return await self._summarize(running, first, turns[half:], max_tokens) if first else ""
        # Greedy decoding of a 0.5B model loops easily ("…的防御、…的防御、…"); a mild repeat
        # penalty would keep the summary moving on to the next fact (see SUMMARY_REPEAT_PENALTY).
        sampling = SamplingParams(temperature=0.0, max_tokens=max_tokens, repeat_penalty=SUMMARY_REPEAT_PENALTY)
        request = GenerationRequest(messages=messages, sampling=sampling, priority=-1)
        try:
            generation = await self.engine.submit(request)
        except XiaoQError as e:
            log.warning("summary not written: %s", e.message)
            return ""
        running.generation = generation
        if running.stopped:
            generation.cancel()
        try:
            text = await generation.text()
        finally:
            generation.cancel()
            running.generation = None
        result = generation.result
        if result is None or result.finish_reason not in ("stop", "length"):
            return ""
        return clean_summary(text)

    def settings_max_turns(self) -> int:
        """Turns kept verbatim at most (0: as many as fit)."""
        return self.settings.history_max_turns


def _check_content(content: str) -> None:
    if not isinstance(content, str) or not content.strip():
        raise InvalidRequest("content must not be empty", code="empty_content", param="content")


async def _quietly(aw: Any) -> None:
    try:
        await aw
    except Exception:
        log.exception("cleanup failed")
