"""The code runner's sandbox: the page that runs code blocks (``runner.js``), its workers'
sources, and where Pyodide's files live on disk (``xiaoq/pyodide``, filled from npm)."""
