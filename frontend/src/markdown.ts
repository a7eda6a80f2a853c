/**
 * Markdown rendering for model output, which is untrusted.
 *
 * Two layers, so a bug in one is caught by the other:
 *  1. markdown-it with `html: false` (raw HTML in the text stays text), a link allowlist
 *     (http/https/mailto), our own code-fence renderer (escaped code, a language label and a copy
 *     button) and an image rule that shows alt text unless images are allowed and safe.
 *  2. DOMPurify over the rendered HTML with a small tag/attribute allowlist, no `style`, and a
 *     hook that re-checks every href/src and forces target=_blank rel="noopener noreferrer".
 * The page's CSP (no inline script, no inline style) is the third.
 */
import MarkdownIt from 'markdown-it'
import type { Options as MdOptions, Token } from 'markdown-it'
import DOMPurify from 'dompurify'

export interface RenderOptions {
  /** Text of the copy button on code blocks (localized by the caller). */
  copyLabel?: string
  /**
   * Show images whose source is same-origin (`/path`) or an inline `data:image/...`. Remote
   * images are never loaded: they could track the reader. Off by default (alt text is shown).
   */
  allowImages?: boolean
  /** Highlighted HTML for a code block, or null for escaped plain text. */
  highlight?: (code: string, lang: string) => string | null
  /** MathML for a TeX formula, or null to show the TeX source (see math.ts). */
  math?: (tex: string, display: boolean) => string | null
  /**
   * Extra HTML for the n-th code block (0-based, in document order): `head` goes after the copy
   * button, `after` below the code (the code runner's buttons and output). Sanitized like the rest.
   */
  codeExtras?: (index: number, lang: string) => { head: string; after: string } | null
  /** Code blocks rendered so far (set during one render). */
  blockCount?: number
}

const SAFE_LINK = /^(?:https?:|mailto:)/i
const SAFE_IMAGE = /^(?:\/(?![/\\])|data:image\/(?:png|gif|jpe?g|webp);base64,[a-z0-9+/=\s]+$)/i

export function isSafeHref(href: string | null | undefined): boolean {
  return !!href && SAFE_LINK.test(href.trim()) && !/[\u0000-\u001f]/.test(href)
}

export function isSafeImageSrc(src: string | null | undefined): boolean {
  return !!src && SAFE_IMAGE.test(src.trim())
}

const md = new MarkdownIt({ html: false, linkify: true, breaks: true, typographer: false })
const escapeHtml = md.utils.escapeHtml

// Links: http/https/mailto only; anything else stays literal text. Same-origin paths and
// data:image are let through here only so the image rule can decide (and link_open drops them).
md.validateLink = (url: string) => isSafeHref(url) || isSafeImageSrc(url)

md.renderer.rules.link_open = (tokens, idx, options, _env, self) => {
  const token = tokens[idx]
  if (!isSafeHref(token.attrGet('href'))) {
    token.attrs = (token.attrs ?? []).filter(([name]) => name !== 'href')
  } else {
    token.attrSet('target', '_blank')
    token.attrSet('rel', 'noopener noreferrer')
  }
  return self.renderToken(tokens, idx, options)
}

md.renderer.rules.image = (tokens, idx, options, env: RenderOptions) => {
  const token = tokens[idx]
  const src = token.attrGet('src') ?? ''
  const alt = imageAlt(tokens, idx, options, env)
  if (env.allowImages && isSafeImageSrc(src)) {
    return `<img src="${escapeHtml(src)}" alt="${escapeHtml(alt)}" loading="lazy">`
  }
  return `<span class="img-alt">[${escapeHtml(alt || 'image')}]</span>`
}

function imageAlt(tokens: Token[], idx: number, options: MdOptions, env: unknown): string {
  const children = tokens[idx].children ?? []
  return md.renderer.renderInlineAsText(children, options, env)
}

