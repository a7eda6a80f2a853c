"""Lexical terms for SQLite FTS5 with the plain ``unicode61`` tokenizer.

FTS5's ``trigram`` tokenizer never matches a 2-character Chinese word (年假, 发票: most Chinese
words), and ``unicode61`` on raw Chinese makes a whole run between punctuation one token. So the
segmentation happens here: jieba's ``cut_for_search`` (its dictionary ships in the package) turns
documents and queries into space-joined words that ``unicode61`` then splits on the spaces, and
``bm25()`` ranks them. A second column holds CJK character bigrams, the fallback for words jieba
segments differently in a short query than in the document. No SQLite extension is needed.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Iterable

_CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_TOKEN_CHARS = re.compile(r"\w", re.UNICODE)
_lock = threading.Lock()
_ready = False

#: Question words and particles: they match nearly every passage and only add noise to an OR query.
STOPWORDS = frozenset(
    "的 了 是 吗 呢 吧 啊 在 和 与 或 及 把 被 就 都 也 还 要 会 能 可以 什么 怎么 怎样 如何 哪些 哪个 为什么 多少 几 "
    "我 你 他 她 它 我们 你们 请问 一下 这个 那个 这 那 有 没有 "
    "a an the is are was were be been do does did how what which who whom why when where can could "
    "should would will i you we it its of to in on for with by from at as or and not this that these those my your".split()
)


def _jieba():  # type: ignore[no-untyped-def]
    """jieba, initialised once (about a second to load its dictionary), quietly."""
    global _ready
    import jieba

    if not _ready:
        with _lock:
            if not _ready:
                jieba.setLogLevel(logging.WARNING)
                jieba.initialize()
                _ready = True
    return jieba


def words(text: str) -> list[str]:
    """Search words of ``text``: jieba's fine-grained segmentation, lower-cased, punctuation dropped."""
    out = []
    for w in _jieba().cut_for_search(text.lower()):
        w = w.strip()
        if w and _TOKEN_CHARS.search(w):
            out.append(w)
    return out


def bigrams(text: str) -> list[str]:
    """Overlapping character pairs of every CJK run (a lone character stands for itself)."""
    out: list[str] = []
    for run in _CJK_RUN.findall(text):
        out.extend([run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)])
    return out


def index_columns(text: str) -> tuple[str, str]:
    """The two FTS columns of a passage: its words, and its CJK bigrams."""
    return " ".join(words(text)), " ".join(bigrams(text))


def _or_query(tokens: Iterable[str]) -> str:
    unique = dict.fromkeys(t for t in tokens if t)
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in unique)


def word_query(text: str) -> str:
    """An FTS5 MATCH expression over the words column ('' when nothing searchable is left)."""
    kept = [w for w in words(text) if w not in STOPWORDS]
    return _or_query(kept or words(text))


def bigram_query(text: str) -> str:
    """An FTS5 MATCH expression over the bigram column ('' for a query without Chinese)."""
    return _or_query(bigrams(text))
