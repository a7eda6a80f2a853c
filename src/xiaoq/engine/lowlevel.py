"""llama.cpp's ctypes bindings without the rest of llama-cpp-python, for a fast start.

XiaoQ drives llama.cpp through ``llama_cpp.llama_cpp`` (the ctypes module) only. Importing it the
usual way first runs ``llama_cpp/__init__.py``, which also imports the high-level ``Llama`` class
and with it numpy, jinja2 and diskcache: about 150 ms of interpreter time on these 2-core
machines, spent on the critical path of ``xiaoq serve`` (imports hold the GIL, so they do not
overlap with the web stack's) and never used by the server. Issue 12 counts process start to
first token against llama-server.

:func:`install` registers the ``llama_cpp`` package without running its ``__init__``: submodules
import as usual (``import llama_cpp.llama_cpp as C``), and the first attribute asked of the
package itself (``llama_cpp.Llama``, ``from llama_cpp import Llama``) runs the real ``__init__``
then, so code that wants the high-level API still gets it, only later.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE = "llama_cpp"


def install() -> None:
    """Register a lazily initialised ``llama_cpp`` package (nothing when it is already imported
    or not installed: the normal import then reports what is missing)."""
    if PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return
    module = importlib.util.module_from_spec(spec)  # sets __spec__, __path__, __file__, __loader__

    def complete(name: str) -> Any:
        """PEP 562 hook: the first missing attribute runs the package's real ``__init__``."""
        if name.startswith("__") and name.endswith("__") and name != "__version__":
            raise AttributeError(name)
        if module.__dict__.pop("__getattr__", None) is None:  # already completing (recursion)
            raise AttributeError(name)
        assert spec.loader is not None
        spec.loader.exec_module(module)
        return getattr(module, name)

    module.__getattr__ = complete  # type: ignore[method-assign]
    sys.modules[PACKAGE] = module


def version() -> str:
    """llama-cpp-python's version, read from its ``__init__`` source when the package has not run
    it (asking the lazy package would run it: the disk tier's fingerprint needs only the string)."""
    module = sys.modules.get(PACKAGE)
    if module is not None and "__getattr__" not in module.__dict__ and hasattr(module, "__version__"):
        return str(module.__version__)
    spec = importlib.util.find_spec(PACKAGE)
    origin = spec.origin if spec is not None else None
    if origin:
        found = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", Path(origin).read_text(encoding="utf-8"), re.M)
        if found:
            return found.group(1)
    import llama_cpp  # an unusual layout: ask the package itself

    return str(llama_cpp.__version__)


def is_initialised() -> bool:
    """Whether ``llama_cpp/__init__`` has run (tests check a server start does not run it)."""
    module: ModuleType | None = sys.modules.get(PACKAGE)
    return module is not None and "__getattr__" not in module.__dict__
