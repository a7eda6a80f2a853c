// Python worker (started from a blob URL): loads Pyodide from the bytes the runner
// page passes in, then runs each program in a fresh namespace. Pyodide asks fetch() for its .wasm
// and standard library; during loading fetch answers from those bytes, and afterwards the sandbox's
// CSP (connect-src 'none') refuses every request.
let pyodide = null;
let loading = null;

async function load(init) {
  const realFetch = self.fetch;
  const bytes = { 'pyodide.asm.wasm': [init.wasm, 'application/wasm'], 'python_stdlib.zip': [init.stdlib, 'application/zip'] };
  self.fetch = async (url) => {
    const hit = bytes[String(url).split('/').pop()];
    if (!hit) throw new TypeError('no network in the sandbox');
    return new Response(hit[0], { headers: { 'Content-Type': hit[1] } });
  };
  try {
    const { loadPyodide } = await import(init.urls.mjs);
    const asm = await import(init.urls.asm);
    pyodide = await loadPyodide({ indexURL: init.base, createPyodideModule: asm.default, lockFileContents: init.lock, fullStdLib: false });
  } finally {
    self.fetch = realFetch;
  }
  const out = (stream) => ({ batched: (text) => self.postMessage({ kind: 'out', stream, text: text + '\n' }) });
  pyodide.setStdout(out('stdout'));
  pyodide.setStderr(out('stderr'));
  // No keyboard reaches the sandbox: input() ends at once with EOFError instead of Pyodide's
  // default, which in a worker fails with an opaque OSError.
  pyodide.setStdin({ stdin: () => null });
}

async function run(code) {
  await loading;
  self.postMessage({ kind: 'running' });
  const scope = pyodide.globals.get('dict')();
  try {
    await pyodide.runPythonAsync(code, { globals: scope, filename: '<code>' });
    self.postMessage({ kind: 'done', ok: true });
  } catch (e) {
    self.postMessage({ kind: 'done', ok: false, error: String((e && e.message) || e) });
  } finally {
    scope.destroy();
  }
}

self.onmessage = (e) => {
  const msg = e.data;
  if (msg.kind === 'init') loading = load(msg);
  else if (msg.kind === 'run') run(msg.code).catch((err) => self.postMessage({ kind: 'done', ok: false, error: String((err && err.message) || err) }));
};
