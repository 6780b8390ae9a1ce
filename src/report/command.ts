/** `pgwitness report`: its flags, and the run that writes the report directory. */
import path from 'node:path'
import { parseArgs } from 'node:util'
import { CheckpointKeyError, loadCheckpointPublicKeyFiles } from '../ledger/checkpoint.js'
import { loadConfig } from '../config/load.js'
import { loadThresholds, parseHours, parseTime, ReportOptionError, type FindingThresholds } from './options.js'
import { writeReport } from './write-report.js'

export const REPORT_HELP = `Usage: pgwitness report [--out DIR] [--public-key K]... [--since T] [--until T]
                        [--identity GLOB] [--session ID] [--config FILE]
                        [--findings FILE.yaml] [--sensitive GLOB]... [--bulk-rows N]
                        [--working-hours HH:MM-HH:MM] [--auth-failures N] FILE...

Reads an audit log (one FILE: it and its rotated files, in chain order;
several: in the order given), verifies it as 'pgwitness verify' does, and
writes into DIR (default: report): report.html (one self-contained page:
integrity verdict, findings, identity inventory, access review, privileged
activity, failed logins, session timelines), report.json (the same for
machines) and CSV files (privileged.csv, failed-logins.csv, statements.csv,
sessions.csv). A broken log still gets a report, marked broken in every
section. It only reads the log.
  --public-key K       checkpoint verification key (repeatable), as for verify
  --since T, --until T the period (RFC 3339); records before --since are the
                       baseline for "new identity"
  --identity GLOB      only identities whose subject or SPIFFE id matches
  --session ID         only this session (its full timeline)
  --config FILE        the proxy's config: grants its policy allows but that
                       were not used are listed as candidates for removal
  --findings FILE      thresholds in YAML (auth_failures, auth_window_minutes,
                       bulk_rows, working_hours {hours, days, utc_offset},
                       sensitive, ticket_claims); flags override it
  --sensitive GLOB     sensitive objects, e.g. 'pii.*' (repeatable)
  --bulk-rows N        a read returning more rows is a bulk export (10000)
  --working-hours R    e.g. 08:00-18:00 (UTC, Monday to Friday unless the file says)
  --auth-failures N    failed logins from one source or subject within
                       auth_window_minutes that make a finding (5)
Exit 0 when the log is intact, 1 when the report was written for a broken
log, 2 on bad arguments or unreadable input.`

export async function reportCommand(args: string[]): Promise<number> {
  let parsed
  try {
    parsed = parseReportArgs(args)
  } catch (err) {
    console.error(`pgwitness report: ${(err as Error).message}\n\n${REPORT_HELP}`)
    return 2
  }
  const { values, positionals } = parsed
  if (positionals.length === 0) {
    console.error(REPORT_HELP)
    return 2
  }
  try {
    const thresholds = withFlags(loadThresholds(values.findings ?? null), values)
    const config = values.config === undefined ? null : await loadConfig(values.config)
    const report = await writeReport({
      files: positionals,
      outDir: path.resolve(values.out),
      publicKeys: loadCheckpointPublicKeyFiles(values['public-key']),
      scope: { since: parseTime('since', values.since), until: parseTime('until', values.until), identity: values.identity ?? null, session: values.session ?? null },
      thresholds,
      policy: config?.policy ?? null,
      configSource: config?.source ?? null,
    })
    const g = report.integrity
    const out = g.verdict === 'intact' ? console.log : console.error
    out(`report written to ${values.out}: ${report.scope.records_in_period} record(s) in the period, ${report.findings.findings.length} finding(s); log ${g.verdict.toUpperCase()}` +
      (g.first_problem ? ` (${g.first_problem.file}:${g.first_problem.line}: ${g.first_problem.reason.replaceAll('_', ' ')})` : ''))
    if (g.first_problem?.reason === 'unreadable') return 2
    return g.verdict === 'intact' ? 0 : 1
  } catch (err) {
    if (err instanceof ReportOptionError) {
      console.error(err.message)
      return 2
    }
    if (err instanceof CheckpointKeyError) {
      console.error(`pgwitness report: ${err.message}`)
      return 2
    }
    throw err
  }
}

function parseReportArgs(args: string[]) {
  return parseArgs({
    args,
    allowPositionals: true,
    options: {
      out: { type: 'string', default: 'report' },
      'public-key': { type: 'string', multiple: true, default: [] },
      since: { type: 'string' },
      until: { type: 'string' },
      identity: { type: 'string' },
      session: { type: 'string' },
      config: { type: 'string' },
      findings: { type: 'string' },
      sensitive: { type: 'string', multiple: true, default: [] },
      'bulk-rows': { type: 'string' },
      'working-hours': { type: 'string' },
      'auth-failures': { type: 'string' },
    },
  })
}

function withFlags(base: FindingThresholds, v: { sensitive: string[]; 'bulk-rows'?: string; 'working-hours'?: string; 'auth-failures'?: string }): FindingThresholds {
  const t = { ...base, workingHours: { ...base.workingHours } }
  const count = (flag: string, s: string) => {
    if (!/^\d+$/.test(s) || Number(s) <= 0) throw new ReportOptionError(`report: --${flag}: expected a positive integer, got ${JSON.stringify(s)}`)
    return Number(s)
  }
  if (v.sensitive.length > 0) t.sensitive = [...t.sensitive, ...v.sensitive]
  if (v['bulk-rows'] !== undefined) t.bulkRows = count('bulk-rows', v['bulk-rows'])
  if (v['auth-failures'] !== undefined) t.authFailures = count('auth-failures', v['auth-failures'])
  if (v['working-hours'] !== undefined) Object.assign(t.workingHours, parseHours('working-hours', v['working-hours']))
  return t
}
