/**
 * NDJSON request bodies for the HTTP sink, one line per record (two for
 * Elastic), per `envelope`:
 *
 *   none          the record (v1 line or OCSF event) — Vector's http_server
 *                 source, Fluent Bit, Logstash http input, any NDJSON endpoint;
 *   splunk_hec    {"time":<epoch s.µs>,"host":<instance>,"source":"pgwitness",
 *                  "sourcetype":"pgwitness:audit"[,"index":…],"event":<record>}
 *                 — Splunk HTTP Event Collector, /services/collector/event;
 *   elastic_bulk  {"create":{"_index":<index>,"_id":<record id>}} then the
 *                 record — Elasticsearch/OpenSearch _bulk. `create` with the
 *                 record id as _id makes a re-sent record a 409 conflict
 *                 instead of a second document.
 *
 * The record's own JSON text is embedded as is (not re-serialized), so a v1
 * line arrives byte for byte as it is in the log and its chain hash verifies.
 */
import type { HttpEnvelope } from '../config/types.js'
import { epochMs } from './ocsf.js'
import type { RecordRenderer } from './format.js'
import type { FollowedRecord } from './types.js'

export interface BodyOptions {
  envelope: HttpEnvelope
  index: string | null
  /** Largest body; records are not split, so a single larger record makes a body of its own. */
  maxBytes: number
}

/** The batch as one or more NDJSON bodies, in record order, each within maxBytes where possible. */
export function ndjsonBodies(batch: readonly FollowedRecord[], render: RecordRenderer, o: BodyOptions): Buffer[] {
  const bodies: Buffer[] = []
  let parts: Buffer[] = []
  let size = 0
  for (const r of batch) {
    const line = Buffer.from(envelopeLine(r, render(r), o), 'utf8')
    if (size > 0 && size + line.length > o.maxBytes) {
      bodies.push(Buffer.concat(parts, size))
      parts = []
      size = 0
    }
    parts.push(line)
    size += line.length
  }
  if (size > 0) bodies.push(Buffer.concat(parts, size))
  return bodies
}

/** One record's text with its envelope, ending in '\n'. */
export function envelopeLine(r: FollowedRecord, json: string, o: Pick<BodyOptions, 'envelope' | 'index'>): string {
  switch (o.envelope) {
    case 'splunk_hec':
      return `{"time":${epochSecondsText(r.record.time)},"host":${JSON.stringify(r.record.proxy.instance)},"source":"pgwitness","sourcetype":"pgwitness:audit"${
        o.index !== null ? `,"index":${JSON.stringify(o.index)}` : ''},"event":${json}}\n`
    case 'elastic_bulk':
      return `{"create":{"_index":${JSON.stringify(o.index ?? 'pgwitness-audit')},"_id":${JSON.stringify(r.record.id)}}}\n${json}\n`
    default:
      return json + '\n'
  }
}

/** RFC 3339 time as epoch seconds with up to microseconds, e.g. 1764132102.123456 (what HEC's "time" takes). */
export function epochSecondsText(time: string): string {
  const ms = epochMs(time)
  const micros = /\.\d{3}(\d{1,3})/.exec(time)?.[1]?.padEnd(3, '0') ?? '000'
  const frac = String(ms % 1000).padStart(3, '0') + micros
  return `${Math.floor(ms / 1000)}.${frac}`
}

/**
 * Elastic `_bulk` answers 200 even when documents failed: the items tell.
 * `create` of an _id that exists is 409 — the record is already there (a
 * re-send), which counts as delivered. Returns a description of the first
 * real failure, or null when every item is stored.
 */
export function elasticBulkFailure(responseText: string): string | null {
  let res: { errors?: boolean; items?: Array<Record<string, { status?: number; error?: { type?: string; reason?: string } }>> }
  try {
    res = JSON.parse(responseText) as typeof res
  } catch {
    return 'the _bulk response is not JSON'
  }
  if (res.errors !== true) return null
  let failed = 0
  let first: string | null = null
  for (const item of res.items ?? []) {
    const op = Object.values(item)[0]
    if (op === undefined || op.status === undefined || (op.status >= 200 && op.status < 300) || op.status === 409) continue
    failed++
    first ??= `status ${op.status}${op.error?.type ? ` ${op.error.type}` : ''}${op.error?.reason ? `: ${op.error.reason.slice(0, 200)}` : ''}`
  }
  return failed === 0 ? null : `${failed} document(s) not stored (first: ${first})`
}
