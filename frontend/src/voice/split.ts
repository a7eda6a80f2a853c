/**
 * Cutting a streamed answer into pieces to speak while the rest is still being generated: the
 * first piece ends at the first clause (a comma is enough) so speech starts within a breath, later
 * pieces at sentence ends; code blocks are not read aloud. The same rules as the server's
 * `xiaoq/voice/text.py`, which cuts `/v1/audio/speech` input and `xiaoq chat --speak` answers.
 */

const CJK = /[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]/g
const LATIN = /[A-Za-z]/g
const SENTENCE_END = /[。！？!?；;\n]+|\.(?=\s)/g
const CLAUSE_END = /[，、：—]|[,:](?=\s)/g
const FENCE = '```'
const FIRST_MIN_CHARS = 3
const MAX_PIECE_CHARS = 160
/** Without a clause mark by then, the first piece ends after this many words (or Chinese characters). */
const FIRST_MAX_WORDS = 8
const FIRST_MAX_CJK = 16
const WORD_END = /[A-Za-z0-9'’]+(?=\s)|[\u3400-\u9fff]/g

/** `zh` when the text is mostly Chinese characters, else `en`. */
export function detectLanguage(text: string): 'zh' | 'en' {
  const cjk = (text.match(CJK) ?? []).length
  const latin = (text.match(LATIN) ?? []).length
  return cjk && cjk * 3 >= latin ? 'zh' : 'en'
}

/** Markdown made fit to read aloud: links keep their text, markup characters go. */
export function speakable(text: string): string {
  return text
    .replace(/```[\s\S]*?(```|$)/g, ' ')
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/[`*_#>|~]+/g, ' ')
    .replace(/^\s*[-+]\s+/gm, '')
    .replace(/\s+/g, ' ')
    .trim()
}

export class ClauseSplitter {
  private buffer = ''
  private inCode = false
  private spoken = 0

  /** Pieces completed by `piece` (possibly none). */
  feed(piece: string): string[] {
    this.buffer += piece
    const out: string[] = []
    while (this.step(out));
    return out
  }

  /** The rest of the answer, once it is complete. */
  flush(): string[] {
    const out: string[] = []
    if (!this.inCode) this.emit(this.buffer, out)
    this.buffer = ''
    this.inCode = false
    return out
  }

  private step(out: string[]): boolean {
    const fence = this.buffer.indexOf(FENCE)
    if (this.inCode) {
      if (fence < 0) {
        this.buffer = this.buffer.slice(-2) // a closing fence may arrive in halves
        return false
      }
      this.buffer = this.buffer.slice(fence + FENCE.length)
      this.inCode = false
      return true
    }
    const head = fence < 0 ? this.buffer : this.buffer.slice(0, fence)
    const cut = this.boundary(head)
    if (cut !== null) {
      this.emit(this.buffer.slice(0, cut), out)
      this.buffer = this.buffer.slice(cut)
      return true
    }
    if (fence >= 0) {
      this.emit(head, out)
      this.buffer = this.buffer.slice(fence + FENCE.length)
      this.inCode = true
      return true
    }
    return false
  }

  private emit(text: string, out: string[]): void {
    const said = speakable(text)
    if (/[\p{L}\p{N}]/u.test(said)) {
      out.push(said)
      this.spoken++
    }
  }

  private boundary(text: string): number | null {
    const minChars = this.spoken === 0 ? FIRST_MIN_CHARS : 1
    const ends = [...text.matchAll(SENTENCE_END)].map((m) => m.index + m[0].length)
    if (this.spoken === 0 || text.length > MAX_PIECE_CHARS) ends.push(...[...text.matchAll(CLAUSE_END)].map((m) => m.index + m[0].length))
    for (const end of ends.sort((a, b) => a - b)) {
      if (speakable(text.slice(0, end)).length >= minChars) return end
    }
    return this.spoken === 0 ? firstWords(text) : null
  }
}

function firstWords(text: string): number | null {
  let words = 0
  let cjk = 0
  for (const m of text.matchAll(WORD_END)) {
    if (/^[\x00-\x7f]+$/.test(m[0])) words++
    else cjk++
    if (words >= FIRST_MAX_WORDS || cjk >= FIRST_MAX_CJK) return m.index + m[0].length
  }
  return null
}
