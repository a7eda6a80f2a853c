/** The preset editor: saves the edited fields, resets a built-in, deletes one the user made. */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'
import PresetDialog from '../components/PresetDialog.vue'
import { installFakeFetch, jsonResponse } from './fakeFetch'
import { state } from '../store'
import type { Preset } from '../api'

const TUTOR: Preset = { id: 'tutor-zh', builtin: 'tutor-zh', language: 'zh', name: '编程导师', description: 'd', system_prompt: 'p', settings: { loop_guard: false } }
const MINE: Preset = { ...TUTOR, id: 'abc', builtin: null, name: '我的' }

afterEach(() => vi.unstubAllGlobals())

describe('PresetDialog', () => {
  it('saves the edited prompt and settings, keeping other settings keys', async () => {
    const f = installFakeFetch()
    f.on('PATCH', /\/api\/presets\/tutor-zh$/, (c) => jsonResponse({ ...TUTOR, ...(c.body as object) }))
    f.on('GET', /\/api\/presets\?/, () => jsonResponse({ data: [TUTOR] }))
    const w = mount(PresetDialog, { props: { preset: TUTOR } })
    await w.find('textarea[name=system_prompt]').setValue('新的提示')
    await w.find('input[name=temperature]').setValue('0.4')
    await w.find('form').trigger('submit')
    await flushPromises()
    const patch = f.calls.find((c) => c.method === 'PATCH')!
    expect(patch.body).toEqual({ name: '编程导师', description: 'd', system_prompt: '新的提示', settings: { loop_guard: false, temperature: 0.4 } })
    expect(w.emitted('close')).toHaveLength(1)
    expect(w.find('.delete-preset').exists()).toBe(false)
  })

  it('resets a built-in and deletes a preset the user made', async () => {
    const f = installFakeFetch()
    f.on('POST', /\/api\/presets\/tutor-zh\/reset$/, () => jsonResponse(TUTOR))
    f.on('DELETE', /\/api\/presets\/abc$/, () => jsonResponse(null, 204))
    f.on('GET', /\/api\/presets\?/, () => jsonResponse({ data: [TUTOR] }))
    await mount(PresetDialog, { props: { preset: TUTOR } }).find('.reset-preset').trigger('click')
    const mine = mount(PresetDialog, { props: { preset: MINE } })
    expect(mine.find('.reset-preset').exists()).toBe(false)
    await mine.find('.delete-preset').trigger('click')
    await flushPromises()
    expect(f.calls.filter((c) => c.method !== 'GET').map((c) => `${c.method} ${c.url}`)).toEqual(['POST /api/presets/tutor-zh/reset', 'DELETE /api/presets/abc'])
    expect(state.presetId).toBe('tutor-zh') // the deleted one is gone: the first listed is chosen
  })
})
