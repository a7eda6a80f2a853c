/**
 * The app's side of the code runner (a lazy chunk: loaded by the first Run). Code runs in the
 * server's `/runner` page inside a hidden iframe with `sandbox="allow-scripts"`: an opaque origin
 * whose own CSP allows no request at all, so it cannot fetch Pyodide either. This module fetches
 * Pyodide's files once (same origin, from XiaoQ itself) and hands the bytes over with postMessage;
 * messages are accepted only from that frame, and only as plain strings and flags.
 *
 * The runner page enforces the time limit by terminating its worker; a watchdog here removes the
 * whole frame if the page itself stops answering.
 */
import type { RunEvents, RunLang } from './state'

export const PYODIDE_FILES = ['pyodide.mjs', 'pyodide.asm.mjs', 'pyodide.asm.wasm', 'python_stdlib.zip', 'pyodide-lock.json']
/** Longest wait for Pyodide to load in the sandbox (a slow phone compiles 9 MB of WebAssembly). */
const LOAD_LIMIT_MS = 180_000
/** Grace the runner page gets beyond the time limit before the watchdog removes it. */
const GRACE_MS = 3_000

interface Current {
  id: number
  events: RunEvents
  limitMs: number
  watchdog: ReturnType<typeof setTimeout> | undefined
}

let frame: HTMLIFrameElement | null = null
let frameReady: Promise<HTMLIFrameElement> | null = null
let filesSent = false
let files: Promise<Record<string, ArrayBuffer>> | null = null
let current: Current | null = null
let stopping: { id: number; timer: ReturnType<typeof setTimeout> } | null = null
let nextId = 1

async function fetchFiles(fetchImpl: typeof fetch): Promise<Record<string, ArrayBuffer>> {
  const entries = await Promise.all(
    PYODIDE_FILES.map(async (name) => {
      const r = await fetchImpl(`/pyodide/${name}`)
      if (!r.ok) throw new Error(`/pyodide/${name}: HTTP ${r.status}`)
      return [name, await r.arrayBuffer()] as const
    }),
  )
  return Object.fromEntries(entries)
}

function openFrame(): Promise<HTMLIFrameElement> {
  if (frameReady) return frameReady
  const f = document.createElement('iframe')
  f.setAttribute('sandbox', 'allow-scripts')
  f.setAttribute('aria-hidden', 'true')
  f.tabIndex = -1
  f.title = 'code runner'
  f.hidden = true
  f.className = 'runner-frame'
  f.src = '/runner'
  frame = f
  frameReady = new Promise((resolve) => {
    const onReady = (e: MessageEvent): void => {
      if (e.source !== f.contentWindow || e.data?.type !== 'ready') return
      window.removeEventListener('message', onReady)
      resolve(f)
    }
    window.addEventListener('message', onReady)
  })
  document.body.appendChild(f)
  return frameReady
}

function closeFrame(): void {
  frame?.remove()
  frame = null
  frameReady = null
  filesSent = false
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : ''
}

function arm(ms: number): void {
  if (!current) return
  clearTimeout(current.watchdog)
  const id = current.id
  current.watchdog = setTimeout(() => {
    if (current?.id !== id) return
    closeFrame()
    finish({ ok: false, error: '', timedOut: true, stopped: false })
  }, ms)
}

function finish(result: { ok: boolean; error: string; timedOut: boolean; stopped: boolean }): void {
  if (!current) return
  clearTimeout(current.watchdog)
  const { events } = current
  current = null
  events.onDone(result)
}

/** One message from the runner page, checked: right frame, right run, known type. */
export function onRunnerMessage(e: MessageEvent): void {
  if (!frame || e.source !== frame.contentWindow) return
  const d = e.data as Record<string, unknown> | null
  if (!d || typeof d !== 'object') return
  if (stopping && d.id === stopping.id && d.type === 'done') {
    clearTimeout(stopping.timer)
    stopping = null
  }
  if (!current || d.id !== current.id) return
  if (d.type === 'status' && d.state === 'running') {
    current.events.onStatus('running')
    arm(current.limitMs + GRACE_MS)
  } else if (d.type === 'out') {
    current.events.onOutput(d.stream === 'stderr' ? 'stderr' : 'stdout', str(d.text))
  } else if (d.type === 'done') {
    finish({ ok: d.ok === true, error: str(d.error), timedOut: d.timedOut === true, stopped: d.stopped === true })
  }
}

window.addEventListener('message', onRunnerMessage)

/** Runs `code` in the sandbox; `events` hears its status, output and end. */
export async function runInSandbox(lang: RunLang, code: string, limitMs: number, events: RunEvents, fetchImpl: typeof fetch = fetch): Promise<void> {
  if (current) stopSandbox()
  const id = nextId++
  current = { id, events, limitMs, watchdog: undefined }
  arm(LOAD_LIMIT_MS)
  let payload: Record<string, ArrayBuffer> | undefined
  try {
    const f = await openFrame()
    if (lang === 'python' && !filesSent) {
      files ??= fetchFiles(fetchImpl).catch((err) => {
        files = null
        throw err
      })
      payload = await files
    }
    if (current?.id !== id) return
    f.contentWindow?.postMessage({ type: 'run', id, lang, code, limitMs, files: payload }, '*')
    if (payload) filesSent = true
  } catch (err) {
    if (current?.id === id) finish({ ok: false, error: String((err as Error)?.message ?? err), timedOut: false, stopped: false })
  }
}

/**
 * Stops the current run at once: the runner page terminates its worker, and when it does not
 * confirm within the grace period the whole frame is removed.
 */
export function stopSandbox(): void {
  if (!current) return
  const id = current.id
  frame?.contentWindow?.postMessage({ type: 'stop' }, '*')
  if (stopping) clearTimeout(stopping.timer)
  stopping = { id, timer: setTimeout(() => stopping?.id === id && ((stopping = null), closeFrame()), GRACE_MS) }
  finish({ ok: false, error: '', timedOut: false, stopped: true })
}

export const _testing = { closeFrame, current: () => current }
