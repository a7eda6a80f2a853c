/**
 * Math (a bonus): TeX between $…$, $$…$$, \(…\) or \[…\] is rendered by KaTeX, loaded lazily
 * the first time a formula shows up (KaTeX is ~75 KB gzipped, most chats never need it).
 *
 * KaTeX's usual HTML output positions glyphs with inline style attributes, which our CSP
 * (style-src 'self') blocks and our sanitizer strips. Its MathML output needs no styles and no
 * web fonts, and Chromium, Firefox and Safari render MathML natively, so we use that only.
 * `trust: false` keeps \href, \url, \htmlClass and friends inert.
 */
import { ref } from 'vue'

type Katex = typeof import('katex').default

let katex: Katex | null = null
let loading: Promise<boolean> | null = null

/** Bumped when KaTeX arrives, so rendered messages re-render their formulas. */
export const mathVersion = ref(0)

export function loadKatex(): Promise<boolean> {
  if (katex) return Promise.resolve(true)
  if (!loading) {
    loading = import('katex')
      .then((mod) => {
        katex = mod.default
        mathVersion.value++
        return true
      })
      .catch(() => {
        loading = null
        return false
      })
  }
  return loading
}

/** MathML for `tex`, or null while KaTeX is still loading (the caller shows the source). */
export function renderTex(tex: string, display: boolean): string | null {
  if (!katex) {
    void loadKatex()
    return null
  }
  try {
    // throwOnError: an invalid formula shows its source instead of KaTeX's red error span,
    // whose style="" attribute the CSP would refuse (and report) when the sanitizer parses it.
    const html = katex.renderToString(tex, {
      displayMode: display,
      output: 'mathml',
      throwOnError: true,
      trust: false,
      strict: 'ignore',
      maxSize: 20,
      maxExpand: 500,
    })
    // KaTeX escapes attribute values, so this reliably drops any style it might still emit.
    return html.replace(/\sstyle="[^"]*"/g, '')
  } catch {
    return null
  }
}
