import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { installFakeFetch, jsonResponse, sseResponse } from './fakeFetch'
import { boot, continueReply, deleteConversation, editAndResend, ensureConversation, loadPresets, openConversation, regenerate, saveConversationSettings, send, settingUp, state, stopStreaming, undoDelete } from '../store'
import { kbApi } from '../kb'
import { setApiKey } from '../api'

const CONV = { id: 'c1', title: 'hi', created_at: '2026-11-29T00:00:00Z', updated_at: '2026-11-29T00:00:00Z' }

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 0))
}

beforeEach(async () => {
  vi.useRealTimers()
  setApiKey(null)
  state.conversations = []
  state.messages = []
  state.currentId = null
  state.banner = null
  state.streams = {}
  state.liveViews = {}
})

afterEach(() => {
  vi.unstubAllGlobals()
  vi.useRealTimers()
})

describe('sending', () => {
  it('creates the conversation, streams tokens and applies the done event', async () => {
    const f = installFakeFetch()
    f.on('GET', /\/api\/conversations\?/, () => jsonResponse({ data: [CONV] }))
    f.on('POST', /\/api\/conversations$/, () => jsonResponse(CONV, 201))
    f.on('POST', /\/api\/conversations\/c1\/messages$/, (_c, signal) => {
      const s = sseResponse(signal)
      queueMicrotask(() => {
        s.push({ start: true, user_message_id: 1, message_id: 2 })
        s.push({ token: '你' })
        s.push({ token: '好' })
        s.push({ done: true, message_id: 2, finish_reason: 'stop', timings: { ttft_ms: 5, tokens_per_second: 40 }, budget: { trimmed: true } })
        s.push('[DONE]')
        s.close()
      })
      return s.response
    })
    await send('hello')
    await settle()
    expect(state.currentId).toBe('c1')
    expect(location.hash).toBe('#/c/c1')
    const [user, bot] = state.messages
    expect(user).toMatchObject({ id: 1, role: 'user', content: 'hello' })
    expect(bot).toMatchObject({ id: 2, role: 'assistant', content: '你好', status: 'complete', streaming: false })
    expect(bot.timings?.tokens_per_second).toBe(40)
    expect(bot.budget?.trimmed).toBe(true)
    const post = f.calls.find((c) => c.url.endsWith('/messages'))!
    expect(post.body).toEqual({ content: 'hello' })
    expect(state.streams).toEqual({})
  })

  it('a question sent while the knowledge base is being chosen waits for it, in the same conversation', async () => {
    const f = installFakeFetch()
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    f.on('GET', /\/api\/conversations\?/, () => jsonResponse({ data: [CONV] }))
    f.on('POST', /\/api\/conversations$/, async () => {
      await gate
      return jsonResponse(CONV, 201)
    })
    f.on('PATCH', /\/api\/conversations\/c1$/, () => jsonResponse({ ...CONV, kb: 'office' }))
    f.on('POST', /\/api\/conversations\/c1\/messages$/, (_c, signal) => {
      const s = sseResponse(signal)
      queueMicrotask(() => {
        s.push({ done: true, message_id: 2, finish_reason: 'stop' })
        s.close()
      })
      return s.response
    })
    const choosing = settingUp(ensureConversation().then((id) => kbApi.setConversationKb(id!, 'office')))
    const sending = send('停车证几点发放？')
    await settle()
    release()
    await Promise.all([choosing, sending])
    await settle()
    const order = f.calls.map((c) => `${c.method} ${new URL(c.url, 'http://x').pathname}`).filter((c) => !c.startsWith('GET'))
    expect(order).toEqual(['POST /api/conversations', 'PATCH /api/conversations/c1', 'POST /api/conversations/c1/messages'])
  })

  it('a question typed while the page opens the conversation in its URL goes to that conversation', async () => {
    const f = installFakeFetch()
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    history.replaceState(null, '', '#/c/c1') // no hashchange: boot reads the URL
    f.on('GET', /\/health$/, () => jsonResponse({ status: 'ok' }))
    f.on('GET', /\/api\/config$/, () => jsonResponse({ auth: 'none' }))
    f.on('GET', /\/api\/presets/, () => jsonResponse({ data: [] }))
    f.on('GET', /\/api\/conversations\?/, () => jsonResponse({ data: [CONV] }))
    f.on('GET', /\/api\/conversations\/c1$/, async () => {
      await gate
      return jsonResponse({ ...CONV, messages: [] })
    })
    f.on('POST', /\/api\/conversations\/c1\/messages$/, (_c, signal) => {
      const s = sseResponse(signal)
      queueMicrotask(() => {
        s.push({ start: true, user_message_id: 1, message_id: 2 })
        s.push({ token: '好' })
        s.push({ done: true, message_id: 2, finish_reason: 'stop' })
        s.close()
      })
      return s.response
    })
    const starting = boot()
    const sending = send('第一句话')
    await settle()
    release()
    await Promise.all([starting, sending])
    await settle()
    const posts = f.calls.filter((c) => c.method === 'POST').map((c) => new URL(c.url, 'http://x').pathname)
    expect(posts).toEqual(['/api/conversations/c1/messages'])
    expect(state.messages.map((m) => [m.role, m.content])).toEqual([['user', '第一句话'], ['assistant', '好']])
    history.replaceState(null, '', location.pathname)
  })

  it('retries after a 503 busy, using Retry-After, and shows the countdown', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const f = installFakeFetch()
    state.currentId = 'c1'
    f.on('GET', /\/api\/conversations\?/, () => jsonResponse({ data: [CONV] }))
    f.on(
      'POST',
      /\/messages$/,
      () => jsonResponse({ error: { message: 'busy', type: 'server_error', code: 'queue_full' } }, 503, { 'Retry-After': '2' }),
      (_c, signal) => {
        const s = sseResponse(signal)
        queueMicrotask(() => {
          s.push({ token: 'ok' })
          s.push({ done: true, finish_reason: 'stop' })
          s.close()
        })
        return s.response
      },
    )
    const done = send('q')
    await vi.advanceTimersByTimeAsync(0)
    expect(state.busyRetryIn).toBe(2)
    await vi.advanceTimersByTimeAsync(1000)
    expect(state.busyRetryIn).toBe(1)
    expect(f.calls.filter((c) => c.url.endsWith('/messages')).length).toBe(1)
    await vi.advanceTimersByTimeAsync(1000)
    await vi.advanceTimersByTimeAsync(100)
    await done
    expect(f.calls.filter((c) => c.url.endsWith('/messages')).length).toBe(2)
    expect(state.busyRetryIn).toBeNull()
    expect(state.messages[1]).toMatchObject({ content: 'ok', status: 'complete' })
  })

  it('Stop aborts the stream, tells the server, and keeps the partial reply', async () => {
    const f = installFakeFetch()
    state.currentId = 'c1'
    f.on('GET', /\/api\/conversations\?/, () => jsonResponse({ data: [CONV] }))
    f.on('POST', /\/stop$/, () => jsonResponse({ stopped: true }))
    let stream!: ReturnType<typeof sseResponse>
    f.on('POST', /\/messages$/, (_c, signal) => {
      stream = sseResponse(signal)
      queueMicrotask(() => {
        stream.push({ start: true, user_message_id: 5, message_id: 6 })
        stream.push({ token: 'partial ' })
        stream.push({ token: 'answer' })
      })
      return stream.response
    })
    const done = send('tell me a long story')
    await settle()
    await new Promise((r) => setTimeout(r, 40)) // let the token buffer flush
    expect(state.streams.c1).toBeTruthy()
    stopStreaming()
    await done
    const bot = state.messages[1]
    expect(bot).toMatchObject({ id: 6, content: 'partial answer', status: 'incomplete', streaming: false })
    expect(f.calls.some((c) => c.method === 'POST' && c.url === '/api/conversations/c1/stop')).toBe(true)
    expect(state.streams).toEqual({})
  })

  it('marks the reply failed when the server is down', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => {
      throw new TypeError('Failed to fetch')
    }))
    state.currentId = 'c1'
    await send('q')
    expect(state.messages[1]).toMatchObject({ status: 'error', errorKind: 'down' })
    expect(state.serverStatus).toBe('down')
  })

  it('shows a mid-stream error event on the reply', async () => {
    const f = installFakeFetch()
    state.currentId = 'c1'
    f.on('GET', /\/api\/conversations\?/, () => jsonResponse({ data: [CONV] }))
    f.on('POST', /\/messages$/, (_c, signal) => {
      const s = sseResponse(signal)
      queueMicrotask(() => {
        s.push({ token: 'half' })
        s.push({ error: { message: 'engine died', code: 'model_error' }, message_id: 3 })
        s.close()
      })
      return s.response
    })
    await send('q')
    await settle()
    expect(state.messages[1]).toMatchObject({ content: 'half', status: 'error', error: 'engine died' })
  })
})

