/**
 * Realistic audit records of every type, sealed into a hash chain, for the
 * unit tests of the sink code (follower, formats, OCSF) that need records
 * without running a proxy.
 */
import { AuditChain, EMPTY_HEAD, type ChainHead, type SealedRecord } from '../../src/ledger/chain.js'
import type { AuditRecordBody, IdentityInfo, StatementRecord, Unchained } from '../../src/evidence/types.js'

export const proxy = { instance: 'pgw-test', version: '0.1.0' }
export const connection = { id: 'c-1', client: { address: '10.0.0.7', port: 53122 }, tls: { version: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', client_cert_sha256: null } }
export const session = { id: '01936a4e-7d2c-7abc-8def-0123456789ab', started_at: '2026-11-26T05:38:42.123456Z', application_name: 'billing-api' }
export const identity: IdentityInfo = {
  method: 'jwt',
  subject: 'spiffe://test.local/ns/billing/sa/api',
  issuer: 'https://issuer.test',
  audience: ['pgwitness'],
  token_id: 'tok-1',
  token_expires_at: '2026-11-26T06:38:42.000000Z',
  spiffe_id: null,
  cert_sha256: null,
  claims: { groups: ['billing', 'staff'] },
  policy_rule: 'billing-app',
}
export const upstream = { host: '127.0.0.1', port: 5432, database: 'appdb', role: 'app', backend_pid: 4242, server_session_id: '6745a0b1.1092' }

let n = 0
function envelope<T extends string>(type: T, withConnection = true) {
  n++
  return {
    schema: 'pgwitness.audit/v1' as const,
    id: `0193a000-0000-7000-8000-${String(n).padStart(12, '0')}`,
    time: `2026-11-26T06:00:${String(n % 60).padStart(2, '0')}.123456Z`,
    type,
    proxy,
    connection: withConnection ? connection : null,
  }
}

export function statement(command: string, text: string, o: Partial<StatementRecord['outcome']> = {}, classes: string[] = ['READ']): Unchained<StatementRecord> {
  return {
    ...envelope('statement'),
    session,
    identity,
    upstream,
    statement: {
      seq: 1, protocol: 'simple', text, text_truncated: false, parameters: null, prepared_name: null, portal: null,
      function_oid: null, command, classes, objects: [{ type: 'table', schema: 'public', name: 'accounts' }], in_transaction: false, transaction: { number: 1, kind: 'autocommit' },
    },
    outcome: {
      status: 'ok', command_tag: 'SELECT 1', rows: 1, sqlstate: null, message: null,
      started_at: '2026-11-26T06:00:01.000100Z', duration_us: 2500, ...o,
    },
  }
}

/** One record of each type (checkpoint included), in a plausible order. */
export function bodiesOfEveryType(): AuditRecordBody[] {
  return [
    { ...envelope('proxy.start', false), config_sha256: 'a'.repeat(64), checkpoint_key_id: null, listen: '127.0.0.1:6432' },
    {
      ...envelope('auth.failure'), method: 'jwt', reason: 'token_expired', detail: 'the token expired at 2026-11-26T05:00:00Z',
      requested: { user: 'app', database: 'appdb', application_name: 'psql' }, identity: { subject: 'spiffe://test.local/ns/x/sa/y', issuer: 'https://issuer.test' },
    },
    { ...envelope('session.start'), session, identity, upstream },
    statement('SELECT', 'select * from accounts'),
    statement('INSERT', 'insert into accounts values (1)', { command_tag: 'INSERT 0 1' }, ['WRITE']),
    statement('DROP TABLE', 'drop table accounts', { status: 'denied', message: 'DDL is not allowed', command_tag: null, rows: null }, ['DDL']),
    statement('UPDATE', 'update accounts set x = 1', { status: 'error', sqlstate: '42P01', message: 'relation does not exist', command_tag: null, rows: null }, ['WRITE']),
    {
      ...envelope('session.end'), session, identity, upstream, reason: 'client_closed', detail: null,
      duration_ms: 1200, statements: 4, bytes_in: 300, bytes_out: 900,
    },
    {
      ...envelope('checkpoint', false),
      checkpoint: { seq: 8, hash: 'b'.repeat(64), time: '2026-11-26T06:00:09.000000Z', instance: 'pgw-test', key_id: 'k1', jws: 'eyJ.eyJ.sig' },
    },
    { ...envelope('proxy.stop', false), config_sha256: 'a'.repeat(64), checkpoint_key_id: null, listen: '127.0.0.1:6432' },
  ] as AuditRecordBody[]
}

/** Seal bodies into a chain continuing from `head`. */
export function seal(bodies: AuditRecordBody[], head: ChainHead = EMPTY_HEAD): SealedRecord[] {
  const chain = new AuditChain(head)
  return bodies.map((b) => chain.seal(b))
}

/** `count` statement records sealed from `head`. */
export function statements(count: number, head: ChainHead = EMPTY_HEAD): SealedRecord[] {
  return seal(Array.from({ length: count }, (_, i) => statement('SELECT', `select ${i}`) as AuditRecordBody), head)
}
