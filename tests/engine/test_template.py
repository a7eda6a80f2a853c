"""Chat templates from GGUF metadata, rendered in the Jinja sandbox, with a ChatML fallback."""

from __future__ import annotations

import pytest

from xiaoq.engine.template import ChatTemplate
from xiaoq.errors import InvalidRequest

MSGS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "你好"},
]


def test_fallback_is_chatml_with_generation_prompt():
    t = ChatTemplate(None)
    assert t.is_fallback
    assert t.render(MSGS) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"
    )
    assert not t.render(MSGS, add_generation_prompt=False).endswith("assistant\n")


def test_model_template_gets_bos_eos_and_helpers():
    src = (
        "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m['content'] | tojson }}{{ eos_token }}{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}{{ strftime_now('%Y')[:0] }}"
    )
    t = ChatTemplate(src, bos_token="<s>", eos_token="</s>")
    assert not t.is_fallback
    assert t.render(MSGS) == '<s>[system]"Be brief."</s>[user]"你好"</s>[assistant]'


def test_raise_exception_becomes_invalid_request():
    src = "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}ok"
    t = ChatTemplate(src)
    with pytest.raises(InvalidRequest, match="first must be user"):
        t.render(MSGS)
    assert t.render([{"role": "user", "content": "x"}]) == "ok"


def test_sandbox_blocks_python_internals():
    t = ChatTemplate("{{ messages.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(InvalidRequest):
        t.render(MSGS)


def test_sandbox_is_immutable():
    t = ChatTemplate("{{ messages.append(1) }}")
    with pytest.raises(InvalidRequest):
        t.render(MSGS)


def test_broken_template_falls_back_to_chatml():
    t = ChatTemplate("{% for %}")
    assert t.is_fallback
    assert t.render(MSGS).endswith("<|im_start|>assistant\n")


def test_split_on_marks_needs_each_mark_once_in_order():
    from xiaoq.engine.llama_engine import _split_on_marks

    assert _split_on_marks("<a>M0</a><b>M1</b>", ["M0", "M1"]) == ["<a>", "</a><b>", "</b>"]
    assert _split_on_marks("M1 M0", ["M0", "M1"]) is None  # reordered
    assert _split_on_marks("M0 M0 M1", ["M0", "M1"]) is None  # duplicated
    assert _split_on_marks("m0 M1", ["M0", "M1"]) is None  # transformed (e.g. | lower)
