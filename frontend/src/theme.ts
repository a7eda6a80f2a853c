/**
 * Light / dark theme. "auto" follows prefers-color-scheme (pure CSS); an explicit choice sets
 * data-theme on <html> and is remembered.
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

export function applyTheme(t: Theme = theme.value): void {
  theme.value = t
  const root = document.documentElement
  if (t === 'auto') delete root.dataset.theme
  else root.dataset.theme = t
  try {
    localStorage.setItem(KEY, t)
  } catch {
    /* ignore */
  }
}

export function cycleTheme(): void {
  applyTheme(theme.value === 'auto' ? 'light' : theme.value === 'light' ? 'dark' : 'auto')
}
