/**
 * The voice controls' state, on the first screen; the code that records, transcribes and speaks
 * (`voice/index.ts`) loads only when the microphone or the speaker is first used, so the page
 * pays nothing for voice until someone speaks.
 */
import { computed, reactive, watch } from 'vue'
import { isStreaming, replyTap, state, stopStreaming } from './store'

const SPEAKER_KEY = 'xiaoq.speaker'
const REVIEW_KEY = 'xiaoq.voiceReview'

function readFlag(key: string): boolean {
  try {
    return localStorage.getItem(key) === '1'
  } catch {
    return false
  }
}

function writeFlag(key: string, value: boolean): void {
  try {
    localStorage.setItem(key, value ? '1' : '0')
  } catch {
    /* storage blocked: the choice lasts for this page */
  }
}

export const voice = reactive({
  phase: 'idle' as 'idle' | 'listening' | 'transcribing',
  handsFree: false,
  /** Read answers aloud as they stream. */
  speaker: readFlag(SPEAKER_KEY),
  /** Put the transcript in the message box instead of sending it. */
  review: readFlag(REVIEW_KEY),
  speaking: false,
  level: 0,
  /** A transcript waiting in the message box for the user to check. */
  draft: null as string | null,
  /** A problem to show (microphone denied or missing, nothing heard, ...). */
  message: null as string | null,
})
export type VoiceState = typeof voice

export const canListen = computed(() => !!state.config?.voice?.asr)
export const canSpeak = computed(() => !!state.config?.voice?.tts)
export const voiceBusy = computed(() => voice.phase !== 'idle' || voice.speaking)

type VoiceModule = typeof import('./voice/index')
let module: VoiceModule | null = null
let loading: Promise<VoiceModule> | null = null

function load(): Promise<VoiceModule> {
  loading ??= import('./voice/index').then((m) => {
    m.init(voice)
    module = m
    return m
  })
  return loading
}

replyTap.start = () => module?.replyStart()
replyTap.token = (text) => module?.replyToken(text)
replyTap.end = () => module?.replyEnd()

// The speaker was left on last time: load the module before the first answer streams.
watch(canSpeak, (ok) => ok && voice.speaker && void load(), { immediate: true })

export async function startListening(handsFree: boolean): Promise<void> {
  voice.handsFree = handsFree
  await (await load()).listen()
}

export async function finishListening(): Promise<void> {
  await (await load()).finish()
}

export function toggleHandsFree(): void {
  if (voice.handsFree) stopVoice()
  else void startListening(true)
}

export function toggleSpeaker(): void {
  voice.speaker = !voice.speaker
  writeFlag(SPEAKER_KEY, voice.speaker)
  if (voice.speaker) void load()
  else module?.stopSpeaking()
}

export function toggleReview(): void {
  voice.review = !voice.review
  writeFlag(REVIEW_KEY, voice.review)
}

/** Stop everything: the answer's stream, its speech, the microphone. */
export function stopAll(): void {
  if (isStreaming.value) stopStreaming()
  stopVoice()
}

export function stopVoice(): void {
  voice.handsFree = false
  module?.cancel()
}
