/**
 * Syntax highlighting with highlight.js core and one lazily loaded chunk per language.
 *
 * The full highlight.js bundle is ~300 KB; the first screen never needs it. Each grammar is a
 * separate dynamic import, fetched the first time a code block in that language shows up; when
 * it arrives `highlightVersion` bumps and rendered messages re-render with colours.
 */
import hljs from 'highlight.js/lib/core'
import type { LanguageFn } from 'highlight.js'
import { ref } from 'vue'

type Loader = () => Promise<{ default: LanguageFn }>

const loaders: Record<string, Loader> = {
  bash: () => import('highlight.js/lib/languages/bash'),
  c: () => import('highlight.js/lib/languages/c'),
  cpp: () => import('highlight.js/lib/languages/cpp'),
  csharp: () => import('highlight.js/lib/languages/csharp'),
  css: () => import('highlight.js/lib/languages/css'),
  diff: () => import('highlight.js/lib/languages/diff'),
  dockerfile: () => import('highlight.js/lib/languages/dockerfile'),
  go: () => import('highlight.js/lib/languages/go'),
  ini: () => import('highlight.js/lib/languages/ini'),
  java: () => import('highlight.js/lib/languages/java'),
  javascript: () => import('highlight.js/lib/languages/javascript'),
  json: () => import('highlight.js/lib/languages/json'),
  kotlin: () => import('highlight.js/lib/languages/kotlin'),
  lua: () => import('highlight.js/lib/languages/lua'),
  makefile: () => import('highlight.js/lib/languages/makefile'),
  markdown: () => import('highlight.js/lib/languages/markdown'),
  php: () => import('highlight.js/lib/languages/php'),
  plaintext: () => import('highlight.js/lib/languages/plaintext'),
  powershell: () => import('highlight.js/lib/languages/powershell'),
  python: () => import('highlight.js/lib/languages/python'),
  r: () => import('highlight.js/lib/languages/r'),
  ruby: () => import('highlight.js/lib/languages/ruby'),
  rust: () => import('highlight.js/lib/languages/rust'),
  scala: () => import('highlight.js/lib/languages/scala'),
  shell: () => import('highlight.js/lib/languages/shell'),
  sql: () => import('highlight.js/lib/languages/sql'),
  swift: () => import('highlight.js/lib/languages/swift'),
  typescript: () => import('highlight.js/lib/languages/typescript'),
  xml: () => import('highlight.js/lib/languages/xml'),
  yaml: () => import('highlight.js/lib/languages/yaml'),
}

const aliases: Record<string, string> = {
  sh: 'bash', zsh: 'bash', console: 'shell', shellsession: 'shell',
  'c++': 'cpp', cc: 'cpp', cxx: 'cpp', hpp: 'cpp', h: 'c',
  cs: 'csharp', 'c#': 'csharp',
  docker: 'dockerfile', golang: 'go', toml: 'ini',
  js: 'javascript', jsx: 'javascript', mjs: 'javascript', node: 'javascript',
  ts: 'typescript', tsx: 'typescript',
  kt: 'kotlin', md: 'markdown', make: 'makefile',
  ps: 'powershell', ps1: 'powershell', py: 'python', python3: 'python', py3: 'python',
  rb: 'ruby', rs: 'rust', text: 'plaintext', txt: 'plaintext',
  html: 'xml', htm: 'xml', svg: 'xml', vue: 'xml', xhtml: 'xml', yml: 'yaml',
  mysql: 'sql', postgresql: 'sql', sqlite: 'sql', patch: 'diff',
}

/** Bumped whenever a grammar finishes loading: a reactive dependency for re-rendering. */
export const highlightVersion = ref(0)

const pending = new Map<string, Promise<boolean>>()

/** The grammar name for a fence's info string, or null when we have none for it. */
export function canonicalLanguage(lang: string): string | null {
  const l = lang.trim().toLowerCase()
  if (!l) return null
  const name = aliases[l] ?? l
  return Object.prototype.hasOwnProperty.call(loaders, name) ? name : null
}

export function loadLanguage(lang: string): Promise<boolean> {
  const name = canonicalLanguage(lang)
  if (!name) return Promise.resolve(false)
  if (hljs.getLanguage(name)) return Promise.resolve(true)
  let p = pending.get(name)
  if (!p) {
    p = loaders[name]()
      .then((mod) => {
        hljs.registerLanguage(name, mod.default)
        highlightVersion.value++
        return true
      })
      .catch(() => {
        pending.delete(name) // offline for a moment: try again next render
        return false
      })
    pending.set(name, p)
  }
  return p
}

/**
 * Highlighted HTML for `code` when its grammar is loaded; otherwise starts loading it and
 * returns null (the caller shows escaped plain text until `highlightVersion` changes).
 * highlight.js escapes the code itself; its output is only <span class="hljs-…">.
 */
export function highlightCode(code: string, lang: string): string | null {
  const name = canonicalLanguage(lang)
  if (!name) return null
  if (!hljs.getLanguage(name)) {
    void loadLanguage(name)
    return null
  }
  try {
    return hljs.highlight(code, { language: name, ignoreIllegals: true }).value
  } catch {
    return null
  }
}
