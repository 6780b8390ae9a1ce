/**
 * Issue 5 item 7: the NATS JetStream sink against a real nats-server the test
 * starts. Statements run through the proxy (whose log rotates every 16 KiB)
 * while the server is killed (SIGKILL) and started again on the same store;
 * then the proxy itself is restarted. Every record of the audit log must be in the stream exactly
 * once (JetStream de-duplicates by message id = record id), as the log line
 * itself (format v1), and the sink's cursor must resume where it stopped.
 */
import { readFileSync, rmSync } from 'node:fs'
import path from 'node:path'
import type { StoredMsg } from 'nats'
import pg from 'pg'
import pino from 'pino'
import t, { type Test } from 'tap'
import { ProxyServer } from '../../src/server.js'
import type { AuditRecord } from '../../src/evidence/types.js'
import { listLogFiles } from '../../src/ledger/log-files.js'
import { parseExposition, sum } from '../helpers/metrics.js'
import { startNatsServer, streamCount, streamMessages } from '../helpers/nats-server.js'
import { startFixture } from '../helpers/proxy.js'
import { endSession, readWholeLog, statementsThroughOutage, until } from '../helpers/sink-outage.js'

const STREAM = 'PGW_AUDIT'
const nats = await startNatsServer()
t.teardown(() => nats.dispose())

const f = await startFixture({
  auditYaml: `audit:
  log: audit/audit.jsonl
  durability: batched
  fsync_interval: 20ms
  rotate: { max_size: 16KiB }
  sinks:
    - { type: nats, url: "${nats.url}", subject: pgw.audit.test, stream: ${STREAM}, timeout: 1s, max_backoff: 1s, drain_timeout: 15s }`,
})
let proxy: ProxyServer = f.proxy
t.teardown(async () => {
  await f.stop()
  await proxy.stop()
  rmSync(f.dir, { recursive: true, force: true })
})

async function client(): Promise<pg.Client> {
  const c = new pg.Client({
    host: '127.0.0.1', port: proxy.port, user: 'app', database: 'appdb',
    password: await f.token(), ssl: { rejectUnauthorized: false }, application_name: 'sink-nats-test',
  })
  c.on('error', () => undefined)
  await c.connect()
  return c
}

/** Every record of the log is in the stream exactly once, as its log line. */
async function checkStream(tt: Test, label: string): Promise<void> {
  // The log may still grow (a record is written just after its statement answers): compare once it holds still.
  let lines: string[] = []
  let records: AuditRecord[] = []
  let msgs: StoredMsg[] = []
  for (let i = 0; ; i++) {
    ;({ lines, records } = readWholeLog(f.auditPath))
    await until(`${label}: the stream holds all ${records.length} records`, async () => (await streamCount(nats.url, STREAM)) >= records.length)
    msgs = await streamMessages(nats.url, STREAM)
    if (readWholeLog(f.auditPath).records.length === records.length || i >= 20) break
  }
  const ids = msgs.map((m) => m.header?.get('Nats-Msg-Id') ?? '')
  tt.equal(msgs.length, records.length, `${label}: as many messages as records in the log`)
  tt.equal(new Set(ids).size, ids.length, `${label}: each message id once`)
  tt.same([...ids].sort(), records.map((r) => r.id).sort(), `${label}: the ids are the record ids`)
  const byId = new Map(msgs.map((m) => [m.header?.get('Nats-Msg-Id'), new TextDecoder().decode(m.data)]))
  tt.ok(records.every((r, i) => byId.get(r.id) === lines[i]), `${label}: each message is the log line (format v1)`)
  tt.ok(msgs.every((m, i) => i === 0 || Number(m.header?.get('Pgwitness-Seq')) > Number(msgs[i - 1]!.header?.get('Pgwitness-Seq'))), `${label}: in chain order`)
}

t.test('records reach JetStream once each, through a NATS outage', async (tt) => {
  const c = await client()
  for (let i = 0; i < 20; i++) await c.query('select $1::int as i', [i])
  await checkStream(tt, 'before the outage')

  // Statements go on while the server is killed (a crash) and restarted on the same store.
  await statementsThroughOutage(c, {
    total: 60, downAt: 20, upAt: 40,
    down: () => nats.stop('SIGKILL'),
    // The proxy relays regardless; the sink's lag grows and its errors count.
    whileDown: () => until('sink lag and errors reported', async () => {
      const s = parseExposition(await proxy.metrics.exposition())
      return sum(s, 'pgwitness_audit_sink_lag_records', { sink: 'nats' }) > 0 && sum(s, 'pgwitness_audit_delivery_errors_total', { sink: 'nats' }) > 0
    }),
    up: () => nats.start(),
  })
  await endSession(c, f.auditPath)
  await checkStream(tt, 'after the outage')
  await until('lag back to 0', async () => sum(parseExposition(await proxy.metrics.exposition()), 'pgwitness_audit_sink_lag_records', { sink: 'nats' }) === 0)
  const s = parseExposition(await proxy.metrics.exposition())
  tt.ok(sum(s, 'pgwitness_audit_sink_delivered_total', { sink: 'nats' }) >= readWholeLog(f.auditPath).records.length, 'delivered counter')
  tt.ok(listLogFiles(f.auditPath).length > 2, 'the log rotated meanwhile')
})

t.test('a restarted proxy resumes from the cursor without loss', async (tt) => {
  await proxy.stop()
  const { records } = readWholeLog(f.auditPath)
  const cursor = JSON.parse(readFileSync(path.join(f.dir, 'audit', '.cursors', 'nats.json'), 'utf8')) as { seq: number; hash: string }
  const last = records[records.length - 1]!
  tt.same({ seq: cursor.seq, hash: cursor.hash }, { seq: last.chain.seq, hash: last.chain.hash }, 'at shutdown the cursor reached the last record (proxy.stop included)')

  // Records written while no proxy runs a shipper (none here) and after the restart must all arrive.
  proxy = await ProxyServer.start(f.config, pino({ level: 'warn' }, pino.destination(2)))
  const c = await client()
  for (let i = 0; i < 10; i++) await c.query('select 1')
  await endSession(c, f.auditPath)
  await checkStream(tt, 'after the proxy restart')
})
