/**
 * Voice, loaded on first use: push-to-talk and hands-free listening, transcription by XiaoQ's own
 * server (never the browser's speech service, which sends audio away), and the answer read aloud.
 */
import { request } from '../api'
import { t } from '../i18n'
import { isStreaming, send, state } from '../store'
import type { VoiceState } from '../voice'
import { MicError, openMicrophone, Recorder } from './recorder'
import { Speaker } from './speaker'

const QUIET_POLL_MS = 200
const QUIET_MAX_MS = 5 * 60_000

let v: VoiceState
let recorder: Recorder | null = null
let speaker: Speaker | null = null

export function init(state: VoiceState): void {
  v = state
}

function getSpeaker(): Speaker {
  speaker ??= new Speaker(
    (speaking) => (v.speaking = speaking),
    (msg) => (v.message = t('speechError', { msg })),
  )
  return speaker
}

export function replyStart(): void {
  if (v.speaker) getSpeaker().begin()
}

export function replyToken(text: string): void {
  if (v.speaker) speaker?.feed(text)
}

export function replyEnd(): void {
  if (v.speaker) speaker?.end()
}

export function stopSpeaking(): void {
  speaker?.stop()
}

function micMessage(err: unknown): string {
  if (err instanceof MicError) {
    if (err.problem === 'insecure') return t('micInsecure')
    if (err.problem === 'denied') return t('micDenied')
    if (err.problem === 'missing') return t('micMissing')
  }
  return t('micError', { msg: err instanceof Error ? err.message : String(err) })
}

export async function listen(): Promise<void> {
  if (recorder || v.phase !== 'idle') return
  v.message = null
  speaker?.stop() // the user speaks: XiaoQ stops talking (and does not record itself)
  v.phase = 'listening'
  let stream: MediaStream
  try {
    stream = await openMicrophone()
  } catch (err) {
    v.phase = 'idle'
    v.handsFree = false
    v.message = micMessage(err)
    return
  }
  if (v.phase !== 'listening') {
    stream.getTracks().forEach((track) => track.stop()) // Stop was pressed while the browser asked
    return
  }
  recorder = new Recorder(stream, { level: (rms) => (v.level = rms), endOfSpeech: (heard) => void finish(heard) }, v.handsFree)
}

export async function finish(heard = true): Promise<void> {
  const r = recorder
  if (!r) return
  recorder = null
  const blob = await r.stop()
  v.level = 0
  if (!heard || !blob.size) {
    v.phase = 'idle'
    v.handsFree = false
    v.message = t('noSpeech')
    return
  }
  v.phase = 'transcribing'
  let text: string
  try {
    text = (await transcribe(blob)).trim()
  } catch (err) {
    v.message = t('transcribeError', { msg: err instanceof Error ? err.message : String(err) })
    v.handsFree = false
    return
  } finally {
    v.phase = 'idle'
  }
  if (!text) {
    v.message = t('noSpeech')
    v.handsFree = false
    return
  }
  if (v.review) {
    v.draft = text
    return
  }
  await send(text)
  if (v.handsFree && (await untilQuiet()) && v.handsFree) void listen()
}

export function cancel(): void {
  recorder?.cancel()
  recorder = null
  v.phase = 'idle'
  v.level = 0
  speaker?.stop()
}

async function transcribe(blob: Blob): Promise<string> {
  const form = new FormData()
  form.append('file', blob, blob.type.includes('ogg') ? 'speech.ogg' : 'speech.webm')
  const languages = state.config?.voice?.asr?.languages
  if (languages?.length === 1) form.append('language', languages[0]) // else the model detects it
  const res = await request('/v1/audio/transcriptions', { method: 'POST', body: form })
  return String((await res.json()).text ?? '')
}

/** Waits until the answer has streamed and been spoken (false if that takes unreasonably long). */
async function untilQuiet(): Promise<boolean> {
  const deadline = Date.now() + QUIET_MAX_MS
  while ((isStreaming.value || v.speaking) && Date.now() < deadline) await new Promise((r) => setTimeout(r, QUIET_POLL_MS))
  return Date.now() < deadline
}
