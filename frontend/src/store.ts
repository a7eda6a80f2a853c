/**
 * The chat state of the page and the actions on it. The server is the source of truth
 * (conversations live in SQLite); this module keeps a view of the current conversation,
 * streams replies into it and handles the failure modes: busy (503 + Retry-After, retried
 * automatically), model loading (poll /health), server down, wrong or missing API key.
 */
import { computed, reactive } from 'vue'
import {
  api,
  ApiError,
  NetworkError,
  onUnauthorized,
  setApiKey,
  streamReply,
  type Conversation,
  type Message,
  type Preset,
  type ServerConfig,
  type StreamKind,
  type User,
} from './api'
import type { DonePayload } from './sse'
import { locale } from './i18n'

export interface UiMessage extends Message {
  /** Stable key for v-for (ids change from a temporary one once the server assigns them). */
  key: string
  streaming?: boolean
  /** Only on assistant messages that failed: what to show under the text. */
  errorKind?: 'down' | 'error'
  /** What the server is doing before the first token (`summarizing`), while it streams. */
  progress?: string
}

export type ServerStatus = 'unknown' | 'ok' | 'loading' | 'down'

const MAX_BUSY_RETRIES = 20
const POLL_MS = 2000
const UNDO_MS = 5000
const LAST_ID_KEY = 'xiaoq.lastConversation'

let keySeq = 0
const newKey = () => `k${++keySeq}`
let tempId = 0

export const state = reactive({
  conversations: [] as Conversation[],
  currentId: null as string | null,
  messages: [] as UiMessage[],
  loadingConversation: false,
  /** Conversation id -> the controller of its running stream. */
  streams: {} as Record<string, AbortController>,
  /** Conversation id -> its message list while a reply streams (to switch away and back). */
  liveViews: {} as Record<string, UiMessage[]>,
  serverStatus: 'unknown' as ServerStatus,
  /** Seconds until the next automatic retry after a 503 busy, or null. */
  busyRetryIn: null as number | null,
  /** A transient error shown as a banner (not tied to a message). */
  banner: null as string | null,
  needKey: false,
  keyRejected: false,
  /** Accounts are on and nobody is logged in: the login dialog shows. */
  needLogin: false,
  /** The logged-in user (accounts), or null. */
  user: null as User | null,
  config: null as ServerConfig | null,
  pendingDelete: null as { conversation: Conversation; index: number } | null,
  /** Bumped when a message is added, so the view can scroll to it. */
  newMessageTick: 0,
  /** Presets of the UI's language, and the one a new conversation starts from (null: none). */
  presets: [] as Preset[],
  presetId: null as string | null,
})

/**
 * Who else follows a streamed answer: the read-aloud speaker (voice.ts) hooks in here, so this
 * module needs no knowledge of audio.
 */
export const replyTap: { start?: () => void; token?: (text: string) => void; end?: () => void } = {}

export const isStreaming = computed(() => !!state.currentId && !!state.streams[state.currentId])
export const anyStreaming = computed(() => Object.keys(state.streams).length > 0)

// ---------------------------------------------------------------- helpers

function toUi(m: Message): UiMessage {
  return { ...m, key: `m${m.id}` }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new DOMException('aborted', 'AbortError'))
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = () => {
      clearTimeout(timer)
      reject(new DOMException('aborted', 'AbortError'))
    }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

