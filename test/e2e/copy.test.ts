/**
 * COPY through the proxy (issue 2, item 9): COPY FROM STDIN and TO STDOUT
 * with the raw wire client (simple and extended protocol) and with psql,
 * CopyFail, and a 100k-row COPY in and out. Rows come from the COPY tag.
 */
import t from 'tap'
import { runProgram, type ProgramRun } from '../helpers/cli.js'
import { startFixture, type Fixture } from '../helpers/proxy.js'
import { readAuditLog, readValidAuditLog, recordsOfType, validateRecord, waitForRecords, type RecordOfType } from '../helpers/audit.js'
import { serialize, shape, WireClient } from '../helpers/wire.js'
import type { Test } from 'tap'

type StatementRec = RecordOfType<'statement'>

const f: Fixture = await startFixture()
t.teardown(() => f.stop())
await f.pg.query('create table items(id int primary key, name text); alter table items owner to app', [], 'appdb')

/** Records of one session after its end; asserts they match the v1 schema. */
async function sessionRecords(t: Test, match: (r: RecordOfType<'session.start'>) => boolean) {
  const recs = await waitForRecords(f.auditPath, (rs) => {
    const start = recordsOfType(rs, 'session.start').find(match)
    return !!start && rs.some((r) => r.type === 'session.end' && r.session.id === start.session.id)
  }, 30_000)
  const sid = recordsOfType(recs, 'session.start').find(match)!.session.id
  const mine = readAuditLog(f.auditPath).filter((r) => 'session' in r && r.session.id === sid)
  const problems = mine.flatMap((r) => validateRecord(r).map((p) => `${r.type}: ${p}`))
  t.same(problems, [], 'the records of this session match the v1 schema')
  return { sid, statements: recordsOfType(mine, 'statement'), end: recordsOfType(mine, 'session.end')[0]! }
}

function bySession(sid: string) {
  return (r: RecordOfType<'session.start'>) => r.session.id === sid
}

function byAppName(name: string) {
  return (r: RecordOfType<'session.start'>) => r.session.application_name === name
}

async function wire(): Promise<{ w: WireClient; sid: string }> {
  const w = await WireClient.connect({ port: f.proxy.port, token: await f.token() })
  const row = (await w.query('show pgwitness.session_id')).find((m) => m.name === 'dataRow')
  return { w, sid: row!.fields![0]! }
}

function rowsText(from: number, n: number): string {
  let s = ''
  for (let i = from; i < from + n; i++) s += `${i}\titem-${i}\n`
  return s
}

type Run = ProgramRun

/** psql through the proxy (async: the proxy runs in this process). */
async function psql(args: string[], input: string | null, appName: string): Promise<Run> {
  const env = { ...f.libpqEnv(await f.token()), PGAPPNAME: appName }
  return runProgram('psql', ['-X', '-v', 'ON_ERROR_STOP=1', ...args], env, input ?? '')
}

function afterShow(st: StatementRec[]): StatementRec[] {
  if (st[0]?.statement.text !== 'show pgwitness.session_id') throw new Error('first statement is not the SHOW')
  return st.slice(1)
}

t.test('raw COPY FROM STDIN, 1,000 rows in several CopyData messages → one record, rows 1000', async (t) => {
  const { w, sid } = await wire()
  w.send(serialize.query('copy items from stdin'))
  t.same(shape(await w.until((m) => m.name === 'copyInResponse')), ['copyInResponse'])
  for (let i = 0; i < 1000; i += 100) w.send(serialize.copyData(Buffer.from(rowsText(i, 100))))
  w.send(serialize.copyDone())
  t.same(shape(await w.untilReady()), ['commandComplete(COPY 1000)', 'readyForQuery(I)'])
  await w.end()
  const { statements } = await sessionRecords(t, bySession(sid))
  const st = afterShow(statements)
  t.equal(st.length, 1)
  t.match(st[0]!, {
    statement: { text: 'copy items from stdin', command: 'COPY', protocol: 'simple' },
    outcome: { status: 'ok', rows: 1000, command_tag: 'COPY 1000' },
  })
})

t.test('raw COPY TO STDOUT → rows from the tag; the data reaches the client intact', async (t) => {
  const { w, sid } = await wire()
  w.send(serialize.query('copy (select * from items order by id) to stdout'))
  const msgs = await w.untilReady()
  t.same(shape(msgs).filter((s) => !s.startsWith('copyData')), ['copyOutResponse', 'copyDone', 'commandComplete(COPY 1000)', 'readyForQuery(I)'])
  const data = Buffer.concat(msgs.filter((m) => m.name === 'copyData').map((m) => m.chunk!)).toString('utf8')
  t.equal(data, rowsText(0, 1000))
  await w.end()
  const { statements } = await sessionRecords(t, bySession(sid))
  const st = afterShow(statements)
  t.equal(st.length, 1)
  t.match(st[0]!, { statement: { command: 'COPY' }, outcome: { status: 'ok', rows: 1000, command_tag: 'COPY 1000' } })
})

