"""The context budget with a fake token counter (one token per character + 4 per message + 3
for the generation prompt): everything fits, whole turns, chunks, stable prefixes, summaries
refreshed only when more turns drop out, graceful squeeze, and the one honest error."""

from __future__ import annotations

import random

import pytest

from xiaoq.chat.budget import SUMMARY_LABEL, BudgetPlan, Turn, plan_context, summary_blocks, turns_covered
from xiaoq.errors import ContextLengthExceeded


def count(msgs) -> int:
    return sum(len(m["content"]) + 4 for m in msgs) + 3


SYSTEM = "你是小Q。"


def turn(i: int, size: int = 40) -> Turn:
    return Turn(user=f"问题{i}:" + "问" * size, assistant=f"回答{i}:" + "答" * size, id=2 * i + 2)


def kept_turns(plan: BudgetPlan) -> list[tuple[str, str]]:
    body = [m for m in plan.messages[:-1] if m["role"] != "system" and not m["content"].startswith("<data ")]
    return [(body[i]["content"], body[i + 1]["content"]) for i in range(0, len(body), 2)]


def check_fits(plan: BudgetPlan, n_ctx: int) -> None:
    assert plan.prompt_tokens == count(plan.messages)
    assert plan.prompt_tokens + plan.max_tokens <= n_ctx
    assert plan.max_tokens >= 1
    assert plan.report["prompt_tokens"] == plan.prompt_tokens


class Conversation:
    """Drives plan_context turn after turn like the conversation service: summarize when asked
    (a fake summarizer writes a summary as long as allowed), then plan again."""

    def __init__(self, n_ctx=1200, max_tokens=200, chunk=4, max_turns=0, reserve=120, size=40, summary_len=None):
        self.n_ctx, self.max_tokens, self.chunk, self.max_turns, self.reserve = n_ctx, max_tokens, chunk, max_turns, reserve
        self.size, self.summary_len = size, summary_len
        self.turns: list[Turn] = []
        self.summary: str | None = None
        self.summary_turns = 0
        self.jobs: list[tuple[int, int]] = []

    def plan(self, new: str) -> BudgetPlan:
        return plan_context(
            system=SYSTEM, turns=self.turns, new_message=new, n_ctx=self.n_ctx, max_tokens=self.max_tokens, count=count,
            summary=self.summary, summary_turns=self.summary_turns, max_turns=self.max_turns, chunk=self.chunk,
            summary_reserve=self.reserve,
        )

    def step(self) -> BudgetPlan:
        i = len(self.turns)
        new = f"问题{i}:" + "问" * self.size
        plan = self.plan(new)
        for _ in range(3):
            if not plan.summarize:
                break
            job = plan.summarize
            assert job.start == self.summary_turns and job.end > job.start
            assert job.upto_id == self.turns[job.end - 1].id
            self.jobs.append((job.start, job.end))
            length = job.max_tokens if self.summary_len is None else min(self.summary_len, job.max_tokens)
            self.summary = ("摘要" * job.max_tokens)[:length]
            self.summary_turns = job.end
            plan = self.plan(new)
        assert plan.summarize is None
        check_fits(plan, self.n_ctx)
        self.turns.append(Turn(user=new, assistant=f"回答{i}:" + "答" * self.size, id=2 * i + 2))
        return plan


