#!/usr/bin/env node
/**
 * Fails when the committed build (src/xiaoq/web) is not what the sources build to today: it
 * builds into a temporary directory and compares every file byte for byte. The build is
 * reproducible (content-hashed names, no timestamps, no absolute paths), so any difference
 * means someone changed frontend/ without running `npm run build`.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const root = resolve(here, '..')
const shipped = resolve(root, '../src/xiaoq/web')
const fresh = mkdtempSync(join(tmpdir(), 'xiaoq-web-'))

function files(dir, base = dir) {
  const out = []
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) out.push(...files(p, base))
    else out.push(relative(base, p))
  }
  return out.sort()
}

try {
  execFileSync(process.execPath, [join(root, 'node_modules/vite/bin/vite.js'), 'build', '--outDir', fresh, '--emptyOutDir', '--logLevel', 'error'], {
    cwd: root,
    stdio: 'inherit',
  })
  const a = files(shipped)
  const b = files(fresh)
  const problems = []
  for (const f of new Set([...a, ...b])) {
    if (!a.includes(f)) problems.push(`missing from src/xiaoq/web: ${f}`)
    else if (!b.includes(f)) problems.push(`stale file in src/xiaoq/web: ${f}`)
    else if (!readFileSync(join(shipped, f)).equals(readFileSync(join(fresh, f)))) problems.push(`differs: ${f}`)
  }
  if (problems.length) {
    console.error('the committed web build is stale; run `npm run build` in frontend/ and commit src/xiaoq/web:')
    for (const p of problems) console.error('  ' + p)
    process.exit(1)
  }
  console.log(`src/xiaoq/web is up to date (${a.length} files)`)
} finally {
  rmSync(fresh, { recursive: true, force: true })
}