t.test('CopyFail → the COPY is recorded as failed, nothing is inserted', async (t) => {
  const { w, sid } = await wire()
  w.send(serialize.query('copy items from stdin'))
  await w.until((m) => m.name === 'copyInResponse')
  w.send(serialize.copyData(Buffer.from(rowsText(5000, 10))), serialize.copyFail('client gave up'))
  const msgs = await w.untilReady()
  t.same(shape(msgs), ['error(57014)', 'readyForQuery(I)'])
  const after = (await w.query('select count(*) from items')).find((m) => m.name === 'dataRow')!
  t.same(after.fields, ['1000'], 'no row of the failed COPY was inserted')
  await w.end()
  const { statements } = await sessionRecords(t, bySession(sid))
  const st = afterShow(statements)
  t.equal(st.length, 2)
  t.match(st[0]!.statement, { text: 'copy items from stdin', command: 'COPY' })
  t.equal(st[0]!.outcome.sqlstate, '57014')
  t.not(st[0]!.outcome.status, 'ok', 'a COPY ended by CopyFail is not ok')
  t.ok(['error', 'cancelled'].includes(st[0]!.outcome.status), `status ${st[0]!.outcome.status}`)
  t.match(st[0]!.outcome.message, /client gave up/)
  t.equal(st[0]!.outcome.rows, null)
})

t.test('COPY FROM STDIN in the extended protocol (Parse/Bind/Execute, data, Sync)', async (t) => {
  const { w, sid } = await wire()
  w.send(serialize.parse({ text: 'copy items from stdin' }), serialize.bind({}), serialize.execute({}), serialize.flush())
  t.same(shape(await w.until((m) => m.name === 'copyInResponse')), ['parseComplete', 'bindComplete', 'copyInResponse'])
  w.send(serialize.copyData(Buffer.from(rowsText(2000, 50))), serialize.copyDone(), serialize.sync())
  t.same(shape(await w.untilReady()), ['commandComplete(COPY 50)', 'readyForQuery(I)'])
  await w.query('delete from items where id >= 2000')
  await w.end()
  const { statements } = await sessionRecords(t, bySession(sid))
  const st = afterShow(statements)
  t.match(st[0]!, { statement: { protocol: 'extended', command: 'COPY' }, outcome: { status: 'ok', rows: 50, command_tag: 'COPY 50' } })
  t.match(st[1]!, { outcome: { rows: 50, command_tag: 'DELETE 50' } })
})

t.test('psql: COPY FROM STDIN (piped) and \\copy to stdout', async (t) => {
  await f.pg.query('create table psql_items(id int, name text); alter table psql_items owner to app', [], 'appdb')
  const load = await psql(['-c', 'COPY psql_items FROM STDIN'], rowsText(0, 1000), 'copy-psql-in')
  t.equal(load.code, 0, load.stderr)
  t.match(load.stdout, /COPY 1000/)
  const dump = await psql(['-c', '\\copy (select * from psql_items order by id) to stdout'], null, 'copy-psql-out')
  t.equal(dump.code, 0, dump.stderr)
  t.equal(dump.stdout, rowsText(0, 1000))
  const r1 = await sessionRecords(t, byAppName('copy-psql-in'))
  t.same(r1.statements.map((s) => [s.statement.text, s.statement.command, s.outcome.rows, s.outcome.status]), [
    ['COPY psql_items FROM STDIN', 'COPY', 1000, 'ok'],
  ])
  const r2 = await sessionRecords(t, byAppName('copy-psql-out'))
  t.equal(r2.statements.length, 1)
  t.match(r2.statements[0]!, { statement: { command: 'COPY' }, outcome: { rows: 1000, command_tag: 'COPY 1000', status: 'ok' } })
  t.match(r2.statements[0]!.statement.text, /^COPY\s+\(\s*select \* from psql_items order by id\s*\)\s+TO STDOUT/i)
  t.equal(r1.end.reason, 'client_closed')
  t.ok(r1.end.bytes_in > Buffer.byteLength(rowsText(0, 1000)), 'bytes_in counts the COPY data')
  t.ok(r2.end.bytes_out > Buffer.byteLength(rowsText(0, 1000)), 'bytes_out counts the COPY data')
})

t.test('a 100k-row COPY in and out through the proxy', async (t) => {
  await f.pg.query('create table big_copy(id int, name text); alter table big_copy owner to app', [], 'appdb')
  const n = 100_000
  const load = await psql(['-c', 'COPY big_copy FROM STDIN'], rowsText(0, n), 'copy-100k-in')
  t.equal(load.code, 0, load.stderr)
  t.match(load.stdout, /COPY 100000/)
  const count = await f.pg.query('select count(*)::int as n, sum(id)::bigint as s from big_copy', [], 'appdb')
  t.same(count, [{ n, s: String(((n - 1) * n) / 2) }], 'every row arrived intact')
  const dump = await psql(['-c', 'COPY big_copy TO STDOUT'], null, 'copy-100k-out')
  t.equal(dump.code, 0, dump.stderr)
  t.equal(dump.stdout.split('\n').length - 1, n)
  const rin = await sessionRecords(t, byAppName('copy-100k-in'))
  t.same(rin.statements.map((s) => [s.statement.command, s.outcome.rows, s.outcome.command_tag]), [['COPY', n, `COPY ${n}`]])
  const rout = await sessionRecords(t, byAppName('copy-100k-out'))
  t.same(rout.statements.map((s) => [s.statement.command, s.outcome.rows, s.outcome.command_tag]), [['COPY', n, `COPY ${n}`]])
})

t.test('every record written in this file matches the v1 schema', async (t) => {
  const all = readValidAuditLog(f.auditPath)
  t.ok(all.length > 10)
})
