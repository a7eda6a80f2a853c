"""FenceRepairer: languages added to bare opening fences, everything else passed through, the
same output however the stream is split, and no more held back than the fence line + the code
needed to guess."""

from __future__ import annotations

import random

import pytest

from xiaoq.chat.fences import FenceRepairer, guess_language, heuristic_language


def run(text: str, pieces: list[str] | None = None, **kw) -> str:
    f = FenceRepairer(**kw)
    parts = pieces if pieces is not None else [text]
    assert "".join(parts) == text
    return "".join(f.feed(p) for p in parts) + f.flush()


def chars(text: str) -> list[str]:
    return list(text)


CASES = {
    "python": ("Here is code:\n```\ndef add(a, b):\n    return a + b\n```\nDone.", "Here is code:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."),
    "tilde_sql": ("~~~\nSELECT name FROM users;\n~~~\n", "~~~sql\nSELECT name FROM users;\n~~~\n"),
    "has_lang": ("```js\nconsole.log(1)\n```\n", "```js\nconsole.log(1)\n```\n"),
    "has_lang_spaced": ("``` python\nx = 1\n```\n", "``` python\nx = 1\n```\n"),
    "windows": ("a\r\n```\r\n#include <iostream>\r\nint main() {}\r\n```\r\nb\r\n", "a\r\n```cpp\r\n#include <iostream>\r\nint main() {}\r\n```\r\nb\r\n"),
    "indented": ("1. Step\n   ```\n   pip install requests\n   ```\n", "1. Step\n   ```bash\n   pip install requests\n   ```\n"),
    "nested": (
        "````\n```python\nprint(1)\n```\n````\nafter\n",
        "````markdown\n```python\nprint(1)\n```\n````\nafter\n",
    ),
    "nested_inner_bare_is_content": (
        "````md\n```\nplain\n```\n````\n```\nSELECT 1\n```\n",
        "````md\n```\nplain\n```\n````\n```sql\nSELECT 1\n```\n",
    ),
    "inline_backticks": ("Use `x` or ``` inline ``` here.\n```a``` b\nnext `code`\n", "Use `x` or ``` inline ``` here.\n```a``` b\nnext `code`\n"),
    "mentions": ("Type ``` to start a block, then ~~~ also works.\n", "Type ``` to start a block, then ~~~ also works.\n"),
    "two_backticks": ("``\nnot a fence\n``\n", "``\nnot a fence\n``\n"),
    "four_spaces": ("    ```\n    code\n", "    ```\n    code\n"),
    "unclosed": ("text\n```\nimport os\nprint(os.getcwd())", "text\n```python\nimport os\nprint(os.getcwd())"),
    "unclosed_bare_at_end": ("see below\n```", "see below\n```"),
    "unclosed_fence_line_only": ("see below\n```\n", "see below\n```text\n"),
    "empty_block": ("```\n```\nafter", "```text\n```\nafter"),
    "closing_shorter_is_content": ("~~~~\n~~~\nstill code\n~~~~\n", "~~~~markdown\n~~~\nstill code\n~~~~\n"),
    "closing_other_char_is_content": ("```\nimport sys\n~~~\n```\nout\n```\nfunction f() {}\n```\n", "```python\nimport sys\n~~~\n```\nout\n```javascript\nfunction f() {}\n```\n"),
    "closing_longer": ("```\nimport a\n`````\nprose\n", "```python\nimport a\n`````\nprose\n"),
    "unknown_falls_back_to_text": ("```\nhello there\n```\n", "```text\nhello there\n```\n"),
    "chinese_prose": ("下面是代码：\n```\nfor i in range(3):\n    print(i)\n```\n说明：`i` 从 0 开始。", "下面是代码：\n```python\nfor i in range(3):\n    print(i)\n```\n说明：`i` 从 0 开始。"),
    "two_blocks": ("```\n<!DOCTYPE html>\n```\ntext\n```\n$ ls -la\n```\n", "```html\n<!DOCTYPE html>\n```\ntext\n```bash\n$ ls -la\n```\n"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_cases_whole_and_char_by_char(name):
    src, want = CASES[name]
    assert run(src) == want
    assert run(src, chars(src)) == want


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_split_position(name):
    src, want = CASES[name]
    for i in range(len(src) + 1):
        assert run(src, [src[:i], src[i:]]) == want, f"split at {i}"


def test_random_splits_same_output():
    rng = random.Random(1234)
    src = "".join(CASES[k][0] + "\n" for k in sorted(CASES))
    want = run(src)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(src)), rng.randint(1, 40)))
        pieces = [src[a:b] for a, b in zip([0, *cuts], [*cuts, len(src)])]
        assert run(src, pieces) == want


