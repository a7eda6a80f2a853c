import { describe, expect, it } from 'vitest'
import { currentStarters, locale, setLocale, t } from '../i18n'

describe('i18n', () => {
  it('defaults to Chinese and switches to English and back', () => {
    expect(locale.value).toBe('zh')
    expect(t('send')).toBe('发送')
    expect(t('busy', { n: 3 })).toBe('服务器繁忙，3 秒后重试')
    setLocale('en')
    expect(t('send')).toBe('Send')
    expect(t('busy', { n: 3 })).toBe('Server busy, retrying in 3 s')
    expect(currentStarters.value[1].questions[0]).toMatch(/Python/)
    expect(localStorage.getItem('xiaoq.locale')).toBe('en')
    expect(document.documentElement.lang).toBe('en')
    setLocale('zh')
    expect(t('trimmed')).toBe('较早的对话已被总结')
  })
})
