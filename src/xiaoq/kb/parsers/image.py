"""Images (a photo of a notice, a scanned page): their OCR text, one paragraph."""

from __future__ import annotations

from xiaoq.kb import ocr
from xiaoq.kb.parsers import Limits
from xiaoq.kb.types import Block, ParsedDocument


def parse(data: bytes, limits: Limits) -> ParsedDocument:
    lines = ocr.image_lines(data)
    return ParsedDocument(blocks=[Block("\n".join(lines))] if lines else [])
