// Prepended to a JavaScript program as one line (so its line numbers shift by exactly one), and
// opens the async function the program runs in (top-level await works): console output goes to
// the runner page as text, an error or rejection ends the run with its line.
(function () {
  var post = self.postMessage.bind(self);
  function show(v) {
    if (typeof v === 'string') return v;
    try { var s = JSON.stringify(v); return s === undefined ? String(v) : s; } catch (e) { return String(v); }
  }
  function line(stream) { return function () { post({ kind: 'out', stream: stream, text: Array.prototype.map.call(arguments, show).join(' ') + '\n' }); }; }
  console.log = console.info = console.debug = line('stdout');
  console.warn = console.error = line('stderr');
  function describe(e) {
    if (!(e instanceof Error)) return 'Uncaught ' + show(e);
    var at = /:(\d+):\d+\)?\s*$/m.exec(String(e.stack || '').split('\n').filter(function (l) { return l.indexOf('blob:') >= 0; })[0] || '');
    return 'Uncaught ' + e.name + ': ' + e.message + (at ? ' (line ' + Math.max(1, at[1] - 1) + ')' : '');
  }
  self.__xiaoqDone = function () { setTimeout(function () { post({ kind: 'done', ok: true }); }, 0); };
  self.__xiaoqFail = function (e) { post({ kind: 'done', ok: false, error: describe(e) }); };
  self.addEventListener('unhandledrejection', function (e) { self.__xiaoqFail(e.reason); });
})();
;(async () => {
