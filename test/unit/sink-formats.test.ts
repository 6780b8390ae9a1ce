/**
 * What the sinks put on the wire, without a network: RFC 5424 messages with
 * octet-counting framing, the HTTP NDJSON bodies and their envelopes
 * (Splunk HEC, Elastic _bulk), _bulk item failures, Retry-After.
 */
import t from 'tap'
import { toOcsf } from '../../src/shipping/ocsf.js'
import { rendererFor } from '../../src/shipping/format.js'
import { elasticBulkFailure, envelopeLine, epochSecondsText, ndjsonBodies } from '../../src/shipping/http-body.js'
import { parseRetryAfter } from '../../src/shipping/http.js'
import { syslogFrame, syslogSeverity } from '../../src/shipping/syslog-message.js'
import type { FollowedRecord } from '../../src/shipping/types.js'
import type { AuditRecordBody } from '../../src/evidence/types.js'
import { bodiesOfEveryType, seal, statement } from '../helpers/sample-records.js'

const recs: FollowedRecord[] = seal(bodiesOfEveryType()).map((s) => ({ seq: s.record.chain.seq, line: s.line, record: s.record }))
const of = (type: string, nth = 0) => recs.filter((r) => r.record.type === type)[nth]!

t.test('formats: v1 is the log line byte for byte; ocsf is the OCSF event', async (tt) => {
  const r = of('statement')
  tt.equal(rendererFor('v1')(r), r.line)
  tt.same(JSON.parse(rendererFor('ocsf')(r)), JSON.parse(JSON.stringify(toOcsf(r.record))))
})

/** RFC 5424 header: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG */
const RFC5424 = /^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) - (.*)$/s

t.test('syslog: octet-counted RFC 5424 frames', async (tt) => {
  const body = statement('SELECT', "select 'ünïcødé ✓ 😀'") as AuditRecordBody
  const [sealed] = seal([body])
  const frame = syslogFrame(sealed!.record, sealed!.line, { facility: 10, hostname: 'db-proxy-1', procid: '4242' })
  const sp = frame.indexOf(0x20)
  const len = Number(frame.subarray(0, sp).toString('ascii'))
  tt.equal(len, frame.length - sp - 1, 'LEN counts the bytes (not characters) of MSG')
  const m = RFC5424.exec(frame.subarray(sp + 1).toString('utf8'))
  tt.ok(m, 'header shape')
  const [, pri, ts, host, app, procid, msgid, msg] = m!
  tt.equal(Number(pri), 10 * 8 + 6, 'authpriv.info')
  tt.equal(ts, sealed!.record.time)
  tt.equal(host, 'db-proxy-1')
  tt.equal(app, 'pgwitness')
  tt.equal(procid, '4242')
  tt.equal(msgid, 'statement')
  tt.equal(msg, sealed!.line, 'MSG is the record line, no BOM')

  tt.equal(syslogSeverity(of('auth.failure').record), 4, 'auth.failure: warning')
  tt.equal(syslogSeverity(of('statement', 2).record), 4, 'a denied statement: warning')
  tt.equal(syslogSeverity(of('statement', 3).record), 6, 'a failed statement: info')
  tt.equal(syslogSeverity(of('session.start').record), 6)
  const weird = syslogFrame(of('proxy.start').record, '{}', { facility: 16, hostname: 'bad host\n', procid: '' })
  const h = RFC5424.exec(weird.subarray(weird.indexOf(0x20) + 1).toString('utf8'))!
  tt.equal(h[1], String(16 * 8 + 6), 'local0.info')
  tt.equal(h[3], 'badhost', 'spaces and control characters are dropped from header fields')
  tt.equal(h[5], '-', 'an empty field is NILVALUE')
  tt.equal(h[6], 'proxy.start')
})

