/**
 * Issue 6 item 1: Prometheus metrics, /healthz and /readyz on metrics.listen.
 * A scripted workload (sessions under two policy rules, statements of known
 * classes, some failing or refused, auth failures, a TCP probe, a cancel
 * request) and the counts /metrics reports must match exactly — by hand and
 * against the audit log. /readyz follows the upstream: a second proxy points
 * at a TCP listener the test stops and restarts; the fixture's PostgreSQL is
 * stopped at the end.
 */
import t from 'tap'
import net from 'node:net'
import path from 'node:path'
import { rmSync } from 'node:fs'
import pg from 'pg'
import pino from 'pino'
import { parseConfig } from '../../src/config/load.js'
import { DEV_AUDIENCE, DEV_ISSUER } from '../../src/dev/tokens.js'
import { ProxyServer } from '../../src/server.js'
import type { AuditRecord } from '../../src/evidence/types.js'
import { readValidAuditLog, recordsOfType } from '../helpers/audit.js'
import { signingKey, signToken, startJwksServer } from '../helpers/jwks-server.js'
import { parseExposition, sum, table, type Sample } from '../helpers/metrics.js'
import { startFixture } from '../helpers/proxy.js'

// governed_settings: refuse, so the scripted workload has a denied statement to count.
const f = await startFixture({ extraYaml: 'metrics: { listen: "127.0.0.1:0" }\nsession: { governed_settings: refuse }' })
t.teardown(async () => {
  await f.stop()
  rmSync(f.dir, { recursive: true, force: true })
})

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function until<T>(what: string, probe: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const v = await probe()
    if (ok(v)) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(v)}`)
    await sleep(50)
  }
}

function base(port: number | null): string {
  if (port === null) throw new Error('metrics listener not started')
  return `http://127.0.0.1:${port}`
}

