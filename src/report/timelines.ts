/**
 * Session timelines: each session's statements in order (time, class,
 * objects, outcome, rows, duration) and its transaction ends. Every event in
 * the period is a row of statements.csv and every session a row of
 * sessions.csv; the page keeps full timelines (up to EVENTS_CAP events) for
 * at most SESSIONS_KEPT sessions — the one asked for with --session, else the
 * first sessions of the period (the others are in the CSV files).
 */
import { CsvWriter } from './csv.js'
import { identityKey, isPrivileged, objectsOf, rowsOf, type SeenRecord, type Section } from './record-facts.js'

export const SESSIONS_KEPT = 50
export const EVENTS_CAP = 1_000

export interface TimelineEvent {
  seq: number
  time: string
  /** ms since the session started (for the drawing). */
  offset_ms: number
  kind: 'statement' | 'transaction.end' | 'session.start' | 'session.end'
  statement_seq: number | null
  classes: string[]
  command: string
  objects: string
  status: string
  rows: number | null
  duration_us: number | null
  privileged: boolean
  text: string | null
  intact: boolean
}

export interface SessionSummary {
  session: string
  identity: string
  role: string
  database: string
  source: string | null
  application_name: string | null
  started_at: string
  ended_at: string | null
  end_reason: string | null
  statements: number
  errors: number
  denied: number
  privileged: number
  intact: boolean
}

export interface SessionTimeline extends SessionSummary {
  events: TimelineEvent[]
  events_not_listed: number
}

export const STATEMENTS_CSV_HEADER = ['seq', 'time', 'session', 'identity', 'kind', 'statement_seq', 'classes', 'command', 'objects', 'status', 'rows', 'duration_us', 'intact', 'text']
export const SESSIONS_CSV_HEADER = ['session', 'identity', 'role', 'database', 'source_address', 'application_name', 'started_at', 'ended_at', 'end_reason', 'statements', 'errors', 'denied', 'privileged', 'intact']

interface Open extends SessionSummary {
  startMs: number
  timeline: SessionTimeline | null
}

export class SessionTimelines implements Section {
  private readonly open = new Map<string, Open>()
  readonly kept: SessionTimeline[] = []
  sessions = 0

  constructor(private readonly statementsCsv: CsvWriter, private readonly sessionsCsv: CsvWriter, private readonly only: string | null) {}

  add(r: SeenRecord): void {
    const rec = r.rec
    if (rec.type !== 'session.start' && rec.type !== 'statement' && rec.type !== 'transaction.end' && rec.type !== 'session.end') return
    const id = rec.session.id
    let s = this.open.get(id)
    if (s === undefined) {
      // A session that began before the period (or whose start is missing): it starts here.
      s = {
        session: id, identity: identityKey(rec.identity)!, role: rec.upstream.role, database: rec.upstream.database,
        source: rec.connection?.client.address ?? null, application_name: rec.session.application_name, started_at: rec.session.started_at,
        ended_at: null, end_reason: null, statements: 0, errors: 0, denied: 0, privileged: 0, intact: true,
        startMs: Date.parse(rec.session.started_at) || r.ms, timeline: null,
      }
      this.open.set(id, s)
      this.sessions++
      if (this.only !== null || this.kept.length < SESSIONS_KEPT) this.keep(s)
    }
    if (!r.intact) s.intact = false
    if (rec.type === 'statement') {
      s.statements++
      if (rec.outcome.status === 'error') s.errors++
      if (rec.outcome.status === 'denied') s.denied++
      if (isPrivileged(rec)) s.privileged++
      const st = rec.statement
      this.statementsCsv.row([rec.chain.seq, rec.time, id, s.identity, 'statement', st.seq, st.classes.join(' '), st.command, objectsOf(rec), rec.outcome.status, rowsOf(rec), rec.outcome.duration_us, r.intact, st.text])
    } else {
      this.statementsCsv.row([rec.chain.seq, rec.time, id, s.identity, rec.type, null, '', rec.type === 'transaction.end' ? `transaction ${rec.transaction.number}` : '', '', rec.type === 'transaction.end' ? rec.transaction.outcome : rec.type === 'session.end' ? rec.reason : 'ok', null, null, r.intact, null])
    }
    // Only the sessions shown on the page keep their events.
    if (s.timeline !== null) {
      if (s.timeline.events.length < EVENTS_CAP) s.timeline.events.push(this.event(r, s))
      else s.timeline.events_not_listed++
    }
    if (rec.type === 'session.end') {
      s.ended_at = rec.time
      s.end_reason = rec.reason
      this.close(s)
    }
  }

  private event(r: SeenRecord, s: Open): TimelineEvent {
    const rec = r.rec
    const base = { seq: rec.chain.seq, time: rec.time, offset_ms: Math.max(0, r.ms - s.startMs), intact: r.intact }
    if (rec.type === 'statement') {
      return {
        ...base, kind: 'statement', statement_seq: rec.statement.seq, classes: rec.statement.classes, command: rec.statement.command, objects: objectsOf(rec),
        status: rec.outcome.status, rows: rowsOf(rec), duration_us: rec.outcome.duration_us, privileged: isPrivileged(rec), text: rec.statement.text,
      }
    }
    const none = { statement_seq: null, classes: [], objects: '', rows: null, duration_us: null, privileged: false, text: null }
    if (rec.type === 'transaction.end') {
      const t = rec.transaction
      return { ...base, ...none, kind: 'transaction.end', command: `transaction ${t.number} (statements ${t.first_seq}-${t.last_seq})`, status: t.outcome, text: t.cause }
    }
    if (rec.type === 'session.end') return { ...base, ...none, kind: 'session.end', command: 'session end', status: rec.type === 'session.end' ? rec.reason : '' }
    return { ...base, ...none, kind: 'session.start', command: 'session start', status: 'ok' }
  }

  private keep(s: Open): void {
    s.timeline = { ...summaryOf(s), events: [], events_not_listed: 0 }
    this.kept.push(s.timeline)
  }

  private close(s: Open): void {
    this.open.delete(s.session)
    if (s.timeline !== null) Object.assign(s.timeline, summaryOf(s))
    const x = summaryOf(s)
    this.sessionsCsv.row([x.session, x.identity, x.role, x.database, x.source, x.application_name, x.started_at, x.ended_at, x.end_reason, x.statements, x.errors, x.denied, x.privileged, x.intact])
  }

  /** At the end of the log: sessions still open (running, or cut off). */
  finish(): void {
    for (const s of [...this.open.values()]) this.close(s)
    this.kept.sort((a, b) => a.started_at.localeCompare(b.started_at))
  }
}

function summaryOf(s: Open): SessionSummary {
  return {
    session: s.session, identity: s.identity, role: s.role, database: s.database, source: s.source, application_name: s.application_name,
    started_at: s.started_at, ended_at: s.ended_at, end_reason: s.end_reason, statements: s.statements, errors: s.errors, denied: s.denied,
    privileged: s.privileged, intact: s.intact,
  }
}
