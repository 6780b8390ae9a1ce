/**
 * Real libpq clients through the proxy (issue 2, "Done when"): psql with a
 * token as PGPASSWORD and sslmode=require runs DDL, DML, a multi-statement
 * query, COPY in and out, a failing statement and \q; pgbench initializes
 * and runs select-only and TPC-B-like scripts in simple, extended and
 * prepared mode without errors, with one statement record per executed
 * statement.
 */
import t from 'tap'
import { runProgram, type ProgramRun } from '../helpers/cli.js'
import type { Test } from 'tap'
import { startFixture, type Fixture } from '../helpers/proxy.js'
import { readAuditLog, readValidAuditLog, recordsOfType, validateRecord, waitForRecords, type RecordOfType } from '../helpers/audit.js'

type StartRec = RecordOfType<'session.start'>

const f: Fixture = await startFixture()
t.teardown(() => f.stop())

type Run = ProgramRun

/** Run a libpq program through the proxy (async: the proxy runs in this process). */
async function run(cmd: string, args: string[], opts: { input?: string; appName: string; token?: string }): Promise<Run> {
  const env = { ...f.libpqEnv(opts.token ?? (await f.token())), PGAPPNAME: opts.appName }
  return runProgram(cmd, args, env, opts.input ?? '')
}

/**
 * All sessions started with this application_name, once each has ended;
 * asserts their records match the v1 schema.
 */
async function sessionsOf(t: Test, appName: string, expectSessions: number) {
  await waitForRecords(f.auditPath, (rs) => {
    const ids = recordsOfType(rs, 'session.start').filter((r) => r.session.application_name === appName).map((r) => r.session.id)
    const ended = new Set(recordsOfType(rs, 'session.end').map((r) => r.session.id))
    return ids.length >= expectSessions && ids.every((id) => ended.has(id))
  }, 30_000)
  const all = readAuditLog(f.auditPath)
  const starts = recordsOfType(all, 'session.start').filter((r) => r.session.application_name === appName)
  const ids = new Set(starts.map((r) => r.session.id))
  const mine = all.filter((r) => 'session' in r && ids.has(r.session.id))
  const problems = mine.flatMap((r) => validateRecord(r).map((p) => `${r.type}: ${p}`))
  t.same(problems, [], `the records of "${appName}" match the v1 schema`)
  return starts.map((start: StartRec) => ({
    start,
    statements: recordsOfType(mine, 'statement').filter((r) => r.session.id === start.session.id),
    end: recordsOfType(mine, 'session.end').find((r) => r.session.id === start.session.id)!,
  }))
}

