/**
 * The audit record contract, `pgwitness.audit/v1` (see
 * ../shared/audit-record-v1.md and schema/audit-record.v1.json). Fields are
 * added, never renamed or removed, within v1.
 */
import type { ApprovalInfo, AuthFailureReason, IdentityInfo } from '../identity/types.js'
export type { ApprovalInfo, AuthFailureReason, IdentityInfo }

export const AUDIT_SCHEMA = 'pgwitness.audit/v1' as const

export type RecordType =
  | 'proxy.start'
  | 'proxy.stop'
  | 'auth.failure'
  | 'session.start'
  | 'statement'
  | 'session.end'
  | 'transaction.end'
  | 'checkpoint'

export interface ProxyInfo {
  instance: string
  version: string
}

export interface TlsInfo {
  version: string
  cipher: string
  client_cert_sha256: string | null
}

export interface ConnectionInfo {
  id: string
  client: { address: string; port: number }
  tls: TlsInfo | null
}

export interface ChainInfo {
  seq: number
  prev: string
  hash: string
}

export interface SessionInfo {
  id: string
  started_at: string
  application_name: string | null
  /** Present on a replication connection (replication=database: logical, replication=true: physical). */
  replication?: 'logical' | 'physical'
}

export interface UpstreamInfo {
  host: string
  port: number
  database: string
  role: string
  backend_pid: number
  server_session_id: string
}

/** A recorded bind parameter. */
export type RecordedParameter =
  | { format: 'text'; value: string; truncated?: true; length?: number; raw_base64?: string }
  | { format: 'binary'; base64: string; truncated?: true; length?: number }
  | { format: 'hmac'; hmac_sha256: string; length: number }
  | null

export interface StatementInfo {
  seq: number
  protocol: 'simple' | 'extended' | 'function_call'
  /** The SQL of this one statement; null for a fastpath function call. */
  text: string | null
  text_truncated: boolean
  /** Mode `omit` records only the count. */
  parameters: RecordedParameter[] | { count: number } | null
  prepared_name: string | null
  portal: string | null
  /** Fastpath FunctionCall target, when protocol = function_call. */
  function_oid: number | null
  command: string
  classes: string[]
  objects: Array<{ type: string; schema: string | null; name: string }>
  in_transaction: boolean
  /** The session's transaction the statement ran in (see transaction.end). */
  transaction: { number: number; kind: TransactionKind }
  /** Present ("server") only when the text is the whole Query because the proxy could not split it as the server did. */
  split?: 'server'
  /** Present (true) only when the statement changes application_name or pgwitness.* (recorded, not refused, by default). */
  governed_setting_changed?: true
  /** The client encoding the text (and text parameters) were decoded from; absent when UTF8. */
  text_encoding?: string
  /**
   * Base64 of the text's bytes as sent (the whole Query or Parse text), present
   * only when `text` is not their exact rendering (bytes invalid in the encoding,
   * or an encoding without an exact decoder).
   */
  text_raw_base64?: string
}

/** A statement rule that refused (or, in monitor mode, would have refused) a statement. */
export interface StatementRuleHit {
  /** The policy rule (policy[].name) whose `statements:` block it belongs to. */
  rule: string
  /** The entry: its `name`, or its place, e.g. `deny[0]`, `require_claims[1]`; `unknown` for the fail-closed refusal. */
  statement_rule: string
  /** What matched, e.g. `class DDL, command DROP TABLE`, `object public.secrets_cards, without claim change_ticket`. */
  matched: string
}

/** What statement rules said about a statement (record field `policy`, present only when they said something). */
export interface StatementPolicyInfo {
  /** The rule that refused it (outcome.status denied, SQLSTATE 42501). */
  denied_by?: StatementRuleHit
  /** Rules in monitor mode that would have refused it; it ran. */
  would_deny?: StatementRuleHit[]
  /** Values of claims that require_claims rules asked of the identity, as presented. */
  claims?: Record<string, unknown>
}

/**
 * autocommit: its own transaction, outcome final; implicit: shared (multi-statement Query, pipeline);
 * explicit: BEGIN …; unknown (number 0): a statement whose outcome was never seen (written on recovery).
 */
export type TransactionKind = 'autocommit' | 'implicit' | 'explicit' | 'unknown'

export type OutcomeStatus = 'ok' | 'error' | 'denied' | 'cancelled' | 'unknown'

export interface OutcomeInfo {
  status: OutcomeStatus
  command_tag: string | null
  rows: number | null
  sqlstate: string | null
  message: string | null
  started_at: string
  duration_us: number | null
  /** The Execute stopped at its row limit (PortalSuspended); present only then. */
  suspended?: true
  /** On the last of several Executes of one portal: rows over all of them. */
  portal_rows?: number
}

