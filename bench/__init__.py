"""XiaoQ's benchmark suite: XiaoQ and llama-server side by side over the same HTTP client.

Run ``.venv/bin/python bench/run.py`` (see bench/README.md). The modules are importable as
``bench.<name>`` so tests can exercise the pure helpers (statistics, tables) without a server.
"""
