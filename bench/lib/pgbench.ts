/** Running pgbench and reading its summary. */
import { runCapture } from './procs.js'

export type Script = 'select-only' | 'tpcb'
export type Mode = 'simple' | 'extended' | 'prepared'

export interface Scenario {
  script: Script
  mode: Mode
  clients: number
}

export function scenarioId(s: Scenario): string {
  return `${s.script}/${s.mode}/c${s.clients}`
}

export function parseScenarioId(id: string): Scenario {
  const m = /^(select-only|tpcb)\/(simple|extended|prepared)\/c?(\d+)$/.exec(id)
  if (!m) throw new Error(`bad scenario "${id}" (expected e.g. select-only/prepared/c8 or tpcb/simple/c64)`)
  return { script: m[1] as Script, mode: m[2] as Mode, clients: Number(m[3]) }
}

export interface PgbenchSummary {
  transactions: number | null
  failed: number | null
  tps: number | null
  latencyAvgMs: number | null
  initialConnectionMs: number | null
}

export function parsePgbench(out: string): PgbenchSummary {
  const num = (re: RegExp): number | null => {
    const m = re.exec(out)
    return m ? Number(m[1]) : null
  }
  return {
    transactions: num(/number of transactions actually processed:\s*(\d+)/),
    failed: num(/number of failed transactions:\s*(\d+)/),
    tps: num(/^tps = ([\d.]+)/m),
    latencyAvgMs: num(/latency average = ([\d.]+) ms/),
    initialConnectionMs: num(/initial connection time = ([\d.]+) ms/),
  }
}

export interface PgbenchTarget {
  port: number
  user: string
  database: string
  password: string
  sslmode: 'disable' | 'require'
}

/**
 * pgbench's -T deadline counts from before the clients connect, and opening
 * 64 sessions (fork + SCRAM upstream, and for the proxies TLS + token
 * verification too) takes seconds on a loaded 2-core machine: many-client
 * scenarios get extra time so that the measured window (pgbench's tps
 * excludes the initial connection time) stays about durationS long.
 */
export function connectAllowanceS(s: Scenario): number {
  return s.clients > 8 ? Math.ceil(s.clients / 8) : 0
}

export function pgbenchArgs(s: Scenario, durationS: number): string[] {
  const threads = Math.min(s.clients, 2)
  return [
    '-n', // no vacuum through the target: the runner vacuums directly before TPC-B runs
    '-T', String(durationS + connectAllowanceS(s)),
    '-c', String(s.clients),
    '-j', String(threads),
    '-M', s.mode,
    ...(s.script === 'select-only' ? ['-S'] : []),
  ]
}

export async function runPgbench(
  pgbench: string,
  s: Scenario,
  durationS: number,
  t: PgbenchTarget,
  onSpawn?: (pid: number) => void,
): Promise<{ code: number | null; stdout: string; stderr: string; args: string[] }> {
  const args = [...pgbenchArgs(s, durationS), '-h', '127.0.0.1', '-p', String(t.port), '-U', t.user, t.database]
  const env: NodeJS.ProcessEnv = { ...process.env, PGPASSWORD: t.password, PGSSLMODE: t.sslmode, PGCONNECT_TIMEOUT: '30' }
  for (const k of ['PGHOST', 'PGPORT', 'PGUSER', 'PGDATABASE', 'PGSERVICE', 'PGOPTIONS', 'PGAPPNAME']) delete env[k]
  const r = await runCapture('pgbench', pgbench, args, { env, timeoutMs: (durationS + connectAllowanceS(s) + 120) * 1000, onSpawn })
  return { code: r.code, stdout: r.stdout, stderr: r.stderr, args }
}
