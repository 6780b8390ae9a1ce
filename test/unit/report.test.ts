/**
 * The report's sections and findings on generated records: a log sealed by
 * the real AuditChain, read by buildReport (verification included), with
 * thresholds chosen so each finding has a case that raises it and one that
 * does not; and the small parts (time buckets, thresholds file, CSV cells).
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import type { AuditRecordBody, IdentityInfo, StatementRecord, Unchained } from '../../src/evidence/types.js'
import { buildReport } from '../../src/report/build-report.js'
import { csvCell } from '../../src/report/csv.js'
import { DEFAULT_THRESHOLDS, inWorkingHours, parseThresholdsYaml, type FindingThresholds, type ReportScope } from '../../src/report/options.js'
import { TimeSeries } from '../../src/report/time-series.js'
import { parseCsv } from '../helpers/csv.js'
import { identity, seal, session, statement, upstream, connection, proxy } from '../helpers/sample-records.js'

const at = (iso: string) => iso.replace('Z', '000Z')
// Thursday 2026-11-26, 10:00 UTC: inside default working hours; Saturday 2026-11-28 is not.
const WEEKDAY = '2026-11-26T10:00:00.000Z'

function who(subject: string, claims: Record<string, unknown> = {}): IdentityInfo {
  return { ...identity, subject, token_id: `tok-${subject}`, claims }
}

function stmt(time: string, o: { who?: IdentityInfo; sessionId?: string; command?: string; classes?: string[]; rows?: number; objects?: StatementRecord['statement']['objects']; status?: 'ok' | 'denied'; wouldDeny?: boolean; tx?: { number: number; kind: 'explicit' | 'autocommit' }; seq?: number }): AuditRecordBody {
  const s = statement(o.command ?? 'SELECT', `${o.command ?? 'SELECT'} …`, { rows: o.rows ?? 1, status: o.status ?? 'ok' }, o.classes ?? ['READ'])
  const rec: Unchained<StatementRecord> = {
    ...s, time: at(time), identity: o.who ?? identity, session: { ...session, id: o.sessionId ?? session.id },
    statement: { ...s.statement, seq: o.seq ?? 1, objects: o.objects ?? s.statement.objects, transaction: o.tx ?? { number: 1, kind: 'autocommit' } },
  }
  if (o.wouldDeny) rec.policy = { would_deny: [{ rule: 'app', statement_rule: 'no-cards', matched: 'object public.cards' }] }
  return rec as AuditRecordBody
}

function start(time: string, w: IdentityInfo, sessionId: string, address = '10.0.0.7'): AuditRecordBody {
  return { schema: 'pgwitness.audit/v1', id: `s-${sessionId}`, time: at(time), type: 'session.start', proxy, connection: { ...connection, client: { address, port: 5000 } }, session: { ...session, id: sessionId }, identity: w, upstream } as AuditRecordBody
}

function failure(time: string, address: string): AuditRecordBody {
  return {
    schema: 'pgwitness.audit/v1', id: `f-${time}`, time: at(time), type: 'auth.failure', proxy, connection: { ...connection, client: { address, port: 6000 } },
    method: 'jwt', reason: 'token_expired', detail: 'expired', requested: { user: 'app', database: 'appdb', application_name: null }, identity: { subject: 'spiffe://x/y', issuer: 'https://issuer.test' },
  } as AuditRecordBody
}

/** An auth.failure summary (audit.auth_failure_summary): `count` failures between first and last. */
function failureSummary(time: string, address: string, count: number, first: string, last: string): AuditRecordBody {
  return { ...failure(time, address), id: `fs-${time}`, count, first_time: at(first), last_time: at(last) } as AuditRecordBody
}

function txEnd(time: string, sessionId: string, number: number, outcome: 'committed' | 'rolled_back', undone: Array<{ first: number; last: number; savepoint: string }> = []): AuditRecordBody {
  return {
    schema: 'pgwitness.audit/v1', id: `t-${time}`, time: at(time), type: 'transaction.end', proxy, connection, session: { ...session, id: sessionId }, identity, upstream,
    transaction: { number, outcome, cause: outcome === 'committed' ? 'commit' : 'rollback', gid: null, first_seq: 1, last_seq: 3, undone_seqs: undone },
  } as AuditRecordBody
}

