/**
 * The microphone: MediaRecorder (WebM/Opus where the browser has it) plus an energy meter that
 * also ends an utterance in hands-free mode: speech is sound well above the room's noise floor,
 * and the utterance ends after SILENCE_MS of quiet following speech. Nothing is sent anywhere
 * until `stop()`: the recording goes to XiaoQ's own server only.
 */

const TICK_MS = 50
const CALIBRATE_MS = 300
const SILENCE_MS = 900
const NO_SPEECH_MS = 8000
const MAX_MS = 30000

export type MicProblem = 'insecure' | 'denied' | 'missing' | 'other'

export class MicError extends Error {
  constructor(
    readonly problem: MicProblem,
    message: string,
  ) {
    super(message)
  }
}

export interface RecorderEvents {
  level?: (rms: number) => void
  /** Hands-free: speech was heard and then silence (or the time ran out). */
  endOfSpeech?: (heardSpeech: boolean) => void
}

function pickMime(): string | undefined {
  for (const m of ['audio/webm;codecs=opus', 'audio/ogg;codecs=opus', 'audio/webm']) {
    if (typeof MediaRecorder !== 'undefined' && MediaRecorder.isTypeSupported(m)) return m
  }
  return undefined
}

export async function openMicrophone(): Promise<MediaStream> {
  if (!navigator.mediaDevices?.getUserMedia) throw new MicError('insecure', 'no mediaDevices')
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true, channelCount: 1 } })
  } catch (err) {
    const name = (err as Error)?.name
    if (name === 'NotAllowedError' || name === 'SecurityError') throw new MicError('denied', name)
    if (name === 'NotFoundError' || name === 'OverconstrainedError' || name === 'NotReadableError') throw new MicError('missing', name)
    throw new MicError('other', (err as Error)?.message ?? String(err))
  }
}

export class Recorder {
  private recorder: MediaRecorder
  private chunks: Blob[] = []
  private context: AudioContext
  private timer: ReturnType<typeof setInterval>
  private started = performance.now()
  private floor = 0
  private calibrated = 0
  private speechAt = 0
  private quietSince = 0
  private ended = false

  constructor(
    private readonly stream: MediaStream,
    private readonly events: RecorderEvents,
    private readonly handsFree: boolean,
  ) {
    this.recorder = new MediaRecorder(stream, { mimeType: pickMime() })
    this.recorder.ondataavailable = (e) => e.data.size && this.chunks.push(e.data)
    this.recorder.start(250)
    this.context = new AudioContext()
    const analyser = this.context.createAnalyser()
    analyser.fftSize = 1024
    this.context.createMediaStreamSource(stream).connect(analyser)
    const samples = new Float32Array(analyser.fftSize)
    this.timer = setInterval(() => {
      analyser.getFloatTimeDomainData(samples)
      this.tick(Math.sqrt(samples.reduce((s, x) => s + x * x, 0) / samples.length))
    }, TICK_MS)
  }

  private tick(rms: number): void {
    this.events.level?.(rms)
    const now = performance.now()
    const elapsed = now - this.started
    if (elapsed < CALIBRATE_MS) {
      this.floor = (this.floor * this.calibrated + rms) / ++this.calibrated
      return
    }
    const speaking = rms > Math.max(0.012, this.floor * 3)
    if (speaking) {
      this.speechAt ||= now
      this.quietSince = 0
    } else if (this.speechAt && !this.quietSince) {
      this.quietSince = now
    }
    if (!this.handsFree || this.ended) return
    const silentAfterSpeech = this.quietSince && now - this.quietSince > SILENCE_MS
    if (silentAfterSpeech || (!this.speechAt && elapsed > NO_SPEECH_MS) || elapsed > MAX_MS) {
      this.ended = true
      this.events.endOfSpeech?.(!!this.speechAt)
    }
  }

  /** Stops recording and releases the microphone; the recorded audio. */
  stop(): Promise<Blob> {
    clearInterval(this.timer)
    return new Promise((resolve) => {
      const finish = () => {
        this.release()
        resolve(new Blob(this.chunks, { type: this.recorder.mimeType || 'audio/webm' }))
      }
      if (this.recorder.state === 'inactive') return finish()
      this.recorder.onstop = finish
      this.recorder.stop()
    })
  }

  /** Drops the recording (Stop pressed) and releases the microphone. */
  cancel(): void {
    clearInterval(this.timer)
    this.recorder.onstop = null
    if (this.recorder.state !== 'inactive') this.recorder.stop()
    this.release()
  }

  private release(): void {
    this.stream.getTracks().forEach((t) => t.stop())
    void this.context.close().catch(() => undefined)
  }
}
