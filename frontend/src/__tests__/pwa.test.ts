import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import { followVisualViewport, registerServiceWorker } from '../pwa/pwa'

const SHELL = ['/assets/index-abc.js', '/offline.html', '/icons/icon-192.png']

/** The service worker's source with a test shell, run against fake `self`, `caches` and `fetch`. */
function loadWorker(network: (req: Request) => Promise<Response>) {
  const source = readFileSync(join(process.cwd(), 'src/pwa/sw.js'), 'utf8')
    .replace('__SHELL__', JSON.stringify(SHELL))
    .replace('__VERSION__', '"test"')
  const listeners: Record<string, (e: unknown) => void> = {}
  const cached = new Map<string, Response>(SHELL.map((p) => [p, new Response(`cached ${p}`)]))
  const scope = {
    location: { origin: 'http://127.0.0.1:8000' },
    addEventListener: (type: string, f: (e: unknown) => void) => (listeners[type] = f),
    skipWaiting: vi.fn(),
    clients: { claim: vi.fn() },
  }
  const caches = { match: vi.fn(async (path: string) => cached.get(path)?.clone()) }
  new Function('self', 'caches', 'fetch', source)(scope, caches, network)
  return async (url: string, init: { method?: string; mode?: string; destination?: string } = {}) => {
    let answer: Promise<Response> | undefined
    const request = { url, method: init.method ?? 'GET', mode: init.mode ?? 'cors', destination: init.destination ?? '' }
    listeners.fetch({ request, respondWith: (p: Promise<Response>) => (answer = p) })
    return answer ? await (await answer).text() : 'not handled'
  }
}

describe('the service worker', () => {
  it('never answers API requests, the sandbox or Pyodide: they go to the network untouched', async () => {
    const network = vi.fn(async () => new Response('network'))
    const fetchVia = loadWorker(network)
    for (const path of ['/api/conversations', '/v1/models', '/chat', '/health', '/pyodide/pyodide.asm.wasm', '/runner', '/api/x?y=1']) {
      expect(await fetchVia('http://127.0.0.1:8000' + path)).toBe('not handled')
    }
    expect(await fetchVia('http://127.0.0.1:8000/api/conversations', { method: 'POST' })).toBe('not handled')
    expect(network).not.toHaveBeenCalled()
  })

  it('answers the shell from its cache', async () => {
    const fetchVia = loadWorker(async () => new Response('network'))
    expect(await fetchVia('http://127.0.0.1:8000/assets/index-abc.js')).toBe('cached /assets/index-abc.js')
    expect(await fetchVia('http://other.example/assets/index-abc.js')).toBe('not handled')
  })

  it('loads pages from the server, and the offline page when it cannot be reached', async () => {
    let up = true
    const fetchVia = loadWorker(async () => (up ? new Response('the app') : Promise.reject(new TypeError('Failed to fetch'))))
    const page = { mode: 'navigate', destination: 'document' }
    expect(await fetchVia('http://127.0.0.1:8000/', page)).toBe('the app')
    up = false
    expect(await fetchVia('http://127.0.0.1:8000/#/c/abc', page)).toBe('cached /offline.html')
    // The sandbox frame is a navigation too, but not a page: it is left alone.
    expect(await fetchVia('http://127.0.0.1:8000/runner', { mode: 'navigate', destination: 'iframe' })).toBe('not handled')
  })
})

describe('registering it', () => {
  it('registers /sw.js for the whole app in a secure context only', () => {
    const register = vi.fn(async () => ({}))
    const nav = { serviceWorker: { register } } as unknown as Navigator
    expect(registerServiceWorker(nav, false)).toBe(false)
    expect(register).not.toHaveBeenCalled()
    expect(registerServiceWorker(nav, true)).toBe(true)
    expect(register).toHaveBeenCalledWith('/sw.js', { scope: '/' })
    expect(registerServiceWorker({} as Navigator, true)).toBe(false)
  })
})

describe('the on-screen keyboard', () => {
  it('sizes the app to the visible height and brings the focused box back into view', () => {
    const vv = Object.assign(new EventTarget(), { height: 844, offsetTop: 0 })
    const win = { visualViewport: vv, document } as unknown as Window
    const box = document.createElement('textarea')
    document.body.appendChild(box)
    box.focus()
    const seen = vi.fn()
    box.scrollIntoView = seen
    const stop = followVisualViewport(win)
    expect(document.documentElement.style.getPropertyValue('--app-height')).toBe('844px')
    vv.height = 507.6
    vv.dispatchEvent(new Event('resize'))
    expect(document.documentElement.style.getPropertyValue('--app-height')).toBe('508px')
    expect(seen).toHaveBeenCalledWith({ block: 'nearest' })
    stop()
    vv.height = 300
    vv.dispatchEvent(new Event('resize'))
    expect(document.documentElement.style.getPropertyValue('--app-height')).toBe('508px')
  })
})
