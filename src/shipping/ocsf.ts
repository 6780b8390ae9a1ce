/**
 * Maps a `pgwitness.audit/v1` record to an OCSF 1.3 event (Open Cybersecurity
 * Schema Framework), for sinks configured with `format: ocsf`. Pure: the
 * same record always gives the same event. docs/ocsf.md documents the
 * mapping field by field.
 *
 *   auth.failure, session.start, session.end → Authentication (3002, IAM)
 *   statement                                → Datastore Activity (6005, Application Activity)
 *   proxy.start, proxy.stop                  → Application Lifecycle (6002)
 *   checkpoint (and any type added later)    → Base Event (0), details under `unmapped`
 *
 * Traceability: `metadata.uid` is the record id, `metadata.sequence` its
 * chain.seq, and `unmapped.chain` carries seq/prev/hash, so an OCSF event can
 * always be matched to the verified v1 record it came from. What OCSF has no
 * attribute for is kept under `unmapped` with its v1 name, so nothing of the
 * record is lost.
 */
import type {
  ApprovalInfo,
  AuditRecord,
  AuthFailureRecord,
  CheckpointRecord,
  ConnectionInfo,
  IdentityInfo,
  ProxyStartRecord,
  SessionEndRecord,
  SessionInfo,
  SessionStartRecord,
  StatementRecord,
  UpstreamInfo,
} from '../evidence/types.js'
import { isIP } from 'node:net'

export const OCSF_VERSION = '1.3.0'

/** An OCSF event: the attributes every class requires, plus class-specific ones. */
export interface OcsfEvent {
  class_uid: number
  class_name: string
  category_uid: number
  category_name: string
  activity_id: number
  activity_name: string
  /** class_uid * 100 + activity_id. */
  type_uid: number
  type_name: string
  /** Event time, milliseconds since the Unix epoch. */
  time: number
  severity_id: number
  severity: string
  status_id?: number
  status?: string
  message: string
  metadata: OcsfMetadata
  unmapped: Record<string, unknown>
  [attribute: string]: unknown
}

export interface OcsfMetadata {
  version: string
  product: { name: string; vendor_name: string; version: string }
  /** The v1 record id (UUIDv7). */
  uid: string
  /** The v1 record's chain.seq. */
  sequence: number
  original_time: string
  logged_time: number
  log_name: string
  event_code: string
  correlation_uid?: string
}

// ---- enumerations (OCSF 1.3.0) ----------------------------------------------

const SEVERITY = { 1: 'Informational', 2: 'Low', 3: 'Medium' } as const
type SeverityId = keyof typeof SEVERITY

const STATUS = { 0: 'Unknown', 1: 'Success', 2: 'Failure' } as const
type StatusId = keyof typeof STATUS

/** Datastore Activity (6005) activity_id values. */
export const DATASTORE_ACTIVITY = {
  READ: 1, UPDATE: 2, CONNECT: 3, QUERY: 4, WRITE: 5, CREATE: 6, DELETE: 7, LIST: 8, OTHER: 99,
} as const
const DATASTORE_ACTIVITY_NAME: Record<number, string> = {
  1: 'Read', 2: 'Update', 3: 'Connect', 4: 'Query', 5: 'Write', 6: 'Create', 7: 'Delete', 8: 'List', 99: 'Other',
}

const CLASS = {
  base: { uid: 0, name: 'Base Event', category: 0, categoryName: 'Uncategorized' },
  authentication: { uid: 3002, name: 'Authentication', category: 3, categoryName: 'Identity & Access Management' },
  appLifecycle: { uid: 6002, name: 'Application Lifecycle', category: 6, categoryName: 'Application Activity' },
  datastore: { uid: 6005, name: 'Datastore Activity', category: 6, categoryName: 'Application Activity' },
} as const
type OcsfClass = (typeof CLASS)[keyof typeof CLASS]

/** Authentication.auth_protocol_id 99 (Other) with the protocol named in auth_protocol. */
const AUTH_PROTOCOL: Record<string, string> = { jwt: 'JWT bearer token', mtls: 'TLS client certificate', 'jwt+mtls': 'JWT bearer token + TLS client certificate' }

// ---- entry point --------------------------------------------------------------

export function toOcsf(rec: AuditRecord): OcsfEvent {
  switch (rec.type) {
    case 'statement':
      return statementEvent(rec)
    case 'session.start':
    case 'session.end':
      return sessionEvent(rec)
    case 'auth.failure':
      return authFailureEvent(rec)
    case 'proxy.start':
    case 'proxy.stop':
      return lifecycleEvent(rec)
    case 'checkpoint':
      return checkpointEvent(rec)
    default:
      return otherEvent(rec)
  }
}

// ---- per type -----------------------------------------------------------------

