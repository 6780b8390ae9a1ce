/**
 * Soak test (issue 8 item 6): a mixed workload through a pgwitness process
 * for a long time, sampling the proxy's RSS and open file descriptors, to
 * show both stay flat and nothing leaks.
 *
 *   npx tsx bench/soak.ts [--minutes 30] [--workers 4] [--pace-ms 20]
 *                         [--sample-seconds 10] [--audit strict|batched]
 *                         [--launcher dist|tsx] [--json FILE] [--keep]
 *
 * Starts its own PostgreSQL (test/harness) and one pgwitness process
 * (`node dist/cli.js serve`, or through tsx with --launcher tsx, the default
 * when dist/ is missing). Each worker loops until the time is up: a governed
 * session (node-postgres, a fresh token each time) running simple queries,
 * extended-protocol inserts and selects (unnamed and named prepared
 * statements), a transaction and two intended errors (division by zero,
 * a syntax error), then a reconnect; every fifth round a raw-protocol
 * session does a COPY FROM STDIN and a COPY TO STDOUT. Every
 * --sample-seconds it reads /proc/<pid>/status (VmRSS) and /proc/<pid>/fd of
 * the proxy and prints a row.
 *
 * At the end it checks, and prints: no error but the intended ones; one
 * statement record per statement sent and one error record per intended
 * error; a session.end for every session.start; the file descriptors back to
 * their idle count once every client has gone; RSS and descriptors flat
 * (median of the last third of the samples against the first third).
 * Exit status 0 when all hold. test/e2e/soak.test.ts runs a 2-minute version.
 */
import { createReadStream, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { createDevPki } from '../src/dev/pki.js'
import { createDevIssuerKeys, mintDevToken } from '../src/dev/tokens.js'
import { startPostgres } from '../test/harness/postgres.js'
import { serialize, WireClient } from '../test/helpers/wire.js'
import { BENCH_SUBJECT, startPgwitness, type AuditMode } from './lib/pgwitness.js'
import { benchCleanup, memoryKiB, runBenchMain, type BenchResources } from './lib/procs.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

export interface SoakOptions {
  durationMs: number
  workers?: number
  /** Pause between statements, per worker (ms). */
  paceMs?: number
  sampleEveryMs?: number
  audit?: Exclude<AuditMode, 'off'>
  /** How to run the proxy: the built CLI or the sources through tsx. */
  launcher?: 'dist' | 'tsx'
  log?: (line: string) => void
  /** Where the cluster and work dir are registered for cleanup (the CLI's); default: cleaned up by runSoak. */
  resources?: BenchResources
}

export interface Sample {
  /** Seconds since the workload started. */
  t: number
  rssMiB: number
  fds: number
  statements: number
}

export interface SoakResult {
  samples: Sample[]
  /** The proxy idle, before the workload and after every client has gone. */
  idle: { before: { rssMiB: number; fds: number }; after: { rssMiB: number; fds: number } }
  /** What the workload did. */
  sent: { sessions: number; statements: number; intendedErrors: number; copies: number; reconnects: number }
  /** Errors other than the intended ones: how many, and the first 20 messages. */
  unexpectedCount: number
  unexpected: string[]
  /** What the audit log holds. */
  recorded: { sessionStarts: number; sessionEnds: number; statements: number; errors: number; unknown: number; otherTypes: Record<string, number> }
  thirds: { rssFirst: number; rssLast: number; fdsFirst: number; fdsLast: number }
  checks: Record<string, boolean>
}

const INTENDED = new Set(['22012', '42601'])

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length
  } catch {
    return NaN
  }
}

