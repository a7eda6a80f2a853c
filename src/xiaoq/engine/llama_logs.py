"""llama.cpp's log lines, and the backend's one-time set-up that routes them.

Why a module of its own (not in :mod:`.context`): ``xiaoq serve`` begins loading the model on a
thread of its own the moment it starts (:mod:`.early_load`), and that load needs only these few
lines and llama.cpp's ctypes bindings. :mod:`.context` also imports the engine's types (asyncio)
and the rest of the engine: imported by the loading thread, they held the GIL against the main
thread's imports for tens of milliseconds before the load could begin.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections import deque
from contextlib import contextmanager
from typing import Iterator

import llama_cpp.llama_cpp as C

log = logging.getLogger("xiaoq.llama")

#: ggml's log levels (NONE, DEBUG, INFO, WARN, ERROR; 5 continues the previous line).
_LEVELS = {0: logging.INFO, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR, 5: logging.DEBUG}
#: llama.cpp's last error lines: a failed load's message says why (``LlamaModel._why``).
recent_errors: deque[str] = deque(maxlen=8)
_backend_lock = threading.Lock()
_backend_ready = False


@C.llama_log_callback
def _log_callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    # llama.cpp writes a lot to stderr at load; route it to logging (quiet by default) and keep the
    # last errors so a load failure can say *why* in its message.
    try:
        msg = text.decode("utf-8", errors="replace").rstrip()
    except Exception:  # pragma: no cover - never raise into C
        return
    if not msg:
        return
    lvl = _LEVELS.get(level, logging.DEBUG)
    if lvl >= logging.ERROR:
        recent_errors.append(msg)
    # llama.cpp reports model quirks as errors; they are not ours to print (failures raise)
    log.log(logging.INFO if lvl >= logging.WARNING else logging.DEBUG, "%s", msg)


def init_backend() -> None:
    """Once per process, before any other llama.cpp call: its log lines go to Python's logging
    (and :data:`recent_errors`), then the backend is initialised."""
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            C.llama_log_set(_log_callback, ctypes.c_void_p(0))
            C.llama_backend_init()
            _backend_ready = True


_quiet_lock = threading.Lock()
_quiet_depth = 0
#: The C library already loaded in this process: two of its functions serve as native callbacks.
LIBC = ctypes.CDLL(None)
_QUIET_LOG = C.llama_log_callback(ctypes.cast(LIBC.abs, ctypes.c_void_p).value)


@contextmanager
def quiet_llama_logs() -> Iterator[None]:
    """llama.cpp's log lines dropped natively meanwhile (libc's ``abs``, which ignores the extra
    arguments of a log callback, as the C ABI allows), instead of each going through Python.

    Why: loading the model and creating its context log ~1,750 lines here; each Python callback
    needs the GIL, which ``xiaoq serve``'s main thread holds while it imports the web stack, so
    every line waited up to a switch interval and the load finished after the web stack, not
    beside it. What is lost is only the reason of a failure: callers retry a failed load with
    the logs on (``LlamaModel._why`` in :mod:`.context` then has it)."""
    global _quiet_depth
    init_backend()
    with _quiet_lock:
        _quiet_depth += 1
        if _quiet_depth == 1:
            C.llama_log_set(_QUIET_LOG, ctypes.c_void_p(0))
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                C.llama_log_set(_log_callback, ctypes.c_void_p(0))
