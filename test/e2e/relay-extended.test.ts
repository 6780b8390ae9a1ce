/**
 * Relay with observation, extended Query protocol (issue 2, item 9):
 * node-postgres parameterized and named prepared statements, and raw
 * pipelines (several Parse/Bind/Execute before one Sync, Describe/Flush,
 * Close, row-limited Execute of a suspended portal, Parse/Bind errors) sent
 * through the proxy with the wire client. Statements PostgreSQL skipped after
 * an error are not recorded.
 */
import t, { type Test as Tap } from 'tap'
import type pg from 'pg'
import { startFixture, type Fixture } from '../helpers/proxy.js'
import { readAuditLog, readValidAuditLog, recordsOfType, validateRecord, waitForRecords, type RecordOfType } from '../helpers/audit.js'
import { frame, serialize, shape, WireClient, type Msg } from '../helpers/wire.js'

type StatementRec = RecordOfType<'statement'>

const f: Fixture = await startFixture()
t.teardown(() => f.stop())

// A table whose row makes `1/x` fail at execution time (not at plan time).
await f.pg.query('create table zero(x int); insert into zero values (0); alter table zero owner to app', [], 'appdb')

async function sessionIdOf(c: pg.Client): Promise<string> {
  const r = await c.query('show pgwitness.session_id')
  return r.rows[0]['pgwitness.session_id'] as string
}

async function wire(): Promise<{ w: WireClient; sid: string }> {
  const w = await WireClient.connect({ port: f.proxy.port, token: await f.token() })
  const msgs = await w.query('show pgwitness.session_id')
  const row = msgs.find((m) => m.name === 'dataRow')
  return { w, sid: row!.fields![0]! }
}

/**
 * Wait for the session's end, check this session's records against the v1
 * schema (one assertion, so a bad record fails this test without hiding the
 * rest; the last test validates the whole log with readValidAuditLog), and
 * return its statements after the leading SHOW.
 */
