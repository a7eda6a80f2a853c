/**
 * The code runner's part of a rendered code block, as HTML for markdown.ts: the Run/Stop button
 * in the block's head, and under the code what the program printed, how it ended and "explain
 * this error". Everything printed is escaped here and sanitized again with the message.
 */
import { canRun, pyodide, runnableLang, runs, RUN_LIMIT_MS, type RunState } from './state'

type T = (key: 'run' | 'runStop' | 'runLoading' | 'runRunning' | 'runTimedOut' | 'runStopped' | 'runNoOutput' | 'runExplain' | 'runMissing', p?: Record<string, string | number>) => string

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

/** The key of one code block of one message. */
export function blockKey(messageKey: string, index: number): string {
  return `${messageKey}:${index}`
}

function button(cls: string, label: string, extra = ''): string {
  return `<button type="button" class="${cls}"${extra}>${esc(label)}</button>`
}

function runButton(lang: 'python' | 'javascript', run: RunState | undefined, t: T): string {
  if (run && run.phase !== 'done') return button('code-run-stop', t('runStop'))
  if (!canRun(lang)) {
    const hint = pyodide.status === 'missing' ? t('runMissing') : ''
    return button('code-run', t('run'), ` disabled title="${esc(hint)}"`)
  }
  return button('code-run', t('run'))
}

function outputPanel(run: RunState, t: T): string {
  const lines = run.output.map((o) => `<span class="run-${o.stream}">${esc(o.text)}</span>`).join('')
  let status = ''
  if (run.phase === 'loading') status = t('runLoading')
  else if (run.phase === 'running') status = t('runRunning')
  else if (run.timedOut) status = t('runTimedOut', { s: RUN_LIMIT_MS / 1000 })
  else if (run.stopped) status = t('runStopped')
  else if (!run.error && !run.output.length) status = t('runNoOutput')
  const error = run.error ? `<span class="run-error">${esc(run.error)}</span>` : ''
  const explain = run.phase === 'done' && (run.error || run.timedOut) ? button('code-explain link-btn', t('runExplain')) : ''
  const note = status ? `<p class="run-status">${esc(status)}</p>` : ''
  return `<div class="run-output run-${run.phase}"><pre>${lines}${error}</pre>${note}${explain}</div>`
}

/** The extras of the n-th block of a message, or null for a block that cannot run. */
export function runExtras(messageKey: string | undefined, index: number, label: string, t: T): { head: string; after: string } | null {
  const lang = runnableLang(label)
  if (!lang || messageKey === undefined) return null
  const run = runs.get(blockKey(messageKey, index))
  const missing = lang === 'python' && pyodide.status === 'missing' ? `<p class="run-missing">${esc(t('runMissing'))}</p>` : ''
  return { head: runButton(lang, run, t), after: run ? outputPanel(run, t) : missing }
}
