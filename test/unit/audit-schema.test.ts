/**
 * schema/audit-record.v1.json: hand-written examples of every record type
 * (typed against src/evidence/types.ts, so the compiler checks them too) must
 * validate; broken variants must not.
 */
import t from 'tap'
import { mkdtempSync, writeFileSync, appendFileSync, rmSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  AUDIT_SCHEMA_PATH,
  assertValidRecord,
  readAuditLog,
  readValidAuditLog,
  recordsOfType,
  validateRecord,
  waitForRecords,
} from '../helpers/audit.js'
import {
  AUDIT_SCHEMA,
  type AuditRecord,
  type AuthFailureRecord,
  type ConnectionInfo,
  type IdentityInfo,
  type ProxyInfo,
  type ProxyStartRecord,
  type SessionEndRecord,
  type TransactionEndRecord,
  type SessionInfo,
  type SessionStartRecord,
  type StatementRecord,
  type UpstreamInfo,
} from '../../src/evidence/types.js'

const HEX64 = 'a'.repeat(64)
const proxy: ProxyInfo = { instance: 'pgw-1', version: '0.1.0' }
const connection: ConnectionInfo = {
  id: 'c-0001',
  client: { address: '10.0.0.7', port: 53122 },
  tls: { version: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', client_cert_sha256: 'b'.repeat(64) },
}
const session: SessionInfo = {
  id: '01936a4e-7d2c-7abc-8def-0123456789ab',
  started_at: '2026-11-26T05:38:42.123456Z',
  application_name: 'billing-worker',
}
const identity: IdentityInfo = {
  method: 'jwt+mtls',
  subject: 'system:serviceaccount:billing:worker',
  issuer: 'https://kubernetes.default.svc',
  audience: ['pgwitness'],
  token_id: 'jti-42',
  token_expires_at: '2026-11-26T06:38:42.000000Z',
  spiffe_id: 'spiffe://example.org/ns/billing/sa/worker',
  cert_sha256: 'c'.repeat(64),
  claims: { namespace: 'billing', groups: ['payments'], pod: { name: 'worker-0' } },
  policy_rule: 'billing-workers',
}
const upstream: UpstreamInfo = {
  host: 'db.internal',
  port: 5432,
  database: 'billing',
  role: 'billing_rw',
  backend_pid: 4711,
  server_session_id: '6745a1b2.1267',
}
let n = 0
function env() {
  n++
  return {
    schema: AUDIT_SCHEMA,
    id: `01936a4e-7d2c-7${n.toString(16).padStart(3, '0')}-9def-0123456789ab`,
    time: '2026-11-26T05:38:42.123456Z',
    // Every record is chained (examples below may set their own chain).
    chain: { seq: n, prev: '0'.repeat(64), hash: n.toString(16).padStart(64, '0') },
  } as const
}

const proxyStart: ProxyStartRecord = {
  ...env(),
  type: 'proxy.start',
  proxy,
  connection: null,
  config_sha256: HEX64,
  checkpoint_key_id: 'key-2026-11',
  listen: '0.0.0.0:6432',
}
const proxyStop: ProxyStartRecord = {
  ...env(),
  type: 'proxy.stop',
  proxy,
  connection: null,
  chain: { seq: 9, prev: '1'.repeat(64), hash: '2'.repeat(64) },
  config_sha256: HEX64,
  checkpoint_key_id: null,
  listen: '[::]:6432',
}
const authFailure: AuthFailureRecord = {
  ...env(),
  type: 'auth.failure',
  proxy,
  connection: { ...connection, tls: null },
  method: 'jwt',
  reason: 'token_expired',
  detail: 'token expired at 2026-11-26T05:00:00Z',
  requested: { user: 'billing_rw', database: 'billing', application_name: null },
  identity: { method: 'jwt', subject: 'alice', issuer: 'https://idp.example' },
}
const authFailureNoIdentity: AuthFailureRecord = {
  ...env(),
  type: 'auth.failure',
  proxy,
  connection,
  method: 'none',
  reason: 'token_missing',
  detail: 'no password message',
  requested: { user: null, database: null, application_name: null },
  identity: null,
}
/** A summary of repeated failures of one key (audit/auth-failure-summary.ts). */
const authFailureSummary: AuthFailureRecord = {
  ...authFailure,
  ...env(),
  detail: '57 more failures (token_expired) from 10.0.0.7 between … and …, counted instead of recorded one by one; the last: token expired',
  count: 57,
  first_time: '2026-11-26T06:00:01.000001Z',
  last_time: '2026-11-26T06:00:59.999999Z',
}
const sessionStart: SessionStartRecord = {
  ...env(),
  type: 'session.start',
  proxy,
  connection,
  chain: { seq: 1, prev: '0'.repeat(64), hash: 'd'.repeat(64) },
  session,
  identity,
  upstream,
}
const statementSimple: StatementRecord = {
  ...env(),
  type: 'statement',
  proxy,
  connection,
  session,
  identity,
  upstream,
  statement: {
    seq: 1,
    protocol: 'simple',
    text: 'SELECT * FROM public.accounts WHERE id = 1',
    text_truncated: false,
    parameters: null,
    prepared_name: null,
    portal: null,
    function_oid: null,
    command: 'SELECT',
    classes: ['READ'],
    objects: [{ type: 'table', schema: 'public', name: 'accounts' }],
    in_transaction: false,
    transaction: { number: 1, kind: 'autocommit' },
  },
  outcome: {
    status: 'ok',
    command_tag: 'SELECT 1',
    rows: 1,
    sqlstate: null,
    message: null,
    started_at: '2026-11-26T05:38:42.200000Z',
    duration_us: 812,
  },
}
const statementExtended: StatementRecord = {
  ...statementSimple,
  ...env(),
  statement: {
    ...statementSimple.statement,
    seq: 2,
    protocol: 'extended',
    text: 'INSERT INTO accounts (id, name, blob, note) VALUES ($1, $2, $3, $4)',
    text_truncated: true,
    parameters: [
      { format: 'text', value: '7' },
      { format: 'text', value: 'xxxx', truncated: true, length: 100000 },
      { format: 'binary', base64: 'AAEC/w==', length: 4 },
      null,
      { format: 'hmac', hmac_sha256: 'e'.repeat(64), length: 5 },
    ],
    prepared_name: '',
    portal: '',
    command: 'INSERT',
    classes: ['WRITE'],
    objects: [{ type: 'table', schema: null, name: 'accounts' }],
    in_transaction: true,
    transaction: { number: 2, kind: 'explicit' },
  },
  outcome: {
    status: 'error',
    command_tag: null,
    rows: null,
    sqlstate: '23505',
    message: 'duplicate key value violates unique constraint "accounts_pkey"',
    started_at: '2026-11-26T05:38:42.300000Z',
    duration_us: 1200,
  },
}
const statementOmit: StatementRecord = {
  ...statementSimple,
  ...env(),
  statement: { ...statementSimple.statement, seq: 3, protocol: 'extended', parameters: { count: 3 } },
  outcome: { ...statementSimple.outcome, status: 'denied', command_tag: null, rows: null, duration_us: null },
}
const statementFastpath: StatementRecord = {
  ...statementSimple,
  ...env(),
  statement: {
    ...statementSimple.statement,
    seq: 4,
    protocol: 'function_call',
    text: null,
    parameters: [{ format: 'binary', base64: '', length: 0 }],
    function_oid: 2249,
    command: 'FUNCTION CALL',
    classes: ['FUNCTION'],
    objects: [],
  },
  outcome: { ...statementSimple.outcome, status: 'unknown', command_tag: null, rows: null, duration_us: null },
}
const statementGovernedSetting: StatementRecord = {
  ...statementSimple,
  ...env(),
  statement: { ...statementSimple.statement, seq: 5, text: "SET application_name = 'x'", command: 'SET', classes: ['MISC_SET'], objects: [], governed_setting_changed: true },
}
const sessionEnd: SessionEndRecord = {
  ...env(),
  type: 'session.end',
  proxy,
  connection,
  session,
  identity: { ...identity, method: 'mtls', audience: [], token_id: null, token_expires_at: null, claims: {} },
  upstream,
  reason: 'client_closed',
  detail: null,
  duration_ms: 1532.25,
  statements: 4,
  bytes_in: 1024,
  bytes_out: 65536,
}
const statementServerSplit: StatementRecord = {
  ...statementSimple,
  ...env(),
  statement: { ...statementSimple.statement, seq: 5, text: "SELECT E'\\x95'; SET x = 1", split: 'server', command: 'SET', classes: [], objects: [], transaction: { number: 3, kind: 'implicit' } },
  outcome: { ...statementSimple.outcome, command_tag: 'SET', rows: null },
}
const statementSuspended: StatementRecord = {
  ...statementSimple,
  ...env(),
  statement: { ...statementSimple.statement, seq: 6, protocol: 'extended', transaction: { number: 4, kind: 'explicit' } },
  outcome: { ...statementSimple.outcome, command_tag: null, rows: 100, suspended: true },
}
const statementPortalLast: StatementRecord = {
  ...statementSuspended,
  ...env(),
  outcome: { ...statementSimple.outcome, command_tag: 'SELECT 7', rows: 7, portal_rows: 107 },
}
const transactionEnd: TransactionEndRecord = {
  ...env(),
  type: 'transaction.end',
  proxy,
  connection,
  session,
  identity,
  upstream,
  transaction: { number: 4, outcome: 'committed', cause: 'commit', gid: null, first_seq: 6, last_seq: 9, undone_seqs: [{ first: 7, last: 8, savepoint: 'a' }] },
}
const transactionPrepared: TransactionEndRecord = {
  ...transactionEnd,
  ...env(),
  transaction: { number: 5, outcome: 'prepared', cause: 'prepare', gid: 'tx-42', first_seq: 10, last_seq: 12, undone_seqs: [] },
}
const sessionEndShutdown: SessionEndRecord = { ...sessionEnd, ...env(), reason: 'proxy_shutdown', detail: 'SIGTERM' }
const checkpoint = {
  ...env(),
  type: 'checkpoint',
  proxy,
  connection: null,
  chain: { seq: 1000, prev: '3'.repeat(64), hash: '4'.repeat(64) },
  checkpoint: {
    seq: 999,
    hash: '3'.repeat(64),
    time: '2026-11-26T05:38:42.123456Z',
    instance: 'pgw-1',
    key_id: 'KwCHEhy76VZbTuOKBwwWJPWtt11RwOdo0S4Tqe30vHA',
    jws: 'eyJhbGciOiJFZERTQSJ9.e30.c2ln',
  },
}

const statementDeniedByRule: StatementRecord = {
  ...statementSimple,
  ...env(),
  outcome: { ...statementSimple.outcome, status: 'denied', command_tag: null, rows: null, sqlstate: '42501', message: 'pgwitness: statement denied by policy rule "app" (deny[0]: class DDL)' },
  policy: {
    denied_by: { rule: 'app', statement_rule: 'deny[0]', matched: 'class DDL, command DROP TABLE' },
    would_deny: [{ rule: 'app', statement_rule: 'no-pii', matched: 'object pii.users' }],
    claims: { change_ticket: 'CHG-1234' },
  },
}

const approval = { id: 'apr-0193', ticket: 'CHG-4711', approver: 'carol@example.com', issuer: 'https://change.example.com', expires_at: '2026-11-26T06:38:42.000000Z' }
const sessionStartApproved: SessionStartRecord = { ...sessionStart, ...env(), approval }
const statementApproved: StatementRecord = { ...statementSimple, ...env(), approval }
const transactionEndApproved: TransactionEndRecord = { ...transactionEnd, ...env(), approval }
const sessionEndApprovalExpired: SessionEndRecord = { ...sessionEnd, ...env(), approval, reason: 'approval_expired', detail: 'the session ended because its approval expired' }
const authFailureApprovalNotBound: AuthFailureRecord = { ...authFailure, ...env(), reason: 'approval_not_bound', detail: 'the approval (apr-0193) was granted to another subject', approval }
/** A replication session: session.replication on every record, class REPLICATION, streamed counts at the end. */
const replicationSession = { ...session, replication: 'physical' as const }
const statementReplication: StatementRecord = {
  ...statementSimple,
  ...env(),
  session: replicationSession,
  statement: { ...statementSimple.statement, text: 'START_REPLICATION SLOT "s" LOGICAL 0/0', command: 'START_REPLICATION', classes: ['REPLICATION'], objects: [] },
  outcome: { ...statementSimple.outcome, command_tag: 'START_REPLICATION', rows: null },
}
const sessionEndReplication: SessionEndRecord = {
  ...sessionEnd,
  ...env(),
  session: replicationSession,
  streamed: { from_client: { messages: 12, bytes: 408 }, from_server: { messages: 3020, bytes: 16777216 } },
}
const authFailureReplication = { ...authFailure, ...env(), reason: 'replication_not_allowed' as const }

const valid: Record<string, AuditRecord | typeof checkpoint> = {
  statementReplication,
  sessionEndReplication,
  authFailureReplication,
  proxyStart,
  proxyStop,
  authFailure,
  authFailureNoIdentity,
  authFailureSummary,
  sessionStart,
  statementSimple,
  statementExtended,
  statementOmit,
  statementFastpath,
  statementServerSplit,
  statementSuspended,
  statementPortalLast,
  statementDeniedByRule,
  transactionEnd,
  transactionPrepared,
  statementGovernedSetting,
  sessionEnd,
  sessionEndShutdown,
  checkpoint,
  sessionStartApproved,
  statementApproved,
  transactionEndApproved,
  sessionEndApprovalExpired,
  authFailureApprovalNotBound,
}

t.test('schema file is draft 2020-12 with the agreed $id', async (t) => {
  const schema = JSON.parse(readFileSync(AUDIT_SCHEMA_PATH, 'utf8')) as Record<string, unknown>
  t.equal(schema['$schema'], 'https://json-schema.org/draft/2020-12/schema')
  t.equal(schema['$id'], 'https://pgwitness.dev/schema/audit-record.v1.json')
  t.match(schema['description'], /ignore unknown fields/i)
})

t.test('valid examples of every record type pass', async (t) => {
  const types = new Set<string>()
  for (const [name, rec] of Object.entries(valid)) {
    t.same(validateRecord(rec), [], name)
    t.doesNotThrow(() => assertValidRecord(rec), name)
    types.add(rec.type)
  }
  t.same(
    [...types].sort(),
    ['auth.failure', 'checkpoint', 'proxy.start', 'proxy.stop', 'session.end', 'session.start', 'statement', 'transaction.end'],
    'every record type is covered',
  )
})

/** A deep copy of `rec` with `mutate` applied. */
function broken<T>(rec: T, mutate: (r: any) => void): unknown {
  const copy = structuredClone(rec) as any
  mutate(copy)
  return copy
}

const invalid: Array<[string, unknown, RegExp]> = [
  ['not an object', 'hello', /must be object/],
  ['missing schema', broken(sessionStart, (r) => delete r.schema), /schema/],
  ['wrong schema', broken(sessionStart, (r) => (r.schema = 'pgwitness.audit/v2')), /schema/],
  ['unknown type', broken(sessionStart, (r) => (r.type = 'session.begin')), /\/type/],
  ['missing type', broken(sessionStart, (r) => delete r.type), /'type'/],
  ['missing proxy', broken(sessionStart, (r) => delete r.proxy), /'proxy'/],
  ['missing connection', broken(proxyStart, (r) => delete r.connection), /'connection'/],
  ['missing chain', broken(statementSimple, (r) => delete r.chain), /'chain'/],
  ['null connection on a statement', broken(statementSimple, (r) => (r.connection = null)), /\/connection/],
  ['connection on proxy.start', broken(proxyStart, (r) => (r.connection = connection)), /\/connection/],
  ['missing session', broken(statementSimple, (r) => delete r.session), /'session'/],
  ['missing outcome', broken(statementSimple, (r) => delete r.outcome), /'outcome'/],
  ['missing statement.text_truncated', broken(statementSimple, (r) => delete r.statement.text_truncated), /text_truncated/],
  ['missing identity.subject', broken(sessionStart, (r) => delete r.identity.subject), /subject/],
  ['missing upstream.backend_pid', broken(sessionEnd, (r) => delete r.upstream.backend_pid), /backend_pid/],
  ['missing session.end duration_ms', broken(sessionEnd, (r) => delete r.duration_ms), /duration_ms/],
  ['missing proxy.start listen', broken(proxyStart, (r) => delete r.listen), /listen/],
  ['missing auth.failure requested', broken(authFailure, (r) => delete r.requested), /requested/],
  ['wrong outcome.status', broken(statementSimple, (r) => (r.outcome.status = 'success')), /\/outcome\/status/],
  ['wrong statement.protocol', broken(statementSimple, (r) => (r.statement.protocol = 'copy')), /protocol/],
  ['wrong statement class', broken(statementSimple, (r) => (r.statement.classes = ['SELECT'])), /classes/],
  ['wrong identity.method', broken(sessionStart, (r) => (r.identity.method = 'password')), /method/],
  ['wrong auth.failure reason', broken(authFailure, (r) => (r.reason = 'bad_token')), /reason/],
  ['auth.failure summary count 0', broken(authFailureSummary, (r) => (r.count = 0)), /count/],
  ['auth.failure summary without last_time', broken(authFailureSummary, (r) => delete r.last_time), /last_time/],
  ['auth.failure first_time without count', broken(authFailure, (r) => (r.first_time = '2026-11-26T06:00:01.000001Z')), /count/],
  ['wrong session.end reason', broken(sessionEnd, (r) => (r.reason = 'closed')), /reason/],
  ['wrong session.replication', broken(sessionEndReplication, (r) => (r.session.replication = 'database')), /replication/],
  ['session.end streamed without from_client', broken(sessionEndReplication, (r) => delete r.streamed.from_client), /from_client/],
  ['session.end streamed bytes negative', broken(sessionEndReplication, (r) => (r.streamed.from_server.bytes = -1)), /bytes/],
  ['time without microseconds', broken(sessionStart, (r) => (r.time = '2026-11-26T05:38:42.123Z')), /\/time/],
  ['time with offset', broken(sessionStart, (r) => (r.time = '2026-11-26T05:38:42.123456+00:00')), /\/time/],
  ['time with bad month', broken(sessionStart, (r) => (r.time = '2026-13-26T05:38:42.123456Z')), /\/time/],
  ['bad outcome.started_at', broken(statementSimple, (r) => (r.outcome.started_at = 1732599522)), /started_at/],
  ['id not a UUID', broken(sessionStart, (r) => (r.id = 'not-a-uuid')), /\/id/],
  ['id is UUIDv4', broken(sessionStart, (r) => (r.id = '01936a4e-7d2c-4abc-8def-0123456789ab')), /\/id/],
  ['id with bad variant', broken(sessionStart, (r) => (r.id = '01936a4e-7d2c-7abc-cdef-0123456789ab')), /\/id/],
  ['id uppercase', broken(sessionStart, (r) => (r.id = '01936A4E-7D2C-7ABC-8DEF-0123456789AB')), /\/id/],
  ['session.id not UUIDv7', broken(sessionStart, (r) => (r.session.id = 'abc')), /\/session\/id/],
  ['governed_setting_changed false (the field is present only when true)', broken(statementGovernedSetting, (r) => (r.statement.governed_setting_changed = false)), /governed_setting_changed/],
  ['extra field in outcome', broken(statementSimple, (r) => (r.outcome.row_count = 1)), /row_count/],
  ['extra top-level field', broken(sessionStart, (r) => (r.statement = {})), /statement/],
  ['extra field in identity', broken(sessionStart, (r) => (r.identity.subjet = 'x')), /subjet/],
  ['extra field in partial identity', broken(authFailure, (r) => (r.identity.sub = 'x')), /\bsub\b/],
  ['extra field in chain', broken(sessionStart, (r) => (r.chain.prev_hash = HEX64)), /prev_hash/],
  ['chain.seq 0', broken(sessionStart, (r) => (r.chain.seq = 0)), /seq/],
  ['chain.hash uppercase', broken(sessionStart, (r) => (r.chain.hash = 'D'.repeat(64))), /hash/],
  ['chain.prev short', broken(sessionStart, (r) => (r.chain.prev = '00')), /prev/],
  ['parameters as object of values', broken(statementSimple, (r) => (r.statement.parameters = { $1: 'x' })), /parameters/],
  ['parameter as bare string', broken(statementSimple, (r) => (r.statement.parameters = ['7'])), /parameters/],
  ['text parameter without value', broken(statementSimple, (r) => (r.statement.parameters = [{ format: 'text' }])), /parameters/],
  ['text parameter with base64', broken(statementSimple, (r) => (r.statement.parameters = [{ format: 'text', base64: 'AA==' }])), /parameters/],
  ['binary parameter not base64', broken(statementSimple, (r) => (r.statement.parameters = [{ format: 'binary', base64: '***' }])), /parameters/],
  ['hmac parameter without length', broken(statementSimple, (r) => (r.statement.parameters = [{ format: 'hmac', hmac_sha256: HEX64 }])), /parameters/],
  ['parameter truncated: false', broken(statementSimple, (r) => (r.statement.parameters = [{ format: 'text', value: 'x', truncated: false }])), /parameters/],
  ['unknown parameter format', broken(statementSimple, (r) => (r.statement.parameters = [{ format: 'json', value: '{}' }])), /parameters/],
  ['count negative', broken(statementSimple, (r) => (r.statement.parameters = { count: -1 })), /parameters/],
  ['bad server_session_id', broken(sessionStart, (r) => (r.upstream.server_session_id = '12345')), /server_session_id/],
  ['non-integer backend_pid', broken(sessionStart, (r) => (r.upstream.backend_pid = '4711')), /backend_pid/],
  ['bad sqlstate', broken(statementExtended, (r) => (r.outcome.sqlstate = '235')), /sqlstate/],
  ['bad config_sha256', broken(proxyStart, (r) => (r.config_sha256 = 'sha256:abc')), /config_sha256/],
  ['audience not an array', broken(sessionStart, (r) => (r.identity.audience = 'pgwitness')), /audience/],
  ['claims not an object', broken(sessionStart, (r) => (r.identity.claims = 'ns=billing')), /claims/],
  ['checkpoint with connection', broken(checkpoint, (r) => (r.connection = connection)), /connection/],
  ['approval without ticket', broken(sessionStartApproved, (r) => delete r.approval.ticket), /ticket/],
  ['approval with an extra field', broken(statementApproved, (r) => (r.approval.token = 'eyJ')), /token/],
  ['approval expires_at not a time', broken(sessionStartApproved, (r) => (r.approval.expires_at = 1732599522)), /expires_at/],
  ['unknown approval reason', broken(authFailureApprovalNotBound, (r) => (r.reason = 'approval_bad')), /reason/],
  ['checkpoint with bad time', broken(checkpoint, (r) => (r.time = 'yesterday')), /time/],
]

t.test('broken records fail with a message naming the problem', async (t) => {
  for (const [name, rec, expect] of invalid) {
    const problems = validateRecord(rec)
    t.not(problems.length, 0, `${name}: rejected`)
    t.match(problems.join('\n'), expect, `${name}: ${problems.join(' | ')}`)
    t.throws(() => assertValidRecord(rec), /does not match schema\/audit-record\.v1\.json/, `${name}: assert throws`)
  }
})

t.test('assertValidRecord error lists the problems and the record', async (t) => {
  const rec = broken(statementSimple, (r) => (r.outcome.status = 'success'))
  try {
    assertValidRecord(rec)
    t.fail('should throw')
  } catch (err) {
    const msg = (err as Error).message
    t.match(msg, /type statement/)
    t.match(msg, /\/outcome\/status/)
    t.match(msg, /"success"/)
  }
})

t.test('readAuditLog / readValidAuditLog / waitForRecords / recordsOfType', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pgw-audit-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'audit.jsonl')

  t.same(readAuditLog(path), [], 'missing file => []')
  t.same(readValidAuditLog(path), [], 'missing file => [] (valid)')

  const recs: AuditRecord[] = [proxyStart, sessionStart, statementSimple, statementExtended, sessionEnd]
  writeFileSync(path, recs.map((r) => JSON.stringify(r) + '\n').join(''))
  t.same(readAuditLog(path), recs)
  t.same(readValidAuditLog(path), recs)

  const stmts = recordsOfType(readAuditLog(path), 'statement')
  t.equal(stmts.length, 2)
  t.equal(stmts[1]!.statement.seq, 2, 'narrowed to StatementRecord')
  t.equal(recordsOfType(recs, 'proxy.start').length, 1)
  t.equal(recordsOfType(recs, 'proxy.stop').length, 0)

  // waitForRecords: a line being written is ignored until complete.
  const waiting = waitForRecords(path, (rs) => rs.some((r) => r.type === 'proxy.stop'), 2000)
  const line = JSON.stringify(proxyStop)
  setTimeout(() => appendFileSync(path, line.slice(0, 20)), 40)
  setTimeout(() => appendFileSync(path, line.slice(20) + '\n'), 120)
  const got = await waiting
  t.equal(got.length, 6)
  t.equal(got[5]!.type, 'proxy.stop')

  await t.rejects(
    waitForRecords(path, () => false, 100),
    /timed out after 100 ms.*6 record\(s\): proxy\.start×1, session\.start×1, statement×2, session\.end×1, proxy\.stop×1/,
  )
  await t.rejects(waitForRecords(join(dir, 'nope.jsonl'), () => false, 60), /does not exist.*no records/)

  // A corrupt line is reported with its line number.
  appendFileSync(path, '{"schema": "pgwitness.audit/v1",\n')
  t.throws(() => readAuditLog(path), /audit\.jsonl:7: not valid JSON/)
  await t.rejects(waitForRecords(path, () => false, 100), /audit\.jsonl:7: not valid JSON/)

  // An invalid record is reported with its line number.
  const path2 = join(dir, 'audit2.jsonl')
  writeFileSync(path2, JSON.stringify(proxyStart) + '\n' + JSON.stringify({ ...sessionStart, time: 'now' }) + '\n')
  t.equal(readAuditLog(path2).length, 2)
  t.throws(() => readValidAuditLog(path2), /audit2\.jsonl:2: audit record \(type session\.start\)/)
})
