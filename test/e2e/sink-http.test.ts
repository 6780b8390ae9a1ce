/**
 * Issue 5 items 7 and 8: HTTP sinks (batch POST of NDJSON) against a local
 * receiver that fails with 503 (with and without Retry-After) and 401 for a
 * while, and is then closed mid-stream and started again. Three sinks: raw
 * NDJSON of v1 records with configured headers, Splunk HEC envelopes, and
 * Elastic _bulk of OCSF events. Every record must arrive at each (duplicates
 * allowed), in well-formed bodies; OCSF events carry the attributes OCSF
 * requires.
 */
import { rmSync } from 'node:fs'
import t from 'tap'
import type { AuditRecord } from '../../src/evidence/types.js'
import { startHttpReceiver, type ReceivedRequest } from '../helpers/http-receiver.js'
import { startFixture } from '../helpers/proxy.js'
import { endSession, readWholeLog, statementsThroughOutage, until } from '../helpers/sink-outage.js'

const TOKEN = 'Bearer sink-test-' + Math.random().toString(36).slice(2)
process.env.PGW_TEST_SIEM_TOKEN = TOKEN
const rx = await startHttpReceiver()
t.teardown(() => rx.stop())

const RAW = '/ingest'
const HEC = '/services/collector/event'
const BULK = '/audit/_bulk'
const f = await startFixture({
  auditYaml: `audit:
  log: audit/audit.jsonl
  durability: batched
  fsync_interval: 20ms
  rotate: { max_size: 16KiB }
  sinks:
    - type: http
      name: raw
      url: "http://127.0.0.1:${rx.port}${RAW}"
      headers: { Authorization: "\${env:PGW_TEST_SIEM_TOKEN}", X-Tenant: soc }
      batch_size: 20
      max_backoff: 300ms
      timeout: 2s
    - { type: http, name: hec, url: "http://127.0.0.1:${rx.port}${HEC}", envelope: splunk_hec, max_backoff: 300ms, timeout: 2s }
    - { type: http, name: bulk, url: "http://127.0.0.1:${rx.port}${BULK}", envelope: elastic_bulk, index: pgw-audit, format: ocsf, batch_bytes: 4KiB, max_backoff: 300ms, timeout: 2s }`,
})
t.teardown(async () => {
  await f.stop()
  rmSync(f.dir, { recursive: true, force: true })
})


const ok = (path: string) => rx.requests.filter((r) => r.path === path && r.status === 200)
const lines = (r: ReceivedRequest) => r.body.split('\n').slice(0, -1)

/** The seqs each path has received in answered-200 requests. */
function seqs(path: string): Set<number> {
  const out = new Set<number>()
  for (const r of ok(path)) {
    const ls = lines(r)
    if (path === RAW) for (const l of ls) out.add((JSON.parse(l) as AuditRecord).chain.seq)
    if (path === HEC) for (const l of ls) out.add((JSON.parse(l) as { event: AuditRecord }).event.chain.seq)
    if (path === BULK) for (let i = 1; i < ls.length; i += 2) out.add((JSON.parse(ls[i]!) as { metadata: { sequence: number } }).metadata.sequence)
  }
  return out
}

const everywhere = () => {
  const log = readWholeLog(f.auditPath).records
  return [RAW, HEC, BULK].every((p) => {
    const have = seqs(p)
    return log.every((r) => have.has(r.chain.seq))
  })
}

t.test('every record arrives through 503s, a 401 and a receiver outage', async (tt) => {
  const c = await f.client()
  for (let i = 0; i < 10; i++) await c.query('select $1::int', [i])
  await until('first records at every path', everywhere)

  // Failures: 503 with Retry-After on the raw path, 503 without on _bulk, 401 (a config problem: still retried) on HEC.
  rx.failures.set(RAW, [{ status: 503, retryAfter: '2' }, { status: 503, retryAfter: '1' }])
  rx.failures.set(BULK, [{ status: 503 }, { status: 502 }, { status: 429 }])
  rx.failures.set(HEC, [{ status: 401 }])
  for (let i = 0; i < 10; i++) await c.query('select 2')
  await until('records after the failures', everywhere)

  // Retry-After honoured: the retry after a "Retry-After: 2" came no sooner (the backoff alone would be under 300 ms).
  const raw = rx.requests.filter((r) => r.path === RAW)
  const first503 = raw.findIndex((r) => r.status === 503)
  tt.ok(first503 >= 0, 'the raw sink got a 503')
  tt.ok(raw[first503 + 1]!.at - raw[first503]!.at >= 1900, `retried no sooner than Retry-After (${raw[first503 + 1]!.at - raw[first503]!.at} ms)`)
  tt.ok(rx.requests.some((r) => r.path === HEC && r.status === 401), 'HEC got a 401 and the batch was retried')

  // The receiver goes away mid-stream and comes back.
  await statementsThroughOutage(c, { total: 50, downAt: 15, upAt: 35, down: () => rx.stop(), up: () => rx.start() })
  await endSession(c, f.auditPath)
  await until('all records at every path', everywhere)
  const log = readWholeLog(f.auditPath).records
  for (const p of [RAW, HEC, BULK]) tt.equal(log.filter((r) => !seqs(p).has(r.chain.seq)).length, 0, `${p}: every one of ${log.length} records arrived`)
})