export async function runSoak(o: SoakOptions): Promise<SoakResult> {
  const log = o.log ?? ((l: string) => process.stderr.write(l + '\n'))
  const workers = o.workers ?? 4
  const paceMs = o.paceMs ?? 20
  const sampleEveryMs = o.sampleEveryMs ?? 10_000
  // With the CLI's resources its cleanup stops the cluster and removes the work dir; otherwise runSoak does.
  const own = o.resources === undefined
  const resources: BenchResources = o.resources ?? { cluster: null, workDir: null }
  const work = mkdtempSync(path.join(os.tmpdir(), 'pgw-soak-'))
  resources.workDir = work
  const cluster = await startPostgres({ settings: { max_connections: String(Math.max(100, workers * 4 + 20)) } })
  resources.cluster = cluster
  let proxyStop: (() => Promise<void>) | null = null
  try {
    const password = 'soak-' + Math.random().toString(36).slice(2, 14)
    await cluster.createRole('soak', password, { database: 'soak' })
    await cluster.query('create table items(id bigserial primary key, worker int, n int, payload text); alter table items owner to soak; ' +
      'create table copied(worker int, n int, note text); alter table copied owner to soak', [], 'soak')
    const pki = await createDevPki(path.join(work, 'pki'))
    const issuer = await createDevIssuerKeys(path.join(work, 'issuer'))
    const launcher = o.launcher ?? 'tsx'
    const proxy = await startPgwitness({
      name: 'soak',
      dir: path.join(work, 'pgwitness'),
      launcher: launcher === 'dist' ? [path.join(ROOT, 'dist', 'cli.js'), 'serve', '--config'] : [path.join(ROOT, 'src', 'cli.ts'), 'serve', '--config'],
      nodeArgs: launcher === 'dist' ? [] : [`--import=${import.meta.resolve('tsx')}`],
      audit: o.audit ?? 'strict',
      cert: pki.serverCert, key: pki.serverKey, jwksPath: issuer.jwksPath,
      upstreamPort: cluster.port, user: 'soak', password, database: 'soak',
    })
    proxyStop = proxy.stop
    log(`pgwitness pid ${proxy.pid} (${launcher}) on 127.0.0.1:${proxy.port}, audit ${o.audit ?? 'strict'}; PostgreSQL on ${cluster.port}`)

    const token = () => mintDevToken(issuer.privateJwk, { subject: BENCH_SUBJECT, ttlSeconds: 900 })
    const sent = { sessions: 0, statements: 0, intendedErrors: 0, copies: 0, reconnects: 0 }
    const unexpected: string[] = []
    let unexpectedCount = 0
    const oops = (where: string, e: unknown) => {
      if (++unexpectedCount <= 20) unexpected.push(`${where}: ${(e as Error)?.message ?? String(e)}`)
    }
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

    // Idle baseline: one session in and out, then let the proxy settle.
    const warm = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'soak', database: 'soak', password: await token(), ssl: { rejectUnauthorized: false } })
    await warm.connect()
    await warm.query('select 1')
    sent.sessions++
    sent.statements++
    await warm.end()
    await sleep(1000)
    const idleBefore = { rssMiB: memoryKiB(proxy.pid)!.rss / 1024, fds: fdCount(proxy.pid) }

    const t0 = Date.now()
    const deadline = t0 + o.durationMs
    const samples: Sample[] = []
    const sample = () => {
      const m = memoryKiB(proxy.pid)
      if (!m) throw new Error('the proxy process is gone')
      const s = { t: Math.round((Date.now() - t0) / 1000), rssMiB: m.rss / 1024, fds: fdCount(proxy.pid), statements: sent.statements }
      samples.push(s)
      log(`${String(s.t).padStart(6)} s | RSS ${s.rssMiB.toFixed(1).padStart(7)} MiB | fds ${String(s.fds).padStart(4)} | statements ${s.statements}`)
    }
    sample()
    const sampler = setInterval(sample, sampleEveryMs)

    async function pgRound(worker: number, round: number): Promise<void> {
      const c = new pg.Client({
        host: '127.0.0.1', port: proxy.port, user: 'soak', database: 'soak', password: await token(),
        ssl: { rejectUnauthorized: false }, application_name: `soak-${worker}`,
      })
      c.on('error', (e) => oops(`worker ${worker} connection`, e))
      await c.connect()
      sent.sessions++
      const run = async (q: pg.QueryConfig | string, values?: unknown[]) => {
        sent.statements++
        await c.query(q as string, values as unknown[])
        if (paceMs) await sleep(paceMs)
      }
      const expectError = async (q: string) => {
        sent.statements++
        try {
          await c.query(q)
          oops(`worker ${worker}`, new Error(`${q} did not fail`))
        } catch (e) {
          if (INTENDED.has((e as { code?: string }).code ?? '')) sent.intendedErrors++
          else oops(`worker ${worker} ${q}`, e)
        }
        if (paceMs) await sleep(paceMs)
      }
      try {
        for (let i = 0; i < 5 && Date.now() < deadline; i++) {
          await run('select count(*) from items')                                           // simple
          await run('insert into items(worker, n, payload) values ($1, $2, $3)', [worker, round * 10 + i, 'x'.repeat(100)]) // extended
          await run({ name: 'by-worker', text: 'select id, n from items where worker = $1 order by id desc limit 5', values: [worker] }) // prepared
        }
        await run('begin')
        await run('update items set payload = $1 where worker = $2 and n = $3', ['y', worker, round * 10])
        await run('commit')
        await expectError('select 1/0')
        await expectError('selec 1')
        await run('delete from items where worker = $1 and n < $2', [worker, round * 10 - 50])
      } finally {
        await c.end()
      }
    }

    async function copyRound(worker: number, round: number): Promise<void> {
      const w = await WireClient.connect({ port: proxy.port, token: await token(), user: 'soak', database: 'soak', applicationName: `soak-copy-${worker}` })
      sent.sessions++
      try {
        sent.statements++
        w.send(serialize.query('copy copied from stdin'))
        await w.until((m) => m.name === 'copyInResponse')
        let rows = ''
        for (let i = 0; i < 200; i++) rows += `${worker}\t${round * 1000 + i}\tnote-${i}\n`
        w.send(serialize.copyData(Buffer.from(rows)), serialize.copyDone())
        const inDone = await w.untilReady()
        if (!inDone.some((m) => m.name === 'commandComplete' && m.text === 'COPY 200')) oops(`worker ${worker} copy in`, new Error(JSON.stringify(inDone.map((m) => m.name))))
        sent.statements++
        const out = await w.query(`copy (select * from copied where worker = ${worker} order by n desc limit 500) to stdout`)
        if (!out.some((m) => m.name === 'commandComplete' && /^COPY \d+$/.test(m.text ?? ''))) oops(`worker ${worker} copy out`, new Error(JSON.stringify(out.map((m) => m.name))))
        sent.statements++
        await w.query(`delete from copied where worker = ${worker} and n < ${round * 1000 - 2000}`)
        sent.copies += 2
      } finally {
        await w.end()
      }
    }

    await Promise.all(Array.from({ length: workers }, async (_, worker) => {
      for (let round = 0; Date.now() < deadline; round++) {
        try {
          await pgRound(worker, round)
          if (round % 5 === 4 && Date.now() < deadline) await copyRound(worker, round)
          sent.reconnects++
        } catch (e) {
          oops(`worker ${worker} round ${round}`, e)
          await sleep(500)
        }
      }
    }))
    clearInterval(sampler)
    sample()

    // Every client is gone: the descriptors must come back to the idle count.
    let after = { rssMiB: 0, fds: NaN }
    for (const until = Date.now() + 30_000; ;) {
      after = { rssMiB: memoryKiB(proxy.pid)!.rss / 1024, fds: fdCount(proxy.pid) }
      if (after.fds <= idleBefore.fds || Date.now() > until) break
      await sleep(250)
    }

    // The audit log: stop the proxy so that everything is flushed, then count.
    await proxy.stop()
    proxyStop = null
    const recorded = { sessionStarts: 0, sessionEnds: 0, statements: 0, errors: 0, unknown: 0, otherTypes: {} as Record<string, number> }
    // Streamed: a 30-minute log is larger than the longest string V8 can hold.
    for await (const line of createInterface({ input: createReadStream(proxy.auditLog!), crlfDelay: Infinity })) {
      if (!line) continue
      const r = JSON.parse(line) as { type: string; outcome?: { status: string; sqlstate: string | null } }
      if (r.type === 'session.start') recorded.sessionStarts++
      else if (r.type === 'session.end') recorded.sessionEnds++
      else if (r.type === 'statement') {
        recorded.statements++
        if (r.outcome!.status === 'error') recorded.errors++
        if (r.outcome!.status === 'unknown') recorded.unknown++
      } else recorded.otherTypes[r.type] = (recorded.otherTypes[r.type] ?? 0) + 1
    }

    // Thirds of the samples taken under load (the one at 0 s is the idle proxy).
    const loaded = samples.slice(1)
    const third = Math.max(1, Math.floor(loaded.length / 3))
    const first = loaded.slice(0, third)
    const last = loaded.slice(-third)
    const thirds = {
      rssFirst: median(first.map((s) => s.rssMiB)), rssLast: median(last.map((s) => s.rssMiB)),
      fdsFirst: median(first.map((s) => s.fds)), fdsLast: median(last.map((s) => s.fds)),
    }
    const checks = {
      'no unexpected errors': unexpectedCount === 0,
      'one statement record per statement sent': recorded.statements === sent.statements,
      'one error record per intended error': recorded.errors === sent.intendedErrors,
      'no outcome unknown': recorded.unknown === 0,
      'a session.end for every session.start': recorded.sessionStarts === sent.sessions && recorded.sessionEnds === recorded.sessionStarts,
      'file descriptors back to idle after the clients left': after.fds <= idleBefore.fds,
      'file descriptors flat (last third <= first third + 2 per worker)': thirds.fdsLast <= thirds.fdsFirst + 2 * workers,
      'RSS flat (last third <= first third x 1.25 + 16 MiB)': thirds.rssLast <= thirds.rssFirst * 1.25 + 16,
    }
    return { samples, idle: { before: idleBefore, after }, sent, unexpectedCount, unexpected, recorded, thirds, checks }
  } finally {
    if (proxyStop) await proxyStop().catch(() => undefined)
    if (own) {
      await cluster.stop().catch(() => undefined)
      rmSync(work, { recursive: true, force: true })
    }
  }
}

