/**
 * Loads and validates a pgwitness config file (YAML) into a PgwitnessConfig.
 *
 * - `${env:NAME}` / `${file:PATH}` may stand for any string value, also
 *   inside a longer string; `$${` is a literal `${`. File contents lose one
 *   trailing newline; relative paths resolve against the config's folder.
 * - Relative paths in the config resolve against `baseDir` (the config
 *   file's folder); TLS certificate/key/CA files are read here.
 * - Unknown keys are errors; keys of features this version does not have
 *   yet say so. The first problem found is thrown as a ConfigError naming
 *   the exact key, e.g. `identity.jwt[0].algorithms[1]`.
 */
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { dirname, resolve } from 'node:path'
import { LineCounter, parseDocument } from 'yaml'
import { ConfigError, describeFsError, fail, typeName } from './errors.js'
import { parseAudit } from './parse-audit.js'
import { parseIdentity } from './parse-identity.js'
import { parsePolicy } from './parse-policy.js'
import { parseUpstream } from './parse-upstream.js'
import { given, type Mapping, Reader } from './reader.js'
import type { LimitsConfig, LogConfig, MetricsConfig, PgwitnessConfig, SessionLifetimeConfig, TlsConfig } from './types.js'

export { ConfigError } from './errors.js'

const TOP_KEYS = [
  'instance', 'dev', 'listen', 'tls', 'identity', 'upstream', 'policy', 'session', 'audit', 'limits', 'metrics', 'log',
]
const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const

export interface ParseOptions {
  /** Folder that relative paths (and `${file:...}`) resolve against. */
  baseDir: string
  /** Path of the file the text came from, or null. */
  source: string | null
}

/** Reads and validates a YAML config file. Throws ConfigError. */
export async function loadConfig(path: string): Promise<PgwitnessConfig> {
  const abs = resolve(path)
  let bytes: Buffer
  try {
    bytes = await readFile(abs)
  } catch (err) {
    throw new ConfigError(abs, `cannot read the config file: ${describeFsError(err)}`)
  }
  return build(bytes.toString('utf8'), { baseDir: dirname(abs), source: abs }, sha256(bytes))
}

/**
 * Validates YAML config text. Synchronous: referenced files are read with
 * readFileSync. `sha256` is the hash of `yamlText` (UTF-8). Throws ConfigError.
 */
export function parseConfig(yamlText: string, opts: ParseOptions): PgwitnessConfig {
  return build(yamlText, opts, sha256(Buffer.from(yamlText, 'utf8')))
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex')
}

function build(text: string, opts: ParseOptions, hash: string): PgwitnessConfig {
  const source = opts.source === null ? null : resolve(opts.source)
  const root = parseYaml(text, source ?? '')
  const r = new Reader(resolve(opts.baseDir), process.env)
  const m = r.mapping(root, [], TOP_KEYS)

  if (!given(m, 'listen')) fail(['listen'], 'is required, e.g. "127.0.0.1:6432"')
  const listen = r.listen(m.listen, ['listen'], true)
  const tls = parseTls(r, m.tls)
  const identity = parseIdentity(r, m.identity)
  const upstream = parseUpstream(r, m.upstream)
  const policy = parsePolicy(r, m.policy, identity)
  const session = parseSession(r, m.session)
  const audit = parseAudit(r, m.audit)
  const limits = parseLimits(r, m.limits)
  const metrics = parseMetrics(r, m.metrics)
  const log = parseLog(r, m.log)
  const instance = given(m, 'instance') ? r.string(m.instance, ['instance']) : hostname()
  const dev = r.bool(m.dev, ['dev'], false)

  return { source, sha256: hash, instance, dev, listen, tls, identity, upstream, policy, session, audit, limits, metrics, log }
}

function parseYaml(text: string, fileKey: string): unknown {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { prettyErrors: false, merge: true, uniqueKeys: true, lineCounter })
  const err = doc.errors[0]
  if (err) {
    const pos = err.linePos?.[0] ?? lineCounter.linePos(err.pos[0])
    const where = pos ? ` at line ${pos.line}, column ${pos.col}` : ''
    // The first line of the parser's message is the explanation; it does not quote the source.
    throw new ConfigError(fileKey, `YAML syntax error${where}: ${err.message.split('\n')[0]}`)
  }
  let value: unknown
  try {
    value = doc.toJS({ maxAliasCount: 100 })
  } catch (e) {
    throw new ConfigError(fileKey, `YAML error: ${e instanceof Error ? e.message : String(e)}`)
  }
  if (value === null || value === undefined) throw new ConfigError(fileKey, 'the config file is empty')
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError(fileKey, `the config file must be a YAML mapping of keys to values (got ${typeName(value)})`)
  }
  return value
}

