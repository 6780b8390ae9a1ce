/**
 * Issue 6 item 1 (metrics): label handling of PrometheusMetrics, the
 * scrape-time counters (statements, bytes, audit records, JWKS), and the
 * readiness building blocks — without a proxy.
 */
import t from 'tap'
import net from 'node:net'
import type { JwksStats } from '../../src/identity/jwks.js'
import { evaluateReadiness, tcpConnect, TcpProbe } from '../../src/metrics/readiness.js'
import {
  authFailureLabel,
  PrometheusMetrics,
  statementCell,
  STATEMENT_CLASS_LABELS,
  STATEMENT_STATUS_LABELS,
} from '../../src/metrics/registry.js'
import type { AuditRecord, AuditRecordBody } from '../../src/evidence/types.js'
import { parseExposition, sum, table, type Sample } from '../helpers/metrics.js'

async function scrape(m: PrometheusMetrics): Promise<Sample[]> {
  return parseExposition(await m.exposition())
}

t.test('every metric name has the pgwitness_ prefix; default process metrics are included', async (t) => {
  const m = new PrometheusMetrics()
  const own = new Set((await m.registry.getMetricsAsJSON()).map((x) => x.name))
  for (const name of own) t.match(name, /^pgwitness_[a-z_]+$/, name)
  for (const name of [
    'pgwitness_connections_active', 'pgwitness_connections_total', 'pgwitness_auth_failures_total', 'pgwitness_sessions_total',
    'pgwitness_statements_total', 'pgwitness_statement_duration_seconds', 'pgwitness_upstream_connect_seconds', 'pgwitness_bytes_total',
    'pgwitness_audit_records_total', 'pgwitness_audit_write_seconds', 'pgwitness_audit_fsync_seconds', 'pgwitness_audit_backlog_records',
    'pgwitness_audit_sink_lag_records', 'pgwitness_audit_sink_lag_seconds', 'pgwitness_audit_delivery_errors_total', 'pgwitness_jwks_refreshes_total',
  ]) t.ok(own.has(name), `registers ${name}`)
  const text = await m.exposition()
  t.match(text, /^process_cpu_user_seconds_total /m, 'default process metrics')
  t.match(text, /^nodejs_heap_size_total_bytes /m, 'default nodejs metrics')
  t.match(m.contentType, /^text\/plain; version=0\.0\.4/)
  // Two proxies in one process: each has its own registry, and both expose the process metrics.
  const m2 = new PrometheusMetrics()
  m2.connectionOpened()
  t.equal(sum(await scrape(m), 'pgwitness_connections_active'), 0, 'registries are per instance')
  t.equal(sum(await scrape(m2), 'pgwitness_connections_active'), 1)
  t.match(await m2.exposition(), /^process_cpu_user_seconds_total /m)
})

t.test('connection outcomes start at 0; active goes up and down', async (t) => {
  const m = new PrometheusMetrics()
  let s = await scrape(m)
  t.same(
    s.filter((x) => x.name === 'pgwitness_connections_total').map((x) => [x.labels.outcome, x.value]),
    [['admitted', 0], ['refused', 0], ['aborted', 0], ['cancel_request', 0], ['shutdown', 0]],
  )
  m.connectionOpened()
  m.connectionOpened()
  m.connectionOutcome('refused')
  m.connectionClosed()
  m.sessionStarted('billing-api')
  m.connectionOutcome('cancel_request')
  s = await scrape(m)
  t.equal(sum(s, 'pgwitness_connections_active'), 1)
  t.same(table(s, 'pgwitness_connections_total', ['outcome']), { admitted: 1, refused: 1, cancel_request: 1 })
  t.same(table(s, 'pgwitness_sessions_total', ['policy_rule']), { 'billing-api': 1 })
})

t.test('auth failure reasons: known reasons as they are, anything else as "other"', async (t) => {
  t.equal(authFailureLabel('token_expired'), 'token_expired')
  t.equal(authFailureLabel('upstream_unavailable'), 'upstream_unavailable')
  t.equal(authFailureLabel('constructor'), 'other', 'no prototype keys')
  t.equal(authFailureLabel('__proto__'), 'other')
  t.equal(authFailureLabel('x'.repeat(500)), 'other')
  const m = new PrometheusMetrics()
  m.authFailure('token_expired')
  m.authFailure('token_expired')
  m.authFailure('policy_no_match')
  m.authFailure('something new')
  m.authFailure('toString')
  t.same(table(await scrape(m), 'pgwitness_auth_failures_total', ['reason']), { token_expired: 2, policy_no_match: 1, other: 2 })
})

t.test('policy rule names with quotes, backslashes and newlines are escaped in the exposition', async (t) => {
  const m = new PrometheusMetrics()
  const odd = 'rule "a"\\b\nc'
  m.sessionStarted(odd)
  m.sessionStarted(odd)
  m.sessionStarted('plain')
  const text = await m.exposition()
  t.ok(text.includes('policy_rule="rule \\"a\\"\\\\b\\nc"'), 'escaped on the wire')
  t.same(table(parseExposition(text), 'pgwitness_sessions_total', ['policy_rule']), { [odd]: 2, plain: 1 }, 'and read back unchanged')
})

