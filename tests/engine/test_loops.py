"""The loop detector over symbols: characters here (the same code sees token ids in the engine).

Legitimate repetition must never trigger: tables, numbers, code with repeated lines, short laughs,
a refrain. Cases under "held out" were written after the thresholds were fixed and not tuned on.
"""

from __future__ import annotations

import re

import pytest

from xiaoq.engine.loops import TOKEN_RULES, boundary_rank, LoopDetector, LoopRules, find_loops, trim_loops


def letters(ch: str) -> int:
    return 1 if ch.isalpha() else 0


#: Roughly how a BPE vocabulary splits text: a CJK character, a word with its leading space, a digit,
#: a run of punctuation, a run of spaces or newlines (the real tokenizer: test_loops_real.py).
_PIECE = re.compile(r"[\u4e00-\u9fff]|[\u3000-\u303f\uff00-\uffef]| ?[A-Za-z]+| ?\d|[^\w\s]+|\s+")


def pieces(text: str) -> list[str]:
    out = _PIECE.findall(text)
    assert "".join(out) == text
    return out


def first_hit(text: str, rules: LoopRules = TOKEN_RULES):
    """(index of the piece where the loop was found, the loop in characters) or None."""
    toks = pieces(text)
    d: LoopDetector[str] = LoopDetector(lambda t: sum(map(letters, t)), rules, boundary_rank)
    for i, tok in enumerate(toks):
        hit = d.push(tok)
        if hit:
            return i, "".join(toks[: hit.keep]), hit
    return None


def test_a_repeated_line_is_found_and_keep_removes_the_copies() -> None:
    head = "Here is the plan for the week.\n"
    line = "We will review the results again.\n"
    text = head + line * 12
    found = first_hit(text)
    assert found is not None
    at, kept, hit = found
    assert hit.period == len(pieces(line))
    assert kept == head + line
    assert at < len(pieces(head + line * 6))  # found after a few copies, not at the end


def test_an_enumeration_that_cycles_is_found() -> None:
    unit = "坚固的城墙、坚固的城门、"
    text = "古城的特点：" + unit * 10
    found = first_hit(text)
    assert found is not None and found[2].period == len(unit)
    assert found[1] == "古城的特点：" + unit


def test_the_unit_is_the_smallest_period() -> None:
    found = first_hit("答案：" + "对不起，" * 30)
    assert found is not None and found[2].period == 4 and found[1] == "答案：对不起，"


LEGITIMATE = {
    "markdown table": "| 月份 | 销量 | 备注 |\n|---|---|---|\n"
    + "".join(f"| {m}月 | {m * 37 % 100} | 正常 |\n" for m in range(1, 13)),
    "numbers": ", ".join(str(i) for i in range(1, 201)),
    "zeros": "matrix = [" + ", ".join(["0"] * 120) + "]",
    "separator row": "|" + "---|" * 40,
    "ha ha": "ha ha ha ha ha, that is a good one! 哈哈哈哈哈哈",
    "repeated code lines": "```python\nfor i in range(3):\n    print('-' * 20)\n    print('-' * 20)\n    print('-' * 20)\n```\n",
    "refrain twice": ("Row, row, row your boat, gently down the stream.\n" * 2) + "Merrily, merrily, merrily, merrily.\n",
    "numbered steps": "\n".join(f"{i}. 打开第{i}个文件并保存" for i in range(1, 16)),
}

HELD_OUT = {
    "times table": "\n".join(f"{a} × {b} = {a * b}" for a in range(1, 10) for b in range(1, 4)),
    "csv": "name,age,city\n" + "\n".join(f"user{i},{20 + i},Beijing" for i in range(30)),
    "board": "\n".join(["X | O | X", "---------", "O | X | O", "---------", "X | O | X"]),
    "bullets": "\n".join(f"- Item {c}: check the {w}" for c, w in zip("ABCDEFGHIJ", ["door", "window", "stove", "lights", "tap", "gas", "fan", "heater", "lock", "alarm"])),
    "poem with anaphora": "我爱你，春天的风；\n我爱你，夏天的雨；\n我爱你，秋天的月；\n我爱你，冬天的雪。\n",
    "dates": "\n".join(f"2024-01-{d:02d}: 晴" for d in range(1, 29)),
}


@pytest.mark.parametrize("name", sorted(LEGITIMATE))
def test_legitimate_repetition_is_not_a_loop(name: str) -> None:
    assert first_hit(LEGITIMATE[name]) is None


@pytest.mark.parametrize("name", sorted(HELD_OUT))
def test_held_out_legitimate_repetition_is_not_a_loop(name: str) -> None:
    assert first_hit(HELD_OUT[name]) is None


