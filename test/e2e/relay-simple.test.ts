/**
 * Relay with observation, simple Query protocol (issue 2, item 9): one
 * `statement` record per statement of a (multi-statement) Query, outcomes
 * from CommandComplete / ErrorResponse / EmptyQueryResponse, transaction
 * state, per-session numbering, and the correlation fields that join a
 * session to the server's own log (backend pid, %c session id, the governed
 * session id visible server-side).
 */
import t, { type Test } from 'tap'
import type pg from 'pg'
import { startFixture, type Fixture } from '../helpers/proxy.js'
import { readAuditLog, readValidAuditLog, recordsOfType, validateRecord, waitForRecords, type RecordOfType } from '../helpers/audit.js'

type StatementRec = RecordOfType<'statement'>

const f: Fixture = await startFixture({ pg: { settings: { log_statement: 'all' } } })
t.teardown(() => f.stop())

/** The governed session id of a connected client (costs one statement record: the SHOW). */
async function sessionIdOf(c: pg.Client): Promise<string> {
  const r = await c.query('show pgwitness.session_id')
  return r.rows[0]['pgwitness.session_id'] as string
}

/**
 * Close the client, wait for its session.end, check this session's records
 * against the v1 schema (one assertion, so a bad record fails this test
 * without hiding the rest; the last test validates the whole log with
 * readValidAuditLog), return this session's records.
 */
async function closeAndRead(t: Test, c: pg.Client, sid: string) {
  await c.end()
  await waitForRecords(f.auditPath, (rs) => rs.some((r) => r.type === 'session.end' && r.session.id === sid))
  const all = readAuditLog(f.auditPath)
  const mine = all.filter((r) => 'session' in r && r.session.id === sid)
  const problems = mine.flatMap((r) => validateRecord(r).map((p) => `${r.type}: ${p}`))
  t.same(problems, [], 'the records of this session match the v1 schema')
  const statements = recordsOfType(mine, 'statement')
  const end = recordsOfType(mine, 'session.end')
  const start = recordsOfType(mine, 'session.start')
  return { all, mine, statements, end: end[0]!, start: start[0]!, endCount: end.length, startCount: start.length }
}

/** Statement records after the leading SHOW pgwitness.session_id. */
function afterShow(st: StatementRec[]): StatementRec[] {
  if (st[0]?.statement.text !== 'show pgwitness.session_id') throw new Error(`first statement is not the SHOW: ${st[0]?.statement.text}`)
  return st.slice(1)
}

t.test('multi-statement simple query: one record per statement, texts split, rows and tags', async (t) => {
  const c = await f.client()
  const sid = await sessionIdOf(c)
  const res = (await c.query('create table a(x int); insert into a values (1),(2); select * from a')) as unknown as pg.QueryResult[]
  t.equal(res.length, 3, 'client sees three results')
  t.same(res[2]!.rows, [{ x: 1 }, { x: 2 }])
  const { statements } = await closeAndRead(t, c, sid)
  const st = afterShow(statements)
  t.equal(st.length, 3, 'three statement records')
  t.same(st.map((s) => s.statement.text), ['create table a(x int);', ' insert into a values (1),(2);', ' select * from a'], 'the texts partition the Query exactly')
  t.same(st.map((s) => s.statement.command), ['CREATE TABLE', 'INSERT', 'SELECT'])
  t.same(st.map((s) => s.outcome.command_tag), ['CREATE TABLE', 'INSERT 0 2', 'SELECT 2'])
  t.same(st.map((s) => s.outcome.rows), [null, 2, 2])
  for (const s of st) {
    t.equal(s.statement.protocol, 'simple')
    t.equal(s.outcome.status, 'ok')
    t.equal(s.outcome.sqlstate, null)
    t.equal(s.statement.in_transaction, false, `${s.statement.text}: no explicit transaction block`)
    t.equal(s.statement.text_truncated, false)
    t.equal(s.statement.parameters, null)
    t.type(s.outcome.duration_us, 'number')
    t.ok(s.outcome.duration_us! >= 0)
  }
})

