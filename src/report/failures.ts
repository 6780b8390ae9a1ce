/**
 * Failed logins (auth.failure records): counts by reason, by identity or
 * subject when one was established, and by source address, over time; each
 * failure is a row of auth-failures.csv, the first ROWS_CAP kept for the page.
 */
import { CsvWriter } from './csv.js'
import { bump, identityKey, pushCapped, topEntries, type SeenRecord, type Section } from './record-facts.js'
import { TimeSeries } from './time-series.js'

const KEYS_CAP = 10_000
export const FAILURE_ROWS_CAP = 2_000

export interface FailureRow {
  seq: number
  time: string
  reason: string
  method: string
  subject: string | null
  source: string | null
  user: string | null
  database: string | null
  detail: string
  /** Summary records stand for repeated identical failures. */
  count: number
  intact: boolean
}

export const FAILURE_CSV_HEADER = ['seq', 'time', 'reason', 'method', 'subject', 'source_address', 'requested_user', 'requested_database', 'count', 'intact', 'detail']

export class FailedLogins implements Section {
  readonly rows: FailureRow[] = []
  total = 0
  readonly byReason = new Map<string, number>()
  readonly bySubject = new Map<string, number>()
  readonly bySource = new Map<string, number>()
  readonly overTime = new TimeSeries()

  constructor(private readonly csv: CsvWriter) {}

  add(r: SeenRecord): void {
    const rec = r.rec
    if (rec.type !== 'auth.failure') return
    const count = rec.count ?? 1
    this.total += count
    const subject = identityKey(rec.identity)
    const source = rec.connection?.client.address ?? null
    bump(this.byReason, rec.reason, KEYS_CAP, count)
    bump(this.bySubject, subject ?? '(not established)', KEYS_CAP, count)
    bump(this.bySource, source ?? '(unknown)', KEYS_CAP, count)
    for (let i = 0; i < Math.min(count, 1000); i++) this.overTime.add(rec.reason, r.ms)
    const row: FailureRow = {
      seq: rec.chain.seq, time: rec.time, reason: rec.reason, method: rec.method, subject, source,
      user: rec.requested.user, database: rec.requested.database, detail: rec.detail, count, intact: r.intact,
    }
    pushCapped(this.rows, row, FAILURE_ROWS_CAP)
    this.csv.row([row.seq, row.time, row.reason, row.method, row.subject, row.source, row.user, row.database, row.count, row.intact, row.detail])
  }

  summary() {
    return { by_reason: topEntries(this.byReason), by_subject: topEntries(this.bySubject, 100), by_source: topEntries(this.bySource, 100) }
  }
}
