/**
 * Vite build of the XiaoQ web UI. The output goes straight into the Python package
 * (src/xiaoq/web) so `pip install xiaoq` ships the UI without Node. Asset names are
 * content-hashed (cache forever); index.html is the only file that must not be cached.
 */
import { defineConfig } from 'vitest/config'
import vue from '@vitejs/plugin-vue'
import { fileURLToPath } from 'node:url'

const outDir = fileURLToPath(new URL('../src/xiaoq/web', import.meta.url))

export default defineConfig({
  plugins: [vue()],
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
