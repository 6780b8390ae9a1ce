/**
 * RFC 5424 syslog messages, framed by octet counting (RFC 6587 section 3.4.1):
 *
 *   LEN SP <PRI>1 TIMESTAMP HOSTNAME pgwitness PROCID MSGID - MSG
 *
 * - PRI = facility × 8 + severity: `warning` (4) for auth.failure records
 *   and denied statements, `informational` (6) for everything else.
 * - TIMESTAMP is the record's own `time` (RFC 3339, UTC, microseconds).
 * - MSGID is the record type (`statement`, `auth.failure`, …).
 * - No structured data (`-`); MSG is the record as JSON (v1 line or OCSF),
 *   UTF-8 without a BOM (RFC 5424 MSG-ANY), so JSON parsers take it as is.
 */
import type { AuditRecord } from '../evidence/types.js'

export const SEVERITY_WARNING = 4
export const SEVERITY_INFO = 6
export const APP_NAME = 'pgwitness'

export interface SyslogHeader {
  facility: number
  hostname: string
  procid: string
}

/** The syslog severity of a record. */
export function syslogSeverity(rec: AuditRecord): number {
  if (rec.type === 'auth.failure') return SEVERITY_WARNING
  if (rec.type === 'statement' && rec.outcome.status === 'denied') return SEVERITY_WARNING
  return SEVERITY_INFO
}

/** A header field: printable US-ASCII without spaces, at most `max` characters; '-' when empty. */
function field(s: string, max: number): string {
  const clean = s.replace(/[^\x21-\x7e]/g, '').slice(0, max)
  return clean === '' ? '-' : clean
}

/** One framed message: `LEN SP MSG`, LEN counting the bytes of MSG. */
export function syslogFrame(rec: AuditRecord, body: string, h: SyslogHeader): Buffer {
  const pri = h.facility * 8 + syslogSeverity(rec)
  const head = `<${pri}>1 ${field(rec.time, 64)} ${field(h.hostname, 255)} ${APP_NAME} ${field(h.procid, 128)} ${field(rec.type, 32)} - `
  const msg = Buffer.from(head + body, 'utf8')
  return Buffer.concat([Buffer.from(`${msg.length} `, 'ascii'), msg])
}
