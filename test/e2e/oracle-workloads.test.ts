/**
 * Oracle workloads (issue 12 part 8): traffic through the proxy, then the
 * server's own log (log_statement=all) against the statement records, session
 * by session, one to one; the records' transaction outcomes against the rows
 * the server kept. "plain traffic" is the oracle's proof of itself (it passes
 * on the landed tracker); the others assert the issue's target contract.
 */
import t from 'tap'
import { serialize, type Msg } from '../helpers/wire.js'
import { assertEffects, assertOneToOne, assertTransactions, oracleFixture, settledSessions } from '../helpers/oracle/run.js'
import { appName, assertQueryResults, connect, queryBytes, resultCount } from '../helpers/oracle/workload.js'
import type { WireClient } from '../helpers/wire.js'

const f = await oracleFixture()
t.teardown(() => f.stop())
await f.pg.query('create table items(id int, name text); alter table items owner to app', [], 'appdb')

/** A Query through `w`, remembering how many results the client saw. */
function recorder(w: WireClient) {
  const sent: Array<{ text: string; results: number }> = []
  return {
    sent,
    async q(text: string, bytes?: Buffer): Promise<Msg[]> {
      w.send(bytes ?? serialize.query(text))
      const msgs = await w.untilReady()
      sent.push({ text, results: resultCount(msgs) })
      return msgs
    },
  }
}

t.test('plain traffic: simple and extended, named and unnamed, node-postgres', async (t) => {
  const app = appName('plain')
  const w = await connect(f, app)
  await w.query("INSERT INTO items VALUES (1, 'one')")
  await w.query('SELECT * FROM items')
  await w.query('SELECT\n  id,\n\tname\nFROM items WHERE id = 1')
  w.send(serialize.parse({ name: 'byid', text: 'SELECT name FROM items WHERE id = $1' }), serialize.sync())
  await w.untilReady()
  for (const id of ['1', '2']) {
    w.send(serialize.bind({ statement: 'byid', values: [id] }), serialize.describe({ type: 'P', name: '' }), serialize.execute({}), serialize.sync())
    await w.untilReady()
  }
  w.send(serialize.parse({ text: 'SELECT 1 / 0' }), serialize.sync())
  await w.untilReady()
  await w.query('SELECT missing FROM items')
  await w.end()
  const pgApp = appName('plain-pg')
  const c = await f.client({ applicationName: pgApp })
  await c.query('SELECT $1::int + 1 AS n', [41])
  await c.query({ name: 'named', text: 'SELECT count(*) FROM items WHERE id > $1', values: [0] })
  await c.query({ name: 'named', text: 'SELECT count(*) FROM items WHERE id > $1', values: [1] })
  await c.end()
  assertOneToOne(t, await settledSessions(f, [app, pgApp]))
})

t.test('multi-statement simple Queries with failures part-way', async (t) => {
  const app = appName('multi')
  const w = await connect(f, app)
  const r = recorder(w)
  await r.q("INSERT INTO marks VALUES ('mk-mq-1'); INSERT INTO marks VALUES ('mk-mq-2')")
  await r.q("INSERT INTO marks VALUES ('mk-mq-3'); SELECT 1/0; INSERT INTO marks VALUES ('mk-mq-4')")
  await r.q("INSERT INTO marks VALUES ('mk-mq-5'); SELEC 1")
  await r.q("BEGIN; INSERT INTO marks VALUES ('mk-mq-6'); COMMIT; INSERT INTO marks VALUES ('mk-mq-7'); SELECT 1/0")
  await r.q("BEGIN; INSERT INTO marks VALUES ('mk-mq-8')")
  await r.q("INSERT INTO marks VALUES ('mk-mq-9'); SELECT nope")
  await r.q('ROLLBACK')
  await r.q("SELECT 1;\nSELECT 2 ;  -- trailing comment\n")
  await r.q(';;')
  await r.q('')
  await w.end()
  const sessions = await settledSessions(f, [app])
  const pairs = assertOneToOne(t, sessions).get(app) ?? []
  assertQueryResults(t, pairs, r.sent)
  assertTransactions(t, sessions)
  await assertEffects(t, f, sessions, 'mk-mq-')
})

t.test('COPY FROM STDIN and TO STDOUT, simple and extended, CopyFail', async (t) => {
  const app = appName('copy')
  const w = await connect(f, app)
  w.send(serialize.query('COPY items FROM STDIN'))
  await w.until((m) => m.name === 'copyInResponse')
  w.send(serialize.copyData(Buffer.from('10\tten\n11\televen\n')), serialize.copyDone())
  await w.untilReady()
  w.send(serialize.query("BEGIN; COPY items FROM STDIN"))
  await w.until((m) => m.name === 'copyInResponse')
  w.send(serialize.copyData(Buffer.from('12\ttwelve\n')), serialize.copyFail('client gave up'))
  await w.untilReady()
  await w.query('ROLLBACK')
  w.send(serialize.parse({ text: 'COPY (SELECT * FROM items ORDER BY id) TO STDOUT' }), serialize.bind({}), serialize.execute({}), serialize.sync())
  await w.untilReady()
  await w.query('COPY items TO STDOUT')
  await w.end()
  const sessions = await settledSessions(f, [app])
  assertOneToOne(t, sessions)
  assertTransactions(t, sessions)
})

