/**
 * pgwitness benchmark: direct vs pgbouncer vs a bare TLS pass-through vs pgwitness (audit off / on),
 * side by side on the same machine in the same run.
 *
 *   npx tsx bench/run.ts [--quick] [--rounds N] [--duration S]
 *                        [--scenario select-only/prepared/c8 ...] [--targets direct,pgbouncer,...]
 *                        (targets: direct, pgbouncer, passthrough, pgwitness-off, pgwitness-on, pgwitness-strict, pgwitness-on-pool)
 *                        [--no-build] [--proxy-node-args="--cpu-prof ..."] [--baseline-node-args="..."] [--out FILE] [--keep]
 *                        [--max-quiet-wait S] [--scale N] [--baseline DIR]
 *
 * --baseline DIR: a built checkout of another pgwitness version (its dist/cli.js);
 * adds targets baseline-off, baseline-on and baseline-strict, run from that tree
 * with the same configs, interleaved with the others, so a change is measured
 * against the code before it in one run.
 *
 * Starts its own PostgreSQL (test/harness/postgres.ts), pgbouncer (session
 * mode, client TLS, SCRAM) and one pgwitness process per configuration; runs
 * pgbench for every scenario, interleaving the targets round by round
 * (A B C D, A B C D, ...); prints a Markdown table of median TPS, ratios to
 * direct and to pgbouncer, and CPU seconds per 1,000 transactions from
 * /proc/<pid>/stat; writes the raw numbers to bench/results-<timestamp>.json.
 */
import { execFileSync } from 'node:child_process'
import { chmodSync, existsSync, openSync, readSync, closeSync, readFileSync, truncateSync, writeFileSync, mkdtempSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { startPostgres } from '../test/harness/postgres.js'
import { createDevPki } from '../src/dev/pki.js'
import { createDevIssuerKeys, mintDevToken } from '../src/dev/tokens.js'
import { connectAllowanceS, parsePgbench, parseScenarioId, runPgbench, scenarioId, type Scenario, type PgbenchTarget } from './lib/pgbench.js'
import { ensurePgbouncer, startPgbouncer, type Pgbouncer } from './lib/pgbouncer.js'
import { BENCH_SUBJECT, chooseLauncher, startPgwitness, type AuditMode, type Pgwitness } from './lib/pgwitness.js'
import { startPassthrough } from './lib/passthrough.js'
import {
  killAllSync,
  machineCpu,
  memoryKiB,
  processCpu,
  processUserCpu,
  reapedChildrenCpu,
  runCapture,
  selfCpu,
  benchCleanup,
  runBenchMain,
  treeCpu,
} from './lib/procs.js'
import { markdownTable, summarize, type RunRecord, type SteadyWindow } from './lib/report.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const log = (msg: string): void => void process.stderr.write(`[bench] ${msg}\n`)

// ---------------------------------------------------------------------------
// options

const { values: opt } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    duration: { type: 'string' },
    scenario: { type: 'string', multiple: true },
    targets: { type: 'string' },
    strict: { type: 'boolean', default: false }, // accepted for old command lines: strict is now always measured
    'no-build': { type: 'boolean', default: false },
    'proxy-node-args': { type: 'string', default: '' },
    // Node flags for the baseline-* targets only (default: --proxy-node-args): the same tree with and without a flag, side by side.
    'baseline-node-args': { type: 'string' },
    baseline: { type: 'string' },
    out: { type: 'string' },
    keep: { type: 'boolean', default: false },
    scale: { type: 'string', default: '10' },
    'max-quiet-wait': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
})

if (opt.help) {
  console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('*/')[0]!.replace(/^\/\*\*?|^ \* ?/gm, ''))
  process.exit(0)
}

