/**
 * Where pgwitness's memory per idle TLS client connection goes: the proxy
 * (audit batched, as bench/figures.ts's memory figure) is started with
 * --heapsnapshot-signal; a heap snapshot (which runs a full GC first) is
 * taken before and after N idle node-postgres connections open, and the
 * retained JS heap per connection is broken down by object kind. RSS is not
 * reported: writing a heap snapshot inflates it (bench/figures.ts --only
 * memory measures RSS per connection).
 *
 *   npm run build && npx tsx bench/idle-memory-breakdown.ts [--idle 500] [--top 30] [--keep]
 *
 * --keep leaves the two .heapsnapshot files (for Chrome DevTools' comparison view).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { startPostgres } from '../test/harness/postgres.js'
import { createDevPki } from '../src/dev/pki.js'
import { createDevIssuerKeys, mintDevToken } from '../src/dev/tokens.js'
import { BENCH_SUBJECT, chooseLauncher, startPgwitness } from './lib/pgwitness.js'
import { stopAll } from './lib/procs.js'

const { values: opt } = parseArgs({ options: { idle: { type: 'string', default: '500' }, top: { type: 'string', default: '30' }, keep: { type: 'boolean', default: false } } })
const IDLE = Number(opt.idle)
const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
const work = mkdtempSync(path.join(os.tmpdir(), 'pgw-idlemem-'))

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } }
  nodes: number[]
  strings: string[]
}

/** Self size and count by "type:name" (constructor name for objects). */
function histogram(file: string): Map<string, { count: number; bytes: number }> {
  const s = JSON.parse(readFileSync(file, 'utf8')) as Snapshot
  const f = s.snapshot.meta.node_fields
  const types = s.snapshot.meta.node_types[0]
  const width = f.length
  const iType = f.indexOf('type')
  const iName = f.indexOf('name')
  const iSize = f.indexOf('self_size')
  const out = new Map<string, { count: number; bytes: number }>()
  for (let i = 0; i < s.nodes.length; i += width) {
    const type = types[s.nodes[i + iType]!]!
    const name = type === 'object' || type === 'native' || type === 'closure' || type === 'hidden' ? s.strings[s.nodes[i + iName]!]!.slice(0, 60) : ''
    const key = `${type}${name ? ':' + name : ''}`
    const e = out.get(key) ?? { count: 0, bytes: 0 }
    e.count++
    e.bytes += s.nodes[i + iSize]!
    out.set(key, e)
  }
  return out
}

async function snapshot(pid: number, dir: string, label: string): Promise<string> {
  const before = new Set(readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot')))
  process.kill(pid, 'SIGUSR2')
  for (;;) {
    await sleep(500)
    const made = readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot') && !before.has(f))
    if (made.length > 0) {
      // Written when its size stops changing.
      const file = path.join(dir, made[0]!)
      let last = -1
      for (;;) {
        const size = readFileSync(file).length
        if (size === last && size > 0) break
        last = size
        await sleep(1000)
      }
      console.error(`[idle-memory] snapshot ${label}: ${file} (${(last / 1e6).toFixed(0)} MB)`)
      return file
    }
  }
}

try {
  const pgc = await startPostgres({ settings: { max_connections: String(IDLE + 100) } })
  const password = 'bench-' + Math.random().toString(36).slice(2, 14)
  await pgc.createRole('bench', password, { database: 'bench' })
  const pki = await createDevPki(path.join(work, 'pki'))
  const issuer = await createDevIssuerKeys(path.join(work, 'issuer'))
  const token = await mintDevToken(issuer.privateJwk, { subject: BENCH_SUBJECT, ttlSeconds: 3600 })
  const launcher = await chooseLauncher(ROOT)
  const dir = path.join(work, 'pgw')
  const p = await startPgwitness({
    name: 'pgwitness-mem', dir, launcher: launcher.argv, nodeArgs: ['--heapsnapshot-signal=SIGUSR2'], audit: 'batched',
    cert: pki.serverCert, key: pki.serverKey, jwksPath: issuer.jwksPath, upstreamPort: pgc.port, user: 'bench', password, database: 'bench',
  })
  const open = async (): Promise<pg.Client> => {
    const c = new pg.Client({ host: '127.0.0.1', port: p.port, user: 'bench', database: 'bench', password: token, ssl: { rejectUnauthorized: false } })
    c.on('error', () => undefined)
    await c.connect()
    return c
  }
  for (let i = 0; i < 10; i++) await (await open()).end()
  await sleep(2000)
  const a = await snapshot(p.pid, dir, 'before')
  const clients: pg.Client[] = []
  let next = 0
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next++ < IDLE) clients.push(await open())
  }))
  await sleep(3000)
  const b = await snapshot(p.pid, dir, 'after')
  const ha = histogram(a)
  const hb = histogram(b)
  const rows = [...hb].map(([k, v]) => {
    const o = ha.get(k) ?? { count: 0, bytes: 0 }
    return { kind: k, perConn: (v.count - o.count) / IDLE, bytesPerConn: (v.bytes - o.bytes) / IDLE }
  })
  rows.sort((x, y) => y.bytesPerConn - x.bytesPerConn)
  // Compiled code and the snapshot's synthetic roots are not the connections' (JIT activity between snapshots).
  const heapPerConn = rows.filter((r) => r.kind !== 'code' && r.kind !== 'synthetic').reduce((n, r) => n + r.bytesPerConn, 0)
  console.log(`${IDLE} idle TLS connections: JS heap (snapshot self sizes) ${(heapPerConn / 1024).toFixed(1)} KiB per connection`)
  console.log('\n| object kind | objects per connection | bytes per connection |\n|---|---:|---:|')
  for (const r of rows.slice(0, Number(opt.top))) console.log(`| ${r.kind} | ${r.perConn.toFixed(2)} | ${r.bytesPerConn.toFixed(0)} |`)
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)))
  await p.stop()
  await pgc.stop()
} finally {
  await stopAll()
  if (opt.keep) console.error(`[idle-memory] kept ${work}`)
  else rmSync(work, { recursive: true, force: true })
}
