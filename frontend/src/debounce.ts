/** Calls `fn` once `ms` after the last call; `cancel()` drops a pending call. */
export interface Debounced<A extends unknown[]> {
  (...args: A): void
  cancel(): void
}

export function debounce<A extends unknown[]>(fn: (...args: A) => void, ms: number): Debounced<A> {
  let timer: ReturnType<typeof setTimeout> | null = null
  const wrapped = ((...args: A) => {
    if (timer) clearTimeout(timer)
    timer = setTimeout(() => {
      timer = null
      fn(...args)
    }, ms)
  }) as Debounced<A>
  wrapped.cancel = () => {
    if (timer) clearTimeout(timer)
    timer = null
  }
  return wrapped
}

/**
 * Type-ahead lookups (search, suggestions): `load(q)` runs `ms` after the last keystroke, a newer
 * lookup aborts the one in flight, and only the latest query's result reaches `apply` (a slow
 * answer for "ab" never overwrites the one for "abc"). `cancel()` drops both the pending and the
 * running lookup.
 */
export function latestLookup<T>(
  load: (q: string, signal: AbortSignal) => Promise<T>,
  apply: (q: string, result: T | null) => void,
  ms: number,
): Debounced<[string]> {
  let inflight: AbortController | null = null
  const run = debounce(async (q: string) => {
    inflight?.abort()
    const controller = new AbortController()
    inflight = controller
    let result: T | null = null
    try {
      result = await load(q, controller.signal)
    } catch {
      result = null // a failed lookup shows nothing rather than an error
    }
    if (!controller.signal.aborted) apply(q, result)
  }, ms)
  const lookup = ((q: string) => run(q)) as Debounced<[string]>
  lookup.cancel = () => {
    run.cancel()
    inflight?.abort()
    inflight = null
  }
  return lookup
}
