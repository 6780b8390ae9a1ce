import {
  AUDIT_SCHEMA,
  type ApprovalInfo,
  type AuthFailureRecord,
  type CheckpointRecord,
  type ConnectionInfo,
  type IdentityInfo,
  type ProxyInfo,
  type ProxyStartRecord,
  type SessionEndRecord,
  type SessionEndReason,
  type SessionInfo,
  type SessionStartRecord,
  type StreamedCounts,
  type StatementRecord,
  type TransactionEndRecord,
  type Unchained,
  type UpstreamInfo,
} from './types.js'
import type { ObservedStatement, TransactionEnd } from './observed.js'
import { uuidv7 } from '../util/ids.js'
import { formatMicros, rfc3339Micros } from '../util/time.js'

/** Record builders: each returns a complete v1 record (the writer adds `chain`). */

function envelope<T extends string>(type: T, proxy: ProxyInfo, connection: ConnectionInfo | null) {
  return { schema: AUDIT_SCHEMA, id: uuidv7(), time: rfc3339Micros(), type, proxy, connection }
}

export function proxyLifecycleRecord(
  type: 'proxy.start' | 'proxy.stop',
  proxy: ProxyInfo,
  fields: { configSha256: string; listen: string; checkpointKeyId: string | null },
): Unchained<ProxyStartRecord> {
  return {
    ...envelope(type, proxy, null),
    config_sha256: fields.configSha256,
    checkpoint_key_id: fields.checkpointKeyId,
    listen: fields.listen,
  }
}

export function authFailureRecord(
  proxy: ProxyInfo,
  connection: ConnectionInfo,
  f: Pick<AuthFailureRecord, 'method' | 'reason' | 'detail' | 'requested' | 'identity'>,
): Unchained<AuthFailureRecord> {
  return { ...envelope('auth.failure', proxy, connection), ...f }
}

/**
 * The parts of every record of one governed session that never change:
 * built once per session so each statement record only adds its own fields.
 */
export interface SessionContext {
  proxy: ProxyInfo
  connection: ConnectionInfo
  session: SessionInfo
  identity: IdentityInfo
  upstream: UpstreamInfo
  /** The session's approval: repeated in every record of the session. */
  approval?: ApprovalInfo
}

/**
 * The fields every record of a governed session starts with; `approval` only
 * when the session has one. One object literal, not spreads: a statement
 * record is built per statement, and copying objects member by member was
 * most of its cost.
 */
function sessionEnvelope<T extends string>(type: T, c: SessionContext) {
  const e: ReturnType<typeof envelope<T>> & Pick<SessionContext, 'session' | 'identity' | 'upstream' | 'approval'> = {
    schema: AUDIT_SCHEMA, id: uuidv7(), time: rfc3339Micros(), type, proxy: c.proxy, connection: c.connection,
    session: c.session, identity: c.identity, upstream: c.upstream,
  }
  if (c.approval) e.approval = c.approval
  return e
}

export function sessionStartRecord(c: SessionContext): Unchained<SessionStartRecord> {
  return sessionEnvelope('session.start', c)
}

export function statementRecord(c: SessionContext, s: ObservedStatement): Unchained<StatementRecord> {
  const rec = sessionEnvelope('statement', c) as Unchained<StatementRecord>
  rec.statement = statementMember(s, s.seq, s.inTransaction, s.transaction)
  rec.outcome = outcomeMember(s)
  if (s.policy !== null) rec.policy = s.policy
  return rec
}

/** The members of a governed session's records that never change (the session envelope but schema, id, time and type). */
export type SharedSessionMembers = Pick<SessionContext, 'proxy' | 'connection' | 'session' | 'identity' | 'upstream' | 'approval'>

export function sharedSessionMembers(c: SessionContext): SharedSessionMembers {
  const m: SharedSessionMembers = { proxy: c.proxy, connection: c.connection, session: c.session, identity: c.identity, upstream: c.upstream }
  if (c.approval) m.approval = c.approval
  return m
}

/**
 * A statement record without its session's shared members: with them
 * (sharedSessionMembers) it is statementRecord's record, member for member.
 */
export function statementOwnMembers(s: ObservedStatement): StatementOwnMembers {
  return ownMembers(s, statementMember(s, s.seq, s.inTransaction, s.transaction), outcomeMember(s))
}

type StatementOwnMembers = Omit<Unchained<StatementRecord>, keyof SharedSessionMembers>