t.test('http envelopes', async (tt) => {
  const r = of('statement')
  const none = envelopeLine(r, r.line, { envelope: 'none', index: null })
  tt.equal(none, r.line + '\n')

  const hec = JSON.parse(envelopeLine(r, r.line, { envelope: 'splunk_hec', index: 'sec' }))
  tt.same(Object.keys(hec), ['time', 'host', 'source', 'sourcetype', 'index', 'event'])
  tt.equal(hec.host, 'pgw-test')
  tt.equal(hec.source, 'pgwitness')
  tt.equal(hec.sourcetype, 'pgwitness:audit')
  tt.equal(hec.index, 'sec')
  tt.same(hec.event, r.record)
  tt.ok(envelopeLine(r, r.line, { envelope: 'splunk_hec', index: null }).includes(`"event":${r.line}}`), 'the record text is embedded as is')
  tt.equal(epochSecondsText('2026-11-26T06:00:01.123456Z'), `${Date.UTC(2026, 10, 26, 6, 0, 1) / 1000}.123456`)
  tt.equal(epochSecondsText('2026-11-26T06:00:01Z'), `${Date.UTC(2026, 10, 26, 6, 0, 1) / 1000}.000000`)

  const bulk = envelopeLine(r, r.line, { envelope: 'elastic_bulk', index: 'audit-x' }).split('\n')
  tt.equal(bulk.length, 3, 'action line, document, trailing newline')
  tt.same(JSON.parse(bulk[0]!), { create: { _index: 'audit-x', _id: r.record.id } })
  tt.equal(bulk[1], r.line)
})

t.test('ndjson bodies are split by size, never inside a record', async (tt) => {
  const render = rendererFor('v1')
  const one = ndjsonBodies(recs, render, { envelope: 'none', index: null, maxBytes: 1 << 20 })
  tt.equal(one.length, 1)
  tt.same(one[0]!.toString('utf8').split('\n').filter(Boolean), recs.map((r) => r.line))
  const biggest = Math.max(...recs.map((r) => Buffer.byteLength(r.line) + 1))
  const many = ndjsonBodies(recs, render, { envelope: 'none', index: null, maxBytes: biggest * 2 })
  tt.ok(many.length > 1)
  for (const b of many) tt.ok(b.length <= biggest * 2)
  tt.same(many.flatMap((b) => b.toString('utf8').split('\n').filter(Boolean)), recs.map((r) => r.line), 'all records, in order')
  const tiny = ndjsonBodies(recs.slice(0, 3), render, { envelope: 'none', index: null, maxBytes: 10 })
  tt.equal(tiny.length, 3, 'a record larger than the limit is sent alone')
})

t.test('elastic _bulk responses: 409 conflicts are re-sends, other item errors fail the batch', async (tt) => {
  tt.equal(elasticBulkFailure('{"took":3,"errors":false,"items":[{"create":{"status":201}}]}'), null)
  tt.equal(elasticBulkFailure(JSON.stringify({ errors: true, items: [{ create: { status: 201 } }, { create: { status: 409, error: { type: 'version_conflict_engine_exception' } } }] })), null)
  tt.match(elasticBulkFailure(JSON.stringify({ errors: true, items: [{ create: { status: 400, error: { type: 'mapper_parsing_exception', reason: 'failed to parse' } } }, { create: { status: 429 } }] })),
    /2 document\(s\) not stored \(first: status 400 mapper_parsing_exception: failed to parse\)/)
  tt.match(elasticBulkFailure('<html>'), /not JSON/)
})

t.test('Retry-After: seconds or an HTTP date', async (tt) => {
  tt.equal(parseRetryAfter('3'), 3000)
  tt.equal(parseRetryAfter(['7']), 7000)
  const now = Date.UTC(2026, 0, 1, 0, 0, 0)
  tt.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:05 GMT', now), 5000)
  tt.equal(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now), 0, 'a date in the past: now')
  tt.equal(parseRetryAfter(undefined), null)
  tt.equal(parseRetryAfter('soon'), null)
})
