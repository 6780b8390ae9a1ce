import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ConfigError, loadConfig, parseConfig } from '../../src/config/load.js'
import { ConfigErrors } from '../../src/config/problems.js'
import { parseDuration, parseListen, parseSize } from '../../src/config/units.js'
import { writeCheckpointKeyPair } from '../../src/ledger/checkpoint.js'

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

const CERT = '-----BEGIN CERTIFICATE-----\nMIIBdummy\n-----END CERTIFICATE-----\n'
const KEY = '-----BEGIN PRIVATE KEY-----\nMIIBdummy\n-----END PRIVATE KEY-----\n'
const JWKS = JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'x', y: 'y', kid: 'k1' }] })

/** A temp folder holding cert/key/CA/JWKS files; removed at teardown. */
function fixture(tt: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgw-config-'))
  tt.teardown(() => rmSync(dir, { recursive: true, force: true }))
  write(dir, 'tls/server.crt', CERT)
  write(dir, 'tls/server.key', KEY)
  write(dir, 'tls/ca.crt', CERT)
  write(dir, 'jwks.json', JWKS)
  return dir
}

function write(dir: string, rel: string, text: string): string {
  const p = join(dir, rel)
  mkdirSync(dirname(p), { recursive: true })
  writeFileSync(p, text)
  return p
}

const BASE = `
listen: "127.0.0.1:6432"
tls:
  cert: tls/server.crt
  key: tls/server.key
identity:
  jwt:
    - issuer: https://idp.example.com
      audience: pgwitness
      jwks_file: jwks.json
`

function parse(dir: string, yaml: string) {
  return parseConfig(yaml, { baseDir: dir, source: null })
}

/** Asserts that parsing throws a ConfigError with this key and a problem matching `problem`. */
function rejects(tt: Test, dir: string, yaml: string, key: string, problem: RegExp | string, msg?: string): ConfigError | null {
  try {
    parse(dir, yaml)
  } catch (err) {
    if (!(err instanceof ConfigError)) {
      tt.fail(`expected ConfigError, got ${String(err)}`)
      return null
    }
    tt.equal(err.key, key, msg ?? `key of: ${err.message}`)
    if (typeof problem === 'string') tt.equal(err.problem, problem, msg ?? 'problem')
    else tt.match(err.problem, problem, msg ?? 'problem')
    tt.equal(err.message, key === '' ? `config: ${err.problem}` : `config: ${key}: ${err.problem}`)
    return err
  }
  tt.fail(`expected a ConfigError for ${key}`)
  return null
}

/** Runs fn with env vars set, restoring them afterwards. */
function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T): T {
  const saved: Record<string, string | undefined> = {}
  for (const [k, v] of Object.entries(vars)) {
    saved[k] = process.env[k]
    if (v === undefined) delete process.env[k]
    else process.env[k] = v
  }
  try {
    return fn()
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  }
}

t.test('minimal config: every default', async (tt) => {
  const dir = fixture(tt)
  const c = parse(dir, BASE)
  tt.equal(c.source, null)
  tt.equal(c.sha256, createHash('sha256').update(BASE).digest('hex'))
  tt.equal(c.instance, hostname())
  tt.equal(c.dev, false)
  tt.same(c.listen, { host: '127.0.0.1', port: 6432 })
  tt.same(c.tls, {
    cert: CERT,
    key: KEY,
    certPath: join(dir, 'tls/server.crt'),
    keyPath: join(dir, 'tls/server.key'),
    clientCa: null,
    clientCaPath: null,
    allowPlaintextLoopback: false,
  })
  tt.same(c.identity, {
    jwt: [
      {
        issuer: 'https://idp.example.com',
        audience: ['pgwitness'],
        jwksFile: join(dir, 'jwks.json'),
        jwksUrl: null,
        algorithms: ['RS256', 'ES256', 'EdDSA'],
        subjectClaim: 'sub',
        recordClaims: [],
        clockSkewSeconds: 30,
      },
    ],
    mtls: { subject: 'spiffe' },
    approvals: [],
  })
  tt.same(c.upstream, {
    host: '127.0.0.1',
    port: 5432,
    tls: { mode: 'disable', ca: null, servername: null },
    roles: {},
    connectTimeoutMs: 5000,
  })
  tt.same(c.policy, [])
  tt.same(c.audit, {
    log: join(dir, 'audit/audit.jsonl'),
    stdout: false,
    durability: 'strict',
    fsyncIntervalMs: 50,
    parameters: 'full',
    unparseable: 'forward',
    parameterHmacKey: null,
    maxStatementBytes: 65536,
    maxParameterBytes: 4096,
    enabled: true,
    checkpoint: null,
    rotate: null,
    sinks: [],
    authFailureSummary: { windowMs: 60_000, keepFirst: 5 },
  })
  tt.same(c.limits, {
    handshakeTimeoutMs: 10_000, maxMessageBytes: 64 * 1024 * 1024, maxTokenBytes: 16384, maxConnections: 1000, shutdownGraceMs: 10_000,
    maxHandshakes: 200, maxHandshakesPerSource: 50,
  })
  tt.same(c.metrics, { listen: null })
  tt.same(c.log, { level: 'info', format: 'json' })
})

t.test('no identity section at all; upstream tls default depends on host', async (tt) => {
  const dir = fixture(tt)
  const tlsOnly = 'listen: "[::1]:0"\ntls: { cert: tls/server.crt, key: tls/server.key }\n'
  const c = parse(dir, tlsOnly)
  tt.same(c.listen, { host: '::1', port: 0 })
  tt.same(c.identity, { jwt: [], mtls: { subject: 'spiffe' }, approvals: [] })
  tt.equal(parse(dir, tlsOnly + 'upstream: { host: db.example.com }').upstream.tls.mode, 'require')
  tt.equal(parse(dir, tlsOnly + 'upstream: { host: localhost }').upstream.tls.mode, 'disable')
  tt.equal(parse(dir, tlsOnly + 'upstream: { host: "::1" }').upstream.tls.mode, 'disable')
  tt.equal(parse(dir, tlsOnly + 'upstream: { host: 10.0.0.5, tls: { mode: disable } }').upstream.tls.mode, 'disable')
})