function isAbort(err: unknown): boolean {
  return (err as Error)?.name === 'AbortError'
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

export function idFromHash(hash = location.hash): string | null {
  const m = /^#\/?c\/([A-Za-z0-9_-]{1,64})$/.exec(hash)
  return m ? m[1] : null
}

function remember(id: string | null): void {
  const hash = id ? `#/c/${id}` : ''
  if (location.hash !== hash) {
    // replaceState keeps the back button useful and does not fire hashchange.
    history.replaceState(null, '', hash || location.pathname + location.search)
  }
  try {
    if (id) localStorage.setItem(LAST_ID_KEY, id)
    else localStorage.removeItem(LAST_ID_KEY)
  } catch {
    /* ignore */
  }
}

/**
 * Batches streamed tokens into one reactive update per animation frame: the text still
 * appears token by token (a typewriter), but a fast stream does not re-render Markdown for
 * every token.
 */
class TokenBuffer {
  private pending = ''
  private scheduled = false
  constructor(private readonly target: UiMessage) {}

  push(text: string): void {
    this.pending += text
    if (this.scheduled) return
    this.scheduled = true
    const run = () => this.flush()
    if (typeof requestAnimationFrame === 'function' && !document.hidden) requestAnimationFrame(run)
    else setTimeout(run, 16)
  }

  flush(): void {
    this.scheduled = false
    if (!this.pending) return
    this.target.content += this.pending
    this.pending = ''
  }
}

// ---------------------------------------------------------------- server status

let pollTimer: ReturnType<typeof setTimeout> | null = null
const statusWaiters: (() => void)[] = []

/** Checks /health once and updates the banner state. */
export async function checkHealth(): Promise<ServerStatus> {
  try {
    state.serverStatus = await api.health()
  } catch {
    state.serverStatus = 'down'
  }
  if (state.serverStatus === 'ok') {
    statusWaiters.splice(0).forEach((w) => w())
  } else {
    schedulePoll()
  }
  return state.serverStatus
}

function schedulePoll(): void {
  if (pollTimer) return
  pollTimer = setTimeout(async () => {
    pollTimer = null
    const before = state.serverStatus
    const now = await checkHealth()
    if (now === 'ok' && before === 'down') void reloadAfterOutage()
  }, POLL_MS)
}

/** Resolves when /health says ok (rejects if `signal` aborts first). */
function waitUntilReady(signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = () => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }
    const onAbort = () => {
      const i = statusWaiters.indexOf(done)
      if (i >= 0) statusWaiters.splice(i, 1)
      reject(new DOMException('aborted', 'AbortError'))
    }
    signal.addEventListener('abort', onAbort, { once: true })
    statusWaiters.push(done)
    schedulePoll()
  })
}

async function reloadAfterOutage(): Promise<void> {
  if (!state.config) await loadConfig()
  await refreshList()
  if (state.currentId && !state.streams[state.currentId]) await openConversation(state.currentId)
}

// ---------------------------------------------------------------- boot and key

export async function loadConfig(): Promise<boolean> {
  try {
    state.config = await api.config()
    state.needKey = false
    state.needLogin = false
    if (state.config.auth === 'accounts' || state.config.auth === 'trusted-header') state.user = (await api.me()).user
    return true
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      if (err.code === 'login_required') state.needLogin = true
      else state.needKey = true
    } else if (err instanceof NetworkError) {
      state.serverStatus = 'down'
      schedulePoll()
    }
    return false
  }
}

/** A 401 from anywhere: ask for a login (accounts) or for the key; a wrong password is the login
 * dialog's own error to show. */
export function onAuthProblem(code?: string): void {
  if (code === 'login_required') state.needLogin = true
  else if (code !== 'invalid_credentials') state.needKey = true
}

/** Starts the page. Opening the conversation named in the URL is set-up: a question typed
 * before it is open waits for it instead of starting a second, new conversation. */
export function boot(): Promise<void> {
  onUnauthorized(onAuthProblem)
  window.addEventListener('hashchange', () => {
    const id = idFromHash()
    if (id !== state.currentId) void settingUp(openConversation(id))
  })
  window.addEventListener('pagehide', commitPendingDelete)
  return settingUp(startUp())
}

async function startUp(): Promise<void> {
  await checkHealth()
  if (!(await loadConfig())) {
    if (state.needKey || state.needLogin) return // the key or login dialog continues the boot
  }
  await afterAuth()
}

async function afterAuth(): Promise<void> {
  void loadPresets(locale.value) // in parallel: opening the conversation must not wait for it
  await refreshList()
  let id = idFromHash()
  if (!id) {
    try {
      id = localStorage.getItem(LAST_ID_KEY)
    } catch {
      id = null
    }
  }
  await openConversation(id)
}

/** The user typed a key in the dialog: keep it, check it, and continue. */
export async function submitKey(key: string): Promise<boolean> {
  setApiKey(key.trim() || null)
  state.keyRejected = false
  if (await loadConfig()) {
    await settingUp(afterAuth())
    return true
  }
  state.keyRejected = state.needKey
  return false
}

/** The login dialog's form: log in, then continue the boot. The error goes back to the dialog. */
export async function submitLogin(username: string, password: string): Promise<void> {
  const { user } = await api.login(username, password)
  state.user = user
  if (await loadConfig()) await settingUp(afterAuth())
}

/** Ends the session and starts the page afresh, so nothing of this user stays in memory. */
export async function logout(): Promise<void> {
  try {
    await api.logout()
  } finally {
    window.location.hash = ''
    try {
      localStorage.removeItem(LAST_ID_KEY)
    } catch {
      /* storage blocked */
    }
    window.location.reload()
  }
}

// ---------------------------------------------------------------- conversations