t.test('a multi-statement Query goes upstream unchanged, as one message and one implicit transaction', async (t) => {
  const c = await f.client()
  const sid = await sessionIdOf(c)
  const marker = `one-message-${Math.random().toString(36).slice(2)}`
  const sql = `create table ${'m_' + marker.slice(-8)}(x int);  insert into ${'m_' + marker.slice(-8)} values (1); select '${marker}' as m; select 1/0`
  await t.rejects(c.query(sql), { code: '22012' })
  // The failure rolled back the whole string: the table from its first statement does not exist.
  const exists = await c.query(`select to_regclass('${'m_' + marker.slice(-8)}') as r`)
  t.same(exists.rows, [{ r: null }], 'one implicit transaction: nothing of the string survived the error')
  const { statements } = await closeAndRead(t, c, sid)
  // The server logged the string exactly as the client sent it, once.
  const lines = f.pg.readLog().split('\n').filter((l) => l.includes(marker) && l.includes('statement:'))
  t.equal(lines.length, 1, 'one Query reached the server')
  t.ok(lines[0]?.endsWith(`statement: ${sql}`), 'byte for byte as sent (not split, not rewritten)')
  const st = afterShow(statements)
  t.same(st.map((s) => [s.statement.command, s.outcome.status]).slice(0, 4), [
    ['CREATE TABLE', 'ok'], ['INSERT', 'ok'], ['SELECT', 'ok'], ['SELECT', 'error'],
  ], 'records are still one per statement')
})

t.test('a failing statement mid-string: earlier ones recorded ok, the failing one as error, skipped ones not at all', async (t) => {
  const c = await f.client()
  const sid = await sessionIdOf(c)
  await t.rejects(c.query('select 1; select 1/0; select 2'), { code: '22012' })
  // The session is still usable afterwards.
  t.same((await c.query('select 3 as v')).rows, [{ v: 3 }])
  const { statements, end } = await closeAndRead(t, c, sid)
  const st = afterShow(statements)
  t.same(st.map((s) => s.statement.text), ['select 1;', ' select 1/0;', 'select 3 as v'], 'no record for the skipped "select 2"')
  t.match(st[0]!.outcome, { status: 'ok', command_tag: 'SELECT 1', rows: 1, sqlstate: null })
  t.match(st[1]!.outcome, { status: 'error', sqlstate: '22012', command_tag: null })
  t.match(st[1]!.outcome.message, /division by zero/)
  t.equal(st[1]!.statement.command, 'SELECT')
  t.match(st[2]!.outcome, { status: 'ok', rows: 1 })
  t.equal(end.statements, 4, 'session.end counts the SHOW + 3 executed statements')
})

t.test('a syntax error: one record, command UNKNOWN, sqlstate 42601', async (t) => {
  const c = await f.client()
  const sid = await sessionIdOf(c)
  await t.rejects(c.query('select 1; selec 2; select 3'), { code: '42601' })
  const { statements } = await closeAndRead(t, c, sid)
  const st = afterShow(statements)
  t.equal(st.length, 1, 'a string that does not parse runs nothing: one record for it')
  t.equal(st[0]!.statement.command, 'UNKNOWN')
  t.equal(st[0]!.statement.text, 'select 1; selec 2; select 3')
  t.match(st[0]!.outcome, { status: 'error', sqlstate: '42601', rows: null, command_tag: null })
  t.match(st[0]!.outcome.message, /syntax error/)
})

t.test('empty query: EmptyQueryResponse is an ok outcome', async (t) => {
  const c = await f.client()
  const sid = await sessionIdOf(c)
  const r = await c.query('')
  t.equal(r.rowCount ?? null, null, 'client sees an empty result')
  await c.query('select 1')
  const { statements } = await closeAndRead(t, c, sid)
  const st = afterShow(statements)
  t.equal(st.length, 2)
  t.match(st[0]!.statement, { text: '', command: 'EMPTY QUERY', protocol: 'simple' })
  t.match(st[0]!.outcome, { status: 'ok', command_tag: null, rows: null, sqlstate: null })
  t.match(st[1]!.statement, { text: 'select 1', command: 'SELECT' })
})

