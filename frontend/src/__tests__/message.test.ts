/** One message as rendered: per-answer stats, the "summarized" and "incomplete" notices, copy. */
import { describe, expect, it, vi } from 'vitest'
import { mount } from '@vue/test-utils'
import MessageItem from '../components/MessageItem.vue'
import type { UiMessage } from '../store'
import { setLocale } from '../i18n'

function answer(extra: Partial<UiMessage> = {}): UiMessage {
  return { id: 7, key: 'm7', role: 'assistant', content: '**hi** `x`', status: 'complete', ...extra }
}

describe('MessageItem', () => {
  it('offers what was retrieved under a reply refused for want of a close passage (no citations)', async () => {
    const retrieval = [{ chunk_id: 5, source: 'a.md', heading: 'H', snippet: 's', score: 0.016, lexical_rank: 1, dense_rank: 1, dense_score: 0.8412, n: null }]
    const w = mount(MessageItem, { props: { message: answer({ content: 'The documents do not contain this.', citations: [], retrieval }), isLast: true } })
    expect(w.findAll('.citation')).toHaveLength(0)
    await w.find('.retrieved-toggle').trigger('click')
    expect(w.find('table.retrieved tbody tr').text()).toContain('0.841')
  })

  it('shows TTFT and tokens/s from the timings, small and after the text', () => {
    const w = mount(MessageItem, { props: { message: answer({ timings: { ttft_ms: 212.4, tokens_per_second: 31.25 } }), isLast: true } })
    expect(w.find('.md strong').text()).toBe('hi')
    expect(w.find('.stats').text()).toBe('首字 212 ms · 31.3 词元/秒')
    setLocale('en')
    return w.vm.$nextTick().then(() => {
      expect(w.find('.stats').text()).toBe('TTFT 212 ms · 31.3 tok/s')
      setLocale('zh')
    })
  })

  it('tells when older turns were summarized by the budget', () => {
    const trimmed = mount(MessageItem, { props: { message: answer({ budget: { trimmed: true, turns_summarized: 5 } }), isLast: true } })
    expect(trimmed.find('.notice-trimmed').text()).toBe('较早的对话已被总结')
    const kept = mount(MessageItem, { props: { message: answer({ budget: { trimmed: false } }), isLast: true } })
    expect(kept.find('.notice-trimmed').exists()).toBe(false)
  })

  it('marks a stopped reply as incomplete and a failed one with its error', () => {
    const stopped = mount(MessageItem, { props: { message: answer({ status: 'incomplete' }), isLast: true } })
    expect(stopped.text()).toContain('回答未完成')
    const failed = mount(MessageItem, { props: { message: answer({ status: 'error', errorKind: 'error', error: 'boom' }), isLast: true } })
    expect(failed.find('.notice-error').text()).toContain('出错了：boom')
  })

  it('shows "thinking" before the first token and no actions while streaming', () => {
    const w = mount(MessageItem, { props: { message: answer({ content: '', streaming: true, status: 'incomplete' }), isLast: true } })
    expect(w.find('.thinking').exists()).toBe(true)
    expect(w.find('.msg-actions').exists()).toBe(false)
  })

  it('copies the raw Markdown of a message', async () => {
    const writeText = vi.fn().mockResolvedValue(undefined)
    vi.stubGlobal('navigator', { ...navigator, clipboard: { writeText } })
    vi.stubGlobal('isSecureContext', true)
    const w = mount(MessageItem, { props: { message: answer(), isLast: true } })
    await w.find('button[aria-label="复制"]').trigger('click')
    expect(writeText).toHaveBeenCalledWith('**hi** `x`')
    vi.unstubAllGlobals()
  })

  it('says a reply was stopped because it was repeating itself, with Regenerate', () => {
    const w = mount(MessageItem, { props: { message: answer({ finish_reason: 'repetition' }), isLast: true } })
    const notice = w.find('.notice-repetition')
    expect(notice.text()).toContain('已停止：回答在不断重复')
    expect(notice.find('button.regenerate').exists()).toBe(true)
    const older = mount(MessageItem, { props: { message: answer({ finish_reason: 'repetition' }), isLast: false } })
    expect(older.find('.notice-repetition').exists()).toBe(true)
    expect(older.find('.notice-repetition button').exists()).toBe(false)
    const plain = mount(MessageItem, { props: { message: answer({ finish_reason: 'stop' }), isLast: true } })
    expect(plain.find('.notice-repetition').exists()).toBe(false)
  })

  it('offers Continue on a reply cut by max_tokens or the loop guard, only on the last one', () => {
    const cut = mount(MessageItem, { props: { message: answer({ finish_reason: 'length' }), isLast: true } })
    expect(cut.find('.notice-length').text()).toContain('回答达到了长度上限')
    expect(cut.find('.notice-length button.continue').text()).toBe('继续')
    expect(cut.find('.notice-length button.regenerate').exists()).toBe(false) // the footer has Regenerate
    const looped = mount(MessageItem, { props: { message: answer({ finish_reason: 'repetition' }), isLast: true } })
    expect(looped.find('.notice-repetition button.continue').exists()).toBe(true)
    const older = mount(MessageItem, { props: { message: answer({ finish_reason: 'length' }), isLast: false } })
    expect(older.find('.notice-length button').exists()).toBe(false)
    const stopped = mount(MessageItem, { props: { message: answer({ finish_reason: 'cancelled', status: 'incomplete' }), isLast: true } })
    expect(stopped.find('button.continue').exists()).toBe(false)
  })
})