export async function refreshList(): Promise<void> {
  try {
    const { data } = await api.listConversations()
    const hidden = state.pendingDelete?.conversation.id
    state.conversations = data.filter((c) => c.id !== hidden)
  } catch (err) {
    if (err instanceof NetworkError) {
      state.serverStatus = 'down'
      schedulePoll()
    }
  }
}

export async function openConversation(id: string | null): Promise<void> {
  state.banner = null
  if (!id) {
    state.currentId = null
    state.messages = []
    remember(null)
    return
  }
  state.currentId = id
  remember(id)
  const live = state.streams[id] && state.liveViews[id]
  if (live) {
    state.messages = live // its reply is still streaming into this list
    state.newMessageTick++
    return
  }
  state.loadingConversation = true
  try {
    const detail = await api.getConversation(id)
    if (state.currentId !== id) return // the user moved on meanwhile
    state.messages = detail.messages.filter((m) => m.role !== 'system').map(toUi)
    state.newMessageTick++
  } catch (err) {
    if (state.currentId !== id) return
    if (err instanceof ApiError && err.status === 404) {
      state.currentId = null
      state.messages = []
      remember(null)
    } else if (err instanceof NetworkError) {
      state.serverStatus = 'down'
      schedulePoll()
    } else {
      state.banner = describe(err)
    }
  } finally {
    if (state.currentId === id) state.loadingConversation = false
  }
}

/** The presets in the UI's language; the choice stays when it is still listed, else the first. */
export async function loadPresets(language: string): Promise<void> {
  try {
    state.presets = (await api.listPresets(language)).data
  } catch {
    state.presets = [] // an older server, or none: conversations start without a preset
  }
  if (!state.presets.some((p) => p.id === state.presetId)) state.presetId = state.presets[0]?.id ?? null
}

/** Saves a conversation's system prompt and settings (a PATCH; the server merges nothing). */
export async function saveConversationSettings(id: string, patch: { system_prompt: string | null; settings: Record<string, unknown> }): Promise<boolean> {
  try {
    const updated = await api.updateConversation(id, patch)
    const i = state.conversations.findIndex((c) => c.id === id)
    if (i >= 0) state.conversations[i] = { ...state.conversations[i], ...updated }
    return true
  } catch (err) {
    state.banner = describe(err)
    return false
  }
}

export function newChat(): void {
  void openConversation(null)
}

export async function renameConversation(id: string, title: string): Promise<void> {
  const t = title.trim()
  if (!t) return
  const c = state.conversations.find((x) => x.id === id)
  const old = c?.title ?? null
  if (c) c.title = t
  try {
    await api.renameConversation(id, t)
  } catch (err) {
    if (c) c.title = old
    state.banner = describe(err)
  }
}

/**
 * Deletes with undo: the conversation disappears at once and is deleted on the server after
 * UNDO_MS, when another delete starts, or when the page is closed.
 */
let deleteTimer: ReturnType<typeof setTimeout> | null = null

export function deleteConversation(id: string): void {
  commitPendingDelete()
  const index = state.conversations.findIndex((c) => c.id === id)
  if (index < 0) return
  const [conversation] = state.conversations.splice(index, 1)
  state.pendingDelete = { conversation, index }
  if (state.currentId === id) {
    if (state.streams[id]) stopStreaming()
    void openConversation(null)
  }
  deleteTimer = setTimeout(commitPendingDelete, UNDO_MS)
}

/** Ends the undo window (either way) and returns what was pending. */
function takePendingDelete(): { conversation: Conversation; index: number } | null {
  const p = state.pendingDelete
  if (deleteTimer) clearTimeout(deleteTimer)
  deleteTimer = null
  state.pendingDelete = null
  return p
}

export function undoDelete(): void {
  const p = takePendingDelete()
  if (p) state.conversations.splice(Math.min(p.index, state.conversations.length), 0, p.conversation)
}

export function commitPendingDelete(): void {
  const p = takePendingDelete()
  if (!p) return
  api.deleteConversation(p.conversation.id, true).catch((err) => {
    if (!(err instanceof ApiError && err.status === 404)) {
      state.banner = describe(err)
      void refreshList()
    }
  })
}

// ---------------------------------------------------------------- chatting

/** Sends a new question in the current conversation (creating one on the first message). */
export async function send(text: string): Promise<void> {
  const content = text.trim()
  if (!content || isStreaming.value) return
  await setup // first: opening a conversation replaces the message list
  if (isStreaming.value) return
  const [user, assistant] = pushMessages(
    { id: --tempId, role: 'user', content, status: 'complete', key: newKey() },
    placeholder(),
  )
  let id = state.currentId
  if (!id) {
    try {
      id = await createCurrent()
    } catch (err) {
      fail(assistant, err)
      return
    }
  }
  await runStream(id, { kind: 'send', content }, assistant, user)
}

