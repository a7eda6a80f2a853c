import { describe, expect, it } from 'vitest'
import { ClauseSplitter, detectLanguage, speakable } from '../voice/split'
import shared from './split_cases.json'

function split(pieces: string[]): string[] {
  const s = new ClauseSplitter()
  return [...pieces.flatMap((p) => s.feed(p)), ...s.flush()]
}

describe('ClauseSplitter', () => {
  it('ends the first piece at the first clause, later ones at sentence ends', () => {
    const s = new ClauseSplitter()
    expect(s.feed('Well')).toEqual([])
    expect(s.feed(', that depends on')).toEqual(['Well,'])
    expect(s.feed(' the case, mostly')).toEqual([])
    expect(s.feed('. Next one')).toEqual(['that depends on the case, mostly.'])
    expect(s.flush()).toEqual(['Next one'])
  })

  it('cuts Chinese at clauses and sentences', () => {
    const text = '冒泡排序是一种简单的算法，它反复比较相邻的元素。如果顺序错误就交换！最后'
    expect(split([...text])).toEqual(['冒泡排序是一种简单的算法，', '它反复比较相邻的元素。', '如果顺序错误就交换！', '最后'])
  })

  it('skips code blocks even when fences arrive in pieces', () => {
    expect(split(['Here is one', ' example:\n`', '``py', "thon\nprint('x')\n`", '``\nThat prints x.'])).toEqual(['Here is one example:', 'That prints x.'])
  })

  it('keeps decimals and file names whole', () => {
    expect(split(['Pi is 3.', '14 and main.py runs it. Done'])).toEqual(['Pi is 3.14 and main.py runs it.', 'Done'])
  })
})

describe('speakable and detectLanguage', () => {
  it('strips markdown and tells Chinese from English', () => {
    expect(speakable('**Bold** and `code` with a [link](http://x.example) # title')).toBe('Bold and code with a link title')
    expect(detectLanguage('你好，请问 Python 是什么？')).toBe('zh')
    expect(detectLanguage('What does 你好 mean?')).toBe('en')
  })
})

describe('the same pieces as the server (split_cases.json)', () => {
  for (const [i, c] of shared.cases.entries()) {
    it(`case ${i}`, () => expect(split(c.stream)).toEqual(c.pieces))
  }
})
