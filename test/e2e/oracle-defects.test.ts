/**
 * Oracle tests for the five evidence-fidelity defects of issue 12, each by
 * name: the server's own log (log_statement=all) against the statement
 * records, session by session, plus the assertion each defect is about.
 * These fail on the tracker that takes a message's effect when it is sent
 * rather than when the server accepts it (see the issue).
 */
import t from 'tap'
import { serialize, type Msg } from '../helpers/wire.js'
import { assertEffects, assertOneToOne, assertTransactions, oracleFixture, settledSessions } from '../helpers/oracle/run.js'
import { appName, assertQueryResults, connect, queryBytes, resultCount } from '../helpers/oracle/workload.js'

const f = await oracleFixture()
t.teardown(() => f.stop())
await f.pg.query(
  `create table d1(m text); alter table d1 owner to app;
   create table dc(k text, constraint dc_k unique (k) deferrable initially deferred); alter table dc owner to app;
   create function slow(x int) returns int language sql as 'select x from pg_sleep(0.05)'`,
  [], 'appdb',
)

t.test('defect 1: a refused re-Parse of s1 leaves s1 DELETE, and the record of its Execute says DELETE', async (t) => {
  const app = appName('d1')
  const w = await connect(f, app)
  await w.query("insert into d1 values ('a'), ('b')")
  w.send(serialize.parse({ name: 's1', text: 'DELETE FROM d1' }), serialize.sync())
  await w.untilReady()
  w.send(serialize.parse({ name: 's1', text: 'SELECT 1' }), serialize.sync())
  const refused = await w.untilReady()
  t.equal(refused.find((m) => m.name === 'error')?.code, '42P05', 'the server refuses the re-Parse')
  w.send(serialize.bind({ statement: 's1' }), serialize.execute({}), serialize.sync())
  const ran = await w.untilReady()
  t.equal(ran.find((m) => m.name === 'commandComplete')?.text, 'DELETE 2', 'the server ran the DELETE')
  await w.end()
  const sessions = await settledSessions(f, [app])
  assertOneToOne(t, sessions)
  const exec = sessions[0]!.records.statements.find((r) => r.protocol === 'extended' && r.status === 'ok')
  t.match(exec, { text: 'DELETE FROM d1', command: 'DELETE', commandTag: 'DELETE 2' }, 'the Execute record says DELETE')
})

t.test('defect 2: Close or re-Bind of a portal while its Execute runs keeps one record per execution', async (t) => {
  const app = appName('d2')
  const w = await connect(f, app)
  w.send(serialize.parse({ name: 'slow', text: 'SELECT slow($1::int)' }), serialize.sync())
  await w.untilReady()
  // Execute and Close 'P' of the same portal in one write: the proxy sees the Close before the result.
  w.send(
    serialize.bind({ statement: 'slow', portal: 'p1', values: ['1'] }),
    serialize.execute({ portal: 'p1' }),
    serialize.close({ type: 'P', name: 'p1' }),
    serialize.sync(),
  )
  await w.untilReady()
  // Re-Bind of the (unnamed) portal while its first Execute runs: two executions, two records.
  // (A named portal cannot be re-bound while it exists: 42P03.)
  w.send(
    serialize.bind({ statement: 'slow', portal: '', values: ['2'] }),
    serialize.execute({ portal: '' }),
    serialize.bind({ statement: 'slow', portal: '', values: ['3'] }),
    serialize.execute({ portal: '' }),
    serialize.sync(),
  )
  await w.untilReady()
  // A suspended portal closed while its next chunk runs.
  w.send(serialize.parse({ name: 'gen', text: 'SELECT slow(x) FROM generate_series(1, 3) x' }), serialize.sync())
  await w.untilReady()
  w.send(
    serialize.bind({ statement: 'gen', portal: 'p3' }),
    serialize.execute({ portal: 'p3', rows: 1 }),
    serialize.execute({ portal: 'p3', rows: 1 }),
    serialize.close({ type: 'P', name: 'p3' }),
    serialize.sync(),
  )
  await w.untilReady()
  await w.end()
  const sessions = await settledSessions(f, [app])
  assertOneToOne(t, sessions)
  const slow = sessions[0]!.records.statements.filter((r) => r.protocol === 'extended' && r.status === 'ok')
  t.same(slow.map((r) => [r.portal, r.rows]), [['p1', 1], ['', 1], ['', 1], ['p3', 1], ['p3', 1]], 'one record per Execute, rows per Execute')
})

t.test('defect 3: client encodings and standard_conforming_strings = off', async (t) => {
  const app = appName('d3')
  const w = await connect(f, app)
  const sent: Array<{ text: string; results: number }> = []
  const run = async (bytes: Buffer, text: string): Promise<Msg[]> => {
    w.send(bytes)
    const msgs = await w.untilReady()
    sent.push({ text, results: resultCount(msgs) })
    return msgs
  }
  await run(queryBytes('SET client_encoding TO latin9'), 'SET client_encoding TO latin9')
  await run(queryBytes("SELECT '", [0xa4], "' AS euro"), "SELECT '€' AS euro")
  await run(queryBytes('SET client_encoding TO sjis'), 'SET client_encoding TO sjis')
  const attack = await run(queryBytes("SELECT E'", [0x95, 0x5c], "'; SET application_name = 'evil'; -- '"), "SELECT E'表'; SET application_name = 'evil'; -- '")
  t.equal(attack.filter((m) => m.name === 'commandComplete').length, 2, 'the SJIS attack runs two statements on the server')
  await run(queryBytes('SET client_encoding TO UTF8'), 'SET client_encoding TO UTF8')
  await run(queryBytes('SET standard_conforming_strings = off'), 'SET standard_conforming_strings = off')
  // Server: 'a\'' is the string a' and SELECT 2 runs; a standard-conforming split sees one statement.
  await run(queryBytes("SELECT 'a\\''; SELECT 2; -- '"), "SELECT 'a\\''; SELECT 2; -- '")
  // Server: one statement (the string runs to the last quote); a standard-conforming split sees two.
  await run(queryBytes("SELECT 'b\\'; SELECT 3; -- '"), "SELECT 'b\\'; SELECT 3; -- '")
  await w.end()
  const sessions = await settledSessions(f, [app])
  const pairs = assertOneToOne(t, sessions).get(app) ?? []
  assertQueryResults(t, pairs, sent)
})

