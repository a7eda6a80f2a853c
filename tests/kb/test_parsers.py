"""Every format parses into blocks that know their heading path, anchor and page."""

from __future__ import annotations

import pytest

from tests.kb import docs
from xiaoq.kb import ocr
from xiaoq.kb.parsers import Limits, parse, supported
from xiaoq.kb.types import UnreadableFile


def _find(doc, needle):  # type: ignore[no-untyped-def]
    found = [b for b in doc.blocks if needle in b.text]
    assert found, f"{needle!r} not in {[b.text for b in doc.blocks]}"
    return found[0]


def test_markdown_headings_and_slugs() -> None:
    doc = parse("handbook.md", docs.MARKDOWN.encode())
    block = _find(doc, "停车证每日九点发放")
    assert block.heading == ("行政手册", "停车 规定")
    assert block.anchor == "停车-规定"
    assert _find(doc, "locked with a cable").anchor == "laptop-policy"


def test_html_anchors_skip_scripts_and_toc() -> None:
    doc = parse("it.html", docs.HTML.encode())
    assert doc.title == "IT 指南"
    vpn = _find(doc, "青鸟VPN")
    assert vpn.heading == ("VPN 接入",) and vpn.anchor == "vpn-setup"
    assert _find(doc, "Heron.").anchor == "printers"
    assert _find(doc, "三楼 | Heron").heading == ("Printers",)
    assert not [b for b in doc.blocks if "不要索引" in b.text]


def test_docx_headings_and_tables() -> None:
    doc = parse("travel.docx", docs.docx_bytes())
    assert _find(doc, "六百元").heading == ("差旅制度", "住宿标准")
    assert _find(doc, "上海 | 600")


def test_xlsx_rows_carry_their_headers() -> None:
    doc = parse("rules.xlsx", docs.xlsx_bytes())
    block = _find(doc, "餐费")
    assert "项目: 餐费; 上限: 120; 备注: 每人每天" in block.text
    assert block.heading == ("报销",)


def test_csv_rows_carry_their_headers() -> None:
    doc = parse("rooms.csv", docs.CSV.encode())
    assert "name: Birch; room: 4F-02; extension: 8402" in _find(doc, "Birch").text


def test_pdf_outline_gives_heading_path_and_page_anchor() -> None:
    doc = parse("policy.pdf", docs.outlined_pdf_bytes())
    assert doc.pages == 2
    rotate = _find(doc, "ninety days")
    assert rotate.heading == ("Security", "Passwords") and rotate.page == 1 and rotate.anchor == "page=1"
    assert _find(doc, "lantern festival").heading == ("Holidays",)


def test_plain_text_gb18030_and_nul() -> None:
    doc = parse("notes.txt", "第一段。\n\n第二段\x00。".encode("gb18030"))
    assert [b.text for b in doc.blocks] == ["第一段。", "第二段。"]


def test_unreadable_files_say_why_in_one_line() -> None:
    with pytest.raises(UnreadableFile, match="unsupported file type .exe"):
        parse("setup.exe", b"MZ")
    with pytest.raises(UnreadableFile, match="cannot read it as PDF"):
        parse("broken.pdf", b"%PDF-1.4 garbage")
    with pytest.raises(UnreadableFile, match="too large"):
        parse("big.txt", b"x" * 2048, Limits(max_bytes=1024))
    with pytest.raises(UnreadableFile, match="no text"):
        parse("empty.md", b"   \n\n")
    assert supported("a.PDF") and not supported("a.exe")


def test_pdf_page_cap() -> None:
    with pytest.raises(UnreadableFile, match="too many pages: 2"):
        parse("policy.pdf", docs.outlined_pdf_bytes(), Limits(max_pages=1))


def test_ocr_reads_a_rendered_chinese_and_english_image() -> None:
    assert ocr.available(), "the ocr extra (rapidocr, onnxruntime) must be installed for the test suite"
    lines = ["会议室预订须提前两天", "Badge desk opens at 8:15"]
    doc = parse("notice.png", docs.render_image(lines))
    assert doc.blocks[0].text.split("\n") == lines


def test_ocr_reads_a_pdf_page_without_text_layer() -> None:
    doc = parse("scan.pdf", docs.scanned_pdf_bytes(["食堂周六不营业"]))
    assert _find(doc, "食堂周六不营业").page == 1