const QUICK = opt.quick
const ROUNDS = Number(opt.rounds ?? (QUICK ? 1 : 3))
const DURATION = Number(opt.duration ?? (QUICK ? 3 : 10))
const SCALE = Number(opt.scale)
/** before each run, wait up to this long for other processes' CPU use to drop below QUIET_SHARE */
const MAX_QUIET_WAIT_S = Number(opt['max-quiet-wait'] ?? (QUICK ? 3 : 5))
const QUIET_SHARE = 0.15
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error('--rounds must be a positive integer')
if (!Number.isInteger(DURATION) || DURATION < 1) throw new Error('--duration must be a positive integer (seconds)')

const ALL_SCENARIOS: Scenario[] = []
for (const script of ['select-only', 'tpcb'] as const)
  for (const mode of ['simple', 'extended', 'prepared'] as const)
    for (const clients of [1, 8, 64]) ALL_SCENARIOS.push({ script, mode, clients })
const QUICK_SCENARIOS: Scenario[] = [
  { script: 'select-only', mode: 'prepared', clients: 8 },
  { script: 'tpcb', mode: 'simple', clients: 8 },
]
const SCENARIOS: Scenario[] = opt.scenario?.length ? opt.scenario.map(parseScenarioId) : QUICK ? QUICK_SCENARIOS : ALL_SCENARIOS

interface TargetDef {
  name: string
  kind: 'direct' | 'pgbouncer' | 'passthrough' | 'pgwitness'
  audit?: AuditMode
  /** upstream.pool enabled */
  pool?: boolean
  /** runs the build in --baseline DIR instead of this tree */
  baseline?: boolean
  label: string
}
const TARGET_DEFS: TargetDef[] = [
  { name: 'direct', kind: 'direct', label: 'direct to PostgreSQL (no TLS)' },
  { name: 'pgbouncer', kind: 'pgbouncer', label: 'pgbouncer session mode, client TLS' },
  { name: 'passthrough', kind: 'passthrough', label: 'bare Node.js TLS pass-through (bench/lib/passthrough-server.mjs: chunks written unchanged both ways, no framing, no audit)' },
  { name: 'pgwitness-off', kind: 'pgwitness', audit: 'off', label: 'pgwitness, audit off (audit.enabled: false)' },
  { name: 'pgwitness-on', kind: 'pgwitness', audit: 'batched', label: 'pgwitness, audit on (durability: batched, fsync every 50 ms)' },
  {
    name: 'pgwitness-on-pool',
    kind: 'pgwitness',
    audit: 'batched',
    pool: true,
    label: 'pgwitness, audit on (batched), upstream.pool enabled (not in the default targets)',
  },
  {
    name: 'pgwitness-strict',
    kind: 'pgwitness',
    audit: 'strict',
    label: 'pgwitness, audit on (durability: strict: intents fsynced before forwarding, group commit)',
  },
  ...(['off', 'on', 'strict'] as const).map((m): TargetDef => ({
    name: `baseline-${m}`,
    kind: 'pgwitness',
    audit: m === 'off' ? 'off' : m === 'on' ? 'batched' : 'strict',
    baseline: true,
    label: `the --baseline build (${opt.baseline ?? 'not given'}), audit ${m === 'on' ? 'on (batched)' : m}`,
  })),
]
const targetNames = opt.targets
  ? opt.targets.split(',').map((s) => s.trim()).filter(Boolean)
  : ['direct', 'pgbouncer', 'passthrough', 'pgwitness-off', 'pgwitness-on', 'pgwitness-strict']
const TARGETS: TargetDef[] = targetNames.map((n) => {
  const d = TARGET_DEFS.find((t) => t.name === n)
  if (!d) throw new Error(`unknown target "${n}" (known: ${TARGET_DEFS.map((t) => t.name).join(', ')})`)
  if (d.baseline && !opt.baseline) throw new Error(`target "${n}" needs --baseline DIR`)
  return d
})