def test_integers_as_token_ids_work_like_characters() -> None:
    vocab = {1: "The", 2: " loop", 3: " goes", 4: " on", 5: ".", 6: " Intro"}
    d: LoopDetector[int] = LoopDetector(lambda t: sum(c.isalpha() for c in vocab[t]), boundary=lambda t: boundary_rank(vocab[t]))
    seq = [6, 5] + [1, 2, 3, 4, 5] * 12
    hits = [d.push(t) for t in seq]
    first = next(i for i, h in enumerate(hits) if h)
    assert hits[first].period == 5 and hits[first].start == 1  # the "." before the loop matches too
    assert hits[first].keep == 7  # cut after the sentence: " Intro. The loop goes on."
    assert first == 1 + 5 + TOKEN_RULES.min_run - 1  # as soon as 40 tokens repeat (from index 6 on)


def test_each_push_looks_only_at_earlier_copies_of_the_same_symbol() -> None:
    d: LoopDetector[int] = LoopDetector(lambda t: 1)
    for t in range(5000):  # all different: nothing to look at, no live run
        d.push(t)
    assert not d._runs
    for t in [7, 8, 9] * 5:
        d.push(t)
    assert set(d._runs) <= {3, 6, 9, 12}


def test_find_loops_extends_each_loop_to_its_end_and_finds_several() -> None:
    text = "开头。" + "我们再试一次。" * 6 + "中间的话。" + "好的好的，没问题。" * 5 + "结尾。"
    loops = find_loops(text, letters, LoopRules(min_copies=3, min_run=0, max_period=60, min_period=3))
    assert len(loops) == 2
    assert trim_loops(text) == "开头。我们再试一次。中间的话。好的好的，没问题。结尾。"


def test_trim_loops_keeps_one_copy_but_never_touches_numbers() -> None:
    assert trim_loops("丝绸、瓷器、瓷器、瓷器、瓷器、瓷器、瓷器") == "丝绸、瓷器"
    looped = "特点包括" + "坚固的防御路线、坚固的防御武器、" * 20 + "等。"
    assert trim_loops(looped) == "特点包括坚固的防御路线、坚固的防御武器、等。"
    assert trim_loops("共1000000人，耗时123123123秒") == "共1000000人，耗时123123123秒"


def test_stream_guard_answers_in_characters_of_the_sent_text() -> None:
    from xiaoq.engine.loops import StreamGuard

    vocab = {i: w.encode() for i, w in enumerate(["Intro", ".", "\n", "Same", " words", " again", " and", " more"])}
    guard = StreamGuard(lambda t: vocab[t])
    sent = ""
    seq = [0, 1, 2] + [3, 4, 5, 6, 7, 1, 2] * 10
    for t in seq:
        sent += vocab[t].decode()
        keep = guard.push(t, len(sent))
        if keep is not None:
            break
    assert keep is not None
    assert sent[:keep] == "Intro.\nSame words again and more.\n"


# ---- the stream guard on lines that differ only in their item number ----------------------------


def guard_keep(text: str) -> str | None:
    """What the stream guard keeps of ``text`` fed piece by piece (None: it never stops)."""
    from xiaoq.engine.loops import StreamGuard

    toks = pieces(text)
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(toks))}
    by_id = {i: tok.encode() for tok, i in vocab.items()}
    guard = StreamGuard(lambda t: by_id[t])
    sent = ""
    for tok in toks:
        sent += tok
        keep = guard.push(vocab[tok], len(sent))
        if keep is not None:
            return sent[:keep]
    return None


NUMBERED_RUNAWAYS = {
    "dot": ("应对压力的方法：\n1. 规律作息\n2. 适量运动\n", "{n}. 深呼吸放松\n"),
    "dash and dot": ("Tips for the trip:\n- 1. Pack light\n", "- {n}. Keep your passport in a safe place\n"),
    "comma and blank lines": ("建议如下：\n\n", "{n}、多和朋友交流沟通\n\n"),
    "paren": ("Steps:\n", "{n}) Check the cable again\n"),
}


@pytest.mark.parametrize("name", sorted(NUMBERED_RUNAWAYS))
def test_a_list_repeating_one_item_under_growing_numbers_is_a_loop(name: str) -> None:
    head, item = NUMBERED_RUNAWAYS[name]
    first = 3 if name == "dot" else 2
    text = head + "".join(item.format(n=n) for n in range(first, first + 30))
    kept = guard_keep(text)
    assert kept is not None
    assert kept.rstrip() == (head + item.format(n=first)).rstrip()  # the first copy stays, the rest goes
    assert len(text) - len(kept) > len(text) // 2  # stopped early, not at the end


