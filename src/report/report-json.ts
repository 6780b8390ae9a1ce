/** The shape of report.json (`pgwitness.report/v1`): the report's content for machines; report.html renders it. */
import type { VerifyFailure } from '../ledger/verify.js'
import type { AccessJson, UnusedGrantJson } from './access.js'
import type { FailureRow } from './failures.js'
import type { Finding } from './findings.js'
import type { InventoryJson } from './inventory.js'
import type { PrivilegedRow } from './privileged.js'
import type { SeriesJson } from './time-series.js'
import type { SessionTimeline } from './timelines.js'

export interface SectionIntegrity {
  /** `broken` on every section when the log is: records may be missing or altered. */
  verdict: 'intact' | 'broken'
  /** Rows of this section that rest on records past the first problem. */
  unverified_rows: number
}

type Counted = Array<{ key: string; count: number }>

export interface ReportJson {
  report: 'pgwitness.report/v1'
  generated_at: string
  pgwitness_version: string
  scope: {
    since: string | null
    until: string | null
    identity: string | null
    session: string | null
    first_record_in_period: string | null
    last_record_in_period: string | null
    records_in_period: number
  }
  integrity: {
    verdict: 'intact' | 'broken'
    first_problem: VerifyFailure | null
    /** What `pgwitness verify` would print. */
    summary: string
    records_verified: number
    records_not_verified: number
    unreadable_lines: number
    first_seq: number | null
    last_seq: number | null
    checkpoints: number
    signatures_checked: boolean
    signed_through_seq: number | null
    signing_key_ids: string[]
    unsigned_tail: number
    files: Array<{ path: string; records_intact: number; first_seq: number | null; last_seq: number | null }>
    files_given: string[]
  }
  thresholds: {
    auth_failures: number
    auth_window_minutes: number
    bulk_rows: number
    working_hours: string
    sensitive: string[]
    ticket_claims: string[]
  }
  inventory: { integrity: SectionIntegrity; identities: InventoryJson[] }
  access: { integrity: SectionIntegrity; rows: AccessJson[]; rows_not_listed: number; config: string | null; unused_grants: UnusedGrantJson[] | null }
  privileged: { integrity: SectionIntegrity; total: number; rows: PrivilegedRow[]; csv: string }
  failed_logins: {
    integrity: SectionIntegrity
    total: number
    by_reason: Counted
    by_subject: Counted
    by_source: Counted
    over_time: SeriesJson
    rows: FailureRow[]
    csv: string
  }
  timelines: { integrity: SectionIntegrity; sessions: number; shown: SessionTimeline[]; csv: { statements: string; sessions: string } }
  findings: { integrity: SectionIntegrity; new_identity_baseline: string | null; findings: Finding[]; not_listed: number }
  activity: { integrity: SectionIntegrity; statements_over_time: SeriesJson }
}
