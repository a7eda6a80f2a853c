"""The context budget: which past turns go into the prompt, and when to summarize the rest.

Pure logic with an injected token counter, so it is tested with a fake counter and used with the
engine's (``engine.count_prompt_tokens``: the messages rendered with the chat template).

The rules (issue 3, "Context budget and summaries"):

* The prompt is ``system + (summary of earlier turns) + the kept recent turns + the new message``
  (``chat/prompt.py``: the summary is a user-role data block, never part of the system message)
  and it fits with room for ``max_tokens``: ``prompt_tokens + max_tokens <= n_ctx``, counted.
* Turns are dropped WHOLE, oldest first, and in CHUNKS: the first kept turn (the cut ``c``) only
  moves in steps of ``chunk`` turns from where the stored summary ends. So for several turns in a
  row the prompt starts with the same system + summary + first kept turn, and the engine's cached KV
  prefix stays valid; without chunks the cut would move every turn and invalidate it every turn.
* ``max_turns`` (>0) caps the turns kept verbatim even when they would fit (a 0.5B model answers
  better from a short history plus a summary than from a long one).
* Dropped turns are covered by a summary. The plan asks for a new one only when the cut moves past
  what the stored summary covers (``summarize``); otherwise the stored one is reused unchanged.
* When even ``system + summary + new message`` leaves too little room, ``max_tokens`` shrinks (down
  to ``min_reply_tokens``), then the summary is truncated, then ``max_tokens`` shrinks further. Only
  a new message (with the system prompt) that alone leaves no room for one token of reply raises
  :class:`~xiaoq.errors.ContextLengthExceeded`: a conversation growing long never does.

The conversation service runs it like this::

    plan = plan_context(system=..., turns=turns, new_message=text, n_ctx=engine.n_ctx,
                        max_tokens=max_tokens, count=engine.count_prompt_tokens,
                        summary=stored["summary"], summary_turns=turns_covered(turns, stored["upto_message_id"]))
    if plan.summarize:                     # more turns dropped out than the summary covers
        job = plan.summarize
        msgs = summary_messages(old_summary, turns[job.start:job.end], max_tokens=job.max_tokens)
        text = clean_summary(<generate msgs with max_tokens=job.max_tokens, low temperature>)
        store.set_summary(cid, text, job.upto_id, <its token count>)
        plan = plan_context(..., summary=text, summary_turns=job.end)   # now plan.summarize is None
    await engine.submit(GenerationRequest(messages=plan.messages, sampling=...(max_tokens=plan.max_tokens)))
    # plan.report goes into the `done` event and the stored reply's `budget`
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

from xiaoq.chat.prompt import build_messages, data_block
from xiaoq.engine.types import ChatMessage
from xiaoq.errors import ContextLengthExceeded

#: Counts the prompt tokens of messages rendered with the chat template (generation prompt included).
Counter = Callable[[list[ChatMessage]], int]

SUMMARY_LABEL = "summary of the earlier conversation (之前对话的摘要)"
_ANCHOR = ChatMessage(role="user", content=".")


@dataclass(frozen=True)
class Turn:
    """One past exchange. ``id`` is the id of its last stored message (maps summaries to rows)."""

    user: str
    assistant: str = ""
    id: Optional[int] = None
    #: Token counts of the two contents when known (stored with the messages), so counting the
    #: turn does not tokenize them again.
    user_tokens: Optional[int] = None
    assistant_tokens: Optional[int] = None

    def messages(self) -> list[ChatMessage]:
        out = [_message("user", self.user, self.user_tokens)]
        if self.assistant:
            out.append(_message("assistant", self.assistant, self.assistant_tokens))
        return out


def _message(role: str, content: str, tokens: Optional[int]) -> ChatMessage:
    message = ChatMessage(role=role, content=content)
    if tokens is not None:
        message["tokens"] = tokens
    return message


@dataclass(frozen=True)
class SummaryJob:
    """Summarize turns ``[start, end)`` together with the stored summary (which covers
    ``[0, start)``); the result covers ``[0, end)``, i.e. up to message ``upto_id``."""

    start: int
    end: int
    max_tokens: int
    upto_id: Optional[int]


@dataclass
class BudgetPlan:
    messages: list[ChatMessage]
    #: max_tokens to request (lower than asked only when nothing else could make room).
    max_tokens: int
    prompt_tokens: int
    #: Index of the first turn kept verbatim (= turns left out of the prompt).
    keep_from: int
    #: Set when a new summary must be written before answering (see the module docstring).
    summarize: Optional[SummaryJob]
    #: What the budget did, for the ``done`` event and the stored reply (docs/api.md ``budget``).
    report: dict[str, Any] = field(default_factory=dict)


TurnLike = Union[Turn, tuple[str, str]]


def summary_blocks(summary: Optional[str]) -> list[ChatMessage]:
    """The summary of earlier turns as the prompt's data (none when there is no summary)."""
    return [data_block(SUMMARY_LABEL, summary)] if summary else []


