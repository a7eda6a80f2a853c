import { afterEach, describe, expect, it, vi } from 'vitest'
import { debounce } from '../debounce'

describe('debounce', () => {
  afterEach(() => vi.useRealTimers())

  it('calls once, 300 ms after the last keystroke, with the last value', () => {
    vi.useFakeTimers()
    const fn = vi.fn()
    const d = debounce(fn, 300)
    d('a')
    vi.advanceTimersByTime(200)
    d('ab')
    vi.advanceTimersByTime(299)
    expect(fn).not.toHaveBeenCalled()
    vi.advanceTimersByTime(1)
    expect(fn).toHaveBeenCalledTimes(1)
    expect(fn).toHaveBeenCalledWith('ab')
  })

  it('cancel drops the pending call', () => {
    vi.useFakeTimers()
    const fn = vi.fn()
    const d = debounce(fn, 300)
    d(1)
    d.cancel()
    vi.advanceTimersByTime(1000)
    expect(fn).not.toHaveBeenCalled()
  })
})

describe('latestLookup', () => {
  it('aborts the lookup in flight and applies only the latest answer', async () => {
    vi.useFakeTimers()
    const { latestLookup } = await import('../debounce')
    const signals: AbortSignal[] = []
    const resolvers: ((v: string) => void)[] = []
    const apply = vi.fn()
    const lookup = latestLookup(
      (q, signal) => {
        signals.push(signal)
        return new Promise<string>((r) => resolvers.push(() => r(`result for ${q}`)))
      },
      apply,
      300,
    )
    lookup('ab')
    await vi.advanceTimersByTimeAsync(300) // "ab" is in flight
    lookup('abc')
    await vi.advanceTimersByTimeAsync(300) // "abc" starts, "ab" is aborted
    expect(signals[0].aborted).toBe(true)
    resolvers[1]('')
    resolvers[0]('') // the slow, stale answer arrives last
    await vi.advanceTimersByTimeAsync(0)
    expect(apply).toHaveBeenCalledTimes(1)
    expect(apply).toHaveBeenCalledWith('abc', 'result for abc')
  })
})
