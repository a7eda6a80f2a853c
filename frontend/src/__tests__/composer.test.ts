/**
 * The message box as a component: Enter while an IME composes must not send; suggestions are
 * fetched once per pause in typing (300 ms debounce).
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { enableAutoUnmount, mount } from '@vue/test-utils'
import { computed, reactive } from 'vue'

const sendMock = vi.fn()
const suggestionsMock = vi.fn()

vi.mock('../store', () => ({
  send: (text: string) => sendMock(text),
  stopStreaming: vi.fn(),
  isStreaming: computed(() => false),
  state: reactive({ needKey: false, config: null as unknown }),
  replyTap: {},
}))

vi.mock('../api', () => ({
  api: { suggestions: (q: string, signal?: AbortSignal) => suggestionsMock(q, signal) },
}))

import Composer from '../components/Composer.vue'
import { state } from '../store'
import { voice } from '../voice'

beforeEach(() => {
  sendMock.mockReset()
  suggestionsMock.mockReset()
  suggestionsMock.mockResolvedValue({ data: [] })
})
afterEach(() => vi.useRealTimers())
enableAutoUnmount(afterEach)

describe('Composer keyboard', () => {
  it('Enter sends, Shift+Enter does not', async () => {
    const w = mount(Composer)
    const ta = w.find('textarea')
    await ta.setValue('hello')
    await ta.trigger('keydown', { key: 'Enter', shiftKey: true })
    expect(sendMock).not.toHaveBeenCalled()
    await ta.trigger('keydown', { key: 'Enter' })
    expect(sendMock).toHaveBeenCalledWith('hello')
    expect((ta.element as HTMLTextAreaElement).value).toBe('')
  })

  it('Enter that confirms an IME candidate does not send', async () => {
    vi.useFakeTimers()
    const w = mount(Composer)
    const ta = w.find('textarea')
    await ta.trigger('compositionstart')
    await ta.setValue('你好')
    await ta.trigger('keydown', { key: 'Enter', isComposing: true })
    await ta.trigger('keydown', { key: 'Enter', keyCode: 229 })
    await ta.trigger('keydown', { key: 'Enter' }) // composing flag alone
    await ta.trigger('compositionend')
    await ta.trigger('keydown', { key: 'Enter' }) // Safari: compositionend came first
    expect(sendMock).not.toHaveBeenCalled()
    vi.runAllTimers()
    await ta.trigger('keydown', { key: 'Enter' })
    expect(sendMock).toHaveBeenCalledTimes(1)
    expect(sendMock).toHaveBeenCalledWith('你好')
  })

  it('each IME signal alone blocks Enter (isComposing, keyCode 229)', async () => {
    const w = mount(Composer)
    const ta = w.find('textarea')
    await ta.setValue('ni')
    await ta.trigger('keydown', { key: 'Enter', isComposing: true })
    expect(sendMock).not.toHaveBeenCalled()
    await ta.trigger('keydown', { key: 'Enter', keyCode: 229 })
    expect(sendMock).not.toHaveBeenCalled()
    await ta.trigger('keydown', { key: 'Enter' })
    expect(sendMock).toHaveBeenCalledWith('ni')
  })
})

describe('Composer suggestions', () => {
  it('asks once, 300 ms after typing stops, and shows the answers', async () => {
    vi.useFakeTimers()
    suggestionsMock.mockResolvedValue({ data: ['how to sort a list', 'how to reverse'] })
    const w = mount(Composer)
    const ta = w.find('textarea')
    for (const v of ['h', 'ho', 'how']) {
      await ta.setValue(v)
      vi.advanceTimersByTime(100)
    }
    expect(suggestionsMock).not.toHaveBeenCalled()
    await vi.advanceTimersByTimeAsync(200)
    expect(suggestionsMock).toHaveBeenCalledTimes(1)
    expect(suggestionsMock.mock.calls[0][0]).toBe('how')
    await w.vm.$nextTick()
    const items = w.findAll('.suggestions li')
    expect(items.map((i) => i.text())).toEqual(['how to sort a list', 'how to reverse'])
    await ta.trigger('keydown', { key: 'ArrowDown' })
    await ta.trigger('keydown', { key: 'Enter' })
    expect(sendMock).not.toHaveBeenCalled() // Enter picked the suggestion
    expect((ta.element as HTMLTextAreaElement).value).toBe('how to sort a list')
    expect(w.findAll('.suggestions li').length).toBe(0)
  })
})

describe('Composer voice controls', () => {
  it('shows the microphone and speaker only when the server has them, and Stop while speaking', async () => {
    const w = mount(Composer)
    expect(w.find('[data-testid=mic]').exists()).toBe(false)
    ;(state as { config: unknown }).config = { voice: { asr: { engine: 'whisper', model: 'tiny.en', languages: ['en'] }, tts: null } }
    await w.vm.$nextTick()
    expect(w.find('[data-testid=mic]').exists()).toBe(true)
    expect(w.find('[data-testid=speaker]').exists()).toBe(false)
    expect(w.find('[data-testid=stop]').exists()).toBe(false)
    voice.speaking = true
    await w.vm.$nextTick()
    expect(w.find('[data-testid=stop]').exists()).toBe(true)
    expect(w.find('[data-testid=voice-status]').text()).toContain('…')
    voice.speaking = false
    ;(state as { config: unknown }).config = null
  })

  it('puts a transcript to review in the box instead of sending it', async () => {
    const w = mount(Composer)
    voice.draft = 'turn on the light'
    await w.vm.$nextTick()
    await w.vm.$nextTick()
    expect((w.find('textarea').element as HTMLTextAreaElement).value).toBe('turn on the light')
    expect(sendMock).not.toHaveBeenCalled()
    expect(voice.draft).toBeNull()
  })
})