t.test('explicit transaction blocks set statement.in_transaction', async (t) => {
  const c = await f.client()
  const sid = await sessionIdOf(c)
  await c.query('create table tx(x int)')
  await c.query('BEGIN')
  await c.query('insert into tx values (1)')
  await c.query('select * from tx')
  await c.query('COMMIT')
  await c.query('select 1 as after_commit')
  // A whole transaction block in one multi-statement string.
  await c.query('begin; insert into tx values (2); update tx set x = x + 10; commit; select count(*) from tx')
  // An error inside a block (state E), then rollback.
  await c.query('begin')
  await t.rejects(c.query('select 1/0'), { code: '22012' })
  await t.rejects(c.query('select 1'), { code: '25P02' }, 'aborted transaction refuses further statements')
  await c.query('rollback')
  await c.query('select 2 as after_rollback')
  const { statements } = await closeAndRead(t, c, sid)
  const st = afterShow(statements)
  const inTx = st.map((s) => [s.statement.text, s.statement.in_transaction])
  t.same(inTx, [
    ['create table tx(x int)', false],
    ['BEGIN', false],
    ['insert into tx values (1)', true],
    ['select * from tx', true],
    ['COMMIT', true],
    ['select 1 as after_commit', false],
    ['begin;', false],
    [' insert into tx values (2);', true],
    [' update tx set x = x + 10;', true],
    [' commit;', true],
    [' select count(*) from tx', false],
    ['begin', false],
    ['select 1/0', true],
    ['select 1', true],
    ['rollback', true],
    ['select 2 as after_rollback', false],
  ])
  t.same(st.map((s) => s.outcome.command_tag), [
    'CREATE TABLE', 'BEGIN', 'INSERT 0 1', 'SELECT 1', 'COMMIT', 'SELECT 1',
    'BEGIN', 'INSERT 0 1', 'UPDATE 2', 'COMMIT', 'SELECT 1',
    'BEGIN', null, null, 'ROLLBACK', 'SELECT 1',
  ])
  t.same(st.map((s) => s.statement.command).slice(0, 5), ['CREATE TABLE', 'BEGIN', 'INSERT', 'SELECT', 'COMMIT'])
  t.match(st[13]!.outcome, { status: 'error', sqlstate: '25P02' })
  t.same(st.map((s) => s.statement.transaction.kind), [
    'autocommit', 'explicit', 'explicit', 'explicit', 'explicit', 'autocommit',
    'explicit', 'explicit', 'explicit', 'explicit', 'implicit',
    'explicit', 'explicit', 'explicit', 'explicit', 'autocommit',
  ])
  const ends = recordsOfType(await readValidAuditLog(f.auditPath), 'transaction.end').filter((e) => e.session.id === sid)
  const numbers = (i: number) => st[i]!.statement.transaction.number
  t.same(ends.map((e) => [e.transaction.outcome, e.transaction.cause, e.transaction.first_seq, e.transaction.last_seq]), [
    ['committed', 'commit', st[1]!.statement.seq, st[4]!.statement.seq],
    ['committed', 'commit', st[6]!.statement.seq, st[9]!.statement.seq],
    ['committed', 'implicit_commit', st[10]!.statement.seq, st[10]!.statement.seq],
    ['rolled_back', 'rollback', st[11]!.statement.seq, st[14]!.statement.seq],
  ])
  t.same(ends.map((e) => e.transaction.number), [numbers(1), numbers(6), numbers(10), numbers(11)])
})

t.test('a deferred constraint failing at the implicit COMMIT: the statement is recorded as the error', async (t) => {
  const c = await f.client()
  const sid = await sessionIdOf(c)
  await c.query('create table deferred_simple(x int unique deferrable initially deferred)')
  await t.rejects(c.query('insert into deferred_simple values (1); insert into deferred_simple values (1)'), { code: '23505' })
  t.same((await c.query('select count(*)::int as n from deferred_simple')).rows, [{ n: 0 }])
  const { statements } = await closeAndRead(t, c, sid)
  const st = afterShow(statements)
  t.same(st.map((s) => [s.statement.text, s.outcome.status, s.outcome.sqlstate]), [
    ['create table deferred_simple(x int unique deferrable initially deferred)', 'ok', null],
    ['insert into deferred_simple values (1);', 'ok', null],
    [' insert into deferred_simple values (1)', 'error', '23505'],
    ['select count(*)::int as n from deferred_simple', 'ok', null],
  ])
  // The first INSERT's "ok" is not final: its implicit transaction was rolled back.
  const end = recordsOfType(await readValidAuditLog(f.auditPath), 'transaction.end').find((e) => e.session.id === sid)
  t.match(end?.transaction, { outcome: 'rolled_back', cause: 'implicit_failure', first_seq: st[1]!.statement.seq, last_seq: st[2]!.statement.seq })
})

