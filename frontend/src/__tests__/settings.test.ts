import { describe, expect, it } from 'vitest'
import { emptyForm, formFrom, problem, toPatch } from '../settings'

describe('conversation settings form', () => {
  it('reads stored settings, empty where the server default applies', () => {
    expect(formFrom(null, { temperature: 0.3, loop_guard: false })).toEqual({ systemPrompt: '', temperature: '0.3', topP: '', maxTokens: '' })
    expect(formFrom('短答。', { top_p: 0.8, max_tokens: 120 })).toEqual({ systemPrompt: '短答。', temperature: '', topP: '0.8', maxTokens: '120' })
  })

  it('merges into the stored settings, keeping keys it does not own', () => {
    const form = { systemPrompt: '  ', temperature: '0.2', topP: '', maxTokens: '300' }
    expect(toPatch(form, { loop_guard: false, top_p: 0.5 })).toEqual({ system_prompt: null, settings: { loop_guard: false, temperature: 0.2, max_tokens: 300 } })
  })

  it('reset to server defaults drops the prompt and the three settings only', () => {
    expect(toPatch(emptyForm(), { temperature: 1, top_p: 0.5, max_tokens: 9, loop_guard: true })).toEqual({ system_prompt: null, settings: { loop_guard: true } })
  })

  it('refuses values the server would refuse', () => {
    const ok = { systemPrompt: '', temperature: '2', topP: '1', maxTokens: '2048' }
    expect(problem(ok, { maxTokens: 2048 })).toBeNull()
    expect(problem({ ...ok, temperature: '2.5' }, { maxTokens: 2048 })).toBe('temperature')
    expect(problem({ ...ok, temperature: 'warm' }, { maxTokens: 2048 })).toBe('temperature')
    expect(problem({ ...ok, topP: '0' }, { maxTokens: 2048 })).toBe('topP')
    expect(problem({ ...ok, maxTokens: '2049' }, { maxTokens: 2048 })).toBe('maxTokens')
    expect(problem({ ...ok, maxTokens: '1.5' }, { maxTokens: 2048 })).toBe('maxTokens')
  })
})