/** Conversation set-up still in flight (creating it, choosing its knowledge base): a question
 * sent meanwhile waits for it, so it goes to that conversation and is answered from that
 * knowledge base. */
let setup: Promise<unknown> = Promise.resolve()
let creating: Promise<string> | null = null

/** Registers `work` as set-up that the next question must wait for; returns it. */
export function settingUp<T>(work: Promise<T>): Promise<T> {
  setup = Promise.all([setup, work.catch(() => undefined)])
  return work
}

function createCurrent(): Promise<string> {
  creating ??= (async () => {
    // The server titles it from the first question and copies the chosen preset into it.
    const conv = await api.createConversation(state.presetId ? { preset: state.presetId } : {})
    state.conversations.unshift(conv)
    state.currentId = conv.id
    remember(conv.id)
    return conv.id
  })().finally(() => (creating = null))
  return creating
}

/** The open conversation's id, creating it first when none is open (attaching files, picking a
 * knowledge base before the first question); null when the server refused. */
export async function ensureConversation(): Promise<string | null> {
  if (state.currentId) return state.currentId
  try {
    return await createCurrent()
  } catch (err) {
    state.banner = describe(err)
    return null
  }
}

/** Answers the last question again (replacing the last answer once the new one completes). */
export async function regenerate(): Promise<void> {
  const id = state.currentId
  if (!id || isStreaming.value) return
  const last = state.messages[state.messages.length - 1]
  if (last?.role === 'assistant') state.messages.pop()
  const [assistant] = pushMessages(placeholder())
  await runStream(id, { kind: 'regenerate' }, assistant)
  await keepServerViewUnlessComplete(id, assistant)
}

/**
 * A regenerate or edit that did not complete (stopped, failed, refused) changed nothing on the
 * server, which kept the previous reply: show the conversation as the server has it.
 */
async function keepServerViewUnlessComplete(id: string, assistant: UiMessage): Promise<void> {
  if (assistant.status === 'complete' || assistant.errorKind === 'down' || state.currentId !== id) return
  const why = assistant.status === 'error' ? assistant.error : undefined
  await openConversation(id)
  if (why && state.currentId === id) state.banner = why // why the new answer is not there
}

/**
 * Goes on with the last reply where it stopped (cut by max_tokens, or the loop guard), in the
 * same message. One that does not complete changed nothing on the server: show its view.
 */
export async function continueReply(): Promise<void> {
  const id = state.currentId
  if (!id || isStreaming.value) return
  const last = state.messages[state.messages.length - 1]
  if (last?.role !== 'assistant' || last.id < 0) return
  last.streaming = true
  last.status = 'incomplete'
  last.finish_reason = null
  await runStream(id, { kind: 'continue' }, last)
  await keepServerViewUnlessComplete(id, last)
}

/** Replaces a past question, drops everything after it, and streams a new answer. */
export async function editAndResend(messageId: number, text: string): Promise<void> {
  const id = state.currentId
  const content = text.trim()
  if (!id || !content || isStreaming.value || messageId < 0) return
  const index = state.messages.findIndex((m) => m.id === messageId && m.role === 'user')
  if (index < 0) return
  const user = state.messages[index]
  user.content = content
  state.messages.splice(index + 1)
  const [assistant] = pushMessages(placeholder())
  await runStream(id, { kind: 'edit', messageId, content }, assistant, user)
  await keepServerViewUnlessComplete(id, assistant)
}

/** Retries a failed answer: regenerate if the question reached the server, else resend it. */
export async function retryLast(): Promise<void> {
  const msgs = state.messages
  const lastUser = [...msgs].reverse().find((m) => m.role === 'user')
  if (!lastUser) return
  if (lastUser.id > 0) return regenerate()
  msgs.splice(msgs.indexOf(lastUser))
  return send(lastUser.content)
}

/** Stop: abort our stream AND tell the server, which keeps the partial reply. */
export function stopStreaming(): void {
  const id = state.currentId
  if (!id) return
  const controller = state.streams[id]
  if (!controller) return
  api.stop(id).catch(() => undefined)
  controller.abort()
}

/**
 * Appends messages to the view and returns them as the reactive proxies the view watches
 * (mutating the plain objects would not re-render).
 */
