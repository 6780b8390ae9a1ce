/**
 * StatementTracker fed directly: decoded frontend messages in, backend
 * message types/bodies in, ObservedStatements out. Covers pipelines, errors
 * mid-pipeline (skipped statements are not reported), suspended portals,
 * multi-statement simple Queries with an error, transaction state, and the
 * bookkeeping (pending, abandon).
 */
import t from 'tap'
import { loadSqlParser } from '../../src/classify/split.js'
import { capText, rowsOfTag, StatementTracker, type ObservedStatement, type TransactionEnd } from '../../src/session/statement-tracker.js'
import { nowMicros } from '../../src/util/time.js'

await loadSqlParser()

const BE = {
  ParseComplete: 0x31, BindComplete: 0x32, CloseComplete: 0x33, CommandComplete: 0x43, DataRow: 0x44,
  EmptyQuery: 0x49, NoData: 0x6e, ParameterDescription: 0x74, RowDescription: 0x54, PortalSuspended: 0x73,
  ReadyForQuery: 0x5a, FunctionCallResponse: 0x56, NoticeResponse: 0x4e, CopyInResponse: 0x47,
  CopyOutResponse: 0x48, CopyData: 0x64, CopyDone: 0x63, ParameterStatus: 0x53, NotificationResponse: 0x41,
} as const

function setup(maxStatementBytes = 65536) {
  const out: ObservedStatement[] = []
  const ends: TransactionEnd[] = []
  const tr = new StatementTracker({ maxStatementBytes, onStatement: (s) => out.push(s), onTransactionEnd: (e) => ends.push(e) })
  const be = {
    parseComplete: () => tr.backend(BE.ParseComplete, null),
    bindComplete: () => tr.backend(BE.BindComplete, null),
    closeComplete: () => tr.backend(BE.CloseComplete, null),
    noData: () => tr.backend(BE.NoData, null),
    paramDesc: () => tr.backend(BE.ParameterDescription, null),
    rowDesc: () => tr.backend(BE.RowDescription, null),
    rows: (n: number) => {
      for (let i = 0; i < n; i++) tr.backend(BE.DataRow, null)
    },
    complete: (tag: string) => tr.backend(BE.CommandComplete, Buffer.from(tag + '\0')),
    empty: () => tr.backend(BE.EmptyQuery, null),
    suspended: () => tr.backend(BE.PortalSuspended, null),
    ready: (status: 'I' | 'T' | 'E' = 'I') => tr.backend(BE.ReadyForQuery, Buffer.from(status)),
    error: (code: string, message = 'boom') => tr.error({ code, message }),
    notice: () => tr.backend(BE.NoticeResponse, null),
  }
  return { tr, be, out, ends }
}

const P = (v: string) => ({ format: 'text' as const, value: v })

function busyWaitMicros(us: number): void {
  const end = nowMicros() + us
  while (nowMicros() < end) { /* spin */ }
}

t.test('rowsOfTag and capText', async (t) => {
  t.equal(rowsOfTag('INSERT 0 5'), 5)
  t.equal(rowsOfTag('SELECT 3'), 3)
  t.equal(rowsOfTag('UPDATE 0'), 0)
  t.equal(rowsOfTag('DELETE 7'), 7)
  t.equal(rowsOfTag('COPY 1000'), 1000)
  t.equal(rowsOfTag('MERGE 2'), 2)
  t.equal(rowsOfTag('FETCH 4'), 4)
  t.equal(rowsOfTag('MOVE 9'), 9)
  t.equal(rowsOfTag('CREATE TABLE'), null)
  t.equal(rowsOfTag('BEGIN'), null)
  t.equal(rowsOfTag('SET'), null)
  t.same(capText('hello', 10), { text: 'hello', truncated: false })
  t.same(capText('hello', 5), { text: 'hello', truncated: false })
  t.same(capText('hello', 4), { text: 'hell', truncated: true })
  // Never splits a multi-byte character: "é" is 2 bytes.
  t.same(capText('aéb', 2), { text: 'a', truncated: true })
  t.same(capText('aéb', 3), { text: 'aé', truncated: true })
  const r = capText('€'.repeat(10), 7) // 3 bytes each
  t.same(r, { text: '€€', truncated: true })
})