def test_everything_fits_untouched():
    turns = [turn(i) for i in range(3)]
    plan = plan_context(system=SYSTEM, turns=turns, new_message="新问题", n_ctx=4096, max_tokens=512, count=count)
    assert [m["role"] for m in plan.messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert plan.messages[0]["content"] == SYSTEM and plan.messages[-1]["content"] == "新问题"
    assert kept_turns(plan) == [(t.user, t.assistant) for t in turns]
    assert plan.summarize is None and plan.max_tokens == 512 and plan.keep_from == 0
    assert plan.report == {
        "turns_total": 3, "turns_kept": 3, "turns_summarized": 0, "summary_tokens": 0,
        "prompt_tokens": count(plan.messages), "trimmed": False,
    }


def test_tuples_accepted_and_empty_reply_skipped():
    plan = plan_context(system="", turns=[("hi", ""), ("again", "yes")], new_message="q", n_ctx=100, max_tokens=10, count=count)
    assert [(m["role"], m["content"]) for m in plan.messages] == [("system", ""), ("user", "hi"), ("user", "again"), ("assistant", "yes"), ("user", "q")]


def test_never_over_budget_and_whole_turns_random():
    rng = random.Random(7)
    for trial in range(30):
        conv = Conversation(
            n_ctx=rng.choice([600, 900, 1500]), max_tokens=rng.choice([50, 150, 300]), chunk=rng.choice([1, 2, 3, 4]),
            max_turns=rng.choice([0, 0, 5, 8]), reserve=rng.choice([60, 120]), size=rng.randint(5, 90),
        )
        for _ in range(25):
            originals = {(t.user, t.assistant) for t in conv.turns}
            plan = conv.step()
            kept = kept_turns(plan)
            assert set(kept) <= originals  # whole turns, verbatim
            assert kept == [(t.user, t.assistant) for t in conv.turns[plan.keep_from : len(conv.turns) - 1]]
            assert plan.report["turns_total"] == len(conv.turns) - 1
            assert plan.report["turns_kept"] == len(kept)
            if conv.max_turns:
                assert len(kept) <= conv.max_turns


def test_chunked_cut_keeps_prefix_stable():
    conv = Conversation(n_ctx=1200, max_tokens=200, chunk=4, reserve=120, size=40)
    cuts, prefixes = [], []
    for _ in range(30):
        plan = conv.step()
        cuts.append(plan.keep_from)
        # the prefix the KV cache holds: system (+summary) and the first kept turn
        prefixes.append(tuple(m["content"] for m in plan.messages[:3]))
    assert cuts == sorted(cuts)  # the cut never moves back
    moves = [b - a for a, b in zip(cuts, cuts[1:]) if b != a]
    assert moves and all(m % 4 == 0 for m in moves)  # in whole chunks
    # while the cut stays, the prompt prefix is identical turn after turn
    runs = 0
    for i in range(1, len(cuts)):
        if cuts[i] == cuts[i - 1] and cuts[i] > 0:
            assert prefixes[i] == prefixes[i - 1]
            runs += 1
    assert runs >= 14  # most turns reuse the previous prefix
    # once the window is full, the cut moves once per `chunk` turns, not every turn
    move_at = [i for i in range(1, len(cuts)) if cuts[i] != cuts[i - 1]]
    gaps = [b - a for a, b in zip(move_at, move_at[1:])]
    assert len(gaps) >= 4 and all(g >= 3 for g in gaps) and gaps[-3:] == [4, 4, 4]
    # the summary was refreshed exactly when the cut moved, covering exactly the new drop-outs
    assert [end for _, end in conv.jobs] == sorted(set(c for c in cuts if c > 0))
    assert all(start == prev_end for (start, _), prev_end in zip(conv.jobs, [0] + [e for _, e in conv.jobs]))


def test_without_chunks_the_prefix_would_move_every_turn():
    """Control for the test above: chunk=1 moves the cut every turn once the window is full."""
    conv = Conversation(n_ctx=1200, max_tokens=200, chunk=1, reserve=120, size=40)
    cuts = [conv.step().keep_from for _ in range(30)]
    late = cuts[15:]
    assert all(b == a + 1 for a, b in zip(late, late[1:]))


def test_max_turns_in_chunks():
    conv = Conversation(n_ctx=100000, max_tokens=200, chunk=4, max_turns=8, size=10)
    kept = [conv.step().report["turns_kept"] for _ in range(20)]
    # turns before the new message: 0..19; kept never above 8, drops by a chunk at a time
    assert kept[:9] == list(range(9))
    assert kept[9:] == [5, 6, 7, 8, 5, 6, 7, 8, 5, 6, 7]
    assert len(conv.jobs) == 3


def test_summary_reused_not_refreshed_while_cut_stays():
    turns = [turn(i) for i in range(10)]
    plan = plan_context(system=SYSTEM, turns=turns, new_message="q", n_ctx=100000, max_tokens=100, count=count,
                        summary="用户提到了一个名字和一只宠物。", summary_turns=4, chunk=4)
    assert plan.summarize is None and plan.keep_from == 4
    # The operator's prompt alone in the system role; the summary is a labelled user-role data block.
    assert plan.messages[0] == {"role": "system", "content": SYSTEM}
    assert plan.messages[1:2] == summary_blocks("用户提到了一个名字和一只宠物。")
    assert plan.messages[1]["role"] == "user" and SUMMARY_LABEL in plan.messages[1]["content"]
    assert kept_turns(plan)[0] == (turns[4].user, turns[4].assistant)
    assert plan.report["turns_summarized"] == 4 and plan.report["summary_tokens"] == len("用户提到了一个名字和一只宠物。")
    assert plan.report["trimmed"] is True


def test_summary_covering_more_than_exists_is_clamped():
    turns = [turn(i) for i in range(2)]
    plan = plan_context(system=SYSTEM, turns=turns, new_message="q", n_ctx=100000, max_tokens=100, count=count, summary="s", summary_turns=9)
    assert plan.keep_from == 2 and plan.summarize is None and kept_turns(plan) == []


def test_pending_summary_messages_usable_without_it():
    turns = [turn(i, size=100) for i in range(12)]
    plan = plan_context(system=SYSTEM, turns=turns, new_message="q", n_ctx=1500, max_tokens=200, count=count, summary_reserve=100)
    assert plan.summarize is not None and plan.summarize.start == 0 and plan.summarize.end == plan.keep_from
    assert plan.summarize.end % 4 == 0 and plan.summarize.max_tokens < 100
    check_fits(plan, 1500)
    assert plan.report["turns_summarized"] == 0  # nothing summarized yet


def test_squeeze_reduces_max_tokens_before_erroring():
    long_system = "规" * 700
    plan = plan_context(system=long_system, turns=[turn(i) for i in range(5)], new_message="问", n_ctx=1000, max_tokens=500, count=count)
    check_fits(plan, 1000)
    assert plan.max_tokens < 500 and plan.keep_from == 5 and plan.report["trimmed"]


def test_squeeze_truncates_long_summary():
    summary = "事实" * 600
    turns = [turn(i) for i in range(4)]
    plan = plan_context(system=SYSTEM, turns=turns, new_message="问", n_ctx=1000, max_tokens=300, count=count,
                        summary=summary, summary_turns=4, min_reply_tokens=100)
    check_fits(plan, 1000)
    assert plan.max_tokens >= 100
    block = plan.messages[1]["content"]
    assert plan.messages[1]["role"] == "user" and block.endswith("…\n</data>") and summary[:100] in block and len(block) < len(summary)


def test_long_conversation_never_errors_even_when_tight():
    conv = Conversation(n_ctx=400, max_tokens=300, chunk=3, reserve=200, size=60)
    for _ in range(15):
        plan = conv.step()
        assert plan.max_tokens >= 1


def test_single_huge_message_is_the_only_error():
    with pytest.raises(ContextLengthExceeded) as e:
        plan_context(system=SYSTEM, turns=[turn(0)], new_message="长" * 5000, n_ctx=1000, max_tokens=100, count=count)
    assert e.value.extra["n_ctx"] == 1000 and e.value.extra["prompt_tokens"] > 1000
    # a message that leaves at least one token of room is answered, with a smaller max_tokens
    plan = plan_context(system=SYSTEM, turns=[turn(0)], new_message="长" * 900, n_ctx=1000, max_tokens=100, count=count)
    check_fits(plan, 1000)
    assert plan.keep_from == 1


def test_turns_covered():
    turns = [turn(i) for i in range(5)]  # ids 2, 4, 6, 8, 10
    assert turns_covered(turns, None) == 0
    assert turns_covered(turns, 6) == 3
    assert turns_covered(turns, 7) == 3
    assert turns_covered(turns, 100) == 5
