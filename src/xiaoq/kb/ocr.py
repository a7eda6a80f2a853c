"""OCR for images and PDF pages without a text layer, through RapidOCR (the ``ocr`` extra).

RapidOCR's wheel ships the PP-OCR detection and recognition ONNX models, so nothing is downloaded
at run time; it reads mixed Chinese and English lines exactly where tesseract's chi_sim did not.
The engine is loaded once per process (about a second) and shared behind a lock: ONNX Runtime is
given one thread, because ingest must leave the other core to the chat model.
"""

from __future__ import annotations

import threading
from typing import Any

from xiaoq.kb.types import UnreadableFile

_lock = threading.Lock()
_engine: Any = None


def available() -> bool:
    """True when the optional ``rapidocr`` and ``onnxruntime`` packages are installed."""
    try:
        import onnxruntime  # noqa: F401
        import rapidocr  # noqa: F401
    except ImportError:
        return False
    return True


def _get_engine() -> Any:
    global _engine
    if _engine is None:
        if not available():
            raise UnreadableFile("needs OCR: install XiaoQ's 'ocr' extra (pip install 'xiaoq[ocr]')")
        import logging

        from rapidocr import RapidOCR

        logging.getLogger("RapidOCR").setLevel(logging.WARNING)
        _engine = RapidOCR(params={"Global.log_level": "warning", "EngineConfig.onnxruntime.intra_op_num_threads": 1, "EngineConfig.onnxruntime.inter_op_num_threads": 1})
    return _engine


def image_lines(data: bytes) -> list[str]:
    """The text lines RapidOCR finds in an encoded image (PNG, JPEG, ...), top to bottom."""
    with _lock:
        result = _get_engine()(data)
    return [str(t).strip() for t in (getattr(result, "txts", None) or ()) if str(t).strip()]