async function run(bodies: AuditRecordBody[], scope: Partial<ReportScope> = {}, thresholds: Partial<FindingThresholds> = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgw-report-unit-'))
  const file = path.join(dir, 'audit.jsonl')
  writeFileSync(file, seal(bodies).map((s) => s.line).join('\n') + '\n')
  const report = await buildReport({
    files: [file], outDir: dir, publicKeys: null, policy: null, configSource: null,
    scope: { since: null, until: null, identity: null, session: null, ...scope },
    thresholds: { ...DEFAULT_THRESHOLDS, ...thresholds },
  })
  return { report, dir, file }
}

t.test('findings: each raised by its case and not by the near miss', async (t) => {
  const alice = who('alice', { change_ticket: 'CHG-1' })
  const bob = who('bob')
  const { report } = await run([
    // Repeated failures: 3 within a minute from .9; 3 twenty minutes apart from .8.
    failure('2026-11-26T09:00:00.000Z', '10.0.0.9'), failure('2026-11-26T09:00:20.000Z', '10.0.0.9'), failure('2026-11-26T09:00:40.000Z', '10.0.0.9'),
    failure('2026-11-26T09:00:00.500Z', '10.0.0.8'), failure('2026-11-26T09:20:00.000Z', '10.0.0.8'), failure('2026-11-26T09:40:00.000Z', '10.0.0.8'),
    start(WEEKDAY, alice, 's-a'), start(WEEKDAY, bob, 's-b'),
    stmt(WEEKDAY, { who: alice, sessionId: 's-a', command: 'CREATE TABLE', classes: ['DDL'] }),
    stmt(WEEKDAY, { who: bob, sessionId: 's-b', command: 'CREATE TABLE', classes: ['DDL'] }),
    stmt('2026-11-28T03:00:00.000Z', { who: alice, sessionId: 's-a', command: 'ALTER ROLE', classes: ['ROLE'] }),
    stmt(WEEKDAY, { who: bob, sessionId: 's-b', command: 'DROP TABLE', classes: ['DDL'], status: 'denied' }),
    stmt(WEEKDAY, { who: bob, sessionId: 's-b', rows: 500, objects: [{ type: 'table', schema: 'PII', name: 'Cards' }] }),
    stmt(WEEKDAY, { who: bob, sessionId: 's-b', rows: 100 }),
    stmt('2026-11-28T03:00:00.000Z', { who: bob, sessionId: 's-b', rows: 1, wouldDeny: true }),
  ], {}, { authFailures: 3, authWindowMinutes: 10, bulkRows: 100, sensitive: ['pii.*'] })
  const kinds = report.findings.findings.map((f) => `${f.kind} ${f.key.split(' ')[0]} ${f.count}`).sort()
  t.same(kinds, [
    // The subject's first three failures came within the window; every later one counts towards it.
    'auth_failures_for_subject spiffe://x/y 6',
    'auth_failures_from_source 10.0.0.9 3',
    'bulk_read bob 1',
    'privileged_off_hours alice 1',
    'privileged_without_ticket bob 1',
    'sensitive_object PII.Cards 1',
  ], 'the denied DROP is not "without ticket" (it did not run); 100 rows is not over 100; .8 failures are too far apart')
  const auth = report.findings.findings.find((f) => f.kind === 'auth_failures_from_source')!
  t.same(auth.records.map((r) => r.seq), [1, 2, 3], 'the failures that led up to it are behind the finding')
  t.equal(report.findings.new_identity_baseline, null, 'no records before the period: new identities are not judged')
  t.equal(report.privileged.total, 5, 'DDL, ROLE, the refused DROP and the read a monitor-mode rule would have refused')
  t.match(report.privileged.rows.at(-1), { command: 'SELECT', status: 'ok', rule: 'app/no-cards (monitor: would deny)' })
  t.same(report.failed_logins.by_source, [{ key: '10.0.0.8', count: 3 }, { key: '10.0.0.9', count: 3 }])
})