t.test('statements: one increment per class, NONE without classes, OTHER/other for unexpected values', async (t) => {
  t.equal(STATEMENT_CLASS_LABELS.length * STATEMENT_STATUS_LABELS.length, 60)
  const cells = new Set<number>()
  for (const c of [...STATEMENT_CLASS_LABELS, null]) for (const s of STATEMENT_STATUS_LABELS) cells.add(statementCell(c, s))
  t.equal(cells.size, 60, 'every (class, status) has its own cell')
  t.equal(statementCell(null, 'ok'), statementCell('NONE', 'ok'))
  t.equal(statementCell('SOMETHING', 'ok'), statementCell('OTHER', 'ok'))
  t.equal(statementCell('READ', 'weird'), statementCell('READ', 'other'))

  const m = new PrometheusMetrics()
  let s = await scrape(m)
  t.same(table(s, 'pgwitness_statements_total', ['class', 'status']), {}, 'no series before the first statement')
  m.statement(['READ'], 'ok', 1500)
  m.statement(['READ', 'FUNCTION'], 'ok', 20)
  m.statement(['READ', 'WRITE'], 'error', 250_000)
  m.statement([], 'error', 10)
  m.statement(['MISC_SET'], 'denied', 100)
  m.statement(['DDL'], 'unknown', null)
  m.statement(['NEWCLASS'], 'ok', 5)
  s = await scrape(m)
  t.same(table(s, 'pgwitness_statements_total', ['class', 'status']), {
    'READ/ok': 2, 'FUNCTION/ok': 1, 'READ/error': 1, 'WRITE/error': 1, 'NONE/error': 1, 'MISC_SET/denied': 1, 'DDL/unknown': 1, 'OTHER/ok': 1,
  })
  t.equal(sum(s, 'pgwitness_statement_duration_seconds_count'), 6, 'durations observed once per statement, unknown ones skipped')
  t.ok(Math.abs(sum(s, 'pgwitness_statement_duration_seconds_sum') - (1500 + 20 + 250_000 + 10 + 100 + 5) / 1e6) < 1e-9, 'duration sum in seconds')
  t.equal(sum(s, 'pgwitness_statement_duration_seconds_bucket', { le: '0.001' }), 4, 'microseconds are converted to seconds')
  t.equal(sum(s, 'pgwitness_statement_duration_seconds_bucket', { le: '0.25' }), 6)

  // Counters only grow between scrapes, by exactly what happened in between.
  m.statement(['READ'], 'ok', 1)
  s = await scrape(m)
  t.equal(sum(s, 'pgwitness_statements_total', { class: 'READ', status: 'ok' }), 3)
  s = await scrape(m)
  t.equal(sum(s, 'pgwitness_statements_total', { class: 'READ', status: 'ok' }), 3, 'a scrape with nothing new reports the same')
})

t.test('bytes: live relays are read at scrape time, ended ones are folded in once', async (t) => {
  const m = new PrometheusMetrics()
  const a = { bytesIn: 0, bytesOut: 0 }
  const b = { bytesIn: 0, bytesOut: 0 }
  m.relayStarted(a)
  m.relayStarted(b)
  a.bytesIn = 100
  a.bytesOut = 1000
  b.bytesIn = 7
  let s = await scrape(m)
  t.same(table(s, 'pgwitness_bytes_total', ['direction']), { client_to_server: 107, server_to_client: 1000 })
  a.bytesIn = 150
  m.relayEnded(a)
  m.relayEnded(a)
  a.bytesIn = 99999 // no longer read
  b.bytesOut = 3
  m.bytes('client_to_server', 5)
  s = await scrape(m)
  t.same(table(s, 'pgwitness_bytes_total', ['direction']), { client_to_server: 162, server_to_client: 1003 })
  m.relayEnded(b)
  s = await scrape(m)
  t.same(table(s, 'pgwitness_bytes_total', ['direction']), { client_to_server: 162, server_to_client: 1003 }, 'ending moves counts, it does not add them twice')
})

t.test('upstream connect timing by result', async (t) => {
  const m = new PrometheusMetrics()
  t.equal(await m.timeUpstreamConnect(async () => 42), 42)
  await t.rejects(m.timeUpstreamConnect(async () => { throw new Error('refused') }), /refused/)
  const s = await scrape(m)
  t.equal(sum(s, 'pgwitness_upstream_connect_seconds_count', { result: 'ok' }), 1)
  t.equal(sum(s, 'pgwitness_upstream_connect_seconds_count', { result: 'error' }), 1)
})