t.test('simple Query: one statement, rows from the tag, pending returns to 0', async (t) => {
  const { tr, be, out } = setup()
  tr.query('select 1', false)
  t.equal(tr.pending, 1)
  be.rowDesc()
  be.rows(1)
  be.complete('SELECT 1')
  be.ready()
  t.equal(tr.pending, 0)
  t.equal(out.length, 1)
  t.match(out[0]!, {
    protocol: 'simple', text: 'select 1', command: 'SELECT', status: 'ok', commandTag: 'SELECT 1', rows: 1,
    sqlstate: null, message: null, inTransaction: false, parameters: null, preparedName: null, portal: null, textTruncated: false,
  })
  t.ok(out[0]!.durationUs! >= 0)
})

t.test('multi-statement Query: one statement per part; an error skips the rest', async (t) => {
  const { tr, be, out } = setup()
  tr.query('create table a(x int); insert into a values (1),(2); select * from a', false)
  be.complete('CREATE TABLE')
  be.complete('INSERT 0 2')
  be.rowDesc()
  be.rows(2)
  be.complete('SELECT 2')
  be.ready()
  t.same(out.map((s) => [s.text, s.command, s.commandTag, s.rows]), [
    ['create table a(x int);', 'CREATE TABLE', 'CREATE TABLE', null],
    [' insert into a values (1),(2);', 'INSERT', 'INSERT 0 2', 2],
    [' select * from a', 'SELECT', 'SELECT 2', 2],
  ], 'the texts partition the Query exactly, each with its own ";"')
  out.length = 0
  tr.query('select 1; select 1/0; select 2', false)
  be.rowDesc()
  be.rows(1)
  be.complete('SELECT 1')
  be.rowDesc()
  be.error('22012', 'division by zero')
  be.ready()
  t.same(out.map((s) => [s.text, s.status, s.sqlstate]), [
    ['select 1;', 'ok', null],
    [' select 1/0;', 'error', '22012'],
  ], 'no statement for the skipped "select 2"')
  t.equal(out[1]!.message, 'division by zero')
  t.equal(out[1]!.rows, null)
  t.equal(tr.pending, 0)
})

t.test('a Query that does not parse: one UNKNOWN statement with the error', async (t) => {
  const { tr, be, out } = setup()
  tr.query('select 1; selec 2', false)
  be.error('42601', 'syntax error at or near "selec"')
  be.ready()
  t.equal(out.length, 1)
  t.match(out[0]!, { text: 'select 1; selec 2', command: 'UNKNOWN', status: 'error', sqlstate: '42601' })
})

t.test('empty Query and a Query cut short by the proxy (truncated text)', async (t) => {
  const { tr, be, out } = setup()
  tr.query('', false)
  be.empty()
  be.ready()
  t.match(out[0]!, { text: '', command: 'EMPTY QUERY', status: 'ok', rows: null, commandTag: null })
  tr.query('select length(\'xxxx', true)
  be.rowDesc()
  be.rows(1)
  be.complete('SELECT 1')
  be.ready()
  // Only a prefix was kept: the proxy cannot split it, so the server's answer names the command.
  t.match(out[1]!, { text: "select length('xxxx", textTruncated: true, command: 'SELECT', split: 'server', status: 'ok', rows: 1 })
})

t.test('maxStatementBytes caps the recorded text', async (t) => {
  const { tr, be, out } = setup(16)
  tr.query("select 'abcdefghijklmnopqrstuvwxyz'; select 1", false)
  be.complete('SELECT 1')
  be.complete('SELECT 1')
  be.ready()
  t.match(out[0]!, { text: "select 'abcdefgh", textTruncated: true, command: 'SELECT' })
  t.match(out[1]!, { text: 'select 1', textTruncated: false })
})

t.test('transaction state: BEGIN/COMMIT tags and ReadyForQuery status', async (t) => {
  const { tr, be, out } = setup()
  tr.query('begin; insert into a values (1); commit; select 1', false)
  be.complete('BEGIN')
  be.complete('INSERT 0 1')
  be.complete('COMMIT')
  be.complete('SELECT 1')
  be.ready('I')
  t.same(out.map((s) => s.inTransaction), [false, true, true, false])
  out.length = 0
  tr.query('begin', false)
  be.complete('BEGIN')
  be.ready('T')
  tr.query('select 1/0', false)
  be.error('22012')
  be.ready('E')
  tr.query('select 1', false)
  be.error('25P02')
  be.ready('E')
  tr.query('rollback', false)
  be.complete('ROLLBACK')
  be.ready('I')
  tr.query('select 2', false)
  be.complete('SELECT 1')
  be.ready('I')
  t.same(out.map((s) => [s.text, s.inTransaction, s.status]), [
    ['begin', false, 'ok'],
    ['select 1/0', true, 'error'],
    ['select 1', true, 'error'],
    ['rollback', true, 'ok'],
    ['select 2', false, 'ok'],
  ])
})

