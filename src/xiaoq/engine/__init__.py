"""The engines: llama.cpp in process (``llama_engine``), upstream servers, and the fake for tests.

Importing this package registers llama-cpp-python's package lazily (``lowlevel.install``): XiaoQ
uses only its ctypes bindings, and the package's own ``__init__`` costs ~150 ms of start-up.
"""

from xiaoq.engine.lowlevel import install as _install_lowlevel

_install_lowlevel()
