"""The loop guard inside the real llama.cpp engine (tiny model): a reply forced into a loop with
logit_bias ends with ``repetition`` soon after the loop starts and says how much of the streamed
text to keep; without the guard the same reply runs on to max_tokens."""

from __future__ import annotations

from pathlib import Path

from tests.engine.test_llama_engine import engine
from tests.tinymodel import TOKENS
from xiaoq.engine.types import GenerationRequest, SamplingParams

HELLO = TOKENS.index("Ġhello")
MSGS = [{"role": "user", "content": "hi"}]


async def run(e, **sampling) -> tuple[str, object]:
    g = await e.submit(GenerationRequest(messages=MSGS, sampling=SamplingParams(**{"temperature": 0.0, "max_tokens": 120, **sampling})))
    text = "".join([p async for p in g])
    return text, g.result


async def test_a_forced_loop_ends_with_repetition_and_the_text_to_keep(tiny_gguf: Path) -> None:
    async with engine(tiny_gguf) as e:
        text, r = await run(e, logit_bias={HELLO: 100.0}, loop_guard=True)
        assert r.finish_reason == "repetition"
        assert r.usage.completion_tokens < 60, r.usage  # stopped soon after the loop set in
        assert text.startswith(" hello hello") and text[: r.text_length] == " hello"

        text, r = await run(e, logit_bias={HELLO: 100.0}, loop_guard=False)
        assert r.finish_reason == "length" and r.usage.completion_tokens == 120 and r.text_length is None


async def test_the_guard_leaves_an_ordinary_reply_alone(tiny_gguf: Path) -> None:
    async with engine(tiny_gguf) as e:
        guarded, r1 = await run(e, loop_guard=True, seed=5, temperature=1.0)
        plain, r2 = await run(e, loop_guard=False, seed=5, temperature=1.0)
        assert (r1.finish_reason, r2.finish_reason) == ("length", "length")
        assert guarded == plain and r1.text_length is None
