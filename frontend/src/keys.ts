/**
 * Keyboard rules of the message box, kept apart from the component so they can be tested.
 *
 * With a Chinese (or Japanese, Korean) input method, Enter confirms the candidate being composed;
 * it must not also send the message. Browsers disagree on how to tell: Chrome sets
 * `isComposing`, Safari fires `compositionend` BEFORE the Enter keydown (so `isComposing` is
 * already false there) but reports keyCode 229. We check all three signals.
 */
export interface KeyLike {
  key: string
  shiftKey?: boolean
  ctrlKey?: boolean
  altKey?: boolean
  metaKey?: boolean
  isComposing?: boolean
  keyCode?: number
}

export function isImeEvent(e: KeyLike, composing: boolean): boolean {
  return composing || !!e.isComposing || e.keyCode === 229
}

/** True when this keydown should send the message (Enter alone, no IME composition). */
export function isSendKey(e: KeyLike, composing: boolean): boolean {
  if (e.key !== 'Enter') return false
  if (e.shiftKey || e.altKey) return false // Shift+Enter / Alt+Enter: a new line
  return !isImeEvent(e, composing)
}

/**
 * Tracks composition state for one input. Some browsers deliver `compositionend` just before
 * the confirming Enter keydown, so the flag is cleared one macrotask later.
 */
export class CompositionTracker {
  composing = false
  private timer: ReturnType<typeof setTimeout> | null = null

  start(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    this.composing = true
  }

  end(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = setTimeout(() => {
      this.composing = false
      this.timer = null
    }, 0)
  }
}
