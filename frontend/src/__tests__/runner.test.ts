import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { renderMarkdown } from '../markdown'
import { t } from '../i18n'
import {
  appendOutput,
  checkPyodide,
  cleanTraceback,
  explainText,
  MAX_OUTPUT_CHARS,
  pyodide,
  runnableLang,
  runs,
  type RunState,
} from '../run/state'
import { blockKey, runExtras } from '../run/view'
import { _testing, onRunnerMessage, PYODIDE_FILES, runInSandbox, stopSandbox } from '../run/sandbox'

const TRACEBACK = `Traceback (most recent call last):
  File "/lib/python314.zip/_pyodide/_base.py", line 619, in eval_code_async
    await CodeRunner(
    ...<10 lines>...
    .run_async(globals, locals)
  File "/lib/python314.zip/_pyodide/_base.py", line 420, in run_async
    coroutine = eval(self.code, globals, locals)
  File "<code>", line 4, in <module>
    print(average([]))
  File "<code>", line 2, in average
    return sum(xs) / len(xs)
ZeroDivisionError: division by zero
`

function run(partial: Partial<RunState> = {}): RunState {
  return { lang: 'python', code: 'print(1)\n', phase: 'done', output: [], error: '', timedOut: false, stopped: false, ...partial }
}

function render(src: string, key = '7'): HTMLElement {
  const div = document.createElement('div')
  div.innerHTML = renderMarkdown(src, { codeExtras: (i, lang) => runExtras(key, i, lang, t) })
  return div
}

beforeEach(() => {
  runs.clear()
  pyodide.status = 'unknown'
})

describe('which blocks run', () => {
  it('knows Python and JavaScript by their usual fence labels, nothing else', () => {
    for (const l of ['python', 'py', 'Python3']) expect(runnableLang(l)).toBe('python')
    for (const l of ['javascript', 'js', 'JS', 'mjs']) expect(runnableLang(l)).toBe('javascript')
    for (const l of ['', 'text', 'bash', 'sh', 'typescript', 'html', 'pycon']) expect(runnableLang(l)).toBeNull()
  })

  it('puts Run on Python and JavaScript blocks only, and not on a message without a key', () => {
    pyodide.status = 'ok'
    const root = render('```python\nprint(1)\n```\n\n```bash\nls\n```\n\n```js\nconsole.log(1)\n```')
    const blocks = root.querySelectorAll('.code-block')
    expect(blocks[0].querySelector('.code-run')).not.toBeNull()
    expect(blocks[1].querySelector('.code-run')).toBeNull()
    expect(blocks[2].querySelector('.code-run')).not.toBeNull()
    const streaming = document.createElement('div')
    streaming.innerHTML = renderMarkdown('```python\nprint(1)\n```', { codeExtras: (i, lang) => runExtras(undefined, i, lang, t) })
    expect(streaming.querySelector('.code-run')).toBeNull()
  })

  it('disables Python’s Run with one line on how to add Pyodide when the server has none', () => {
    pyodide.status = 'missing'
    const root = render('```python\nprint(1)\n```\n\n```js\nconsole.log(1)\n```')
    const [py, js] = root.querySelectorAll('.code-block')
    expect(py.querySelector('.code-run')!.hasAttribute('disabled')).toBe(true)
    expect(py.querySelector('.run-missing')!.textContent).toContain('npm ci')
    expect(js.querySelector('.code-run')!.hasAttribute('disabled')).toBe(false)
    expect(js.querySelector('.run-missing')).toBeNull()
  })
})

