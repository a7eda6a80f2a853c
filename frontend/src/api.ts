/**
 * The HTTP client for XiaoQ's API (docs/api.md). Every call goes through `request`, which adds
 * the API key, turns the one error shape into `ApiError` and a failed connection into
 * `NetworkError`, so the UI can tell "busy", "loading", "down" and "wrong key" apart.
 */
import type { Citation, Retrieved } from './kb'
import { readEvents, type Budget, type StreamEvent, type Timings } from './sse'

export interface Conversation {
  id: string
  title: string | null
  system_prompt?: string | null
  settings?: Record<string, unknown> | null
  /** The knowledge base it answers from (null: none). */
  kb?: string | null
  created_at: string
  updated_at: string
  message_count?: number
}

export interface Message {
  id: number
  conversation_id?: string
  role: 'user' | 'assistant' | 'system'
  content: string
  status: 'complete' | 'incomplete' | 'error' | string
  /** Why the reply ended: "stop", "length", "cancelled", "repetition" (the loop guard ended it). */
  finish_reason?: string | null
  prompt_tokens?: number | null
  completion_tokens?: number | null
  timings?: Timings | null
  budget?: Budget | null
  error?: string | null
  citations?: Citation[] | null
  retrieval?: Retrieved[] | null
  created_at?: string
}

/** A preset ("assistant"): what a new conversation copies (docs/api.md "Presets"). */
export interface Preset {
  id: string
  builtin: string | null
  language: 'zh' | 'en' | null
  name: string
  description: string
  system_prompt: string | null
  settings: Record<string, unknown>
}

export interface PresetFields {
  name: string
  description?: string
  system_prompt?: string | null
  settings?: Record<string, unknown>
  language?: 'zh' | 'en' | null
}

export interface ConversationDetail extends Conversation {
  messages: Message[]
}

export interface SearchHit {
  conversation_id: string
  conversation_title: string | null
  message_id: number
  role: string
  snippet: string
  created_at: string
}

export interface ServerConfig {
  model: string
  version: string
  auth_required: boolean
  /** none, key, accounts or trusted-header (older servers: absent). */
  auth?: string
  n_ctx: number
  default_max_tokens: number
  max_tokens: number
  /** The server's sampling defaults (what a conversation without its own settings uses). */
  temperature?: number
  top_p?: number
  /** Optional: the server may let same-origin/data: images render in answers. */
  allow_images?: boolean
  /** Speech in and out; a half is null when it is off or not installed on the server. */
  voice?: {
    asr: { engine: string; model: string; languages: string[] | null } | null
    tts: { engine: string; languages: string[] } | null
  }
}

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code?: string,
    /** Seconds from a `Retry-After` header (503 busy). */
    readonly retryAfter?: number,
  ) {
    super(message)
    this.name = 'ApiError'
  }
}

/** The server could not be reached at all (down, restarting, network gone). */
export class NetworkError extends Error {
  constructor(message = 'network error') {
    super(message)
    this.name = 'NetworkError'
  }
}

const KEY_STORAGE = 'xiaoq.apiKey'

export function getApiKey(): string | null {
  try {
    return localStorage.getItem(KEY_STORAGE)
  } catch {
    return null
  }
}

export function setApiKey(key: string | null): void {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key)
    else localStorage.removeItem(KEY_STORAGE)
  } catch {
    /* storage blocked: the key lives for this page only */
  }
}

let unauthorizedHandler: ((code?: string) => void) | null = null

/** Called on any 401 with its error code, so the app can ask for the key (or a login) wherever the
 * request came from. */
export function onUnauthorized(fn: ((code?: string) => void) | null): void {
  unauthorizedHandler = fn
}

function parseRetryAfter(value: string | null): number | undefined {
  if (!value) return undefined
  const n = Number(value)
  if (Number.isFinite(n)) return Math.max(0, n)
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(0, Math.round((date - Date.now()) / 1000))
}

async function errorFrom(res: Response): Promise<ApiError> {
  let message = `${res.status} ${res.statusText}`
  let code: string | undefined
  try {
    const body = await res.json()
    const e = body?.error ?? body
    if (e && typeof e === 'object') {
      if (e.message) message = String(e.message)
      if (e.code) code = String(e.code)
    }
    if (!code && body?.status === 'loading') code = 'model_loading'
  } catch {
    /* not JSON */
  }
  return new ApiError(message, res.status, code, parseRetryAfter(res.headers.get('Retry-After')))
}

export async function request(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers)
  const key = getApiKey()
  if (key) headers.set('Authorization', `Bearer ${key}`)
  if (init.body && typeof init.body === 'string' && !headers.has('Content-Type')) {
    headers.set('Content-Type', 'application/json')
  }
  let res: Response
  try {
    res = await fetch(path, { ...init, headers })
  } catch (err) {
    if ((err as Error)?.name === 'AbortError') throw err
    throw new NetworkError(String((err as Error)?.message ?? err))
  }
  if (!res.ok) {
    const error = await errorFrom(res)
    if (res.status === 401) unauthorizedHandler?.(error.code)
    throw error
  }
  return res
}

async function json<T>(path: string, init: RequestInit = {}): Promise<T> {
  const res = await request(path, init)
  if (res.status === 204) return undefined as T
  return (await res.json()) as T
}

const enc = encodeURIComponent

export interface User {
  id: number
  username: string
  role: 'admin' | 'user'
  groups: string[]
}

export interface KbSharing {
  name: string
  owner: string | null
  visibility: 'everyone' | 'group' | 'private'
  group_name: string | null
}

