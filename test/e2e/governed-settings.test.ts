/**
 * Issue 12 item 5: governed settings are detected, not pretended to be
 * prevented. By default (`session.governed_settings: record`) a statement that
 * changes application_name or pgwitness.* runs as it would against
 * PostgreSQL directly, and its record carries
 * `statement.governed_setting_changed: true`; server logs still join on %c
 * and the backend pid, which no client can change. (The opt-in refusal is
 * tested in reserved-settings.test.ts.)
 */
import { execFile } from 'node:child_process'
import t from 'tap'
import { startFixture } from '../helpers/proxy.js'
import { readValidAuditLog, recordsOfType, waitForRecords } from '../helpers/audit.js'
import { serverView } from '../helpers/server-view.js'

const f = await startFixture({ pg: { settings: { log_statement: 'all', log_line_prefix: '%m [%p] %c %a| ' } } })
t.teardown(() => f.stop())

t.test('node-postgres changes application_name and pgwitness.*: the statements run and their records are flagged', async (t) => {
  // node-postgres sends application_name in its StartupMessage: tagged with the session id, as before.
  const c = await f.client({ applicationName: 'billing-api' })
  const start = await serverView(c)
  t.equal(start.appName, `billing-api pgw:${start.sessionId}`, 'a startup application_name is tagged, not refused')

  const setting = async (name: string) => (await c.query('select current_setting($1) as v', [name])).rows[0].v as string
  await c.query('select 1 as ordinary')
  await c.query("SET application_name = 'x'")
  t.equal(await setting('application_name'), 'x', 'SET application_name ran')
  await c.query("select 'after the SET' as marker")
  await c.query("UPDATE pg_settings SET setting = 'y' WHERE name = 'application_name'")
  t.equal(await setting('application_name'), 'y', 'UPDATE pg_settings ran')
  await c.query("SELECT set_config('pgwitness.session_id', 'x', false)")
  t.equal(await setting('pgwitness.session_id'), 'x', 'set_config ran')
  await c.query('select set_config($1, $2, false)', ['application_name', 'z'])
  t.equal(await setting('application_name'), 'z', 'set_config with parameters (extended protocol) ran')
  await c.query('begin')
  await c.query("set local pgwitness.session_id = 'local'")
  await c.query('commit')
  await c.query('reset all')
  t.same(await serverView(c), start, 'RESET ALL put back the values set at connection start')
  await c.end()

  const recs = await waitForRecords(f.auditPath, (rs) => rs.some((r) => r.type === 'session.end'))
  readValidAuditLog(f.auditPath) // every record, flagged ones included, validates against the schema
  const mine = recordsOfType(recs, 'statement').filter((r) => r.session.id === start.sessionId)
  const flagged = mine.filter((r) => r.statement.governed_setting_changed === true).map((r) => r.statement.text)
  t.same(flagged, [
    "SET application_name = 'x'",
    "UPDATE pg_settings SET setting = 'y' WHERE name = 'application_name'",
    "SELECT set_config('pgwitness.session_id', 'x', false)",
    'select set_config($1, $2, false)',
    "set local pgwitness.session_id = 'local'",
    'reset all',
  ])
  for (const r of mine) {
    t.equal(r.outcome.status, 'ok', `${r.statement.text} ran`)
    if (!r.statement.governed_setting_changed) t.notOk('governed_setting_changed' in r.statement, `no flag field on: ${r.statement.text}`)
  }
  t.ok(mine.some((r) => r.statement.text === 'select 1 as ordinary'), 'the ordinary statement is among them, unflagged')

  // The server log: %a is whatever the client set, %c and the pid are still the ones the records carry.
  const startRec = recordsOfType(recs, 'session.start').find((r) => r.session.id === start.sessionId)!
  const line = f.pg.readLog().split('\n').find((l) => l.includes("statement: select 'after the SET' as marker"))
  t.ok(line, 'the server logged the statement after the SET')
  t.match(line, ` [${startRec.upstream.backend_pid}] ${startRec.upstream.server_session_id} x| `, 'joined by pid and %c; %a is the client-set value')
})

t.test('psql: SET application_name runs and is flagged', async (t) => {
  const out = await new Promise<{ code: number; out: string }>((resolve) => {
    void f.token().then((token) => execFile('psql', ['-X', '-At', '-v', 'ON_ERROR_STOP=1', '-c', "set application_name = 'psql-app'", '-c', 'show application_name'],
      { env: f.libpqEnv(token) },
      (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr })))
  })
  t.equal(out.code, 0, out.out)
  t.match(out.out, /^psql-app$/m)
  const recs = await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'statement').some((r) => r.statement.text === "set application_name = 'psql-app'"))
  const rec = recordsOfType(recs, 'statement').find((r) => r.statement.text === "set application_name = 'psql-app'")!
  t.equal(rec.statement.governed_setting_changed, true)
  t.equal(rec.outcome.status, 'ok')
})
