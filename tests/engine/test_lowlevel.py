"""``engine/lowlevel.py``: llama.cpp's ctypes bindings load without llama-cpp-python's ``__init__``
(numpy, jinja2, diskcache and the ``Llama`` class: ~150 ms of ``xiaoq serve``'s start), and code
that asks the package for its high-level API still gets it. Each case runs in a fresh interpreter,
since the package can be imported only once per process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_engine_imports_the_bindings_without_the_package_init() -> None:
    got = _run("""
import json, sys
from xiaoq.engine.llama_engine import LlamaEngine
from xiaoq.engine import lowlevel
import llama_cpp.llama_cpp as C
print(json.dumps({"init": lowlevel.is_initialised(), "high": "llama_cpp.llama" in sys.modules,
                  "numpy": "numpy" in sys.modules, "backend": hasattr(C, "llama_backend_init"),
                  "version": lowlevel.version()}))
""")
    assert got["backend"] and not got["init"] and not got["high"] and not got["numpy"]
    assert got["version"] and got["version"][0].isdigit()


@pytest.mark.parametrize("ask", ["import llama_cpp; x = llama_cpp.Llama", "from llama_cpp import Llama as x", "import llama_cpp; x = llama_cpp.__version__"])
def test_asking_the_package_for_its_api_runs_its_init_then(ask: str) -> None:
    got = _run(f"""
import json, sys
import xiaoq.engine
from xiaoq.engine import lowlevel
before = lowlevel.is_initialised()
{ask}
import llama_cpp
print(json.dumps({{"before": before, "after": lowlevel.is_initialised(), "x": str(x),
                  "same_bindings": llama_cpp.llama_cpp is sys.modules["llama_cpp.llama_cpp"],
                  "version": lowlevel.version() == llama_cpp.__version__}}))
""")
    assert got["before"] is False and got["after"] is True and got["x"]
    assert got["same_bindings"] and got["version"]


def test_nothing_changes_when_the_package_was_imported_first() -> None:
    got = _run("""
import json
import llama_cpp
import xiaoq.engine
from xiaoq.engine import lowlevel
print(json.dumps({"init": lowlevel.is_initialised(), "llama": hasattr(llama_cpp, "Llama")}))
""")
    assert got == {"init": True, "llama": True}
