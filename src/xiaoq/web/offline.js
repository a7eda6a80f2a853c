// The offline page (served by the service worker when the server cannot be reached): Retry, and
// a check of /health every few seconds that reopens the app once the server answers.
'use strict';
(function () {
  function reopen() { location.reload(); }
  function check() {
    fetch('/health', { cache: 'no-store' }).then(reopen, function () {});
  }
  document.getElementById('retry').addEventListener('click', reopen);
  setInterval(check, 5000);
})();
