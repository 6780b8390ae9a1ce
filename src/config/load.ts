/**
 * Loads and validates a pgwitness config file (YAML) into a PgwitnessConfig.
 *
 * - `${env:NAME}` / `${file:PATH}` may stand for any string value, also
 *   inside a longer string; `$${` is a literal `${`. File contents lose one
 *   trailing newline; relative paths resolve against the config's folder.
 * - Relative paths in the config resolve against `baseDir` (the config
 *   file's folder); TLS certificate/key/CA files are read here.
 * - Unknown keys are errors; keys of features this version does not have
 *   yet say so. Every problem is a ConfigError naming the exact key, e.g.
 *   `identity.jwt[0].algorithms[1]`; independent parts (sections, list
 *   entries) are all checked, and several problems are thrown together as
 *   ConfigErrors (problems.ts).
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
import { ConfigProblems } from './problems.js'
import { given, type Mapping, Reader } from './reader.js'
import type { LimitsConfig, LogConfig, MetricsConfig, PgwitnessConfig, SessionConfig, TlsConfig } from './types.js'

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
  // Sections are independent (policy needs identity's issuers only to check names):
  // every section is read, and all their problems are reported together.
  const problems = new ConfigProblems()
  const m = problems.part(() => r.mapping(root, [], TOP_KEYS)) ?? pick(root as Mapping, TOP_KEYS)
  const part = problems.part.bind(problems)

  const listen = part(() => {
    if (!given(m, 'listen')) fail(['listen'], 'is required, e.g. "127.0.0.1:6432"')
    return r.listen(m.listen, ['listen'], true)
  })
  const tls = part(() => parseTls(r, m.tls))
  const identity = part(() => parseIdentity(r, m.identity))
  const upstream = part(() => parseUpstream(r, m.upstream))
  const policy = part(() => parsePolicy(r, m.policy, identity ?? null))
  const session = part(() => parseSession(r, m.session))
  const audit = part(() => parseAudit(r, m.audit))
  const limits = part(() => parseLimits(r, m.limits))
  const metrics = part(() => parseMetrics(r, m.metrics))
  const log = part(() => parseLog(r, m.log))
  const instance = part(() => (given(m, 'instance') ? r.string(m.instance, ['instance']) : hostname()))
  const dev = part(() => r.bool(m.dev, ['dev'], false))
  problems.throwIfAny()

  return {
    source, sha256: hash, instance: instance!, dev: dev!, listen: listen!, tls: tls!, identity: identity!, upstream: upstream!,
    policy: policy!, session: session!, audit: audit!, limits: limits!, metrics: metrics!, log: log!,
  }
}

/** The known keys of a mapping that also has unknown ones (already reported), so the known sections are still checked. */
function pick(m: Mapping, keys: readonly string[]): Mapping {
  return Object.fromEntries(Object.entries(m).filter(([k]) => keys.includes(k)))
}

function parseYaml(text: string, fileKey: string): unknown {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { prettyErrors: false, merge: true, uniqueKeys: true, lineCounter })
  if (doc.errors.length > 0) {
    const problems = new ConfigProblems()
    for (const err of doc.errors) {
      const pos = err.linePos?.[0] ?? lineCounter.linePos(err.pos[0])
      const where = pos ? ` at line ${pos.line}, column ${pos.col}` : ''
      // The first line of the parser's message is the explanation; it does not quote the source.
      problems.add(new ConfigError(fileKey, `YAML syntax error${where}: ${err.message.split('\n')[0]}`))
    }
    problems.throwIfAny()
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
  // Certificate, key and client CA are separate files: each one's problem is reported.
  const problems = new ConfigProblems()
  const pem = (key: string, kind: 'CERTIFICATE' | 'PRIVATE KEY', required: string | null) => problems.part(() => {
    if (!given(m, key)) {
      if (required !== null) fail([...path, key], required)
      return null
    }
    const file = r.path(m[key], [...path, key])
    return { file, pem: r.readPem(file, [...path, key], kind) }
  })
  const cert = pem('cert', 'CERTIFICATE', 'is required (PEM certificate chain file)')
  const key = pem('key', 'PRIVATE KEY', 'is required (PEM private key file)')
  const ca = pem('client_ca', 'CERTIFICATE', null)
  const allowPlaintextLoopback = problems.part(() => r.bool(m.allow_plaintext_loopback, [...path, 'allow_plaintext_loopback'], false))
  problems.throwIfAny()
  return {
    cert: cert!.pem, key: key!.pem, certPath: cert!.file, keyPath: key!.file,
    clientCa: ca?.pem ?? null, clientCaPath: ca?.file ?? null, allowPlaintextLoopback: allowPlaintextLoopback!,
  }
}

/** `session:` — how long a governed session may live relative to its token, and what happens to changes of governed settings. */
function parseSession(r: Reader, v: unknown): SessionConfig {
  const path = ['session']
  const m = v === null || v === undefined ? {} : r.mapping(v, path, ['outlive_token', 'max_duration', 'governed_settings'])
  const outliveToken = r.bool(m.outlive_token, [...path, 'outlive_token'], false)
  const maxDurationMs = given(m, 'max_duration') ? r.duration(m.max_duration, [...path, 'max_duration'], 0, 1000, 366 * 24 * 3600_000) : null
  if (outliveToken && maxDurationMs === null) {
    fail([...path, 'max_duration'], 'is required when outlive_token is true (sessions must end some time)')
  }
  const governedSettings = r.oneOf(m.governed_settings, [...path, 'governed_settings'], ['record', 'refuse'] as const, 'record')
  return { outliveToken, maxDurationMs, governedSettings }
}

function parseLimits(r: Reader, v: unknown): LimitsConfig {
  const path = ['limits']
  const m = v === null || v === undefined ? {} : r.mapping(v, path, [
    'handshake_timeout', 'max_message_bytes', 'max_token_bytes', 'max_connections', 'shutdown_grace', 'max_handshakes', 'max_handshakes_per_source',
  ])
  const maxHandshakes = r.int(m.max_handshakes, [...path, 'max_handshakes'], 200, 1, 1_000_000)
  return {
    maxHandshakes,
    maxHandshakesPerSource: r.int(m.max_handshakes_per_source, [...path, 'max_handshakes_per_source'], Math.min(50, maxHandshakes), 1, maxHandshakes),
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
