import { describe, expect, it } from 'vitest'
import { hostile } from './hostile'
import { isSafeHref, renderMarkdown, sanitizeHtml } from '../markdown'

const FORBIDDEN_TAGS = ['script', 'iframe', 'svg', 'style', 'form', 'meta', 'object', 'embed', 'link', 'base', 'input', 'math']

function parse(html: string): HTMLElement {
  const div = document.createElement('div')
  div.innerHTML = html
  return div
}

/** Every way rendered HTML could run code, restyle the page or leak a request. */
function assertHarmless(root: HTMLElement): void {
  for (const tag of FORBIDDEN_TAGS) expect(root.querySelectorAll(tag).length, `<${tag}>`).toBe(0)
  for (const el of Array.from(root.querySelectorAll('*'))) {
    for (const attr of Array.from(el.attributes)) {
      expect(attr.name.startsWith('on'), `${el.tagName} ${attr.name}`).toBe(false)
      expect(attr.name, `${el.tagName} style`).not.toBe('style')
    }
  }
  for (const a of Array.from(root.querySelectorAll('a'))) {
    const href = a.getAttribute('href')
    if (href !== null) expect(href, 'href').toMatch(/^(https?:|mailto:)/i)
    expect(a.getAttribute('target')).toBe('_blank')
    expect(a.getAttribute('rel')).toBe('noopener noreferrer')
  }
  for (const img of Array.from(root.querySelectorAll('img'))) {
    const src = img.getAttribute('src')
    if (src !== null) expect(src).toMatch(/^(\/(?![/\\])|data:image\/)/i)
  }
  for (const b of Array.from(root.querySelectorAll('button'))) expect(b.getAttribute('type')).toBe('button')
}

describe('hostile corpus', () => {
  for (const { name, text } of hostile) {
    it(`renders harmlessly: ${name}`, () => {
      assertHarmless(parse(renderMarkdown(text)))
      assertHarmless(parse(renderMarkdown(text, { allowImages: true })))
    })
  }

  it('keeps the hostile text visible as text', () => {
    const root = parse(renderMarkdown('look <img src=x onerror=alert(1)> here'))
    expect(root.textContent).toContain('<img src=x onerror=alert(1)>')
    const fence = parse(renderMarkdown('```html\n<script>alert(1)</script>\n```'))
    expect(fence.querySelector('code')!.textContent).toContain('<script>alert(1)</script>')
  })

  it('shows a rejected link as literal text', () => {
    const root = parse(renderMarkdown('[x](javascript:alert(1))'))
    expect(root.querySelectorAll('a').length).toBe(0)
    expect(root.textContent).toContain('javascript:alert(1)')
  })

  it('keeps a fence that tries to close early inside the code block', () => {
    const root = parse(renderMarkdown(hostile.find((h) => h.name === 'fence closing early')!.text))
    const code = root.querySelector('pre code')!
    expect(code.textContent).toContain('</code></pre><img src=x onerror=alert(1)>')
    expect(root.querySelectorAll('img').length).toBe(0)
  })

  it('shows remote images as alt text, never as <img>', () => {
    for (const allowImages of [false, true]) {
      const root = parse(renderMarkdown('![a cat](https://evil.example/t.png)', { allowImages }))
      expect(root.querySelectorAll('img').length).toBe(0)
      expect(root.textContent).toContain('[a cat]')
    }
  })

  it('allows same-origin and data: images only when configured', () => {
    const md = '![logo](/static/logo.png) ![dot](data:image/png;base64,iVBORw0KGgo=)'
    expect(parse(renderMarkdown(md)).querySelectorAll('img').length).toBe(0)
    const srcs = Array.from(parse(renderMarkdown(md, { allowImages: true })).querySelectorAll('img')).map((i) => i.getAttribute('src'))
    expect(srcs).toEqual(['/static/logo.png', 'data:image/png;base64,iVBORw0KGgo='])
  })

  it('sanitizeHtml cleans raw HTML too (second layer)', () => {
    const root = parse(
      sanitizeHtml(
        '<a href="javascript:alert(1)" onclick="x()">a</a><img src="https://evil.example/x.png" alt="x">' +
          '<p style="color:red">p</p><svg onload="alert(1)"></svg><button type="submit">b</button>',
      ),
    )
    assertHarmless(root)
    expect(root.querySelector('a')!.hasAttribute('href')).toBe(false)
    expect(root.querySelector('img')!.hasAttribute('src')).toBe(false)
  })

  it('isSafeHref allows only http, https and mailto', () => {
    expect(isSafeHref('https://example.com')).toBe(true)
    expect(isSafeHref('mailto:a@b.c')).toBe(true)
    for (const bad of ['javascript:alert(1)', 'vbscript:x', 'data:text/html,x', 'file:///x', '/relative', 'java\tscript:x'])
      expect(isSafeHref(bad), bad).toBe(false)
  })
})
