#!/usr/bin/env node
/**
 * Prints the gzipped size of what the first screen loads: every script, module preload and
 * stylesheet that the built index.html references, plus the static imports of those modules
 * (followed transitively). Lazy chunks (dynamic import()) are listed separately and not counted.
 * Exits non-zero above the budget (150 KB gzipped).
 */
import { readFileSync, readdirSync, existsSync } from 'node:fs'
import { gzipSync } from 'node:zlib'
import { join, dirname, resolve, posix } from 'node:path'
import { fileURLToPath } from 'node:url'

const BUDGET_KB = 150
const here = dirname(fileURLToPath(import.meta.url))
const web = resolve(here, '../../src/xiaoq/web')
const indexPath = join(web, 'index.html')
if (!existsSync(indexPath)) {
  console.error(`no build at ${web}: run npm run build first`)
  process.exit(2)
}
const html = readFileSync(indexPath, 'utf8')

const refs = new Set()
for (const m of html.matchAll(/<(?:script|link)\b[^>]*?(?:src|href)="([^"]+)"[^>]*>/g)) {
  const tag = m[0]
  const url = m[1]
  if (/^(?:https?:)?\/\//.test(url) || url.startsWith('data:')) continue
  if (tag.startsWith('<link') && !/rel="(?:stylesheet|modulepreload)"/.test(tag)) continue
  refs.add(url.replace(/^\//, ''))
}

// Follow static imports (`import ... from "./x.js"` / `import "./x.js"`) inside JS files.
const queue = [...refs]
while (queue.length) {
  const rel = queue.shift()
  if (!rel.endsWith('.js')) continue
  const src = readFileSync(join(web, rel), 'utf8')
  for (const m of src.matchAll(/(?:^|[;\n}])\s*(?:import|export)\s*(?:[\w*{}\s,$]+from\s*)?["']([^"']+\.js)["']/g)) {
    const dep = posix.normalize(posix.join(posix.dirname(rel), m[1]))
    if (!refs.has(dep)) {
      refs.add(dep)
      queue.push(dep)
    }
  }
}
refs.add('index.html')

const gz = (p) => gzipSync(readFileSync(join(web, p)), { level: 9 }).length
let total = 0
console.log('first load (gzipped):')
for (const rel of [...refs].sort()) {
  const n = gz(rel)
  total += n
  console.log(`  ${(n / 1024).toFixed(1).padStart(7)} KB  ${rel}`)
}
console.log(`  ${(total / 1024).toFixed(1).padStart(7)} KB  total (budget ${BUDGET_KB} KB)`)

const lazy = readdirSync(join(web, 'assets')).filter((f) => !refs.has(`assets/${f}`))
const lazyTotal = lazy.reduce((s, f) => s + gz(`assets/${f}`), 0)
console.log(`lazy (not counted): ${lazy.length} files, ${(lazyTotal / 1024).toFixed(1)} KB gzipped`)

if (total > BUDGET_KB * 1024) {
  console.error(`over budget: ${(total / 1024).toFixed(1)} KB > ${BUDGET_KB} KB`)
  process.exit(1)
}
