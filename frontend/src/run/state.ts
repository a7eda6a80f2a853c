/**
 * The code runner's state in the page: which code blocks ran, what they printed, whether Pyodide
 * is there. Small and eager, because code blocks render it; the sandbox itself (iframe, Pyodide's
 * files) is a lazy chunk (`sandbox.ts`) loaded by the first Run.
 */
import { reactive } from 'vue'

export type RunLang = 'python' | 'javascript'
export type RunPhase = 'loading' | 'running' | 'done'

export interface RunState {
  lang: RunLang
  code: string
  phase: RunPhase
  output: { stream: 'stdout' | 'stderr'; text: string }[]
  error: string
  timedOut: boolean
  stopped: boolean
}

/** What the sandbox reports back for one run (see sandbox.ts). */
export interface RunEvents {
  onStatus(phase: RunPhase): void
  onOutput(stream: 'stdout' | 'stderr', text: string): void
  onDone(result: { ok: boolean; error: string; timedOut: boolean; stopped: boolean }): void
}

/** How long a program may run once started (Pyodide's loading is not counted). */
export const RUN_LIMIT_MS = 10_000
/** Output kept per run: a program printing in a loop must not grow the page without end. */
export const MAX_OUTPUT_CHARS = 100_000

export const runs = reactive(new Map<string, RunState>())
export const pyodide = reactive({ status: 'unknown' as 'unknown' | 'checking' | 'ok' | 'missing' })
/** Text "explain this error" puts in the composer (Composer.vue watches it). */
export const composerDraft = reactive({ text: null as string | null })

const LANGS: Record<string, RunLang> = { python: 'python', py: 'python', python3: 'python', javascript: 'javascript', js: 'javascript', mjs: 'javascript' }

/** The runnable language of a fence's label, or null. */
export function runnableLang(label: string): RunLang | null {
  return LANGS[label.toLowerCase()] ?? null
}

/** Asks the server once whether Pyodide's files are there (Python's Run button depends on it). */
export async function checkPyodide(fetchImpl: typeof fetch = fetch): Promise<void> {
  if (pyodide.status !== 'unknown') return
  pyodide.status = 'checking'
  try {
    const r = await fetchImpl('/pyodide/index.json')
    pyodide.status = r.ok ? 'ok' : 'missing'
  } catch {
    pyodide.status = 'unknown' // the server is unreachable: ask again next time
  }
}

export function canRun(lang: RunLang): boolean {
  return lang === 'javascript' || pyodide.status === 'ok'
}

/** Appends output, dropping what goes beyond MAX_OUTPUT_CHARS (with a mark that it did). */
export function appendOutput(run: RunState, stream: 'stdout' | 'stderr', text: string): void {
  const used = run.output.reduce((n, o) => n + o.text.length, 0)
  if (used >= MAX_OUTPUT_CHARS) return
  const room = MAX_OUTPUT_CHARS - used
  const piece = text.length > room ? text.slice(0, room) + '\n…' : text
  const last = run.output[run.output.length - 1]
  if (last && last.stream === stream) last.text += piece
  else run.output.push({ stream, text: piece })
}

/**
 * A Python traceback without Pyodide's own frames (the ones in its zipped standard library that
 * run the program), which explain nothing to a learner.
 */
export function cleanTraceback(text: string): string {
  const lines = text.replace(/\s+$/, '').split('\n')
  const out: string[] = []
  for (let i = 0; i < lines.length; i++) {
    if (/^ {2}File "\/lib\/python[^"]*\/_pyodide\//.test(lines[i])) {
      while (i + 1 < lines.length && /^ {3,}/.test(lines[i + 1])) i++
      continue
    }
    out.push(lines[i])
  }
  return out.join('\n')
}

/** Starts running a block's code (the sandbox stops whatever ran before: one run at a time). */
export async function startRun(key: string, lang: RunLang, code: string): Promise<void> {
  runs.set(key, { lang, code, phase: lang === 'python' ? 'loading' : 'running', output: [], error: '', timedOut: false, stopped: false })
  const run = runs.get(key)!
  const events: RunEvents = {
    onStatus: (phase) => (run.phase = phase),
    onOutput: (stream, text) => appendOutput(run, stream, text),
    onDone: (r) => Object.assign(run, { phase: 'done', error: lang === 'python' ? cleanTraceback(r.error) : r.error, timedOut: r.timedOut, stopped: r.stopped }),
  }
  const { runInSandbox } = await import('./sandbox')
  await runInSandbox(lang, code, RUN_LIMIT_MS, events)
}

/** Stops whatever runs (one run at a time, in one sandbox). */
export async function stopRun(): Promise<void> {
  const { stopSandbox } = await import('./sandbox')
  stopSandbox()
}

/** The chat message that asks the assistant about a failed run. */
export function explainText(run: RunState, t: (key: 'runExplainPrompt', p: Record<string, string>) => string): string {
  return t('runExplainPrompt', { lang: run.lang, code: run.code.replace(/\s+$/, ''), error: run.error })
}