t.test('bodies and headers', async (tt) => {
  const log = readWholeLog(f.auditPath).records
  const bySeq = new Map(log.map((r) => [r.chain.seq, r]))
  tt.ok(rx.requests.length > 0 && rx.requests.every((r) => r.headers['content-type'] === 'application/x-ndjson'), 'NDJSON content type')
  tt.ok(rx.requests.every((r) => r.body.endsWith('\n') && !r.body.includes('\n\n')), 'one record per line, newline-terminated')
  const raw = ok(RAW)
  tt.ok(raw.every((r) => r.headers.authorization === TOKEN && r.headers['x-tenant'] === 'soc'), 'configured headers sent (the token from ${env:})')
  tt.ok(raw.every((r) => lines(r).length <= 20), 'batch_size respected')
  tt.ok(raw.every((r) => lines(r).every((l) => {
    const rec = JSON.parse(l) as AuditRecord
    return JSON.stringify(rec) === JSON.stringify(bySeq.get(rec.chain.seq))
  })), 'raw lines are the v1 records')

  let hecOk = true
  for (const r of ok(HEC)) {
    for (const l of lines(r)) {
      const e = JSON.parse(l) as { time: number; host: string; source: string; sourcetype: string; event: AuditRecord }
      const rec = bySeq.get(e.event.chain.seq)!
      hecOk &&= e.source === 'pgwitness' && e.sourcetype === 'pgwitness:audit' && e.host === 'test-proxy' &&
        typeof e.time === 'number' && Math.abs(e.time * 1000 - Date.parse(rec.time.slice(0, 23) + 'Z')) < 1 && JSON.stringify(e.event) === JSON.stringify(rec)
    }
  }
  tt.ok(hecOk, 'Splunk HEC envelopes: time, host, source, sourcetype, event = the record')

  const bulk = ok(BULK)
  tt.ok(bulk.every((r) => Buffer.byteLength(r.body) <= 4096 || lines(r).length === 2), 'batch_bytes respected (a larger record alone)')
  const problems: string[] = []
  for (const r of bulk) {
    const ls = lines(r)
    if (ls.length % 2 !== 0) problems.push('odd number of _bulk lines')
    for (let i = 0; i < ls.length; i += 2) {
      const action = JSON.parse(ls[i]!) as { create?: { _index: string; _id: string } }
      const ev = JSON.parse(ls[i + 1]!) as Record<string, unknown> & { metadata: { version: string; product: { name: string }; uid: string; sequence: number } }
      const rec = bySeq.get(ev.metadata.sequence)
      if (!action.create || action.create._index !== 'pgw-audit' || action.create._id !== rec?.id) problems.push(`bad action line ${ls[i]}`)
      for (const k of ['class_uid', 'category_uid', 'activity_id', 'type_uid', 'time', 'severity_id']) {
        if (typeof ev[k] !== 'number') problems.push(`seq ${ev.metadata.sequence}: ${k} missing`)
      }
      if (ev.type_uid !== (ev.class_uid as number) * 100 + (ev.activity_id as number)) problems.push(`seq ${ev.metadata.sequence}: type_uid`)
      if (!ev.metadata.version || ev.metadata.product?.name !== 'pgwitness' || ev.metadata.uid !== rec?.id) problems.push(`seq ${ev.metadata.sequence}: metadata`)
      const expectClass = rec?.type === 'statement' ? 6005 : rec?.type.startsWith('session.') || rec?.type === 'auth.failure' ? 3002 : rec?.type.startsWith('proxy.') ? 6002 : 0
      if (ev.class_uid !== expectClass) problems.push(`seq ${ev.metadata.sequence}: class_uid ${String(ev.class_uid)} for ${rec?.type}`)
    }
  }
  tt.same(problems, [], 'Elastic _bulk: create actions with the record id, OCSF documents with the required attributes')
  tt.ok(rx.requests.some((r) => r.path === BULK && r.status === 200 && r.body.length > 0), '_bulk received')
})
