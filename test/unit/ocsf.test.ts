/**
 * The OCSF mapping (src/shipping/ocsf.ts): every record type gives an event
 * with the attributes OCSF requires of every class, the right class and
 * activity, type_uid = class_uid * 100 + activity_id, and the v1 record's
 * id and chain under metadata / unmapped so it can be traced back.
 */
import t, { type Test } from 'tap'
import { datastoreActivity, DATASTORE_ACTIVITY, epochMs, OCSF_VERSION, toOcsf, type OcsfEvent } from '../../src/shipping/ocsf.js'
import type { AuditRecord, StatementRecord } from '../../src/evidence/types.js'
import { bodiesOfEveryType, seal } from '../helpers/sample-records.js'

const sealed = seal(bodiesOfEveryType())
const byType = (type: string, nth = 0) => sealed.filter((s) => s.record.type === type)[nth]!.record

/** The attributes every OCSF 1.x event must have. */
function checkRequired(tt: Test, ev: OcsfEvent, rec: AuditRecord): void {
  for (const k of ['class_uid', 'category_uid', 'activity_id', 'type_uid', 'time', 'severity_id']) tt.type(ev[k], 'number', `${k} is a number`)
  tt.equal(ev.type_uid, ev.class_uid * 100 + ev.activity_id, 'type_uid = class_uid * 100 + activity_id')
  tt.equal(ev.time, Date.parse(rec.time.slice(0, 23) + 'Z'), 'time in epoch milliseconds')
  tt.equal(ev.metadata.version, OCSF_VERSION)
  tt.same(ev.metadata.product, { name: 'pgwitness', vendor_name: 'pgwitness', version: '0.1.0' })
  tt.equal(ev.metadata.uid, rec.id, 'metadata.uid is the record id')
  tt.equal(ev.metadata.sequence, rec.chain.seq, 'metadata.sequence is chain.seq')
  tt.equal(ev.metadata.event_code, rec.type)
  tt.same(ev.unmapped.chain, rec.chain, 'the chain fields under unmapped')
  tt.equal(ev.unmapped.id, rec.id)
  tt.ok(typeof ev.message === 'string' && ev.message.length > 0, 'a message')
  // Must survive JSON (no undefined-only members that vanish, no cycles).
  tt.same(JSON.parse(JSON.stringify(ev)), JSON.parse(JSON.stringify(ev)))
}

t.test('every record type maps to an event with the required attributes', async (tt) => {
  for (const s of sealed) {
    const ev = toOcsf(s.record)
    tt.test(s.record.type, async (t2) => checkRequired(t2, ev, s.record))
  }
})

