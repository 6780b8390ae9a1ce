/** Medians, ratios and the Markdown table. */

/** CPU figures over the steady part of a run (connection setup and teardown left out). */
export interface SteadyWindow {
  fromMs: number
  toMs: number
  /** tps × window length */
  transactions: number
  proxyPer1k: number | null
  /** the user-mode part of proxyPer1k (the rest is kernel: syscalls, loopback TCP) */
  proxyUserPer1k: number | null
  postgresPer1k: number
  pgbenchPer1k: number
  machineBusyShare: number
  foreignShare: number
}

export interface RunRecord {
  scenario: string
  target: string
  round: number
  startedAt: string
  wallS: number
  ok: boolean
  error: string | null
  pgbenchArgs: string[]
  tps: number | null
  transactions: number | null
  failed: number | null
  latencyAvgMs: number | null
  initialConnectionMs: number | null
  /** CPU seconds used during the run */
  cpu: {
    postgres: number
    pgbench: number
    /** the proxy process of this target (null for direct) */
    proxy: number | null
    /** every proxy process that was up (idle ones too), by target name */
    allProxies: Record<string, number>
    runner: number
    machineBusy: number
    machineSteal: number
    /** irq + softirq seconds (loopback TCP processing; may belong to no process) */
    machineIrq: number
    machineTotal: number
    /** machineBusy minus irq/softirq minus everything this benchmark started: load from other processes on the machine */
    foreign: number
  }
  /** seconds spent waiting for a quiet machine before the run, and the foreign CPU share when it started */
  quietWait: { waitedS: number; foreignShare: number } | null
  /** null when the run failed or was too short to cut a window */
  steady: SteadyWindow | null
  proxyMemKiB: { rss: number; hwm: number } | null
  audit: { records: number; bytes: number } | null
}

export function median(xs: number[]): number | null {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return null
  const mid = Math.floor(v.length / 2)
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2
}

export interface SummaryRow {
  scenario: string
  target: string
  rounds: number
  okRounds: number
  tpsPerRound: (number | null)[]
  medianTps: number | null
  ratioDirect: number | null
  ratioPgbouncer: number | null
  /** rounds whose CPU figures come from the steady window (the others: whole run) */
  steadyRounds: number
  /** median over rounds of CPU seconds per 1,000 transactions (steady window) */
  proxyCpuPer1k: number | null
  /** user-mode part of proxyCpuPer1k (steady windows only) */
  proxyUserCpuPer1k: number | null
  postgresCpuPer1k: number | null
  pgbenchCpuPer1k: number | null
  /** the same over the whole run, connection setup and teardown included */
  wholeRun: { proxyCpuPer1k: number | null; postgresCpuPer1k: number | null; pgbenchCpuPer1k: number | null }
  medianMachineBusy: number | null
  /** median share of all cores used by processes this benchmark did not start */
  medianForeignShare: number | null
  medianLatencyAvgMs: number | null
  auditRecordsPerTx: number | null
  auditRecordsPerS: number | null
}

