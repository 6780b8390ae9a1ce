/**
 * What a sink sends for each record, per its `format`:
 *   v1   — the log line itself (canonical JSON with its chain fields), so the
 *          SOC can verify the chain from what it received;
 *   ocsf — the OCSF 1.x event of the record (../ocsf.ts), as JSON.
 */
import type { AuditSinkFormat } from '../config/types.js'
import { toOcsf } from './ocsf.js'
import type { FollowedRecord } from './types.js'

export type RecordRenderer = (r: FollowedRecord) => string

export function rendererFor(format: AuditSinkFormat): RecordRenderer {
  return format === 'ocsf' ? (r) => JSON.stringify(toOcsf(r.record)) : (r) => r.line
}