t.test('statements: Datastore Activity 6005, category 6', async (tt) => {
  const sel = toOcsf(byType('statement'))
  tt.equal(sel.class_uid, 6005)
  tt.equal(sel.category_uid, 6)
  tt.equal(sel.activity_id, DATASTORE_ACTIVITY.QUERY, 'SELECT is a Query')
  tt.equal(sel.activity_name, 'Query')
  tt.equal(sel.type_uid, 600504)
  tt.equal(sel.status_id, 1)
  tt.equal(sel.severity_id, 1)
  tt.same(sel.database, { name: 'appdb', type_id: 1, type: 'Relational' })
  tt.same(sel.table, { name: 'public.accounts' })
  tt.same(sel.query_info, { query_string: 'select * from accounts' })
  tt.same(sel.dst_endpoint, { ip: '127.0.0.1', port: 5432, svc_name: 'postgresql' })
  tt.same(sel.src_endpoint, { ip: '10.0.0.7', port: 53122 })
  tt.equal((sel.actor as { user: { name: string } }).user.name, 'spiffe://test.local/ns/billing/sa/api')
  tt.same((sel.actor as { user: { groups: unknown } }).user.groups, [{ name: 'billing' }, { name: 'staff' }])
  tt.same((sel.actor as { authorizations: unknown }).authorizations, [{ decision: 'Allowed', policy: { name: 'billing-app' } }])
  tt.equal((sel.actor as { session: { uid: string } }).session.uid, '01936a4e-7d2c-7abc-8def-0123456789ab')
  tt.equal(sel.metadata.correlation_uid, '01936a4e-7d2c-7abc-8def-0123456789ab', 'correlated by governed session id')
  tt.equal(sel.duration, 3, 'duration in ms (2500 µs rounded)')
  tt.equal(sel.start_time, Date.parse('2026-11-26T06:00:01.000Z'))
  tt.equal((sel.unmapped.upstream as { server_session_id: string }).server_session_id, '6745a0b1.1092')
  tt.same((sel.unmapped.statement as { classes: string[] }).classes, ['READ'])
  tt.notOk('governed_setting_changed' in (sel.unmapped.statement as object), 'no flag on an ordinary statement')
  const flagged = byType('statement') as StatementRecord
  const set = toOcsf({ ...flagged, statement: { ...flagged.statement, governed_setting_changed: true } })
  tt.equal((set.unmapped.statement as { governed_setting_changed?: boolean }).governed_setting_changed, true, 'the governed-setting flag is carried')

  const ins = toOcsf(byType('statement', 1))
  tt.equal(ins.activity_id, DATASTORE_ACTIVITY.CREATE, 'INSERT creates records')
  const denied = toOcsf(byType('statement', 2))
  tt.equal(denied.activity_id, DATASTORE_ACTIVITY.DELETE, 'DROP TABLE is a Delete')
  tt.equal(denied.status_id, 2)
  tt.equal(denied.status, 'Failure')
  tt.equal(denied.severity_id, 3, 'a denied statement is Medium')
  tt.equal(denied.status_detail, 'DDL is not allowed')
  const failed = toOcsf(byType('statement', 3))
  tt.equal(failed.activity_id, DATASTORE_ACTIVITY.UPDATE)
  tt.equal(failed.status_code, '42P01')
  tt.equal(failed.severity_id, 2)
})

t.test('datastore activity by command', async (tt) => {
  const cases: Array<[string, string[], number]> = [
    ['SELECT', ['READ'], 4], ['SELECT', ['READ', 'WRITE'], 5], ['FETCH', ['READ'], 1], ['COPY', ['READ'], 1], ['COPY', ['WRITE'], 6],
    ['INSERT', ['WRITE'], 6], ['UPDATE', ['WRITE'], 2], ['MERGE', ['WRITE'], 5], ['DELETE', ['WRITE'], 7], ['TRUNCATE TABLE', ['WRITE'], 7],
    ['CREATE TABLE', ['DDL'], 6], ['ALTER TABLE', ['DDL'], 2], ['DROP INDEX', ['DDL'], 7], ['CREATE ROLE', ['ROLE'], 6],
    ['GRANT', ['ROLE'], 2], ['DROP ROLE', ['ROLE'], 7], ['BEGIN', ['MISC'], 99], ['SET', ['MISC_SET'], 99], ['CALL', ['FUNCTION'], 99],
  ]
  for (const [command, classes, want] of cases) tt.equal(datastoreActivity(command, classes), want, `${command} ${classes.join('+')}`)
})

t.test('sessions and auth failures: Authentication 3002', async (tt) => {
  const logon = toOcsf(byType('session.start'))
  tt.equal(logon.class_uid, 3002)
  tt.equal(logon.category_uid, 3)
  tt.equal(logon.activity_id, 1)
  tt.equal(logon.type_uid, 300201)
  tt.equal(logon.status_id, 1)
  tt.equal((logon.user as { name: string }).name, 'spiffe://test.local/ns/billing/sa/api')
  tt.equal((logon.service as { name: string }).name, 'pgwitness')
  tt.equal(logon.auth_protocol_id, 99)
  tt.equal(logon.auth_protocol, 'JWT bearer token')
  tt.equal(logon.is_remote, true)
  tt.equal((logon.session as { credential_uid: string }).credential_uid, 'tok-1')

  const logoff = toOcsf(byType('session.end'))
  tt.equal(logoff.activity_id, 2)
  tt.equal(logoff.type_uid, 300202)
  tt.equal(logoff.status_detail, 'client_closed')
  tt.equal(logoff.duration, 1200)
  tt.equal(logoff.unmapped.statements, 4)

  const fail = toOcsf(byType('auth.failure'))
  tt.equal(fail.class_uid, 3002)
  tt.equal(fail.activity_id, 1)
  tt.equal(fail.status_id, 2)
  tt.equal(fail.status, 'Failure')
  tt.equal(fail.status_detail, 'token_expired')
  tt.equal(fail.severity_id, 3)
  tt.equal((fail.user as { name: string }).name, 'spiffe://test.local/ns/x/sa/y')
  tt.same(fail.src_endpoint, { ip: '10.0.0.7', port: 53122 })
  tt.equal(fail.count, undefined, 'an ordinary failure has no count')

  const summary = toOcsf({ ...byType('auth.failure'), count: 40, first_time: '2026-11-26T06:00:01.250000Z', last_time: '2026-11-26T06:00:59.500000Z' } as AuditRecord)
  tt.equal(summary.count, 40, 'a summary of repeated failures: OCSF count')
  tt.equal(summary.start_time, Date.parse('2026-11-26T06:00:01.250Z'))
  tt.equal(summary.end_time, Date.parse('2026-11-26T06:00:59.500Z'))
})