const PER_RUN_OVERHEAD_S = 2.5 // connection setup, settle pause, vacuum before TPC-B, sampling
const SETUP_S = 40 // PostgreSQL, pgbench -i, pgbouncer, pgwitness, smoke checks (build not included)
const nRuns = SCENARIOS.length * TARGETS.length * ROUNDS
const estimateS =
  SETUP_S + SCENARIOS.reduce((a, s) => a + (DURATION + connectAllowanceS(s) + PER_RUN_OVERHEAD_S) * TARGETS.length * ROUNDS, 0)

// ---------------------------------------------------------------------------
// machine info

function sh(cmd: string): string {
  try {
    return execFileSync('sh', ['-c', cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim()
  } catch (err) {
    return `(failed: ${(err as Error).message.split('\n')[0]})`
  }
}

// ---------------------------------------------------------------------------
// cleanup

const { resources, cleanup, interrupted } = benchCleanup(opt.keep, log)

// ---------------------------------------------------------------------------

function countLines(file: string): { records: number; bytes: number } {
  let bytes = 0
  let records = 0
  const fd = openSync(file, 'r')
  try {
    const buf = Buffer.allocUnsafe(1 << 20)
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null)
      if (n <= 0) break
      bytes += n
      for (let i = buf.indexOf(10, 0); i !== -1 && i < n; i = buf.indexOf(10, i + 1)) records++
    }
  } finally {
    closeSync(fd)
  }
  return { records, bytes }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

interface Sample {
  tMs: number
  postgres: number
  pgbench: number
  proxies: Record<string, number>
  /** user-mode CPU of the target's proxy process (NaN for direct) */
  proxyUser: number
  runner: number
  busy: number
  irq: number
  total: number
}

/**
 * CPU per 1,000 transactions in the steady part of a run: from 0.5 s after
 * pgbench reports its clients connected to 0.25 s before its deadline, so
 * that connection setup (TLS, token verification, SCRAM, backend fork) and
 * teardown are left out. Transactions in the window = tps × window length
 * (pgbench's tps is computed over the same post-connection period).
 */
function steadyWindow(samples: Sample[], connMs: number, deadlineMs: number, tps: number, proxy: string | null): SteadyWindow | null {
  const lo = samples.find((x) => x.tMs >= connMs + 500)
  const hi = [...samples].reverse().find((x) => x.tMs <= deadlineMs - 250)
  if (!lo || !hi || hi.tMs - lo.tMs < 1000 || !Number.isFinite(hi.pgbench - lo.pgbench)) return null
  const seconds = (hi.tMs - lo.tMs) / 1000
  const tx = tps * seconds
  const per1k = (v: number): number => v / (tx / 1000)
  const proxies = Object.keys(lo.proxies)
  const proxySum = proxies.reduce((a, n) => a + (hi.proxies[n]! - lo.proxies[n]!), 0)
  const ours = hi.postgres - lo.postgres + (hi.pgbench - lo.pgbench) + (hi.runner - lo.runner) + proxySum
  const total = hi.total - lo.total
  return {
    fromMs: Math.round(lo.tMs),
    toMs: Math.round(hi.tMs),
    transactions: Math.round(tx),
    proxyPer1k: proxy === null ? null : per1k(hi.proxies[proxy]! - lo.proxies[proxy]!),
    proxyUserPer1k: proxy === null ? null : per1k(hi.proxyUser - lo.proxyUser),
    postgresPer1k: per1k(hi.postgres - lo.postgres),
    pgbenchPer1k: per1k(hi.pgbench - lo.pgbench),
    machineBusyShare: (hi.busy - lo.busy) / total,
    foreignShare: Math.max(0, hi.busy - hi.irq - (lo.busy - lo.irq) - ours) / total,
  }
}

/**
 * Settle, then wait (at most maxS) until processes this benchmark did not
 * start use less than QUIET_SHARE of the machine, sampled over 0.5 s.
 * The machine is shared (other jobs may run tests on it): this keeps their
 * bursts out of the measured windows when it can, and the per-run "other
 * load" figure says how much got in anyway.
 */
async function waitQuiet(ourCpu: () => number, maxS: number): Promise<{ waitedS: number; foreignShare: number }> {
  const start = Date.now()
  for (;;) {
    const m0 = machineCpu()
    const o0 = ourCpu()
    await sleep(500)
    const m1 = machineCpu()
    const foreign = Math.max(0, m1.busy - m1.irq - (m0.busy - m0.irq) - (ourCpu() - o0))
    const share = foreign / Math.max(m1.total - m0.total, 1e-9)
    const waitedS = (Date.now() - start) / 1000
    if (share < QUIET_SHARE || waitedS >= maxS) return { waitedS: Math.max(0, waitedS - 0.5), foreignShare: share }
  }
}

async function main(): Promise<number> {
  const startedAt = new Date()
  const machine = {
    nproc: sh('nproc'),
    cpuModel: sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-").trim(),
    memory: sh('free -h'),
    kernel: sh('uname -r'),
    node: process.version,
    loadavgAtStart: os.loadavg(),
  }
  console.log(`# pgwitness benchmark (${QUICK ? 'quick' : 'full'})\n`)
  const maxClients = Math.max(...SCENARIOS.map((s) => s.clients))
  const maxAllowance = Math.max(...SCENARIOS.map(connectAllowanceS))
  console.log(`${SCENARIOS.length} scenario(s) × ${TARGETS.length} target(s) × ${ROUNDS} round(s) × ${DURATION} s = ${nRuns} pgbench runs`)
  console.log(
    `expected duration: ~${Math.ceil(estimateS / 60)} min (${Math.round(estimateS)} s; ${DURATION} s per run${maxAllowance ? ` (+${maxAllowance} s connection allowance at -c ${maxClients})` : ''} + ~${PER_RUN_OVERHEAD_S} s overhead, + ~${SETUP_S} s setup; ` +
      `up to ${MAX_QUIET_WAIT_S} s more per run if other processes keep the machine busy)\n`,
  )

  // --- build
  let build = { ran: false, ok: true, output: '' }
  if (!opt['no-build']) {
    log('building (tsc -p tsconfig.json)')
    const r = await runCapture('tsc', process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(ROOT, 'tsconfig.json')], {
      cwd: ROOT,
      timeoutMs: 300_000,
    })
    build = { ran: true, ok: r.code === 0, output: (r.stdout + r.stderr).trim() }
    if (!build.ok) {
      if (!existsSync(path.join(ROOT, 'dist', 'server.js'))) throw new Error(`build failed and there is no dist/:\n${build.output}`)
      log(`WARNING: the build reported errors (tsc still emitted dist/); benchmarking the emitted code:\n${build.output}`)
    }
  } else if (!existsSync(path.join(ROOT, 'dist', 'server.js'))) {
    throw new Error('--no-build given but dist/ is missing: run npm run build first')
  }
  const launcher = await chooseLauncher(ROOT)
  if (launcher.note) log(`WARNING: ${launcher.note}`)
  const baselineLauncher = opt.baseline ? await chooseLauncher(path.resolve(opt.baseline)) : null

  const pgbouncerBin = TARGETS.some((t) => t.kind === 'pgbouncer') ? await ensurePgbouncer() : null

  // --- work dir (traversable by the pgbouncer/postgres OS user)
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'pgw-bench-'))
  resources.workDir = workDir
  chmodSync(workDir, 0o711)

  // --- PostgreSQL
  log('starting PostgreSQL')
  const pgc = await startPostgres({
    settings: {
      max_connections: '300',
      shared_buffers: '512MB',
      max_wal_size: '4GB',
      checkpoint_timeout: '30min',
      // fsync, synchronous_commit and full_page_writes are already off in the
      // harness; they apply identically to every target.
    },
  })
  resources.cluster = pgc
  const pgBin = (n: string): string => path.join(pgc.binDir, n)
  const benchPassword = 'bench-' + Math.random().toString(36).slice(2, 14)
  await pgc.createRole('bench', benchPassword, { database: 'bench' })
  log(`PostgreSQL on 127.0.0.1:${pgc.port}; pgbench -i -s ${SCALE}`)
  const directTarget: PgbenchTarget = { port: pgc.port, user: 'bench', database: 'bench', password: benchPassword, sslmode: 'disable' }
  {
    const env = { ...process.env, PGPASSWORD: benchPassword, PGSSLMODE: 'disable' }
    const r = await runCapture('pgbench -i', pgBin('pgbench'), ['-i', '-q', '-s', String(SCALE), '-h', '127.0.0.1', '-p', String(pgc.port), '-U', 'bench', 'bench'], {
      env,
      timeoutMs: 600_000,
    })
    if (r.code !== 0) throw new Error(`pgbench -i failed:\n${r.stdout}\n${r.stderr}`)
  }
  const versions = {
    postgres: sh(`${pgBin('postgres')} --version`),
    pgbench: sh(`${pgBin('pgbench')} --version`),
    pgbouncer: pgbouncerBin ? sh(`${pgbouncerBin} --version | head -1`) : null,
    node: process.version,
  }

  // --- TLS and identity
  const pki = await createDevPki(path.join(workDir, 'pki'))
  const issuer = await createDevIssuerKeys(path.join(workDir, 'issuer'))
  const ttl = Math.ceil(estimateS * 3 + 3600)
  const token = await mintDevToken(issuer.privateJwk, { subject: BENCH_SUBJECT, ttlSeconds: ttl })

  // --- proxies
  let pgbouncer: Pgbouncer | null = null
  if (pgbouncerBin) {
    log('starting pgbouncer')
    pgbouncer = await startPgbouncer({
      binary: pgbouncerBin,
      dir: path.join(workDir, 'pgbouncer'),
      upstreamPort: pgc.port,
      database: 'bench',
      user: 'bench',
      password: benchPassword,
      tlsCert: pki.serverCert,
      tlsKey: pki.serverKey,
      maxClients: Math.max(...SCENARIOS.map((s) => s.clients)),
    })
  }
  const passthrough = TARGETS.some((t) => t.kind === 'passthrough')
    ? await startPassthrough({ upstreamPort: pgc.port, cert: pki.serverCert, key: pki.serverKey })
    : null
  const proxyNodeArgs = opt['proxy-node-args'].split(/\s+/).filter(Boolean)
  const baselineNodeArgs = opt['baseline-node-args'] === undefined ? proxyNodeArgs : opt['baseline-node-args'].split(/\s+/).filter(Boolean)
  const pgw = new Map<string, Pgwitness>()
  for (const t of TARGETS.filter((t) => t.kind === 'pgwitness')) {
    log(`starting ${t.name}`)
    pgw.set(
      t.name,
      await startPgwitness({
        name: t.name,
        dir: path.join(workDir, t.name),
        launcher: t.baseline ? baselineLauncher!.argv : launcher.argv,
        nodeArgs: t.baseline ? baselineNodeArgs : proxyNodeArgs,
        audit: t.audit!,
        pool: t.pool ?? false,
        cert: pki.serverCert,
        key: pki.serverKey,
        jwksPath: issuer.jwksPath,
        upstreamPort: pgc.port,
        user: 'bench',
        password: benchPassword,
        database: 'bench',
      }),
    )
  }

  const targetConn = (t: TargetDef): PgbenchTarget => {
    if (t.kind === 'direct') return directTarget
    if (t.kind === 'pgbouncer') return { ...directTarget, port: pgbouncer!.port, sslmode: 'require' }
    if (t.kind === 'passthrough') return { ...directTarget, port: passthrough!.port, sslmode: 'require' }
    return { ...directTarget, port: pgw.get(t.name)!.port, password: token, sslmode: 'require' }
  }
  const proxyPid = (t: TargetDef): number | null =>
    t.kind === 'pgbouncer' ? pgbouncer!.pid : t.kind === 'passthrough' ? passthrough!.pid : t.kind === 'pgwitness' ? pgw.get(t.name)!.pid : null
  const postmasterPid = Number(readFileSync(path.join(pgc.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0])
  const servicePids = (): number[] => [...(pgbouncer ? [pgbouncer.pid] : []), ...(passthrough ? [passthrough.pid] : []), ...[...pgw.values()].map((p) => p.pid)]
  /** CPU seconds used so far by everything this benchmark started (services, PostgreSQL, reaped pgbench runs, itself) */
  const ourCpu = (): number =>
    treeCpu(postmasterPid) + reapedChildrenCpu() + selfCpu() + servicePids().reduce((a, pid) => a + (processCpu(pid) || 0), 0)

  // --- smoke check every target (TLS, auth, a query)
  for (const t of TARGETS) {
    const c = targetConn(t)
    const r = await runCapture('psql', pgBin('psql'), ['-X', '-At', '-h', '127.0.0.1', '-p', String(c.port), '-U', c.user, '-d', c.database, '-c', 'select ssl from pg_stat_ssl where pid = pg_backend_pid()'], {
      env: { ...process.env, PGPASSWORD: c.password, PGSSLMODE: c.sslmode, PGCONNECT_TIMEOUT: '20' },
      timeoutMs: 30_000,
    })
    if (r.code !== 0) throw new Error(`smoke check through ${t.name} failed:\n${r.stdout}\n${r.stderr}`)
    log(`smoke check ${t.name}: ok (port ${c.port}, client sslmode=${c.sslmode})`)
  }
  for (const p of pgw.values()) if (p.auditLog && existsSync(p.auditLog)) truncateSync(p.auditLog, 0)

  // --- the runs
  const runs: RunRecord[] = []
  const t0 = Date.now()
  let done = 0
  for (const s of SCENARIOS) {
    const sid = scenarioId(s)
    for (let round = 1; round <= ROUNDS; round++) {
      for (const t of TARGETS) {
        if (interrupted()) return 130
        if (s.script === 'tpcb') {
          // what pgbench's own pre-run vacuum does, done directly for every target alike
          await pgc.query('VACUUM pgbench_branches', [], 'bench')
          await pgc.query('VACUUM pgbench_tellers', [], 'bench')
          await pgc.query('TRUNCATE pgbench_history', [], 'bench')
        }
        const quietWait = await waitQuiet(ourCpu, MAX_QUIET_WAIT_S)
        const pPid = proxyPid(t)
        const before = {
          postgres: treeCpu(postmasterPid),
          pgbench: reapedChildrenCpu(),
          runner: selfCpu(),
          proxies: Object.fromEntries(
            [...(pgbouncer ? [['pgbouncer', pgbouncer.pid] as const] : []), ...(passthrough ? [['passthrough', passthrough.pid] as const] : []), ...[...pgw.values()].map((p) => [p.name, p.pid] as const)].map(
              ([n, pid]) => [n, { pid, cpu: processCpu(pid) }],
            ),
          ) as Record<string, { pid: number; cpu: number }>,
          machine: machineCpu(),
        }
        const runStart = new Date()
        const w0 = process.hrtime.bigint()
        // Sample every 250 ms so that the steady-state window (after the
        // clients have connected, before they disconnect) can be cut out.
        const samples: Sample[] = []
        let pgbenchPid = -1
        const take = (): void => {
          const m = machineCpu()
          const proxies: Record<string, number> = {}
          for (const [n, b] of Object.entries(before.proxies)) proxies[n] = processCpu(b.pid)
          samples.push({
            tMs: Number(process.hrtime.bigint() - w0) / 1e6,
            postgres: treeCpu(postmasterPid),
            pgbench: pgbenchPid > 0 ? processCpu(pgbenchPid) : NaN,
            proxies,
            proxyUser: pPid !== null ? processUserCpu(pPid) : NaN,
            runner: selfCpu(),
            busy: m.busy,
            irq: m.irq,
            total: m.total,
          })
        }
        const sampler = setInterval(take, 250)
        let r: Awaited<ReturnType<typeof runPgbench>>
        try {
          r = await runPgbench(pgBin('pgbench'), s, DURATION, targetConn(t), (pid) => (pgbenchPid = pid))
        } finally {
          clearInterval(sampler)
        }
        const wallS = Number(process.hrtime.bigint() - w0) / 1e9
        const m1 = machineCpu()
        const allProxies: Record<string, number> = {}
        for (const [n, b] of Object.entries(before.proxies)) allProxies[n] = processCpu(b.pid) - b.cpu
        const cpu: RunRecord['cpu'] = {
          postgres: treeCpu(postmasterPid) - before.postgres,
          pgbench: reapedChildrenCpu() - before.pgbench,
          proxy: t.kind === 'direct' ? null : allProxies[t.name] ?? null,
          allProxies,
          runner: selfCpu() - before.runner,
          machineBusy: m1.busy - before.machine.busy,
          machineSteal: m1.steal - before.machine.steal,
          machineIrq: m1.irq - before.machine.irq,
          machineTotal: m1.total - before.machine.total,
          foreign: 0,
        }
        cpu.foreign = Math.max(
          0,
          cpu.machineBusy - cpu.machineIrq - cpu.postgres - cpu.pgbench - cpu.runner - Object.values(allProxies).reduce((a, b) => a + b, 0),
        )
        const mem = pPid !== null ? memoryKiB(pPid) : null
        let audit: RunRecord['audit'] = null
        const p = pgw.get(t.name)
        if (p?.auditLog) {
          await sleep(200) // > fsync_interval: let the last batch land
          audit = existsSync(p.auditLog) ? countLines(p.auditLog) : { records: 0, bytes: 0 }
          if (existsSync(p.auditLog)) truncateSync(p.auditLog, 0) // append-mode writer: safe
        }
        const sum = parsePgbench(r.stdout)
        const ok = r.code === 0 && sum.tps !== null && (sum.transactions ?? 0) > 0 && (sum.failed ?? 0) === 0
        const steady = ok ? steadyWindow(samples, sum.initialConnectionMs ?? 0, (DURATION + connectAllowanceS(s)) * 1000, sum.tps!, t.kind === 'direct' ? null : t.name) : null
        const error = ok ? null : `exit ${r.code}: ${(r.stderr.trim() || r.stdout.trim()).split('\n').slice(-5).join(' | ')}`
        runs.push({
          scenario: sid,
          target: t.name,
          round,
          startedAt: runStart.toISOString(),
          wallS,
          ok,
          error,
          pgbenchArgs: r.args,
          ...sum,
          cpu,
          steady,
          proxyMemKiB: mem,
          quietWait,
          audit,
        })
        done++
        const eta = ((Date.now() - t0) / done) * (nRuns - done)
        const proxyPer1k = steady?.proxyPer1k != null ? ` proxy ${steady.proxyPer1k.toFixed(3)} s/1k tx` : ''
        log(
          `[${done}/${nRuns}] ${sid} round ${round} ${t.name}: ` +
            (ok ? `${sum.tps!.toFixed(0)} tps${proxyPer1k}` : `ERROR ${error}`) +
            ` other load ${Math.round((cpu.foreign / Math.max(cpu.machineTotal, 1e-9)) * 100)}%` +
            (quietWait.waitedS >= 1 ? ` (waited ${quietWait.waitedS.toFixed(0)} s for quiet)` : '') +
            ` (eta ${Math.ceil(eta / 60000)} min)`,
        )
        if (!ok && r.stderr) log(r.stderr.split('\n').slice(-5).join('\n'))
      }
    }
  }

  // --- report
  const scenarioIds = SCENARIOS.map(scenarioId)
  const rows = summarize(runs, scenarioIds, TARGETS.map((t) => t.name))
  const finishedAt = new Date()
  const table = markdownTable(rows)
  console.log(`\n## Results (median of ${ROUNDS} interleaved round(s), ${DURATION} s each)\n`)
  console.log(table)
  console.log(
    `\nTPS = pgbench's tps (initial connection time excluded); median over rounds. ` +
      `CPU s/1k tx = CPU seconds per 1,000 transactions (× 1000 = µs per transaction) in the steady window of each run ` +
      `(0.5 s after the clients connected to 0.25 s before the end; * = some rounds had no such window and count the whole run), median over rounds; ` +
      `from /proc/PID/stat utime+stime sampled every 250 ms: proxy = the target's proxy process (pgbouncer, or the pgwitness node process; "user" = its user-mode share, the rest is kernel time), ` +
      `postgres = postmaster + all its children. ` +
      `machine busy = share of all ${machine.nproc} cores busy during the run (/proc/stat); ` +
      `other load = share of all cores used during the run by processes this benchmark did not start ` +
      `(machine busy minus irq/softirq minus ours).`,
  )
  console.log('\nTargets:')
  for (const t of TARGETS) console.log(`- ${t.name}: ${t.label}`)
  console.log(`\nversions: ${versions.postgres}; ${versions.pgbench}; ${versions.pgbouncer ?? 'pgbouncer not used'}; node ${versions.node}`)
  console.log(`pgwitness launched as: ${launcher.label}`)
  if (!build.ok) console.log('WARNING: the build reported TypeScript errors (dist/ was emitted anyway):\n' + build.output)
  const failed = runs.filter((r) => !r.ok)
  if (failed.length) console.log(`\n${failed.length} run(s) failed:\n` + failed.map((r) => `- ${r.scenario} round ${r.round} ${r.target}: ${r.error}`).join('\n'))

  const stamp = startedAt.toISOString().replace(/[:.]/g, '-')
  const out = opt.out ?? path.join(ROOT, 'bench', `results-${stamp}.json`)
  const commit = sh('git -C ' + JSON.stringify(ROOT) + ' rev-parse --short HEAD')
  const dirty = sh('git -C ' + JSON.stringify(ROOT) + ' status --porcelain -- src | wc -l')
  writeFileSync(
    out,
    JSON.stringify(
      {
        command: `npx tsx bench/run.ts ${process.argv.slice(2).join(' ')}`.trim(),
        mode: QUICK ? 'quick' : 'full',
        startedAt: startedAt.toISOString(),
        finishedAt: finishedAt.toISOString(),
        elapsedS: (finishedAt.getTime() - startedAt.getTime()) / 1000,
        estimateS,
        rounds: ROUNDS,
        durationS: DURATION,
        scale: SCALE,
        git: { commit, uncommittedFilesUnderSrc: Number(dirty) || 0 },
        build,
        launcher: launcher.label,
        launcherNote: launcher.note,
        machine: { ...machine, loadavgAtEnd: os.loadavg() },
        versions,
        postgresSettings: 'harness defaults (fsync=off, synchronous_commit=off, full_page_writes=off) + max_connections=300, shared_buffers=512MB, max_wal_size=4GB, checkpoint_timeout=30min',
        targets: TARGETS,
        scenarios: scenarioIds,
        summary: rows,
        runs,
      },
      null,
      2,
    ) + '\n',
  )
  console.log(`\nraw numbers: ${path.relative(process.cwd(), out)}`)
  console.log(`elapsed: ${((finishedAt.getTime() - startedAt.getTime()) / 60000).toFixed(1)} min (estimated ${Math.ceil(estimateS / 60)} min)`)

  // pgwitness stderr (warnings/errors) is worth a look
  for (const p of pgw.values()) {
    const errs = readFileSync(p.stderrFile, 'utf8')
      .split('\n')
      .filter((l) => /"level":(50|60)/.test(l) || /Error/.test(l))
    if (errs.length) log(`${p.name} logged ${errs.length} error line(s); first: ${errs[0]!.slice(0, 300)}`)
  }
  return failed.length ? 1 : 0
}

await runBenchMain(main, cleanup, log)
