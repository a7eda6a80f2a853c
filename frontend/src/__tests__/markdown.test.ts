import { describe, expect, it } from 'vitest'
import { fenceLanguage, renderMarkdown } from '../markdown'
import { canonicalLanguage, highlightCode, highlightVersion, loadLanguage } from '../highlight'

function parse(html: string): HTMLElement {
  const div = document.createElement('div')
  div.innerHTML = html
  return div
}

describe('markdown rendering', () => {
  it('renders headings, lists, emphasis and tables', () => {
    const root = parse(
      renderMarkdown('# Title\n\n- one\n- **two**\n\n1. a\n2. b\n\n| l | r |\n|:--|--:|\n| 1 | 2 |'),
    )
    expect(root.querySelector('h1')!.textContent).toBe('Title')
    expect(root.querySelectorAll('ul li').length).toBe(2)
    expect(root.querySelector('strong')!.textContent).toBe('two')
    expect(root.querySelectorAll('ol li').length).toBe(2)
    expect(root.querySelector('th')!.className).toBe('align-left')
    expect(root.querySelectorAll('td')[1].className).toBe('align-right')
    expect(root.querySelector('[style]')).toBeNull()
  })

  it('keeps the start number of an ordered list', () => {
    expect(parse(renderMarkdown('3. c\n4. d')).querySelector('ol')!.getAttribute('start')).toBe('3')
  })

  it('opens safe links in a new tab without an opener', () => {
    const a = parse(renderMarkdown('see [docs](https://example.com/x?a=1) and https://auto.example')).querySelectorAll('a')
    expect(a.length).toBe(2)
    expect(a[0].getAttribute('href')).toBe('https://example.com/x?a=1')
    expect(a[0].getAttribute('target')).toBe('_blank')
    expect(a[0].getAttribute('rel')).toBe('noopener noreferrer')
    expect(a[1].getAttribute('href')).toBe('https://auto.example')
  })

  it('gives each code block a language label and a copy button', () => {
    const root = parse(renderMarkdown('```python\nprint("<hi>")\n```\n\n```\nplain\n```', { copyLabel: '复制' }))
    const blocks = root.querySelectorAll('.code-block')
    expect(blocks.length).toBe(2)
    expect(blocks[0].querySelector('.code-lang')!.textContent).toBe('python')
    expect(blocks[0].querySelector('button.code-copy')!.textContent).toBe('复制')
    expect(blocks[0].querySelector('code')!.className).toContain('language-python')
    expect(blocks[0].querySelector('code')!.textContent).toBe('print("<hi>")\n')
    expect(blocks[1].querySelector('.code-lang')!.textContent).toBe('text')
  })

  it('renders an unfinished fence (mid-stream) as a code block', () => {
    const root = parse(renderMarkdown('Here:\n```js\nconst a = 1'))
    expect(root.querySelector('pre code')!.textContent).toContain('const a = 1')
  })

  it('uses the highlighter output when given one', () => {
    const html = renderMarkdown('```js\nx\n```', { highlight: () => '<span class="hljs-keyword">x</span>' })
    expect(parse(html).querySelector('code .hljs-keyword')!.textContent).toBe('x')
  })

  it('strips odd characters from the fence language', () => {
    expect(fenceLanguage('c++ {linenos}')).toBe('c++')
    expect(fenceLanguage('"><img')).toBe('img')
  })
})

describe('lazy highlighting', () => {
  it('maps aliases and unknown languages', () => {
    expect(canonicalLanguage('py')).toBe('python')
    expect(canonicalLanguage('TS')).toBe('typescript')
    expect(canonicalLanguage('brainfuck-9000')).toBeNull()
  })

  it('loads a grammar on first use, then highlights', async () => {
    const before = highlightVersion.value
    expect(highlightCode('def f(): pass', 'rust')).toBeNull() // not loaded yet: starts the import
    expect(await loadLanguage('rs')).toBe(true)
    expect(highlightVersion.value).toBeGreaterThan(before)
    const html = highlightCode('fn main() { let x = 1; }', 'rust')!
    expect(html).toContain('hljs-keyword')
    // and the code stays escaped
    expect(highlightCode('let s = "<b>";', 'rust')).toContain('&lt;b&gt;')
  })
})
