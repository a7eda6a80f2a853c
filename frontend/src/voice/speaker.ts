/**
 * Reads an answer aloud while it streams: each piece the splitter completes is synthesized by
 * the server (`POST /v1/audio/speech`, sent with the API key like every call) and played from a
 * `blob:` URL through one <audio> element, in order. At most two pieces are fetched ahead, so a
 * long answer never floods the server's one speech thread.
 */
import { request } from '../api'
import { ClauseSplitter, detectLanguage } from './split'

const AHEAD = 2

export class Speaker {
  readonly audio: HTMLAudioElement
  private splitter = new ClauseSplitter()
  private waiting: string[] = []
  private fetched: Promise<string | null>[] = []
  private controller = new AbortController()
  private playing = false

  constructor(
    private readonly onSpeaking: (speaking: boolean) => void,
    private readonly onError: (message: string) => void,
  ) {
    this.audio = document.createElement('audio')
    this.audio.dataset.testid = 'answer-audio'
    this.audio.dataset.played = '0'
    this.audio.hidden = true
    this.audio.addEventListener('playing', () => {
      this.audio.dataset.played = String(Number(this.audio.dataset.played) + 1)
    })
    document.body.appendChild(this.audio)
  }

  /** A new answer starts: forget the last one. */
  begin(): void {
    this.stop()
    this.splitter = new ClauseSplitter()
  }

  feed(text: string): void {
    this.enqueue(this.splitter.feed(text))
  }

  /** The answer is complete: speak what is left. */
  end(): void {
    this.enqueue(this.splitter.flush())
  }

  /** Silence now: pending syntheses are cancelled and their URLs released. */
  stop(): void {
    this.controller.abort()
    this.controller = new AbortController()
    this.waiting = []
    for (const p of this.fetched) void p.then((url) => url && URL.revokeObjectURL(url))
    this.fetched = []
    this.audio.pause()
    this.audio.removeAttribute('src')
    this.setPlaying(false)
  }

  private enqueue(pieces: string[]): void {
    if (!pieces.length) return
    this.waiting.push(...pieces)
    this.refill()
    if (!this.playing) void this.playLoop()
  }

  private refill(): void {
    while (this.fetched.length < AHEAD && this.waiting.length) this.fetched.push(this.synthesize(this.waiting.shift()!))
  }

  private async synthesize(text: string): Promise<string | null> {
    const signal = this.controller.signal
    try {
      const res = await request('/v1/audio/speech', {
        method: 'POST',
        body: JSON.stringify({ input: text, voice: detectLanguage(text), response_format: 'wav' }),
        signal,
      })
      const blob = await res.blob()
      return signal.aborted ? null : URL.createObjectURL(blob)
    } catch (err) {
      if (!signal.aborted) this.onError(err instanceof Error ? err.message : String(err))
      return null
    }
  }

  private async playLoop(): Promise<void> {
    const signal = this.controller.signal
    this.setPlaying(true)
    while (this.fetched.length && !signal.aborted) {
      const url = await this.fetched.shift()!
      this.refill()
      if (!url || signal.aborted) continue
      try {
        await this.play(url, signal)
      } finally {
        URL.revokeObjectURL(url)
      }
    }
    if (!signal.aborted) this.setPlaying(false)
  }

  private play(url: string, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.audio.removeEventListener('ended', done)
        this.audio.removeEventListener('error', done)
        signal.removeEventListener('abort', done)
        resolve()
      }
      this.audio.addEventListener('ended', done)
      this.audio.addEventListener('error', done)
      signal.addEventListener('abort', done)
      this.audio.src = url
      this.audio.play().catch((err: Error) => {
        this.onError(err.message)
        done()
      })
    })
  }

  private setPlaying(value: boolean): void {
    this.playing = value
    this.onSpeaking(value)
  }
}
