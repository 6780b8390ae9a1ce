/**
 * `pgwitness report`: read and verify the log once, feed every record of the
 * period to the sections, and assemble report.json's content. The CSV tables
 * are written while the log streams; memory holds only aggregates and capped
 * row lists.
 */
import type { KeyObject } from 'node:crypto'
import path from 'node:path'
import { formatSummary } from '../ledger/verify.js'
import type { AuditRecord } from '../evidence/types.js'
import type { PolicyRule } from '../config/types.js'
import { globMatches } from '../policy/glob.js'
import { VERSION } from '../version.js'
import { AccessMatrix } from './access.js'
import { CsvWriter } from './csv.js'
import { FailedLogins, FAILURE_CSV_HEADER } from './failures.js'
import { Findings } from './findings.js'
import { Inventory } from './inventory.js'
import { describeHours, type FindingThresholds, type ReportScope } from './options.js'
import { PrivilegedActivity, PRIVILEGED_CSV_HEADER } from './privileged.js'
import { readLog } from './read-log.js'
import { identityKey, iso, type SeenRecord } from './record-facts.js'
import type { ReportJson, SectionIntegrity } from './report-json.js'
import { TimeSeries } from './time-series.js'
import { SESSIONS_CSV_HEADER, SessionTimelines, STATEMENTS_CSV_HEADER } from './timelines.js'

export interface ReportInput {
  files: string[]
  outDir: string
  publicKeys: ReadonlyMap<string, KeyObject> | null
  scope: ReportScope
  thresholds: FindingThresholds
  /** Policy rules from --config (for unused grants); null without it. */
  policy: readonly PolicyRule[] | null
  configSource: string | null
}

export const CSV_FILES = {
  privileged: 'privileged.csv',
  failedLogins: 'failed-logins.csv',
  statements: 'statements.csv',
  sessions: 'sessions.csv',
} as const