t.test('transaction effects: committed, rolled back, rolled back to a savepoint, never ended', async (t) => {
  const ddl = (seq: number, number: number) => stmt(WEEKDAY, { command: 'CREATE TABLE', classes: ['DDL'], seq, tx: { number, kind: 'explicit' } })
  const { report, dir } = await run([ddl(1, 1), ddl(2, 1), ddl(3, 1), txEnd(WEEKDAY, session.id, 1, 'committed', [{ first: 2, last: 2, savepoint: 'sp' }]), ddl(4, 2), txEnd(WEEKDAY, session.id, 2, 'rolled_back'), ddl(5, 3)])
  t.same(report.privileged.rows.map((r) => `${r.statement_seq}:${r.effect}`), ['1:committed', '2:rolled_back_to_savepoint', '3:committed', '4:rolled_back', '5:unknown'])
  const csv = parseCsv(readFileSync(path.join(dir, 'privileged.csv'), 'utf8'))
  const effect = csv[0]!.indexOf('effect')
  t.same(csv.slice(1).map((r) => `${r[6]}:${r[effect]}`).sort(), ['1:committed', '2:rolled_back_to_savepoint', '3:committed', '4:rolled_back', '5:unknown'], 'privileged.csv has each row once its effect is known')
})

t.test('scope: --since makes the baseline for new identities; --identity and --session filter', async (t) => {
  const old = who('spiffe://c/ns/a/sa/old')
  const fresh = who('spiffe://c/ns/b/sa/new')
  const bodies = [
    start('2026-11-20T10:00:00.000Z', old, 's1'), stmt('2026-11-20T10:00:01.000Z', { who: old, sessionId: 's1' }),
    start(WEEKDAY, old, 's2'), stmt(WEEKDAY, { who: old, sessionId: 's2' }),
    start(WEEKDAY, fresh, 's3'), stmt(WEEKDAY, { who: fresh, sessionId: 's3' }), stmt(WEEKDAY, { who: fresh, sessionId: 's3', seq: 2 }),
  ]
  const since = Date.parse('2026-11-25T00:00:00Z')
  const all = (await run(bodies, { since })).report
  t.same(all.findings.findings.filter((f) => f.kind === 'new_identity').map((f) => f.key.split(' ')[0]), ['spiffe://c/ns/b/sa/new'])
  t.equal(all.scope.records_in_period, 5)
  t.same(all.inventory.identities.map((i) => [i.subject, i.sessions, i.statements]), [['spiffe://c/ns/a/sa/old', 1, 1], ['spiffe://c/ns/b/sa/new', 1, 2]])
  const one = (await run(bodies, { identity: 'spiffe://c/ns/b/*' })).report
  t.same(one.inventory.identities.map((i) => i.subject), ['spiffe://c/ns/b/sa/new'])
  const s = (await run(bodies, { session: 's2' })).report
  t.same(s.timelines.shown.map((x) => [x.session, x.events.length]), [['s2', 2]])
  t.equal(s.timelines.sessions, 1)
})

t.test('a broken chain: the report is built, sections say broken, records past the problem are marked', async (t) => {
  const { file, dir } = await run([start(WEEKDAY, identity, 's1'), stmt(WEEKDAY, { sessionId: 's1', seq: 1 }), stmt(WEEKDAY, { sessionId: 's1', seq: 2, rows: 7 })])
  const lines = readFileSync(file, 'utf8').split('\n')
  lines[1] = lines[1]!.replace('"rows":1', '"rows":2')
  writeFileSync(file, lines.join('\n'))
  const report = await buildReport({ files: [file], outDir: dir, publicKeys: null, policy: null, configSource: null, scope: { since: null, until: null, identity: null, session: null }, thresholds: DEFAULT_THRESHOLDS })
  t.equal(report.integrity.verdict, 'broken')
  t.match(report.integrity.first_problem, { line: 2, reason: 'hash_mismatch' })
  t.equal(report.integrity.records_verified, 1)
  t.equal(report.integrity.records_not_verified, 2)
  t.same(report.timelines.shown[0]!.events.map((e) => [e.kind, e.intact, e.rows]), [['session.start', true, null], ['statement', false, 2], ['statement', false, 7]])
  t.equal(report.timelines.integrity.verdict, 'broken')
  t.equal(report.timelines.integrity.unverified_rows, 2)
})

