#!/usr/bin/env node
/**
 * Copies the files of the npm package `pyodide` that XiaoQ's code runner needs into
 * src/xiaoq/pyodide (outside the built web/, which every build empties; git ignores it; a wheel
 * built afterwards ships it). Runs after `npm ci` / `npm install` (postinstall) and from
 * `setup.sh --test` when only the copy is missing.
 * Files already identical are left alone.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const FILES = ['pyodide.mjs', 'pyodide.asm.mjs', 'pyodide.asm.wasm', 'python_stdlib.zip', 'pyodide-lock.json']
const here = dirname(fileURLToPath(import.meta.url))
const from = resolve(here, '../node_modules/pyodide')
const to = resolve(here, '../../src/xiaoq/pyodide')

if (!existsSync(join(from, 'package.json'))) {
  console.error('pyodide is not in frontend/node_modules: run `npm ci` in frontend/')
  process.exit(1)
}
const version = JSON.parse(readFileSync(join(from, 'package.json'), 'utf8')).version
mkdirSync(to, { recursive: true })
let copied = 0
for (const name of FILES) {
  const src = join(from, name)
  const dst = join(to, name)
  if (existsSync(dst) && statSync(dst).size === statSync(src).size && readFileSync(dst).equals(readFileSync(src))) continue
  copyFileSync(src, dst)
  copied++
}
const total = FILES.reduce((n, f) => n + statSync(join(to, f)).size, 0)
console.log(`pyodide ${version}: ${copied} of ${FILES.length} files copied to src/xiaoq/pyodide (${(total / 1e6).toFixed(1)} MB)`)