t.test('audit: records counted at append, write/fsync timing, errors and lag per sink, backlog', async (t) => {
  const m = new PrometheusMetrics()
  const appended: AuditRecordBody[] = []
  const sink = m.meterAudit({ append: (r) => appended.push(r), flush: async () => undefined, close: async () => undefined })
  const obs = m.auditObserver('file')
  m.watchSink('file')
  m.watchSink('nats', { lagRecords: () => 12, lagSeconds: () => 3.5 })
  let backlog = 4
  m.watchAuditLog({ get backlog() { return backlog } })
  let s = await scrape(m)
  t.equal(sum(s, 'pgwitness_audit_records_total'), 0)
  t.same(s.filter((x) => x.name === 'pgwitness_audit_delivery_errors_total').map((x) => [x.labels.sink, x.value]), [['file', 0]], 'errors start at 0')
  sink.append({ type: 'proxy.start' } as unknown as AuditRecord)
  sink.append({ type: 'statement' } as unknown as AuditRecord)
  t.equal(appended.length, 2, 'records pass through')
  obs.written(2, 0.0003)
  obs.synced(0.002)
  obs.synced(0.004)
  obs.failed()
  backlog = 0
  s = await scrape(m)
  t.equal(sum(s, 'pgwitness_audit_records_total'), 2)
  t.equal(sum(s, 'pgwitness_audit_write_seconds_count'), 1)
  t.equal(sum(s, 'pgwitness_audit_fsync_seconds_count'), 2)
  t.equal(sum(s, 'pgwitness_audit_delivery_errors_total', { sink: 'file' }), 1)
  t.equal(sum(s, 'pgwitness_audit_backlog_records'), 0)
  t.same(table(s, 'pgwitness_audit_sink_lag_records', ['sink']), { nats: 12 }, 'file lag is 0')
  t.equal(s.filter((x) => x.name === 'pgwitness_audit_sink_lag_records').length, 2, 'one series per sink')
  t.same(table(s, 'pgwitness_audit_sink_lag_seconds', ['sink']), { nats: 3.5 })
})

t.test('JWKS refreshes from the verifier stats at scrape time; never decreasing', async (t) => {
  const m = new PrometheusMetrics()
  const stats: Record<string, JwksStats> = {}
  m.watchJwks(() => stats)
  t.same(table(await scrape(m), 'pgwitness_jwks_refreshes_total', ['issuer', 'result']), {}, 'no jwks_url issuers, no series')
  stats['https://idp.example.com'] = { refreshes: 3, failures: 1, lastError: null, lastSuccessAt: 1_700_000_000_000, keys: 2, retiredKeys: 0 }
  let s = await scrape(m)
  t.same(table(s, 'pgwitness_jwks_refreshes_total', ['issuer', 'result']), { 'https://idp.example.com/ok': 2, 'https://idp.example.com/error': 1 })
  t.equal(sum(s, 'pgwitness_jwks_keys', { issuer: 'https://idp.example.com' }), 2)
  t.equal(sum(s, 'pgwitness_jwks_last_success_timestamp_seconds'), 1_700_000_000)
  // A fetch in flight at scrape time counts as ok; if it then fails, ok is not taken back.
  stats['https://idp.example.com'] = { ...stats['https://idp.example.com']!, refreshes: 4 }
  s = await scrape(m)
  t.equal(sum(s, 'pgwitness_jwks_refreshes_total', { result: 'ok' }), 3)
  stats['https://idp.example.com'] = { ...stats['https://idp.example.com']!, failures: 2 }
  s = await scrape(m)
  t.equal(sum(s, 'pgwitness_jwks_refreshes_total', { result: 'ok' }), 3)
  t.equal(sum(s, 'pgwitness_jwks_refreshes_total', { result: 'error' }), 2)
})

t.test('readiness report: every check named, failed ones say why, a throwing check fails', async (t) => {
  const ok = await evaluateReadiness([{ name: 'a', check: () => null }, { name: 'b', check: async () => null }])
  t.same(ok, { ready: true, failed: [], checks: { a: { ok: true }, b: { ok: true } } })
  const bad = await evaluateReadiness([
    { name: 'a', check: () => null },
    { name: 'b', check: async () => 'b is down' },
    { name: 'c', check: () => { throw new Error('boom') } },
  ])
  t.equal(bad.ready, false)
  t.same(bad.failed, ['b', 'c'])
  t.same(bad.checks.b, { ok: false, error: 'b is down' })
  t.match(bad.checks.c, { ok: false, error: /boom/ })
})

t.test('TCP probe: reachable, refused, cached for a while, one attempt for concurrent callers', async (t) => {
  let accepted = 0
  const server = net.createServer((s) => {
    accepted++
    s.destroy()
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as net.AddressInfo).port
  t.equal(await tcpConnect({ host: '127.0.0.1', port }, 1000), null)

  const probe = new TcpProbe(() => ({ host: '127.0.0.1', port }), 1000, 300)
  const [a, b, c] = await Promise.all([probe.check(), probe.check(), probe.check()])
  t.same([a, b, c], [null, null, null])
  await new Promise((r) => setTimeout(r, 50))
  t.equal(accepted, 2, 'the three concurrent checks shared one connection')
  await new Promise<void>((r) => server.close(() => r()))
  t.equal(await probe.check(), null, 'still the cached answer')
  await new Promise((r) => setTimeout(r, 350))
  t.match(await probe.check(), /cannot connect to 127\.0\.0\.1:\d+: ECONNREFUSED/, 'checked again once the cache expired')
  t.match(await tcpConnect({ host: '127.0.0.1', port }, 1000), /ECONNREFUSED/)
})