t.test('time buckets widen to stay bounded and keep every count', async (t) => {
  const ts = new TimeSeries()
  const t0 = Date.parse('2026-11-01T00:00:00Z')
  // id-19 is the busiest though seen last.
  for (let i = 0; i < 10_000; i++) ts.add(`id-${i % 20}`, t0 + i * 90_000)
  for (let i = 0; i < 50; i++) ts.add('id-19', t0 + i * 1000)
  ts.add('id-1', t0 - 3_600_000)
  const j = ts.toJSON()
  t.ok(j.series[0]!.counts.length <= 120, `${j.series[0]!.counts.length} buckets of ${j.bucketMs / 60_000} min`)
  t.equal(j.series.reduce((a, s) => a + s.total, 0), 10_051, 'nothing lost')
  t.equal(j.series[0]!.name, 'id-19', 'the busiest series first, wherever it began')
  t.equal(j.series.length, 12, '11 identities and (other)')
  t.equal(j.series.at(-1)!.name, '(other)')
  t.ok(j.start! <= t0 - 3_600_000)
})

t.test('thresholds file and working hours', async (t) => {
  const th = parseThresholdsYaml('auth_failures: 3\nbulk_rows: 500\nsensitive: ["pii.*"]\nworking_hours: { hours: "07:30-19:00", days: [mon, tue], utc_offset: "+01:00" }\n')
  t.match(th, { authFailures: 3, bulkRows: 500, sensitive: ['pii.*'], workingHours: { start: 450, end: 1140, days: [1, 2], utcOffsetMinutes: 60 } })
  t.ok(inWorkingHours(Date.parse('2026-11-30T06:45:00Z'), th.workingHours), 'Monday 07:45 at +01:00')
  t.notOk(inWorkingHours(Date.parse('2026-11-30T06:15:00Z'), th.workingHours), 'Monday 07:15 at +01:00')
  t.notOk(inWorkingHours(Date.parse('2026-12-02T10:00:00Z'), th.workingHours), 'Wednesday')
  t.throws(() => parseThresholdsYaml('bulk: 3'), /^findings: bulk: unknown key/)
  t.throws(() => parseThresholdsYaml('bulk_rows: -1'), /^findings: bulk_rows: expected a positive integer/)
  t.throws(() => parseThresholdsYaml('working_hours: { hours: "18:00-08:00" }'), /^findings: working_hours.hours: .* not a range/)
  t.throws(() => parseThresholdsYaml('working_hours: { days: [funday] }'), /^findings: working_hours.days: "funday" is not a day/)
})

t.test('CSV cells: quoted when needed; spreadsheet formulas defused', async (t) => {
  t.equal(csvCell('plain'), 'plain')
  t.equal(csvCell('a,b'), '"a,b"')
  t.equal(csvCell('say "hi"\nbye'), '"say ""hi""\nbye"')
  t.equal(csvCell('=cmd|x'), `"'=cmd|x"`)
  t.equal(csvCell(-5), '-5', 'numbers are numbers')
  t.equal(csvCell(null), '')
  t.same(parseCsv(['a', csvCell('x,"y"\nz'), csvCell('=1+1')].join(',') + '\n'), [['a', 'x,"y"\nz', "'=1+1"]])
})

t.test('an auth.failure summary counts as its failures in findings and failed logins', async (t) => {
  const { report } = await run([
    failure('2026-11-26T09:00:00.000Z', '10.0.0.5'),
    failureSummary('2026-11-26T09:01:00.000Z', '10.0.0.5', 40, '2026-11-26T09:00:01.000Z', '2026-11-26T09:00:59.000Z'),
  ], {}, { authFailures: 10, authWindowMinutes: 10 })
  const bySource = report.findings.findings.find((f) => f.kind === 'auth_failures_from_source')
  t.match(bySource, { key: '10.0.0.5', count: 40 }, 'the summary of 40 alone crosses the threshold of 10 (one record would not)')
  t.same(bySource?.records.map((r) => r.seq), [2], 'the summary is behind the finding')
  t.same(report.failed_logins.by_source, [{ key: '10.0.0.5', count: 41 }])
})