export type SessionEndReason =
  | 'client_closed'
  | 'token_expired'
  | 'upstream_closed'
  | 'upstream_error'
  | 'protocol_violation'
  | 'proxy_shutdown'
  | 'policy_terminated'
  /** The audit log could not be written: the session was ended rather than run statements unaudited. */
  | 'audit_unavailable'
  /** The session's approval expired (time-boxed elevation). */
  | 'approval_expired'

/**
 * Fields every record has. The record builders (records.ts) fill `id` and
 * `time` and return the record without `chain` (an `Unchained` record); the
 * audit writer adds `chain` as it appends (chain.ts, log.ts).
 */
export interface Envelope {
  schema: typeof AUDIT_SCHEMA
  id: string
  time: string
  type: RecordType
  proxy: ProxyInfo
  connection: ConnectionInfo | null
  chain: ChainInfo
}

export interface ProxyStartRecord extends Envelope {
  type: 'proxy.start' | 'proxy.stop'
  config_sha256: string
  checkpoint_key_id: string | null
  listen: string
}

export interface AuthFailureRecord extends Envelope {
  type: 'auth.failure'
  method: 'jwt' | 'mtls' | 'jwt+mtls' | 'none'
  reason: AuthFailureReason
  detail: string
  requested: { user: string | null; database: string | null; application_name: string | null }
  identity: Partial<IdentityInfo> | null
  /** A verified approval that was refused (not bound to the identity, out of scope). */
  approval?: ApprovalInfo
  /** Only on a summary (auth-failure-summary.ts): how many failures of this key it stands for, the first and the last one's time. */
  count?: number
  first_time?: string
  last_time?: string
}

export interface SessionStartRecord extends Envelope {
  type: 'session.start'
  session: SessionInfo
  identity: IdentityInfo
  upstream: UpstreamInfo
  /** Present when the session was admitted with an approval. */
  approval?: ApprovalInfo
}

export interface StatementRecord extends Envelope {
  type: 'statement'
  session: SessionInfo
  identity: IdentityInfo
  upstream: UpstreamInfo
  /** Present when the session was admitted with an approval. */
  approval?: ApprovalInfo
  statement: StatementInfo
  outcome: OutcomeInfo
  /** Present only when statement rules said something about it. */
  policy?: StatementPolicyInfo
}

export interface SessionEndRecord extends Envelope {
  type: 'session.end'
  session: SessionInfo
  identity: IdentityInfo
  upstream: UpstreamInfo
  /** Present when the session was admitted with an approval. */
  approval?: ApprovalInfo
  reason: SessionEndReason
  detail: string | null
  duration_ms: number
  statements: number
  bytes_in: number
  bytes_out: number
  /** Replication sessions: CopyData messages relayed each way and their payload bytes. */
  streamed?: StreamedCounts
}

/** CopyData relayed in each direction of a replication session. */
export interface StreamedCounts {
  from_client: { messages: number; bytes: number }
  from_server: { messages: number; bytes: number }
}

/** The end of an implicit or explicit transaction: its effect on the statements it covers. */
export interface TransactionEndRecord extends Envelope {
  type: 'transaction.end'
  session: SessionInfo
  identity: IdentityInfo
  upstream: UpstreamInfo
  /** Present when the session was admitted with an approval. */
  approval?: ApprovalInfo
  transaction: {
    number: number
    /** unknown: the session was lost with answers outstanding. */
    outcome: 'committed' | 'rolled_back' | 'prepared' | 'unknown'
    cause: string
    gid: string | null
    first_seq: number
    last_seq: number
    /** Statement ranges ROLLBACK TO SAVEPOINT undid (inclusive). */
    undone_seqs: Array<{ first: number; last: number; savepoint: string }>
  }
}

/**
 * checkpoint: the signed chain head. `checkpoint.seq`/`hash` are those of
 * the record just before this one; `jws` signs them with `time` and
 * `instance` (see checkpoint.ts).
 */
export interface CheckpointRecord extends Envelope {
  type: 'checkpoint'
  checkpoint: { seq: number; hash: string; time: string; instance: string; key_id: string; jws: string }
}

export type AuditRecord =
  | ProxyStartRecord
  | AuthFailureRecord
  | SessionStartRecord
  | StatementRecord
  | SessionEndRecord
  | TransactionEndRecord
  | CheckpointRecord

/** A record before the writer has chained it: everything but `chain`. */
export type Unchained<R extends AuditRecord> = R extends unknown ? Omit<R, 'chain'> : never

/** What the proxy appends to the audit log (AuditSink.append); the writer adds `chain`. */
export type AuditRecordBody = Unchained<AuditRecord>