function statementEvent(rec: StatementRecord): OcsfEvent {
  const s = rec.statement
  const o = rec.outcome
  const activity = datastoreActivity(s.command, s.classes)
  const status: StatusId = o.status === 'ok' ? 1 : o.status === 'unknown' ? 0 : 2
  const severity: SeverityId = o.status === 'denied' ? 3 : o.status === 'error' ? 2 : 1
  const table = s.objects.find((x) => x.type === 'table' || x.type === 'view' || x.type === 'materialized view')
  const ev = base(rec, CLASS.datastore, activity, DATASTORE_ACTIVITY_NAME[activity]!, severity, {
    message: `${s.command} by ${rec.identity.subject} as ${rec.upstream.role}@${rec.upstream.database}: ${o.status}`,
    correlation: rec.session.id,
  })
  Object.assign(ev, statusFields(status, o.sqlstate, statementStatusDetail(rec)), {
    actor: actor(rec.identity, rec.session, rec.approval),
    src_endpoint: srcEndpoint(rec.connection),
    dst_endpoint: upstreamEndpoint(rec.upstream),
    database: { name: rec.upstream.database, type_id: 1, type: 'Relational' },
    type_id: 1,
    type: 'Database',
    query_info: {
      query_string: s.text ?? `fastpath function call (oid ${s.function_oid ?? 'unknown'})`,
      ...(s.prepared_name ? { name: s.prepared_name } : {}),
    },
    ...(table ? { table: { name: table.schema ? `${table.schema}.${table.name}` : table.name } } : {}),
    start_time: epochMs(o.started_at),
    ...(o.duration_us !== null ? { duration: Math.round(o.duration_us / 1000) } : {}),
  })
  ev.unmapped = {
    ...traceable(rec),
    session: rec.session,
    identity: identityRest(rec.identity),
    ...approvalOf(rec),
    upstream: { role: rec.upstream.role, backend_pid: rec.upstream.backend_pid, server_session_id: rec.upstream.server_session_id },
    statement: {
      seq: s.seq, protocol: s.protocol, command: s.command, classes: s.classes, objects: s.objects,
      parameters: s.parameters, portal: s.portal, function_oid: s.function_oid,
      in_transaction: s.in_transaction, text_truncated: s.text_truncated,
      ...(s.governed_setting_changed ? { governed_setting_changed: true } : {}),
      ...(s.text_encoding !== undefined ? { text_encoding: s.text_encoding } : {}),
      ...(s.text_raw_base64 !== undefined ? { text_raw_base64: s.text_raw_base64 } : {}),
    },
    outcome: { status: o.status, command_tag: o.command_tag, rows: o.rows, duration_us: o.duration_us },
  }
  return ev
}

function sessionEvent(rec: SessionStartRecord | SessionEndRecord): OcsfEvent {
  const start = rec.type === 'session.start'
  const ev = base(rec, CLASS.authentication, start ? 1 : 2, start ? 'Logon' : 'Logoff', 1, {
    message: start
      ? `${rec.identity.subject} logged on as ${rec.upstream.role}@${rec.upstream.database} (policy rule ${rec.identity.policy_rule ?? 'none'})`
      : `${rec.identity.subject} logged off (${rec.reason})`,
    correlation: rec.session.id,
  })
  Object.assign(ev, statusFields(1, null, start ? null : rec.reason), authCommon(rec, rec.identity.method), {
    user: user(rec.identity),
    actor: actor(rec.identity, rec.session, rec.approval),
    session: session(rec.identity, rec.session),
    dst_endpoint: upstreamEndpoint(rec.upstream),
    ...(start ? {} : { duration: rec.duration_ms }),
  })
  ev.unmapped = {
    ...traceable(rec),
    identity: identityRest(rec.identity),
    ...approvalOf(rec),
    upstream: { database: rec.upstream.database, role: rec.upstream.role, backend_pid: rec.upstream.backend_pid, server_session_id: rec.upstream.server_session_id },
    ...(start ? {} : { reason: rec.reason, detail: rec.detail, statements: rec.statements, bytes_in: rec.bytes_in, bytes_out: rec.bytes_out }),
  }
  return ev
}

function authFailureEvent(rec: AuthFailureRecord): OcsfEvent {
  const id = rec.identity
  const ev = base(rec, CLASS.authentication, 1, 'Logon', 3, { message: rec.detail })
  Object.assign(ev, statusFields(2, null, rec.reason), authCommon(rec, rec.method), {
    // user is required: the principal when it could be established, else the role the client asked for.
    user: id?.subject ? user(id) : { name: rec.requested.user ?? '', type_id: 0, type: 'Unknown' },
  })
  ev.unmapped = { ...traceable(rec), method: rec.method, reason: rec.reason, requested: rec.requested, identity: id, ...approvalOf(rec) }
  // A summary of repeated failures (auth-failure-summary.ts): OCSF's own aggregation attributes.
  if (rec.count !== undefined) Object.assign(ev, { count: rec.count, start_time: epochMs(rec.first_time!), end_time: epochMs(rec.last_time!) })
  return ev
}