t.test('pipelined simple Queries are answered in order', async (t) => {
  const { tr, be, out } = setup()
  tr.query('select 1/0; select 5', false)
  tr.query('select 2', false)
  tr.query('select 3', false)
  t.equal(tr.pending, 3)
  be.error('22012')
  be.ready()
  be.rows(1)
  be.complete('SELECT 1')
  be.ready()
  be.rows(1)
  be.complete('SELECT 1')
  be.ready()
  t.same(out.map((s) => [s.text, s.status]), [['select 1/0;', 'error'], ['select 2', 'ok'], ['select 3', 'ok']])
  t.equal(tr.pending, 0)
})

t.test('extended pipeline: three Parse/Bind/Execute, one Sync; the 2nd Execute fails → the 3rd is not reported', async (t) => {
  const { tr, be, out } = setup()
  tr.parse('', 'select $1::int as a', false)
  tr.bind('', '', [P('1')])
  tr.execute('')
  tr.parse('', 'select 1/x from zero', false)
  tr.bind('', '', [])
  tr.execute('')
  tr.parse('', 'select 3', false)
  tr.bind('', '', [])
  tr.execute('')
  tr.sync()
  t.equal(tr.pending, 10)
  be.parseComplete()
  be.bindComplete()
  be.rows(1)
  be.complete('SELECT 1')
  be.parseComplete()
  be.bindComplete()
  be.error('22012', 'division by zero')
  be.ready()
  t.equal(tr.pending, 0)
  t.same(out.map((s) => [s.text, s.status, s.rows, s.sqlstate]), [
    ['select $1::int as a', 'ok', 1, null],
    ['select 1/x from zero', 'error', null, '22012'],
  ])
  t.match(out[0]!, { protocol: 'extended', preparedName: '', portal: '', parameters: [P('1')], commandTag: 'SELECT 1' })
  // After the Sync the next batch is tracked normally.
  tr.parse('', 'select 4', false)
  tr.bind('', '', [])
  tr.execute('')
  tr.sync()
  be.parseComplete()
  be.bindComplete()
  be.rows(1)
  be.complete('SELECT 1')
  be.ready()
  t.equal(out[2]!.text, 'select 4')
  t.equal(out.length, 3)
})

t.test('Describe and Flush in between; NoData; named statements reused', async (t) => {
  const { tr, be, out } = setup()
  tr.parse('s1', 'select g, $1::text from generate_series(1, 3) g', false)
  tr.describe()
  // (Flush: nothing for the tracker)
  be.parseComplete()
  be.paramDesc()
  be.rowDesc()
  t.equal(tr.pending, 0)
  tr.bind('p1', 's1', [P('L')])
  tr.describe()
  be.bindComplete()
  be.rowDesc()
  tr.execute('p1')
  tr.sync()
  be.rows(3)
  be.complete('SELECT 3')
  be.ready()
  tr.bind('', 's1', [P('M')])
  tr.execute('')
  tr.parse('s2', 'set application_name = x', false)
  tr.describe()
  tr.bind('', 's2', [])
  tr.describe()
  tr.execute('')
  tr.sync()
  be.bindComplete()
  be.rows(3)
  be.complete('SELECT 3')
  be.parseComplete()
  be.paramDesc()
  be.noData()
  be.bindComplete()
  be.noData()
  be.complete('SET')
  be.ready()
  t.equal(tr.pending, 0)
  t.same(out.map((s) => [s.text, s.preparedName, s.portal, s.parameters, s.rows, s.commandTag]), [
    ['select g, $1::text from generate_series(1, 3) g', 's1', 'p1', [P('L')], 3, 'SELECT 3'],
    ['select g, $1::text from generate_series(1, 3) g', 's1', '', [P('M')], 3, 'SELECT 3'],
    ['set application_name = x', 's2', '', [], null, 'SET'],
  ])
  t.equal(out[2]!.command, 'SET')
})