def turns_covered(turns: Sequence[TurnLike], upto_message_id: Optional[int]) -> int:
    """How many leading turns a stored summary covering messages up to ``upto_message_id`` spans."""
    if upto_message_id is None:
        return 0
    n = 0
    for t in turns:
        if isinstance(t, Turn) and t.id is not None and t.id <= upto_message_id:
            n += 1
        else:
            break
    return n


def plan_context(
    *,
    system: str,
    turns: Sequence[TurnLike],
    new_message: str,
    n_ctx: int,
    max_tokens: int,
    count: Counter,
    summary: Optional[str] = None,
    summary_turns: int = 0,
    max_turns: int = 0,
    chunk: int = 4,
    summary_reserve: int = 256,
    min_reply_tokens: int = 64,
    prefix: Sequence[ChatMessage] = (),
) -> BudgetPlan:
    """Choose the messages to send. See the module docstring for the rules.

    ``summary`` covers the first ``summary_turns`` turns; ``summary_reserve`` is the room kept for
    a summary not yet written (and the ``max_tokens`` of the job that writes it). ``prefix``:
    messages that go right after the system message, before the summary and the turns (the worked
    turns of an answer from passages): as stable as the system message, so they stay cached.
    """
    ts = [t if isinstance(t, Turn) else Turn(*t) for t in turns]
    n = len(ts)
    chunk = max(1, int(chunk))
    if not summary:
        summary, summary_turns = None, 0
    s = max(0, min(int(summary_turns), n))
    new = ChatMessage(role="user", content=new_message)

    def head(summary_text: Optional[str]) -> list[ChatMessage]:
        return build_messages(system, [], new_message, [*prefix, *summary_blocks(summary_text)])[:-1]

    def build(c: int, summary_text: Optional[str]) -> list[ChatMessage]:
        return build_messages(system, [m for t in ts[c:] for m in t.messages()], new_message, [*prefix, *summary_blocks(summary_text)])

    # Per-turn costs: ChatML wraps each message on its own, so token counts add up; every choice is
    # still verified with one exact count before it is accepted.
    anchor = count([_ANCHOR])
    cost = [count(t.messages() + [_ANCHOR]) - anchor for t in ts]
    suffix = [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        suffix[i] = suffix[i + 1] + cost[i]
    base_with_summary = count(head(summary) + [new])
    base_bare = count(head(None) + [new]) if summary else base_with_summary
    # What wrapping a summary costs beyond its own tokens (header, blank line): the summary job's
    # max_tokens is the reserve minus this, so the written summary fits the room kept for it.
    overhead = max(0, count(head(".") + [new]) - count(head(None) + [new]) - 1)
    room = n_ctx - max_tokens

    candidates = list(range(s, n, chunk)) + [n]
    if max_turns > 0:
        candidates = [c for c in candidates if n - c <= max_turns] or [n]

    for c in candidates:
        if c == s:
            estimate = base_with_summary + suffix[c]
        else:  # a new summary will replace the stored one: keep room for it
            estimate = base_bare + summary_reserve + suffix[c]
        if estimate > room:
            continue
        if c == s:
            msgs = build(c, summary)
            exact = count(msgs)
            if exact <= room:
                return _plan(msgs, max_tokens, exact, c, None, n, s, summary, count, trimmed=c > 0)
        else:
            if count(build(c, None)) + summary_reserve <= room:
                return _pending(build, count, c, s, n, summary, max_tokens, summary_reserve - overhead, ts, room)

    # Nothing fits with the full max_tokens even keeping no turn: make room in the reply and summary.
    c = n
    floor = min(max_tokens, max(1, min_reply_tokens))
    bare = count(build(c, None))
    if bare + 1 > n_ctx:
        raise ContextLengthExceeded(prompt_tokens=bare, max_tokens=max_tokens, n_ctx=n_ctx)
    if c > s:  # the dropped turns still get a summary, as long as it has room
        allowance = min(summary_reserve, n_ctx - floor - bare)
        if allowance - overhead >= 16:
            reply = min(max_tokens, n_ctx - bare - allowance)
            return _pending(build, count, c, s, n, summary, reply, allowance - overhead, ts, n_ctx - reply)
        reply = min(max_tokens, n_ctx - bare)
        return _plan(build(c, None), reply, bare, c, None, n, 0, None, count, trimmed=True)
    # c == s: the stored summary covers every turn; shrink the reply, then the summary.
    with_summary = count(build(c, summary))
    if with_summary + floor <= n_ctx:
        return _plan(build(c, summary), n_ctx - with_summary, with_summary, c, None, n, s, summary, count, trimmed=True)
    cut = _truncate_to_fit(summary or "", lambda text: count(build(c, text)) + floor <= n_ctx)
    msgs = build(c, cut or None)
    exact = count(msgs)
    return _plan(msgs, min(max_tokens, n_ctx - exact), exact, c, None, n, s if cut else 0, cut or None, count, trimmed=True)


def _pending(build, count, c, s, n, summary, max_tokens, summary_max_tokens, ts, room) -> BudgetPlan:  # type: ignore[no-untyped-def]
    """A plan whose dropped turns still need summarizing. Its messages (usable as-is if the summary
    cannot be written) carry the stored summary when it fits, else none."""
    job = SummaryJob(start=s, end=c, max_tokens=max(1, summary_max_tokens), upto_id=ts[c - 1].id if c > 0 else None)
    msgs = build(c, summary)
    exact = count(msgs)
    used_summary = summary
    if exact > room:
        msgs, used_summary = build(c, None), None
        exact = count(msgs)
    return _plan(msgs, max_tokens, exact, c, job, n, s if used_summary else 0, used_summary, count, trimmed=True)


def _plan(
    msgs: list[ChatMessage],
    max_tokens: int,
    prompt_tokens: int,
    c: int,
    job: Optional[SummaryJob],
    n: int,
    summarized: int,
    summary: Optional[str],
    count: Counter,
    trimmed: bool,
) -> BudgetPlan:
    summary_tokens = 0
    if summary:
        summary_tokens = count(summary_blocks(summary)) - count([data_block(SUMMARY_LABEL, "")])
    report = {
        "turns_total": n,
        "turns_kept": n - c,
        "turns_summarized": summarized,
        "summary_tokens": summary_tokens,
        "prompt_tokens": prompt_tokens,
        "trimmed": bool(trimmed),
    }
    # The plan's messages go to the engine (maybe a remote one) as plain chat messages.
    plain = [ChatMessage(role=m["role"], content=m["content"]) for m in msgs]
    return BudgetPlan(messages=plain, max_tokens=max_tokens, prompt_tokens=prompt_tokens, keep_from=c, summarize=job, report=report)


def _truncate_to_fit(text: str, fits: Callable[[str], bool]) -> str:
    """The longest head of ``text`` (ending in "…") that ``fits``; "" when none does."""
    if not text:
        return ""
    lo, hi = 0, len(text)  # invariant: text[:lo] + "…" fits (or lo == 0)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(text[:mid].rstrip() + "…"):
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + "…" if lo > 0 else ""
