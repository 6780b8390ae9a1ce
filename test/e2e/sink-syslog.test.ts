/**
 * Issue 5 item 7: syslog sinks (RFC 5424, octet-counting framing) over TCP
 * and over TLS (dev PKI, the receiver's CA configured as `ca`), against
 * local receivers the test stops and restarts while statements run. Every
 * record seq must arrive at each receiver (duplicates are allowed: TCP
 * syslog has no acknowledgement, so a batch is re-sent after a reconnect),
 * and every message must carry a valid RFC 5424 header.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { createDevPki } from '../../src/dev/pki.js'
import type { AuditRecord } from '../../src/evidence/types.js'
import { startFixture } from '../helpers/proxy.js'
import { endSession, readWholeLog, statementsThroughOutage, until } from '../helpers/sink-outage.js'
import { startSyslogReceiver, type SyslogReceiver } from '../helpers/syslog-receiver.js'

const pkiDir = mkdtempSync(path.join(os.tmpdir(), 'pgw-syslog-pki-'))
t.teardown(() => rmSync(pkiDir, { recursive: true, force: true }))
const pki = await createDevPki(pkiDir)
const tcp = await startSyslogReceiver()
const tlsRx = await startSyslogReceiver({ tls: { cert: readFileSync(pki.serverCert, 'utf8'), key: readFileSync(pki.serverKey, 'utf8') } })
t.teardown(async () => {
  await tcp.stop()
  await tlsRx.stop()
})

const f = await startFixture({
  auditYaml: `audit:
  log: audit/audit.jsonl
  durability: batched
  fsync_interval: 20ms
  sinks:
    - { type: syslog, name: siem-tcp, url: "tcp://127.0.0.1:${tcp.port}", hostname: pgw-host-1, max_backoff: 500ms }
    - { type: syslog, name: siem-tls, url: "tls://localhost:${tlsRx.port}", ca: ${JSON.stringify(pki.caCert)}, facility: local0, format: ocsf, max_backoff: 500ms }`,
})
t.teardown(async () => {
  await f.stop()
  rmSync(f.dir, { recursive: true, force: true })
})


/** RFC 5424: <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP STRUCTURED-DATA SP MSG */
const RFC5424 = /^<(\d{1,3})>1 (\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{1,6}Z) ([\x21-\x7e]{1,255}) ([\x21-\x7e]{1,48}) ([\x21-\x7e]{1,128}) ([\x21-\x7e]{1,32}) - (.*)$/s

interface Parsed {
  pri: number
  timestamp: string
  hostname: string
  app: string
  procid: string
  msgid: string
  seq: number
  body: Record<string, unknown>
}

function parse(msg: string): Parsed | null {
  const m = RFC5424.exec(msg)
  if (!m) return null
  const body = JSON.parse(m[7]!) as Record<string, unknown>
  const seq = (body.chain as { seq?: number } | undefined)?.seq ?? (body.metadata as { sequence?: number } | undefined)?.sequence
  return { pri: Number(m[1]), timestamp: m[2]!, hostname: m[3]!, app: m[4]!, procid: m[5]!, msgid: m[6]!, seq: seq ?? -1, body }
}

const seqsOf = (rx: SyslogReceiver) => new Set(rx.messages.map((m) => parse(m)?.seq ?? -1))

function allArrived(rx: SyslogReceiver): boolean {
  const have = seqsOf(rx)
  return readWholeLog(f.auditPath).records.every((r) => have.has(r.chain.seq))
}

/** Each receiver has every record's seq, and each message is a valid RFC 5424 message for its record. */
function check(tt: Test, rx: SyslogReceiver, o: { facility: number; hostname: string; format: 'v1' | 'ocsf' }, label: string): void {
  const records = new Map<number, AuditRecord>(readWholeLog(f.auditPath).records.map((r) => [r.chain.seq, r]))
  tt.same(rx.errors, [], `${label}: no framing errors`)
  const bad: string[] = []
  for (const msg of rx.messages) {
    const p = parse(msg)
    const rec = p ? records.get(p.seq) : undefined
    if (!p || !rec) {
      bad.push(`unparsable or unknown: ${msg.slice(0, 120)}`)
      continue
    }
    const severity = rec.type === 'auth.failure' || (rec.type === 'statement' && rec.outcome.status === 'denied') ? 4 : 6
    if (p.pri !== o.facility * 8 + severity) bad.push(`seq ${p.seq}: PRI ${p.pri}`)
    if (p.timestamp !== rec.time) bad.push(`seq ${p.seq}: TIMESTAMP ${p.timestamp} != ${rec.time}`)
    if (p.hostname !== o.hostname) bad.push(`seq ${p.seq}: HOSTNAME ${p.hostname}`)
    if (p.app !== 'pgwitness') bad.push(`seq ${p.seq}: APP-NAME ${p.app}`)
    if (p.procid !== String(process.pid)) bad.push(`seq ${p.seq}: PROCID ${p.procid}`)
    if (p.msgid !== rec.type) bad.push(`seq ${p.seq}: MSGID ${p.msgid}`)
    if (o.format === 'v1' && JSON.stringify(p.body) !== JSON.stringify(rec)) bad.push(`seq ${p.seq}: MSG is not the record`)
    if (o.format === 'ocsf' && ((p.body.metadata as { uid?: string }).uid !== rec.id || typeof p.body.class_uid !== 'number')) bad.push(`seq ${p.seq}: MSG is not the OCSF event of the record`)
  }
  tt.same(bad, [], `${label}: every message has a valid RFC 5424 header for its record`)
  const have = seqsOf(rx)
  const missing = [...records.keys()].filter((s) => !have.has(s))
  tt.same(missing, [], `${label}: every record seq arrived (${rx.messages.length} messages for ${records.size} records)`)
}

t.test('every record reaches both receivers through an outage', async (tt) => {
  const c = await f.client()
  for (let i = 0; i < 15; i++) await c.query('select $1::int', [i])
  await c.query('select * from no_such_table').catch(() => undefined)
  await until('first records at both receivers', () => allArrived(tcp) && allArrived(tlsRx))

  await statementsThroughOutage(c, {
    total: 60, downAt: 20, upAt: 40,
    down: async () => {
      await tcp.stop()
      await tlsRx.stop()
    },
    up: async () => {
      await tcp.start()
      await tlsRx.start()
    },
  })
  // An auth failure is a warning.
  await f.client({ token: 'not-a-token' }).then((x) => x.end(), () => undefined)
  await endSession(c, f.auditPath)
  await until('all records at both receivers', () => allArrived(tcp) && allArrived(tlsRx))
  tt.ok(readWholeLog(f.auditPath).records.some((r) => r.type === 'auth.failure'), 'the log has an auth.failure')
  check(tt, tcp, { facility: 10, hostname: 'pgw-host-1', format: 'v1' }, 'tcp (authpriv, v1)')
  check(tt, tlsRx, { facility: 16, hostname: os.hostname(), format: 'ocsf' }, 'tls (local0, ocsf)')
})
