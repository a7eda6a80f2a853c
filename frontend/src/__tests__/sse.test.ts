import { describe, expect, it } from 'vitest'
import { SseParser, interpretData, readEvents, type StreamEvent } from '../sse'

function streamOf(chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder()
  return new ReadableStream({
    start(controller) {
      for (const c of chunks) controller.enqueue(typeof c === 'string' ? enc.encode(c) : c)
      controller.close()
    },
  })
}

async function collect(chunks: (string | Uint8Array)[]): Promise<StreamEvent[]> {
  const out: StreamEvent[] = []
  for await (const e of readEvents(streamOf(chunks))) out.push(e)
  return out
}

describe('SseParser', () => {
  it('parses events split anywhere across chunks', () => {
    const text = 'data: {"token":"he"}\n\ndata: {"token":"llo"}\r\n\r\n: ping\n\nevent: x\ndata: 1\n\n'
    for (let size = 1; size <= text.length; size++) {
      const p = new SseParser()
      const got = []
      for (let i = 0; i < text.length; i += size) got.push(...p.feed(text.slice(i, i + size)))
      got.push(...p.end())
      expect(got, `chunk size ${size}`).toEqual([
        { event: 'message', data: '{"token":"he"}' },
        { event: 'message', data: '{"token":"llo"}' },
        { event: 'x', data: '1' },
      ])
    }
  })

  it('joins multi-line data with newlines', () => {
    const p = new SseParser()
    expect(p.feed('data: line1\ndata: line2\ndata:line3\n\n')).toEqual([{ event: 'message', data: 'line1\nline2\nline3' }])
  })

  it('handles \\r\\n split between chunks without an extra blank line', () => {
    const p = new SseParser()
    const got = [...p.feed('data: a\r'), ...p.feed('\ndata: b\r'), ...p.feed('\n\r'), ...p.feed('\n')]
    expect(got).toEqual([{ event: 'message', data: 'a\nb' }])
  })

  it('delivers a final event without the trailing blank line at end of stream', () => {
    const p = new SseParser()
    expect(p.feed('data: last')).toEqual([])
    expect(p.end()).toEqual([{ event: 'message', data: 'last' }])
  })
})

describe('readEvents', () => {
  it('yields typed chat events and stops at [DONE]', async () => {
    const events = await collect([
      'data: {"start": true, "user_message_id": 16, "message_id": 17}\n\n',
      'data: {"token": "你',
      '好"}\n\ndata: {"token": "!"}\n\n',
      'data: {"done": true, "message_id": 17, "finish_reason": "stop", "timings": {"ttft_ms": 12.5, "tokens_per_second": 30}, "budget": {"trimmed": true}}\n\n',
      'data: [DONE]\n\n',
      'data: {"token": "after done"}\n\n',
    ])
    expect(events[0]).toEqual({ type: 'start', userMessageId: 16, messageId: 17 })
    expect(events.filter((e) => e.type === 'token').map((e) => (e as { text: string }).text).join('')).toBe('你好!')
    const done = events[3]
    expect(done.type).toBe('done')
    if (done.type === 'done') {
      expect(done.payload.timings!.ttft_ms).toBe(12.5)
      expect(done.payload.budget!.trimmed).toBe(true)
    }
    expect(events.length).toBe(4)
  })

  it('decodes UTF-8 characters split across byte chunks', async () => {
    const bytes = new TextEncoder().encode('data: {"token": "中文"}\n\n')
    const chunks = Array.from(bytes, (b) => new Uint8Array([b]))
    const events = await collect(chunks)
    expect(events).toEqual([{ type: 'token', text: '中文' }])
  })

  it('reports error events', async () => {
    const events = await collect([
      'data: {"token": "partial"}\n\n',
      'data: {"error": {"message": "engine crashed", "type": "server_error", "code": "model_error"}, "message_id": 9}\n\n',
    ])
    expect(events[1]).toEqual({ type: 'error', message: 'engine crashed', code: 'model_error', messageId: 9 })
  })

  it('reads status events (what the server does before the first token)', () => {
    expect(interpretData('{"status": "summarizing"}')).toEqual({ type: 'status', status: 'summarizing' })
  })

  it('ignores unknown events and flags malformed JSON', () => {
    expect(interpretData('{"something_new": 1}')).toBeNull()
    expect(interpretData('not json')).toMatchObject({ type: 'error', code: 'bad_event' })
    expect(interpretData(' [DONE] ')).toBe('end')
  })
})