describe('switching while a reply streams', () => {
  it('keeps streaming into the first conversation and shows it live on return', async () => {
    const f = installFakeFetch()
    state.currentId = 'c1'
    f.on('GET', /\/api\/conversations\?/, () => jsonResponse({ data: [CONV] }))
    f.on('GET', /\/api\/conversations\/c2$/, () =>
      jsonResponse({ ...CONV, id: 'c2', messages: [{ id: 50, role: 'user', content: 'other', status: 'complete' }] }),
    )
    let stream!: ReturnType<typeof sseResponse>
    f.on('POST', /\/c1\/messages$/, (_c, signal) => {
      stream = sseResponse(signal)
      queueMicrotask(() => stream.push({ token: 'one ' }))
      return stream.response
    })
    const done = send('q1')
    await settle()
    await openConversation('c2')
    expect(state.messages.map((m) => m.content)).toEqual(['other'])
    stream.push({ token: 'two' })
    await settle()
    await new Promise((r) => setTimeout(r, 40))
    await openConversation('c1') // no GET: the live list comes back, still streaming
    expect(f.calls.some((c) => c.url === '/api/conversations/c1')).toBe(false)
    expect(state.messages.map((m) => m.content)).toEqual(['q1', 'one two'])
    expect(state.messages[1].streaming).toBe(true)
    stream.push({ done: true, finish_reason: 'stop' })
    stream.close()
    await done
    expect(state.messages[1]).toMatchObject({ content: 'one two', status: 'complete', streaming: false })
  })
})

