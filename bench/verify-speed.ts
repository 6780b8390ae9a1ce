/**
 * How fast `pgwitness verify` checks a hash-chained audit log.
 *
 *   npx tsx bench/verify-speed.ts [--records 500000] [--rounds 3] [--keep] [--file LOG]
 *
 * Writes a log of realistic records (per session: session.start, statements
 * of assorted sizes, some with bind parameters, session.end) sealed by the
 * same AuditChain the proxy uses (~1.7 kB per record, ~850 MB for 500,000),
 * then times verifyChain() over it `rounds` times. The file is in the page
 * cache after writing, so this measures the CPU cost (scan, hash, compare).
 * Prints, per round and best, records/s (wall clock) and CPU µs per record
 * (steadier when other work shares the machine). The goal (issue 5) is at
 * least 200,000 records/s.
 */
import { closeSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { AuditChain } from '../src/ledger/chain.js'
import { sessionEndRecord, sessionStartRecord, statementRecord, type SessionContext } from '../src/evidence/records.js'
import { verifyChain } from '../src/ledger/verify.js'
import type { ObservedStatement } from '../src/session/statement-tracker.js'
import { uuidv7 } from '../src/util/ids.js'

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '500000' },
    rounds: { type: 'string', default: '3' },
    keep: { type: 'boolean', default: false },
    /** Time an existing log instead of writing one (e.g. one kept with --keep). */
    file: { type: 'string' },
  },
})
const rounds = Number(values.rounds)
const dir = values.file === undefined ? mkdtempSync(path.join(os.tmpdir(), 'pgw-verify-bench-')) : null
const file = values.file ?? path.join(dir!, 'audit.jsonl')

