// The code runner's own page: an opaque-origin sandbox (no allow-same-origin) whose CSP allows no
// connection, no script URL and no frame. It holds Pyodide's files once the app has sent them (it
// cannot fetch them itself), starts one Web Worker per language, relays the worker's output to the
// app as plain strings, and ends a run by terminating its worker (Stop or the time limit).
'use strict';
(function () {
  var app = window.parent;
  var files = null; // {name: ArrayBuffer} from the app, kept for the next Python worker
  var urls = null; // blob URLs of pyodide.mjs and pyodide.asm.mjs
  var py = null; // {worker, ready: Promise}
  var current = null; // {id, worker, timer}

  function send(msg) { app.postMessage(msg, '*'); }
  function text(v) { return typeof v === 'string' ? v.slice(0, 200000) : String(v); }
  function source(id) { return document.getElementById(id).textContent; }
  function blobUrl(parts, type) { return URL.createObjectURL(new Blob(parts, { type: type })); }

  function finish(id, result) {
    if (!current || current.id !== id) return;
    clearTimeout(current.timer);
    if (result.stopped || result.timedOut) {
      current.worker.terminate();
      if (py && current.worker === py.worker) py = null;
    }
    if (current.lang === 'javascript') current.worker.terminate();
    current = null;
    send({ type: 'done', id: id, ok: !!result.ok, error: result.error ? text(result.error) : '', timedOut: !!result.timedOut, stopped: !!result.stopped });
  }

  function relay(id, worker, data) {
    if (!data || typeof data !== 'object' || !current || current.worker !== worker) return;
    if (data.kind === 'out') send({ type: 'out', id: id, stream: data.stream === 'stderr' ? 'stderr' : 'stdout', text: text(data.text) });
    else if (data.kind === 'running') startClock(id);
    else if (data.kind === 'done') finish(id, { ok: data.ok === true, error: data.error });
  }

  function startClock(id) {
    if (!current || current.id !== id || current.timer) return;
    send({ type: 'status', id: id, state: 'running' });
    current.timer = setTimeout(function () { finish(id, { timedOut: true }); }, current.limit);
  }

  function pythonWorker() {
    if (py) return py;
    if (!urls) {
      urls = {
        mjs: blobUrl([files['pyodide.mjs']], 'text/javascript'),
        asm: blobUrl([files['pyodide.asm.mjs']], 'text/javascript'),
      };
    }
    var worker = new Worker(blobUrl([source('py-worker')], 'text/javascript'));
    worker.postMessage({ kind: 'init', base: new URL('/pyodide/', location.href).href, urls: urls, wasm: files['pyodide.asm.wasm'], stdlib: files['python_stdlib.zip'], lock: new TextDecoder().decode(files['pyodide-lock.json']) });
    py = { worker: worker };
    return py;
  }

  function jsWorker(code) {
    var prelude = source('js-prelude').split('\n').filter(function (l) { return !/^\s*\/\//.test(l); }).join(' ') + '\n';
    return new Worker(blobUrl([prelude, code, '\n})().then(__xiaoqDone, __xiaoqFail);'], 'text/javascript'));
  }

  function run(msg) {
    if (current) finish(current.id, { stopped: true });
    var id = msg.id;
    var worker;
    try {
      if (msg.lang === 'python') {
        if (msg.files) files = msg.files;
        if (!files) return send({ type: 'done', id: id, ok: false, error: 'Pyodide is not loaded' });
        worker = pythonWorker().worker;
      } else {
        worker = jsWorker(String(msg.code));
      }
    } catch (e) {
      return send({ type: 'done', id: id, ok: false, error: text(e && e.message) });
    }
    current = { id: id, worker: worker, lang: msg.lang, limit: Math.max(100, Math.min(Number(msg.limitMs) || 10000, 600000)), timer: 0 };
    worker.onmessage = function (e) { relay(id, worker, e.data); };
    worker.onerror = function (e) {
      e.preventDefault();
      var where = e.lineno ? ' (line ' + Math.max(1, e.lineno - 1) + ')' : '';
      finish(id, { ok: false, error: (e.message || 'error') + where });
    };
    if (msg.lang === 'python') {
      send({ type: 'status', id: id, state: 'loading' });
      worker.postMessage({ kind: 'run', code: String(msg.code) });
    } else {
      startClock(id);
    }
  }

  window.addEventListener('message', function (e) {
    if (e.source !== app || !e.data || typeof e.data !== 'object') return;
    if (e.data.type === 'run') run(e.data);
    else if (e.data.type === 'stop' && current) finish(current.id, { stopped: true });
  });
  send({ type: 'ready' });
})();
