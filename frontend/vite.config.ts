/**
 * Vite build of the XiaoQ web UI. The output goes straight into the Python package
 * (src/xiaoq/web) so `pip install xiaoq` ships the UI without Node. Asset names are
 * content-hashed (cache forever); index.html is the only file that must not be cached.
 */
import { defineConfig } from 'vitest/config'
import vue from '@vitejs/plugin-vue'
import { fileURLToPath } from 'node:url'
import { createHash } from 'node:crypto'
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import type { Plugin } from 'vite'

const outDir = fileURLToPath(new URL('../src/xiaoq/web', import.meta.url))
const publicDir = fileURLToPath(new URL('./public', import.meta.url))

function publicFiles(dir = publicDir): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name)
    return statSync(p).isDirectory() ? publicFiles(p) : [relative(publicDir, p).split('\\').join('/')]
  })
}

/**
 * Writes sw.js (src/pwa/sw.js with the list of the build's files to cache, and a version that
 * changes with any of them) at the root of the build, so its scope is the whole app. index.html
 * is left out: a page load always asks the server, and the offline page answers when it cannot.
 */
function serviceWorker(): Plugin {
  return {
    name: 'xiaoq-service-worker',
    apply: 'build',
    generateBundle(_options, bundle) {
      const built = Object.keys(bundle).filter((f) => f !== 'index.html' && !f.endsWith('.map'))
      const shell = [...built, ...publicFiles()].sort().map((f) => '/' + f)
      const hash = createHash('sha256').update(shell.join('\n'))
      for (const f of publicFiles().sort()) hash.update(readFileSync(join(publicDir, f)))
      const template = readFileSync(fileURLToPath(new URL('./src/pwa/sw.js', import.meta.url)), 'utf8')
      const source = template
        .replace('__SHELL__', JSON.stringify(shell))
        .replace('__VERSION__', JSON.stringify(hash.digest('hex').slice(0, 12)))
      this.emitFile({ type: 'asset', fileName: 'sw.js', source })
    },
  }
}

export default defineConfig({
  plugins: [vue(), serviceWorker()],
  base: '/',
  define: {
    // Runtime-only Vue: templates are compiled at build time, so no eval under a strict CSP.
    __VUE_OPTIONS_API__: 'false',
    __VUE_PROD_DEVTOOLS__: 'false',
    __VUE_PROD_HYDRATION_MISMATCH_DETAILS__: 'false',
  },
  build: {
    outDir,
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    // Keep everything a separate file: inline data: URLs for fonts/images would be fine for
    // img-src, but files keep the CSP simple and the size report honest.
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 400,
    rollupOptions: {
      output: {
        entryFileNames: 'assets/[name]-[hash].js',
        chunkFileNames: 'assets/[name]-[hash].js',
        assetFileNames: 'assets/[name]-[hash][extname]',
      },
    },
  },
  server: {
    // `npm run dev` talks to a XiaoQ server on the default port.
    proxy: {
      '/api': 'http://127.0.0.1:8000',
      '/health': 'http://127.0.0.1:8000',
    },
  },
  test: {
    environment: 'jsdom',
    include: ['src/**/*.test.ts'],
  },
})