describe('regenerate and edit', () => {
  function loaded() {
    return {
      ...CONV,
      messages: [
        { id: 1, role: 'user', content: 'first', status: 'complete' },
        { id: 2, role: 'assistant', content: 'a1', status: 'complete' },
        { id: 3, role: 'user', content: 'second', status: 'complete' },
        { id: 4, role: 'assistant', content: 'a2', status: 'complete' },
      ],
    }
  }

  function answer(text: string) {
    return (_c: unknown, signal?: AbortSignal) => {
      const s = sseResponse(signal)
      queueMicrotask(() => {
        s.push({ start: true, message_id: 9 })
        s.push({ token: text })
        s.push({ done: true, message_id: 9, finish_reason: 'stop' })
        s.close()
      })
      return s.response
    }
  }

  it('regenerate replaces the last answer', async () => {
    const f = installFakeFetch()
    f.on('GET', /\/api\/conversations\/c1$/, () => jsonResponse(loaded()))
    f.on('GET', /\/api\/conversations\?/, () => jsonResponse({ data: [CONV] }))
    f.on('POST', /\/c1\/regenerate$/, answer('a2 again'))
    await openConversation('c1')
    await regenerate()
    await settle()
    expect(state.messages.map((m) => m.content)).toEqual(['first', 'a1', 'second', 'a2 again'])
  })

  it('shows summarizing until the first token, then the answer', async () => {
    const f = installFakeFetch()
    f.on('GET', /\/api\/conversations\/c1$/, () => jsonResponse(loaded()))
    f.on('GET', /\/api\/conversations\?/, () => jsonResponse({ data: [CONV] }))
    const s = sseResponse()
    f.on('POST', /\/c1\/regenerate$/, () => s.response)
    await openConversation('c1')
    const running = regenerate()
    s.push({ start: true, message_id: 9 })
    s.push({ status: 'summarizing' })
    await settle()
    const last = state.messages[state.messages.length - 1]
    expect(last.streaming && last.progress).toBe('summarizing')
    s.push({ token: 'a2 again' })
    s.push({ done: true, message_id: 9, finish_reason: 'stop' })
    s.close()
    await running
    expect(last.progress).toBeUndefined()
    expect(state.messages.map((m) => m.content)).toEqual(['first', 'a1', 'second', 'a2 again'])
  })

  it('a regenerate that fails shows the reply the server kept', async () => {
    const f = installFakeFetch()
    f.on('GET', /\/api\/conversations\/c1$/, () => jsonResponse(loaded()))
    f.on('GET', /\/api\/conversations\?/, () => jsonResponse({ data: [CONV] }))
    f.on('POST', /\/c1\/regenerate$/, (_c, signal) => {
      const s = sseResponse(signal)
      queueMicrotask(() => {
        s.push({ start: true, message_id: 9 })
        s.push({ token: 'half' })
        s.push({ error: { message: 'engine failed', type: 'server_error', code: 'model_error' }, message_id: 9 })
        s.close()
      })
      return s.response
    })
    await openConversation('c1')
    await regenerate()
    await settle()
    expect(state.messages.map((m) => m.content)).toEqual(['first', 'a1', 'second', 'a2'])
    expect(state.banner).toContain('engine failed')
  })

  it('edit rewrites the question and drops what came after it', async () => {
    const f = installFakeFetch()
    f.on('GET', /\/api\/conversations\/c1$/, () => jsonResponse(loaded()))
    f.on('GET', /\/api\/conversations\?/, () => jsonResponse({ data: [CONV] }))
    f.on('POST', /\/c1\/messages\/1\/edit$/, answer('new a1'))
    await openConversation('c1')
    await editAndResend(1, 'first, edited')
    await settle()
    expect(state.messages.map((m) => m.content)).toEqual(['first, edited', 'new a1'])
    expect(f.calls.find((c) => c.url.endsWith('/edit'))!.body).toEqual({ content: 'first, edited' })
  })
})