t.test('Close statement and portal produce no statements', async (t) => {
  const { tr, be, out } = setup()
  tr.parse('s', 'select 1', false)
  tr.close('S', 's')
  tr.close('P', 'nope')
  tr.sync()
  be.parseComplete()
  be.closeComplete()
  be.closeComplete()
  be.ready()
  t.equal(out.length, 0)
  t.equal(tr.pending, 0)
  // A Bind of the closed statement fails: an error attempt (text unknown to the tracker now).
  tr.bind('', 's', [])
  tr.execute('')
  tr.sync()
  be.error('26000', 'prepared statement "s" does not exist')
  be.ready()
  t.equal(out.length, 1)
  t.match(out[0]!, { status: 'error', sqlstate: '26000', preparedName: 's' })
})

t.test('a Bind error is reported with its parameters and start time; the rest up to Sync is skipped', async (t) => {
  const { tr, be, out } = setup()
  tr.parse('pi', 'select $1::int', false)
  tr.bind('', 'pi', [P('x7')])
  tr.describe()
  tr.execute('')
  tr.bind('', 'pi', [P('8')])
  tr.execute('')
  tr.sync()
  be.parseComplete()
  const beforeError = nowMicros()
  busyWaitMicros(2000)
  be.error('22P02', 'invalid input syntax for type integer: "x7"')
  be.ready()
  t.equal(tr.pending, 0)
  t.equal(out.length, 1)
  t.match(out[0]!, { text: 'select $1::int', preparedName: 'pi', portal: '', parameters: [P('x7')], status: 'error', sqlstate: '22P02' })
  // The statement was attempted when the Bind went out, before the error came back.
  t.ok(out[0]!.durationUs !== null && out[0]!.durationUs >= 0, `durationUs (${out[0]!.durationUs}) is not negative`)
  t.ok(out[0]!.startedAtUs <= beforeError, 'startedAtUs is when the Bind was sent, not when the error arrived')
})

t.test('a Parse error is one statement (UNKNOWN); the Bind/Describe/Execute after it are skipped', async (t) => {
  const { tr, be, out } = setup()
  tr.parse('', 'selec 1', false)
  tr.bind('', '', [])
  tr.describe()
  tr.execute('')
  tr.sync()
  const beforeError = nowMicros()
  busyWaitMicros(2000)
  be.error('42601', 'syntax error at or near "selec"')
  be.ready()
  t.equal(out.length, 1)
  t.match(out[0]!, { text: 'selec 1', command: 'UNKNOWN', protocol: 'extended', status: 'error', sqlstate: '42601' })
  t.ok(out[0]!.durationUs !== null && out[0]!.durationUs >= 0, `durationUs (${out[0]!.durationUs}) is not negative`)
  t.ok(out[0]!.startedAtUs <= beforeError, 'startedAtUs is when the Parse was sent')
  t.equal(tr.pending, 0)
})

t.test('an error after Flush, before the Sync is sent: later messages up to Sync are skipped too', async (t) => {
  const { tr, be, out } = setup()
  tr.parse('', 'select 1/x from zero', false)
  tr.bind('', '', [])
  tr.execute('')
  be.parseComplete()
  be.bindComplete()
  be.error('22012')
  // The client had not seen the error yet and goes on; the server ignores these until Sync.
  tr.parse('', 'select 2', false)
  tr.bind('', '', [])
  tr.execute('')
  tr.sync()
  be.ready()
  t.same(out.map((s) => [s.text, s.status]), [['select 1/x from zero', 'error']])
  t.equal(tr.pending, 0)
})

t.test('suspended portal: one record per Execute, rows per Execute, the total on the last', async (t) => {
  const { tr, be, out } = setup()
  tr.query('begin', false)
  be.complete('BEGIN')
  be.ready('T')
  tr.parse('', 'select g from generate_series(1, 10) g', false)
  tr.bind('c', '', [])
  tr.execute('c')
  tr.sync()
  be.parseComplete()
  be.bindComplete()
  be.rows(3)
  be.suspended()
  be.ready('T')
  tr.execute('c')
  be.rows(3)
  be.suspended()
  tr.execute('c')
  tr.sync()
  be.rows(4)
  be.complete('SELECT 4')
  be.ready('T')
  const sel = out.filter((s) => s.portal === 'c')
  t.same(sel.map((s) => [s.rows, s.suspended, s.commandTag, s.portalRows]), [
    [3, true, null, null],
    [3, true, null, null],
    [4, false, 'SELECT 4', 10],
  ])
  t.match(sel[2]!, { text: 'select g from generate_series(1, 10) g', status: 'ok', inTransaction: true, transaction: { kind: 'explicit' } })
})