describe('the output under a block', () => {
  it('shows what ran as text, never as markup, and Stop while it runs', () => {
    pyodide.status = 'ok'
    runs.set(blockKey('7', 0), run({ phase: 'running', output: [{ stream: 'stdout', text: '<img src=x onerror=alert(1)>\n' }] }))
    const root = render('```python\nprint("<img>")\n```')
    expect(root.querySelector('img')).toBeNull()
    expect(root.querySelector('.run-stdout')!.textContent).toBe('<img src=x onerror=alert(1)>\n')
    expect(root.querySelector('.code-run-stop')).not.toBeNull()
    expect(root.querySelector('.code-explain')).toBeNull()
  })

  it('offers "explain this error" after an error or a timeout', () => {
    runs.set(blockKey('7', 0), run({ lang: 'javascript', error: 'Uncaught Error: boom (line 1)' }))
    runs.set(blockKey('7', 1), run({ lang: 'javascript', timedOut: true }))
    runs.set(blockKey('7', 2), run({ lang: 'javascript', output: [{ stream: 'stdout', text: 'ok\n' }] }))
    const blocks = render('```js\nthrow 1\n```\n\n```js\nfor(;;);\n```\n\n```js\n1\n```').querySelectorAll('.code-block')
    expect(blocks[0].querySelector('.run-error')!.textContent).toBe('Uncaught Error: boom (line 1)')
    expect(blocks[0].querySelector('.code-explain')).not.toBeNull()
    expect(blocks[1].querySelector('.run-status')!.textContent).toContain('10')
    expect(blocks[1].querySelector('.code-explain')).not.toBeNull()
    expect(blocks[2].querySelector('.code-explain')).toBeNull()
  })

  it('keeps a printing loop from growing the page without end', () => {
    const r = run()
    for (let i = 0; i < 5000; i++) appendOutput(r, 'stdout', 'x'.repeat(100))
    const total = r.output.reduce((n, o) => n + o.text.length, 0)
    expect(total).toBeLessThanOrEqual(MAX_OUTPUT_CHARS + 2)
    expect(r.output).toHaveLength(1)
    appendOutput(r, 'stderr', 'late')
    expect(r.output).toHaveLength(1)
  })

  it('drops Pyodide’s own frames from a traceback and keeps the learner’s', () => {
    const clean = cleanTraceback(TRACEBACK)
    expect(clean).not.toContain('_pyodide')
    expect(clean).not.toContain('CodeRunner')
    expect(clean).toBe(
      'Traceback (most recent call last):\n  File "<code>", line 4, in <module>\n    print(average([]))\n' +
        '  File "<code>", line 2, in average\n    return sum(xs) / len(xs)\nZeroDivisionError: division by zero',
    )
  })

  it('asks about the error with the code and the traceback', () => {
    const text = explainText(run({ code: 'print(average([]))\n', error: 'ZeroDivisionError: division by zero' }), t)
    expect(text).toContain('```python\nprint(average([]))\n```')
    expect(text).toContain('ZeroDivisionError: division by zero')
  })
})

describe('asking the server for Pyodide', () => {
  it('asks once, and again only after a network failure', async () => {
    const f = vi.fn().mockRejectedValueOnce(new TypeError('down')).mockResolvedValue(new Response('{}', { status: 404 }))
    await checkPyodide(f)
    expect(pyodide.status).toBe('unknown')
    await checkPyodide(f)
    expect(pyodide.status).toBe('missing')
    await checkPyodide(f)
    expect(f).toHaveBeenCalledTimes(2)
    expect(f).toHaveBeenCalledWith('/pyodide/index.json')
  })
})

