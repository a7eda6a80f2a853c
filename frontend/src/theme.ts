/**
 * Light / dark theme: "auto" follows prefers-color-scheme, or the user's explicit choice
 * (remembered in localStorage).
 */
import { ref } from 'vue'

export type Theme = 'auto' | 'light' | 'dark'
const KEY = 'xiaoq.theme'

function initial(): Theme {
  try {
    const v = localStorage.getItem(KEY)
    if (v === 'light' || v === 'dark' || v === 'auto') return v
  } catch {
    /* ignore */
  }
  return 'auto'
}

export const theme = ref<Theme>(initial())

const darkQuery = typeof matchMedia === 'function' ? matchMedia('(prefers-color-scheme: dark)') : null
// "auto" follows the system live (e.g. the OS switches to dark at sunset).
darkQuery?.addEventListener?.('change', () => {
  if (theme.value === 'auto') applyTheme('auto')
})

/** Sets <html data-theme> to the effective theme ("auto" resolved), so the CSS has one dark block. */
export function applyTheme(t: Theme = theme.value): void {
  theme.value = t
  const effective = t === 'auto' ? (darkQuery?.matches ? 'dark' : 'light') : t
  document.documentElement.dataset.theme = effective
  try {
    localStorage.setItem(KEY, t)
  } catch {
    /* ignore */
  }
}

export function cycleTheme(): void {
  applyTheme(theme.value === 'auto' ? 'light' : theme.value === 'light' ? 'dark' : 'auto')
}