function lifecycleEvent(rec: ProxyStartRecord): OcsfEvent {
  const start = rec.type === 'proxy.start'
  const ev = base(rec, CLASS.appLifecycle, start ? 3 : 4, start ? 'Start' : 'Stop', 1, {
    message: `pgwitness ${rec.proxy.instance} ${start ? 'started' : 'stopped'} (listening on ${rec.listen})`,
  })
  Object.assign(ev, statusFields(1, null, null), {
    app: { name: 'pgwitness', vendor_name: 'pgwitness', version: rec.proxy.version, uid: rec.proxy.instance },
  })
  ev.unmapped = { ...traceable(rec), config_sha256: rec.config_sha256, checkpoint_key_id: rec.checkpoint_key_id, listen: rec.listen }
  return ev
}

function checkpointEvent(rec: CheckpointRecord): OcsfEvent {
  const ev = base(rec, CLASS.base, 99, 'Other', 1, { message: `signed audit chain checkpoint at seq ${rec.checkpoint.seq}` })
  ev.unmapped = { ...traceable(rec), checkpoint: rec.checkpoint }
  return ev
}

/** A record type this mapping does not know (added later within v1): the whole record under unmapped. */
function otherEvent(rec: AuditRecord): OcsfEvent {
  const r = rec as unknown as Record<string, unknown>
  const ev = base(rec, CLASS.base, 99, 'Other', 1, { message: `pgwitness audit record ${String(r.type)}` })
  ev.unmapped = { ...traceable(rec), record: r }
  return ev
}

// ---- building blocks ----------------------------------------------------------

function base(
  rec: AuditRecord,
  cls: OcsfClass,
  activityId: number,
  activityName: string,
  severity: SeverityId,
  o: { message: string; correlation?: string },
): OcsfEvent {
  const time = epochMs(rec.time)
  return {
    class_uid: cls.uid,
    class_name: cls.name,
    category_uid: cls.category,
    category_name: cls.categoryName,
    activity_id: activityId,
    activity_name: activityName,
    type_uid: cls.uid * 100 + activityId,
    type_name: `${cls.name}: ${activityName}`,
    time,
    severity_id: severity,
    severity: SEVERITY[severity],
    message: o.message,
    metadata: {
      version: OCSF_VERSION,
      product: { name: 'pgwitness', vendor_name: 'pgwitness', version: rec.proxy.version },
      uid: rec.id,
      sequence: rec.chain.seq,
      original_time: rec.time,
      logged_time: time,
      log_name: rec.schema,
      event_code: rec.type,
      ...(o.correlation ? { correlation_uid: o.correlation } : {}),
    },
    unmapped: {},
  }
}

/** What ties the event to its v1 record. */
function traceable(rec: AuditRecord): Record<string, unknown> {
  return {
    schema: rec.schema,
    id: rec.id,
    type: rec.type,
    instance: rec.proxy.instance,
    chain: { seq: rec.chain.seq, prev: rec.chain.prev, hash: rec.chain.hash },
    ...(rec.connection ? { connection: { id: rec.connection.id, tls: rec.connection.tls } } : {}),
  }
}

function statusFields(id: StatusId, code: string | null, detail: string | null): Record<string, unknown> {
  return {
    status_id: id,
    status: STATUS[id],
    ...(code !== null ? { status_code: code } : {}),
    ...(detail !== null ? { status_detail: detail } : {}),
  }
}

function statementStatusDetail(rec: StatementRecord): string | null {
  const o = rec.outcome
  if (o.status === 'error' || o.status === 'denied') return o.message ?? o.status
  if (o.status === 'cancelled') return o.message ?? 'cancelled'
  if (o.status === 'unknown') return 'the end of the statement was not observed'
  return o.command_tag
}

/** Attributes shared by the Authentication events. */
function authCommon(rec: AuditRecord, method: string): Record<string, unknown> {
  const proto = AUTH_PROTOCOL[method]
  return {
    auth_protocol_id: proto ? 99 : 0,
    auth_protocol: proto ?? 'Unknown',
    logon_type_id: 3,
    logon_type: 'Network',
    is_remote: true,
    service: { name: 'pgwitness', uid: rec.proxy.instance, version: rec.proxy.version },
    ...(rec.connection ? { src_endpoint: srcEndpoint(rec.connection) } : {}),
  }
}

