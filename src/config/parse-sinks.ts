/**
 * `audit.sinks[i]` entries that are shipped from the file log: nats, syslog,
 * http (stdout and file entries stay in parse-audit.ts). Every key is
 * validated here; the shipper code only ever sees AuditSinkConfig.
 */
import { hostname as osHostname } from 'node:os'
import { fail, formatPath, type KeyPath, shown } from './errors.js'
import { given, type Mapping, type Reader } from './reader.js'
import type { AuditSinkConfig, HttpSinkConfig, NatsSinkConfig, ShippedSinkBase, SinkCa, SyslogSinkConfig } from './types.js'

export const SHIPPED_SINK_TYPES = ['nats', 'syslog', 'http', 'stdout'] as const
export type ShippedSinkType = (typeof SHIPPED_SINK_TYPES)[number]

export function isShippedSinkType(type: string): type is ShippedSinkType {
  return (SHIPPED_SINK_TYPES as readonly string[]).includes(type)
}

/** One parsed entry before names are settled (a default name depends on the other entries). */
export interface ShippedSinkDraft {
  config: AuditSinkConfig
  /** The `name` key as given; null = take the default. */
  givenName: string | null
  index: number
  at: KeyPath
}

const COMMON_KEYS = ['type', 'name', 'format', 'batch_size', 'drain_timeout', 'max_backoff']
const NATS_KEYS = [...COMMON_KEYS, 'url', 'subject', 'stream', 'create_stream', 'duplicate_window', 'user', 'password', 'token', 'ca', 'timeout']
const SYSLOG_KEYS = [...COMMON_KEYS, 'url', 'ca', 'facility', 'hostname', 'timeout']
const HTTP_KEYS = [...COMMON_KEYS, 'url', 'headers', 'envelope', 'index', 'ca', 'timeout', 'batch_bytes']
const KEYS_BY_TYPE: Record<ShippedSinkType, string[]> = { nats: NATS_KEYS, syslog: SYSLOG_KEYS, http: HTTP_KEYS, stdout: COMMON_KEYS }

/** A name usable as a file name and a Prometheus label value, and not one of the in-line writers' labels. */
const SINK_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/
const RESERVED_NAMES = ['file', 'stdout']

/** RFC 5424 facility names (RFC 5424 section 6.2.1) and their codes. */
export const SYSLOG_FACILITIES: Record<string, number> = {
  kern: 0, user: 1, mail: 2, daemon: 3, auth: 4, syslog: 5, lpr: 6, news: 7, uucp: 8, cron: 9,
  authpriv: 10, ftp: 11, ntp: 12, security: 13, console: 14, solaris_cron: 15,
  local0: 16, local1: 17, local2: 18, local3: 19, local4: 20, local5: 21, local6: 22, local7: 23,
}

export function parseShippedSink(r: Reader, item: unknown, path: KeyPath, type: ShippedSinkType, index: number): ShippedSinkDraft {
  const m = r.mapping(item, path, KEYS_BY_TYPE[type])
  let givenName: string | null = null
  if (given(m, 'name')) {
    givenName = r.string(m.name, [...path, 'name'])
    checkName(givenName, [...path, 'name'], m.name)
  }
  // The final name is set by settleSinkNames.
  const base: ShippedSinkBase = {
    name: '',
    format: r.oneOf(m.format, [...path, 'format'], ['v1', 'ocsf'] as const, 'v1'),
    batchSize: r.int(m.batch_size, [...path, 'batch_size'], type === 'http' ? 500 : 1000, 1, 100_000),
    drainTimeoutMs: r.duration(m.drain_timeout, [...path, 'drain_timeout'], 5000, 0, 600_000),
    maxBackoffMs: r.duration(m.max_backoff, [...path, 'max_backoff'], 30_000, 100, 3_600_000),
  }
  const config: AuditSinkConfig =
    type === 'nats' ? parseNats(r, m, path, base)
      : type === 'syslog' ? parseSyslog(r, m, path, base)
        : type === 'http' ? parseHttp(r, m, path, base)
          : { ...base, type: 'stdout' }
  return { config, givenName, index, at: path }
}

/**
 * Names the drafts (`<type>`, or `<type>-<index>` when a type is repeated),
 * checks names are unique and that there is a file log to ship from.
 */
export function settleSinkNames(drafts: ShippedSinkDraft[], log: string | null): AuditSinkConfig[] {
  const perType = new Map<string, number>()
  for (const d of drafts) perType.set(d.config.type, (perType.get(d.config.type) ?? 0) + 1)
  const taken = new Map<string, KeyPath>()
  const out: AuditSinkConfig[] = []
  for (const d of drafts) {
    if (log === null) {
      fail([...d.at, 'type'], `a ${d.config.type} sink is fed from the audit log file, and audit.log is false (set audit.log to a path)`)
    }
    // A shipped stdout sink is "stdout-sink" by default: "stdout" labels the in-line mirror's metrics.
    const type = d.config.type === 'stdout' ? 'stdout-sink' : d.config.type
    const name = d.givenName ?? (perType.get(d.config.type)! > 1 ? `${type}-${d.index}` : type)
    const other = taken.get(name)
    if (other !== undefined) {
      fail(d.givenName !== null ? [...d.at, 'name'] : d.at, `sink name ${JSON.stringify(name)} is already used by ${formatPath(other)}; each sink needs its own name (it names its cursor file and metrics)`)
    }
    taken.set(name, d.at)
    out.push({ ...d.config, name })
  }
  return out
}

