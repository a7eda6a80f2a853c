/**
 * Hostile model outputs: each must render as harmless text. The corpus itself is JSON
 * (hostile.json) so that the Vitest sanitizer tests here and the browser e2e test
 * (tests/web/test_e2e_hostile.py, which makes the server stream it) share one list.
 */
import corpus from './hostile.json'

export const hostile: { name: string; text: string }[] = corpus
