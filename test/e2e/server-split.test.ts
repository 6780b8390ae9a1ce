/**
 * Issue 12 part 2: every statement the server ran has a record even when the
 * proxy cannot parse the text. The proxy's parser (libpg-query, a newer
 * grammar) rejects `json_table(...)` as a function name; PostgreSQL 15 runs
 * it. The server's answers decide: one record per result, the whole Query as
 * text, the command from the tag, statement.split "server". With
 * `audit.unparseable: refuse` such text is refused (42601) and never runs.
 */
import { mkdtempSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import type pg from 'pg'
import { startFixture, type Fixture } from '../helpers/proxy.js'
import { readValidAuditLog, recordsOfType, waitForRecords } from '../helpers/audit.js'

const UNPARSEABLE = "create function json_table() returns int language sql as 'select 1'; select json_table() as v"

async function sessionIdOf(c: pg.Client): Promise<string> {
  const r = await c.query('show pgwitness.session_id')
  return r.rows[0]['pgwitness.session_id'] as string
}

async function statementsOf(auditPath: string, c: pg.Client, sid: string) {
  await c.end()
  await waitForRecords(auditPath, (rs) => rs.some((r) => r.type === 'session.end' && r.session.id === sid))
  return recordsOfType(await readValidAuditLog(auditPath), 'statement').filter((r) => r.session.id === sid).slice(1)
}

t.test('audit.unparseable: forward (default): one record per server result, split "server"', async (t) => {
  const f = await startFixture()
  t.teardown(() => f.stop())
  const c = await f.client()
  const sid = await sessionIdOf(c)
  const r = (await c.query(UNPARSEABLE)) as unknown as pg.QueryResult[]
  t.same(r[1]!.rows, [{ v: 1 }], 'the server ran both statements')
  const st = await statementsOf(f.auditPath, c, sid)
  t.same(st.map((s) => [s.statement.text, s.statement.split, s.statement.command, s.outcome.command_tag, s.outcome.status]), [
    [UNPARSEABLE, 'server', 'CREATE FUNCTION', 'CREATE FUNCTION', 'ok'],
    [UNPARSEABLE, 'server', 'SELECT', 'SELECT 1', 'ok'],
  ], 'two records, each with the whole text and the command from the tag')
  t.same(st.map((s) => s.statement.transaction.kind), ['implicit', 'implicit'])
})

t.test('audit.unparseable: refuse: 42601, a denied record, nothing ran', async (t) => {
  const log = path.join(mkdtempSync(path.join(os.tmpdir(), 'pgw-unparseable-')), 'audit.jsonl')
  const f: Fixture = await startFixture({ auditYaml: `audit:\n  log: ${log}\n  unparseable: refuse` })
  t.teardown(() => f.stop())
  const c = await f.client()
  const sid = await sessionIdOf(c)
  await t.rejects(c.query(UNPARSEABLE), { code: '42601', message: /audit\.unparseable: refuse/ })
  const exists = await c.query("select count(*)::int as n from pg_proc where proname = 'json_table'")
  t.same(exists.rows, [{ n: 0 }], 'the function was not created')
  await c.query('select 1 as parseable')
  const st = await statementsOf(log, c, sid)
  t.match(st[0], { statement: { text: UNPARSEABLE, command: 'UNKNOWN' }, outcome: { status: 'denied', sqlstate: '42601' } })
  t.match(st[2], { statement: { text: 'select 1 as parseable' }, outcome: { status: 'ok' } }, 'text the proxy can split runs as usual')
})
