/** References under an answer: each opens its passage through the API (with the key), and the
 * "what was retrieved" table shows every candidate with its scores. Passage text stays text. */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'
import Citations from '../components/Citations.vue'
import { setApiKey } from '../api'
import { citationPlace } from '../kb'

const citations = [
  { n: 1, chunk_id: 11, source: 'admin.md', heading: '行政手册 > 停车', anchor: '停车', snippet: '停车证…' },
  { n: 2, chunk_id: 12, source: 'policy.pdf', heading: null, anchor: 'page=3', snippet: 'Passwords…' },
]
const retrieved = [
  { chunk_id: 11, source: 'admin.md', heading: '停车', snippet: 's', score: 0.0325, lexical_rank: 1, dense_rank: 2, n: 1 },
  { chunk_id: 99, source: 'x.md', heading: null, snippet: 'other', score: 0.01, lexical_rank: null, dense_rank: 5, n: null },
]

afterEach(() => {
  vi.unstubAllGlobals()
  setApiKey(null)
})

describe('Citations', () => {
  it('says where each reference points', () => {
    expect(citationPlace(citations[0])).toBe('admin.md#停车')
    expect(citationPlace({ source: 'a.txt', anchor: null })).toBe('a.txt')
  })

  it('opens the passage with the API key and shows it as plain text', async () => {
    const calls: { url: string; auth: string | null }[] = []
    vi.stubGlobal('fetch', async (url: string, init: RequestInit) => {
      calls.push({ url, auth: new Headers(init.headers).get('Authorization') })
      return new Response(JSON.stringify({ id: 11, kb: 'office', source: 'admin.md', title: 'a', heading: '停车', anchor: '停车', page: null, text: '<img src=x onerror=alert(1)>停车证九点发放' }), { status: 200 })
    })
    setApiKey('k-123')
    const w = mount(Citations, { props: { citations, retrieved } })
    expect(w.findAll('.citation')).toHaveLength(2)
    await w.findAll('.citation')[0].trigger('click')
    await flushPromises()
    expect(calls).toEqual([{ url: '/api/kb/chunks/11', auth: 'Bearer k-123' }])
    expect(w.find('.passage-text').text()).toBe('<img src=x onerror=alert(1)>停车证九点发放')
    expect(w.find('.passage img').exists()).toBe(false)
  })

  it('lists what was retrieved, marking what went into the prompt', async () => {
    const w = mount(Citations, { props: { citations, retrieved } })
    await w.find('.retrieved-toggle').trigger('click')
    const rows = w.findAll('table.retrieved tbody tr')
    expect(rows).toHaveLength(2)
    expect(rows[0].classes()).toContain('used')
    expect(rows[1].classes()).not.toContain('used')
    expect(rows[0].text()).toContain('0.0325')
  })
})