/**
 * The own members of a statement record whose outcome was not seen (a
 * strict-durability intent): `s` as forwarded, at its predicted `seq`,
 * outside any known transaction, outcome unknown with `message`.
 */
export function unseenStatementOwnMembers(s: StatementFacts, seq: number, transaction: StatementRecord['statement']['transaction'], message: string): StatementOwnMembers {
  const outcome: StatementRecord['outcome'] = {
    status: 'unknown', command_tag: null, rows: null, sqlstate: null, message, started_at: formatMicros(s.startedAtUs), duration_us: null,
  }
  return ownMembers(s, statementMember(s, seq, false, transaction), outcome)
}

function ownMembers(s: StatementFacts, statement: StatementRecord['statement'], outcome: StatementRecord['outcome']): StatementOwnMembers {
  const rec: StatementOwnMembers = { schema: AUDIT_SCHEMA, id: uuidv7(), time: rfc3339Micros(), type: 'statement', statement, outcome }
  if (s.policy !== null) rec.policy = s.policy
  return rec
}

/** What a statement is, before it runs (the tracker's StatementBase). */
type StatementFacts = Pick<ObservedStatement,
  'protocol' | 'text' | 'textTruncated' | 'parameters' | 'preparedName' | 'portal' | 'functionOid' | 'command' | 'classes' |
  'objects' | 'split' | 'governedSettingChanged' | 'textOrigin' | 'policy' | 'startedAtUs'>

function statementMember(s: StatementFacts, seq: number, inTransaction: boolean, transaction: StatementRecord['statement']['transaction']): StatementRecord['statement'] {
  const st: StatementRecord['statement'] = {
    seq,
    protocol: s.protocol,
    text: s.text,
    text_truncated: s.textTruncated,
    parameters: s.parameters,
    prepared_name: s.preparedName,
    portal: s.portal,
    function_oid: s.functionOid,
    command: s.command,
    classes: s.classes as string[],
    objects: s.objects,
    in_transaction: inTransaction,
    transaction,
    ...(s.governedSettingChanged ? { governed_setting_changed: true as const } : {}),
    ...(s.textOrigin?.encoding ? { text_encoding: s.textOrigin.encoding } : {}),
    ...(s.textOrigin?.raw ? { text_raw_base64: s.textOrigin.raw } : {}),
  }
  if (s.split === 'server') st.split = 'server'
  return st
}

function outcomeMember(s: ObservedStatement): StatementRecord['outcome'] {
  const o: StatementRecord['outcome'] = {
    status: s.status,
    command_tag: s.commandTag,
    rows: s.rows,
    sqlstate: s.sqlstate,
    message: s.message,
    started_at: formatMicros(s.startedAtUs),
    duration_us: s.durationUs,
  }
  if (s.suspended) o.suspended = true
  if (s.portalRows !== null) o.portal_rows = s.portalRows
  return o
}

export function transactionEndRecord(c: SessionContext, e: TransactionEnd): Unchained<TransactionEndRecord> {
  return { ...sessionEnvelope('transaction.end', c), transaction: transactionMember(e) }
}

/** A transaction.end record without its session's shared members (sharedSessionMembers): with them it is transactionEndRecord's. */
export function transactionEndOwnMembers(e: TransactionEnd): Omit<Unchained<TransactionEndRecord>, keyof SharedSessionMembers> {
  return { schema: AUDIT_SCHEMA, id: uuidv7(), time: rfc3339Micros(), type: 'transaction.end', transaction: transactionMember(e) }
}

function transactionMember(e: TransactionEnd): TransactionEndRecord['transaction'] {
  return { number: e.number, outcome: e.outcome, cause: e.cause, gid: e.gid, first_seq: e.firstSeq, last_seq: e.lastSeq, undone_seqs: e.undone }
}

export function sessionEndRecord(
  c: SessionContext,
  f: { reason: SessionEndReason; detail: string | null; durationMs: number; statements: number; bytesIn: number; bytesOut: number; streamed?: StreamedCounts | null },
): Unchained<SessionEndRecord> {
  return {
    ...sessionEnvelope('session.end', c),
    reason: f.reason,
    detail: f.detail,
    duration_ms: f.durationMs,
    statements: f.statements,
    bytes_in: f.bytesIn,
    bytes_out: f.bytesOut,
    ...(f.streamed ? { streamed: f.streamed } : {}),
  }
}

export function checkpointRecord(proxy: ProxyInfo, checkpoint: CheckpointRecord['checkpoint']): Unchained<CheckpointRecord> {
  return { ...envelope('checkpoint', proxy, null), checkpoint }
}