t.test('statement.seq is 1..n per session and session.end counts statements and bytes', async (t) => {
  const c1 = await f.client()
  const c2 = await f.client()
  const sid1 = await sessionIdOf(c1)
  const sid2 = await sessionIdOf(c2)
  // Interleave two sessions: numbering is per session, not global.
  for (let i = 0; i < 5; i++) {
    await c1.query(`select ${i} as i`)
    await c2.query(`select ${i} as j; select ${i} as k`)
  }
  const big = await c1.query("select repeat('y', 200000) as big")
  t.equal((big.rows[0].big as string).length, 200000)
  await t.rejects(c2.query('select * from no_such_table'), { code: '42P01' })
  const r1 = await closeAndRead(t, c1, sid1)
  const r2 = await closeAndRead(t, c2, sid2)
  t.same(r1.statements.map((s) => s.statement.seq), [1, 2, 3, 4, 5, 6, 7])
  t.same(r2.statements.map((s) => s.statement.seq), Array.from({ length: 12 }, (_, i) => i + 1))
  t.equal(r1.startCount, 1)
  t.equal(r1.endCount, 1)
  t.equal(r1.end.statements, 7)
  t.equal(r2.end.statements, 12, 'failed statements count as statements')
  t.equal(r1.end.reason, 'client_closed')
  // bytes_in: everything the client sent after authentication (Queries + Terminate).
  const sentQueries = ['show pgwitness.session_id', ...[0, 1, 2, 3, 4].map((i) => `select ${i} as i`), "select repeat('y', 200000) as big"]
  const minIn = sentQueries.reduce((n, q) => n + 5 + Buffer.byteLength(q) + 1, 0) + 5
  t.equal(r1.end.bytes_in, minIn, 'bytes_in is exactly the Query messages plus Terminate')
  t.ok(r1.end.bytes_out > 200000, `bytes_out (${r1.end.bytes_out}) includes the 200 kB result`)
  t.ok(r2.end.bytes_out > 0 && r2.end.bytes_out < 200000)
  t.type(r1.end.duration_ms, 'number')
})

t.test('correlation: backend pid, PostgreSQL %c session id, governed session id server-side', async (t) => {
  const c = await f.client({ applicationName: 'corr-app' })
  const sid = await sessionIdOf(c)
  const pid = (await c.query('select pg_backend_pid() as pid')).rows[0].pid as number
  const appName = (await c.query("select current_setting('application_name') as a")).rows[0].a as string
  const guc = (await c.query("select current_setting('pgwitness.session_id') as s")).rows[0].s as string
  const activity = (await c.query('select application_name from pg_stat_activity where pid = pg_backend_pid()')).rows[0]
    .application_name as string
  const marker = `corr-marker-${Math.random().toString(36).slice(2)}`
  await c.query(`select '${marker}' as m`)
  const { start, statements, end } = await closeAndRead(t, c, sid)

  t.equal(start.session.id, sid, 'SHOW pgwitness.session_id equals session.id')
  t.equal(guc, sid, "current_setting('pgwitness.session_id') equals session.id")
  t.match(sid, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a UUIDv7')
  t.ok(appName.includes(`pgw:${sid}`), `application_name ${appName} carries pgw:<session id>`)
  t.equal(appName, `corr-app pgw:${sid}`)
  t.equal(activity, appName, 'pg_stat_activity shows the tagged name')
  t.equal(start.session.application_name, 'corr-app', 'the record keeps the name the client asked for')

  t.equal(start.upstream.backend_pid, pid, 'upstream.backend_pid equals pg_backend_pid()')
  for (const r of [start, end, ...statements]) {
    t.equal(r.upstream.backend_pid, pid)
    t.equal(r.upstream.server_session_id, start.upstream.server_session_id)
  }
  t.match(start.upstream, { host: '127.0.0.1', port: f.pg.port, database: 'appdb', role: 'app' })

  // The server log line for our marker statement: "%m [%p] %c LOG:  statement: ..."
  const line = f.pg.readLog().split('\n').find((l) => l.includes(marker) && l.includes('statement:'))
  t.ok(line, 'the server logged the marker statement')
  const m = /\[(\d+)\] ([0-9a-f]+\.[0-9a-f]+) /.exec(line ?? '')
  t.ok(m, `log line has the %p and %c prefix: ${line}`)
  t.equal(Number(m?.[1]), pid, 'server log %p is the backend pid')
  t.equal(start.upstream.server_session_id, m?.[2], 'upstream.server_session_id equals %c in the server log')
  t.equal(start.upstream.server_session_id.split('.')[1], pid.toString(16), '%c ends in hex(pid)')
  const st = afterShow(statements)
  t.equal(st[st.length - 1]!.statement.text, `select '${marker}' as m`)
})

t.test('all records of this file match the v1 schema', async (t) => {
  const all = readValidAuditLog(f.auditPath)
  t.ok(all.length > 0)
  t.ok(all.some((r) => r.type === 'proxy.start'))
})
