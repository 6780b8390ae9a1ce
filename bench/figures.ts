/**
 * pgwitness benchmark, issue 7 item 2: the figures besides TPS, each measured
 * side by side (direct / pgbouncer / pgwitness) in one run on one machine.
 *
 *   npx tsx bench/figures.ts [--only latency,connect,memory,audit] [--rounds N] [--duration S]
 *                            [--idle N] [--no-build] [--out FILE] [--keep]
 *                            [--proxy-node-args="--cpu-prof --cpu-prof-dir=DIR"]
 *
 * - latency: pgbench -c 1 -S -M prepared --log (every transaction's latency);
 *   p50/p99 per target and the latency each proxy adds to direct (target − direct).
 * - connect: new authenticated connections per second, pgbench -C -S -M simple -c 4:
 *   direct (SCRAM, no TLS), pgbouncer (client TLS + SCRAM; its server connections
 *   are reused), pgwitness with audit on (client TLS + JWT; upstream SCRAM + fork
 *   per connection) and the same with upstream.pool on (DISCARD ALL + set_config).
 * - memory: proxy RSS (/proc/PID/status VmRSS) before and after opening N idle
 *   TLS client connections (default 1,000) with node-postgres; (after − before) / N.
 *   --memory-gc none (default: RSS as it is, garbage and all), full (pgwitness's
 *   RSS read after a full GC, as bench/tls-idle-memory.ts reads the bare TLS
 *   floor) or last-resort (after V8's collection of all available garbage, which
 *   also gives back the young generation grown during the handshakes: the memory
 *   each connection retains); see bench/lib/gc-on-signal.cjs.
 * - audit: audit records written per second at saturation: pgbench -c 64 -S -M prepared
 *   through pgwitness audit on (batched and strict), against audit off; records counted
 *   in the audit log.
 *
 * Targets are interleaved round by round (A B C D, A B C D, …); figures are
 * medians over rounds. Starts its own PostgreSQL (max_connections 1,200),
 * pgbouncer (session mode, client TLS) and pgwitness processes; writes the raw
 * numbers to bench/figures-<timestamp>.json and prints Markdown.
 */
import { execFileSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { startPostgres } from '../test/harness/postgres.js'
import { createDevPki } from '../src/dev/pki.js'
import { createDevIssuerKeys, mintDevToken } from '../src/dev/tokens.js'
import { ensurePgbouncer, startPgbouncer, type Pgbouncer } from './lib/pgbouncer.js'
import { BENCH_SUBJECT, chooseLauncher, startPgwitness, type AuditMode, type Pgwitness } from './lib/pgwitness.js'
import { killAllSync, machineCpu, memoryKiB, processCpu, runCapture, benchCleanup, runBenchMain } from './lib/procs.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
/** Node options that make the proxy run a GC on SIGUSR2 (for the memory figure; --memory-gc). */
const GC_ON_SIGNAL = ['--expose-gc', '--require', path.join(ROOT, 'bench', 'lib', 'gc-on-signal.cjs')]
const log = (msg: string): void => void process.stderr.write(`[figures] ${msg}\n`)

const { values: opt } = parseArgs({
  options: {
    only: { type: 'string', default: 'latency,connect,memory,audit' },
    rounds: { type: 'string', default: '2' },
    duration: { type: 'string', default: '8' },
    idle: { type: 'string', default: '1000' },
    'no-build': { type: 'boolean', default: false },
    out: { type: 'string' },
    keep: { type: 'boolean', default: false },
    'proxy-node-args': { type: 'string', default: '' },
    'memory-gc': { type: 'string', default: 'none' },
    help: { type: 'boolean', short: 'h', default: false },
  },
})
if (opt.help) {
  console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('*/')[0]!.replace(/^\/\*\*?|^ \* ?/gm, ''))
  process.exit(0)
}
const MEMORY_GC = opt['memory-gc']
if (!['none', 'full', 'last-resort'].includes(MEMORY_GC)) throw new Error(`--memory-gc: none, full or last-resort, not "${MEMORY_GC}"`)
// Read by bench/lib/gc-on-signal.cjs in the proxy (which inherits the environment).
process.env.PGW_BENCH_GC = MEMORY_GC
const ONLY = new Set(opt.only.split(',').map((s) => s.trim()).filter(Boolean))
for (const o of ONLY) if (!['latency', 'connect', 'memory', 'audit'].includes(o)) throw new Error(`--only: unknown figure "${o}"`)
const ROUNDS = Number(opt.rounds)
const DURATION = Number(opt.duration)
const IDLE = Number(opt.idle)

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const median = (xs: number[]): number => {
  const s = [...xs].filter(Number.isFinite).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
const quantile = (sorted: number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
const fmt = (v: number, d = 0): string => (Number.isFinite(v) ? v.toFixed(d) : '—')
const ratio = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? (a / b).toFixed(2) : '—')
function sh(cmd: string): string {
  try {
    return execFileSync('sh', ['-c', cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim()
  } catch (err) {
    return `(failed: ${(err as Error).message.split('\n')[0]})`
  }
}

interface Target {
  name: string
  port: number
  password: string
  sslmode: 'disable' | 'require'
  pid: number | null
  pgw?: Pgwitness
}

const { resources, cleanup } = benchCleanup(opt.keep, log)
process.on('exit', () => killAllSync())

async function pgbench(bin: string, t: Target, args: string[], timeoutS: number, cwd?: string) {
  const env: NodeJS.ProcessEnv = { ...process.env, PGPASSWORD: t.password, PGSSLMODE: t.sslmode, PGCONNECT_TIMEOUT: '30' }
  for (const k of ['PGHOST', 'PGPORT', 'PGUSER', 'PGDATABASE', 'PGSERVICE', 'PGOPTIONS', 'PGAPPNAME']) delete env[k]
  const full = [...args, '-h', '127.0.0.1', '-p', String(t.port), '-U', 'bench', 'bench']
  const r = await runCapture('pgbench', bin, full, { env, timeoutMs: timeoutS * 1000, ...(cwd ? { cwd } : {}) })
  const num = (re: RegExp): number => {
    const m = re.exec(r.stdout)
    return m ? Number(m[1]) : NaN
  }
  return {
    ok: r.code === 0,
    args: full,
    stderr: r.stderr,
    tps: num(/^tps = ([\d.]+)/m),
    transactions: num(/number of transactions actually processed:\s*(\d+)/),
    failed: num(/number of failed transactions:\s*(\d+)/),
    connMs: num(/average connection time = ([\d.]+) ms/),
  }
}

function countLines(file: string): number {
  if (!existsSync(file)) return 0
  const b = readFileSync(file)
  let n = 0
  for (let i = b.indexOf(10); i !== -1; i = b.indexOf(10, i + 1)) n++
  return n
}

async function main(): Promise<number> {
  const startedAt = new Date()
  const machine = {
    nproc: sh('nproc'),
    cpuModel: sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-").trim(),
    kernel: sh('uname -r'),
    node: process.version,
    loadavgAtStart: os.loadavg(),
  }
  if (!opt['no-build']) {
    log('building (tsc -p tsconfig.json)')
    const r = await runCapture('tsc', process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(ROOT, 'tsconfig.json')], { cwd: ROOT, timeoutMs: 300_000 })
    if (r.code !== 0) {
      if (!existsSync(path.join(ROOT, 'dist', 'server.js'))) throw new Error(`build failed and there is no dist/:\n${r.stdout}${r.stderr}`)
      log(`WARNING: the build reported errors (tsc still emitted dist/); benchmarking the emitted code:\n${(r.stdout + r.stderr).trim()}`)
    }
  }
  const launcher = await chooseLauncher(ROOT)
  const pgbouncerBin = await ensurePgbouncer()
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'pgw-figures-'))
  resources.workDir = workDir
  chmodSync(workDir, 0o711)

  log('starting PostgreSQL')
  const pgc = await startPostgres({ settings: { max_connections: String(Math.max(300, IDLE + 200)), shared_buffers: '256MB', max_wal_size: '4GB' } })
  resources.cluster = pgc
  const pgBin = (n: string): string => path.join(pgc.binDir, n)
  const benchPassword = 'bench-' + Math.random().toString(36).slice(2, 14)
  await pgc.createRole('bench', benchPassword, { database: 'bench' })
  {
    const r = await runCapture('pgbench -i', pgBin('pgbench'), ['-i', '-q', '-s', '10', '-h', '127.0.0.1', '-p', String(pgc.port), '-U', 'bench', 'bench'], {
      env: { ...process.env, PGPASSWORD: benchPassword, PGSSLMODE: 'disable' },
      timeoutMs: 600_000,
    })
    if (r.code !== 0) throw new Error(`pgbench -i failed:\n${r.stdout}\n${r.stderr}`)
  }
  const versions = {
    postgres: sh(`${pgBin('postgres')} --version`),
    pgbouncer: sh(`${pgbouncerBin} --version | head -1`),
    node: process.version,
  }
  const pki = await createDevPki(path.join(workDir, 'pki'))
  const issuer = await createDevIssuerKeys(path.join(workDir, 'issuer'))
  const token = await mintDevToken(issuer.privateJwk, { subject: BENCH_SUBJECT, ttlSeconds: 4 * 3600 })

  log('starting pgbouncer and pgwitness')
  const bouncer: Pgbouncer = await startPgbouncer({
    binary: pgbouncerBin,
    dir: path.join(workDir, 'pgbouncer'),
    upstreamPort: pgc.port,
    database: 'bench',
    user: 'bench',
    password: benchPassword,
    tlsCert: pki.serverCert,
    tlsKey: pki.serverKey,
    maxClients: Math.max(64, ONLY.has('memory') ? IDLE : 0),
  })
  const pgwDefs: Array<{ name: string; audit: AuditMode; pool: boolean; need: string[] }> = [
    { name: 'pgwitness-off', audit: 'off', pool: false, need: ['latency', 'audit'] },
    { name: 'pgwitness-on', audit: 'batched', pool: false, need: ['latency', 'connect', 'audit'] },
    // A process of its own for the memory figure: the others' heaps hold the garbage of earlier runs.
    { name: 'pgwitness-mem', audit: 'batched', pool: false, need: ['memory'] },
    { name: 'pgwitness-on-pool', audit: 'batched', pool: true, need: ['connect'] },
    { name: 'pgwitness-strict', audit: 'strict', pool: false, need: ['latency', 'audit'] },
  ]
  const pgw = new Map<string, Pgwitness>()
  for (const d of pgwDefs.filter((d) => d.need.some((n) => ONLY.has(n)))) {
    pgw.set(d.name, await startPgwitness({
      name: d.name, dir: path.join(workDir, d.name), launcher: launcher.argv, audit: d.audit, pool: d.pool,
      nodeArgs: [...(d.name === 'pgwitness-mem' && MEMORY_GC !== 'none' ? GC_ON_SIGNAL : []), ...opt['proxy-node-args'].split(/\s+/).filter(Boolean)],
      cert: pki.serverCert, key: pki.serverKey, jwksPath: issuer.jwksPath, upstreamPort: pgc.port,
      user: 'bench', password: benchPassword, database: 'bench',
    }))
  }
  const targets = new Map<string, Target>()
  targets.set('direct', { name: 'direct', port: pgc.port, password: benchPassword, sslmode: 'disable', pid: null })
  targets.set('pgbouncer', { name: 'pgbouncer', port: bouncer.port, password: benchPassword, sslmode: 'require', pid: bouncer.pid })
  for (const [name, p] of pgw) targets.set(name, { name, port: p.port, password: token, sslmode: 'require', pid: p.pid, pgw: p })
  for (const t of targets.values()) {
    const r = await pgbench(pgBin('pgbench'), t, ['-n', '-S', '-t', '5', '-c', '1'], 60)
    if (!r.ok) throw new Error(`smoke check through ${t.name} failed: ${r.stderr}`)
  }
  log(`targets: ${[...targets.keys()].join(', ')}`)
  const T = (n: string): Target => targets.get(n)!

  const out: Record<string, unknown> = {}
  const md: string[] = []

  // ---- latency at -c 1
  if (ONLY.has('latency')) {
    const names = ['direct', 'pgbouncer', 'pgwitness-off', 'pgwitness-on', 'pgwitness-strict']
    const per: Record<string, Array<{ p50: number; p99: number; mean: number; tps: number; n: number }>> = {}
    const logDir = path.join(workDir, 'latency-logs')
    mkdirSync(logDir, { recursive: true })
    for (let round = 1; round <= ROUNDS; round++) {
      for (const n of names) {
        const prefix = `lat-${n}-${round}`
        const r = await pgbench(pgBin('pgbench'), T(n), ['-n', '-S', '-M', 'prepared', '-c', '1', '-j', '1', '-T', String(DURATION), '--log', `--log-prefix=${path.join(logDir, prefix)}`], DURATION + 120)
        const lat: number[] = []
        for (const f of readdirSync(logDir).filter((f) => f.startsWith(prefix + '.'))) {
          for (const line of readFileSync(path.join(logDir, f), 'utf8').split('\n')) {
            const cols = line.split(' ')
            if (cols.length >= 3) lat.push(Number(cols[2]))
          }
        }
        lat.sort((a, b) => a - b)
        const row = { p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), mean: lat.reduce((a, b) => a + b, 0) / Math.max(1, lat.length), tps: r.tps, n: lat.length }
        ;(per[n] ??= []).push(row)
        log(`latency round ${round} ${n}: p50 ${row.p50} µs p99 ${row.p99} µs (${row.n} tx, ${fmt(r.tps)} tps)${r.ok ? '' : ' FAILED ' + r.stderr.slice(-200)}`)
      }
    }
    const med = (n: string, k: 'p50' | 'p99' | 'mean' | 'tps'): number => median(per[n]!.map((x) => x[k]))
    md.push(`### Added latency at -c 1 (pgbench -S -M prepared, ${ROUNDS} × ${DURATION} s per target, interleaved)`, '')
    md.push('| target | p50 µs | p99 µs | added p50 µs | added p99 µs | added p50 × pgbouncer\'s | TPS |', '|---|---:|---:|---:|---:|---:|---:|')
    const d50 = med('direct', 'p50')
    const d99 = med('direct', 'p99')
    const b50 = med('pgbouncer', 'p50') - d50
    for (const n of names) {
      const a50 = med(n, 'p50') - d50
      const a99 = med(n, 'p99') - d99
      md.push(`| ${n} | ${fmt(med(n, 'p50'))} | ${fmt(med(n, 'p99'))} | ${n === 'direct' ? '—' : fmt(a50)} | ${n === 'direct' ? '—' : fmt(a99)} | ${n === 'direct' || n === 'pgbouncer' ? '—' : ratio(a50, b50)} | ${fmt(med(n, 'tps'))} |`)
    }
    md.push('')
    out.latency = per
  }

  // ---- new connections per second
  if (ONLY.has('connect')) {
    const names = ['direct', 'pgbouncer', 'pgwitness-on', 'pgwitness-on-pool']
    const per: Record<string, Array<{ tps: number; connMs: number; proxyCpuPerConnMs: number }>> = {}
    for (let round = 1; round <= ROUNDS; round++) {
      for (const n of names) {
        const t = T(n)
        const cpu0 = t.pid ? processCpu(t.pid) : NaN
        const r = await pgbench(pgBin('pgbench'), t, ['-n', '-C', '-S', '-M', 'simple', '-c', '4', '-j', '2', '-T', String(DURATION)], DURATION + 120)
        const cpu = t.pid ? processCpu(t.pid) - cpu0 : NaN
        const row = { tps: r.tps, connMs: r.connMs, proxyCpuPerConnMs: (cpu / r.transactions) * 1000 }
        ;(per[n] ??= []).push(row)
        log(`connect round ${round} ${n}: ${fmt(r.tps)} connections/s (avg connection time ${fmt(r.connMs, 2)} ms, proxy CPU ${fmt(row.proxyCpuPerConnMs, 2)} ms/conn)${r.ok ? '' : ' FAILED ' + r.stderr.slice(-300)}`)
      }
    }
    const med = (n: string, k: 'tps' | 'connMs' | 'proxyCpuPerConnMs'): number => median(per[n]!.map((x) => x[k]))
    md.push(`### New authenticated connections per second (pgbench -C -S -M simple -c 4 -j 2, ${ROUNDS} × ${DURATION} s per target, interleaved)`, '')
    md.push('| target | connections/s | × direct | × pgbouncer | avg connection time ms | proxy CPU ms per connection |', '|---|---:|---:|---:|---:|---:|')
    for (const n of names) {
      md.push(`| ${n} | ${fmt(med(n, 'tps'))} | ${ratio(med(n, 'tps'), med('direct', 'tps'))} | ${ratio(med(n, 'tps'), med('pgbouncer', 'tps'))} | ${fmt(med(n, 'connMs'), 2)} | ${n === 'direct' ? '—' : fmt(med(n, 'proxyCpuPerConnMs'), 2)} |`)
    }
    md.push('')
    out.connect = per
  }

  // ---- audit records per second at saturation
  if (ONLY.has('audit')) {
    const names = ['pgwitness-off', 'pgwitness-on', 'pgwitness-strict']
    const per: Record<string, Array<{ tps: number; recordsPerS: number; recordsPerTx: number; bytesPerRecord: number; proxyCpuPerRecordUs: number }>> = {}
    for (let round = 1; round <= ROUNDS; round++) {
      for (const n of names) {
        const t = T(n)
        const file = t.pgw!.auditLog
        if (file && existsSync(file)) truncateSync(file, 0) // append-mode writer: safe (bench/run.ts does the same)
        const cpu0 = processCpu(t.pid!)
        const w0 = Date.now()
        const r = await pgbench(pgBin('pgbench'), t, ['-n', '-S', '-M', 'prepared', '-c', '64', '-j', '2', '-T', String(DURATION + 8)], DURATION + 150)
        const wallS = (Date.now() - w0) / 1000
        await sleep(300)
        const records = file ? countLines(file) : 0
        const bytes = file && existsSync(file) ? statSync(file).size : 0
        if (file && existsSync(file)) truncateSync(file, 0)
        const cpu = processCpu(t.pid!) - cpu0
        const recordsPerTx = r.transactions > 0 ? records / r.transactions : NaN
        const row = {
          tps: r.tps,
          recordsPerS: file ? r.tps * recordsPerTx : NaN,
          recordsPerTx,
          bytesPerRecord: records > 0 ? bytes / records : NaN,
          proxyCpuPerRecordUs: records > 0 ? (cpu / records) * 1e6 : NaN,
          wallS,
        }
        ;(per[n] ??= []).push(row)
        log(`audit round ${round} ${n}: ${fmt(r.tps)} tps, ${fmt(row.recordsPerS)} records/s (${records} records, ${fmt(recordsPerTx, 3)}/tx)${r.ok ? '' : ' FAILED ' + r.stderr.slice(-300)}`)
      }
    }
    const med = (n: string, k: 'tps' | 'recordsPerS' | 'recordsPerTx' | 'bytesPerRecord' | 'proxyCpuPerRecordUs'): number => median(per[n]!.map((x) => x[k]))
    md.push(`### Audit records per second at saturation (pgbench -S -M prepared -c 64 -j 2, ${ROUNDS} × ${DURATION + 8} s per target incl. connecting, interleaved)`, '')
    md.push('| target | TPS | × audit off | audit records/s | records per tx | bytes per record | proxy CPU µs per record (all work) |', '|---|---:|---:|---:|---:|---:|---:|')
    for (const n of names) {
      md.push(`| ${n} | ${fmt(med(n, 'tps'))} | ${ratio(med(n, 'tps'), med('pgwitness-off', 'tps'))} | ${n === 'pgwitness-off' ? '—' : fmt(med(n, 'recordsPerS'))} | ${n === 'pgwitness-off' ? '—' : fmt(med(n, 'recordsPerTx'), 3)} | ${n === 'pgwitness-off' ? '—' : fmt(med(n, 'bytesPerRecord'))} | ${n === 'pgwitness-off' ? '—' : fmt(med(n, 'proxyCpuPerRecordUs'))} |`)
    }
    md.push('')
    out.audit = per
  }

  // ---- memory per idle TLS connection (last: pgbouncer keeps its server connections afterwards)
  if (ONLY.has('memory')) {
    // pgwitness with --memory-gc full or last-resort: RSS after that GC (lib/gc-on-signal.cjs); without one
    // the figure moves by up to ±15 KiB per connection with whatever garbage the handshakes left.
    // pgbouncer has no garbage collector: its RSS is read as it is.
    const rssAfterGc = async (t: Target): Promise<number> => {
      if (t.name === 'pgwitness-mem' && MEMORY_GC !== 'none') {
        process.kill(t.pid!, 'SIGUSR2')
        await sleep(1500)
      }
      return memoryKiB(t.pid!)!.rss
    }
    const names = ['pgwitness-mem', 'pgbouncer']
    const per: Record<string, { beforeKiB: number; afterKiB: number; perConnKiB: number; openS: number; opened: number; afterCloseKiB: number }> = {}
    for (const n of names) {
      const t = T(n)
      const open = async (): Promise<pg.Client> => {
        const c = new pg.Client({ host: '127.0.0.1', port: t.port, user: 'bench', database: 'bench', password: t.password, ssl: { rejectUnauthorized: false }, connectionTimeoutMillis: 60_000 })
        c.on('error', () => undefined)
        await c.connect()
        return c
      }
      // Warm up (TLS, token verification, session code paths), then let it settle.
      for (let i = 0; i < 10; i++) await (await open()).end()
      await sleep(3000)
      const before = await rssAfterGc(t)
      const clients: pg.Client[] = []
      const t0 = Date.now()
      let next = 0
      const worker = async (): Promise<void> => {
        while (next < IDLE) {
          next++
          clients.push(await open())
        }
      }
      await Promise.all(Array.from({ length: 16 }, worker))
      const openS = (Date.now() - t0) / 1000
      await sleep(5000)
      // Every connection still works (they are idle sessions, not half-open sockets).
      await clients[0]!.query('select 1')
      await clients[clients.length - 1]!.query('select 1')
      const after = await rssAfterGc(t)
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)))
      await sleep(3000)
      const afterClose = memoryKiB(t.pid!)!.rss
      per[n] = { beforeKiB: before, afterKiB: after, perConnKiB: (after - before) / clients.length, openS, opened: clients.length, afterCloseKiB: afterClose }
      log(`memory ${n}: RSS ${before} KiB → ${after} KiB with ${clients.length} idle TLS connections: ${fmt(per[n].perConnKiB, 1)} KiB per connection (opened in ${fmt(openS, 1)} s); ${afterClose} KiB 3 s after closing them`)
    }
    md.push(`### Memory per idle TLS client connection (${IDLE} idle node-postgres connections; pgwitness RSS read ${MEMORY_GC === 'none' ? 'as it is' : `after a ${MEMORY_GC} GC`})`, '')
    md.push('| target | RSS before | RSS with the idle connections | per connection | × pgbouncer | RSS 3 s after closing them |', '|---|---:|---:|---:|---:|---:|')
    for (const n of names) {
      const p = per[n]!
      md.push(`| ${n} | ${fmt(p.beforeKiB / 1024, 1)} MiB | ${fmt(p.afterKiB / 1024, 1)} MiB | ${fmt(p.perConnKiB, 1)} KiB | ${ratio(p.perConnKiB, per['pgbouncer']!.perConnKiB)} | ${fmt(p.afterCloseKiB / 1024, 1)} MiB |`)
    }
    md.push('')
    out.memory = per
  }

  const m1 = os.loadavg()
  console.log(`# pgwitness figures (${startedAt.toISOString()})\n`)
  console.log(md.join('\n'))
  console.log(`machine: ${machine.nproc} cores, ${machine.cpuModel}; load average at start ${machine.loadavgAtStart.map((x) => x.toFixed(2)).join(' ')}, at end ${m1.map((x) => x.toFixed(2)).join(' ')}`)
  console.log(`versions: ${versions.postgres}; ${versions.pgbouncer}; node ${versions.node}`)
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-')
  const file = opt.out ?? path.join(ROOT, 'bench', `figures-${stamp}.json`)
  writeFileSync(file, JSON.stringify({
    command: `npx tsx bench/figures.ts ${process.argv.slice(2).join(' ')}`.trim(),
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    rounds: ROUNDS,
    durationS: DURATION,
    idle: IDLE,
    git: sh(`git -C ${JSON.stringify(ROOT)} rev-parse --short HEAD`),
    machine: { ...machine, loadavgAtEnd: m1, busyAtEnd: machineCpu() },
    versions,
    figures: out,
    markdown: md.join('\n'),
  }, null, 2) + '\n')
  console.log(`\nraw numbers: ${path.relative(process.cwd(), file)}`)
  return 0
}

await runBenchMain(main, cleanup, log)