describe('delete with undo', () => {
  it('hides at once, undo restores, otherwise deletes on the server after the delay', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const f = installFakeFetch()
    f.on('DELETE', /\/api\/conversations\/c1$/, () => new Response(null, { status: 204 }))
    state.conversations = [{ ...CONV }, { ...CONV, id: 'c2' }]
    deleteConversation('c1')
    expect(state.conversations.map((c) => c.id)).toEqual(['c2'])
    undoDelete()
    expect(state.conversations.map((c) => c.id)).toEqual(['c1', 'c2'])
    await vi.advanceTimersByTimeAsync(10_000)
    expect(f.calls.some((c) => c.method === 'DELETE')).toBe(false)
    deleteConversation('c1')
    await vi.advanceTimersByTimeAsync(5_000)
    expect(f.calls.filter((c) => c.method === 'DELETE').map((c) => c.url)).toEqual(['/api/conversations/c1'])
    expect(state.pendingDelete).toBeNull()
  })
})

describe('API key', () => {
  it('sends the stored key as a Bearer token and asks again on 401', async () => {
    const f = installFakeFetch()
    f.on('GET', /\/api\/conversations\/c1$/, () => jsonResponse({ error: { message: 'bad key', code: 'invalid_api_key' } }, 401))
    setApiKey('sekrit')
    state.needKey = false
    const { onUnauthorized } = await import('../api')
    onUnauthorized(() => (state.needKey = true))
    await openConversation('c1')
    expect(f.calls[0].headers.get('Authorization')).toBe('Bearer sekrit')
    expect(state.needKey).toBe(true)
    expect(localStorage.getItem('xiaoq.apiKey')).toBe('sekrit')
  })
})