t.test('defect 4: transaction effects (implicit failure, ROLLBACK, failed COMMIT, savepoint, two-phase commit)', async (t) => {
  const app = appName('d4')
  const other = appName('d4b')
  const w = await connect(f, app)
  const sent: Array<{ text: string; results: number }> = []
  const q = async (text: string): Promise<void> => {
    sent.push({ text, results: resultCount(await w.query(text)) })
  }
  await q("INSERT INTO marks VALUES ('mk-d4-1'); INSERT INTO marks VALUES ('mk-d4-2'); SELECT 1/0")
  await q('BEGIN')
  await q("INSERT INTO marks VALUES ('mk-d4-3')")
  await q('ROLLBACK')
  await q('BEGIN')
  await q("INSERT INTO marks VALUES ('mk-d4-4')")
  await q("INSERT INTO dc VALUES ('x'), ('x')")
  await q('COMMIT')
  await q("BEGIN; INSERT INTO marks VALUES ('mk-d4-5'); SAVEPOINT a; INSERT INTO marks VALUES ('mk-d4-6')")
  await q("ROLLBACK TO SAVEPOINT a; INSERT INTO marks VALUES ('mk-d4-7'); COMMIT")
  await q('BEGIN')
  await q("INSERT INTO marks VALUES ('mk-d4-8')")
  await q("PREPARE TRANSACTION 'oracle-d4-commit'")
  await q('BEGIN')
  await q("INSERT INTO marks VALUES ('mk-d4-9')")
  await q("PREPARE TRANSACTION 'oracle-d4-rollback'")
  await q("INSERT INTO marks VALUES ('mk-d4-10')")
  await w.end()
  const w2 = await connect(f, other)
  await w2.query("COMMIT PREPARED 'oracle-d4-commit'")
  await w2.query("ROLLBACK PREPARED 'oracle-d4-rollback'")
  await w2.end()
  const rows = (await f.pg.query("select m from marks where m like 'mk-d4-%' order by m", [], 'appdb')) as Array<{ m: string }>
  t.same(rows.map((r) => r.m).sort(), ['mk-d4-10', 'mk-d4-5', 'mk-d4-7', 'mk-d4-8'], 'the server kept exactly these rows')
  const sessions = await settledSessions(f, [app, other])
  const pairs = assertOneToOne(t, sessions).get(app) ?? []
  assertQueryResults(t, pairs, sent)
  assertTransactions(t, sessions)
  await assertEffects(t, f, sessions, 'mk-d4-')
})

t.test('defect 5: multi-statement Parse, cursor FETCHes, exact text of a single-statement Query', async (t) => {
  const app = appName('d5')
  const w = await connect(f, app)
  w.send(serialize.parse({ name: '', text: 'SELECT 1; SELECT 2' }), serialize.sync())
  t.equal((await w.untilReady()).find((m) => m.name === 'error')?.code, '42601', 'the server refuses a multi-statement Parse')
  await w.query('BEGIN')
  await w.query('DECLARE c CURSOR FOR SELECT generate_series(1, 5)')
  for (let i = 0; i < 3; i++) await w.query('FETCH 2 FROM c')
  await w.query('COMMIT')
  w.send(serialize.parse({ name: 'g', text: 'SELECT generate_series(1, 5)' }), serialize.bind({ statement: 'g', portal: 'cur' }))
  for (let i = 0; i < 3; i++) w.send(serialize.execute({ portal: 'cur', rows: 2 }))
  w.send(serialize.sync())
  await w.untilReady()
  const single = await w.query('SELECT 1;  ')
  t.equal(resultCount(single), 1)
  await w.end()
  const sessions = await settledSessions(f, [app])
  assertOneToOne(t, sessions)
  const recs = sessions[0]!.records.statements
  const multi = recs.filter((r) => r.sqlstate === '42601')
  t.match(multi, [{ text: 'SELECT 1; SELECT 2', status: 'error' }], 'one error record with the whole refused text')
  t.same(recs.filter((r) => r.command === 'FETCH').map((r) => [r.commandTag, r.rows]), [['FETCH 2', 2], ['FETCH 2', 2], ['FETCH 1', 1]], 'each FETCH its own tag and rows')
  t.same(recs.filter((r) => r.portal === 'cur').map((r) => r.rows), [2, 2, 1], 'each Execute of the suspended portal its own rows')
  t.ok(recs.some((r) => r.text === 'SELECT 1;  '), 'the single-statement Query recorded with its exact text')
})
