"""Summaries of a whole document larger than the prompt budget: map-reduce.

"总结这份文件" on a 40-page PDF cannot be answered from the top passages: the summary needs every
part. The document's passages are grouped, in reading order, into windows that fit a summary
prompt; each window is summarised at low priority (map, reported as progress); the reply is then
written from those partial summaries (reduce), which fit the answer's own budget.
"""

from __future__ import annotations

import re
from typing import Any, AsyncIterator, Callable, Sequence

from xiaoq.engine.types import ChatMessage, Engine, GenerationRequest, SamplingParams
from xiaoq.kb.answer import data_block

#: Asking for a summary of the attached document(s), in Chinese or English.
SUMMARY_REQUEST = re.compile(r"(总结|概括|摘要|归纳|概述).{0,8}(文件|文档|内容|资料|附件|这份|这个|全文)|(文件|文档|这份|这篇).{0,6}(总结|概括|摘要|讲了什么|说了什么)|\bsummari[sz]e\b|\bsummary\b|\btl;?dr\b", re.I)

MAP_INSTRUCTION = (
    "用三到五句话概括上面这段文档的要点，只写文档里有的内容。"
    "Summarize the key points of the document part above in three to five sentences, using only what it says."
)
REDUCE_RULES = (
    "上面是同一份文档各部分的要点，按原文顺序编号。请据此写出整份文档的总结，使用提问所用的语言，不要编造。\n"
    "Above are the key points of each part of one document, in order. Write a summary of the whole document from "
    "them, in the language of the request, adding nothing that is not there."
)


def is_summary_request(text: str) -> bool:
    return bool(SUMMARY_REQUEST.search(text))


def windows(chunks: Sequence[dict[str, Any]], budget: int, count: Callable[[str], int]) -> list[str]:
    """Consecutive passages joined into texts of at most ``budget`` tokens each (a longer passage
    stands alone)."""
    out: list[str] = []
    buf: list[str] = []
    used = 0
    for chunk in chunks:
        text = chunk["text"].strip()
        n = count(text)
        if buf and used + n > budget:
            out.append("\n\n".join(buf))
            buf, used = [], 0
        buf.append(text)
        used += n
    if buf:
        out.append("\n\n".join(buf))
    return out


def map_messages(part: str, n: int, total: int) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=f"{data_block(f'document part {n} of {total}', part)}\n\n{MAP_INSTRUCTION}")]


def reduce_content(request: str, partials: Sequence[str]) -> str:
    """The reply's user message: the partial summaries as data, the rules, the user's request."""
    body = "\n\n".join(f"[{n}] {p.strip()}" for n, p in enumerate(partials, 1))
    return f"{data_block('summaries of the document parts', body)}\n\n{REDUCE_RULES}\n\n{request}"


async def map_parts(engine: Engine, parts: Sequence[str], max_tokens: int = 160, stopped: Callable[[], bool] = lambda: False) -> AsyncIterator[tuple[int, str]]:
    """Summarise each part in turn at low priority; yields ``(parts done, summary)`` as each ends
    (stops early when ``stopped()`` turns true: the user pressed stop or went away)."""
    for n, part in enumerate(parts, 1):
        if stopped():
            return
        request = GenerationRequest(messages=map_messages(part, n, len(parts)), sampling=SamplingParams(temperature=0.2, max_tokens=max_tokens), priority=-1)
        gen = await engine.submit(request)
        try:
            text = await gen.text()
        finally:
            gen.cancel()
        yield n, text.strip()