t.test('full config with explicit values', async (tt) => {
  const dir = fixture(tt)
  const c = withEnv({ PGW_T_PW: 'pw-from-env', PGW_T_PORT: '6543' }, () =>
    parse(
      dir,
      `
instance: test-1
dev: true
listen: "0.0.0.0:7000"
tls:
  cert: tls/server.crt
  key: tls/server.key
  client_ca: tls/ca.crt
  allow_plaintext_loopback: true
identity:
  jwt:
    - issuer: https://idp.example.com
      audience: [a, b]
      jwks_url: https://idp.example.com/jwks.json
      algorithms: [PS256, ES384, EdDSA, ES384]
      subject_claim: email
      record_claims: [groups, "kubernetes.io"]
      clock_skew_seconds: 0
    - issuer: http://127.0.0.1:8080
      audience: x
      jwks_url: http://127.0.0.1:8080/jwks
  mtls: { subject: cn }
upstream:
  host: db.example.com
  port: "\${env:PGW_T_PORT}"
  tls: { mode: verify-full, ca: tls/ca.crt, servername: db.internal }
  roles:
    app_rw: { password: "\${env:PGW_T_PW}" }
    reader: {}
    trusted:
  connect_timeout: 2.5s
policy:
  - name: r1
    match: { method: "jwt+mtls", issuer: https://idp.example.com, subject: "spiffe://x/*", claims: { groups: dba, "kubernetes.io.namespace": prod, level: 3, admin: true } }
    roles: [app_rw]
    databases: ["*"]
  - name: r2
    match: {}
    roles: ["*"]
    databases: [billing, reports]
audit:
  log: false
  stdout: true
  durability: batched
  fsync_interval: 10
  parameters: hmac
  parameter_hmac_key: 0123456789abcdef-key
  max_statement_bytes: 1KiB
  max_parameter_bytes: "100"
  enabled: false
  auth_failure_summary: { window: 30s, keep_first: 2 }
limits:
  handshake_timeout: 500ms
  max_message_bytes: 1MB
  max_token_bytes: 8KiB
  max_handshakes: 300
  max_handshakes_per_source: 20
metrics:
  listen: "127.0.0.1:9187"
log: { level: debug, format: pretty }
`,
    ),
  )
  tt.equal(c.instance, 'test-1')
  tt.equal(c.dev, true)
  tt.same(c.listen, { host: '0.0.0.0', port: 7000 })
  tt.equal(c.tls.clientCa, CERT)
  tt.equal(c.tls.clientCaPath, join(dir, 'tls/ca.crt'))
  tt.equal(c.tls.allowPlaintextLoopback, true)
  const [a, b] = c.identity.jwt
  tt.same(a!.audience, ['a', 'b'])
  tt.equal(a!.jwksFile, null)
  tt.equal(a!.jwksUrl, 'https://idp.example.com/jwks.json')
  tt.same(a!.algorithms, ['PS256', 'ES384', 'EdDSA'], 'duplicates dropped, order kept')
  tt.equal(a!.subjectClaim, 'email')
  tt.same(a!.recordClaims, ['groups', 'kubernetes.io'])
  tt.equal(a!.clockSkewSeconds, 0)
  tt.equal(b!.jwksUrl, 'http://127.0.0.1:8080/jwks', 'http allowed for loopback')
  tt.equal(c.identity.mtls.subject, 'cn')
  tt.equal(c.upstream.port, 6543, 'numeric string from env accepted for a port')
  tt.same(c.upstream.tls, { mode: 'verify-full', ca: CERT, servername: 'db.internal' })
  tt.same({ ...c.upstream.roles }, { app_rw: { password: 'pw-from-env' }, reader: { password: null }, trusted: { password: null } })
  tt.equal(c.upstream.roles['toString'], undefined, 'role lookup by a client-chosen name never hits Object.prototype')
  tt.equal(c.upstream.connectTimeoutMs, 2500)
  tt.same(c.policy[0], {
    name: 'r1',
    match: {
      method: 'jwt+mtls',
      issuer: 'https://idp.example.com',
      subject: 'spiffe://x/*',
      claims: { groups: 'dba', 'kubernetes.io.namespace': 'prod', level: 3, admin: true },
      certSha256: null,
    },
    roles: ['app_rw'],
    databases: ['*'],
    requireTokenBinding: false,
    requireApproval: false,
    statements: null,
  })
  tt.same(c.policy[1]!.match, { method: null, issuer: null, subject: null, claims: {}, certSha256: null })
  tt.same(c.audit, {
    log: null,
    stdout: true,
    durability: 'batched',
    fsyncIntervalMs: 10,
    parameters: 'hmac',
    unparseable: 'forward',
    parameterHmacKey: '0123456789abcdef-key',
    maxStatementBytes: 1024,
    maxParameterBytes: 100,
    enabled: false,
    checkpoint: null,
    rotate: null,
    sinks: [],
    authFailureSummary: { windowMs: 30_000, keepFirst: 2 },
  })
  tt.same(c.limits, {
    handshakeTimeoutMs: 500, maxMessageBytes: 1_000_000, maxTokenBytes: 8192, maxConnections: 1000, shutdownGraceMs: 10_000,
    maxHandshakes: 300, maxHandshakesPerSource: 20,
  })
  tt.same(c.metrics.listen, { host: '127.0.0.1', port: 9187 })
  tt.same(c.log, { level: 'debug', format: 'pretty' })
})

t.test('env and file references', async (tt) => {
  const dir = fixture(tt)
  write(dir, 'secrets/pw', 'file-secret\n\n')
  write(dir, 'secrets/crlf', 'crlf-secret\r\n')
  write(dir, 'secrets/host', 'db.internal\n')
  const c = withEnv({ PGW_T_USER: 'alice', PGW_T_PW: 'env-secret' }, () =>
    parse(
      dir,
      BASE +
        `
instance: "pgw-\${env:PGW_T_USER}-\${file:secrets/host}"
upstream:
  host: "\${file:secrets/host}"
  roles:
    a: { password: "\${env:PGW_T_PW}" }
    b: { password: "\${file:secrets/pw}" }
    c: { password: "\${file:${join(dir, 'secrets/crlf')}}" }
    d: { password: "pre-\${env:PGW_T_PW}-\${env:PGW_T_USER}-post" }
    e: { password: "literal $\${env:NOT_A_REF}" }
    f: { password: "" }
`,
    ),
  )
  tt.equal(c.instance, 'pgw-alice-db.internal', 'embedded references')
  tt.equal(c.upstream.host, 'db.internal')
  tt.equal(c.upstream.roles.a!.password, 'env-secret')
  tt.equal(c.upstream.roles.b!.password, 'file-secret\n', 'exactly one trailing newline trimmed')
  tt.equal(c.upstream.roles.c!.password, 'crlf-secret', 'absolute path, CRLF trimmed')
  tt.equal(c.upstream.roles.d!.password, 'pre-env-secret-alice-post')
  tt.equal(c.upstream.roles.e!.password, 'literal ${env:NOT_A_REF}', '$${ escapes')
  tt.equal(c.upstream.roles.f!.password, '')
})

t.test('missing env var and unreadable file name the key', async (tt) => {
  const dir = fixture(tt)
  withEnv({ PGW_APP_RW_PASSWORD: undefined }, () => {
    rejects(
      tt,
      dir,
      BASE + 'upstream:\n  roles:\n    app_rw: { password: "${env:PGW_APP_RW_PASSWORD}" }\n',
      'upstream.roles.app_rw.password',
      'environment variable PGW_APP_RW_PASSWORD is not set',
    )
  })
  rejects(
    tt,
    dir,
    BASE + 'upstream:\n  roles:\n    app_rw: { password: "${file:secrets/nope}" }\n',
    'upstream.roles.app_rw.password',
    `cannot read file ${join(dir, 'secrets/nope')} (referenced as \${file:secrets/nope}): no such file`,
  )
  rejects(tt, dir, BASE + 'instance: "${file:tls}"\n', 'instance', /is a directory/)
  rejects(tt, dir, BASE + 'instance: "${env:BAD-NAME}"\n', 'instance', /invalid environment variable name/)
  rejects(tt, dir, BASE + 'upstream:\n  roles:\n    "my.role": { password: "${env:PGW_T_UNSET_X}" }\n',
    'upstream.roles["my.role"].password', /PGW_T_UNSET_X is not set/)
  if (process.getuid?.() !== 0) {
    const p = write(dir, 'secrets/locked', 'x')
    chmodSync(p, 0o000)
    rejects(tt, dir, BASE + 'instance: "${file:secrets/locked}"\n', 'instance', /permission denied/)
  }
})

