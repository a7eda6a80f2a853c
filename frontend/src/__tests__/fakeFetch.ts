/**
 * A scripted `fetch` for the store tests: each call pops the next handler for its route, so a
 * test reads as "the server answers this, then that". Streaming bodies honour the abort signal.
 */
import { vi } from 'vitest'

export interface Call {
  method: string
  url: string
  body: unknown
  headers: Headers
}

type Handler = (call: Call, signal?: AbortSignal) => Response | Promise<Response>

export function jsonResponse(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(status === 204 ? null : JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json', ...headers },
  })
}

/** An SSE response whose events are pushed by the test (`push`, `close`). */
export function sseResponse(signal?: AbortSignal) {
  let ctl!: ReadableStreamDefaultController<Uint8Array>
  const enc = new TextEncoder()
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      ctl = c
    },
  })
  signal?.addEventListener('abort', () => {
    try {
      ctl.error(new DOMException('The operation was aborted.', 'AbortError'))
    } catch {
      /* already closed */
    }
  })
  return {
    response: new Response(stream, { status: 200, headers: { 'Content-Type': 'text/event-stream' } }),
    push(obj: unknown) {
      ctl.enqueue(enc.encode(`data: ${typeof obj === 'string' ? obj : JSON.stringify(obj)}\r\n\r\n`))
    },
    close() {
      ctl.close()
    },
  }
}

export function installFakeFetch() {
  const routes: { method: string; pattern: RegExp; handlers: Handler[] }[] = []
  const calls: Call[] = []
  const fetchMock = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = String(input)
    const method = (init.method ?? 'GET').toUpperCase()
    const call: Call = {
      method,
      url,
      body: typeof init.body === 'string' ? JSON.parse(init.body) : init.body,
      headers: new Headers(init.headers),
    }
    calls.push(call)
    const route = routes.find((r) => r.method === method && r.pattern.test(url) && r.handlers.length)
    if (!route) return jsonResponse({ error: { message: `unexpected ${method} ${url}` } }, 599)
    const handler = route.handlers.length > 1 ? route.handlers.shift()! : route.handlers[0]
    return handler(call, init.signal ?? undefined)
  })
  vi.stubGlobal('fetch', fetchMock)
  return {
    calls,
    /** Answers `method url~pattern` with the handlers in order (the last one repeats). */
    on(method: string, pattern: RegExp, ...handlers: Handler[]) {
      routes.unshift({ method, pattern, handlers })
    },
  }
}