export async function buildReport(input: ReportInput): Promise<ReportJson> {
  const { scope, thresholds } = input
  const csv = (name: string, header: readonly string[]) => new CsvWriter(path.join(input.outDir, name), header)
  const privilegedCsv = csv(CSV_FILES.privileged, PRIVILEGED_CSV_HEADER)
  const failuresCsv = csv(CSV_FILES.failedLogins, FAILURE_CSV_HEADER)
  const statementsCsv = csv(CSV_FILES.statements, STATEMENTS_CSV_HEADER)
  const sessionsCsv = csv(CSV_FILES.sessions, SESSIONS_CSV_HEADER)

  const inventory = new Inventory()
  const access = new AccessMatrix()
  const privileged = new PrivilegedActivity(thresholds.ticketClaims, privilegedCsv)
  const failures = new FailedLogins(failuresCsv)
  const timelines = new SessionTimelines(statementsCsv, sessionsCsv, scope.session)
  const findings = new Findings(thresholds)
  const activity = new TimeSeries()
  const sections = [inventory, access, privileged, failures, timelines, findings]

  let inPeriod = 0
  let firstMs: number | null = null
  let lastMs: number | null = null
  let malformed = 0
  const keyIds = new Set<string>()

  const onRecord = (rec: AuditRecord, intact: boolean) => {
    if (rec.type === 'checkpoint') {
      if (typeof rec.checkpoint?.key_id === 'string' && keyIds.size < 100) keyIds.add(rec.checkpoint.key_id)
      return
    }
    const ms = Date.parse(rec.time)
    if (Number.isNaN(ms) || !inScope(rec, scope)) return
    const r: SeenRecord = { rec, ms, intact }
    try {
      if (scope.since !== null && ms < scope.since) return findings.addBefore(r)
      if (scope.until !== null && ms > scope.until) return
      inPeriod++
      firstMs ??= ms
      lastMs = ms
      for (const s of sections) s.add(r)
      if (rec.type === 'statement') activity.add(identityKey(rec.identity)!, ms)
    } catch {
      // A record past the first problem that is not shaped like its type (edited): counted, not reported.
      malformed++
    }
  }
  const read = await readLog(input.files, input.publicKeys, onRecord)
  privileged.finish()
  timelines.finish()
  for (const w of [privilegedCsv, failuresCsv, statementsCsv, sessionsCsv]) w.close()

  const v = read.verify
  const broken = !v.ok
  const integrityOf = (unverifiedRows: number): SectionIntegrity => ({
    verdict: broken ? 'broken' : 'intact',
    unverified_rows: unverifiedRows,
  })
  const inventoryRows = inventory.toJSON()
  const accessRows = access.toJSON()
  const findingRows = findings.toJSON()
  const countBroken = (rows: Array<{ intact: boolean }>) => rows.filter((x) => !x.intact).length
  return {
    report: 'pgwitness.report/v1',
    generated_at: new Date().toISOString(),
    pgwitness_version: VERSION,
    scope: {
      since: iso(scope.since),
      until: iso(scope.until),
      identity: scope.identity,
      session: scope.session,
      first_record_in_period: iso(firstMs),
      last_record_in_period: iso(lastMs),
      records_in_period: inPeriod,
    },
    integrity: {
      verdict: broken ? 'broken' : 'intact',
      first_problem: v.failure,
      summary: formatSummary(v),
      records_verified: v.records,
      records_not_verified: read.unverifiedRecords,
      unreadable_lines: read.unreadableLines + malformed,
      first_seq: v.firstSeq,
      last_seq: v.lastSeq,
      checkpoints: v.checkpoints,
      signatures_checked: v.signaturesChecked,
      signed_through_seq: v.signedThrough,
      signing_key_ids: [...keyIds],
      unsigned_tail: v.unsignedTail,
      files: v.files.map((f) => ({ path: f.path, records_intact: f.records, first_seq: f.firstSeq, last_seq: f.lastSeq })),
      files_given: read.files,
    },
    thresholds: {
      auth_failures: thresholds.authFailures,
      auth_window_minutes: thresholds.authWindowMinutes,
      bulk_rows: thresholds.bulkRows,
      working_hours: describeHours(thresholds.workingHours),
      sensitive: thresholds.sensitive,
      ticket_claims: thresholds.ticketClaims,
    },
    inventory: { integrity: integrityOf(countBroken(inventoryRows)), identities: inventoryRows },
    access: {
      integrity: integrityOf(countBroken(accessRows)),
      rows: accessRows,
      rows_not_listed: access.cellsDropped,
      config: input.configSource,
      unused_grants: input.policy === null ? null : access.unusedGrants(input.policy),
    },
    privileged: { integrity: integrityOf(countBroken(privileged.rows)), total: privileged.total, rows: privileged.rows, csv: CSV_FILES.privileged },
    failed_logins: {
      integrity: integrityOf(countBroken(failures.rows)),
      total: failures.total,
      ...failures.summary(),
      over_time: failures.overTime.toJSON(),
      rows: failures.rows,
      csv: CSV_FILES.failedLogins,
    },
    timelines: {
      integrity: integrityOf(timelines.kept.reduce((n, s) => n + countBroken(s.events), 0)),
      sessions: timelines.sessions,
      shown: timelines.kept,
      csv: { statements: CSV_FILES.statements, sessions: CSV_FILES.sessions },
    },
    findings: {
      integrity: integrityOf(countBroken(findingRows)),
      new_identity_baseline: findings.hasBaseline ? 'identities seen in the log before the period' : null,
      findings: findingRows,
      not_listed: findings.dropped,
    },
    activity: { integrity: integrityOf(0), statements_over_time: activity.toJSON() },
  }
}

function inScope(rec: AuditRecord, scope: ReportScope): boolean {
  if (scope.session !== null && !('session' in rec && rec.session?.id === scope.session)) return false
  if (scope.identity !== null) {
    const id = 'identity' in rec ? rec.identity : null
    if (!id) return false
    const names = [id.subject, id.spiffe_id].filter((x): x is string => typeof x === 'string')
    if (!names.some((n) => globMatches(scope.identity!, n))) return false
  }
  return true
}
