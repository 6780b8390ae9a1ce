/**
 * `audit.sinks` entries shipped from the log (src/config/parse-sinks.ts):
 * nats, syslog and http with their defaults, names, every key validated,
 * errors naming the key, and secrets never in messages.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import t, { type Test } from 'tap'
import { ConfigError, parseConfig } from '../../src/config/load.js'
import type { HttpSinkConfig, NatsSinkConfig, PgwitnessConfig, SyslogSinkConfig } from '../../src/config/types.js'

const CERT = '-----BEGIN CERTIFICATE-----\nMIIBdummy\n-----END CERTIFICATE-----\n'

function fixture(tt: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgw-config-sinks-'))
  tt.teardown(() => rmSync(dir, { recursive: true, force: true }))
  for (const [rel, text] of Object.entries({ 'tls/server.crt': CERT, 'tls/server.key': '-----BEGIN PRIVATE KEY-----\nMIIBdummy\n-----END PRIVATE KEY-----\n', 'siem-ca.crt': CERT })) {
    mkdirSync(dirname(join(dir, rel)), { recursive: true })
    writeFileSync(join(dir, rel), text)
  }
  return dir
}

const BASE = 'listen: "127.0.0.1:6432"\ntls: { cert: tls/server.crt, key: tls/server.key }\n'
const parse = (dir: string, audit: string): PgwitnessConfig => parseConfig(BASE + 'audit:\n' + audit, { baseDir: dir, source: null })

function rejects(tt: Test, dir: string, audit: string, key: string, problem: RegExp | string): void {
  try {
    parse(dir, audit)
    tt.fail(`expected a ConfigError for ${key}`)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    tt.equal(err.key, key, `names the key: ${err.message}`)
    if (typeof problem === 'string') tt.equal(err.problem, problem)
    else tt.match(err.problem, problem)
  }
}

t.test('the three sinks of the design example, with defaults', async (tt) => {
  const dir = fixture(tt)
  process.env.PGW_TEST_SIEM_TOKEN = 'Bearer s3cret'
  tt.teardown(() => delete process.env.PGW_TEST_SIEM_TOKEN)
  const c = parse(dir, `  sinks:
    - { type: nats, url: "nats://127.0.0.1:4222", subject: pgwitness.audit, stream: PGWITNESS, format: v1 }
    - { type: syslog, url: "tls://siem.example.com:6514", format: v1 }
    - { type: http, url: "https://siem.example.com/ingest", headers: { Authorization: "\${env:PGW_TEST_SIEM_TOKEN}" }, format: ocsf }
    - { type: stdout }
`)
  tt.equal(c.audit.stdout, false, 'the stdout entry is shipped from the log like the others')
  tt.equal(c.audit.sinks.length, 4)
  tt.match(c.audit.sinks[3], { type: 'stdout', name: 'stdout-sink', format: 'v1' })
  const [nats, syslog, http] = c.audit.sinks as [NatsSinkConfig, SyslogSinkConfig, HttpSinkConfig]
  tt.same(nats, {
    name: 'nats', type: 'nats', format: 'v1', batchSize: 1000, drainTimeoutMs: 5000, maxBackoffMs: 30_000,
    servers: ['nats://127.0.0.1:4222'], subject: 'pgwitness.audit', stream: 'PGWITNESS', createStream: true, duplicateWindowMs: 120_000,
    user: null, password: null, token: null, ca: null, timeoutMs: 5000,
  })
  tt.same(syslog, {
    name: 'syslog', type: 'syslog', format: 'v1', batchSize: 1000, drainTimeoutMs: 5000, maxBackoffMs: 30_000,
    transport: 'tls', host: 'siem.example.com', port: 6514, ca: null, facility: 10, hostname: hostname(), timeoutMs: 10_000,
  })
  tt.same(http, {
    name: 'http', type: 'http', format: 'ocsf', batchSize: 500, drainTimeoutMs: 5000, maxBackoffMs: 30_000,
    url: 'https://siem.example.com/ingest', headers: { Authorization: 'Bearer s3cret' }, envelope: 'none', index: null, ca: null,
    timeoutMs: 10_000, batchBytes: 1024 * 1024,
  })
})

t.test('every option', async (tt) => {
  const dir = fixture(tt)
  const c = parse(dir, `  sinks:
    - type: nats
      name: soc-nats
      url: "tls://nats-a:4222, tls://nats-b:4222"
      subject: audit.pgw.eu1
      stream: AUDIT
      create_stream: false
      duplicate_window: 10m
      user: pgw
      password: pw
      ca: siem-ca.crt
      timeout: 2s
      batch_size: 50
      drain_timeout: 0s
      max_backoff: 2s
      format: ocsf
    - { type: syslog, url: "tcp://[::1]:601", facility: local3, hostname: db-proxy-1 }
    - { type: syslog, url: "tls://10.0.0.5:6514", ca: siem-ca.crt, facility: 4 }
    - { type: http, url: "http://vector:8080/", envelope: elastic_bulk, batch_bytes: 64KiB, timeout: 30s }
    - { type: http, url: "https://hec:8088/services/collector/event", envelope: splunk_hec, index: sec, ca: siem-ca.crt, headers: { Authorization: "Splunk x" } }
`)
  const [n, s1, s2, h1, h2] = c.audit.sinks as [NatsSinkConfig, SyslogSinkConfig, SyslogSinkConfig, HttpSinkConfig, HttpSinkConfig]
  tt.same(n.servers, ['tls://nats-a:4222', 'tls://nats-b:4222'])
  tt.equal(n.name, 'soc-nats')
  tt.equal(n.createStream, false)
  tt.equal(n.duplicateWindowMs, 600_000)
  tt.equal(n.user, 'pgw')
  tt.equal(n.password, 'pw')
  tt.equal(n.ca?.pem, CERT)
  tt.equal(n.ca?.path, join(dir, 'siem-ca.crt'))
  tt.equal(n.timeoutMs, 2000)
  tt.equal(n.batchSize, 50)
  tt.equal(n.drainTimeoutMs, 0)
  tt.equal(n.maxBackoffMs, 2000)
  tt.equal(n.format, 'ocsf')
  tt.same([s1.name, s1.transport, s1.host, s1.port, s1.facility, s1.hostname], ['syslog-1', 'tcp', '::1', 601, 19, 'db-proxy-1'], 'repeated types are named <type>-<index>')
  tt.same([s2.name, s2.transport, s2.host, s2.facility], ['syslog-2', 'tls', '10.0.0.5', 4])
  tt.same([h1.name, h1.envelope, h1.index, h1.batchBytes, h1.timeoutMs], ['http-3', 'elastic_bulk', 'pgwitness-audit', 65536, 30_000])
  tt.same([h2.name, h2.envelope, h2.index], ['http-4', 'splunk_hec', 'sec'])
})

t.test('errors name the key', async (tt) => {
  const dir = fixture(tt)
  const s = (entry: string) => `  sinks:\n    - ${entry}\n`
  rejects(tt, dir, s('{ type: nats, subject: a }'), 'audit.sinks[0].url', /is required/)
  rejects(tt, dir, s('{ type: nats, url: "http://x:4222", subject: a }'), 'audit.sinks[0].url', /must start with nats:\/\/ or tls:\/\//)
  rejects(tt, dir, s('{ type: nats, url: "nats://x", subject: "a.*" }'), 'audit.sinks[0].subject', /without wildcards/)
  rejects(tt, dir, s('{ type: nats, url: "nats://x", subject: a, stream: "A.B" }'), 'audit.sinks[0].stream', /stream name/)
  rejects(tt, dir, s('{ type: nats, url: "nats://x", subject: a, create_stream: true }'), 'audit.sinks[0].create_stream', /needs stream/)
  rejects(tt, dir, s('{ type: nats, url: "nats://x", subject: a, password: p }'), 'audit.sinks[0].user', /is required with password/)
  rejects(tt, dir, s('{ type: nats, url: "nats://x", subject: a, user: u }'), 'audit.sinks[0].password', /is required with user/)
  rejects(tt, dir, s('{ type: nats, url: "nats://x", subject: a, user: u, password: p, token: t }'), 'audit.sinks[0].token', /cannot be combined/)
  rejects(tt, dir, s('{ type: nats, url: "nats://x", subject: a, ca: missing.crt }'), 'audit.sinks[0].ca', /cannot read/)
  rejects(tt, dir, s('{ type: nats, url: "nats://x", subject: a, sujbect: b }'), 'audit.sinks[0].sujbect', /unknown key \(did you mean "subject"\?\)/)
  rejects(tt, dir, s('{ type: syslog, url: "udp://x:514" }'), 'audit.sinks[0].url', /must start with tcp:\/\/ or tls:\/\//)
  rejects(tt, dir, s('{ type: syslog, url: "tcp://x" }'), 'audit.sinks[0].url', /must name a port/)
  rejects(tt, dir, s('{ type: syslog, url: "tcp://x:514", ca: siem-ca.crt }'), 'audit.sinks[0].ca', /tls:\/\/ only/)
  rejects(tt, dir, s('{ type: syslog, url: "tcp://x:514", facility: bogus }'), 'audit.sinks[0].facility', /facility name/)
  rejects(tt, dir, s('{ type: syslog, url: "tcp://x:514", facility: 24 }'), 'audit.sinks[0].facility', /0\.\.23/)
  rejects(tt, dir, s('{ type: syslog, url: "tcp://x:514", hostname: "a b" }'), 'audit.sinks[0].hostname', /printable ASCII/)
  rejects(tt, dir, s('{ type: http }'), 'audit.sinks[0].url', /is required/)
  rejects(tt, dir, s('{ type: http, url: "https://u:p@x/" }'), 'audit.sinks[0].url', /must not carry credentials/)
  rejects(tt, dir, s('{ type: http, url: "x/y" }'), 'audit.sinks[0].url', /must be a URL/)
  rejects(tt, dir, s('{ type: http, url: "https://x/", headers: { "Content-Type": a } }'), 'audit.sinks[0].headers.Content-Type', /set by pgwitness/)
  rejects(tt, dir, s('{ type: http, url: "https://x/", headers: { "Bad Name": a } }'), 'audit.sinks[0].headers["Bad Name"]', /not a valid HTTP header name/)
  rejects(tt, dir, s('{ type: http, url: "https://x/", index: i }'), 'audit.sinks[0].index', /splunk_hec or elastic_bulk/)
  rejects(tt, dir, s('{ type: http, url: "https://x/", envelope: kafka }'), 'audit.sinks[0].envelope', /must be one of none, splunk_hec, elastic_bulk/)
  rejects(tt, dir, s('{ type: http, url: "http://x/", ca: siem-ca.crt }'), 'audit.sinks[0].ca', /https:\/\/ only/)
  rejects(tt, dir, s('{ type: http, url: "https://x/", format: json }'), 'audit.sinks[0].format', /must be one of v1, ocsf/)
  rejects(tt, dir, s('{ type: http, url: "https://x/", batch_size: 0 }'), 'audit.sinks[0].batch_size', /1\.\.100000/)
  rejects(tt, dir, s('{ type: http, url: "https://x/", name: "a/b" }'), 'audit.sinks[0].name', /letters, digits/)
  rejects(tt, dir, s('{ type: http, url: "https://x/", name: file }'), 'audit.sinks[0].name', /reserved/)
  rejects(tt, dir, '  sinks:\n    - { type: http, url: "https://x/", name: a }\n    - { type: nats, url: "nats://x", subject: s, name: a }\n', 'audit.sinks[1].name', /already used by audit.sinks\[0\]/)
  rejects(tt, dir, '  log: false\n  sinks:\n    - { type: http, url: "https://x/" }\n', 'audit.sinks[0].type', /audit.log is false/)
})

t.test('a secret from the environment never appears in an error', async (tt) => {
  const dir = fixture(tt)
  process.env.PGW_TEST_BAD_HEADER = 'tok\r\nX-Injected: 1'
  tt.teardown(() => delete process.env.PGW_TEST_BAD_HEADER)
  try {
    parse(dir, '  sinks:\n    - { type: http, url: "https://x/", headers: { Authorization: "${env:PGW_TEST_BAD_HEADER}" } }\n')
    tt.fail('expected an error')
  } catch (err) {
    tt.ok(err instanceof ConfigError)
    tt.equal((err as ConfigError).key, 'audit.sinks[0].headers.Authorization')
    tt.notMatch((err as Error).message, /tok|Injected/)
  }
})

t.test('the commented-out sinks of config/production.example.yaml load when uncommented', async (tt) => {
  const dir = fixture(tt)
  for (const f of ['tls/nats-ca.crt', 'tls/siem-ca.crt']) writeFileSync(join(dir, f), CERT)
  const text = readFileSync(new URL('../../config/production.example.yaml', import.meta.url), 'utf8')
  const block = /^ {2}# sinks:\n(?: {2}# .*\n)+/m.exec(text)
  tt.ok(block, 'the example has a sinks block')
  const sinks = block![0].replace(/^ {2}# ?/gm, '  ')
  process.env.PGW_NATS_TOKEN = 'nats-token'
  process.env.PGW_SPLUNK_HEC_TOKEN = 'hec-token'
  tt.teardown(() => {
    delete process.env.PGW_NATS_TOKEN
    delete process.env.PGW_SPLUNK_HEC_TOKEN
  })
  const c = parse(dir, sinks)
  tt.equal(c.audit.stdout, false)
  tt.same(c.audit.sinks.map((s) => [s.type, s.name, s.format]), [['stdout', 'stdout-sink', 'v1'], ['nats', 'nats', 'v1'], ['syslog', 'syslog', 'v1'], ['http', 'http', 'ocsf']])
  const [, n, , h] = c.audit.sinks as [unknown, NatsSinkConfig, SyslogSinkConfig, HttpSinkConfig]
  tt.same(n.servers, ['tls://nats-1.example.com:4222', 'tls://nats-2.example.com:4222'])
  tt.equal(n.token, 'nats-token')
  tt.same(h.headers, { Authorization: 'Splunk hec-token' })
  tt.equal(h.envelope, 'splunk_hec')
})