export const api = {
  login: (username: string, password: string) =>
    json<{ user: User }>('/api/auth/login', { method: 'POST', body: JSON.stringify({ username, password }) }),
  logout: () => json<void>('/api/auth/logout', { method: 'POST', body: '{}' }),
  me: () => json<{ user: User }>('/api/auth/me'),
  listUsers: () => json<{ data: User[] }>('/api/admin/users'),
  createUser: (body: { username: string; password: string; role: string; groups: string[] }) =>
    json<User>('/api/admin/users', { method: 'POST', body: JSON.stringify(body) }),
  deleteUser: (username: string) => json<void>(`/api/admin/users/${enc(username)}`, { method: 'DELETE' }),
  listKbSharing: () => json<{ data: KbSharing[] }>('/api/kb'),
  shareKb: (name: string, visibility: string, group: string | null) =>
    json<KbSharing>(`/api/kb/${enc(name)}`, { method: 'PATCH', body: JSON.stringify({ visibility, group }) }),
  /** GET /health never throws for 503: it tells "loading" from "ok". */
  async health(): Promise<'ok' | 'loading'> {
    let res: Response
    try {
      res = await fetch('/health', { cache: 'no-store' })
    } catch (err) {
      throw new NetworkError(String((err as Error)?.message ?? err))
    }
    if (res.ok) return 'ok'
    if (res.status === 503) return 'loading'
    throw await errorFrom(res)
  },
  config: () => json<ServerConfig>('/api/config'),
  listConversations: (limit = 100) => json<{ data: Conversation[] }>(`/api/conversations?limit=${limit}`),
  createConversation: (body: { title?: string; preset?: string } = {}) =>
    json<Conversation>('/api/conversations', { method: 'POST', body: JSON.stringify(body) }),
  updateConversation: (id: string, patch: { system_prompt?: string | null; settings?: Record<string, unknown> }) =>
    json<Conversation>(`/api/conversations/${enc(id)}`, { method: 'PATCH', body: JSON.stringify(patch) }),
  listPresets: (language: string) => json<{ data: Preset[] }>(`/api/presets?language=${enc(language)}`),
  createPreset: (body: PresetFields) => json<Preset>('/api/presets', { method: 'POST', body: JSON.stringify(body) }),
  updatePreset: (id: string, body: Partial<PresetFields>) =>
    json<Preset>(`/api/presets/${enc(id)}`, { method: 'PATCH', body: JSON.stringify(body) }),
  resetPreset: (id: string) => json<Preset>(`/api/presets/${enc(id)}/reset`, { method: 'POST', body: '{}' }),
  deletePreset: (id: string) => json<void>(`/api/presets/${enc(id)}`, { method: 'DELETE' }),
  getConversation: (id: string) => json<ConversationDetail>(`/api/conversations/${enc(id)}`),
  renameConversation: (id: string, title: string) =>
    json<Conversation>(`/api/conversations/${enc(id)}`, { method: 'PATCH', body: JSON.stringify({ title }) }),
  deleteConversation: (id: string, keepalive = false) =>
    json<void>(`/api/conversations/${enc(id)}`, { method: 'DELETE', keepalive }),
  stop: (id: string) => json<{ stopped: boolean }>(`/api/conversations/${enc(id)}/stop`, { method: 'POST', body: '{}' }),
  search: (q: string, signal?: AbortSignal) =>
    json<{ data: SearchHit[] }>(`/api/search?q=${enc(q)}&limit=20`, { signal }),
  suggestions: (q: string, signal?: AbortSignal) => json<{ data: string[] }>(`/api/suggestions?q=${enc(q)}`, { signal }),
  /** Downloads an export through fetch (so the API key header is sent), then saves it. */
  async exportConversation(id: string, format: 'md' | 'json'): Promise<void> {
    const res = await request(`/api/conversations/${enc(id)}/export?format=${format}`)
    const blob = await res.blob()
    const disposition = res.headers.get('Content-Disposition') ?? ''
    const m = /filename\*=UTF-8''([^;]+)|filename="?([^";]+)"?/i.exec(disposition)
    const name = m ? decodeURIComponent(m[1] ?? m[2]) : `xiaoq-${id}.${format}`
    const url = URL.createObjectURL(blob)
    const a = document.createElement('a')
    a.href = url
    a.download = name
    document.body.appendChild(a)
    a.click()
    a.remove()
    setTimeout(() => URL.revokeObjectURL(url), 10_000)
  },
}

export type StreamKind =
  | { kind: 'send'; content: string }
  | { kind: 'regenerate' }
  | { kind: 'continue' }
  | { kind: 'edit'; messageId: number; content: string }

/** Opens one of the conversation streams (send / regenerate / continue / edit) and yields its events. */
export async function* streamReply(
  conversationId: string,
  what: StreamKind,
  signal: AbortSignal,
): AsyncGenerator<StreamEvent> {
  const base = `/api/conversations/${enc(conversationId)}`
  const [path, body] =
    what.kind === 'send'
      ? [`${base}/messages`, { content: what.content }]
      : what.kind === 'regenerate' || what.kind === 'continue'
        ? [`${base}/${what.kind}`, {}]
        : [`${base}/messages/${what.messageId}/edit`, { content: what.content }]
  const res = await request(path, {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { Accept: 'text/event-stream' },
    signal,
  })
  if (!res.body) throw new NetworkError('empty response')
  try {
    yield* readEvents(res.body)
  } catch (err) {
    if ((err as Error)?.name === 'AbortError') throw err
    throw new NetworkError(String((err as Error)?.message ?? err))
  }
}
