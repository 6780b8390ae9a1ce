import {
  AUDIT_SCHEMA,
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
  type StatementRecord,
  type Unchained,
  type UpstreamInfo,
} from './types.js'
import type { ObservedStatement } from '../session/statement-tracker.js'
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
}

export function sessionStartRecord(c: SessionContext): Unchained<SessionStartRecord> {
  return { ...envelope('session.start', c.proxy, c.connection), session: c.session, identity: c.identity, upstream: c.upstream }
}

export function statementRecord(c: SessionContext, seq: number, s: ObservedStatement): Unchained<StatementRecord> {
  return {
    ...envelope('statement', c.proxy, c.connection),
    session: c.session,
    identity: c.identity,
    upstream: c.upstream,
    statement: {
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
      in_transaction: s.inTransaction,
    },
    outcome: {
      status: s.status,
      command_tag: s.commandTag,
      rows: s.rows,
      sqlstate: s.sqlstate,
      message: s.message,
      started_at: formatMicros(s.startedAtUs),
      duration_us: s.durationUs,
    },
  }
}

export function sessionEndRecord(
  c: SessionContext,
  f: { reason: SessionEndReason; detail: string | null; durationMs: number; statements: number; bytesIn: number; bytesOut: number },
): Unchained<SessionEndRecord> {
  return {
    ...envelope('session.end', c.proxy, c.connection),
    session: c.session,
    identity: c.identity,
    upstream: c.upstream,
    reason: f.reason,
    detail: f.detail,
    duration_ms: f.durationMs,
    statements: f.statements,
    bytes_in: f.bytesIn,
    bytes_out: f.bytesOut,
  }
}

export function checkpointRecord(proxy: ProxyInfo, checkpoint: CheckpointRecord['checkpoint']): Unchained<CheckpointRecord> {
  return { ...envelope('checkpoint', proxy, null), checkpoint }
}