function checkName(name: string, path: KeyPath, raw: unknown): void {
  if (!SINK_NAME.test(name)) {
    fail(path, `must be 1..63 letters, digits, '_', '.' or '-', starting with a letter or digit (got ${shown(raw)})`)
  }
  if (RESERVED_NAMES.includes(name)) fail(path, `${name} is reserved for the audit log's own writers; choose another name`)
}

// ---- nats -------------------------------------------------------------------

/** A subject a message can be published to: dot-separated tokens, no wildcards or whitespace. */
const NATS_SUBJECT = /^[^.*>\s]+(\.[^.*>\s]+)*$/
/** JetStream stream names may not contain whitespace, '.', '*', '>', path separators. */
const NATS_STREAM = /^[^.*>\s/\\]+$/

function parseNats(r: Reader, m: Mapping, path: KeyPath, base: ShippedSinkBase): NatsSinkConfig {
  if (!given(m, 'url')) fail([...path, 'url'], 'is required (e.g. "nats://127.0.0.1:4222"; tls:// for TLS)')
  const servers = r.string(m.url, [...path, 'url']).split(',').map((s) => s.trim()).filter((s) => s !== '')
  if (servers.length === 0) fail([...path, 'url'], 'must name at least one server')
  for (const s of servers) checkUrl(s, [...path, 'url'], m.url, ['nats:', 'tls:'], 'nats://host:4222 or tls://host:4222')

  if (!given(m, 'subject')) fail([...path, 'subject'], 'is required (e.g. pgwitness.audit)')
  const subject = r.string(m.subject, [...path, 'subject'])
  if (!NATS_SUBJECT.test(subject)) fail([...path, 'subject'], `must be a NATS subject without wildcards or spaces, such as pgwitness.audit (got ${shown(m.subject)})`)

  let stream: string | null = null
  if (given(m, 'stream')) {
    stream = r.string(m.stream, [...path, 'stream'])
    if (!NATS_STREAM.test(stream)) fail([...path, 'stream'], `must be a JetStream stream name without spaces, '.', '*', '>' or slashes (got ${shown(m.stream)})`)
  }
  const createStream = r.bool(m.create_stream, [...path, 'create_stream'], true)
  if (given(m, 'create_stream') && createStream && stream === null) fail([...path, 'create_stream'], 'needs stream (the name of the stream to create)')
  const duplicateWindowMs = r.duration(m.duplicate_window, [...path, 'duplicate_window'], 120_000, 1000, 7 * 86_400_000)

  const user = r.optString(m.user, [...path, 'user'])
  const password = given(m, 'password') ? r.string(m.password, [...path, 'password'], false) : null
  const token = r.optString(m.token, [...path, 'token'])
  if (password !== null && user === null) fail([...path, 'user'], 'is required with password')
  if (user !== null && password === null) fail([...path, 'password'], 'is required with user (e.g. "${env:NATS_PASSWORD}")')
  if (token !== null && user !== null) fail([...path, 'token'], 'cannot be combined with user and password; use one of them')

  return {
    ...base,
    type: 'nats',
    servers,
    subject,
    stream,
    createStream: stream !== null && createStream,
    duplicateWindowMs,
    user,
    password,
    token,
    ca: parseCa(r, m, path),
    timeoutMs: r.duration(m.timeout, [...path, 'timeout'], 5000, 100, 600_000),
  }
}

// ---- syslog -----------------------------------------------------------------

