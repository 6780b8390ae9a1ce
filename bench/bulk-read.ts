/**
 * Proxy CPU of a bulk read: psql (another process) reads ROWS rows through a
 * proxy running in this process (the test fixture: its own PostgreSQL, TLS,
 * batched audit), three times after a warm-up; prints the proxy process's CPU
 * and the wall time of each read. TREE: the checkout whose proxy runs (this
 * one by default; another built checkout to compare, e.g. a worktree).
 *   npx tsx bench/bulk-read.ts [TREE] [ROWS]
 */
import { execFile } from 'node:child_process'
import path from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
const tree = path.resolve(process.argv[2] ?? '.')
const rows = Number(process.argv[3] ?? 2_000_000)
const { startFixture } = (await import(path.join(tree, 'test/helpers/proxy.ts'))) as typeof import('../test/helpers/proxy.js')
const f = await startFixture({ auditYaml: 'audit:\n  log: audit/audit.jsonl\n  durability: batched\n  fsync_interval: 50ms' })
const env = f.libpqEnv(await f.token())
async function read(): Promise<string> {
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  await run('psql', ['-X', '-q', '-o', '/dev/null', '-c', `SELECT g, 'row ' || g AS label FROM generate_series(1, ${rows}) g`], { env })
  const c = process.cpuUsage(c0)
  return `${((c.user + c.system) / 1000).toFixed(0)} ms CPU / ${(performance.now() - t0).toFixed(0)} ms wall`
}
try {
  await read()
  const out = [await read(), await read(), await read()]
  console.log(`${tree}: ${rows} rows: ${out.join(', ')}`)
} finally {
  await f.stop()
}