t.test('psql: DDL, DML, a multi-statement query, COPY in and out, a failing statement, \\q', async (t) => {
  const script = [
    'create table people(id int primary key, name text);',
    "insert into people values (1, 'ann'), (2, 'bob');",
    "update people set name = 'bobby' where id = 2;",
    'select id, name from people order by id;',
    // `\;` makes psql send both statements as ONE Query message.
    "select count(*) as n from people \\; select 'multi' as tag;",
    '\\copy people from stdin',
    '3\tcat',
    '4\tdan',
    '\\.',
    '\\copy people to stdout',
    'select 1/0;',
    'delete from people where id = 4;',
    '\\q',
    'select 999;',
    '',
  ].join('\n')
  const token = await f.token()
  const r = await run('psql', ['-X', '-At', '-v', 'ON_ERROR_STOP=0', '-f', '-'], { input: script, appName: 'psql-done-when', token })
  t.equal(r.code, 0, `psql exit code (stderr: ${r.stderr})`)
  t.match(r.stderr, /division by zero/)
  t.match(r.stdout, /1\|ann\n2\|bobby/)
  t.match(r.stdout, /\nmulti\n/)
  t.match(r.stdout, /1\tann\n2\tbobby\n3\tcat\n4\tdan/)
  t.notMatch(r.stdout, /999/, 'nothing runs after \\q')

  const [s] = await sessionsOf(t, 'psql-done-when', 1)
  const { start, statements, end } = s!
  t.match(start, { identity: { subject: 'spiffe://test.local/ns/billing/sa/api', method: 'jwt' }, upstream: { role: 'app', database: 'appdb' } })
  t.ok(start.connection?.tls, 'the client connection used TLS (sslmode=require)')
  const summary = statements.map((x) => [x.statement.command, x.outcome.status, x.outcome.rows, x.outcome.sqlstate])
  t.same(summary, [
    ['CREATE TABLE', 'ok', null, null],
    ['INSERT', 'ok', 2, null],
    ['UPDATE', 'ok', 1, null],
    ['SELECT', 'ok', 2, null],
    ['SELECT', 'ok', 1, null],
    ['SELECT', 'ok', 1, null],
    ['COPY', 'ok', 2, null],
    ['COPY', 'ok', 4, null],
    ['SELECT', 'error', null, '22012'],
    ['DELETE', 'ok', 1, null],
  ])
  t.same(statements.map((x) => x.statement.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
  t.equal(statements[4]!.statement.text, 'select count(*) as n from people ;')
  t.equal(statements[5]!.statement.text, " select 'multi' as tag;")
  for (const x of statements) {
    t.equal(x.identity.subject, 'spiffe://test.local/ns/billing/sa/api')
    t.equal(x.session.id, start.session.id)
    t.equal(x.upstream.backend_pid, start.upstream.backend_pid)
    t.equal(x.upstream.server_session_id, start.upstream.server_session_id)
    t.equal(x.statement.protocol, 'simple')
  }
  t.ok(start.upstream.backend_pid > 0)
  t.match(start.upstream.server_session_id, /^[0-9a-f]+\.[0-9a-f]+$/)
  t.match(end, { reason: 'client_closed', statements: 10 })
  t.ok(end.bytes_in > 0 && end.bytes_out > 0)
})

t.test('psql -c with a multi-statement string is one Query, recorded per statement', async (t) => {
  const r = await run('psql', ['-X', '-At', '-c', "insert into people values (10, 'x'); select count(*) from people"], { appName: 'psql-c-multi' })
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout.trim().split('\n').pop(), '4', r.stdout)
  const [s] = await sessionsOf(t, 'psql-c-multi', 1)
  t.same(s!.statements.map((x) => [x.statement.text, x.outcome.command_tag]), [
    ["insert into people values (10, 'x');", 'INSERT 0 1'],
    [' select count(*) from people', 'SELECT 1'],
  ])
})

// ---- pgbench ----------------------------------------------------------

const SCRIPT_TEXT = /^(BEGIN|END|UPDATE pgbench_(accounts|tellers|branches) |SELECT abalance FROM pgbench_accounts |INSERT INTO pgbench_history )/

t.test('pgbench: initialize through the proxy', async (t) => {
  const r = await run('pgbench', ['-i', '-s', '1', '-q'], { appName: 'pgbench-init' })
  t.equal(r.code, 0, r.stderr)
  t.match(r.stderr, /done in/)
  const sessions = await sessionsOf(t, 'pgbench-init', 1)
  const st = sessions.flatMap((s) => s.statements)
  t.same(st.filter((x) => x.outcome.status !== 'ok').map((x) => [x.statement.text, x.outcome.sqlstate]), [], 'no failed statement')
  const copies = st.filter((x) => x.statement.command === 'COPY')
  t.ok(copies.some((x) => x.outcome.rows === 100000), 'the 100,000 pgbench_accounts rows were COPYed through the proxy')
  const n = await f.pg.query('select count(*)::int as n from pgbench_accounts', [], 'appdb')
  t.same(n, [{ n: 100000 }])
})

for (const mode of ['simple', 'extended', 'prepared'] as const) {
  t.test(`pgbench -M ${mode}: select-only and TPC-B-like, one record per executed statement`, async (t) => {
    for (const kind of ['select-only', 'tpcb'] as const) {
      const appName = `pgbench-${mode}-${kind}`
      const args = ['-M', mode, '-c', '2', '-j', '1', '-t', '50', '-n', ...(kind === 'select-only' ? ['-S'] : [])]
      const r = await run('pgbench', args, { appName })
      t.equal(r.code, 0, `${appName}: exit code (stderr: ${r.stderr})`)
      t.match(r.stdout, /number of transactions actually processed: 100\/100/, appName)
      t.match(r.stdout, /number of failed transactions: 0 /, appName)

      // One setup connection (pgbench checks the tables) plus one per client.
      const sessions = await sessionsOf(t, appName, 3)
      const workers = sessions.filter((s) => s.statements.some((x) => SCRIPT_TEXT.test(x.statement.text ?? '')))
      t.equal(workers.length, 2, `${appName}: two client sessions ran the script`)
      const perTxn = kind === 'select-only' ? 1 : 7
      for (const w of workers) {
        t.equal(w.statements.length, 50 * perTxn, `${appName}: ${50 * perTxn} statement records for 50 transactions`)
        t.ok(w.statements.every((x) => SCRIPT_TEXT.test(x.statement.text ?? '')), `${appName}: only script statements`)
        t.same(w.statements.map((x) => x.statement.seq), w.statements.map((_, i) => i + 1))
        t.equal(w.end.statements, 50 * perTxn)
        t.equal(w.end.reason, 'client_closed')
      }
      const all = workers.flatMap((w) => w.statements)
      t.equal(all.length, 100 * perTxn, `${appName}: records equal statements executed`)
      t.same(all.filter((x) => x.outcome.status !== 'ok').map((x) => [x.statement.text, x.outcome.sqlstate]), [], `${appName}: no errors`)
      const selects = all.filter((x) => x.statement.command === 'SELECT')
      t.equal(selects.length, 100, `${appName}: exactly 100 SELECT records`)
      t.ok(selects.every((x) => x.outcome.rows === 1))
      if (kind === 'tpcb') {
        const count = (cmd: string) => all.filter((x) => x.statement.command === cmd).length
        t.same([count('BEGIN'), count('UPDATE'), count('INSERT'), count('COMMIT')], [100, 300, 100, 100], `${appName}: BEGIN, 3 UPDATEs, INSERT, END per transaction`)
        t.ok(all.filter((x) => x.statement.command === 'UPDATE' || x.statement.command === 'INSERT').every((x) => x.outcome.rows === 1))
        const first = workers[0]!.statements
        t.same(first.slice(0, 7).map((x) => x.statement.in_transaction), [false, true, true, true, true, true, true])
      }
      // Protocol as pgbench's mode asks.
      if (mode === 'simple') {
        t.ok(all.every((x) => x.statement.protocol === 'simple' && x.statement.parameters === null), `${appName}: simple protocol`)
      } else {
        t.ok(all.every((x) => x.statement.protocol === 'extended'), `${appName}: extended protocol`)
        t.ok(selects.every((x) => Array.isArray(x.statement.parameters) && x.statement.parameters.length === 1), `${appName}: the aid parameter is recorded`)
        if (mode === 'prepared') t.ok(all.every((x) => x.statement.prepared_name !== ''), `${appName}: named prepared statements`)
        else t.ok(all.every((x) => x.statement.prepared_name === ''), `${appName}: unnamed statements`)
      }
    }
  })
}

t.test('every record written in this file matches the v1 schema', async (t) => {
  const all = readValidAuditLog(f.auditPath)
  t.ok(all.filter((r) => r.type === 'statement').length >= 2400 + 12)
})