def test_text_streams_immediately_outside_fences():
    f = FenceRepairer()
    assert f.feed("Hello ") == "Hello "
    assert f.feed("wor") == "wor"
    assert f.feed("ld\nNext") == "ld\nNext"
    assert f.feed(" `x`") == " `x`"


def test_holds_only_the_possible_fence_line():
    f = FenceRepairer()
    assert f.feed("intro\n") == "intro\n"
    assert f.feed("`") == ""
    assert f.feed("``") == ""
    assert f.feed(" ") == ""  # "``` " could still be a bare fence
    assert f.feed("x") == "``` x"  # a language (or info): released at once, unchanged
    assert f.feed("\ncode\n") == "\ncode\n"  # inside a block: streamed at once


def test_releases_after_first_confident_code_line():
    f = FenceRepairer()
    assert f.feed("```\n") == ""
    out = f.feed("import os\n")
    assert out == "```python\nimport os\n"
    assert f.feed("print(1)\n") == "print(1)\n"
    assert f.feed("```\n") == "```\n"
    assert f.feed("after") == "after"
    assert f.repaired == 1


def test_wait_is_bounded_by_lines_and_chars():
    f = FenceRepairer(max_lines=3)
    assert f.feed("```\n") == ""
    assert f.feed("a\n") == "" and f.feed("b\n") == ""
    assert f.feed("c\n") == "```text\na\nb\nc\n"
    g = FenceRepairer(max_chars=50)
    assert g.feed("```\n") == ""
    long = "x" * 49
    assert g.feed(long) == ""
    assert g.feed("yy") == "```text\n" + long + "yy"
    assert g.feed("z\n```\nprose") == "z\n```\nprose"


def test_flush_resets_for_reuse():
    f = FenceRepairer()
    f.feed("```\nSELECT 1")
    assert f.flush() == "```sql\nSELECT 1"
    assert f.flush() == ""
    assert f.feed("plain") == "plain"


def test_custom_guess_is_used():
    assert run("```\nwhatever\n```\n", guess=lambda code: "brainfuck") == "```brainfuck\nwhatever\n```\n"


@pytest.mark.parametrize(
    "code,lang",
    [
        ("def f():\n    pass\n", "python"),
        ("from os import path\n", "python"),
        ("#include <stdio.h>\nint main(void) { printf(\"hi\"); }\n", "c"),
        ("#include <vector>\nstd::vector<int> v;\n", "cpp"),
        ("public class Main {\n  public static void main(String[] a) {}\n}\n", "java"),
        ("package main\n\nfunc main() {}\n", "go"),
        ("fn main() {\n    println!(\"hi\");\n}\n", "rust"),
        ("const x = 1;\nconsole.log(x);\n", "javascript"),
        ("interface User {\n  name: string;\n}\n", "typescript"),
        ("select * from t where id = 1;\n", "sql"),
        ('{\n  "name": "xiaoq"\n}\n', "json"),
        ("<div class=\"a\">hi</div>\n", "html"),
        (".box {\n  color: red;\n}\n", "css"),
        ("#!/bin/bash\necho hi\n", "bash"),
        ("npm install vue\n", "bash"),
        ("<?php echo 1; ?>\n", "php"),
        ("", "text"),
        ("just some words\n", "text"),
    ],
)
def test_guess_language(code, lang):
    assert guess_language(code) == lang


def test_heuristic_is_unsure_on_prose():
    assert heuristic_language("今天天气很好") is None