def zh_numeral(n: int) -> str:
    """1..99 in Chinese numerals (十一, 二十三)."""
    digits = "零一二三四五六七八九"
    if n < 10:
        return digits[n]
    return (digits[n // 10] if n >= 20 else "") + "十" + (digits[n % 10] if n % 10 else "")


def test_a_list_numbered_in_chinese_numerals_repeating_one_item_is_a_loop() -> None:
    # the final eval's one cap hit of this shape: "五、", "六、", … the same item each time
    head = "学习建议：\n一、制定每周的学习计划\n"
    text = head + "".join(f"{zh_numeral(n)}、保持良好的作息习惯\n" for n in range(2, 40))
    kept = guard_keep(text)
    assert kept is not None and kept.rstrip() == (head + "二、保持良好的作息习惯").rstrip()
    assert len(text) - len(kept) > len(text) // 2


NUMBERED_CYCLES = {
    "four items, dot": ("Your weekly list:\n", ["{n}. Spinach: it goes well in soups and salads.\n", "{n}. Onion: a base for many sauces.\n",
                                               "{n}. Garlic: adds flavour to almost any dish.\n", "{n}. Tomatoes: good raw or cooked.\n"]),
    "three items, comma": ("采购清单：\n", ["{n}、菠菜：可以做汤也可以凉拌\n", "{n}、洋葱：很多酱汁的底料\n", "{n}、大蒜：几乎每道菜都能用\n"]),
    "four sections of three lines": ("Tea and coffee compared:\n\n", [
        "{n}. **Taste**:\n   - **Tea**: light and a little grassy.\n   - **Coffee**: bitter and strong.\n\n",
        "{n}. **Caffeine**:\n   - **Tea**: about a third of a cup of coffee.\n   - **Coffee**: enough to keep you awake.\n\n",
        "{n}. **Price**:\n   - **Tea**: cheap per cup.\n   - **Coffee**: dearer, especially in a cafe.\n\n",
        "{n}. **Making it**:\n   - **Tea**: hot water and a few minutes.\n   - **Coffee**: a grinder and a machine.\n\n"]),
}


@pytest.mark.parametrize("name", sorted(NUMBERED_CYCLES))
def test_a_list_cycling_through_the_same_items_under_growing_numbers_is_a_loop(name: str) -> None:
    head, items = NUMBERED_CYCLES[name]
    text = head + "".join(items[(n - 1) % len(items)].format(n=n) for n in range(1, 41))
    kept = guard_keep(text)
    assert kept is not None
    assert kept.rstrip() == (head + "".join(item.format(n=n) for n, item in enumerate(items, 1))).rstrip()  # one cycle stays
    assert len(text) - len(kept) > len(text) // 2


@pytest.mark.parametrize("name", sorted(LEGITIMATE) + sorted(HELD_OUT))
def test_the_stream_guard_leaves_legitimate_repetition_alone(name: str) -> None:
    assert guard_keep({**LEGITIMATE, **HELD_OUT}[name]) is None


NUMBERED_LEGITIMATE = {
    "items that differ": "\n".join(f"{n}. {w}" for n, w in enumerate(["苹果含有丰富的维生素", "香蕉能补充钾元素", "橙子富含维生素C", "葡萄可以做成葡萄干", "西瓜适合夏天解渴", "草莓酸甜可口", "芒果香气浓郁", "梨子润肺止咳", "桃子柔软多汁", "樱桃颜色鲜艳"], 1)),
    "numbers only": "\n".join(f"{n}. {n * n}" for n in range(1, 40)),
    "bare enumerators": "\n".join(f"{n}." for n in range(1, 60)),
    "one line of enumerators": " ".join(f"{n}. 选项" for n in range(1, 40)),
    "table rows that differ only by number": "| 序号 | 状态 |\n|---|---|\n" + "".join(f"| {n} | 正常运行 |\n" for n in range(1, 30)),
    "numbered code lines": "```\n1. print('-' * 20)\n2. print('-' * 20)\n3. print('-' * 20)\n4. done()\n```\n",
    "decimals": "\n".join(f"{n}.5 kg of flour" for n in range(1, 30)),
    "chinese numeral sections that differ": "".join(f"{zh_numeral(n)}、{t}\n" for n, t in enumerate(["项目背景", "研究方法", "实验结果", "讨论", "结论", "参考文献"], 1)),
    "parenthesised chinese numerals, items that differ": "".join(f"（{zh_numeral(n)}）第{n}周复习第{n}章\n" for n in range(1, 15)),
    "two rounds of the same exercises": "Two rounds:\n" + "".join(f"{n}. {x}\n" for n, x in enumerate(["Push-ups: ten slow repetitions", "Squats: fifteen repetitions", "Plank: hold for thirty seconds"] * 2, 1)) + "Then stretch.\n",
}


@pytest.mark.parametrize("name", sorted(NUMBERED_LEGITIMATE))
def test_numbered_lines_that_are_not_a_runaway_are_left_alone(name: str) -> None:
    assert guard_keep(NUMBERED_LEGITIMATE[name]) is None