describe('the sandbox frame', () => {
  let posted: unknown[]
  let frame: HTMLIFrameElement

  function events() {
    return { onStatus: vi.fn(), onOutput: vi.fn(), onDone: vi.fn() }
  }

  function fromFrame(data: unknown, source: MessageEventSource | null = frame.contentWindow): void {
    onRunnerMessage(new MessageEvent('message', { data, source }))
  }

  async function opened(): Promise<void> {
    await vi.waitFor(() => expect(document.querySelector('iframe.runner-frame')).not.toBeNull())
    frame = document.querySelector('iframe.runner-frame')!
    posted = []
    vi.spyOn(frame.contentWindow!, 'postMessage').mockImplementation((m: unknown) => void posted.push(m))
    window.dispatchEvent(new MessageEvent('message', { data: { type: 'ready' }, source: frame.contentWindow }))
  }

  afterEach(() => {
    stopSandbox()
    _testing.closeFrame()
    vi.useRealTimers()
  })

  it('is a sandboxed frame of /runner without same-origin', async () => {
    const ev = events()
    void runInSandbox('javascript', 'console.log(1)', 1000, ev)
    await opened()
    expect(frame.getAttribute('sandbox')).toBe('allow-scripts')
    expect(frame.getAttribute('src')).toBe('/runner')
    await vi.waitFor(() => expect(posted).toHaveLength(1))
    expect(posted[0]).toMatchObject({ type: 'run', lang: 'javascript', code: 'console.log(1)', limitMs: 1000, files: undefined })
  })

  it('hands Pyodide’s files over once, fetched from the server on the first Python run', async () => {
    const f = vi.fn(async (url: string) => new Response(new TextEncoder().encode(url)))
    const ev = events()
    void runInSandbox('python', 'print(1)', 1000, ev, f as unknown as typeof fetch)
    await opened()
    await vi.waitFor(() => expect(posted).toHaveLength(1))
    const first = posted[0] as { id: number; files: Record<string, ArrayBuffer> }
    expect(Object.keys(first.files).sort()).toEqual([...PYODIDE_FILES].sort())
    expect(f.mock.calls.map((c) => c[0]).sort()).toEqual(PYODIDE_FILES.map((n) => `/pyodide/${n}`).sort())
    fromFrame({ type: 'done', id: first.id, ok: true, error: '' })
    await runInSandbox('python', 'print(2)', 1000, events(), f as unknown as typeof fetch)
    expect((posted[1] as { files?: unknown }).files).toBeUndefined()
    expect(f).toHaveBeenCalledTimes(PYODIDE_FILES.length)
  })

  it('listens to its own frame only, and to the current run only', async () => {
    const ev = events()
    void runInSandbox('javascript', 'x', 1000, ev)
    await opened()
    await vi.waitFor(() => expect(posted).toHaveLength(1))
    const id = (posted[0] as { id: number }).id
    fromFrame({ type: 'out', id, stream: 'stdout', text: 'forged' }, window)
    fromFrame({ type: 'out', id: id + 100, stream: 'stdout', text: 'old run' })
    fromFrame({ type: 'out', id, stream: 'weird', text: { not: 'text' } })
    expect(ev.onOutput).toHaveBeenCalledTimes(1)
    expect(ev.onOutput).toHaveBeenCalledWith('stdout', '')
    fromFrame({ type: 'done', id, ok: 'yes', error: 42, timedOut: 1 })
    expect(ev.onDone).toHaveBeenCalledWith({ ok: false, error: '', timedOut: false, stopped: false })
  })

  it('removes a frame that does not end the run after the time limit', async () => {
    const ev = events()
    void runInSandbox('javascript', 'for(;;);', 1000, ev)
    await opened()
    await vi.waitFor(() => expect(posted).toHaveLength(1))
    vi.useFakeTimers()
    fromFrame({ type: 'status', id: (posted[0] as { id: number }).id, state: 'running' })
    expect(ev.onStatus).toHaveBeenCalledWith('running')
    vi.advanceTimersByTime(1000 + 3000 + 1)
    expect(ev.onDone).toHaveBeenCalledWith({ ok: false, error: '', timedOut: true, stopped: false })
    expect(document.querySelector('iframe.runner-frame')).toBeNull()
  })

  it('stops at once, and removes a frame that does not confirm', async () => {
    const ev = events()
    void runInSandbox('javascript', 'for(;;);', 1000, ev)
    await opened()
    await vi.waitFor(() => expect(posted).toHaveLength(1))
    vi.useFakeTimers()
    stopSandbox()
    expect(posted[1]).toEqual({ type: 'stop' })
    expect(ev.onDone).toHaveBeenCalledWith({ ok: false, error: '', timedOut: false, stopped: true })
    vi.advanceTimersByTime(3001)
    expect(document.querySelector('iframe.runner-frame')).toBeNull()
  })
})
