"""Chat messages -> prompt text, with the model's own chat template.

GGUF files carry their Jinja chat template in ``tokenizer.chat_template`` (the same template as the
Hugging Face tokenizer), so any GGUF chat model gets its correct format. Templates come from model
files, i.e. from strangers: they run in Jinja's immutable sandbox, which blocks attribute access to
Python internals and mutation of the objects passed in. Models without a template get ChatML, the
format Qwen and many others use.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import datetime
from typing import Any, Optional, Sequence

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from ..errors import InvalidRequest, ModelError
from .types import ChatMessage

log = logging.getLogger(__name__)

CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


#: The conversation a template is tried on when the model loads.
_PROBE: list[ChatMessage] = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello!"},
    {"role": "assistant", "content": "Hi! How can I help?"},
    {"role": "user", "content": "Tell me a joke."},
]


def _raise_exception(message: str) -> None:
    # Templates call this to reject a conversation shape (e.g. roles that do not alternate).
    raise jinja2.exceptions.TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(value: Any, indent: Optional[int] = None, ensure_ascii: bool = False, sort_keys: bool = False) -> str:
    # Hugging Face overrides Jinja's tojson (which HTML-escapes) with plain json.dumps; templates
    # are written against that behaviour.
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)


class _StrictSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, where touching an unsafe attribute fails at once. Jinja's default
    gives back an undefined value that fails only when used, so ``messages|attr('__class__')``
    rendered as an empty string and a probing template went unnoticed."""

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe.")


class ChatTemplate:
    """A compiled chat template. ``render(messages)`` returns the prompt ending in the assistant cue."""

    def __init__(self, source: Optional[str], bos_token: str = "", eos_token: str = ""):
        env = _StrictSandbox(trim_blocks=True, lstrip_blocks=True, autoescape=False)
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        env.filters["tojson"] = _tojson
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.is_fallback = not source
        try:
            self._template = env.from_string(source or CHATML_TEMPLATE)
        except jinja2.TemplateError as e:
            log.warning("the model's chat template does not compile (%s); using ChatML", e)
            self.is_fallback = True
            self._template = env.from_string(CHATML_TEMPLATE)

    def render(self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True, *, continue_last: bool = False) -> str:
        """Render messages; a template that rejects them raises :class:`InvalidRequest`.

        ``continue_last`` leaves the last (assistant) message open: the text ends with its content,
        with no end-of-turn token after it, so generation continues it."""
        if continue_last:
            return self._render_open(messages)
        try:
            return self._template.render(
                messages=[{k: v for k, v in m.items() if k != "tokens"} for m in messages],
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except jinja2.TemplateError as e:
            raise InvalidRequest(f"the model's chat template rejected these messages: {e}") from None
        except Exception as e:  # the sandbox's range limit (OverflowError), runaway recursion, ...
            raise InvalidRequest(f"the model's chat template failed on these messages: {type(e).__name__}: {e}") from None

    def check(self) -> None:
        """Render a plain conversation once, at load: a template that reaches for Python internals
        (the sandbox refuses, e.g. ``cycler.__init__.__globals__``) comes from a hostile file, and
        the model is refused as a whole (:class:`ModelError`) rather than per request. Templates
        that merely reject this conversation's shape (no system role, say) are left alone."""
        try:
            self.render(_PROBE)
        except InvalidRequest:
            try:
                self._template.render(messages=_PROBE, add_generation_prompt=True, bos_token=self.bos_token, eos_token=self.eos_token)
            except SecurityError as e:
                raise ModelError(f"the model's chat template tries to escape its sandbox ({e}); refusing to use this model") from None
            except Exception:
                pass

    def _render_open(self, messages: Sequence[ChatMessage]) -> str:
        """The conversation rendered as history, cut right after the last message's content.

        Templates have no switch for this, so the last content is replaced by a unique mark and
        the text is cut at the mark (Hugging Face's ``continue_final_message`` searches for the
        content itself, which fails for empty or repeated contents)."""
        if not messages or messages[-1].get("role") != "assistant":
            raise InvalidRequest("Only an assistant message can be continued: the last message must be the assistant's.", code="nothing_to_continue")
        last = messages[-1]
        mark = f"XQ{secrets.token_hex(6)}END"
        text = self.render([*messages[:-1], {"role": "assistant", "content": mark}], add_generation_prompt=False)
        if text.count(mark) != 1:
            raise InvalidRequest("The model's chat template cannot continue an assistant message.", code="nothing_to_continue")
        return text[: text.index(mark)] + last["content"]
