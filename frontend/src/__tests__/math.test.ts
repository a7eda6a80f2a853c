import { describe, expect, it } from 'vitest'
import { renderMarkdown } from '../markdown'
import { loadKatex, mathVersion, renderTex } from '../math'

function parse(html: string): HTMLElement {
  const div = document.createElement('div')
  div.innerHTML = html
  return div
}

describe('math', () => {
  it('shows the TeX source until KaTeX is loaded, then MathML', async () => {
    const src = 'Euler: $e^{i\\pi} + 1 = 0$ and\n\n$$\n\\int_0^1 x^2\\,dx = \\frac{1}{3}\n$$'
    const before = parse(renderMarkdown(src, { math: renderTex }))
    expect(before.querySelectorAll('code.math-src').length).toBe(2)
    const v = mathVersion.value
    expect(await loadKatex()).toBe(true)
    expect(mathVersion.value).toBe(v + 1)
    const after = parse(renderMarkdown(src, { math: renderTex }))
    expect(after.querySelectorAll('math').length).toBe(2)
    expect(after.querySelector('.math-block math')!.getAttribute('display')).toBe('block')
    expect(after.querySelector('msup')).not.toBeNull()
    expect(after.querySelector('[style]')).toBeNull()
  })

  it('leaves prices and escaped dollars alone', () => {
    const root = parse(renderMarkdown('It costs $5 and $10, or \\$x\\$.', { math: renderTex }))
    expect(root.querySelector('math, .math-src')).toBeNull()
    expect(root.textContent).toContain('$5 and $10')
  })

  it('renders \\( \\) and \\[ \\] delimiters', async () => {
    await loadKatex()
    const root = parse(renderMarkdown('inline \\(a+b\\) and\n\n\\[\nc^2\n\\]', { math: renderTex }))
    expect(root.querySelectorAll('math').length).toBe(2)
  })

  it('shows an invalid formula as its source, without inline styles', async () => {
    await loadKatex()
    const root = parse(renderMarkdown('bad: $\\frac{1}{$ and $x^{$', { math: renderTex }))
    expect(root.querySelector('[style]')).toBeNull()
    expect(renderTex('\\frac{1}{', false)).toBeNull()
  })

  it('keeps TeX links and HTML extensions inert (trust: false)', async () => {
    await loadKatex()
    const hostile = [
      '$$\\href{javascript:alert(1)}{click}$$',
      '$\\url{javascript:alert(1)}$',
      '$\\htmlClass{x}{y}$ $\\htmlStyle{color:red}{z}$ $\\htmlData{onload=alert(1)}{w}$',
      '$\\includegraphics{https://evil.example/x.png}$',
    ]
    for (const h of hostile) {
      const root = parse(renderMarkdown(h, { math: renderTex }))
      expect(root.querySelector('a, img, [href], [src], [style]'), h).toBeNull()
      for (const el of Array.from(root.querySelectorAll('*')))
        for (const attr of Array.from(el.attributes)) expect(attr.name.startsWith('on') || attr.name.startsWith('data-'), `${h}: ${attr.name}`).toBe(false)
    }
  })
})
