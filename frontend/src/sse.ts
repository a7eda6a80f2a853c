/**
 * A small Server-Sent Events parser for `fetch` streams.
 *
 * Why not EventSource: it only does GET and cannot send an Authorization header, and our chat
 * routes are POSTs. So we read `response.body` ourselves. Network chunks split events (and even
 * lines, and the `\r\n` pair) anywhere, so the parser keeps the unfinished tail between feeds.
 */
import type { Citation, Retrieved } from './kb'

export interface SseMessage {
  /** The `event:` field, "message" when absent. */
  event: string
  /** All `data:` lines of the event joined with "\n" (as the SSE spec says). */
  data: string
}

export class SseParser {
  private buffer = ''
  private dataLines: string[] = []
  private eventName = ''
  /** A chunk ended with "\r": a following "\n" belongs to that line ending. */
  private pendingCR = false

  /** Feeds decoded text; returns the events completed by it. */
  feed(text: string): SseMessage[] {
    if (this.pendingCR && text.startsWith('\n')) text = text.slice(1)
    this.pendingCR = false
    this.buffer += text
    const out: SseMessage[] = []
    let start = 0
    for (let i = 0; i < this.buffer.length; i++) {
      const ch = this.buffer[i]
      if (ch !== '\n' && ch !== '\r') continue
      this.line(this.buffer.slice(start, i), out)
      if (ch === '\r') {
        if (i + 1 < this.buffer.length) {
          if (this.buffer[i + 1] === '\n') i++
        } else {
          this.pendingCR = true
        }
      }
      start = i + 1
    }
    this.buffer = this.buffer.slice(start)
    return out
  }

  /** End of stream: an event not followed by a blank line is still delivered. */
  end(): SseMessage[] {
    const out: SseMessage[] = []
    if (this.buffer) this.line(this.buffer, out)
    this.buffer = ''
    this.dispatch(out)
    return out
  }

  private line(line: string, out: SseMessage[]): void {
    if (line === '') {
      this.dispatch(out)
      return
    }
    if (line.startsWith(':')) return // comment / keep-alive ping
    const colon = line.indexOf(':')
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    if (field === 'data') this.dataLines.push(value)
    else if (field === 'event') this.eventName = value
    // id / retry / unknown fields are ignored: we never reconnect automatically.
  }

  private dispatch(out: SseMessage[]): void {
    if (this.dataLines.length) {
      out.push({ event: this.eventName || 'message', data: this.dataLines.join('\n') })
    }
    this.dataLines = []
    this.eventName = ''
  }
}

/** One decoded event of XiaoQ's chat streams (see docs/api.md). */
export type StreamEvent =
  | { type: 'start'; userMessageId?: number; messageId?: number }
  | { type: 'token'; text: string }
  /** What the server is doing before the first token (e.g. `summarizing` earlier turns). */
  | { type: 'status'; status: string }
  | { type: 'done'; payload: DonePayload }
  | { type: 'error'; message: string; code?: string; messageId?: number }

export interface Timings {
  ttft_ms?: number
  tokens_per_second?: number
  [k: string]: unknown
}

export interface Budget {
  turns_total?: number
  turns_kept?: number
  turns_summarized?: number
  summary_tokens?: number
  prompt_tokens?: number
  trimmed?: boolean
}

export interface DonePayload {
  message_id?: number
  finish_reason?: string
  /** With finish_reason "repetition": the reply is this many leading characters (code points) of
   * what this stream sent; the repeated copies after them were streamed before the guard was sure. */
  text_length?: number
  usage?: Record<string, unknown>
  timings?: Timings | null
  budget?: Budget | null
  citations?: Citation[]
  retrieved?: Retrieved[]
}

/**
 * Turns one SSE `data` payload into a typed event. Unknown JSON shapes are ignored (null) so a
 * newer server can add events without breaking an older page; `[DONE]` (OpenAI style) ends.
 */
export function interpretData(data: string): StreamEvent | 'end' | null {
  const trimmed = data.trim()
  if (trimmed === '[DONE]') return 'end'
  if (!trimmed) return null
  let obj: unknown
  try {
    obj = JSON.parse(trimmed)
  } catch {
    return { type: 'error', message: `bad event: ${trimmed.slice(0, 80)}`, code: 'bad_event' }
  }
  if (!obj || typeof obj !== 'object') return null
  const o = obj as Record<string, unknown>
  if (o.error) {
    const e = o.error as Record<string, unknown> | string
    const message = typeof e === 'string' ? e : String(e.message ?? 'error')
    const code = typeof e === 'object' && e.code != null ? String(e.code) : undefined
    return { type: 'error', message, code, messageId: num(o.message_id) }
  }
  if (o.start) return { type: 'start', userMessageId: num(o.user_message_id), messageId: num(o.message_id) }
  if (typeof o.token === 'string') return { type: 'token', text: o.token }
  if (typeof o.status === 'string') return { type: 'status', status: o.status }
  if (o.done) return { type: 'done', payload: o as DonePayload }
  return null
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' ? v : undefined
}

/** Reads a byte stream to the end (or `[DONE]`), yielding chat events as they complete. */
export async function* readEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<StreamEvent> {
  const reader = body.getReader()
  const decoder = new TextDecoder('utf-8')
  const parser = new SseParser()
  let finished = false
  try {
    for (;;) {
      const { value, done } = await reader.read()
      finished = done
      const text = done ? decoder.decode() : decoder.decode(value, { stream: true })
      const messages = done ? [...parser.feed(text), ...parser.end()] : parser.feed(text)
      for (const m of messages) {
        const ev = interpretData(m.data)
        if (ev === 'end') return
        if (ev) yield ev
      }
      if (done) return
    }
  } finally {
    // Stopped early ([DONE] or the consumer broke out): close the connection too.
    if (!finished) reader.cancel().catch(() => undefined)
    else reader.releaseLock()
  }
}
