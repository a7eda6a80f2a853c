"""Lexical terms of passages and queries, segmented here so that any store can index them as they are.

FTS5's ``trigram`` tokenizer never matches a 2-character Chinese word (年假, 发票: most Chinese
words), and ``unicode61`` on raw Chinese makes a whole run between punctuation one token. So the
segmentation happens here: jieba's ``cut_for_search`` (its dictionary ships in the package) turns
documents and queries into words; CJK character bigrams beside them catch the words jieba segments
differently in a short query than in the document. SQLite indexes the space-joined words in an
FTS5 ``unicode61`` column ranked by ``bm25()``; PostgreSQL in a weighted ``tsvector`` (see
:mod:`xiaoq.store.kb` and :mod:`xiaoq.store.pg_kb`). No database extension is needed.
"""

from __future__ import annotations

import logging
import re
import threading

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


def query_words(text: str) -> list[str]:
    """The words a query searches for: its words without stopwords (all of them when only
    stopwords are left, rather than searching for nothing), each once, in order."""
    kept = [w for w in words(text) if w not in STOPWORDS]
    return list(dict.fromkeys(kept or words(text)))


def query_bigrams(text: str) -> list[str]:
    """The CJK bigrams a query searches for, each once ([] for a query without Chinese)."""
    return list(dict.fromkeys(bigrams(text)))
