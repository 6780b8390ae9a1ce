/** `audit:` — where audit records go and what they keep. */
import { resolve } from 'node:path'
import { fail, formatPath, type KeyPath, shown, typeName } from './errors.js'
import { given, type Reader } from './reader.js'
import type { AuditConfig, AuditSinkConfig } from './types.js'
import { isShippedSinkType, parseShippedSink, settleSinkNames, SHIPPED_SINK_TYPES, type ShippedSinkDraft } from './parse-sinks.js'
import { loadCheckpointSigningKey } from '../ledger/checkpoint.js'
import { parseAuthFailureSummary } from './parse-auth-failures.js'
import { mapEach } from './problems.js'

const AUDIT_KEYS = [
  'enabled', 'log', 'stdout', 'durability', 'fsync_interval', 'parameters', 'unparseable',
  'parameter_hmac_key', 'max_statement_bytes', 'max_parameter_bytes', 'sinks',
  'checkpoint', 'rotate', 'auth_failure_summary',
]
const SINK_TYPES = ['file', ...SHIPPED_SINK_TYPES]

export function parseAudit(r: Reader, v: unknown): AuditConfig {
  const path = ['audit']
  const m = v === null || v === undefined ? {} : r.mapping(v, path, AUDIT_KEYS)

  // `log` absent => audit/audit.jsonl next to the config; `log: false` or
  // `log: null` => no file log.
  let log: string | null = resolve(r.baseDir, 'audit/audit.jsonl')
  const logGiven = m.log !== undefined
  if (m.log === null || m.log === false) log = null
  else if (m.log !== undefined) log = r.path(m.log, [...path, 'log'])

  let stdout = r.bool(m.stdout, [...path, 'stdout'], false)

  let sinks: AuditSinkConfig[] = []
  if (given(m, 'sinks')) {
    let fileSink: { path: string; at: KeyPath } | null = null
    const shipped: ShippedSinkDraft[] = []
    // Each sink's problems are reported, not only the first sink's.
    mapEach(r.list(m.sinks, [...path, 'sinks']), (item, i) => {
      const sp = [...path, 'sinks', i]
      const type = sinkType(r, item, sp)
      if (isShippedSinkType(type)) {
        shipped.push(parseShippedSink(r, item, sp, type, i))
        return
      }
      const sm = r.mapping(item, sp, ['type', 'path'])
      if (!given(sm, 'path')) fail([...sp, 'path'], 'is required for a file sink')
      const p = r.path(sm.path, [...sp, 'path'])
      if (fileSink !== null) fail(sp, `only one file sink is supported (another is at ${formatPath(fileSink.at)})`)
      fileSink = { path: p, at: sp }
    })
    if (fileSink !== null) {
      const fs: { path: string; at: KeyPath } = fileSink
      // A file sink is another way to write `log: PATH`; both must agree.
      if (logGiven && log !== fs.path) {
        fail([...fs.at, 'path'], log === null ? 'conflicts with audit.log: false' : 'conflicts with audit.log (set only one of them)')
      }
      log = fs.path
    }
    // Without a file log, `{ type: stdout }` is the in-line stdout writer (audit.stdout); it takes no options.
    if (log === null) {
      for (const d of shipped.filter((x) => x.config.type === 'stdout')) {
        r.mapping((m.sinks as unknown[])[d.index], d.at, ['type'])
        stdout = true
      }
    }
    const toShip = log === null ? shipped.filter((x) => x.config.type !== 'stdout') : shipped
    if (stdout && toShip.some((x) => x.config.type === 'stdout')) {
      fail(toShip.find((x) => x.config.type === 'stdout')!.at, 'with audit.stdout: true every record would be printed twice; use one of them')
    }
    // Shipped sinks follow the file log: settled once `log` is final.
    sinks = settleSinkNames(toShip, log)
  }

  const durability = r.oneOf(m.durability, [...path, 'durability'], ['strict', 'batched'] as const, 'strict')
  const fsyncIntervalMs = r.duration(m.fsync_interval, [...path, 'fsync_interval'], 50, 1, 10_000)
  const parameters = r.oneOf(m.parameters, [...path, 'parameters'], ['full', 'hmac', 'omit'] as const, 'full')
  const unparseable = r.oneOf(m.unparseable, [...path, 'unparseable'], ['forward', 'refuse'] as const, 'forward')
  let parameterHmacKey: string | null = null
  if (given(m, 'parameter_hmac_key')) {
    parameterHmacKey = r.string(m.parameter_hmac_key, [...path, 'parameter_hmac_key'])
    if (Buffer.byteLength(parameterHmacKey) < 16) {
      fail([...path, 'parameter_hmac_key'], 'is too short; use at least 16 bytes (32 random bytes recommended)')
    }
  } else if (parameters === 'hmac') {
    fail([...path, 'parameter_hmac_key'], 'is required with parameters: hmac (e.g. "${file:secrets/audit-hmac.key}")')
  }
  const maxStatementBytes = r.size(m.max_statement_bytes, [...path, 'max_statement_bytes'], 65536, 1, 2 ** 30)
  const maxParameterBytes = r.size(m.max_parameter_bytes, [...path, 'max_parameter_bytes'], 4096, 1, 2 ** 30)
  const enabled = r.bool(m.enabled, [...path, 'enabled'], true)

  let checkpoint: AuditConfig['checkpoint'] = null
  if (given(m, 'checkpoint')) {
    const cp = [...path, 'checkpoint']
    const cm = r.mapping(m.checkpoint, cp, ['key', 'every_records', 'every_seconds'])
    if (!given(cm, 'key')) fail([...cp, 'key'], 'is required: the Ed25519 private key file (create one with "pgwitness keygen")')
    const key = r.path(cm.key, [...cp, 'key'])
    try {
      loadCheckpointSigningKey(key)
    } catch (err) {
      fail([...cp, 'key'], (err as Error).message)
    }
    checkpoint = {
      key,
      everyRecords: r.int(cm.every_records, [...cp, 'every_records'], 1000, 1, 10_000_000),
      everySeconds: r.int(cm.every_seconds, [...cp, 'every_seconds'], 60, 1, 86_400),
    }
    if (log === null && !stdout) fail(cp, 'needs an audit log to write checkpoints into (audit.log or stdout)')
  }

  let rotate: AuditConfig['rotate'] = null
  if (given(m, 'rotate')) {
    const rp = [...path, 'rotate']
    const rm = r.mapping(m.rotate, rp, ['max_size', 'interval'])
    if (!given(rm, 'max_size') && !given(rm, 'interval')) fail(rp, 'needs max_size and/or interval (e.g. { max_size: 256MiB, interval: 24h })')
    if (log === null) fail(rp, 'applies to the audit log file; audit.log is off')
    rotate = {
      maxBytes: given(rm, 'max_size') ? r.size(rm.max_size, [...rp, 'max_size'], 0, 4096, 2 ** 48) : null,
      intervalMs: given(rm, 'interval') ? r.duration(rm.interval, [...rp, 'interval'], 0, 1000, 366 * 86_400_000) : null,
    }
  }

  return {
    log,
    stdout,
    durability,
    fsyncIntervalMs,
    parameters,
    unparseable,
    parameterHmacKey,
    maxStatementBytes,
    maxParameterBytes,
    enabled,
    sinks,
    checkpoint,
    rotate,
    authFailureSummary: parseAuthFailureSummary(r, m.auth_failure_summary, [...path, 'auth_failure_summary']),
  }
}

function sinkType(r: Reader, item: unknown, path: KeyPath): string {
  if (item === null || typeof item !== 'object' || Array.isArray(item)) {
    fail(path, `must be a mapping such as { type: stdout } (got ${typeName(item)})`)
  }
  const sm = item as Record<string, unknown>
  if (!given(sm, 'type')) fail([...path, 'type'], `is required (one of ${SINK_TYPES.join(', ')})`)
  const type = r.string(sm.type, [...path, 'type'])
  if (SINK_TYPES.includes(type)) return type
  fail([...path, 'type'], `must be one of ${SINK_TYPES.join(', ')} (got ${shown(sm.type)})`)
}
