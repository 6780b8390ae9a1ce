/** `audit:` — where audit records go and what they keep. */
import { resolve } from 'node:path'
import { fail, formatPath, type KeyPath, shown, typeName } from './errors.js'
import { given, NOT_YET, type Reader } from './reader.js'
import type { AuditConfig } from './types.js'

const AUDIT_KEYS = [
  'enabled', 'log', 'stdout', 'durability', 'fsync_interval', 'parameters',
  'parameter_hmac_key', 'max_statement_bytes', 'max_parameter_bytes', 'sinks',
]
const AUDIT_LATER = ['checkpoint']
const SINK_TYPES = ['stdout', 'file']
const SINK_TYPES_LATER = ['nats', 'syslog', 'http']

export function parseAudit(r: Reader, v: unknown): AuditConfig {
  const path = ['audit']
  const m = v === null || v === undefined ? {} : r.mapping(v, path, AUDIT_KEYS, AUDIT_LATER)

  // `log` absent => audit/audit.jsonl next to the config; `log: false` or
  // `log: null` => no file log.
  let log: string | null = resolve(r.baseDir, 'audit/audit.jsonl')
  const logGiven = m.log !== undefined
  if (m.log === null || m.log === false) log = null
  else if (m.log !== undefined) log = r.path(m.log, [...path, 'log'])

  let stdout = r.bool(m.stdout, [...path, 'stdout'], false)

  if (given(m, 'sinks')) {
    let fileSink: { path: string; at: KeyPath } | null = null
    r.list(m.sinks, [...path, 'sinks']).forEach((item, i) => {
      const sp = [...path, 'sinks', i]
      const type = sinkType(r, item, sp)
      if (type === 'stdout') {
        r.mapping(item, sp, ['type'])
        stdout = true
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
  }

  const durability = r.oneOf(m.durability, [...path, 'durability'], ['strict', 'batched'] as const, 'strict')
  const fsyncIntervalMs = r.duration(m.fsync_interval, [...path, 'fsync_interval'], 50, 1, 10_000)
  const parameters = r.oneOf(m.parameters, [...path, 'parameters'], ['full', 'hmac', 'omit'] as const, 'full')
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

  return {
    log,
    stdout,
    durability,
    fsyncIntervalMs,
    parameters,
    parameterHmacKey,
    maxStatementBytes,
    maxParameterBytes,
    enabled,
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
  if (SINK_TYPES_LATER.includes(type)) fail([...path, 'type'], `sink type ${type} is ${NOT_YET}`)
  fail([...path, 'type'], `must be one of ${SINK_TYPES.join(', ')} (got ${shown(sm.type)})`)
}