describe('the loop guard', () => {
  it('cuts the repeated copies the server had already streamed, then Continue appends to the same reply', async () => {
    const f = installFakeFetch()
    state.currentId = 'c1'
    f.on('GET', /\/api\/conversations\?/, () => jsonResponse({ data: [CONV] }))
    f.on('POST', /\/messages$/, (_c, signal) => {
      const s = sseResponse(signal)
      queueMicrotask(() => {
        s.push({ start: true, user_message_id: 1, message_id: 2 })
        for (const piece of ['答案😀：', '好的。', '好的。', '好的。']) s.push({ token: piece })
        s.push({ done: true, message_id: 2, finish_reason: 'repetition', text_length: 7 })
        s.close()
      })
      return s.response
    })
    f.on('POST', /\/continue$/, (_c, signal) => {
      const s = sseResponse(signal)
      queueMicrotask(() => {
        s.push({ start: true, message_id: 2 })
        s.push({ token: '还有别的。' })
        s.push({ done: true, message_id: 2, finish_reason: 'stop' })
        s.close()
      })
      return s.response
    })
    await send('q')
    await settle()
    const bot = state.messages[1]
    expect(bot).toMatchObject({ id: 2, content: '答案😀：好的。', finish_reason: 'repetition', status: 'complete' })
    await continueReply()
    await settle()
    expect(state.messages).toHaveLength(2)
    expect(state.messages[1]).toMatchObject({ id: 2, content: '答案😀：好的。还有别的。', finish_reason: 'stop', status: 'complete' })
    expect(f.calls.some((c) => c.url.endsWith('/api/conversations/c1/continue'))).toBe(true)
  })

  it('a Continue that fails shows the reply as the server kept it', async () => {
    const f = installFakeFetch()
    const kept = { ...CONV, messages: [
      { id: 1, role: 'user', content: 'q', status: 'complete' },
      { id: 2, role: 'assistant', content: '一二三', status: 'complete', finish_reason: 'length' },
    ] }
    f.on('GET', /\/api\/conversations\/c1$/, () => jsonResponse(kept))
    f.on('GET', /\/api\/conversations\?/, () => jsonResponse({ data: [CONV] }))
    f.on('POST', /\/continue$/, (_c, signal) => {
      const s = sseResponse(signal)
      queueMicrotask(() => {
        s.push({ start: true, message_id: 2 })
        s.push({ token: '四五' })
        s.push({ error: { message: 'engine failed', type: 'server_error', code: 'model_error' }, message_id: 2 })
        s.close()
      })
      return s.response
    })
    await openConversation('c1')
    await continueReply()
    await settle()
    expect(state.messages.map((m) => m.content)).toEqual(['q', '一二三'])
    expect(state.messages[1].finish_reason).toBe('length')
    expect(state.banner).toContain('engine failed')
  })
})

describe('presets and settings', () => {
  it('starts a conversation from the chosen preset and saves its settings', async () => {
    const f = installFakeFetch()
    const presets = [
      { id: 'general-zh', builtin: 'general-zh', language: 'zh', name: '通用助手', description: '', system_prompt: null, settings: {} },
      { id: 'tutor-zh', builtin: 'tutor-zh', language: 'zh', name: '编程导师', description: '', system_prompt: 'x', settings: {} },
    ]
    f.on('GET', /\/api\/presets\?language=zh$/, () => jsonResponse({ data: presets }))
    f.on('GET', /\/api\/conversations\?/, () => jsonResponse({ data: [CONV] }))
    f.on('POST', /\/api\/conversations$/, () => jsonResponse(CONV, 201))
    f.on('POST', /\/c1\/messages$/, (_c, signal) => {
      const s = sseResponse(signal)
      queueMicrotask(() => {
        s.push({ done: true, finish_reason: 'stop' })
        s.close()
      })
      return s.response
    })
    f.on('PATCH', /\/api\/conversations\/c1$/, (c) => jsonResponse({ ...CONV, ...(c.body as object) }))
    await loadPresets('zh')
    expect(state.presetId).toBe('general-zh')
    state.presetId = 'tutor-zh'
    await send('q')
    await settle()
    expect(f.calls.find((c) => c.method === 'POST' && c.url.endsWith('/api/conversations'))!.body).toEqual({ preset: 'tutor-zh' })
    state.conversations = [{ ...CONV }]
    expect(await saveConversationSettings('c1', { system_prompt: null, settings: { temperature: 0.2 } })).toBe(true)
    expect(state.conversations[0].settings).toEqual({ temperature: 0.2 })
    await loadPresets('zh')
    expect(state.presetId).toBe('tutor-zh') // still listed: the choice stays
  })
})