t.test('an approved session: the approval is an authorization of the actor, and whole under unmapped', async (tt) => {
  const approval = { id: 'apr-1', ticket: 'CHG-4711', approver: 'carol', issuer: 'https://change.example.com', expires_at: '2026-11-26T06:38:42.000000Z' }
  const stmt = toOcsf({ ...byType('statement'), approval } as AuditRecord)
  tt.same((stmt.actor as { authorizations: unknown }).authorizations, [
    { decision: 'Allowed', policy: { name: 'billing-app' } },
    { decision: 'Allowed', policy: { name: 'approval CHG-4711', uid: 'apr-1', desc: 'approved by carol (https://change.example.com) until 2026-11-26T06:38:42.000000Z' } },
  ])
  tt.same(stmt.unmapped.approval, approval)
  const logon = toOcsf({ ...byType('session.start'), approval } as AuditRecord)
  tt.same(logon.unmapped.approval, approval)
  tt.equal((logon.actor as { authorizations: unknown[] }).authorizations.length, 2)
  const fail = toOcsf({ ...byType('auth.failure'), reason: 'approval_not_bound', approval } as AuditRecord)
  tt.same([fail.status_detail, fail.unmapped.approval], ['approval_not_bound', approval])
  tt.equal(toOcsf(byType('statement')).unmapped.approval, undefined, 'absent without an approval')
})

t.test('proxy lifecycle and checkpoints', async (tt) => {
  const start = toOcsf(byType('proxy.start'))
  tt.equal(start.class_uid, 6002)
  tt.equal(start.activity_id, 3)
  tt.equal(start.type_uid, 600203)
  tt.same(start.app, { name: 'pgwitness', vendor_name: 'pgwitness', version: '0.1.0', uid: 'pgw-test' })
  const stop = toOcsf(byType('proxy.stop'))
  tt.equal(stop.activity_id, 4)
  tt.equal(stop.type_uid, 600204)
  const cp = toOcsf(byType('checkpoint'))
  tt.equal(cp.class_uid, 0, 'Base Event')
  tt.equal(cp.activity_id, 99)
  tt.equal(cp.type_uid, 99)
  tt.equal((cp.unmapped.checkpoint as { jws: string }).jws, 'eyJ.eyJ.sig')
})

t.test('a record type added later within v1 still maps (Base Event, whole record unmapped)', async (tt) => {
  const rec = { ...byType('proxy.start'), type: 'future.thing', extra: 1 } as unknown as AuditRecord
  const ev = toOcsf(rec)
  tt.equal(ev.class_uid, 0)
  tt.equal(ev.type_uid, 99)
  tt.equal((ev.unmapped.record as { extra: number }).extra, 1)
})

t.test('epochMs reads microsecond RFC 3339', async (tt) => {
  tt.equal(epochMs('2026-11-26T06:01:02.123456Z'), Date.UTC(2026, 10, 26, 6, 1, 2, 123))
  tt.equal(epochMs('2026-11-26T06:01:02Z'), Date.UTC(2026, 10, 26, 6, 1, 2, 0))
})