t.test('suspended portal: several Executes pipelined before any PortalSuspended → one record each', async (t) => {
  const { tr, be, out } = setup()
  tr.query('begin', false)
  be.complete('BEGIN')
  be.ready('T')
  tr.parse('', 'select g from generate_series(1, 10) g', false)
  tr.bind('c', '', [])
  tr.execute('c')
  tr.execute('c')
  tr.execute('c')
  tr.sync()
  be.parseComplete()
  be.bindComplete()
  be.rows(4)
  be.suspended()
  be.rows(4)
  be.suspended()
  be.rows(2)
  be.complete('SELECT 2')
  be.ready('T')
  tr.query('commit', false)
  be.complete('COMMIT')
  be.ready('I')
  const sel = out.filter((s) => s.portal === 'c')
  t.same(sel.map((s) => [s.rows, s.portalRows]), [[4, null], [4, null], [2, 10]])
})

t.test('a portal closed or re-bound while its Execute runs: the Execute keeps what it started with', async (t) => {
  const { tr, be, out } = setup()
  tr.parse('s1', 'select pg_sleep(1)', false)
  tr.bind('p', 's1', [])
  tr.execute('p')
  tr.close('P', 'p')
  tr.parse('s2', 'delete from t', false)
  tr.bind('p', 's2', [])
  tr.execute('p')
  tr.sync()
  be.parseComplete()
  be.bindComplete()
  be.rows(1)
  be.complete('SELECT 1')
  be.closeComplete()
  be.parseComplete()
  be.bindComplete()
  be.complete('DELETE 3')
  be.ready()
  t.same(out.map((s) => [s.text, s.preparedName, s.portal, s.commandTag]), [
    ['select pg_sleep(1)', 's1', 'p', 'SELECT 1'],
    ['delete from t', 's2', 'p', 'DELETE 3'],
  ], 'one record per execution, each with its own statement')
})

t.test('a refused re-Parse of a name changes nothing: the Execute runs what the server has', async (t) => {
  const { tr, be, out } = setup()
  tr.parse('s1', 'DELETE FROM t', false)
  tr.sync()
  be.parseComplete()
  be.ready()
  tr.parse('s1', 'SELECT 1', false)
  tr.sync()
  be.error('42P05', 'prepared statement "s1" already exists')
  be.ready()
  tr.bind('', 's1', [])
  tr.execute('')
  tr.sync()
  be.bindComplete()
  be.complete('DELETE 2')
  be.ready()
  t.same(out.map((s) => [s.text, s.command, s.status, s.commandTag]), [
    ['SELECT 1', 'SELECT', 'error', null],
    ['DELETE FROM t', 'DELETE', 'ok', 'DELETE 2'],
  ])
  t.same(out[1]!.classes, ['WRITE'])
})

t.test('empty statement in the extended protocol', async (t) => {
  const { tr, be, out } = setup()
  tr.parse('', '', false)
  tr.bind('', '', [])
  tr.execute('')
  tr.sync()
  be.parseComplete()
  be.bindComplete()
  be.empty()
  be.ready()
  t.equal(out.length, 1)
  t.match(out[0]!, { text: '', command: 'EMPTY QUERY', status: 'ok', rows: null })
})

t.test('COPY inside a simple Query: rows from the COPY tag', async (t) => {
  const { tr, be, out } = setup()
  tr.query('copy a from stdin', false)
  tr.backend(BE.CopyInResponse, null)
  be.complete('COPY 1000')
  be.ready()
  tr.query('copy a to stdout', false)
  tr.backend(BE.CopyOutResponse, null)
  for (let i = 0; i < 3; i++) tr.backend(BE.CopyData, null)
  tr.backend(BE.CopyDone, null)
  be.complete('COPY 3')
  be.ready()
  t.same(out.map((s) => [s.command, s.rows, s.commandTag]), [['COPY', 1000, 'COPY 1000'], ['COPY', 3, 'COPY 3']])
})