export function report(r: SoakResult): string {
  const lines = [
    `workload: ${r.sent.sessions} sessions, ${r.sent.statements} statements (${r.sent.intendedErrors} intended errors, ${r.sent.copies} COPY), ${r.sent.reconnects} reconnects`,
    `audit log: ${r.recorded.sessionStarts} session.start, ${r.recorded.sessionEnds} session.end, ${r.recorded.statements} statement records (${r.recorded.errors} errors, ${r.recorded.unknown} unknown)`,
    `idle before: RSS ${r.idle.before.rssMiB.toFixed(1)} MiB, ${r.idle.before.fds} fds; idle after: RSS ${r.idle.after.rssMiB.toFixed(1)} MiB, ${r.idle.after.fds} fds`,
    `RSS median first third ${r.thirds.rssFirst.toFixed(1)} MiB, last third ${r.thirds.rssLast.toFixed(1)} MiB; fds ${r.thirds.fdsFirst} -> ${r.thirds.fdsLast}`,
    ...Object.entries(r.checks).map(([k, ok]) => `${ok ? 'ok  ' : 'FAIL'} ${k}`),
    ...(r.unexpectedCount > 0 ? [`${r.unexpectedCount} unexpected errors, the first:`] : []),
    ...r.unexpected.map((u) => `unexpected: ${u}`),
  ]
  return lines.join('\n')
}