function pushMessages(...items: UiMessage[]): UiMessage[] {
  state.messages.push(...items)
  state.newMessageTick++
  const n = state.messages.length
  return items.map((_, i) => state.messages[n - items.length + i])
}

function placeholder(): UiMessage {
  return { id: --tempId, role: 'assistant', content: '', status: 'incomplete', streaming: true, key: newKey() }
}

function fail(assistant: UiMessage, err: unknown): void {
  assistant.streaming = false
  assistant.status = 'error'
  if (err instanceof NetworkError) {
    assistant.errorKind = 'down'
    state.serverStatus = 'down'
    schedulePoll()
  } else {
    assistant.errorKind = 'error'
    assistant.error = describe(err)
  }
}

/** The first `n` characters (code points, as the server counts) of `text`. */
function firstChars(text: string, n: number): string {
  return Array.from(text).slice(0, n).join('')
}

function applyDone(assistant: UiMessage, p: DonePayload, base: string) {
  if (typeof p.message_id === 'number') assistant.id = p.message_id
  if (typeof p.text_length === 'number') {
    // The loop guard: drop the repeated copies this stream had already shown.
    assistant.content = base + firstChars(assistant.content.slice(base.length), p.text_length)
  }
  assistant.finish_reason = p.finish_reason ?? null
  assistant.citations = p.citations ?? null
  assistant.retrieval = p.retrieved ?? null
  assistant.timings = p.timings ?? null
  assistant.budget = p.budget ?? null
  assistant.status = p.finish_reason === 'cancelled' ? 'incomplete' : 'complete'
  const completion = p.usage?.completion_tokens
  if (typeof completion === 'number') assistant.completion_tokens = completion
}

async function runStream(convId: string, what: StreamKind, assistant: UiMessage, user?: UiMessage): Promise<void> {
  const controller = new AbortController()
  state.streams[convId] = controller
  state.liveViews[convId] = state.messages
  const buffer = new TokenBuffer(assistant)
  const base = assistant.content // what Continue appends to ('' for a new reply)
  let busyRetries = 0
  replyTap.start?.()
  try {
    for (;;) {
      try {
        for await (const ev of streamReply(convId, what, controller.signal)) {
          if (ev.type === 'start') {
            if (user && ev.userMessageId !== undefined) user.id = ev.userMessageId
            if (ev.messageId !== undefined) assistant.id = ev.messageId
            state.busyRetryIn = null
            const conv = state.conversations.find((c) => c.id === convId)
            if (conv && !conv.title) void refreshList() // the server has just titled it
          } else if (ev.type === 'status') {
            assistant.progress = ev.status
          } else if (ev.type === 'token') {
            assistant.progress = undefined
            buffer.push(ev.text)
            replyTap.token?.(ev.text)
          } else if (ev.type === 'done') {
            buffer.flush()
            applyDone(assistant, ev.payload, base)
          } else if (ev.type === 'error') {
            buffer.flush()
            assistant.status = 'error'
            assistant.errorKind = 'error'
            assistant.error = ev.message
          }
        }
        buffer.flush() // a stream that ends without `done` leaves the reply `incomplete`
        return
      } catch (err) {
        buffer.flush()
        if (isAbort(err)) {
          assistant.status = 'incomplete' // stopped by the user: the partial reply stays
          return
        }
        if (err instanceof ApiError && err.status === 503) {
          if (err.code === 'model_loading') {
            state.serverStatus = 'loading'
            await waitUntilReady(controller.signal)
            continue
          }
          if (++busyRetries > MAX_BUSY_RETRIES) throw err
          await countdown(Math.max(1, Math.ceil(err.retryAfter ?? 2)), controller.signal)
          continue
        }
        throw err
      }
    }
  } catch (err) {
    buffer.flush()
    if (isAbort(err)) assistant.status = 'incomplete'
    else fail(assistant, err)
  } finally {
    if (!controller.signal.aborted) replyTap.end?.() // after Stop, nothing more is spoken
    state.busyRetryIn = null
    assistant.progress = undefined
    assistant.streaming = false
    delete state.streams[convId]
    delete state.liveViews[convId]
    void refreshList()
  }
}

/** Shows "busy, retrying in N s" and waits N seconds (Stop cancels it). */
async function countdown(seconds: number, signal: AbortSignal): Promise<void> {
  try {
    for (let n = seconds; n > 0; n--) {
      state.busyRetryIn = n
      await sleep(1000, signal)
    }
  } finally {
    state.busyRetryIn = null
  }
}

export const _testing = { TokenBuffer, sleep }