function user(id: Partial<IdentityInfo>): Record<string, unknown> {
  const groups = id.claims?.groups
  return {
    name: id.subject,
    uid: id.spiffe_id ?? id.subject,
    type_id: 0,
    type: 'Unknown',
    ...(Array.isArray(groups) ? { groups: groups.map((g) => ({ name: String(g) })) } : {}),
  }
}

function session(id: IdentityInfo, s: SessionInfo): Record<string, unknown> {
  return {
    uid: s.id,
    created_time: epochMs(s.started_at),
    issuer: id.issuer,
    is_remote: true,
    ...(id.token_expires_at ? { expiration_time: epochMs(id.token_expires_at) } : {}),
    ...(id.token_id ? { credential_uid: id.token_id } : {}),
  }
}

function actor(id: IdentityInfo, s: SessionInfo, approval: ApprovalInfo | undefined): Record<string, unknown> {
  const authorizations: Array<Record<string, unknown>> = []
  if (id.policy_rule) authorizations.push({ decision: 'Allowed', policy: { name: id.policy_rule } })
  // The approval the session was admitted with is an authorization too: its id, ticket and approver.
  if (approval) {
    authorizations.push({
      decision: 'Allowed',
      policy: { name: `approval ${approval.ticket}`, uid: approval.id, desc: `approved by ${approval.approver} (${approval.issuer}) until ${approval.expires_at}` },
    })
  }
  return {
    user: user(id),
    session: session(id, s),
    ...(s.application_name ? { app_name: s.application_name } : {}),
    ...(authorizations.length > 0 ? { authorizations } : {}),
  }
}

/** The v1 `approval` kept whole under unmapped (absent without one). */
function approvalOf(rec: { approval?: ApprovalInfo }): { approval?: ApprovalInfo } {
  return rec.approval ? { approval: rec.approval } : {}
}

/** Identity fields OCSF has no attribute for. */
function identityRest(id: IdentityInfo): Record<string, unknown> {
  return {
    method: id.method, audience: id.audience, spiffe_id: id.spiffe_id, cert_sha256: id.cert_sha256,
    claims: id.claims, policy_rule: id.policy_rule,
  }
}

function srcEndpoint(c: ConnectionInfo | null): Record<string, unknown> | undefined {
  if (c === null) return undefined
  return isIP(c.client.address) ? { ip: c.client.address, port: c.client.port } : { hostname: c.client.address, port: c.client.port }
}

function upstreamEndpoint(u: UpstreamInfo): Record<string, unknown> {
  return { ...(isIP(u.host) ? { ip: u.host } : { hostname: u.host }), port: u.port, svc_name: 'postgresql' }
}

/**
 * Datastore activity by what the statement does to the data: SELECT is a
 * Query; FETCH and COPY TO read; INSERT (and COPY FROM) creates records,
 * UPDATE updates, MERGE writes, DELETE/TRUNCATE delete. DDL and role
 * commands follow their verb (CREATE → Create, DROP → Delete, ALTER, GRANT,
 * REVOKE and other DDL → Update). Everything else (transaction control, SET,
 * SHOW, CALL, DO, utility commands) is Other.
 */
export function datastoreActivity(command: string, classes: readonly string[]): number {
  const c = command.toUpperCase()
  const writes = classes.includes('WRITE')
  if (c === 'SELECT') return writes ? DATASTORE_ACTIVITY.WRITE : DATASTORE_ACTIVITY.QUERY
  if (c === 'FETCH') return DATASTORE_ACTIVITY.READ
  if (c === 'COPY') return writes ? DATASTORE_ACTIVITY.CREATE : DATASTORE_ACTIVITY.READ
  if (c === 'INSERT') return DATASTORE_ACTIVITY.CREATE
  if (c === 'UPDATE') return DATASTORE_ACTIVITY.UPDATE
  if (c === 'MERGE') return DATASTORE_ACTIVITY.WRITE
  if (c === 'DELETE' || c === 'TRUNCATE TABLE' || c === 'TRUNCATE') return DATASTORE_ACTIVITY.DELETE
  if (classes.includes('DDL') || classes.includes('ROLE')) {
    if (c.startsWith('CREATE ') || c === 'SELECT INTO') return DATASTORE_ACTIVITY.CREATE
    if (c.startsWith('DROP ')) return DATASTORE_ACTIVITY.DELETE
    return DATASTORE_ACTIVITY.UPDATE
  }
  return DATASTORE_ACTIVITY.OTHER
}

/** RFC 3339 (any number of fractional digits) to epoch milliseconds; V8's Date.parse wants at most 3. */
export function epochMs(time: string): number {
  const ms = Date.parse(time.replace(/(\.\d{3})\d+/, '$1'))
  return Number.isFinite(ms) ? ms : 0
}