function context(i: number): SessionContext {
  return {
    proxy: { instance: 'pgw-bench-1', version: '0.1.0' },
    connection: {
      id: uuidv7(),
      client: { address: `10.1.${i % 250}.${(i * 7) % 250}`, port: 40000 + (i % 20000) },
      tls: { version: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', client_cert_sha256: null },
    },
    session: { id: uuidv7(), started_at: '2026-11-26T05:38:42.123456Z', application_name: 'billing-worker' },
    identity: {
      method: 'jwt',
      subject: `spiffe://prod.example/ns/billing/sa/worker-${i % 17}`,
      issuer: 'https://kubernetes.default.svc.cluster.local',
      audience: ['pgwitness'],
      token_id: uuidv7(),
      token_expires_at: '2026-11-26T06:38:42.000000Z',
      spiffe_id: null,
      cert_sha256: null,
      claims: { 'kubernetes.io.namespace': 'billing', team: 'payments' },
      policy_rule: 'billing-app',
    },
    upstream: { host: 'db.internal', port: 5432, database: 'billing', role: 'app', backend_pid: 10000 + i, server_session_id: `6745a1b2.${(10000 + i).toString(16)}` },
  }
}

const TEXTS = [
  'SELECT id, customer_id, amount, currency, created_at FROM invoices WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 50',
  'UPDATE accounts SET balance = balance - $1 WHERE id = $2',
  'INSERT INTO ledger (account_id, delta, reason, created_at) VALUES ($1, $2, $3, now())',
  'BEGIN',
  'COMMIT',
  "SELECT c.relname, n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p','v','m') AND n.nspname !~ '^pg_' ORDER BY 2, 1",
]

function statement(i: number): ObservedStatement {
  const text = TEXTS[i % TEXTS.length]!
  const params = (text.match(/\$\d/g) ?? []).map((_, k) => ({ format: 'text' as const, value: String(i * 31 + k) }))
  const write = text.startsWith('UPDATE') || text.startsWith('INSERT')
  return {
    key: 0,
    protocol: params.length > 0 ? 'extended' : 'simple',
    text,
    textTruncated: false,
    parameters: params.length > 0 ? params : null,
    preparedName: params.length > 0 ? '' : null,
    portal: params.length > 0 ? '' : null,
    functionOid: null,
    command: text.split(' ')[0]!,
    classes: write ? ['WRITE'] : ['READ'],
    objects: text.includes('invoices') ? [{ type: 'table', schema: 'public', name: 'invoices' }] : write ? [{ type: 'table', schema: 'public', name: 'accounts' }] : [],
    node: null,
    seq: 1,
    split: 'parser', governedSettingChanged: false, textOrigin: null, policy: null,
    inTransaction: i % 3 === 0,
    transaction: { number: i, kind: i % 3 === 0 ? 'explicit' : 'autocommit' },
    suspended: false,
    portalRows: null,
    status: i % 97 === 0 ? 'error' : 'ok',
    commandTag: write ? 'UPDATE 1' : 'SELECT 50',
    rows: write ? 1 : 50,
    sqlstate: i % 97 === 0 ? '40001' : null,
    message: i % 97 === 0 ? 'could not serialize access due to concurrent update' : null,
    startedAtUs: 1_795_000_000_000_000 + i * 1000,
    durationUs: 300 + (i % 5000),
  }
}

// ---- write the log --------------------------------------------------------
function writeLog(total: number): void {
  const t0 = performance.now()
  const chain = new AuditChain()
  const fd = openSync(file, 'w', 0o600)
  let buf: string[] = []
  let written = 0
  let session = 0
  while (written < total) {
    const c = context(session++)
    const perSession = 20
    buf.push(chain.seal(sessionStartRecord(c)).line)
    written++
    for (let k = 0; k < perSession && written < total - 1; k++, written++) buf.push(chain.seal(statementRecord(c, { ...statement(written), seq: k + 1 })).line)
    if (written < total) {
      buf.push(chain.seal(sessionEndRecord(c, { reason: 'client_closed', detail: null, durationMs: 1234, statements: perSession, bytesIn: 4096, bytesOut: 65536 })).line)
      written++
    }
    if (buf.length >= 1000) {
      writeSync(fd, buf.join('\n') + '\n')
      buf = []
    }
  }
  if (buf.length > 0) writeSync(fd, buf.join('\n') + '\n')
  closeSync(fd)
  const s = (performance.now() - t0) / 1000
  console.log(`wrote ${total.toLocaleString('en')} records in ${s.toFixed(2)} s (${Math.round(total / s).toLocaleString('en')} records/s built, sealed and written)`)
}

if (values.file === undefined) writeLog(Number(values.records))
const size = statSync(file).size
let count = 0
const load0 = os.loadavg().map((l) => l.toFixed(1)).join(' ')

// ---- verify ---------------------------------------------------------------
// Wall-clock rate, and CPU time per record (steadier on a shared machine).
const fmt = (n: number) => Math.round(n).toLocaleString('en')
let bestRate = 0
let bestCpu = Infinity
for (let r = 1; r <= rounds; r++) {
  const c0 = process.cpuUsage()
  const v0 = performance.now()
  const result = await verifyChain([file])
  const s = (performance.now() - v0) / 1000
  const cpu = process.cpuUsage(c0)
  const cpuS = (cpu.user + cpu.system) / 1e6
  const total = result.records
  if (!result.ok) {
    console.error('verify failed:', result.failure)
    process.exitCode = 1
    break
  }
  count = total
  bestRate = Math.max(bestRate, total / s)
  bestCpu = Math.min(bestCpu, cpuS / total)
  console.log(`round ${r}: ${fmt(total)} records in ${s.toFixed(2)} s: ${fmt(total / s)} records/s, ${(size / 1e6 / s).toFixed(0)} MB/s; ` +
    `CPU ${cpuS.toFixed(2)} s = ${((cpuS / total) * 1e6).toFixed(2)} µs/record`)
}
console.log(`${file}: ${(size / 1e6).toFixed(1)} MB, ${fmt(count)} records, ${Math.round(size / Math.max(1, count))} bytes/record on average`)
console.log(`best: ${fmt(bestRate)} records/s wall-clock; ${(bestCpu * 1e6).toFixed(2)} µs CPU per record = ${fmt(1 / bestCpu)} records per CPU-second (goal: 200,000 records/s)`)
console.log(`on ${os.cpus()[0]?.model ?? '?'} ×${os.cpus().length}, node ${process.version}; load average before ${load0}, after ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`)
if (dir !== null) {
  if (values.keep) console.log(`kept ${file}`)
  else rmSync(dir, { recursive: true, force: true })
}
