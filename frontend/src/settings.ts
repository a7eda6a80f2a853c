/**
 * A conversation's (or a preset's) shaping as a form: system prompt, temperature, top_p and
 * max tokens. Empty fields mean "the server's default"; the server keeps other settings keys
 * (loop_guard, the UI's own) untouched, so a patch merges into what is stored.
 */
export interface ShapeForm {
  systemPrompt: string
  temperature: string
  topP: string
  maxTokens: string
}

export type Settings = Record<string, unknown>

const KEYS = { temperature: 'temperature', topP: 'top_p', maxTokens: 'max_tokens' } as const

/** The form for a stored prompt (null: the server's default) and settings. */
export function formFrom(systemPrompt: string | null | undefined, settings: Settings | null | undefined): ShapeForm {
  const s = settings ?? {}
  const text = (k: string) => (typeof s[k] === 'number' ? String(s[k]) : '')
  return { systemPrompt: systemPrompt ?? '', temperature: text('temperature'), topP: text('top_p'), maxTokens: text('max_tokens') }
}

export interface Limits {
  maxTokens: number
}

/** Why the form cannot be saved (the first bad field), or null. Ranges are the server's. */
export function problem(form: ShapeForm, limits: Limits): keyof ShapeForm | null {
  const bad = (v: string, ok: (n: number) => boolean) => v.trim() !== '' && !(Number.isFinite(Number(v)) && ok(Number(v)))
  if (bad(form.temperature, (n) => n >= 0 && n <= 2)) return 'temperature'
  if (bad(form.topP, (n) => n > 0 && n <= 1)) return 'topP'
  if (bad(form.maxTokens, (n) => Number.isInteger(n) && n >= 1 && n <= limits.maxTokens)) return 'maxTokens'
  return null
}

/** The PATCH body: the prompt (empty: null, the server's default) and the settings merged. */
export function toPatch(form: ShapeForm, settings: Settings | null | undefined): { system_prompt: string | null; settings: Settings } {
  const out: Settings = { ...(settings ?? {}) }
  for (const [field, key] of Object.entries(KEYS)) {
    const v = form[field as keyof typeof KEYS].trim()
    if (v === '') delete out[key]
    else out[key] = Number(v)
  }
  return { system_prompt: form.systemPrompt.trim() ? form.systemPrompt : null, settings: out }
}

/** "Reset to server defaults": no prompt of its own, none of the form's settings. */
export function emptyForm(): ShapeForm {
  return { systemPrompt: '', temperature: '', topP: '', maxTokens: '' }
}
