/**
 * Issue 15 item 2: auth.failure noise is summarized, not multiplied. A
 * driver retrying a refused connection in a loop: per (source address,
 * reason, issuer, subject) the first `keep_first` failures of a window are
 * records, the rest one summary record (count, first_time, last_time) when
 * the window closes or the proxy stops; records plus summary counts equal
 * the attempts exactly, and pgwitness_auth_failures_total counts every one.
 */
import pg from 'pg'
import t from 'tap'
import { readValidAuditLog, recordsOfType, waitForRecords, type RecordOfType } from '../helpers/audit.js'
import { parseExposition, sum } from '../helpers/metrics.js'
import { startFixture } from '../helpers/proxy.js'

const WINDOW_MS = 4000
const KEEP = 3

// audit/audit.jsonl next to the config: the fixture's auditPath.
const f = await startFixture({
  auditYaml: `audit:
  log: audit/audit.jsonl
  durability: batched
  fsync_interval: 20ms
  auth_failure_summary: { window: ${WINDOW_MS}ms, keep_first: ${KEEP} }`,
})
let stopped = false
t.teardown(() => (stopped ? undefined : f.stop()))

type Failure = RecordOfType<'auth.failure'>

/** One refused attempt as node-postgres makes it: a token whose subject no policy rule admits (28000). */
async function refusedAttempt(subject: string): Promise<void> {
  const c = new pg.Client({
    host: '127.0.0.1', port: f.proxy.port, user: 'app', database: 'appdb', application_name: 'retry-loop',
    password: await f.token({ subject }), ssl: { rejectUnauthorized: false },
  })
  c.on('error', () => undefined)
  const err = await c.connect().then(() => null, (e: Error & { code?: string }) => e)
  if (err?.code !== '28000') throw new Error(`expected a refusal 28000, got ${err?.code ?? 'a session'}`)
}

const failuresOf = (recs: ReturnType<typeof readValidAuditLog>, subject: string): Failure[] =>
  recordsOfType(recs, 'auth.failure').filter((r) => r.identity?.subject === subject)
const counted = (fs: Failure[]) => fs.reduce((n, r) => n + (r.count ?? 1), 0)
const failureMetric = async () => sum(parseExposition(await f.proxy.metrics.exposition()), 'pgwitness_auth_failures_total', { reason: 'policy_no_match' })

t.test('a retry loop: the first failures as records, then one summary when the window closes', async (t) => {
  const loop = 'spiffe://elsewhere/loop'
  const other = 'spiffe://elsewhere/other'
  const started = Date.now()
  for (let i = 0; i < 25; i++) await refusedAttempt(loop)
  for (let i = 0; i < KEEP + 1; i++) await refusedAttempt(other)
  t.ok(Date.now() - started < WINDOW_MS, `the attempts fit in one window (${Date.now() - started} ms)`)
  t.equal(await failureMetric(), 25 + KEEP + 1, 'pgwitness_auth_failures_total counts every failure at once')

  let recs = readValidAuditLog(f.auditPath)
  t.equal(failuresOf(recs, loop).length, KEEP, `before the window closes: the first ${KEEP} as records, the rest counted`)
  t.ok(failuresOf(recs, loop).every((r) => r.count === undefined), 'they are ordinary records (no count)')

  recs = await waitForRecords(f.auditPath, (rs) => failuresOf(rs, loop).length === KEEP + 1 && failuresOf(rs, other).length === KEEP + 1, 3 * WINDOW_MS)
  const loopRecs = failuresOf(recs, loop)
  const summary = loopRecs.at(-1)!
  t.match(summary, {
    reason: 'policy_no_match', method: 'jwt', count: 25 - KEEP,
    identity: { subject: loop }, requested: { user: 'app', database: 'appdb', application_name: 'retry-loop' },
    connection: { client: { address: '127.0.0.1' } },
  }, 'one summary for the rest of the window: count, and the last attempt\'s fields')
  t.match(summary.detail, new RegExp(`^${25 - KEEP} more failures \\(policy_no_match\\) from 127\\.0\\.0\\.1 between `))
  t.ok(summary.first_time! > loopRecs[KEEP - 1]!.time && summary.first_time! <= summary.last_time!, 'first_time after the last record, last_time after first_time')
  t.ok(summary.time >= summary.last_time!, 'written after the last failure it counts')
  t.equal(counted(loopRecs), 25, 'records + summary count = every attempt')
  t.match(failuresOf(recs, other).at(-1), { count: 1 }, 'another subject is another key, with its own summary')
  t.equal(counted(failuresOf(recs, other)), KEEP + 1)
  // The key's window is closed: the next failure is a record again.
  await refusedAttempt(loop)
  recs = await waitForRecords(f.auditPath, (rs) => failuresOf(rs, loop).length === KEEP + 2)
  t.equal(failuresOf(recs, loop).at(-1)!.count, undefined, 'a new window starts with records')
})

t.test('at proxy stop, the open windows are summarized before proxy.stop: nothing dropped without being counted', async (t) => {
  const subject = 'spiffe://elsewhere/at-stop'
  for (let i = 0; i < 12; i++) await refusedAttempt(subject)
  t.equal(failuresOf(readValidAuditLog(f.auditPath), subject).length, KEEP, 'the window is still open')
  stopped = true
  await f.stop()
  const recs = readValidAuditLog(f.auditPath)
  const mine = failuresOf(recs, subject)
  t.equal(mine.length, KEEP + 1)
  t.match(mine.at(-1), { count: 12 - KEEP })
  t.equal(counted(mine), 12, 'exact at stop')
  t.ok(recs.indexOf(mine.at(-1)!) < recs.findIndex((r) => r.type === 'proxy.stop'), 'the summary precedes proxy.stop')
  const all = recordsOfType(recs, 'auth.failure')
  t.equal(counted(all), 25 + KEEP + 1 + 1 + 12, 'over the whole log: records + summary counts = refused attempts')
})
