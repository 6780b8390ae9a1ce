import { readFileSync } from 'node:fs'
import t from 'tap'
import { startFixture } from '../helpers/proxy.js'
import { readValidAuditLog, recordsOfType, waitForRecords } from '../helpers/audit.js'

t.test('a token-authenticated pg client runs statements and each is recorded', async (t) => {
  const f = await startFixture()
  t.teardown(() => f.stop())
  const c = await f.client()
  const r = await c.query('select 1 as one')
  t.same(r.rows, [{ one: 1 }])
  await c.query('create table t(a int); insert into t values (1),(2)')
  const p = await c.query('select a from t where a > $1 order by a', [0])
  t.same(p.rows.map((x) => x.a), [1, 2])
  await c.end()
  const recs = await waitForRecords(f.auditPath, (rs) => rs.some((x) => x.type === 'session.end'))
  readValidAuditLog(f.auditPath)
  const st = recordsOfType(recs, 'statement')
  t.same(st.map((s) => s.statement.text), ['select 1 as one', 'create table t(a int);', ' insert into t values (1),(2)', 'select a from t where a > $1 order by a'])
  t.same(st.map((s) => s.outcome.rows), [1, null, 2, 2])
})

t.test('records carry pgaudit-style classes and objects, and password literals are redacted', async (t) => {
  const f = await startFixture()
  t.teardown(() => f.stop())
  const c = await f.client({ user: 'postgres', database: 'postgres', token: await f.token({ subject: 'alice', claims: { groups: ['dba'] } }) })
  const secret = 'pw-' + Math.random().toString(36).slice(2)
  await c.query(`create role audited_user login password '${secret}'`)
  await c.query('create table s1(a int); insert into s1 select generate_series(1, 3); grant select on s1 to audited_user')
  await c.end()
  const recs = await waitForRecords(f.auditPath, (rs) => rs.some((x) => x.type === 'session.end'))
  readValidAuditLog(f.auditPath)
  const st = recordsOfType(recs, 'statement')
  t.same(st.map((s) => [s.statement.command, s.statement.classes]), [
    ['CREATE ROLE', ['ROLE']],
    ['CREATE TABLE', ['DDL']],
    ['INSERT', ['WRITE', 'FUNCTION']],
    ['GRANT', ['ROLE']],
  ])
  t.equal(st[0]!.statement.text, 'create role audited_user login password <REDACTED>')
  t.same(st[1]!.statement.objects, [{ type: 'table', schema: null, name: 's1' }])
  t.notMatch(readFileSync(f.auditPath, 'utf8'), secret, 'the password literal is in no record')
})
