import { execFile } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { startFixture } from '../helpers/proxy.js'
import { readValidAuditLog, recordsOfType, waitForRecords } from '../helpers/audit.js'

/** Opt-in refusal of changes to governed settings (the default records them: governed-settings.test.ts). */
const REFUSE = 'session: { governed_settings: refuse }'

t.test('governed settings cannot be changed by the client (session.governed_settings: refuse)', async (t) => {
  const f = await startFixture({ pg: { settings: { log_statement: 'all' } }, extraYaml: REFUSE })
  t.teardown(() => f.stop())
  const c = await f.client()
  const sid = (await c.query('show pgwitness.session_id')).rows[0]['pgwitness.session_id'] as string
  const app = (await c.query('show application_name')).rows[0].application_name as string
  t.match(app, `pgw:${sid}`)
  const governed = async () => {
    const r = await c.query("select current_setting('pgwitness.session_id') as s, current_setting('application_name') as a")
    t.same(r.rows[0], { s: sid, a: app }, 'governed values unchanged')
  }
  const refused = async (sql: string, values?: unknown[]) => {
    const err = await c.query(sql, values).then(() => null, (e: Error & { code?: string }) => e)
    t.ok(err, `refused: ${sql}`)
    t.equal(err?.code, '42501', sql)
    t.match(err?.message, /governed by pgwitness|not a constant|cannot be checked/, sql)
  }
  await refused("set application_name = 'innocent'")
  await refused("set pgwitness.session_id = '00000000-0000-7000-8000-000000000000'")
  await refused('reset application_name')
  await refused("select set_config('application_name', 'x', false)")
  await refused("select pg_catalog.set_config('pgwitness.session_id', 'x', false)")
  await refused('select set_config($1, $2, false)', ['application_name', 'x'])
  await refused("do $$ begin perform set_config('application_name', 'x', false); end $$")
  await refused("select 1 as first; set application_name = 'x'")
  await governed()

  // SET LOCAL inside a transaction: refused, and the transaction is aborted as PostgreSQL would abort it.
  await c.query('begin')
  await refused("set local application_name = 'x'")
  const aborted = await c.query('select 1').then(() => null, (e: Error & { code?: string }) => e)
  t.equal(aborted?.code, '25P02', 'the transaction is in the failed state')
  await c.query('rollback')

  // RESET ALL and DISCARD ALL restore the values set at connection start: the governed ones.
  await c.query('reset all')
  await governed()
  await c.query('discard all')
  await governed()
  await c.query("set work_mem = '8MB'") // ordinary settings still work
  await c.end()

  const recs = await waitForRecords(f.auditPath, (rs) => rs.some((x) => x.type === 'session.end'))
  readValidAuditLog(f.auditPath)
  const denied = recordsOfType(recs, 'statement').filter((s) => s.outcome.status === 'denied')
  t.same(denied.map((s) => s.statement.text), [
    "set application_name = 'innocent'",
    "set pgwitness.session_id = '00000000-0000-7000-8000-000000000000'",
    'reset application_name',
    "select set_config('application_name', 'x', false)",
    "select pg_catalog.set_config('pgwitness.session_id', 'x', false)",
    'select set_config($1, $2, false)',
    "do $$ begin perform set_config('application_name', 'x', false); end $$",
    'select 1 as first;',
    " set application_name = 'x'",
    "set local application_name = 'x'",
  ])
  for (const d of denied) {
    t.equal(d.outcome.sqlstate, '42501')
    t.match(d.outcome.message, /^pgwitness: /)
  }
  t.same(denied.find((d) => d.statement.protocol === 'extended')?.statement.parameters,
    [{ format: 'text', value: 'application_name' }, { format: 'text', value: 'x' }])
  const serverLog = f.pg.readLog()
  t.notMatch(serverLog, 'innocent', 'a refused statement never reaches PostgreSQL')
  t.match(serverLog, 'RAISE EXCEPTION', 'the server ran the refusal instead')
})

t.test('psql and pgbench get the same refusal', async (t) => {
  const f = await startFixture({ extraYaml: REFUSE })
  t.teardown(() => f.stop())
  const env = f.libpqEnv(await f.token())
  const run = (cmd: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}) => new Promise<{ code: number; out: string }>((resolve) => {
    execFile(cmd, args, { env: { ...env, ...extraEnv } }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }))
  })
  const psql = await run('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-c', "set application_name = 'psql-spoof'"])
  t.not(psql.code, 0)
  t.match(psql.out, /governed by pgwitness/)
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgw-pgbench-'))
  const script = path.join(dir, 'spoof.sql')
  writeFileSync(script, "SELECT 1;\nSET pgwitness.session_id = 'forged';\n")
  const bench = await run('pgbench', ['-n', '-t', '2', '-c', '1', '-f', script], { PGOPTIONS: '' })
  t.not(bench.code, 0, 'pgbench aborts its client on the refusal')
  t.match(bench.out, /governed by pgwitness/)
  const recs = await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'session.end').length >= 2)
  readValidAuditLog(f.auditPath)
  const denied = recordsOfType(recs, 'statement').filter((r) => r.outcome.status === 'denied').map((r) => r.statement.text)
  t.same(denied, ["set application_name = 'psql-spoof'", "SET pgwitness.session_id = 'forged';"])
  // Every record of each session carries that session's own id.
  for (const start of recordsOfType(recs, 'session.start')) {
    const mine = recs.filter((r) => 'session' in r && (r as { connection: { id: string } }).connection.id === start.connection!.id)
    t.ok(mine.every((r) => (r as { session: { id: string } }).session.id === start.session.id))
  }
})
