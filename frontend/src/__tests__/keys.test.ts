import { afterEach, describe, expect, it, vi } from 'vitest'
import { CompositionTracker, isSendKey } from '../keys'

describe('Enter handling', () => {
  it('Enter sends, Shift+Enter does not', () => {
    expect(isSendKey({ key: 'Enter' }, false)).toBe(true)
    expect(isSendKey({ key: 'Enter', shiftKey: true }, false)).toBe(false)
    expect(isSendKey({ key: 'a' }, false)).toBe(false)
  })

  it('Enter during IME composition does not send (all three signals)', () => {
    expect(isSendKey({ key: 'Enter' }, true)).toBe(false)
    expect(isSendKey({ key: 'Enter', isComposing: true }, false)).toBe(false)
    expect(isSendKey({ key: 'Enter', keyCode: 229 }, false)).toBe(false)
  })
})

describe('CompositionTracker', () => {
  afterEach(() => vi.useRealTimers())

  it('stays composing for the Enter that ends a composition (Safari order)', () => {
    vi.useFakeTimers()
    const c = new CompositionTracker()
    c.start()
    expect(isSendKey({ key: 'Enter' }, c.composing)).toBe(false)
    c.end() // Safari: compositionend arrives before the keydown of the confirming Enter
    expect(isSendKey({ key: 'Enter' }, c.composing)).toBe(false)
    vi.runAllTimers()
    expect(isSendKey({ key: 'Enter' }, c.composing)).toBe(true)
  })
})
