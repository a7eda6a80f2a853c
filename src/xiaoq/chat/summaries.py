"""The prompt that fits, and the summary written when turns drop out of it.

:meth:`Summaries.plan` runs the budget (``chat/budget.py``) over the stored turns and summary. When
more turns dropped out than the stored summary covers, the plan asks for a new summary: a
:class:`SummaryRun` writes it with the model (greedy, low priority: it waits behind other users'
answers rather than delaying them) and :meth:`Summaries.finish` waits for it at most
``settings.summary_timeout`` seconds. A summary that is late, refused (busy) or cancelled is
dropped and the turn answers from the trimmed plan, which is always usable as it is: a summary
makes a long conversation better, it must never make a turn hang.

What the user said about themselves in the dropped turns is kept verbatim at the head of the
summary (``chat/memory.py``: a 0.5B model's summary loses it); the model summarizes the newly
dropped turns on top of its previous summary, in the room that is left.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from xiaoq.chat.budget import BudgetPlan, SummaryJob, Turn, plan_context, turns_covered
from xiaoq.chat.memory import model_part, notes_block, self_statements
from xiaoq.chat.summary import clean_summary, conversation_language, summary_messages
from xiaoq.chat.token_counts import counted_turns
from xiaoq.config import Settings
from xiaoq.engine.loops import trim_loops
from xiaoq.engine.types import ChatMessage, Engine, Generation, GenerationRequest, SamplingParams
from xiaoq.errors import XiaoQError
from xiaoq.store import Store

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


@dataclass
class Planned:
    """A first plan and what re-planning with a new summary needs."""

    plan: BudgetPlan
    options: dict[str, Any]
    turns: list[Turn]
    summary: Optional[str]


class SummaryRun:
    """Writing one summary with the model; :meth:`cancel` stops whichever request is running.
    Counting and tokenizing run in worker threads, so other streams keep flowing."""

    def __init__(self, engine: Engine, planned: Planned):
        job = planned.plan.summarize
        assert job is not None
        self.engine, self.job = engine, job
        turns = planned.turns
        language = conversation_language([t.user for t in turns])
        self.notes = notes_block(self_statements([t.user for t in turns[: job.end]], language), language)
        self.room = job.max_tokens
        self.previous = model_part(planned.summary) if planned.summary and job.start > 0 else None
        self.dropped = [for_summary(t) for t in turns[job.start : job.end]]
        self.generation: Optional[Generation] = None  # the request running now
        self._admitted: Optional[Generation] = None  # submitted by begin(), used by the first request
        self.stopped = False

    async def begin(self) -> bool:
        """Submit the request now when the dropped turns fit one, so a full server is known before
        the response starts. False when the engine refused it (the turn goes on without)."""
        if self.notes:
            self.room = max(32, self.job.max_tokens - len(await asyncio.to_thread(self.engine.tokenize, self.notes)))
        messages = await self._messages(self.previous, self.dropped)
        if messages is None:
            return True  # halves, submitted one after the other by text()
        try:
            self._admitted = self.generation = await self._submit(messages)
        except XiaoQError as e:
            log.warning("summary not written: %s", e.message)
            return False
        return True

    async def text(self) -> str:
        """The summary to store (the user's statements, then the model's prose), or ""."""
        written = trim_loops(await self._summarize(self.previous, self.dropped))
        return self.notes + written if written else ""

    def cancel(self) -> None:
        self.stopped = True
        if self.generation is not None:
            self.generation.cancel()

    async def _messages(self, previous: Optional[str], turns: list[Turn]) -> Optional[list[ChatMessage]]:
        count, budget = self.engine.count_prompt_tokens, self.engine.n_ctx - self.room
        build = functools.partial(summary_messages, previous, turns, max_tokens=self.room, count=count, budget=budget)
        messages = await asyncio.to_thread(build)
        return messages if await self.engine.acount_prompt_tokens(messages) <= budget else None

    async def _submit(self, messages: list[ChatMessage]) -> Generation:
        sampling = SamplingParams(temperature=0.0, max_tokens=self.room, repeat_penalty=SUMMARY_REPEAT_PENALTY)
        return await self.engine.submit(GenerationRequest(messages=messages, sampling=sampling, priority=-1))

    async def _summarize(self, previous: Optional[str], turns: list[Turn]) -> str:
        """Summarize ``previous`` + ``turns``; turns too long for one request are summarized in two
        halves in order, the first half's summary becoming the second's ``previous`` (a rolling
        summary), so a long stretch of dropped turns never makes the summary impossible."""
        messages = await self._messages(previous, turns)
        if messages is None:
            if len(turns) < 2:
                log.warning("summary not written: one turn does not fit a summary request")
                return ""
            half = len(turns) // 2
            first = await self._summarize(previous, turns[:half])
            return await self._summarize(first, turns[half:]) if first else ""
        return await self._generate(messages)

    async def _generate(self, messages: list[ChatMessage]) -> str:
        if self.stopped:
            return ""
        generation, self._admitted = self._admitted, None
        if generation is None:
            try:
                generation = await self._submit(messages)
            except XiaoQError as e:
                log.warning("summary not written: %s", e.message)
                return ""
        self.generation = generation
        try:
            text = await generation.text()
        finally:
            generation.cancel()
        result = generation.result
        return clean_summary(text) if result is not None and result.finish_reason in ("stop", "length") else ""


class Summaries:
    """Plans prompts for one store and engine, and writes the summaries they ask for."""

    def __init__(self, store: Store, engine: Engine, settings: Settings):
        self.store, self.engine, self.settings = store, engine, settings

    async def plan(self, conversation_id: str, system: str, past: list[dict[str, Any]], question: str, max_tokens: int, prefix: Sequence[ChatMessage] = ()) -> Planned:
        """The prompt that fits, with the stored summary (``plan.summarize`` set when a new one is due);
        ``prefix``: messages between the system message and the rest (``budget.plan_context``)."""
        turns = await counted_turns(self.store, self.engine, conversation_id, past)
        stored = await asyncio.to_thread(self.store.get_summary, conversation_id)
        if stored and (not past or (stored["upto_message_id"] or 0) > past[-1]["id"]):
            stored = None  # it summarizes messages this turn replaces (an edit of an earlier question)
        summary = stored["summary"] if stored else None
        covered = turns_covered(turns, stored["upto_message_id"]) if stored else 0
        options = dict(system=system, turns=turns, new_message=question, n_ctx=self.engine.n_ctx, max_tokens=max_tokens,
                       count=self.engine.count_prompt_tokens, max_turns=self.settings.history_max_turns, prefix=list(prefix))
        # Counting renders and tokenizes: a worker thread, so other streams keep flowing.
        plan = await asyncio.to_thread(functools.partial(plan_context, **options, summary=summary, summary_turns=covered))
        return Planned(plan, options, turns, summary)

    async def finish(self, conversation_id: str, planned: Planned, run: SummaryRun) -> BudgetPlan:
        """Wait for the summary (at most ``summary_timeout`` s), store it and plan with it; without
        one in time, the trimmed plan. Cancelling the caller cancels the model's request."""
        job: SummaryJob = run.job
        try:
            written = await asyncio.wait_for(run.text(), timeout=self.settings.summary_timeout)
        except asyncio.TimeoutError:
            log.warning("summary not written within %.1f s: answering from the trimmed history", self.settings.summary_timeout)
            written = ""
        finally:
            run.cancel()
        if not written:
            return planned.plan
        tokens = len(await asyncio.to_thread(self.engine.tokenize, written))
        await asyncio.to_thread(self.store.set_summary, conversation_id, written, job.upto_id, tokens)
        return await asyncio.to_thread(functools.partial(plan_context, **planned.options, summary=written, summary_turns=job.end))
