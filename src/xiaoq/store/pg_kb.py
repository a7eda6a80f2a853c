"""Knowledge bases on PostgreSQL: the :class:`~xiaoq.store.kb.KnowledgeStore` with its lexical
index in a ``tsvector`` instead of SQLite's FTS5 table.

Why a tsvector written as a literal: PostgreSQL's text search parsers do not segment Chinese, and
pg_trgm cannot match a two-character word by similarity. The words are already segmented in
Python (:mod:`xiaoq.kb.lexical`: jieba words and CJK bigrams, the same terms SQLite indexes), so
they go in exactly as they are, with their positions, words weighted ``A`` and bigrams ``B`` (the
two FTS5 columns), and a query's terms become ``'term':A`` / ``'term':B`` tsquery items. No parser
or dictionary runs on either side, so a term matches the very same term and nothing else.

Why the score is computed in SQL rather than ``ts_rank`` alone: ``ts_rank`` weighs every query
term the same, so a bigram found in half the passages (有几) would count as much as the rare word
the question is about (年假). Each term's ``ts_rank`` (term frequency, saturating, divided by the
passage length) is multiplied by bm25's inverse document frequency of that term in the searched
knowledge bases, and the products summed: the shape of bm25, ranked like SQLite's ``bm25()``.
Each candidate's tsvector is decompressed once (``|| ''``: a copy in memory) and matched once per
query term; the searched passages are counted from their documents, not row by row.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from xiaoq.store.kb import ChunkRow, KnowledgeStore

#: PostgreSQL keeps positions 1..16383 and at most 256 positions of one lexeme.
_MAX_POSITION = 16383
_MAX_POSITIONS = 256
#: Longer lexemes are refused by tsvector input (2047 bytes); such a "word" is not a word anyway.
_MAX_LEXEME_BYTES = 2000
#: ts_rank's weights for D, C, B, A: words (A) and bigrams (B) count alike, as in FTS5's bm25.
_RANK_WEIGHTS = [0.0, 0.0, 1.0, 1.0]

_SEARCH = """
WITH scope AS MATERIALIZED (
    SELECT c.id, c.lex || ''::tsvector AS lex FROM kb_chunks c JOIN kb_documents d ON d.id = c.document_id
    WHERE c.kb_id = ANY(?) AND d.status = 'ready' AND c.lex @@ ?::tsquery
),
total AS (SELECT coalesce(sum(d.chunk_count), 0)::float8 AS n FROM kb_documents d WHERE d.kb_id = ANY(?) AND d.status = 'ready'),
terms AS (SELECT t.term, t.term::tsquery AS q FROM unnest(?::text[]) AS t(term)),
hits AS MATERIALIZED (
    SELECT scope.id, terms.term, ts_rank(?::float4[], scope.lex, terms.q, 1) AS r FROM scope JOIN terms ON scope.lex @@ terms.q
),
df AS (SELECT term, count(*)::float8 AS df FROM hits GROUP BY term)
SELECT hits.id, sum(ln(1 + (total.n - df.df + 0.5) / (df.df + 0.5)) * hits.r) AS score
FROM hits JOIN df USING (term) CROSS JOIN total
GROUP BY hits.id ORDER BY score DESC, hits.id LIMIT ?
"""


def _quote(term: str) -> str:
    """A lexeme as a quoted tsvector/tsquery literal (no parser or dictionary applied to it)."""
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def _usable(term: str) -> bool:
    return bool(term) and len(term.encode()) <= _MAX_LEXEME_BYTES


def tsvector_literal(words: Iterable[str], grams: Iterable[str]) -> str:
    """The passage's terms with their positions: words weighted A, bigrams B (after the words)."""
    positions: dict[str, list[str]] = {}
    pos = 0
    for weight, terms in (("A", words), ("B", grams)):
        for term in terms:
            pos = min(pos + 1, _MAX_POSITION)
            if _usable(term):
                held = positions.setdefault(term, [])
                if len(held) < _MAX_POSITIONS:
                    held.append(f"{pos}{weight}")
    return " ".join(f"{_quote(t)}:{','.join(p)}" for t, p in positions.items())


def query_terms(words: Sequence[str], grams: Sequence[str]) -> list[str]:
    """One tsquery per searched term: ``'word':A`` and ``'gram':B``, each once."""
    items = [f"{_quote(w)}:A" for w in words if _usable(w)] + [f"{_quote(g)}:B" for g in grams if _usable(g)]
    return list(dict.fromkeys(items))


class PgKnowledgeStore(KnowledgeStore):
    """The knowledge-base repository over :class:`~xiaoq.store.pg.PgDatabase`."""

    def add_chunks(self, document_id: int, kb_id: int, rows: Iterable[ChunkRow]) -> None:
        """Insert one batch of chunks, each with its lexical index, in one short transaction."""
        with self.db.write() as conn:
            conn.executemany(
                "INSERT INTO kb_chunks (document_id, kb_id, position, heading, anchor, page, text, tokens, vector, lex) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?::tsvector)",
                [
                    (document_id, kb_id, pos, heading, anchor, page, text, tokens, vector, tsvector_literal(words.split(), grams.split()))
                    for pos, heading, anchor, page, text, tokens, vector, words, grams in rows
                ],
            )

    def lexical_search(self, kb_ids: Sequence[int], words: Sequence[str], grams: Sequence[str], limit: int) -> list[tuple[int, float]]:
        """``(chunk_id, score)`` best first for the passages holding any of these words or
        bigrams, scored like bm25 (see the module's docstring); higher is better."""
        terms = query_terms(words, grams)
        kb_ids = self.visible_ids(kb_ids)
        if not kb_ids or not terms:
            return []
        ids = [int(i) for i in kb_ids]
        rows: list[Any] = self.db.query(_SEARCH, [ids, " | ".join(terms), ids, terms, _RANK_WEIGHTS, limit])
        return [(int(r[0]), float(r[1])) for r in rows]