// ---------------------------------------------------------------------------
// command line

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values: opt } = parseArgs({
    options: {
      minutes: { type: 'string', default: '30' },
      workers: { type: 'string', default: '4' },
      'pace-ms': { type: 'string', default: '20' },
      'sample-seconds': { type: 'string', default: '10' },
      audit: { type: 'string', default: 'strict' },
      launcher: { type: 'string' },
      json: { type: 'string' },
      keep: { type: 'boolean', default: false },
    },
  })
  const log = (msg: string): void => void process.stderr.write(`[soak] ${msg}\n`)
  const { resources, cleanup } = benchCleanup(opt.keep!, log)
  const launcher = (opt.launcher ?? (readdirSync(ROOT).includes('dist') ? 'dist' : 'tsx')) as 'dist' | 'tsx'
  await runBenchMain(async () => {
    if (opt.audit !== 'strict' && opt.audit !== 'batched') throw new Error('--audit must be strict or batched')
    const r = await runSoak({
      durationMs: Number(opt.minutes) * 60_000,
      workers: Number(opt.workers),
      paceMs: Number(opt['pace-ms']),
      sampleEveryMs: Number(opt['sample-seconds']) * 1000,
      audit: opt.audit,
      launcher,
      log,
      resources,
    })
    console.log(report(r))
    if (opt.json) writeFileSync(opt.json, JSON.stringify(r, null, 2))
    return Object.values(r.checks).every(Boolean) ? 0 : 1
  }, cleanup, log)
}