t.test('FunctionCall: ok and error outcomes', async (t) => {
  const { tr, be, out } = setup()
  tr.functionCall(1598, [P('1')])
  tr.backend(BE.FunctionCallResponse, null)
  be.ready()
  tr.functionCall(1598, null)
  be.error('42883', 'function does not exist')
  be.ready()
  t.same(out.map((s) => [s.protocol, s.functionOid, s.text, s.command, s.status]), [
    ['function_call', 1598, null, 'FUNCTION CALL', 'ok'],
    ['function_call', 1598, null, 'FUNCTION CALL', 'error'],
  ])
  t.same(out[0]!.parameters, [P('1')])
})

t.test('cancel (57014) is status cancelled; asynchronous messages are ignored', async (t) => {
  const { tr, be, out } = setup()
  be.error('57P01', 'terminating connection due to administrator command') // nothing expected: ignored
  t.equal(out.length, 0)
  tr.query('select pg_sleep(10)', false)
  be.notice()
  tr.backend(BE.ParameterStatus, null)
  tr.backend(BE.NotificationResponse, null)
  be.rowDesc()
  be.error('57014', 'canceling statement due to user request')
  be.ready()
  t.equal(out.length, 1)
  t.match(out[0]!, { status: 'cancelled', sqlstate: '57014' })
})

t.test('an error at the implicit COMMIT of a Query (deferred constraint) is the statement\'s outcome', async (t) => {
  const { tr, be, out } = setup()
  // PostgreSQL commits the implicit transaction of a simple Query before it
  // sends the last statement's CommandComplete, so the error comes instead of it.
  tr.query('insert into d values (1); insert into d values (1)', false)
  be.complete('INSERT 0 1')
  be.error('23505', 'duplicate key value violates unique constraint "d_x_key"')
  be.ready()
  t.equal(tr.pending, 0)
  t.same(out.map((s) => [s.status, s.sqlstate]), [['ok', null], ['error', '23505']])
})

t.test('an error at the implicit COMMIT of a Sync (extended) is not lost', async (t) => {
  const { tr, be, out, ends } = setup()
  // In the extended protocol the Execute completes (CommandComplete) and the
  // implicit transaction commits at Sync: a deferred constraint fails there,
  // after the statement's own success, and the INSERT is rolled back.
  tr.parse('', 'insert into d values (1),(1)', false)
  tr.bind('', '', [])
  tr.execute('')
  tr.sync()
  be.parseComplete()
  be.bindComplete()
  be.complete('INSERT 0 2')
  be.error('23505', 'duplicate key value violates unique constraint "d_x_key"')
  be.ready()
  t.equal(tr.pending, 0)
  t.match(out, [{ status: 'ok', commandTag: 'INSERT 0 2', transaction: { kind: 'implicit' } }])
  t.match(ends, [{ outcome: 'rolled_back', cause: 'commit_failed', firstSeq: 1, lastSeq: 1 }], 'the transaction.end says the INSERT was rolled back')
})

t.test('abandon: statements sent but never answered end as unknown', async (t) => {
  const { tr, be, out } = setup()
  tr.query('select 1; select 2', false)
  be.complete('SELECT 1')
  tr.parse('', 'select 3', false)
  tr.bind('', '', [])
  tr.execute('')
  tr.sync()
  tr.abandon()
  t.equal(tr.pending, 0)
  t.same(out.map((s) => [s.text, s.status, s.durationUs === null]), [
    ['select 1;', 'ok', false],
    [' select 2', 'unknown', true],
    ['select 3', 'unknown', true],
  ])
})

t.test('a long pipeline keeps order and memory bookkeeping (compaction past 1024 entries)', async (t) => {
  const { tr, be, out } = setup()
  const n = 1500
  for (let i = 0; i < n; i++) {
    tr.parse('', `select ${i}`, false)
    tr.bind('', '', [])
    tr.execute('')
  }
  tr.sync()
  for (let i = 0; i < n; i++) {
    be.parseComplete()
    be.bindComplete()
    be.rows(1)
    be.complete('SELECT 1')
  }
  be.ready()
  t.equal(out.length, n)
  t.equal(out[0]!.text, 'select 0')
  t.equal(out[n - 1]!.text, `select ${n - 1}`)
  t.ok(out.every((s, i) => s.text === `select ${i}` && s.rows === 1))
  t.equal(tr.pending, 0)
})
