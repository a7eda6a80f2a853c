"""The first-tokens language check: a reply that starts in the wrong language is regenerated once,
before any of it reaches the user.

The 0.5B model sometimes answers in the other language despite its system line (most often by
copying the source of a translation). Streamed text cannot be taken back, so the decision has to
come first: :func:`submit` holds the first pieces of the reply until its prose (code blocks and
inline code left out) tells the language, at most :data:`MAX_HOLD_PIECES` pieces: a few letters of
the expected script make it right, a run of the other script before them makes it wrong. Wrong: the
held pieces are dropped, the generation cancelled, and the same request is generated again with a
stronger language line (:func:`steered`); the retry is streamed as it comes, unchecked (one retry,
never a loop). Right, undecided or starting with code:
the held pieces are released and the rest streams through. Bracketed placeholders are not prose
either: they name what the user fills in, in whatever script.

Which replies: those under XiaoQ's own system line (:func:`xiaoq.config.default_system_prompt`),
whose language is known by the same rule that chose the line
(:func:`xiaoq.chat.language.reply_language` of the last user message). An operator's or client's
system prompt may ask for any language, so those replies are never judged. Switched by
``SamplingParams.language_check`` (``--language-check``, ``language_check`` per request).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import replace
from typing import AsyncIterator, Optional

from xiaoq.chat.language import Language, reply_language
from xiaoq.config import DEFAULT_SYSTEM_PROMPT, default_system_prompt
from xiaoq.engine.types import ChatMessage, Engine, Generation, GenerationRequest, GenerationResult, Timings, Usage
from xiaoq.errors import XiaoQError

log = logging.getLogger("xiaoq.chat")

#: Pieces (about tokens) held at most before the reply is released undecided.
MAX_HOLD_PIECES = 32
#: Letters of the expected script that make a reply right: a short English term may open a Chinese
#: reply, a Chinese name an English one, so a few letters of the expected script decide early.
ENOUGH_EXPECTED = {"zh": 2, "en": 8}
#: Prose of the other script that makes it wrong when it comes before enough of the expected one (a
#: Han character weighs four Latin letters, as in ``is_chinese``).
ENOUGH_OTHER = 16

RELEASE = "release"
RETRY = "retry"

#: Added to XiaoQ's line for the retry: the reply's language, said once more and more firmly, and
#: what the misses were (the source of a translation copied instead of translated).
STEER: dict[Language, str] = {
    "zh": "务必只用中文写出整个回答；要求翻译成中文时，把原文完整地译成中文，不要照抄原文。",
    "en": "Write the whole reply in English only; when asked for English, translate the text into English instead of copying it.",
}

_FENCED = re.compile(r"```.*?(?:```|\Z)", re.S)
_INLINE = re.compile(r"`[^`\n]*(?:`|$)", re.M)
#: A placeholder such as ``[name]`` or ``【name】`` (or one still open at the end of the held text):
#: its words are for the user to replace, so they do not tell the reply's language; an English
#: email may open with a placeholder written in Han characters.
_PLACEHOLDER = re.compile(r"\[[^\]\n]*(?:\]|$)|【[^】\n]*(?:】|$)", re.M)


def _prose(text: str) -> str:
    return _PLACEHOLDER.sub(" ", _INLINE.sub(" ", _FENCED.sub(" ", text)))


def _letters(prose: str) -> dict[str, int]:
    han = sum("\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" for ch in prose)
    return {"zh": han, "en": sum(ch.isascii() and ch.isalpha() for ch in prose)}


def verdict(held: str, expected: Language, pieces: int) -> Optional[str]:
    """:data:`RELEASE`, :data:`RETRY`, or None to hold on. Wrong means a run of the other script
    before a few letters of the expected one; a reply that starts with code is not judged; one still undecided after
    :data:`MAX_HOLD_PIECES` pieces is released."""
    if held.lstrip().startswith("```"):
        return RELEASE
    letters = _letters(_prose(held))
    other = "en" if expected == "zh" else "zh"
    if letters[expected] >= ENOUGH_EXPECTED[expected]:
        return RELEASE
    if letters[other] * (4 if other == "zh" else 1) >= ENOUGH_OTHER:
        return RETRY
    return RELEASE if pieces >= MAX_HOLD_PIECES else None


def expected_language(messages: list[ChatMessage]) -> Optional[Language]:
    """The reply's language when the system message is XiaoQ's own line for it, else None."""
    users = [m["content"] for m in messages if m["role"] == "user"]
    if not users or not messages or messages[0]["role"] != "system":
        return None
    lang = reply_language(users[-1])
    return lang if messages[0]["content"] == default_system_prompt(DEFAULT_SYSTEM_PROMPT, users[-1]) else None


def steered(request: GenerationRequest, lang: Language) -> GenerationRequest:
    """The same request with the language said more firmly in its system line."""
    first = request.messages[0]
    system = ChatMessage(role="system", content=f"{first['content']}{'' if lang == 'zh' else ' '}{STEER[lang]}")
    return replace(request, messages=[system, *request.messages[1:]])


async def submit(engine: Engine, request: GenerationRequest) -> Generation:
    """``engine.submit(request)``, checked when the request asks for it and its language is known."""
    lang = expected_language(request.messages) if request.sampling.language_check and not request.continue_last else None
    first = await engine.submit(request)
    if lang is None:
        return first
    return CheckedGeneration(engine, request, lang, first)


class CheckedGeneration(Generation):
    """The stream a consumer reads: fed by a task that holds, judges and (once) replaces the
    engine's generation. :meth:`cancel` reaches whichever generation is running."""

    def __init__(self, engine: Engine, request: GenerationRequest, lang: Language, first: Generation):
        super().__init__(first.loop, first.prompt_tokens)
        self._current = first
        self._task = asyncio.get_running_loop().create_task(self._relay(engine, request, lang))

    def cancel(self) -> None:
        super().cancel()
        self._current.cancel()

    async def _relay(self, engine: Engine, request: GenerationRequest, lang: Language) -> None:
        try:
            stream = self._current.__aiter__()
            held, decision = await self._hold(stream, lang)
            retried = decision == RETRY and await self._retry(engine, request, lang)
            if retried:
                stream = self._current.__aiter__()
            else:
                for piece in held:
                    self.emit(piece)
            if decision is not None:  # None: the stream has ended while held
                async for piece in stream:
                    self.emit(piece)
            result = self._current.result or GenerationResult("cancelled", Usage(prompt_tokens=self.prompt_tokens), Timings())
            self.finish(replace(result, language_retry=retried))
        except Exception as exc:  # never leave the reader waiting
            log.exception("language check failed")
            self._current.cancel()
            self.finish(GenerationResult("error", Usage(prompt_tokens=self.prompt_tokens), Timings(), error=f"language check: {exc!r}"))

    async def _hold(self, stream: AsyncIterator[str], lang: Language) -> tuple[list[str], Optional[str]]:
        """The pieces held and the decision on them (None: the reply ended before one)."""
        held: list[str] = []
        async for piece in stream:
            held.append(piece)
            decision = verdict("".join(held), lang, len(held))
            if decision is not None:
                return held, decision
        return held, None

    async def _retry(self, engine: Engine, request: GenerationRequest, lang: Language) -> bool:
        """Replace the running generation with the steered one; False when the engine refuses it
        (busy, too long: the first reply is then better than none) or the reader has left."""
        if self.cancelled:
            return False
        try:
            retry = await engine.submit(steered(request, lang))
        except XiaoQError as exc:
            log.info("language retry refused: %s", exc)
            return False
        old, self._current = self._current, retry
        old.cancel()
        if self.cancelled:
            retry.cancel()
        return True