async function scrape(port = f.proxy.metricsPort): Promise<Sample[]> {
  const r = await fetch(`${base(port)}/metrics`)
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`)
  return parseExposition(await r.text())
}

async function readyz(port = f.proxy.metricsPort): Promise<{ status: number; body: { status: string; failed?: string[]; checks: Record<string, { ok: boolean; error?: string }> } }> {
  const r = await fetch(`${base(port)}/readyz`)
  return { status: r.status, body: (await r.json()) as never }
}

/** A client through the proxy; connect errors are returned, not thrown. */
async function tryConnect(o: { password: string; user?: string; database?: string }): Promise<pg.Client | Error> {
  const c = new pg.Client({
    host: '127.0.0.1', port: f.proxy.port, user: o.user ?? 'app', database: o.database ?? 'appdb',
    password: o.password, ssl: { rejectUnauthorized: false }, application_name: 'metrics-test',
  })
  c.on('error', () => undefined)
  try {
    await c.connect()
    return c
  } catch (err) {
    return err as Error
  }
}

async function connect(o: { password: string; user?: string; database?: string }): Promise<pg.Client> {
  const c = await tryConnect(o)
  if (c instanceof Error) throw c
  return c
}

t.test('the metrics listener: /healthz, /readyz, /metrics, 404 and 405', async (t) => {
  t.ok(f.proxy.metricsAddress?.startsWith('127.0.0.1:'), `listening on ${f.proxy.metricsAddress}`)
  const h = await fetch(`${base(f.proxy.metricsPort)}/healthz`)
  t.equal(h.status, 200)
  t.equal(await h.text(), 'ok\n')
  const r = await readyz()
  t.equal(r.status, 200)
  t.same(r.body, { status: 'ready', checks: { running: { ok: true }, config: { ok: true }, audit_log: { ok: true }, upstream: { ok: true } } })
  const m = await fetch(`${base(f.proxy.metricsPort)}/metrics`)
  t.equal(m.status, 200)
  t.match(m.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
  const text = await m.text()
  t.match(text, /^# TYPE pgwitness_statements_total counter$/m)
  t.match(text, /^# TYPE pgwitness_statement_duration_seconds histogram$/m)
  t.match(text, /^process_resident_memory_bytes \d+/m, 'default process metrics')
  t.equal((await fetch(`${base(f.proxy.metricsPort)}/nope`)).status, 404)
  const post = await fetch(`${base(f.proxy.metricsPort)}/metrics`, { method: 'POST', body: 'x' })
  t.equal(post.status, 405)
  t.equal(post.headers.get('allow'), 'GET, HEAD')
  const head = await fetch(`${base(f.proxy.metricsPort)}/readyz`, { method: 'HEAD' })
  t.equal(head.status, 200)
  t.equal(await head.text(), '')
})

t.test('a scripted workload: /metrics counts match exactly', async (t) => {
  const sessions = 3
  const script = async (c: pg.Client) => {
    await c.query('SELECT 1') //                                        READ ok
    await c.query('CREATE TEMP TABLE t(x int)') //                      DDL ok
    await c.query('INSERT INTO t VALUES (1), (2)') //                   WRITE ok
    await c.query('SELECT x FROM t WHERE x = $1', [1]) //               READ ok (extended protocol)
    await t.rejects(c.query('SELECT * FROM nonexistent')) //            READ error
    await t.rejects(c.query('SELEC 1')) //                              (no class) error
    await t.rejects(c.query("SET application_name = 'x'"), /pgwitness/) // MISC_SET denied
    await c.query('SELECT count(*) FROM t') //                          READ + FUNCTION ok
  }
  const billing = await Promise.all(Array.from({ length: sessions }, async () => connect({ password: await f.token() })))
  for (const c of billing) await script(c)
  const dba = await connect({ password: await f.token({ subject: 'user:alice', claims: { groups: ['dba'] } }), user: 'postgres' })

  // Auth failures, each a refused connection.
  const refusals: Array<[string, Promise<pg.Client | Error>]> = [
    ['token_malformed', tryConnect({ password: 'not-a-jwt' })],
    ['token_expired', tryConnect({ password: await f.token({ ttlSeconds: -120 }) })],
    ['policy_no_match', tryConnect({ password: await f.token({ subject: 'spiffe://test.local/ns/other/sa/x' }) })],
    ['database_not_allowed', tryConnect({ password: await f.token(), database: 'postgres' })],
  ]
  for (const [reason, p] of refusals) t.type(await p, Error, `refused: ${reason}`)

  // A TCP probe (no StartupMessage) and a CancelRequest with an unknown key.
  const probe = net.connect(f.proxy.port, '127.0.0.1')
  await new Promise((r) => probe.once('connect', r))
  probe.end()
  const cancel = net.connect(f.proxy.port, '127.0.0.1')
  await new Promise((r) => cancel.once('connect', r))
  const packet = Buffer.alloc(16)
  packet.writeInt32BE(16, 0)
  packet.writeInt32BE(80877102, 4)
  packet.writeInt32BE(12345, 8)
  packet.writeInt32BE(67890, 12)
  cancel.end(packet)

  let s = await until('the probe and the cancel request', scrape, (s) =>
    sum(s, 'pgwitness_connections_total', { outcome: 'aborted' }) === 1 && sum(s, 'pgwitness_connections_total', { outcome: 'cancel_request' }) === 1 &&
    sum(s, 'pgwitness_connections_active') === 4)
  t.equal(sum(s, 'pgwitness_connections_active'), 4, 'four sessions open')

  // Bytes of live sessions are visible before they end.
  const bytesBefore = table(s, 'pgwitness_bytes_total', ['direction'])
  t.ok(bytesBefore.client_to_server! > 0 && bytesBefore.server_to_client! > 0, 'live sessions counted')
  await dba.query('BEGIN') //                                           MISC ok
  await dba.query('CREATE ROLE pgw_metrics_probe') //                   ROLE ok
  await dba.query('DROP ROLE pgw_metrics_probe') //                     ROLE ok
  await dba.query('SELECT 1') //                                        READ ok
  await dba.query('COMMIT') //                                          MISC ok
  s = await scrape()
  const bytesLive = table(s, 'pgwitness_bytes_total', ['direction'])
  t.ok(bytesLive.client_to_server! > bytesBefore.client_to_server! && bytesLive.server_to_client! > bytesBefore.server_to_client!, 'and they grow while the session runs')

  for (const c of [...billing, dba]) await c.end()
  s = await until('every session to end', scrape, (s) => sum(s, 'pgwitness_connections_active') === 0)
  await f.proxy.audit.flush()
  const recs = readValidAuditLog(f.auditPath)

  // By hand.
  t.same(table(s, 'pgwitness_connections_total', ['outcome']), { admitted: 4, refused: 4, aborted: 1, cancel_request: 1 })
  t.same(table(s, 'pgwitness_sessions_total', ['policy_rule']), { 'billing-app': 3, dba: 1 })
  t.same(table(s, 'pgwitness_auth_failures_total', ['reason']), { token_malformed: 1, token_expired: 1, policy_no_match: 1, database_not_allowed: 1 })
  t.same(table(s, 'pgwitness_statements_total', ['class', 'status']), {
    'READ/ok': 3 * sessions + 1,
    'READ/error': sessions,
    'DDL/ok': sessions,
    'WRITE/ok': sessions,
    'NONE/error': sessions,
    'MISC_SET/denied': sessions,
    'FUNCTION/ok': sessions,
    'ROLE/ok': 2,
    'MISC/ok': 2,
  })
  t.equal(sum(s, 'pgwitness_statement_duration_seconds_count'), 8 * sessions + 5, 'one duration per statement')
  t.equal(sum(s, 'pgwitness_upstream_connect_seconds_count', { result: 'ok' }), 4)
  t.equal(sum(s, 'pgwitness_upstream_connect_seconds_count', { result: 'error' }), 0)

  // Against the audit log.
  const statements = recordsOfType(recs, 'statement')
  const fromAudit: Record<string, number> = {}
  for (const r of statements) {
    for (const cls of r.statement.classes.length > 0 ? r.statement.classes : ['NONE']) {
      const k = `${cls}/${r.outcome.status}`
      fromAudit[k] = (fromAudit[k] ?? 0) + 1
    }
  }
  t.same(table(s, 'pgwitness_statements_total', ['class', 'status']), fromAudit, 'statements_total = statement records by class and status')
  t.equal(sum(s, 'pgwitness_statement_duration_seconds_count'), statements.filter((r) => r.outcome.duration_us !== null).length)
  const durationSum = statements.reduce((a, r) => a + (r.outcome.duration_us ?? 0), 0) / 1e6
  t.ok(Math.abs(sum(s, 'pgwitness_statement_duration_seconds_sum') - durationSum) < 1e-6, 'duration sum = audit durations')
  const failures: Record<string, number> = {}
  for (const r of recordsOfType(recs, 'auth.failure')) failures[r.reason] = (failures[r.reason] ?? 0) + 1
  t.same(table(s, 'pgwitness_auth_failures_total', ['reason']), failures, 'auth_failures_total = auth.failure records by reason')
  const rules: Record<string, number> = {}
  for (const r of recordsOfType(recs, 'session.start')) rules[r.identity.policy_rule!] = (rules[r.identity.policy_rule!] ?? 0) + 1
  t.same(table(s, 'pgwitness_sessions_total', ['policy_rule']), rules, 'sessions_total = session.start records by rule')
  const ends = recordsOfType(recs, 'session.end')
  t.equal(ends.length, 4)
  t.same(table(s, 'pgwitness_bytes_total', ['direction']), {
    client_to_server: ends.reduce((a, r) => a + r.bytes_in, 0),
    server_to_client: ends.reduce((a, r) => a + r.bytes_out, 0),
  }, 'bytes_total = session.end byte counts')
  t.equal(sum(s, 'pgwitness_audit_records_total'), recs.length, `audit_records_total = lines in the audit log (${recs.length})`)
  t.equal(recs.length, 1 + 4 + 4 + (8 * sessions + 5) + 1 + 4, 'proxy.start, auth failures, session starts, statements, a transaction.end, session ends')

  // Audit I/O.
  s = await scrape()
  t.ok(sum(s, 'pgwitness_audit_write_seconds_count') > 0, 'audit writes timed')
  t.ok(sum(s, 'pgwitness_audit_fsync_seconds_count') > 0, 'audit fsyncs timed')
  t.equal(sum(s, 'pgwitness_audit_backlog_records'), 0, 'nothing queued after a flush')
  t.same(s.filter((x) => x.name === 'pgwitness_audit_sink_lag_records').map((x) => [x.labels.sink, x.value]), [['file', 0]])
  t.same(s.filter((x) => x.name === 'pgwitness_audit_delivery_errors_total').map((x) => [x.labels.sink, x.value]), [['file', 0]])
  t.same(table(s, 'pgwitness_jwks_refreshes_total', ['issuer', 'result']), {}, 'a jwks_file issuer fetches nothing')
})

t.test('/readyz follows the upstream (a second proxy in front of a TCP listener); JWKS refreshes; stop() closes the listener', async (t) => {
  const listener = net.createServer((s) => s.on('error', () => undefined))
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r))
  const upstreamPort = (listener.address() as net.AddressInfo).port
  const key = await signingKey('k1')
  const jwks = await startJwksServer(f.pki, [key.publicJwk])
  t.teardown(() => jwks.close())
  const dir = path.join(f.dir, 'second')
  const yaml = `
instance: second-proxy
listen: "127.0.0.1:0"
tls: { cert: ${f.pki.serverCert}, key: ${f.pki.serverKey} }
identity:
  jwt:
    - issuer: ${DEV_ISSUER}
      audience: ${DEV_AUDIENCE}
      jwks_url: ${jwks.url}
      jwks_ca: ${f.pki.caCert}
      jwks_min_refresh_interval: 100ms
      algorithms: [ES256]
upstream:
  host: 127.0.0.1
  port: ${upstreamPort}
  tls: { mode: disable }
  roles: { app: { password: x } }
policy:
  - name: any
    match: { issuer: ${DEV_ISSUER} }
    roles: [app]
    databases: [appdb]
audit:
  log: ${path.join(dir, 'audit.jsonl')}
metrics: { listen: "127.0.0.1:0" }
log: { level: ${process.env.PGW_TEST_LOG ?? 'warn'} }
`
  const config = parseConfig(yaml, { baseDir: dir, source: path.join(dir, 'pgwitness.yaml') })
  const proxy = await ProxyServer.start(config, pino({ level: config.log.level }, pino.destination(2)))
  t.teardown(() => proxy.stop())
  const port = proxy.metricsPort
  t.not(port, f.proxy.metricsPort, 'its own metrics listener')

  let r = await readyz(port)
  t.equal(r.status, 200, 'ready while the upstream listens')
  t.equal(r.body.status, 'ready')

  await new Promise<void>((res) => listener.close(() => res()))
  r = await until('/readyz to turn 503', () => readyz(port), (r) => r.status === 503)
  t.same(r.body.failed, ['upstream'], 'only the upstream check failed')
  t.match(r.body.checks.upstream, { ok: false, error: new RegExp(`127\\.0\\.0\\.1:${upstreamPort}.*ECONNREFUSED`) })
  t.same(r.body.checks.audit_log, { ok: true })
  t.equal((await fetch(`${base(port)}/healthz`)).status, 200, 'still alive')

  await new Promise<void>((res) => listener.listen(upstreamPort, '127.0.0.1', res))
  r = await until('/readyz to turn 200 again', () => readyz(port), (r) => r.status === 200)
  t.equal(r.body.status, 'ready', 'ready again once the upstream is back')
  await new Promise<void>((res) => listener.close(() => res()))

  // JWKS: fetched once at start; a token with an unknown kid while the endpoint fails adds a failed refresh.
  let s = await until('the start-up JWKS fetch', () => scrape(port), (s) => sum(s, 'pgwitness_jwks_refreshes_total', { result: 'ok' }) === 1)
  t.same(table(s, 'pgwitness_jwks_refreshes_total', ['issuer', 'result']), { [`${DEV_ISSUER}/ok`]: 1 })
  t.equal(sum(s, 'pgwitness_jwks_keys', { issuer: DEV_ISSUER }), 1)
  t.ok(sum(s, 'pgwitness_jwks_last_success_timestamp_seconds', { issuer: DEV_ISSUER }) > Date.now() / 1000 - 60)
  jwks.mode = 'error500'
  await sleep(150)
  const stranger = await signingKey('k2')
  const c = new pg.Client({
    host: '127.0.0.1', port: proxy.port, user: 'app', database: 'appdb', ssl: { rejectUnauthorized: false },
    password: await signToken(stranger, { iss: DEV_ISSUER, aud: DEV_AUDIENCE, sub: 'someone' }),
  })
  c.on('error', () => undefined)
  await t.rejects(c.connect(), 'unknown kid refused')
  s = await until('the failed refresh', () => scrape(port), (s) => sum(s, 'pgwitness_jwks_refreshes_total', { result: 'error' }) === 1)
  t.same(table(s, 'pgwitness_jwks_refreshes_total', ['issuer', 'result']), { [`${DEV_ISSUER}/ok`]: 1, [`${DEV_ISSUER}/error`]: 1 })
  t.same(table(s, 'pgwitness_auth_failures_total', ['reason']), { token_signature_invalid: 1 })

  // A metrics.listen address that is taken: the proxy does not start (and releases what it opened).
  const taken = { ...config, listen: { host: '127.0.0.1', port: 0 }, metrics: { listen: { host: '127.0.0.1', port: port! } }, audit: { ...config.audit, log: path.join(dir, 'audit-2.jsonl') } }
  await t.rejects(ProxyServer.start(taken, pino({ level: 'silent' })), /cannot listen on metrics\.listen 127\.0\.0\.1:\d+: .*EADDRINUSE/)

  await proxy.stop()
  await t.rejects(fetch(`${base(port)}/healthz`), 'stop() closes the metrics listener')
})

t.test('/readyz turns 503 when the fixture PostgreSQL stops; connecting then counts an upstream failure', async (t) => {
  await f.pg.stop()
  const r = await until('/readyz to turn 503', () => readyz(), (r) => r.status === 503)
  t.equal(r.body.status, 'unready')
  t.same(r.body.failed, ['upstream'])
  t.equal(r.body.checks.upstream!.ok, false)
  t.equal((await fetch(`${base(f.proxy.metricsPort)}/healthz`)).status, 200, '/healthz stays 200')

  const c = await tryConnect({ password: await f.token() })
  t.type(c, Error, 'refused without an upstream')
  const s = await until('the upstream failure', scrape, (s) => sum(s, 'pgwitness_auth_failures_total', { reason: 'upstream_unavailable' }) === 1)
  t.equal(sum(s, 'pgwitness_upstream_connect_seconds_count', { result: 'error' }), 1)
  t.equal(sum(s, 'pgwitness_connections_total', { outcome: 'refused' }), 5)
  t.equal(sum(s, 'pgwitness_connections_active'), 0)
  const recs: AuditRecord[] = readValidAuditLog(f.auditPath)
  t.ok(recs.length <= sum(s, 'pgwitness_audit_records_total'))
})
