"""The budget with the REAL llama.cpp counter (tiny GGUF, real Qwen chat template and tokenizer):
the per-turn token costs it adds up match the template's real count, a long conversation is
planned within n_ctx every turn, and the engine accepts the plan and reports the same prompt
size."""

from __future__ import annotations

from pathlib import Path

from xiaoq.chat.budget import Turn, plan_context
from xiaoq.config import Settings
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.engine.types import GenerationRequest, SamplingParams


async def test_budget_with_real_template_counter(tiny_gguf: Path) -> None:
    engine = LlamaEngine(tiny_gguf, Settings(threads=2, parallel=1, queue=2, ctx=1024, batch=64, kv_cache_mb=16, seed=1))
    await engine.start()
    try:
        count = engine.count_prompt_tokens
        n_ctx, max_tokens = engine.n_ctx, 16
        turns: list[Turn] = []
        summary, covered = None, 0
        kept_history = []
        for i in range(14):
            new = f"第{i}轮：我叫李雷，我养了一只叫豆豆的猫。Tell me more about cats, please! " * 2
            plan = plan_context(system="你是小Q。", turns=turns, new_message=new, n_ctx=n_ctx, max_tokens=max_tokens,
                                count=count, summary=summary, summary_turns=covered, chunk=3, summary_reserve=64)
            if plan.summarize:
                job = plan.summarize
                summary = f"用户叫李雷，养了一只叫豆豆的猫（覆盖前{job.end}轮）。"
                covered = job.end
                plan = plan_context(system="你是小Q。", turns=turns, new_message=new, n_ctx=n_ctx, max_tokens=max_tokens,
                                    count=count, summary=summary, summary_turns=covered, chunk=3, summary_reserve=64)
            assert plan.summarize is None
            assert plan.prompt_tokens == count(plan.messages)
            assert plan.prompt_tokens + plan.max_tokens <= n_ctx
            kept_history.append(plan.keep_from)
            if i in (0, 13):  # the engine takes the plan as it is and agrees on its size
                gen = await engine.submit(GenerationRequest(messages=plan.messages, sampling=SamplingParams(temperature=0.0, max_tokens=plan.max_tokens)))
                await gen.text()
                assert gen.result is not None and gen.result.finish_reason in ("stop", "length")
                assert gen.result.usage.prompt_tokens == plan.prompt_tokens
            turns.append(Turn(user=new, assistant="好的，李雷。" * 20 + f"（第{i}轮回答）", id=2 * i + 2))
        assert kept_history[-1] > 0  # the history outgrew the window and was trimmed
        assert all(b >= a for a, b in zip(kept_history, kept_history[1:]))
    finally:
        await engine.close()