t.test('error messages never contain a secret from env or file', async (tt) => {
  const dir = fixture(tt)
  const secret = 'hunter2-TOPSECRET'
  write(dir, 'secrets/s', secret + '\n')
  const cases: [string, string][] = [
    ['upstream:\n  tls: { mode: "${env:PGW_T_SECRET}" }\n', 'upstream.tls.mode'],
    ['upstream:\n  port: "${env:PGW_T_SECRET}"\n', 'upstream.port'],
    ['upstream:\n  connect_timeout: "${env:PGW_T_SECRET}"\n', 'upstream.connect_timeout'],
    ['limits:\n  max_message_bytes: "${file:secrets/s}"\n', 'limits.max_message_bytes'],
    ['metrics:\n  listen: "${env:PGW_T_SECRET}"\n', 'metrics.listen'],
    ['dev: "${env:PGW_T_SECRET}"\n', 'dev'],
    ['audit:\n  parameters: hmac\n  parameter_hmac_key: "${env:PGW_T_SHORT}"\n', 'audit.parameter_hmac_key'],
    ['policy:\n  - name: x\n    match: { issuer: "${env:PGW_T_SECRET}" }\n    roles: [a]\n    databases: [b]\n', 'policy[0].match.issuer'],
  ]
  for (const [extra, key] of cases) {
    withEnv({ PGW_T_SECRET: secret, PGW_T_SHORT: 'short-SECRET' }, () => {
      const err = rejects(tt, dir, BASE + extra, key, /./)
      tt.notMatch(err?.message ?? '', /TOPSECRET|hunter2|short-SECRET/, `no secret in: ${err?.message}`)
    })
  }
})

t.test('unknown keys, with suggestions', async (tt) => {
  const dir = fixture(tt)
  rejects(tt, dir, BASE.replace('cert: tls', 'certt: tls'), 'tls.certt', 'unknown key (did you mean "cert"?)')
  rejects(tt, dir, BASE + 'upstrem: {}\n', 'upstrem', 'unknown key (did you mean "upstream"?)')
  rejects(tt, dir, BASE.replace('jwks_file:', 'jwksFile:'), 'identity.jwt[0].jwksFile', 'unknown key (did you mean "jwks_file"?)')
  rejects(tt, dir, BASE + 'frobnicate: 1\n', 'frobnicate', 'unknown key')
  rejects(tt, dir, BASE + 'upstream:\n  roles:\n    app: { pasword: x }\n', 'upstream.roles.app.pasword', /did you mean "password"/)
})

t.test('features of later versions are refused clearly', async (tt) => {
  const dir = fixture(tt)
  const rule = (extra: string) =>
    BASE + `policy:\n  - name: dba\n    match: { issuer: https://idp.example.com }\n    roles: [dba]\n    databases: ["*"]\n${extra}`
  rejects(tt, dir, rule('    require_token_binding: true\n'), 'policy[0].require_token_binding', 'needs match.method jwt+mtls (a token bound to a client certificate needs both)')
  rejects(tt, dir, BASE + 'audit:\n  sinks: [{ type: stdout }, { type: nats, url: "nats://x" }]\n', 'audit.sinks[1].subject', /is required/)
  rejects(tt, dir, BASE + 'audit:\n  sinks: [{ type: kafka }]\n', 'audit.sinks[0].type', 'must be one of file, nats, syslog, http, stdout (got "kafka")')
})

t.test('policy[].statements: statement rules', async (tt) => {
  const dir = fixture(tt)
  const rule = (extra: string) =>
    BASE + `policy:\n  - name: app\n    match: { issuer: https://idp.example.com }\n    roles: [app]\n    databases: ["*"]\n${extra}`
  const c = parse(dir, rule(`    statements:
      mode: monitor
      deny: [{ class: DDL, mode: enforce }, { command: truncate }, { name: no-secrets, object: "public.secrets*" }, { function: [pg_read_file, "lo_*"] }]
      require_claims: [{ class: [ROLE, DDL], claim: change_ticket }]
      require_approval: [{ class: [DDL] }]
`))
  tt.same(c.policy[0]!.statements, {
    deny: [
      { name: 'deny[0]', selector: { classes: ['DDL'], commands: [], objects: [], functions: [] }, mode: 'enforce' },
      { name: 'deny[1]', selector: { classes: [], commands: ['TRUNCATE'], objects: [], functions: [] }, mode: 'monitor' },
      { name: 'no-secrets', selector: { classes: [], commands: [], objects: ['public.secrets*'], functions: [] }, mode: 'monitor' },
      { name: 'deny[3]', selector: { classes: [], commands: [], objects: [], functions: ['pg_read_file', 'lo_*'] }, mode: 'monitor' },
    ],
    requireClaims: [{ name: 'require_claims[0]', selector: { classes: ['ROLE', 'DDL'], commands: [], objects: [], functions: [] }, mode: 'monitor', claim: 'change_ticket' }],
    requireApproval: [{ name: 'require_approval[0]', selector: { classes: ['DDL'], commands: [], objects: [], functions: [] }, mode: 'monitor' }],
    unknown: 'deny',
    mode: 'monitor',
  })
  tt.equal(parse(dir, rule('')).policy[0]!.statements, null, 'absent: no statement rules')
  rejects(tt, dir, rule('    statements: { deny: [{ class: DDL }], mode: audit }\n'), 'policy[0].statements.mode', 'must be one of enforce, monitor (got "audit")')
  rejects(tt, dir, rule('    statements: { deny: [{ class: SCHEMA }] }\n'), 'policy[0].statements.deny[0].class', /unknown class "SCHEMA"/)
  rejects(tt, dir, rule('    statements: { deny: [{ name: everything }] }\n'), 'policy[0].statements.deny[0]', /needs at least one of class, command, object, function/)
  rejects(tt, dir, rule('    statements: { require_claims: [{ class: DDL }] }\n'), 'policy[0].statements.require_claims[0].claim', /is required/)
  rejects(tt, dir, rule('    statements: { deny: [{ clas: DDL }] }\n'), 'policy[0].statements.deny[0].clas', /unknown key \(did you mean "class"\?\)/)
  rejects(tt, dir, rule('    statements: { unknown: maybe }\n'), 'policy[0].statements.unknown', 'must be one of deny, allow (got "maybe")')
})

t.test('audit checkpoint and rotate', async (tt) => {
  const dir = fixture(tt)
  rejects(tt, dir, BASE + 'audit:\n  checkpoint: { key: k.jwk }\n', 'audit.checkpoint.key', /cannot read the checkpoint signing key .*k\.jwk/)
  rejects(tt, dir, BASE + 'audit:\n  checkpoint: { every_records: 5 }\n', 'audit.checkpoint.key', /is required/)
  writeCheckpointKeyPair(join(dir, 'k.jwk'), join(dir, 'k.pub.jwk'))
  rejects(tt, dir, BASE + 'audit:\n  checkpoint: { key: k.pub.jwk }\n', 'audit.checkpoint.key', /no private part/)
  const c = parse(dir, BASE + 'audit:\n  checkpoint: { key: k.jwk, every_records: 500 }\n  rotate: { max_size: 64MiB, interval: 24h }\n')
  tt.same(c.audit.checkpoint, { key: join(dir, 'k.jwk'), everyRecords: 500, everySeconds: 60 })
  tt.same(c.audit.rotate, { maxBytes: 64 * 1024 * 1024, intervalMs: 86_400_000 })
  rejects(tt, dir, BASE + 'audit:\n  rotate: {}\n', 'audit.rotate', /needs max_size and\/or interval/)
  rejects(tt, dir, BASE + 'audit:\n  log: false\n  stdout: true\n  rotate: { max_size: 1MiB }\n', 'audit.rotate', /audit.log is off/)
})

