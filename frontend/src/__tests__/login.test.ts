import { beforeEach, describe, expect, it, vi } from 'vitest'
import { installFakeFetch, jsonResponse } from './fakeFetch'
import { loadConfig, onAuthProblem, state, submitLogin } from '../store'
import { setApiKey } from '../api'

const CONFIG = { model: 'm', version: 'v', auth_required: true, auth: 'accounts', n_ctx: 4096, default_max_tokens: 512, max_tokens: 2048 }
const ALICE = { id: 1, username: 'alice', role: 'admin', groups: [] }

beforeEach(() => {
  vi.useRealTimers()
  setApiKey(null)
  state.needKey = false
  state.needLogin = false
  state.user = null
  state.config = null
})

describe('accounts', () => {
  it('asks for a login (not a key) when the server says login_required, then knows the user', async () => {
    const f = installFakeFetch()
    let loggedIn = false
    f.on('GET', /\/api\/config$/, () =>
      loggedIn ? jsonResponse(CONFIG) : jsonResponse({ error: { message: 'log in', type: 'authentication_error', code: 'login_required' } }, 401),
    )
    f.on('POST', /\/api\/auth\/login$/, () => {
      loggedIn = true
      return jsonResponse({ user: ALICE })
    })
    f.on('GET', /\/api\/auth\/me$/, () => jsonResponse({ user: ALICE }))
    f.on('GET', /\/api\/conversations\?/, () => jsonResponse({ data: [] }))
    expect(await loadConfig()).toBe(false)
    expect(state.needLogin).toBe(true)
    expect(state.needKey).toBe(false)
    await submitLogin('alice', 'alice-password')
    expect(state.needLogin).toBe(false)
    expect(state.user?.username).toBe('alice')
    const login = f.calls.find((c) => c.url.endsWith('/api/auth/login'))!
    expect(login.method).toBe('POST')
    expect(login.headers.get('Authorization')).toBeNull() // the session is a cookie the page never sees
  })

  it('a wrong password is the dialog\'s error, not a reason to ask for an API key', async () => {
    const f = installFakeFetch()
    f.on('POST', /\/api\/auth\/login$/, () => jsonResponse({ error: { message: 'wrong', type: 'authentication_error', code: 'invalid_credentials' } }, 401))
    const { onUnauthorized } = await import('../api')
    onUnauthorized(onAuthProblem)
    await expect(submitLogin('alice', 'nope-nope')).rejects.toMatchObject({ status: 401, code: 'invalid_credentials' })
    expect(state.needKey).toBe(false)
    expect(state.user).toBeNull()
  })
})
