"""Start reading the model file the moment ``xiaoq serve`` starts, before the settings exist.

Why: on a 2-core machine ``xiaoq serve``'s start is two chains side by side, the interpreter
importing the settings and the web stack (GIL-bound) and llama.cpp loading the model (C, the GIL
released). Measured on a quiet machine, the model chain became the longer one once the imports
shrank: its load could only begin after pydantic-settings had been imported and the settings
built (~250 ms in), so ``/health`` waited for the model. Issue 12 counts process start to first
token against llama-server.

:func:`start` looks at the command line and the ``XIAOQ_*`` environment for the few things the
load depends on (the file, memory-mapping, deterministic mode), and when it can tell them for
sure begins ``llama_model_load_from_file`` on a thread of its own. The engine then asks
:func:`take` for a model of the same file and load parameters; anything else (a different file,
a flag this pre-reading did not understand) is loaded the usual way and the early model freed,
so a wrong guess costs time, never correctness.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

log = logging.getLogger(__name__)

#: What a loaded model depends on besides its file: (memory-mapped, repacked weights allowed).
Key = tuple[bool, bool]

_TRUE = {"1", "true", "yes", "on", "t", "y"}
_FALSE = {"0", "false", "no", "off", "f", "n"}

_lock = threading.Lock()
_pending: Optional[tuple[Path, Key, "Future[Any]"]] = None


def key(use_mmap: bool, deterministic: bool) -> Key:
    """The load parameters a model is shared under (deterministic mode loads without repacking)."""
    return (use_mmap, not deterministic)


def plan(argv: Sequence[str], environ: Mapping[str, str]) -> Optional[tuple[Path, Key]]:
    """The model file and load key ``xiaoq serve`` will use, when the command line and environment
    say so unambiguously; None otherwise (not ``serve``, help, upstreams, pinned CPUs, no explicit
    ``--model`` file, a value this reading cannot interpret)."""
    if not argv or argv[0] != "serve":
        return None
    model = environ.get("XIAOQ_MODEL")
    mmap = _env_bool(environ, "XIAOQ_MMAP", True)
    deterministic = _env_bool(environ, "XIAOQ_DETERMINISTIC", False)
    if mmap is None or deterministic is None or environ.get("XIAOQ_UPSTREAM") or environ.get("XIAOQ_CPUS"):
        return None
    args = list(argv[1:])
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if arg in ("-h", "--help") or name in ("--upstream", "--cpus"):
            return None
        if name == "--model":
            if not eq:
                if i + 1 >= len(args):
                    return None
                i += 1
                value = args[i]
            model = value
        elif arg in ("--mmap", "--no-mmap"):
            mmap = arg == "--mmap"
        elif arg in ("--deterministic", "--no-deterministic"):
            deterministic = arg == "--deterministic"
        i += 1
    if not model:
        return None
    path = Path(model).expanduser()
    if not path.is_file():
        return None
    return path, key(mmap, deterministic)


def start(argv: Sequence[str], environ: Optional[Mapping[str, str]] = None) -> bool:
    """Begin loading the model of this ``xiaoq serve`` command line now; False when not planned."""
    global _pending
    planned = plan(argv, os.environ if environ is None else environ)
    if planned is None:
        return False
    path, k = planned
    future: "Future[Any]" = Future()
    with _lock:
        if _pending is not None:
            return False
        _pending = (path, k, future)
    threading.Thread(target=_load, args=(path, k, future), name="xiaoq-early-load", daemon=True).start()
    return True


def take(path: Path, k: Key) -> Optional[Any]:
    """The early-loaded model (a ``llama_model *``) when it is of this file and key, waiting for its
    load to finish; None when there is none, it failed, or it does not match (then it is freed)."""
    global _pending
    with _lock:
        pending, _pending = _pending, None
    if pending is None:
        return None
    early_path, early_key, future = pending
    if early_key == k and _same_file(early_path, path):
        try:
            model = future.result()
        except Exception:  # noqa: BLE001 - the usual load runs and reports the cause
            return None
        if model:
            log.debug("model load began before the settings were read: %s", path)
        return model or None
    future.add_done_callback(_free)
    return None


def _load(path: Path, k: Key, future: "Future[Any]") -> None:
    try:
        from . import lowlevel

        lowlevel.install()
        import llama_cpp.llama_cpp as C

        from .llama_logs import quiet_llama_logs

        with quiet_llama_logs():  # a failed load is retried by the engine with its logs on
            mp = C.llama_model_default_params()
            mp.n_gpu_layers = 0
            mp.load_mode = C.LLAMA_LOAD_MODE_MMAP if k[0] else C.LLAMA_LOAD_MODE_NONE
            mp.use_extra_bufts = k[1]
            future.set_result(C.llama_model_load_from_file(str(path).encode(), mp))
    except BaseException as e:  # noqa: BLE001 - handed to take(), which falls back to the usual load
        future.set_exception(e)


def _free(future: "Future[Any]") -> None:
    try:
        model = future.result()
    except Exception:  # noqa: BLE001
        return
    if model:
        import llama_cpp.llama_cpp as C

        C.llama_model_free(model)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _env_bool(environ: Mapping[str, str], name: str, default: bool) -> Optional[bool]:
    value = environ.get(name)
    if value is None:
        return default
    v = value.strip().lower()
    return True if v in _TRUE else False if v in _FALSE else None