function parseSyslog(r: Reader, m: Mapping, path: KeyPath, base: ShippedSinkBase): SyslogSinkConfig {
  if (!given(m, 'url')) fail([...path, 'url'], 'is required (tcp://host:port, or tls://host:port for TLS)')
  const url = checkUrl(r.string(m.url, [...path, 'url']), [...path, 'url'], m.url, ['tcp:', 'tls:'], 'tcp://host:601 or tls://host:6514')
  if (url.port === '') fail([...path, 'url'], `must name a port, e.g. tls://${url.hostname}:6514 (got ${shown(m.url)})`)
  if (url.pathname !== '' && url.pathname !== '/') fail([...path, 'url'], `must be only scheme://host:port (got ${shown(m.url)})`)
  const transport = url.protocol === 'tls:' ? 'tls' : 'tcp'
  const ca = parseCa(r, m, path)
  if (ca !== null && transport === 'tcp') fail([...path, 'ca'], 'applies to tls:// only (this url is tcp://)')

  let facility = 10
  if (given(m, 'facility')) {
    const f = m.facility
    if (typeof f === 'number') facility = r.int(f, [...path, 'facility'], 10, 0, 23)
    else {
      const s = r.string(f, [...path, 'facility'])
      const code = /^\d+$/.test(s) ? Number(s) : SYSLOG_FACILITIES[s]
      if (code === undefined || code > 23) fail([...path, 'facility'], `must be a facility name (${Object.keys(SYSLOG_FACILITIES).join(', ')}) or 0..23 (got ${shown(f)})`)
      facility = code
    }
  }
  let host = osHostname() || '-'
  if (given(m, 'hostname')) {
    host = r.string(m.hostname, [...path, 'hostname'])
    // RFC 5424 HOSTNAME: 1..255 printable US-ASCII characters, no spaces.
    if (!/^[\x21-\x7e]{1,255}$/.test(host)) fail([...path, 'hostname'], `must be 1..255 printable ASCII characters without spaces (got ${shown(m.hostname)})`)
  }

  return {
    ...base,
    type: 'syslog',
    transport,
    host: unbracket(url.hostname),
    port: Number(url.port),
    ca,
    facility,
    hostname: host,
    timeoutMs: r.duration(m.timeout, [...path, 'timeout'], 10_000, 100, 600_000),
  }
}

// ---- http -------------------------------------------------------------------

/** RFC 9110 token characters: a valid header field name. */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
/** Headers pgwitness sets itself (or that the transport owns). */
const OWN_HEADERS = ['content-type', 'content-length', 'host', 'transfer-encoding', 'connection']

function parseHttp(r: Reader, m: Mapping, path: KeyPath, base: ShippedSinkBase): HttpSinkConfig {
  if (!given(m, 'url')) fail([...path, 'url'], 'is required (e.g. "https://siem.example.com/ingest")')
  const url = checkUrl(r.string(m.url, [...path, 'url']), [...path, 'url'], m.url, ['http:', 'https:'], 'https://host/path')
  if (url.username !== '' || url.password !== '') {
    fail([...path, 'url'], 'must not carry credentials; put them in headers (e.g. Authorization: "${env:SIEM_TOKEN}")')
  }
  const headers: Record<string, string> = {}
  if (given(m, 'headers')) {
    for (const [name, value] of r.entries(m.headers, [...path, 'headers'])) {
      const hp = [...path, 'headers', name]
      if (!HEADER_NAME.test(name)) fail(hp, 'is not a valid HTTP header name')
      if (OWN_HEADERS.includes(name.toLowerCase())) fail(hp, `is set by pgwitness itself and cannot be configured`)
      const v = r.string(value, hp, false)
      // A CR or LF in a value would inject headers; a NUL is never valid.
      if (/[\r\n\0]/.test(v)) fail(hp, 'must not contain line breaks or NUL')
      headers[name] = v
    }
  }
  const envelope = r.oneOf(m.envelope, [...path, 'envelope'], ['none', 'splunk_hec', 'elastic_bulk'] as const, 'none')
  let index: string | null = null
  if (given(m, 'index')) {
    if (envelope === 'none') fail([...path, 'index'], 'applies to envelope splunk_hec or elastic_bulk only')
    index = r.string(m.index, [...path, 'index'])
  } else if (envelope === 'elastic_bulk') {
    index = 'pgwitness-audit'
  }
  const ca = parseCa(r, m, path)
  if (ca !== null && url.protocol !== 'https:') fail([...path, 'ca'], 'applies to https:// only')
  return {
    ...base,
    type: 'http',
    url: url.href,
    headers,
    envelope,
    index,
    ca,
    timeoutMs: r.duration(m.timeout, [...path, 'timeout'], 10_000, 100, 600_000),
    batchBytes: r.size(m.batch_bytes, [...path, 'batch_bytes'], 1024 * 1024, 1024, 256 * 1024 * 1024),
  }
}

// ---- shared -----------------------------------------------------------------

function parseCa(r: Reader, m: Mapping, path: KeyPath): SinkCa | null {
  if (!given(m, 'ca')) return null
  const file = r.path(m.ca, [...path, 'ca'])
  return { pem: r.readPem(file, [...path, 'ca'], 'CERTIFICATE'), path: file }
}

/** A URL with one of the given schemes and a host; the message shows the raw text, never a substituted value. */
function checkUrl(s: string, path: KeyPath, raw: unknown, schemes: string[], example: string): URL {
  let url: URL
  try {
    url = new URL(s)
  } catch {
    fail(path, `must be a URL such as ${example} (got ${shown(raw)})`)
  }
  if (!schemes.includes(url.protocol)) fail(path, `must start with ${schemes.map((x) => x + '//').join(' or ')} (got ${shown(raw)})`)
  if (url.hostname === '') fail(path, `must name a host (got ${shown(raw)})`)
  return url
}

function unbracket(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
}
