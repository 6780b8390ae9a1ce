/**
 * The audit record contract, `pgwitness.audit/v1` (see
 * ../shared/audit-record-v1.md and schema/audit-record.v1.json). Fields are
 * added, never renamed or removed, within v1.
 */

export const AUDIT_SCHEMA = 'pgwitness.audit/v1' as const

export type RecordType =
  | 'proxy.start'
  | 'proxy.stop'
  | 'auth.failure'
  | 'session.start'
  | 'statement'
  | 'session.end'
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
}

export interface IdentityInfo {
  method: 'jwt' | 'mtls' | 'jwt+mtls'
  subject: string
  issuer: string
  audience: string[]
  token_id: string | null
  token_expires_at: string | null
  spiffe_id: string | null
  cert_sha256: string | null
  claims: Record<string, unknown>
  policy_rule: string | null
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
  | { format: 'text'; value: string; truncated?: true; length?: number }
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
}

export type OutcomeStatus = 'ok' | 'error' | 'denied' | 'cancelled' | 'unknown'

export interface OutcomeInfo {
  status: OutcomeStatus
  command_tag: string | null
  rows: number | null
  sqlstate: string | null
  message: string | null
  started_at: string
  duration_us: number | null
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

export type AuthFailureReason =
  | 'token_signature_invalid'
  | 'token_expired'
  | 'token_not_yet_valid'
  | 'issuer_untrusted'
  | 'audience_mismatch'
  | 'algorithm_not_allowed'
  | 'token_malformed'
  | 'token_missing'
  | 'cert_untrusted'
  | 'cert_expired'
  | 'token_not_bound'
  | 'tls_required'
  | 'policy_no_match'
  | 'role_not_allowed'
  | 'database_not_allowed'
  | 'upstream_auth_failed'
  | 'upstream_unavailable'
  | 'upstream_rejected'
  | 'handshake_timeout'
  | 'protocol_violation'
  | 'startup_rejected'
  | 'rate_limited'

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
}

export interface SessionStartRecord extends Envelope {
  type: 'session.start'
  session: SessionInfo
  identity: IdentityInfo
  upstream: UpstreamInfo
}

export interface StatementRecord extends Envelope {
  type: 'statement'
  session: SessionInfo
  identity: IdentityInfo
  upstream: UpstreamInfo
  statement: StatementInfo
  outcome: OutcomeInfo
}

export interface SessionEndRecord extends Envelope {
  type: 'session.end'
  session: SessionInfo
  identity: IdentityInfo
  upstream: UpstreamInfo
  reason: SessionEndReason
  detail: string | null
  duration_ms: number
  statements: number
  bytes_in: number
  bytes_out: number
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
  | CheckpointRecord

/** A record before the writer has chained it: everything but `chain`. */
export type Unchained<R extends AuditRecord> = R extends unknown ? Omit<R, 'chain'> : never

/** What the proxy appends to the audit log (AuditSink.append); the writer adds `chain`. */
export type AuditRecordBody = Unchained<AuditRecord>