t.test('client encodings (LATIN9, SJIS, WIN1251, EUC_KR) and standard_conforming_strings = off', async (t) => {
  const app = appName('enc')
  const w = await connect(f, app)
  const r = recorder(w)
  const set = (enc: string) => r.q(`SET client_encoding TO ${enc}`)
  await set('LATIN9')
  await r.q("SELECT '€' AS euro", queryBytes("SELECT '", [0xa4], "' AS euro"))
  await set('WIN1251')
  await r.q("SELECT 'Ж'", queryBytes("SELECT '", [0xc6], "'"))
  await set('EUC_KR')
  await r.q("SELECT '한'; SELECT 2", queryBytes("SELECT '", [0xc7, 0xd1], "'; SELECT 2"))
  await set('SJIS')
  await r.q("SELECT E'表'; SET application_name = 'evil'; -- '", queryBytes("SELECT E'", [0x95, 0x5c], "'; SET application_name = 'evil'; -- '"))
  await set('UTF8')
  await r.q('SET standard_conforming_strings = off')
  await r.q("SELECT 'a\\''; SELECT 2; -- '")
  await r.q("SELECT 'b\\'; SELECT 3; -- '")
  await r.q('SET standard_conforming_strings = on')
  await r.q("SELECT 'c\\'; SELECT 4; -- '")
  await w.end()
  const sessions = await settledSessions(f, [app])
  const pairs = assertOneToOne(t, sessions).get(app) ?? []
  assertQueryResults(t, pairs, r.sent)
})

t.test('savepoints and two-phase commit', async (t) => {
  const app = appName('tx')
  const other = appName('tx-other')
  const w = await connect(f, app)
  await w.query("BEGIN; INSERT INTO marks VALUES ('mk-tx-1'); SAVEPOINT a")
  await w.query("INSERT INTO marks VALUES ('mk-tx-2')")
  await w.query('SAVEPOINT b')
  await w.query("INSERT INTO marks VALUES ('mk-tx-3')")
  await w.query('ROLLBACK TO SAVEPOINT a')
  await w.query("INSERT INTO marks VALUES ('mk-tx-4')")
  await w.query('SAVEPOINT c')
  await w.query("INSERT INTO marks VALUES ('mk-tx-5')")
  await w.query('RELEASE SAVEPOINT c')
  await w.query('COMMIT')
  // Extended protocol inside a transaction, rolled back to a savepoint after an error.
  w.send(
    serialize.parse({ name: 'ins', text: 'INSERT INTO marks VALUES ($1)' }),
    serialize.sync(),
  )
  await w.untilReady()
  await w.query('BEGIN')
  w.send(serialize.bind({ statement: 'ins', values: ['mk-tx-6'] }), serialize.execute({}), serialize.sync())
  await w.untilReady()
  await w.query('SAVEPOINT s')
  w.send(serialize.bind({ statement: 'ins', values: ['mk-tx-7'] }), serialize.execute({}), serialize.parse({ text: 'SELECT 1/0' }), serialize.bind({}), serialize.execute({}), serialize.sync())
  await w.untilReady()
  await w.query('ROLLBACK TO SAVEPOINT s')
  w.send(serialize.bind({ statement: 'ins', values: ['mk-tx-8'] }), serialize.execute({}), serialize.sync())
  await w.untilReady()
  await w.query("PREPARE TRANSACTION 'oracle-tx-1'")
  await w.query("BEGIN; INSERT INTO marks VALUES ('mk-tx-9'); PREPARE TRANSACTION 'oracle-tx-2'")
  await w.query("BEGIN; INSERT INTO marks VALUES ('mk-tx-10'); PREPARE TRANSACTION 'oracle-tx-3'")
  await w.query("COMMIT PREPARED 'oracle-tx-3'")
  await w.end()
  const w2 = await connect(f, other)
  await w2.query("COMMIT PREPARED 'oracle-tx-1'")
  await w2.query("ROLLBACK PREPARED 'oracle-tx-2'")
  await w2.end()
  const rows = (await f.pg.query("select m from marks where m like 'mk-tx-%'", [], 'appdb')) as Array<{ m: string }>
  t.same(rows.map((x) => x.m).sort(), ['mk-tx-1', 'mk-tx-10', 'mk-tx-4', 'mk-tx-5', 'mk-tx-6', 'mk-tx-8'], 'the server kept exactly these rows')
  const sessions = await settledSessions(f, [app, other])
  assertOneToOne(t, sessions)
  assertTransactions(t, sessions)
  await assertEffects(t, f, sessions, 'mk-tx-')
})

t.test('clients that vanish mid-pipeline: every statement the server logged has a record', async (t) => {
  const apps: string[] = []
  for (const [i, how] of (['destroy', 'reset', 'destroy'] as const).entries()) {
    const app = appName(`vanish-${i}`)
    apps.push(app)
    const w = await connect(f, app, { resettable: how === 'reset' })
    await w.query('SELECT 1')
    if (i === 2) await w.query('BEGIN')
    const msgs: Buffer[] = [serialize.parse({ name: 'v', text: 'INSERT INTO marks SELECT $1 FROM pg_sleep(0.02)' })]
    for (let k = 0; k < 20; k++) {
      msgs.push(serialize.bind({ statement: 'v', values: [`mk-vn-${i}x${k}`] }), serialize.execute({}))
      if (k % 5 === 4) msgs.push(serialize.sync())
    }
    msgs.push(serialize.query(`INSERT INTO marks VALUES ('mk-vn-${i}q')`))
    w.send(...msgs)
    await w.next() // the pipeline reached the server
    if (how === 'reset') w.reset()
    else w.destroy()
  }
  const sessions = await settledSessions(f, apps)
  assertOneToOne(t, sessions)
  assertTransactions(t, sessions)
  await assertEffects(t, f, sessions, 'mk-vn-')
})