async function statementsOf(t: Tap, sid: string): Promise<StatementRec[]> {
  await waitForRecords(f.auditPath, (rs) => rs.some((r) => r.type === 'session.end' && r.session.id === sid))
  const mine = readAuditLog(f.auditPath).filter((r) => 'session' in r && r.session.id === sid)
  const problems = mine.flatMap((r) => validateRecord(r).map((p) => `${r.type}${r.type === 'statement' ? ` #${r.statement.seq} (${r.statement.text})` : ''}: ${p}`))
  t.same(problems, [], 'the records of this session match the v1 schema')
  const st = recordsOfType(mine, 'statement')
  if (st[0]?.statement.text !== 'show pgwitness.session_id') throw new Error('first statement is not the SHOW')
  // seq stays consecutive whatever happened
  st.forEach((s, i) => {
    if (s.statement.seq !== i + 1) throw new Error(`statement.seq ${s.statement.seq} at position ${i + 1}`)
  })
  return st.slice(1)
}

t.test('node-postgres unnamed parameterized queries record their parameters', async (t) => {
  const c = await f.client()
  const sid = await sessionIdOf(c)
  const r = await c.query('select $1::int + $2::int as s', [1, 2])
  t.same(r.rows, [{ s: 3 }])
  const n = await c.query('select $1::text is null as isnull, $2::text as t', [null, 'héllo'])
  t.same(n.rows, [{ isnull: true, t: 'héllo' }])
  const bin = Buffer.from([0, 1, 2, 0xfe, 0xff])
  const b = await c.query('select length($1::bytea) as n, $1::bytea as v', [bin])
  t.same(b.rows[0].n, 5)
  t.same(b.rows[0].v, bin, 'bytea round-trips unchanged through the proxy')
  await t.rejects(c.query('select $1::int as v', ['not a number']), { code: '22P02' })
  await c.end()
  const st = await statementsOf(t, sid)
  t.equal(st.length, 4)
  t.match(st[0]!.statement, {
    protocol: 'extended', text: 'select $1::int + $2::int as s', prepared_name: '', portal: '', command: 'SELECT',
    parameters: [{ format: 'text', value: '1' }, { format: 'text', value: '2' }],
  })
  t.same(st[0]!.statement.parameters, [{ format: 'text', value: '1' }, { format: 'text', value: '2' }])
  t.match(st[0]!.outcome, { status: 'ok', command_tag: 'SELECT 1', rows: 1 })
  t.same(st[1]!.statement.parameters, [null, { format: 'text', value: 'héllo' }], 'a NULL parameter is recorded as null')
  t.same(st[2]!.statement.parameters, [{ format: 'binary', base64: bin.toString('base64') }], 'a binary parameter is recorded as base64')
  t.match(st[3]!.outcome, { status: 'error', sqlstate: '22P02' })
  t.same(st[3]!.statement.parameters, [{ format: 'text', value: 'not a number' }])
})

t.test('node-postgres named prepared statement reused: one record per execution', async (t) => {
  const c = await f.client()
  const sid = await sessionIdOf(c)
  const text = 'select $1::text as v, $2::int as n'
  for (const [v, n] of [['a', 1], ['b', 2], ['c', null]] as const) {
    const r = await c.query({ name: 'q1', text, values: [v, n] })
    t.same(r.rows, [{ v, n }])
  }
  await c.end()
  const st = await statementsOf(t, sid)
  t.equal(st.length, 3, 'three executions, three records (one Parse)')
  for (const s of st) {
    t.match(s.statement, { protocol: 'extended', prepared_name: 'q1', portal: '', text, command: 'SELECT' })
    t.match(s.outcome, { status: 'ok', rows: 1, command_tag: 'SELECT 1' })
  }
  t.same(st.map((s) => s.statement.parameters), [
    [{ format: 'text', value: 'a' }, { format: 'text', value: '1' }],
    [{ format: 'text', value: 'b' }, { format: 'text', value: '2' }],
    [{ format: 'text', value: 'c' }, null],
  ])
})

t.test('pipeline: three Parse/Bind/Execute, one Sync, 2nd Execute fails → 3rd not recorded', async (t) => {
  const { w, sid } = await wire()
  w.send(
    serialize.parse({ text: 'select 1 as a' }), serialize.bind({}), serialize.execute({}),
    serialize.parse({ text: 'select 1/x from zero' }), serialize.bind({}), serialize.execute({}),
    serialize.parse({ text: 'select 3 as c' }), serialize.bind({}), serialize.execute({}),
    serialize.sync(),
  )
  const msgs = await w.untilReady()
  t.same(shape(msgs), [
    'parseComplete', 'bindComplete', 'dataRow', 'commandComplete(SELECT 1)',
    'parseComplete', 'bindComplete', 'error(22012)', 'readyForQuery(I)',
  ], 'the server skipped the third statement')
  // The session goes on normally after the Sync.
  w.send(serialize.parse({ text: 'select 4 as d' }), serialize.bind({}), serialize.execute({}), serialize.sync())
  t.same(shape(await w.untilReady()), ['parseComplete', 'bindComplete', 'dataRow', 'commandComplete(SELECT 1)', 'readyForQuery(I)'])
  await w.end()
  const st = await statementsOf(t, sid)
  t.same(st.map((s) => s.statement.text), ['select 1 as a', 'select 1/x from zero', 'select 4 as d'])
  t.match(st[0]!.outcome, { status: 'ok', rows: 1, command_tag: 'SELECT 1' })
  t.match(st[1]!.outcome, { status: 'error', sqlstate: '22012', rows: null })
  t.match(st[1]!.outcome.message, /division by zero/)
  t.match(st[2]!.outcome, { status: 'ok', rows: 1 })
  for (const s of st) t.match(s.statement, { protocol: 'extended', prepared_name: '', portal: '', parameters: [] })
})

t.test('pipeline: a Bind error is a recorded attempt; the rest up to Sync is skipped', async (t) => {
  const { w, sid } = await wire()
  w.send(
    serialize.parse({ name: 'pi', text: 'select $1::int as v', types: [] }),
    serialize.bind({ statement: 'pi', values: ['7'] }), serialize.execute({}),
    serialize.bind({ statement: 'pi', values: ['x7'] }), serialize.execute({}),
    serialize.bind({ statement: 'pi', values: ['8'] }), serialize.execute({}),
    serialize.sync(),
  )
  const msgs = await w.untilReady()
  t.same(shape(msgs), ['parseComplete', 'bindComplete', 'dataRow', 'commandComplete(SELECT 1)', 'error(22P02)', 'readyForQuery(I)'])
  await w.end()
  const st = await statementsOf(t, sid)
  t.equal(st.length, 2)
  t.match(st[0]!, { statement: { prepared_name: 'pi', parameters: [{ format: 'text', value: '7' }] }, outcome: { status: 'ok', rows: 1 } })
  t.match(st[1]!, { statement: { prepared_name: 'pi', text: 'select $1::int as v', parameters: [{ format: 'text', value: 'x7' }] }, outcome: { status: 'error', sqlstate: '22P02' } })
})

t.test('Describe and Flush in between; named portal; Close statement and portal', async (t) => {
  const { w, sid } = await wire()
  // Parse + Describe statement, Flush: the answers come without a Sync.
  w.send(serialize.parse({ name: 's1', text: 'select g, $1::text as label from generate_series(1, 3) g' }), serialize.describe({ type: 'S', name: 's1' }), serialize.flush())
  t.same(shape(await w.until((m) => m.name === 'rowDescription')), ['parseComplete', 'parameterDescription', 'rowDescription'])
  // Bind a named portal, Describe it, Flush, then Execute and Sync.
  w.send(serialize.bind({ statement: 's1', portal: 'p1', values: ['L'] }), serialize.describe({ type: 'P', name: 'p1' }), serialize.flush())
  t.same(shape(await w.until((m) => m.name === 'rowDescription')), ['bindComplete', 'rowDescription'])
  w.send(serialize.execute({ portal: 'p1' }), serialize.sync())
  const run = await w.untilReady()
  t.same(shape(run), ['dataRow×3', 'commandComplete(SELECT 3)', 'readyForQuery(I)'])
  t.same(run.filter((m) => m.name === 'dataRow').map((m) => m.fields), [['1', 'L'], ['2', 'L'], ['3', 'L']])
  // A statement with no result columns: Describe answers NoData.
  w.send(serialize.parse({ name: 's2', text: 'set work_mem = default' }), serialize.describe({ type: 'S', name: 's2' }),
    serialize.bind({ statement: 's2' }), serialize.execute({}), serialize.sync())
  t.same(shape(await w.untilReady()), ['parseComplete', 'parameterDescription', 'noData', 'bindComplete', 'commandComplete(SET)', 'readyForQuery(I)'])
  // Close the statement, then try to use it: the server refuses the Bind.
  w.send(serialize.close({ type: 'S', name: 's1' }), serialize.sync())
  t.same(shape(await w.untilReady()), ['closeComplete', 'readyForQuery(I)'])
  w.send(serialize.bind({ statement: 's1', values: ['M'] }), serialize.execute({}), serialize.sync())
  t.same(shape(await w.untilReady()), ['error(26000)', 'readyForQuery(I)'])
  // Close a portal (in a transaction, where named portals live across Syncs).
  t.same(shape(await w.query('begin')), ['commandComplete(BEGIN)', 'readyForQuery(T)'])
  w.send(serialize.parse({ name: 's3', text: 'select 42 as answer' }), serialize.bind({ statement: 's3', portal: 'p3' }), serialize.sync())
  t.same(shape(await w.untilReady()), ['parseComplete', 'bindComplete', 'readyForQuery(T)'])
  w.send(serialize.close({ type: 'P', name: 'p3' }), serialize.execute({ portal: 'p3' }), serialize.sync())
  t.same(shape(await w.untilReady()), ['closeComplete', 'error(34000)', 'readyForQuery(E)'])
  t.same(shape(await w.query('rollback')), ['commandComplete(ROLLBACK)', 'readyForQuery(I)'])
  await w.end()

  const st = await statementsOf(t, sid)
  const texts = st.map((s) => [s.statement.text, s.statement.prepared_name, s.statement.portal, s.outcome.status, s.outcome.sqlstate])
  t.same(texts.slice(0, 2), [
    ['select g, $1::text as label from generate_series(1, 3) g', 's1', 'p1', 'ok', null],
    ['set work_mem = default', 's2', '', 'ok', null],
  ])
  t.match(st[0]!, { statement: { parameters: [{ format: 'text', value: 'L' }] }, outcome: { rows: 3, command_tag: 'SELECT 3' } })
  t.match(st[1]!, { statement: { command: 'SET' }, outcome: { command_tag: 'SET' } })
  // The Bind of the closed statement failed: recorded as an error attempt naming it.
  t.match(st[2]!, { statement: { prepared_name: 's1' }, outcome: { status: 'error', sqlstate: '26000' } })
  t.match(st[3]!, { statement: { text: 'begin', protocol: 'simple' } })
  // Executing the closed portal failed: an error record (nothing ran).
  t.match(st[4]!, { statement: { portal: 'p3', in_transaction: true }, outcome: { status: 'error', sqlstate: '34000' } })
  t.match(st[5]!, { statement: { text: 'rollback' }, outcome: { status: 'ok' } })
  t.equal(st.length, 6, 'no record for Parse/Bind/Describe/Close themselves, nor for the never-executed portal p3')
})

t.test('Execute with a row limit: a suspended portal run over several Executes is ONE record with the total rows', async (t) => {
  const { w, sid } = await wire()
  t.same(shape(await w.query('begin')), ['commandComplete(BEGIN)', 'readyForQuery(T)'])
  w.send(serialize.parse({ name: 'g', text: 'select g from generate_series(1, 10) g' }), serialize.bind({ statement: 'g', portal: 'cur' }),
    serialize.execute({ portal: 'cur', rows: 3 }), serialize.sync())
  t.same(shape(await w.untilReady()), ['parseComplete', 'bindComplete', 'dataRow×3', 'portalSuspended', 'readyForQuery(T)'])
  // Each further Execute waits for the previous PortalSuspended (Flush, then Sync).
  w.send(serialize.execute({ portal: 'cur', rows: 3 }), serialize.flush())
  t.same(shape(await w.until((m) => m.name === 'portalSuspended')), ['dataRow×3', 'portalSuspended'])
  w.send(serialize.execute({ portal: 'cur', rows: 3 }), serialize.sync())
  t.same(shape(await w.untilReady()), ['dataRow×3', 'portalSuspended', 'readyForQuery(T)'])
  w.send(serialize.execute({ portal: 'cur', rows: 0 }), serialize.sync())
  const last = await w.untilReady()
  t.same(shape(last).slice(0, 1), ['dataRow'])
  const tag = last.find((m) => m.name === 'commandComplete')!.text
  t.match(tag, /^SELECT \d+$/)
  t.same(shape(await w.query('commit')), ['commandComplete(COMMIT)', 'readyForQuery(I)'])
  await w.end()
  const st = await statementsOf(t, sid)
  const g = 'select g from generate_series(1, 10) g'
  t.same(st.map((s) => s.statement.text), ['begin', g, g, g, g, 'commit'], 'one record per Execute the server ran')
  t.same(st.slice(1, 5).map((s) => [s.outcome.rows, s.outcome.suspended ?? false, s.outcome.command_tag, s.outcome.portal_rows ?? null]),
    [[3, true, null, null], [3, true, null, null], [3, true, null, null], [1, false, tag, 10]])
  t.match(st[4]!, { statement: { protocol: 'extended', prepared_name: 'g', portal: 'cur', in_transaction: true }, outcome: { status: 'ok' } })
})

t.test('Execute with a row limit, pipelined: several Executes of one portal sent before any PortalSuspended → ONE record', async (t) => {
  const { w, sid } = await wire()
  t.same(shape(await w.query('begin')), ['commandComplete(BEGIN)', 'readyForQuery(T)'])
  // All in one batch: the client does not wait for PortalSuspended between Executes.
  w.send(serialize.parse({ text: 'select g from generate_series(1, 10) g' }), serialize.bind({ portal: 'pc' }),
    serialize.execute({ portal: 'pc', rows: 4 }), serialize.execute({ portal: 'pc', rows: 4 }), serialize.execute({ portal: 'pc', rows: 4 }),
    serialize.sync())
  const msgs = await w.untilReady()
  t.same(shape(msgs), ['parseComplete', 'bindComplete', 'dataRow×4', 'portalSuspended', 'dataRow×4', 'portalSuspended',
    'dataRow×2', 'commandComplete(SELECT 2)', 'readyForQuery(T)'])
  t.same(shape(await w.query('commit')), ['commandComplete(COMMIT)', 'readyForQuery(I)'])
  await w.end()
  const st = await statementsOf(t, sid)
  const g = 'select g from generate_series(1, 10) g'
  t.same(st.map((s) => s.statement.text), ['begin', g, g, g, 'commit'], 'one record per Execute, pipelined or not')
  t.same(st.slice(1, 4).map((s) => [s.outcome.rows, s.outcome.command_tag, s.outcome.portal_rows ?? null]), [[4, null, null], [4, null, null], [2, 'SELECT 2', 10]])
  t.match(st[3]!, { statement: { portal: 'pc', in_transaction: true }, outcome: { status: 'ok' } })
})

t.test('a suspended portal left unfinished is recorded once, with the rows it returned', async (t) => {
  const { w, sid } = await wire()
  await w.query('begin')
  w.send(serialize.parse({ text: 'select g from generate_series(1, 100) g' }), serialize.bind({ portal: 'half' }),
    serialize.execute({ portal: 'half', rows: 5 }), serialize.sync())
  t.same(shape(await w.untilReady()), ['parseComplete', 'bindComplete', 'dataRow×5', 'portalSuspended', 'readyForQuery(T)'])
  await w.query('commit')
  await w.end()
  const st = await statementsOf(t, sid)
  // It is known to be over only when the transaction ends, so it may follow the COMMIT record.
  t.same(st.map((s) => s.statement.text).sort(), ['begin', 'commit', 'select g from generate_series(1, 100) g'])
  const half = st.find((s) => s.statement.portal === 'half')!
  t.match(half, { statement: { in_transaction: true }, outcome: { status: 'ok', rows: 5, sqlstate: null } })
})

t.test('a Parse with a syntax error: one error record, nothing for the skipped Bind/Execute', async (t) => {
  const { w, sid } = await wire()
  w.send(serialize.parse({ text: 'selec 1' }), serialize.bind({}), serialize.describe({ type: 'P' }), serialize.execute({}), serialize.sync())
  t.same(shape(await w.untilReady()), ['error(42601)', 'readyForQuery(I)'])
  await w.end()
  const c = await f.client()
  const sid2 = await sessionIdOf(c)
  await t.rejects(c.query('selec $1', [1]), { code: '42601' })
  await c.end()
  for (const id of [sid, sid2]) {
    const st = await statementsOf(t, id)
    t.equal(st.length, 1)
    t.match(st[0]!, {
      statement: { protocol: 'extended', command: 'UNKNOWN' },
      outcome: { status: 'error', sqlstate: '42601', rows: null, command_tag: null },
    })
  }
  t.equal((await statementsOf(t, sid))[0]!.statement.text, 'selec 1')
})

t.test('pipelined simple Queries and extended batches mixed, answered in order', async (t) => {
  const { w, sid } = await wire()
  w.send(
    serialize.query('select 1 as q1'),
    serialize.parse({ text: 'select $1::int * 2 as e1' }), serialize.bind({ values: ['21'] }), serialize.execute({}), serialize.sync(),
    serialize.query('select 1/0; select 99'),
    serialize.query('select 2 as q2'),
  )
  const out: Msg[] = []
  for (let i = 0; i < 4; i++) out.push(...(await w.untilReady()))
  t.same(shape(out), [
    'rowDescription', 'dataRow', 'commandComplete(SELECT 1)', 'readyForQuery(I)',
    'parseComplete', 'bindComplete', 'dataRow', 'commandComplete(SELECT 1)', 'readyForQuery(I)',
    'error(22012)', 'readyForQuery(I)',
    'rowDescription', 'dataRow', 'commandComplete(SELECT 1)', 'readyForQuery(I)',
  ])
  await w.end()
  const st = await statementsOf(t, sid)
  t.same(st.map((s) => [s.statement.text, s.statement.protocol, s.outcome.status]), [
    ['select 1 as q1', 'simple', 'ok'],
    ['select $1::int * 2 as e1', 'extended', 'ok'],
    ['select 1/0;', 'simple', 'error'],
    ['select 2 as q2', 'simple', 'ok'],
  ])
})

t.test('a deferred constraint failing at the implicit COMMIT of Sync: the failure reaches the audit', async (t) => {
  const c = await f.client()
  const sid = await sessionIdOf(c)
  await c.query('create table deferred_ext(x int unique deferrable initially deferred)')
  // The Execute succeeds (CommandComplete "INSERT 0 2"); the commit at Sync fails and rolls it back.
  await t.rejects(c.query('insert into deferred_ext values ($1), ($1)', [1]), { code: '23505' })
  t.same((await c.query('select count(*)::int as n from deferred_ext')).rows, [{ n: 0 }], 'nothing was committed')
  await c.end()
  const st = await statementsOf(t, sid)
  t.match(st[1]!, { statement: { text: 'insert into deferred_ext values ($1), ($1)', transaction: { kind: 'implicit' } }, outcome: { status: 'ok', command_tag: 'INSERT 0 2' } })
  const end = recordsOfType(await readValidAuditLog(f.auditPath), 'transaction.end').find((e) => e.session.id === sid)
  t.match(end?.transaction, { outcome: 'rolled_back', cause: 'commit_failed', first_seq: st[1]!.statement.seq, last_seq: st[1]!.statement.seq },
    'the transaction.end says the INSERT was rolled back at the commit')
})

/** FunctionCall ('F') with text arguments and a text result. */
function functionCall(oid: number, args: Array<string | null>): Buffer {
  const parts: Buffer[] = []
  const head = Buffer.alloc(4 + 2 + 2 + 2)
  head.writeUInt32BE(oid, 0)
  head.writeInt16BE(1, 4) // one format code for all arguments
  head.writeInt16BE(0, 6) // text
  head.writeInt16BE(args.length, 8)
  parts.push(head)
  for (const a of args) {
    const len = Buffer.alloc(4)
    if (a === null) {
      len.writeInt32BE(-1)
      parts.push(len)
    } else {
      const v = Buffer.from(a)
      len.writeInt32BE(v.length)
      parts.push(len, v)
    }
  }
  parts.push(Buffer.from([0, 0])) // text result
  return frame('F', Buffer.concat(parts))
}

t.test('FunctionCall (fastpath): one record per call, ok and error', async (t) => {
  const { w, sid } = await wire()
  const oids = (await w.query("select 'int4abs'::regproc::oid, 'int4div'::regproc::oid")).find((m) => m.name === 'dataRow')!.fields!
  const [absOid, divOid] = oids.map(Number) as [number, number]
  w.send(functionCall(absOid, ['-5']))
  t.same(shape(await w.untilReady()), ['functionCallResponse', 'readyForQuery(I)'])
  w.send(functionCall(divOid, ['1', '0']))
  t.same(shape(await w.untilReady()), ['error(22012)', 'readyForQuery(I)'])
  await w.end()
  const st = await statementsOf(t, sid)
  t.equal(st.length, 3)
  t.match(st[1]!, {
    statement: { protocol: 'function_call', function_oid: absOid, text: null, parameters: [{ format: 'text', value: '-5' }] },
    outcome: { status: 'ok', sqlstate: null },
  })
  t.match(st[2]!, {
    statement: { protocol: 'function_call', function_oid: divOid, parameters: [{ format: 'text', value: '1' }, { format: 'text', value: '0' }] },
    outcome: { status: 'error', sqlstate: '22012' },
  })
})

t.test('every record written in this file matches the v1 schema', async (t) => {
  const all = readValidAuditLog(f.auditPath)
  t.ok(all.filter((r) => r.type === 'statement').length > 20)
})