t.test('audit sinks: stdout and file', async (tt) => {
  const dir = fixture(tt)
  const c = parse(dir, BASE + 'audit:\n  sinks: [{ type: stdout }, { type: file, path: logs/a.jsonl }]\n')
  tt.equal(c.audit.stdout, false, 'with a file log, { type: stdout } is shipped from it…')
  tt.match(c.audit.sinks, [{ type: 'stdout', name: 'stdout-sink', format: 'v1' }])
  tt.equal(c.audit.log, join(dir, 'logs/a.jsonl'))
  const inline = parse(dir, BASE + 'audit:\n  log: false\n  sinks: [{ type: stdout }]\n')
  tt.equal(inline.audit.stdout, true, '…without one it is the in-line stdout writer')
  tt.same(inline.audit.sinks, [])
  tt.match(parse(dir, BASE + 'audit:\n  sinks: [{ type: stdout, format: ocsf }]\n').audit.sinks, [{ type: 'stdout', format: 'ocsf' }])
  rejects(tt, dir, BASE + 'audit:\n  stdout: true\n  sinks: [{ type: stdout }]\n', 'audit.sinks[0]', /printed twice/)
  tt.equal(parse(dir, BASE + 'audit:\n  log: logs/a.jsonl\n  sinks: [{ type: file, path: logs/a.jsonl }]\n').audit.log, join(dir, 'logs/a.jsonl'))
  tt.equal(parse(dir, BASE + 'audit:\n  log: null\n').audit.log, null)
  rejects(tt, dir, BASE + 'audit:\n  log: x.jsonl\n  sinks: [{ type: file, path: y.jsonl }]\n', 'audit.sinks[0].path', /conflicts with audit.log/)
  rejects(tt, dir, BASE + 'audit:\n  log: false\n  sinks: [{ type: file, path: y.jsonl }]\n', 'audit.sinks[0].path', 'conflicts with audit.log: false')
  rejects(tt, dir, BASE + 'audit:\n  sinks: [{ type: file }]\n', 'audit.sinks[0].path', /is required/)
  rejects(tt, dir, BASE + 'audit:\n  log: false\n  sinks: [{ type: stdout, format: v1 }]\n', 'audit.sinks[0].format', /unknown key/)
  rejects(tt, dir, BASE + 'audit:\n  sinks: [stdout]\n', 'audit.sinks[0]', /must be a mapping/)
  rejects(tt, dir, BASE + 'audit:\n  sinks: [{ type: file, path: a }, { type: file, path: a }]\n', 'audit.sinks[1]', /only one file sink/)
  rejects(tt, dir, BASE + 'audit:\n  parameters: hmac\n', 'audit.parameter_hmac_key', /is required with parameters: hmac/)
  rejects(tt, dir, BASE + 'audit:\n  parameters: hmac\n  parameter_hmac_key: short\n', 'audit.parameter_hmac_key', /too short/)
})

t.test('bad enums', async (tt) => {
  const dir = fixture(tt)
  rejects(tt, dir, BASE + 'upstream: { tls: { mode: verify } }\n', 'upstream.tls.mode', 'must be one of disable, require, verify-full (got "verify")')
  rejects(tt, dir, BASE + 'upstream: { host: db, tls: { mode: verify-full } }\n', 'upstream.tls.ca', /is required with mode verify-full/)
  rejects(tt, dir, BASE + 'audit: { durability: sometimes }\n', 'audit.durability', 'must be one of strict, batched (got "sometimes")')
  rejects(tt, dir, BASE + 'audit: { parameters: all }\n', 'audit.parameters', /must be one of full, hmac, omit/)
  rejects(tt, dir, BASE + 'log: { level: verbose }\n', 'log.level', /must be one of trace, debug, info, warn, error, fatal/)
  rejects(tt, dir, BASE + 'log: { format: text }\n', 'log.format', /must be one of json, pretty/)
  rejects(tt, dir, BASE + '  mtls: { subject: dn }\n', 'identity.mtls.subject', 'must be one of spiffe, cn (got "dn")')
  rejects(tt, dir, BASE + 'dev: yes\n', 'dev', 'must be true or false (got "yes")')
  rejects(tt, dir, BASE + 'policy:\n  - name: a\n    match: { method: oidc }\n    roles: [a]\n    databases: [b]\n', 'policy[0].match.method', 'must be one of jwt, mtls, jwt+mtls (got "oidc")')
})

t.test('algorithms: HS* and none are rejected', async (tt) => {
  const dir = fixture(tt)
  const withAlgs = (algs: string) => BASE + `      algorithms: ${algs}\n`
  rejects(tt, dir, withAlgs('[RS256, HS256]'), 'identity.jwt[0].algorithms[1]', 'HS256 is a symmetric algorithm; only asymmetric algorithms are accepted')
  rejects(tt, dir, withAlgs('[HS512]'), 'identity.jwt[0].algorithms[0]', 'HS512 is a symmetric algorithm; only asymmetric algorithms are accepted')
  rejects(tt, dir, withAlgs('[ES256, none]'), 'identity.jwt[0].algorithms[1]', 'none is never accepted')
  rejects(tt, dir, withAlgs('[rs256]'), 'identity.jwt[0].algorithms[0]', /must be one of RS256, .* did you mean RS256\?/)
  rejects(tt, dir, withAlgs('[]'), 'identity.jwt[0].algorithms', 'must not be empty')
  rejects(tt, dir, withAlgs('RS256'), 'identity.jwt[0].algorithms', 'must be a list (got a string)')
})

t.test('issuer validation', async (tt) => {
  const dir = fixture(tt)
  const issuer = (body: string) => `listen: "127.0.0.1:1"\ntls: { cert: tls/server.crt, key: tls/server.key }\nidentity:\n  jwt:\n    - ${body}\n`
  rejects(tt, dir, issuer('{ audience: a, jwks_file: jwks.json }'), 'identity.jwt[0].issuer', 'is required')
  rejects(tt, dir, issuer('{ issuer: i, jwks_file: jwks.json }'), 'identity.jwt[0].audience', /is required/)
  rejects(tt, dir, issuer('{ issuer: i, audience: [], jwks_file: jwks.json }'), 'identity.jwt[0].audience', 'must not be empty')
  rejects(tt, dir, issuer('{ issuer: i, audience: [a, 3], jwks_file: jwks.json }'), 'identity.jwt[0].audience[1]', /must be a string \(got a number; put it in quotes\)/)
  rejects(tt, dir, issuer('{ issuer: i, audience: a }'), 'identity.jwt[0]', 'one of jwks_file or jwks_url is required')
  rejects(tt, dir, issuer('{ issuer: i, audience: a, jwks_file: jwks.json, jwks_url: "https://x/j" }'), 'identity.jwt[0]', 'set only one of jwks_file and jwks_url')
  rejects(tt, dir, issuer('{ issuer: i, audience: a, jwks_url: "http://idp.example.com/j" }'), 'identity.jwt[0].jwks_url', /must be an https:\/\/ URL/)
  rejects(tt, dir, issuer('{ issuer: i, audience: a, jwks_url: "not a url" }'), 'identity.jwt[0].jwks_url', /must be an https:\/\/ URL/)
  tt.equal(parse(dir, issuer('{ issuer: i, audience: a, jwks_url: "http://localhost:9/j" }')).identity.jwt[0]!.jwksUrl, 'http://localhost:9/j')
  rejects(tt, dir, issuer('{ issuer: i, audience: a, jwks_file: missing.json }'), 'identity.jwt[0].jwks_file', `cannot read JWKS file ${join(dir, 'missing.json')}: no such file`)
  write(dir, 'bad.json', '{"keys": ')
  rejects(tt, dir, issuer('{ issuer: i, audience: a, jwks_file: bad.json }'), 'identity.jwt[0].jwks_file', /is not valid JSON/)
  write(dir, 'nokeys.json', '{"kty": "EC"}')
  rejects(tt, dir, issuer('{ issuer: i, audience: a, jwks_file: nokeys.json }'), 'identity.jwt[0].jwks_file', /expected a JSON object with a "keys" array/)
  write(dir, 'badkey.json', '{"keys": [1]}')
  rejects(tt, dir, issuer('{ issuer: i, audience: a, jwks_file: badkey.json }'), 'identity.jwt[0].jwks_file', /keys\[0\] is not a JWK/)
  rejects(tt, dir, issuer('{ issuer: i, audience: a, jwks_file: jwks.json, clock_skew_seconds: 61 }'), 'identity.jwt[0].clock_skew_seconds', 'must be 0..60 (got 61)')
  rejects(tt, dir, issuer('{ issuer: i, audience: a, jwks_file: jwks.json, clock_skew_seconds: 1.5 }'), 'identity.jwt[0].clock_skew_seconds', /whole number/)
  rejects(
    tt,
    dir,
    issuer('{ issuer: i, audience: a, jwks_file: jwks.json }\n    - { issuer: j, audience: a, jwks_file: jwks.json }\n    - { issuer: i, audience: b, jwks_file: jwks.json }'),
    'identity.jwt[2].issuer',
    'duplicate issuer (also configured at identity.jwt[0])',
  )
})