export function summarize(runs: RunRecord[], scenarios: string[], targets: string[]): SummaryRow[] {
  const rows: SummaryRow[] = []
  for (const sc of scenarios) {
    const med = new Map<string, number | null>()
    for (const t of targets) {
      const rs = runs.filter((r) => r.scenario === sc && r.target === t)
      med.set(t, median(rs.filter((r) => r.ok).map((r) => r.tps ?? NaN)))
    }
    for (const t of targets) {
      const rs = runs.filter((r) => r.scenario === sc && r.target === t)
      if (rs.length === 0) continue
      const ok = rs.filter((r) => r.ok && r.transactions && r.transactions > 0)
      // whole run (connection setup and teardown included)
      const per1k = (f: (r: RunRecord) => number | null): number | null =>
        median(ok.map((r) => {
          const v = f(r)
          return v === null ? NaN : v / (r.transactions! / 1000)
        }))
      // steady window when there is one, else the whole run
      const steady = (f: (w: SteadyWindow) => number | null, whole: (r: RunRecord) => number | null): number | null =>
        median(ok.map((r) => {
          if (r.steady) return f(r.steady) ?? NaN
          const v = whole(r)
          return v === null ? NaN : v / (r.transactions! / 1000)
        }))
      const m = med.get(t) ?? null
      const d = med.get('direct') ?? null
      const b = med.get('pgbouncer') ?? null
      rows.push({
        scenario: sc,
        target: t,
        rounds: rs.length,
        okRounds: ok.length,
        tpsPerRound: rs.map((r) => (r.ok ? r.tps : null)),
        medianTps: m,
        ratioDirect: m !== null && d ? m / d : null,
        ratioPgbouncer: m !== null && b ? m / b : null,
        steadyRounds: ok.filter((r) => r.steady).length,
        proxyCpuPer1k: steady((w) => w.proxyPer1k, (r) => r.cpu.proxy),
        proxyUserCpuPer1k: median(ok.map((r) => r.steady?.proxyUserPer1k ?? NaN)),
        postgresCpuPer1k: steady((w) => w.postgresPer1k, (r) => r.cpu.postgres),
        pgbenchCpuPer1k: steady((w) => w.pgbenchPer1k, (r) => r.cpu.pgbench),
        wholeRun: {
          proxyCpuPer1k: per1k((r) => r.cpu.proxy),
          postgresCpuPer1k: per1k((r) => r.cpu.postgres),
          pgbenchCpuPer1k: per1k((r) => r.cpu.pgbench),
        },
        medianMachineBusy: median(ok.map((r) => r.steady?.machineBusyShare ?? r.cpu.machineBusy / Math.max(r.cpu.machineTotal, 1e-9))),
        medianForeignShare: median(ok.map((r) => r.steady?.foreignShare ?? r.cpu.foreign / Math.max(r.cpu.machineTotal, 1e-9))),
        medianLatencyAvgMs: median(ok.map((r) => r.latencyAvgMs ?? NaN)),
        auditRecordsPerTx: median(ok.filter((r) => r.audit).map((r) => r.audit!.records / r.transactions!)),
        auditRecordsPerS: median(ok.filter((r) => r.audit).map((r) => r.audit!.records / r.wallS)),
      })
    }
  }
  return rows
}

const f = (v: number | null, digits: number): string => (v === null ? '—' : v.toFixed(digits))
const pct = (v: number | null): string => (v === null ? '—' : `${Math.round(v * 100)}%`)

export function markdownTable(rows: SummaryRow[]): string {
  const out: string[] = []
  out.push(
    '| scenario | target | median TPS | TPS per round | × direct | × pgbouncer | proxy CPU s/1k tx | postgres CPU s/1k tx | pgbench CPU s/1k tx | machine busy | other load | audit rec/tx |',
  )
  out.push('|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|')
  let last = ''
  for (const r of rows) {
    const sc = r.scenario === last ? '' : r.scenario
    const mark = r.steadyRounds < r.okRounds ? '*' : ''
    const usr = r.proxyCpuPer1k && r.proxyUserCpuPer1k !== null ? ` (${pct(r.proxyUserCpuPer1k / r.proxyCpuPer1k)} user)` : ''
    last = r.scenario
    out.push(
      `| ${sc} | ${r.target} | ${f(r.medianTps, 0)} | ${r.tpsPerRound.map((x) => (x === null ? 'err' : x.toFixed(0))).join(' / ')} | ` +
        `${f(r.ratioDirect, 2)} | ${f(r.ratioPgbouncer, 2)} | ${f(r.proxyCpuPer1k, 3)}${mark}${usr} | ${f(r.postgresCpuPer1k, 3)}${mark} | ` +
        `${f(r.pgbenchCpuPer1k, 3)}${mark} | ${pct(r.medianMachineBusy)} | ${pct(r.medianForeignShare)} | ${f(r.auditRecordsPerTx, 2)} |`,
    )
  }
  return out.join('\n')
}