/** Fence info -> a language token that is safe to put in a class name and a label. */
export function fenceLanguage(info: string): string {
  const first = md.utils.unescapeAll(info).trim().split(/\s+/)[0] ?? ''
  return first.replace(/[^\w+#.-]/g, '').slice(0, 32)
}

function codeBlock(content: string, lang: string, env: RenderOptions): string {
  const highlighted = lang && env.highlight ? env.highlight(content, lang) : null
  const body = highlighted ?? escapeHtml(content)
  const cls = lang ? ` language-${lang.toLowerCase()}` : ''
  const index = env.blockCount ?? 0
  env.blockCount = index + 1
  const extras = env.codeExtras?.(index, lang) ?? { head: '', after: '' }
  return (
    '<div class="code-block"><div class="code-head">' +
    `<span class="code-lang">${escapeHtml(lang || 'text')}</span><span class="code-actions">` +
    `<button type="button" class="code-copy">${escapeHtml(env.copyLabel ?? 'Copy')}</button>${extras.head}` +
    `</span></div><pre><code class="hljs${cls}">${body}</code></pre>${extras.after}</div>\n`
  )
}

md.renderer.rules.fence = (tokens, idx, _options, env: RenderOptions) =>
  codeBlock(tokens[idx].content, fenceLanguage(tokens[idx].info), env)
md.renderer.rules.code_block = (tokens, idx, _options, env: RenderOptions) =>
  codeBlock(tokens[idx].content, '', env)

// Table alignment: markdown-it writes style="text-align:…", which a strict CSP would block
// and our sanitizer removes; use classes instead.
md.core.ruler.push('align_classes', (state) => {
  for (const token of state.tokens) {
    if (token.type !== 'th_open' && token.type !== 'td_open') continue
    const style = token.attrGet('style')
    if (!style) continue
    token.attrs = (token.attrs ?? []).filter(([name]) => name !== 'style')
    const m = /text-align:\s*(left|right|center)/.exec(style)
    if (m) token.attrJoin('class', `align-${m[1]}`)
  }
})

// ---------------------------------------------------------------- math syntax

/** Inline math: \(…\), $…$ (not "$5 and $10": no space inside the dollars, no digit after). */
md.inline.ruler.before('escape', 'math_inline', (state, silent) => {
  const src = state.src
  const start = state.pos
  let content: string
  let end: number
  let display = false
  if (src.startsWith('\\(', start) || src.startsWith('\\[', start)) {
    const close = src.indexOf(src[start + 1] === '(' ? '\\)' : '\\]', start + 2)
    if (close < 0) return false
    display = src[start + 1] === '['
    content = src.slice(start + 2, close)
    end = close + 2
  } else if (src[start] === '$') {
    if (src[start + 1] === '$') {
      const close = src.indexOf('$$', start + 2)
      if (close < 0) return false
      display = true
      content = src.slice(start + 2, close)
      end = close + 2
    } else {
      if (start > 0 && src[start - 1] === '\\') return false
      const first = src[start + 1]
      if (!first || /\s/.test(first)) return false
      let close = start + 1
      for (;;) {
        close = src.indexOf('$', close)
        if (close < 0) return false
        if (src[close - 1] !== '\\') break
        close++
      }
      if (/\s/.test(src[close - 1]) || /\d/.test(src[close + 1] ?? '')) return false
      content = src.slice(start + 1, close)
      end = close + 1
    }
  } else {
    return false
  }
  if (!content.trim()) return false
  if (!silent) {
    const token = state.push('math_inline', 'math', 0)
    token.content = content
    token.markup = display ? 'display' : ''
  }
  state.pos = end
  return true
})

/** Block math: a paragraph that starts with $$ or \[ and is closed by $$ or \] (unclosed while
 * streaming: stays text until the closing delimiter arrives). */
md.block.ruler.before('fence', 'math_block', (state, startLine, endLine, silent) => {
  if (state.sCount[startLine] - state.blkIndent >= 4) return false
  const first = state.src.slice(state.bMarks[startLine] + state.tShift[startLine], state.eMarks[startLine])
  const open = first.startsWith('$$') ? '$$' : first.startsWith('\\[') ? '\\[' : null
  if (!open) return false
  const close = open === '$$' ? '$$' : '\\]'
  const lines: string[] = []
  let rest = first.slice(2)
  let line = startLine
  for (;;) {
    const trimmed = rest.trimEnd()
    if (trimmed.endsWith(close) && !(line === startLine && trimmed.length < close.length)) {
      lines.push(trimmed.slice(0, -close.length))
      break
    }
    lines.push(rest)
    line++
    if (line >= endLine) return false
    rest = state.src.slice(state.bMarks[line] + state.tShift[line], state.eMarks[line])
  }
  if (!lines.join('').trim()) return false
  if (silent) return true
  const token = state.push('math_block', 'math', 0)
  token.block = true
  token.content = lines.join('\n').trim()
  token.map = [startLine, line + 1]
  state.line = line + 1
  return true
})

function mathHtml(tex: string, display: boolean, env: RenderOptions): string {
  const rendered = env.math?.(tex, display)
  if (rendered) return rendered
  const src = display ? `$$${tex}$$` : `$${tex}$`
  return `<code class="math-src">${escapeHtml(src)}</code>`
}

md.renderer.rules.math_inline = (tokens, idx, _o, env: RenderOptions) =>
  mathHtml(tokens[idx].content, tokens[idx].markup === 'display', env)
md.renderer.rules.math_block = (tokens, idx, _o, env: RenderOptions) =>
  `<div class="math-block">${mathHtml(tokens[idx].content, true, env)}</div>\n`

// ---------------------------------------------------------------- sanitizer

/** MathML that KaTeX emits (presentation elements only; no maction, no href). */
const MATHML_TAGS = [
  'math', 'semantics', 'annotation', 'mrow', 'mi', 'mn', 'mo', 'ms', 'mtext', 'mspace', 'msup',
  'msub', 'msubsup', 'mfrac', 'msqrt', 'mroot', 'mover', 'munder', 'munderover', 'mtable', 'mtr',
  'mtd', 'mstyle', 'mpadded', 'mphantom', 'menclose', 'merror', 'mlabeledtr',
]
const MATHML_ATTR = [
  'display', 'mathvariant', 'stretchy', 'fence', 'separator', 'lspace', 'rspace', 'accent',
  'accentunder', 'columnalign', 'rowspacing', 'columnspacing', 'rowlines', 'columnlines', 'encoding',
  'linethickness', 'minsize', 'maxsize', 'movablelimits', 'width', 'height', 'depth', 'voffset',
  'scriptlevel', 'displaystyle', 'notation', 'symmetric', 'largeop', 'xmlns', 'mathcolor',
]

const ALLOWED_TAGS = [...MATHML_TAGS, 
  'a', 'b', 'blockquote', 'br', 'button', 'code', 'del', 'div', 'em', 'h1', 'h2', 'h3', 'h4',
  'h5', 'h6', 'hr', 'i', 'img', 'kbd', 'li', 'ol', 'p', 'pre', 's', 'span', 'strong', 'sub',
  'sup', 'table', 'tbody', 'td', 'th', 'thead', 'tr', 'ul',
]
const ALLOWED_ATTR = [...MATHML_ATTR, 'href', 'title', 'alt', 'src', 'class', 'target', 'rel', 'type', 'start', 'loading', 'disabled']

let imagesAllowed = false

DOMPurify.addHook('afterSanitizeAttributes', (node: Element) => {
  if (node.tagName === 'A') {
    if (!isSafeHref(node.getAttribute('href'))) node.removeAttribute('href')
    node.setAttribute('target', '_blank')
    node.setAttribute('rel', 'noopener noreferrer')
  } else if (node.tagName === 'IMG') {
    // Second line of defence (the markdown rule already shows alt text): an image we would
    // not load loses its src, so the browser shows its alt text and fetches nothing.
    if (!imagesAllowed || !isSafeImageSrc(node.getAttribute('src'))) node.removeAttribute('src')
  } else if (node.tagName === 'BUTTON') {
    node.setAttribute('type', 'button') // never a submit button
  }
})

/** Sanitizes rendered HTML (see the module comment); usable on its own for any HTML string. */
export function sanitizeHtml(html: string, opts: { allowImages?: boolean } = {}): string {
  imagesAllowed = !!opts.allowImages
  try {
    return DOMPurify.sanitize(html, {
      ALLOWED_TAGS,
      ALLOWED_ATTR,
      ALLOW_DATA_ATTR: false,
      ALLOW_ARIA_ATTR: false,
      FORBID_ATTR: ['style'],
      // Applies to every attribute value DOMPurify does not know as URI-safe: values without a
      // scheme ("block", "3", "/x") pass, and of the schemes only these; the hook above then
      // narrows href and src further.
      ALLOWED_URI_REGEXP: /^(?:(?:https?|mailto):|data:image\/(?:png|gif|jpe?g|webp);base64,|[^a-z]|[a-z+.-]+(?:[^a-z+.:-]|$))/i,
    }) as string
  } finally {
    imagesAllowed = false
  }
}

/** Markdown source (untrusted) -> sanitized HTML ready for v-html. */
export function renderMarkdown(src: string, opts: RenderOptions = {}): string {
  const env: RenderOptions = { ...opts, blockCount: 0 }
  return sanitizeHtml(md.render(src, env), { allowImages: opts.allowImages })
}