t.test('listen addresses', async (tt) => {
  const dir = fixture(tt)
  const rest = BASE.replace('listen: "127.0.0.1:6432"\n', '')
  const L = (v: string) => `listen: ${v}\n${rest}`
  tt.same(parse(dir, L('"localhost:1"')).listen, { host: 'localhost', port: 1 })
  tt.same(parse(dir, L('"[::]:65535"')).listen, { host: '::', port: 65535 })
  rejects(tt, dir, L('"127.0.0.1"'), 'listen', /must be "host:port"/)
  rejects(tt, dir, L('"127.0.0.1:65536"'), 'listen', 'the port must be 0..65535 (0 = any free port) (got "127.0.0.1:65536")')
  rejects(tt, dir, L('"127.0.0.1:-1"'), 'listen', /the port must be a number/)
  rejects(tt, dir, L('"::1:6432"'), 'listen', /IPv6 address must be written in brackets/)
  rejects(tt, dir, L('"[nope]:6432"'), 'listen', /must be an IPv6 address/)
  rejects(tt, dir, L('":6432"'), 'listen', /must be "host:port"/)
  rejects(tt, dir, L('6432'), 'listen', /must be a string/)
  rejects(tt, dir, rest, 'listen', /is required/)
  rejects(tt, dir, BASE + 'metrics: { listen: "x:y" }\n', 'metrics.listen', /port must be a number/)
  rejects(tt, dir, BASE + 'upstream: { port: 0 }\n', 'upstream.port', 'must be 1..65535 (got 0)')
})

t.test('tls section', async (tt) => {
  const dir = fixture(tt)
  rejects(tt, dir, 'listen: "127.0.0.1:1"\n', 'tls', /is required/)
  rejects(tt, dir, 'listen: "127.0.0.1:1"\ntls: { cert: tls/server.crt }\n', 'tls.key', /is required/)
  rejects(tt, dir, BASE.replace('tls/server.key', 'tls/missing.key'), 'tls.key', `cannot read file ${join(dir, 'tls/missing.key')}: no such file`)
  rejects(tt, dir, BASE.replace('tls/server.key', 'tls/server.crt'), 'tls.key', /does not contain a PEM private key/)
  rejects(tt, dir, BASE.replace('tls/server.crt', 'tls/server.key'), 'tls.cert', /does not contain a PEM certificate/)
  rejects(tt, dir, BASE.replace('key: tls/server.key', 'key: tls/server.key\n  client_ca: nope.crt'), 'tls.client_ca', /cannot read file/)
  write(dir, 'tls/enc.key', '-----BEGIN ENCRYPTED PRIVATE KEY-----\nx\n-----END ENCRYPTED PRIVATE KEY-----\n')
  rejects(tt, dir, BASE.replace('tls/server.key', 'tls/enc.key'), 'tls.key', /encrypted private key/)
})

