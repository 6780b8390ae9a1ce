/**
 * The oracle harness for tests: a fixture whose cluster logs what the oracle
 * reads, waiting until a session is fully written on both sides, and the
 * tap assertions (one to one, transaction fields, effects).
 */
import type { Test } from 'tap'
import { startFixture, type Fixture, type FixtureOptions } from '../proxy.js'
import { entriesBySession, parseServerLog } from './server-log.js'
import { serverSession, type ServerSession } from './server-statements.js'
import { readSessions, type SessionRecords } from './records.js'
import { matchSession, type MatchedPair } from './match.js'
import { transactionProblems } from './transactions.js'
import { markerProblems } from './markers.js'

/** Server settings the oracle's log parsing relies on (see server-log.ts). */
export const ORACLE_PG_SETTINGS: Record<string, string> = {
  log_statement: 'all',
  log_min_duration_statement: '0',
  log_error_verbosity: 'verbose',
  log_min_error_statement: 'error',
  log_disconnections: 'on',
  max_prepared_transactions: '8',
}

/** A fixture for oracle workloads, with table `marks(m text)` owned by app. */
export async function oracleFixture(o: FixtureOptions = {}): Promise<Fixture> {
  const f = await startFixture({ ...o, pg: { ...o.pg, settings: { ...ORACLE_PG_SETTINGS, ...o.pg?.settings } } })
  await f.pg.query('create table marks(m text); alter table marks owner to app', [], 'appdb')
  return f
}

export interface CheckedSession {
  records: SessionRecords
  server: ServerSession
}

/**
 * Wait until each governed session named by application_name has its
 * session.end record and the server logged its disconnection, then return
 * both sides.
 */
export async function settledSessions(f: Fixture, appNames: string[], timeoutMs = 30_000): Promise<CheckedSession[]> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const sessions = [...readSessions(f.auditPath).values()]
    const bySession = entriesBySession(parseServerLog(f.pg.readLog()))
    const out: CheckedSession[] = []
    const waiting: string[] = []
    for (const app of appNames) {
      const rec = sessions.find((s) => s.applicationName === app)
      const server = rec ? serverSession(rec.serverSessionId, bySession.get(rec.serverSessionId) ?? []) : null
      if (!rec || !rec.ended || !server?.disconnected) waiting.push(app)
      else out.push({ records: rec, server })
    }
    if (waiting.length === 0) return out
    if (Date.now() > deadline) throw new Error(`oracle: sessions not settled after ${timeoutMs} ms: ${waiting.join(', ')}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Assert one to one for each session; returns the matched pairs by application_name. */
export function assertOneToOne(t: Test, sessions: CheckedSession[]): Map<string, MatchedPair[]> {
  const out = new Map<string, MatchedPair[]>()
  for (const s of sessions) {
    const { pairs, mismatch } = matchSession(s.server.statements, s.records.statements)
    const name = `${s.records.applicationName} (%c ${s.server.sessionId})`
    if (mismatch === null) t.pass(`${name}: server log and statement records match one to one (${pairs.length} statements)`)
    else t.fail(`${name}: server log and statement records differ\n${mismatch}`)
    out.set(s.records.applicationName ?? '', pairs)
  }
  return out
}

/** Assert the transaction fields of each session's records. */
export function assertTransactions(t: Test, sessions: CheckedSession[]): void {
  for (const s of sessions) {
    const problems = transactionProblems(s.records)
    if (problems.length === 0) t.pass(`${s.records.applicationName}: every statement has its transaction and every transaction its end`)
    else t.fail(`${s.records.applicationName}: transaction records incomplete\n  ${problems.join('\n  ')}`)
  }
}

/** Assert that marker rows with `prefix` exist exactly as the records' transaction outcomes say. */
export async function assertEffects(t: Test, f: Fixture, sessions: CheckedSession[], prefix: string): Promise<void> {
  const rows = (await f.pg.query('select m from marks where m like $1', [`${prefix}%`], 'appdb')) as Array<{ m: string }>
  const all = readSessions(f.auditPath).values()
  const problems = markerProblems(sessions.map((s) => s.records), all, new Set(rows.map((r) => r.m)), prefix)
  if (problems.length === 0) t.pass(`${prefix}: rows in the database agree with the recorded transaction outcomes (${rows.length} rows)`)
  else t.fail(`${prefix}: rows in the database disagree with the recorded transaction outcomes\n  ${problems.join('\n  ')}`)
}
