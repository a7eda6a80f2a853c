"""What the model is told when it answers from passages: XiaoQ's rules (system message) and worked
turns (before the conversation), in the reply's language only (a bilingual instruction pulls the
0.5B model towards one language), in one of two modes.

- **Answer** (the retrieval gate passed, :mod:`xiaoq.kb.gate`): retrieval has already judged that
  the passages hold the answer, so neither the rules nor the worked turns mention refusing; they
  show a question the passages cover in part, answered in part. Asked to judge for itself, the
  model refused most answerable questions.
- **Judge** (no gate: words-only retrieval, or the gate turned off): the model must also decide,
  so the rules end with the fixed refusal and the worked turns show one, then a cited answer (last,
  so the nearer example is the usual case: with the refusal last the model refused answerable
  questions too). Told in words alone, the model replied with a bare "[1]" and never refused. This
  mode is fragile: with a locker passage beside the refusal instead of the printer one, the model
  refused an answerable question; with the locker passage and the meeting-room answer, it made up an
  answer from the example ("...在系统里报销 [1]") instead of refusing.

The worked turns' facts are made up, office facts unlike any real knowledge base, and nothing the
evaluation or the tests ask about. Their cited answers are one sentence with the number at its
end: with a number after each of two sentences the model replied with a bare "[1]".
"""

from __future__ import annotations

from xiaoq.chat.language import Language

#: What the model says when the passages hold no answer (one fixed phrase, so a refusal is plain
#: to the user and countable by the evaluation); also the reply the gate gives without the model.
REFUSAL: dict[Language, str] = {"zh": "资料中没有找到相关内容。", "en": "The documents do not contain this."}

_CITE: dict[Language, str] = {
    "zh": "回答资料问题时：只使用用户消息里编号的资料，不要编造；用中文写出完整的句子回答问题，并在句末标注所用资料的编号，如 [1]。",
    "en": "When answering from passages: use only the numbered passages in the user's message and never make anything up; "
    "answer the question in full English sentences and end each sentence with the number of the passage it uses, like [1].",
}
#: The rules of the judge mode: cite, and refuse only when the passages say nothing.
RULES: dict[Language, str] = {
    "zh": f"{_CITE['zh']}只有资料里完全没有相关内容时，才只回答：{REFUSAL['zh']}",
    "en": f"{_CITE['en']} Only when the passages say nothing about the question, reply only: {REFUSAL['en']}",
}
#: The rules of the answer mode: cite, and answer the covered part of a question.
ANSWER_RULES: dict[Language, str] = {
    "zh": f"{_CITE['zh']}资料只讲到问题的一部分时，就回答资料里有的那部分。",
    "en": f"{_CITE['en']} When the passages cover only part of the question, answer that part.",
}

#: The made-up passages of the judge mode's worked turns (its refusal sees [1] alone).
JUDGE_PASSAGES: dict[Language, tuple[str, str]] = {
    "zh": ("[1] 办公指南 — 打印机\n二楼的彩色打印机需要刷工牌才能取件，墨盒由行政部更换。",
           "[2] 办公指南 — 会议室\n大会议室可容纳二十人，需提前一天在系统里预约。"),
    "en": ("[1] Office guide — Printers\nThe colour printer on the second floor releases jobs when you tap your badge; facilities replace the toner.",
           "[2] Office guide — Meeting rooms\nThe large meeting room seats twenty and must be booked a day ahead."),
}
#: (question, reply): a refusal over passage [1], then an answer citing [2].
JUDGE_TURNS: dict[Language, tuple[tuple[str, str], tuple[str, str]]] = {
    "zh": (("健身房几点开门？", REFUSAL["zh"]), ("大会议室能坐多少人？", "大会议室可容纳二十人，需要提前一天在系统里预约 [2]。")),
    "en": (("When does the gym open?", REFUSAL["en"]),
           ("How many people fit in the large meeting room?", "The large meeting room seats twenty people and must be booked a day ahead [2].")),
}
#: The made-up passages of the answer mode's worked turns, all three shown to both.
ANSWER_PASSAGES: dict[Language, tuple[str, str, str]] = {
    "zh": ("[1] 员工手册 — 储物柜\n储物柜按工位分配，钥匙丢失后须到安保处申请补配，费用为五十元。",
           "[2] 员工手册 — 雨伞\n前台备有共享雨伞，借用时登记姓名，三天内归还。",
           "[3] 员工手册 — 自行车棚\n自行车棚在地下一层东侧，晚上十一点后锁门。"),
    "en": ("[1] Staff handbook — Lockers\nLockers are assigned by desk; a lost key is replaced at the security desk for fifty yuan.",
           "[2] Staff handbook — Umbrellas\nReception lends shared umbrellas: write your name in the book and bring it back within three days.",
           "[3] Staff handbook — Bicycle shed\nThe bicycle shed is on the east side of the first basement level and is locked after 11 p.m."),
}
#: (question, reply): the covered part of a question answered, then a cited answer.
ANSWER_TURNS: dict[Language, tuple[tuple[str, str], tuple[str, str]]] = {
    "zh": (("自行车棚在哪里？能给电动车充电吗？", "自行车棚在地下一层东侧，晚上十一点后锁门 [3]。"),
           ("储物柜钥匙丢了怎么办？", "储物柜钥匙丢失后，要到安保处申请补配，费用为五十元 [1]。")),
    "en": (("Where is the bicycle shed, and can I charge an e-bike there?", "The bicycle shed is on the east side of the first basement level and is locked after 11 p.m. [3]."),
           ("What do I do if I lose my locker key?", "A lost locker key is replaced at the security desk for fifty yuan [1].")),
}