t.test('policy validation', async (tt) => {
  const dir = fixture(tt)
  const P = (rules: string) => BASE + 'policy:\n' + rules
  const ok = '  - { name: a, match: { issuer: https://idp.example.com }, roles: [r], databases: [d] }\n'
  tt.equal(parse(dir, P(ok)).policy.length, 1)
  tt.same(parse(dir, BASE + 'policy: []\n').policy, [], 'an empty policy is allowed')
  rejects(tt, dir, P(ok + ok.replace('roles: [r]', 'roles: [x]')), 'policy[1].name', 'duplicate rule name "a" (also used by policy[0])')
  rejects(tt, dir, P(ok + ok.replace('name: a', 'name: b') + '  - { name: c, match: { subject: 5 }, roles: [r], databases: [d] }\n'), 'policy[2].match.subject', /must be a string/)
  rejects(tt, dir, P('  - { name: a, match: { issuer: https://other.example.com }, roles: [r], databases: [d] }\n'), 'policy[0].match.issuer', /^no trusted issuer with this name is configured/)
  rejects(tt, dir, P('  - { match: {}, roles: [r], databases: [d] }\n'), 'policy[0].name', 'is required')
  rejects(tt, dir, P('  - { name: a, roles: [r], databases: [d] }\n'), 'policy[0].match', /is required/)
  rejects(tt, dir, P('  - name: a\n    match:\n    roles: [r]\n    databases: [d]\n'), 'policy[0].match', /is required \(use `match: \{\}`/, 'an empty `match:` is not "match everyone"')
  rejects(tt, dir, P('  - { name: a, match: {}, roles: [], databases: [d] }\n'), 'policy[0].roles', 'must not be empty')
  rejects(tt, dir, P('  - { name: a, match: {}, roles: [r] }\n'), 'policy[0].databases', /is required/)
  rejects(tt, dir, P('  - { name: a, match: { claims: { groups: [a, b] } }, roles: [r], databases: [d] }\n'), 'policy[0].match.claims.groups', /must be a string, number or boolean/)
  rejects(tt, dir, P('  - { name: a, match: { method: mtls, issuer: https://idp.example.com }, roles: [r], databases: [d] }\n'), 'policy[0].match.issuer', /method mtls/)
  rejects(tt, dir, P('  - { name: a, match: { spiffe_prefix: x }, roles: [r], databases: [d] }\n'), 'policy[0].match.spiffe_prefix', /unknown key/)
  rejects(tt, dir, 'listen: "127.0.0.1:1"\ntls: { cert: tls/server.crt, key: tls/server.key }\npolicy: {}\n', 'policy', 'must be a list (got a mapping)')
})

t.test('durations and sizes', async (tt) => {
  tt.same(parseDuration(250), { ok: true, value: 250 })
  tt.same(parseDuration('500ms'), { ok: true, value: 500 })
  tt.same(parseDuration('10s'), { ok: true, value: 10_000 })
  tt.same(parseDuration('1.5s'), { ok: true, value: 1500 })
  tt.same(parseDuration('5m'), { ok: true, value: 300_000 })
  tt.same(parseDuration('1h'), { ok: true, value: 3_600_000 })
  tt.same(parseDuration('42'), { ok: true, value: 42 })
  tt.equal(parseDuration('10 sec').ok, false)
  tt.equal(parseDuration('-1s').ok, false)
  tt.equal(parseDuration(-5).ok, false)
  tt.same(parseSize(100), { ok: true, value: 100 })
  tt.same(parseSize('64MiB'), { ok: true, value: 64 * 1024 ** 2 })
  tt.same(parseSize('1GiB'), { ok: true, value: 1024 ** 3 })
  tt.same(parseSize('512KiB'), { ok: true, value: 512 * 1024 })
  tt.same(parseSize('1MB'), { ok: true, value: 1_000_000 })
  tt.same(parseSize('2 kb'), { ok: true, value: 2000 })
  tt.equal(parseSize('1.5B').ok, false)
  tt.equal(parseSize('12 parsecs').ok, false)
  tt.same(parseListen('[::1]:6432', false), { ok: true, value: { host: '::1', port: 6432 } })
  tt.equal(parseListen('h:0', false).ok, false)

  const dir = fixture(tt)
  tt.equal(parse(dir, BASE + 'limits: { handshake_timeout: 100ms }\n').limits.handshakeTimeoutMs, 100)
  tt.equal(parse(dir, BASE + 'limits: { handshake_timeout: 1m }\n').limits.handshakeTimeoutMs, 60_000)
  tt.equal(parse(dir, BASE + 'limits: { handshake_timeout: 2000 }\n').limits.handshakeTimeoutMs, 2000)
  rejects(tt, dir, BASE + 'limits: { handshake_timeout: 50ms }\n', 'limits.handshake_timeout', 'must be between 100ms and 1m (got "50ms")')
  rejects(tt, dir, BASE + 'limits: { handshake_timeout: 2m }\n', 'limits.handshake_timeout', /must be between 100ms and 1m/)
  rejects(tt, dir, BASE + 'limits: { handshake_timeout: soon }\n', 'limits.handshake_timeout', /must be a duration/)
  rejects(tt, dir, BASE + 'upstream: { connect_timeout: [1] }\n', 'upstream.connect_timeout', /must be a duration .*got a list/)
  tt.equal(parse(dir, BASE + 'limits: { max_message_bytes: 1GiB }\n').limits.maxMessageBytes, 1024 ** 3)
  tt.equal(parse(dir, BASE + 'limits: { max_message_bytes: 512KiB }\n').limits.maxMessageBytes, 512 * 1024)
  tt.equal(parse(dir, BASE + 'limits: { max_message_bytes: 4096 }\n').limits.maxMessageBytes, 4096)
  rejects(tt, dir, BASE + 'limits: { max_message_bytes: 4GiB }\n', 'limits.max_message_bytes', /must be between/)
  rejects(tt, dir, BASE + 'limits: { max_message_bytes: lots }\n', 'limits.max_message_bytes', /must be a size/)
  rejects(tt, dir, BASE + 'audit: { fsync_interval: 0 }\n', 'audit.fsync_interval', /must be between 1ms and 10s/)
})

t.test('YAML syntax errors and file-level problems', async (tt) => {
  const dir = fixture(tt)
  const err = rejects(tt, dir, 'listen: "127.0.0.1:1"\ntls:\n  cert: [a, b\n', '', /^YAML syntax error at line \d+, column \d+: /)
  tt.ok(err)
  rejects(tt, dir, 'a: 1\na: 2\n', '', /^YAML syntax error at line 2, column 1: .*unique/)
  rejects(tt, dir, '', '', 'the config file is empty')
  rejects(tt, dir, '# only a comment\n', '', 'the config file is empty')
  rejects(tt, dir, '- a\n- b\n', '', /must be a YAML mapping.*got a list/)
  try {
    parseConfig('x: [', { baseDir: dir, source: join(dir, 'pgw.yaml') })
    tt.fail('should throw')
  } catch (e) {
    tt.type(e, ConfigError)
    tt.equal((e as ConfigError).key, join(dir, 'pgw.yaml'), 'file-level errors name the file when known')
    tt.match((e as ConfigError).message, new RegExp(`^config: ${join(dir, 'pgw.yaml')}: YAML syntax error at line 1`))
  }
})

t.test('merge keys work', async (tt) => {
  const dir = fixture(tt)
  const c = parse(
    dir,
    BASE +
      'policy:\n  - &base { name: a, match: {}, roles: [r], databases: [d] }\n  - { <<: *base, name: b }\n',
  )
  tt.same(c.policy.map((r) => r.name), ['a', 'b'])
  tt.same(c.policy[1]!.roles, ['r'])
})

t.test('loadConfig reads the file, hashes its bytes, resolves paths against its folder', async (tt) => {
  const dir = fixture(tt)
  const file = write(dir, 'pgwitness.yaml', BASE)
  const c = await loadConfig(file)
  tt.equal(c.source, file)
  tt.equal(c.sha256, createHash('sha256').update(readFileSync(file)).digest('hex'))
  tt.equal(c.tls.certPath, join(dir, 'tls/server.crt'))
  await tt.rejects(loadConfig(join(dir, 'nope.yaml')), {
    name: 'ConfigError',
    key: join(dir, 'nope.yaml'),
    message: `config: ${join(dir, 'nope.yaml')}: cannot read the config file: no such file`,
  })
})

t.test('config/dev.yaml loads with dev files in place', async (tt) => {
  const root = mkdtempSync(join(tmpdir(), 'pgw-devcfg-'))
  tt.teardown(() => rmSync(root, { recursive: true, force: true }))
  write(root, 'config/dev.yaml', readFileSync(join(repo, 'config/dev.yaml'), 'utf8'))
  write(root, 'certs/dev/server.crt', CERT)
  write(root, 'certs/dev/server.key', KEY)
  write(root, '.pgwitness-dev/jwks.json', JWKS)
  write(root, '.pgwitness-dev/approvals/jwks.json', JWKS)
  const c = await loadConfig(join(root, 'config/dev.yaml'))
  tt.equal(c.dev, true)
  tt.same(c.listen, { host: '127.0.0.1', port: 6432 })
  tt.equal(c.tls.certPath, join(root, 'certs/dev/server.crt'))
  tt.equal(c.tls.clientCa, null)
  tt.equal(c.tls.allowPlaintextLoopback, false)
  tt.equal(c.identity.jwt.length, 1)
  tt.equal(c.identity.jwt[0]!.issuer, 'https://dev.pgwitness.local')
  tt.same(c.identity.jwt[0]!.audience, ['pgwitness'])
  tt.equal(c.identity.jwt[0]!.jwksFile, join(root, '.pgwitness-dev/jwks.json'))
  tt.same(c.identity.approvals.map((a) => [a.issuer, a.jwksFile]), [['https://approvals.dev.pgwitness.local', join(root, '.pgwitness-dev/approvals/jwks.json')]])
  tt.same(c.upstream.tls.mode, 'disable')
  tt.equal(c.upstream.roles.postgres!.password, null)
  tt.same(c.policy.map((r) => [r.name, r.roles, r.databases]), [['dev', ['*'], ['*']]])
  tt.equal(c.audit.log, join(root, 'audit/audit.jsonl'))
  tt.equal(c.audit.durability, 'batched')
  tt.equal(c.audit.stdout, false)
})

t.test('config/production.example.yaml loads when its env vars and files exist', async (tt) => {
  const dir = fixture(tt)
  write(dir, 'tls/client-ca.crt', CERT)
  write(dir, 'tls/upstream-ca.crt', CERT)
  write(dir, 'k8s/jwks.json', JWKS)
  write(dir, 'spiffe/bundle.jwks.json', JWKS)
  write(dir, 'secrets/app_ro.password', 'ro-pass\n')
  write(dir, 'secrets/dba.password', 'dba-pass\n')
  write(dir, 'secrets/cdc_reader.password', 'cdc-pass\n')
  write(dir, 'secrets/audit-hmac.key', 'a'.repeat(32) + '\n')
  write(dir, 'tls/upstream-app_batch.crt', CERT)
  write(dir, 'tls/upstream-app_batch.key', KEY)
  const text = readFileSync(join(repo, 'config/production.example.yaml'), 'utf8')
  withEnv({ PGW_APP_RW_PASSWORD: undefined }, () => {
    rejects(tt, dir, text, 'upstream.roles.app_rw.password', 'environment variable PGW_APP_RW_PASSWORD is not set')
  })
  const c = withEnv({ PGW_APP_RW_PASSWORD: 'rw-pass' }, () => parseConfig(text, { baseDir: dir, source: join(dir, 'pgwitness.yaml') }))
  tt.equal(c.dev, false)
  tt.equal(c.audit.durability, 'strict')
  tt.equal(c.audit.parameters, 'hmac')
  tt.equal(c.audit.parameterHmacKey, 'a'.repeat(32))
  tt.equal(c.upstream.tls.mode, 'verify-full')
  tt.equal(c.upstream.tls.ca, CERT)
  tt.same({ ...c.upstream.roles }, {
    app_rw: { password: 'rw-pass' },
    app_ro: { password: 'ro-pass' },
    dba: { password: 'dba-pass' },
    monitoring: { password: null },
    cdc_reader: { password: 'cdc-pass' },
    app_batch: {
      password: null,
      clientCert: { cert: CERT, key: KEY, certPath: join(dir, 'tls/upstream-app_batch.crt'), keyPath: join(dir, 'tls/upstream-app_batch.key') },
    },
  })
  tt.same(c.identity.jwt.map((j) => [j.issuer, j.jwksUrl !== null]), [
    ['https://login.example.com/realms/corp', true],
    ['https://kubernetes.default.svc.cluster.local', false],
    ['https://oidc-discovery.example.org', false],
  ])
  tt.ok(c.tls.clientCa, 'mTLS enabled')
  tt.ok(c.policy.some((r) => r.match.method === 'jwt+mtls' && r.match.claims.groups === 'dba'))
  tt.ok(c.policy.some((r) => r.match.method === 'mtls'))
  tt.same(c.policy.find((r) => r.name === 'cdc-debezium')?.replication, ['logical'], 'a replication rule')
  tt.same(c.metrics.listen, { host: '127.0.0.1', port: 9187 })
  tt.equal(c.source, join(dir, 'pgwitness.yaml'))
})

t.test('upstream.roles: client certificate (cert + key) for certificate authentication', async (tt) => {
  const dir = fixture(tt)
  write(dir, 'up/app.crt', CERT)
  write(dir, 'up/app.key', KEY)
  const up = (tls: string, roles: string) => BASE + `upstream:\n  host: db.internal\n  tls: ${tls}\n  roles:\n${roles}`
  const verifyFull = '{ mode: verify-full, ca: tls/ca.crt }'

  const c = parse(dir, up(verifyFull, '    app: { cert: up/app.crt, key: up/app.key }\n    pw: { password: s3cret }\n    none: {}\n'))
  tt.same({ ...c.upstream.roles }, {
    app: { password: null, clientCert: { cert: CERT, key: KEY, certPath: join(dir, 'up/app.crt'), keyPath: join(dir, 'up/app.key') } },
    pw: { password: 's3cret' },
    none: { password: null },
  }, 'PEM contents read at load, paths resolved against the config folder')
  tt.equal(c.upstream.roles.pw!.clientCert, undefined, 'no certificate unless configured')
  // mode require (the default for a non-loopback host) is enough.
  tt.ok(parse(dir, BASE + 'upstream:\n  host: db.internal\n  roles:\n    app: { cert: up/app.crt, key: up/app.key }\n').upstream.roles.app!.clientCert)
  tt.ok(parse(dir, up('{ mode: require }', '    app: { cert: up/app.crt, key: up/app.key }\n')).upstream.roles.app!.clientCert)

  rejects(tt, dir, up(verifyFull, '    app: { cert: up/app.crt }\n'), 'upstream.roles.app.key',
    'is required with cert (the PEM private key of the client certificate)')
  rejects(tt, dir, up(verifyFull, '    app: { key: up/app.key }\n'), 'upstream.roles.app.cert', /is required with key/)
  rejects(tt, dir, up(verifyFull, '    app: { cert: up/app.crt, key: up/app.key, password: x }\n'), 'upstream.roles.app.password',
    /cannot be combined with cert and key/)
  rejects(tt, dir, up('{ mode: disable }', '    app: { cert: up/app.crt, key: up/app.key }\n'), 'upstream.tls.mode',
    'must be require or verify-full: upstream.roles.app.cert is a client certificate, which is only presented over TLS (the mode is disable)')
  // On a loopback host the default mode is disable: the message says so.
  rejects(tt, dir, BASE + 'upstream:\n  host: 127.0.0.1\n  roles:\n    "my.role": { cert: up/app.crt, key: up/app.key }\n', 'upstream.tls.mode',
    /upstream\.roles\["my\.role"\]\.cert is a client certificate, .*the default for a loopback host/)
  rejects(tt, dir, up(verifyFull, '    app: { cert: up/nope.crt, key: up/app.key }\n'), 'upstream.roles.app.cert', /cannot read file/)
  rejects(tt, dir, up(verifyFull, '    app: { cert: up/app.key, key: up/app.key }\n'), 'upstream.roles.app.cert', /does not contain a PEM certificate/)
  rejects(tt, dir, up(verifyFull, '    app: { cert: up/app.crt, key: up/app.crt }\n'), 'upstream.roles.app.key', /does not contain a PEM private key/)
  write(dir, 'up/enc.key', '-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBdummy\n-----END ENCRYPTED PRIVATE KEY-----\n')
  rejects(tt, dir, up(verifyFull, '    app: { cert: up/app.crt, key: up/enc.key }\n'), 'upstream.roles.app.key', /encrypted private key/)
  rejects(tt, dir, up(verifyFull, '    app: { cert: up/app.crt, key: up/app.key, sslmode: x }\n'), 'upstream.roles.app.sslmode', /unknown key/)
})

t.test('session.governed_settings: record by default, refuse opt-in', async (tt) => {
  const dir = fixture(tt)
  tt.same(parse(dir, BASE).session, { outliveToken: false, maxDurationMs: null, governedSettings: 'record' })
  tt.equal(parse(dir, BASE + 'session: { governed_settings: refuse }\n').session.governedSettings, 'refuse')
  tt.equal(parse(dir, BASE + 'session: { governed_settings: record }\n').session.governedSettings, 'record')
  rejects(tt, dir, BASE + 'session: { governed_settings: deny }\n', 'session.governed_settings', 'must be one of record, refuse (got "deny")')
  rejects(tt, dir, BASE + 'session: { governed_settings: true }\n', 'session.governed_settings', /must be one of record, refuse/)
  rejects(tt, dir, BASE + 'session: { governed_setting: refuse }\n', 'session.governed_setting', /unknown key/)
})

t.test('every independent problem is reported, each with its key', async (tt) => {
  const dir = fixture(tt)
  const yaml = BASE.replace('audience: pgwitness', 'audience: pgwitness\n      algorithms: [HS256]') + `
upstream: { port: 70000 }
policy:
  - { name: a, match: { issuer: https://idp.example.com }, roles: [app] }
  - { name: b, match: {}, roles: [app], databases: [x], extra: 1 }
session: { governed_settings: ignore }
audit: { durability: sometimes }
log: { level: loud }
`
  let err: unknown = null
  try {
    parse(dir, yaml)
  } catch (e) {
    err = e
  }
  tt.type(err, ConfigErrors)
  const problems = (err as ConfigErrors).problems.map((p) => [p.key, p.problem])
  tt.same(problems.map(([k]) => k), [
    'identity.jwt[0].algorithms[0]', 'upstream.port', 'policy[0].databases', 'policy[1].extra', 'session.governed_settings', 'audit.durability', 'log.level',
  ], 'one problem per independent part, in file order; the issuer of policy[0] is not reported although identity has a problem')
  tt.equal((err as ConfigErrors).message.split('\n').length, 7)
  for (const line of (err as ConfigErrors).message.split('\n')) tt.match(line, /^config: [a-z_.[\]0-9]+: \S/)
  tt.ok(err instanceof ConfigError, 'still a ConfigError (callers that catch ConfigError see them all)')
})

t.test('within a section, independent files and entries are each checked', async (tt) => {
  const dir = fixture(tt)
  const keysOf = (yaml: string): string[] => {
    try {
      parse(dir, yaml)
    } catch (e) {
      return e instanceof ConfigErrors ? e.problems.map((p) => p.key) : e instanceof ConfigError ? [e.key] : []
    }
    return []
  }
  tt.same(keysOf(BASE.replace('cert: tls/server.crt', 'cert: nope.crt').replace('key: tls/server.key', 'key: nope.key')), ['tls.cert', 'tls.key'])
  tt.same(keysOf(BASE + 'upstream:\n  roles:\n    a: { pasword: x }\n    b: { password: 1 }\n    c: { cert: c.crt }\n'),
    ['upstream.roles.a.pasword', 'upstream.roles.b.password', 'upstream.roles.c.key'])
  tt.same(keysOf(BASE.replace('jwks_file: jwks.json', 'jwks_file: jwks.json\n      algorithms: [none]\n    - { issuer: b, audience: x }')),
    ['identity.jwt[0].algorithms[0]', 'identity.jwt[1]'])
  tt.same(keysOf(BASE + 'policy:\n  - { name: 7, match: { method: carrier }, roles: [], require_approval: maybe }\n'),
    ['policy[0].name', 'policy[0].match.method', 'policy[0].roles', 'policy[0].databases', 'policy[0].require_approval'], 'every key of one rule')
  tt.same(keysOf(BASE + 'audit:\n  sinks:\n    - { type: nats }\n    - { type: syslog, address: nowhere }\n    - { type: pigeon }\n'),
    ['audit.sinks[0].url', 'audit.sinks[1].address', 'audit.sinks[2].type'], 'every sink')
})

// The config of DESIGN.md ("Config essentials", copied verbatim): every key of the contract loads, statements included.
const DESIGN_CONFIG = `listen: "127.0.0.1:6432"
tls:                                   # client-facing TLS
  cert: certs/dev/server.crt
  key: certs/dev/server.key
  client_ca: certs/dev/ca.crt          # set => client certificates are verified (mTLS)
  allow_plaintext_loopback: false      # dev only: accept non-TLS clients on 127.0.0.1
identity:
  jwt:                                 # trusted issuers; a token must match one
    - issuer: https://idp.example.com
      audience: pgwitness
      jwks_file: config/dev-jwks.json  # or jwks_url: https://.../jwks.json
      algorithms: [RS256, ES256, EdDSA]
      subject_claim: sub
      record_claims: [groups, "kubernetes.io"]
  mtls:
    subject: spiffe                    # spiffe | cn
  approvals:                           # trusted issuers of approval tokens (change/access-request systems)
    - issuer: https://change.example.com
      audience: pgwitness
      jwks_file: config/approvals-jwks.json
upstream:
  host: 127.0.0.1
  port: 5432
  tls: { mode: disable }               # disable | require | verify-full (+ ca)
  roles:                               # credentials the proxy uses per upstream role
    app_rw: { password: "\${env:PGW_APP_RW_PASSWORD}" }
policy:
  - name: billing-api
    match: { issuer: https://idp.example.com, subject: "spiffe://example.org/ns/billing/*" }
    roles: [app_rw]
    databases: [billing]
  - name: billing-api-cert             # method: jwt | mtls | jwt+mtls (omitted: any)
    match: { method: mtls, subject: "spiffe://example.org/ns/billing/*" }
    roles: [app_rw]
    databases: [billing]
  - name: dba
    match: { method: jwt+mtls, issuer: https://idp.example.com, claims: { groups: dba } }
    require_token_binding: true        # token cnf.x5t#S256 must equal the client cert's thumbprint
    roles: [dba]
    databases: ["*"]
    statements:                        # optional statement rules for this identity
      mode: enforce                    # enforce | monitor (record would_deny, let it run)
      deny: [{ class: DDL }, { command: TRUNCATE }, { object: "public.secrets*" }]
      require_claims: [{ class: [ROLE], claim: change_ticket }]
      require_approval: [{ class: [DDL, ROLE] }]
audit:
  log: audit/audit.jsonl
  durability: strict                   # strict | batched
  parameters: full                     # full | hmac | omit
  checkpoint: { key: config/audit-signing.jwk, every_records: 1000, every_seconds: 60 }
  sinks:
    - { type: nats, url: "nats://127.0.0.1:4222", subject: pgwitness.audit, stream: PGWITNESS, format: v1 }
    - { type: syslog, url: "tls://siem.example.com:6514", format: v1 }
    - { type: http, url: "https://siem.example.com/ingest", headers: { Authorization: "\${env:SIEM_TOKEN}" }, format: ocsf }
    - { type: stdout }
metrics:
  listen: "127.0.0.1:9187"               # /metrics, /healthz, /readyz
`

t.test("DESIGN.md's config loads, with its statement rules and approvals issuer", async (tt) => {
  const dir = fixture(tt)
  write(dir, 'certs/dev/server.crt', CERT)
  write(dir, 'certs/dev/server.key', KEY)
  write(dir, 'certs/dev/ca.crt', CERT)
  write(dir, 'config/dev-jwks.json', JWKS)
  write(dir, 'config/approvals-jwks.json', JWKS)
  writeCheckpointKeyPair(join(dir, 'config/audit-signing.jwk'), join(dir, 'config/audit-signing.pub.jwk'))
  process.env.PGW_APP_RW_PASSWORD = 'app-rw-secret'
  process.env.SIEM_TOKEN = 'Splunk siem-token'
  tt.teardown(() => {
    delete process.env.PGW_APP_RW_PASSWORD
    delete process.env.SIEM_TOKEN
  })
  const c = parse(dir, DESIGN_CONFIG)
  const dba = c.policy.find((r) => r.name === 'dba')!
  tt.same(dba.statements?.mode, 'enforce')
  tt.same(dba.statements?.deny.map((d) => [d.selector.classes, d.selector.commands, d.selector.objects]), [[['DDL'], [], []], [[], ['TRUNCATE'], []], [[], [], ['public.secrets*']]])
  tt.equal(dba.statements?.requireClaims[0]?.claim, 'change_ticket')
  tt.same(dba.statements?.requireApproval[0]?.selector.classes, ['DDL', 'ROLE'])
  tt.equal(c.identity.approvals[0]?.issuer, 'https://change.example.com')
  tt.same(c.audit.sinks.map((s) => s.type), ['nats', 'syslog', 'http', 'stdout'])
})
