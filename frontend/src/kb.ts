/**
 * Knowledge bases in the web UI: the list to pick from, a conversation's attached files (uploaded
 * with progress, then ingested by a server job we poll), and the passage a citation opens. Every
 * call sends the API key (through `request`, or on the XHR for uploads): a citation is opened with
 * fetch inside the app, never as a link that would need the key in its URL.
 */
import { ApiError, getApiKey, request } from './api'

export interface KnowledgeBase {
  name: string
  description: string
  document_count: number
  chunk_count: number
}

export interface Citation {
  n: number
  chunk_id: number
  source: string
  heading: string | null
  anchor: string | null
  snippet: string
}

export interface Retrieved {
  chunk_id: number
  source: string
  heading: string | null
  snippet: string
  score: number
  lexical_rank: number | null
  dense_rank: number | null
  /** The meaning (dense) score the retrieval gate compares with --kb-min-relevance. */
  dense_score?: number | null
  n: number | null
}

export interface Passage {
  id: number
  kb: string
  source: string
  title: string
  heading: string | null
  anchor: string | null
  page: number | null
  text: string
}

export interface JobProgress {
  files_total: number
  files_done: number
  added: number
  failed: number
  chunks: number
  errors: { source: string; error: string }[]
}

export interface Job {
  id: string
  status: 'queued' | 'running' | 'done' | 'error'
  progress: JobProgress
  error: string | null
}

export interface AttachedFile {
  id: number
  source: string
  status: string
  chunk_count: number
}

const enc = encodeURIComponent

async function getJson<T>(path: string, init: RequestInit = {}): Promise<T> {
  const res = await request(path, init)
  return res.status === 204 ? (undefined as T) : ((await res.json()) as T)
}

export const kbApi = {
  list: () => getJson<{ data: KnowledgeBase[] }>('/api/kb'),
  passage: (chunkId: number) => getJson<Passage>(`/api/kb/chunks/${chunkId}`),
  job: (id: string) => getJson<Job>(`/api/kb/jobs/${enc(id)}`),
  files: (convId: string) => getJson<{ data: AttachedFile[] }>(`/api/conversations/${enc(convId)}/files`),
  setConversationKb: (convId: string, kb: string | null) =>
    getJson<{ kb: string | null }>(`/api/conversations/${enc(convId)}`, { method: 'PATCH', body: JSON.stringify({ kb }) }),
}

/** Upload files to a conversation with upload progress (0..1); resolves with the ingest job. */
export function uploadFiles(convId: string, files: File[], onProgress: (fraction: number) => void): Promise<Job> {
  return new Promise((resolve, reject) => {
    const form = new FormData()
    for (const f of files) form.append('files', f, f.name)
    const xhr = new XMLHttpRequest()
    xhr.open('POST', `/api/conversations/${enc(convId)}/files`)
    const key = getApiKey()
    if (key) xhr.setRequestHeader('Authorization', `Bearer ${key}`)
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total)
    xhr.onerror = () => reject(new ApiError('upload failed', 0))
    xhr.onload = () => {
      let body: Record<string, unknown> = {}
      try {
        body = JSON.parse(xhr.responseText)
      } catch {
        /* not JSON */
      }
      if (xhr.status === 202) resolve(body as unknown as Job)
      else {
        const err = (body.error ?? {}) as Record<string, unknown>
        reject(new ApiError(String(err.message ?? `HTTP ${xhr.status}`), xhr.status, err.code as string | undefined))
      }
    }
    xhr.send(form)
  })
}

/** Poll an ingest job until it ends, reporting each state. */
export async function waitForJob(id: string, onUpdate: (job: Job) => void, intervalMs = 500): Promise<Job> {
  for (;;) {
    const job = await kbApi.job(id)
    onUpdate(job)
    if (job.status === 'done' || job.status === 'error') return job
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}

/** Where a citation points: ``source#anchor`` (the anchor is the section id, or ``page=N``). */
export function citationPlace(c: { source: string; anchor: string | null }): string {
  return c.anchor ? `${c.source}#${c.anchor}` : c.source
}
