// XiaoQ's service worker (the build fills in SHELL and VERSION; see vite.config.ts).
//
// - The app shell (the build's files: scripts, styles, icons, the offline page) is cached when the
//   worker installs and answered from the cache: its names are content-hashed or small.
// - A page load goes to the network; when the server cannot be reached, the offline page answers.
// - Nothing else is touched: API answers (/api, /v1, /chat, /health, ...), the code runner's
//   sandbox and Pyodide go to the network as if there were no worker, and are never cached.
'use strict';
const SHELL = ["/assets/bash-I8pq0VWm.js","/assets/c-D87IyN5J.js","/assets/cpp-BFCWVspj.js","/assets/csharp-D-6syieo.js","/assets/css-AVCICof-.js","/assets/diff-BLTryEFx.js","/assets/dockerfile-Co-AyC30.js","/assets/go-4VmnRw3R.js","/assets/index-DDG5uPQy.css","/assets/index-Dq4jjO1d.js","/assets/ini-B3BVgEsG.js","/assets/java-DUnkFH8J.js","/assets/javascript-DUNaicwC.js","/assets/json-DdsocbVI.js","/assets/katex-HP8lGamR.js","/assets/kotlin-Za0-TyUR.js","/assets/lua-CD7o2Ci6.js","/assets/makefile-BoJC05FH.js","/assets/markdown-fzgiUVUV.js","/assets/php-kjAv1gW4.js","/assets/plaintext-CPM70vnn.js","/assets/powershell-BTRu8Ib4.js","/assets/python-CXf-_D6G.js","/assets/r-DWz4c2Y4.js","/assets/ruby-CcVTKuP4.js","/assets/rust-DsMvwcVK.js","/assets/sandbox-riDhu4Rv.js","/assets/scala-CTk4KSn7.js","/assets/shell-DYhVHYSm.js","/assets/sql-BC88IN-V.js","/assets/swift-jkyvy0ac.js","/assets/typescript-5pldp2kO.js","/assets/voice-B9pxif6h.js","/assets/xml-FcirFJJ2.js","/assets/yaml-drsDnIKT.js","/favicon.svg","/icons/apple-touch-icon.png","/icons/icon-192.png","/icons/icon-512.png","/icons/maskable-512.png","/manifest.webmanifest","/offline.css","/offline.html","/offline.js"];
const VERSION = "577eee1b1a6d";
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
