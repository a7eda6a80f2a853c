// XiaoQ's service worker (the build fills in SHELL and VERSION; see vite.config.ts).
//
// - The app shell (the build's files: scripts, styles, icons, the offline page) is cached when the
//   worker installs and answered from the cache: its names are content-hashed or small.
// - A page load goes to the network; when the server cannot be reached, the offline page answers.
// - Nothing else is touched: API answers (/api, /v1, /chat, /health, ...), the code runner's
//   sandbox and Pyodide go to the network as if there were no worker, and are never cached.
'use strict';
const SHELL = __SHELL__;
const VERSION = __VERSION__;
const CACHE = 'xiaoq-shell-' + VERSION;
const OFFLINE = '/offline.html';

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((n) => n.startsWith('xiaoq-shell-') && n !== CACHE).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.mode === 'navigate' && request.destination === 'document') {
    event.respondWith(fetch(request).catch(() => caches.match(OFFLINE, { cacheName: CACHE })));
  } else if (SHELL.includes(url.pathname)) {
    event.respondWith(caches.match(url.pathname, { cacheName: CACHE }).then((hit) => hit || fetch(request)));
  }
});