/** `tls:` is required: the proxy always offers TLS to clients. */
function parseTls(r: Reader, v: unknown): TlsConfig {
  const path = ['tls']
  if (v === null || v === undefined) fail(path, 'is required (cert and key): pgwitness always offers TLS to clients')
  const m: Mapping = r.mapping(v, path, ['cert', 'key', 'client_ca', 'allow_plaintext_loopback'])
  if (!given(m, 'cert')) fail([...path, 'cert'], 'is required (PEM certificate chain file)')
  if (!given(m, 'key')) fail([...path, 'key'], 'is required (PEM private key file)')
  const certPath = r.path(m.cert, [...path, 'cert'])
  const cert = r.readPem(certPath, [...path, 'cert'], 'CERTIFICATE')
  const keyPath = r.path(m.key, [...path, 'key'])
  const key = r.readPem(keyPath, [...path, 'key'], 'PRIVATE KEY')
  let clientCa: string | null = null
  let clientCaPath: string | null = null
  if (given(m, 'client_ca')) {
    clientCaPath = r.path(m.client_ca, [...path, 'client_ca'])
    clientCa = r.readPem(clientCaPath, [...path, 'client_ca'], 'CERTIFICATE')
  }
  const allowPlaintextLoopback = r.bool(m.allow_plaintext_loopback, [...path, 'allow_plaintext_loopback'], false)
  return { cert, key, certPath, keyPath, clientCa, clientCaPath, allowPlaintextLoopback }
}

/** `session:` — how long a governed session may live relative to its token. */
function parseSession(r: Reader, v: unknown): SessionLifetimeConfig {
  const path = ['session']
  const m = v === null || v === undefined ? {} : r.mapping(v, path, ['outlive_token', 'max_duration'])
  const outliveToken = r.bool(m.outlive_token, [...path, 'outlive_token'], false)
  const maxDurationMs = given(m, 'max_duration') ? r.duration(m.max_duration, [...path, 'max_duration'], 0, 1000, 366 * 24 * 3600_000) : null
  if (outliveToken && maxDurationMs === null) {
    fail([...path, 'max_duration'], 'is required when outlive_token is true (sessions must end some time)')
  }
  return { outliveToken, maxDurationMs }
}

function parseLimits(r: Reader, v: unknown): LimitsConfig {
  const path = ['limits']
  const m = v === null || v === undefined ? {} : r.mapping(v, path, ['handshake_timeout', 'max_message_bytes', 'max_token_bytes', 'max_connections', 'shutdown_grace'])
  return {
    handshakeTimeoutMs: r.duration(m.handshake_timeout, [...path, 'handshake_timeout'], 10_000, 100, 60_000),
    // The wire length field is a signed 32-bit integer.
    maxMessageBytes: r.size(m.max_message_bytes, [...path, 'max_message_bytes'], 64 * 1024 ** 2, 64, 2 ** 31 - 1),
    maxTokenBytes: r.size(m.max_token_bytes, [...path, 'max_token_bytes'], 16384, 1, 1024 ** 2),
    maxConnections: r.int(m.max_connections, [...path, 'max_connections'], 1000, 1, 1_000_000),
    shutdownGraceMs: r.duration(m.shutdown_grace, [...path, 'shutdown_grace'], 10_000, 0, 600_000),
  }
}

function parseMetrics(r: Reader, v: unknown): MetricsConfig {
  const path = ['metrics']
  const m = v === null || v === undefined ? {} : r.mapping(v, path, ['listen'])
  return { listen: given(m, 'listen') ? r.listen(m.listen, [...path, 'listen'], true) : null }
}

function parseLog(r: Reader, v: unknown): LogConfig {
  const path = ['log']
  const m = v === null || v === undefined ? {} : r.mapping(v, path, ['level', 'format'])
  return {
    level: r.oneOf(m.level, [...path, 'level'], LOG_LEVELS, 'info'),
    format: r.oneOf(m.format, [...path, 'format'], ['json', 'pretty'] as const, 'json'),
  }
}
