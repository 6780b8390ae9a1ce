/**
 * Write a realistic, valid audit log for `pgwitness report` (and verify):
 *
 *   npx tsx bench/report-log.ts --records 5000000 --out /tmp/audit.jsonl [--key-out /tmp/audit-signing]
 *
 * Records are built by the proxy's own record builders and sealed by the same
 * AuditChain, with a signed checkpoint every 10,000 records (key written to
 * --key-out.jwk / .pub.jwk), so `pgwitness verify --public-key` accepts the
 * log. Time runs from 2026-11-02T00:00Z, a record every ~50 ms. The mix, per
 * session: session.start, statements (reads of assorted sizes, writes,
 * explicit transactions with their transaction.end, now and then DDL with or
 * without a change ticket, a refused statement, a bulk read), session.end;
 * 30 workloads and 5 people, ~1 % of logins failing (one noisy source).
 */
import { closeSync, existsSync, mkdtempSync, openSync, writeSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { AuditChain } from '../src/ledger/chain.js'
import { loadCheckpointSigningKey, signCheckpoint, writeCheckpointKeyPair } from '../src/ledger/checkpoint.js'
import { authFailureRecord, checkpointRecord, sessionEndRecord, sessionStartRecord, statementRecord, transactionEndRecord, type SessionContext } from '../src/evidence/records.js'
import type { AuditRecordBody } from '../src/evidence/types.js'
import type { ObservedStatement } from '../src/session/statement-tracker.js'
import { uuidv7 } from '../src/util/ids.js'

const PROXY = { instance: 'pgw-bench-1', version: '0.1.0' }
const T0 = Date.parse('2026-11-02T00:00:00Z')
const STEP_MS = 50
const CHECKPOINT_EVERY = 10_000

const WORKLOADS = Array.from({ length: 30 }, (_, i) => ({ subject: `spiffe://prod.example/ns/${['billing', 'orders', 'search'][i % 3]}/sa/worker-${i}`, human: false }))
const PEOPLE = ['alice@example.com', 'bob@example.com', 'carol@example.com', 'dave@example.com', 'erin@example.com'].map((subject) => ({ subject, human: true }))

interface Shape { text: string; command: string; classes: string[]; objects: Array<{ type: string; schema: string | null; name: string }>; rows: number; tag: string }
const table = (schema: string, name: string) => [{ type: 'table', schema, name }]
const SHAPES: Shape[] = [
  { text: 'SELECT id, customer_id, amount, currency, created_at FROM billing.invoices WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 50', command: 'SELECT', classes: ['READ'], objects: table('billing', 'invoices'), rows: 50, tag: 'SELECT 50' },
  { text: 'UPDATE billing.accounts SET balance = balance - $1 WHERE id = $2', command: 'UPDATE', classes: ['WRITE'], objects: table('billing', 'accounts'), rows: 1, tag: 'UPDATE 1' },
  { text: 'INSERT INTO billing.ledger (account_id, delta, reason, created_at) VALUES ($1, $2, $3, now())', command: 'INSERT', classes: ['WRITE'], objects: table('billing', 'ledger'), rows: 1, tag: 'INSERT 0 1' },
  { text: 'SELECT email, phone FROM pii.customers WHERE id = $1', command: 'SELECT', classes: ['READ'], objects: table('pii', 'customers'), rows: 1, tag: 'SELECT 1' },
  { text: 'SELECT count(*) FROM orders.items WHERE order_id = $1', command: 'SELECT', classes: ['READ'], objects: table('orders', 'items'), rows: 1, tag: 'SELECT 1' },
]
const DDL: Shape = { text: 'ALTER TABLE billing.invoices ADD COLUMN note text', command: 'ALTER TABLE', classes: ['DDL'], objects: table('billing', 'invoices'), rows: 0, tag: 'ALTER TABLE' }
const BULK: Shape = { text: 'SELECT * FROM pii.customers', command: 'SELECT', classes: ['READ'], objects: table('pii', 'customers'), rows: 250_000, tag: 'SELECT 250000' }

/** A token (see token_id) is used from one pod address: tokens rotate, addresses with them. */
function sourceOf(n: number): string {
  return `10.1.${n % 35}.${Math.floor(n / 3000) % 250}`
}

function context(n: number): SessionContext {
  const who = n % 10 === 0 ? PEOPLE[(n / 10) % PEOPLE.length]! : WORKLOADS[n % WORKLOADS.length]!
  const ticket = who.human && n % 20 === 0 ? { change_ticket: `CHG-${1000 + (n % 900)}` } : {}
  return {
    proxy: PROXY,
    connection: { id: uuidv7(), client: { address: sourceOf(n), port: 40000 + (n % 20000) }, tls: { version: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', client_cert_sha256: null } },
    session: { id: uuidv7(), started_at: '', application_name: who.human ? 'psql' : 'worker' },
    identity: {
      method: 'jwt', subject: who.subject, issuer: who.human ? 'https://sso.example.com' : 'https://kubernetes.default.svc', audience: ['pgwitness'],
      // Workload tokens rotate every ~100 sessions of theirs.
      token_id: `tok-${who.subject.length}-${Math.floor(n / 3000)}-${n % 35}`, token_expires_at: '2026-12-31T00:00:00.000000Z',
      spiffe_id: who.human ? null : who.subject, cert_sha256: null, claims: { team: who.human ? 'dba' : 'payments', ...ticket }, policy_rule: who.human ? 'dba' : 'workloads',
    },
    upstream: { host: 'db.internal', port: 5432, database: who.human ? 'billing' : ['billing', 'orders'][n % 2]!, role: who.human ? 'dba' : 'app', backend_pid: 10000 + (n % 50000), server_session_id: `6745a1b2.${(10000 + n).toString(16)}` },
  }
}

function observed(shape: Shape, seq: number, tx: { number: number; kind: 'autocommit' | 'explicit' }, i: number, status: 'ok' | 'denied' = 'ok'): ObservedStatement {
  const params = (shape.text.match(/\$\d/g) ?? []).map((_, k) => ({ format: 'text' as const, value: String(i * 31 + k) }))
  return {
    key: 0, protocol: params.length > 0 ? 'extended' : 'simple', text: shape.text, textTruncated: false, parameters: params.length > 0 ? params : null,
    preparedName: params.length > 0 ? '' : null, portal: params.length > 0 ? '' : null, functionOid: null, command: shape.command, classes: shape.classes,
    objects: shape.objects, node: null, seq, split: 'parser', governedSettingChanged: false, textOrigin: null,
    inTransaction: tx.kind === 'explicit', transaction: tx, suspended: false, portalRows: null, status,
    commandTag: status === 'ok' ? shape.tag : null, rows: status === 'ok' ? shape.rows : null,
    sqlstate: status === 'denied' ? '42501' : null, message: status === 'denied' ? 'permission denied by pgwitness statement rule' : null,
    startedAtUs: (T0 + i * STEP_MS) * 1000, durationUs: 300 + (i % 5000),
    policy: status === 'denied' ? { denied_by: { rule: 'workloads', statement_rule: 'deny[0]', matched: `class DDL, command ${shape.command}` } } : null,
  } as ObservedStatement
}

export function writeReportLog(file: string, total: number, keyPrefix: string): { seconds: number } {
  const t0 = performance.now()
  // An existing key pair is reused (several logs, one key).
  if (!existsSync(`${keyPrefix}.jwk`)) writeCheckpointKeyPair(`${keyPrefix}.jwk`, `${keyPrefix}.pub.jwk`)
  const key = loadCheckpointSigningKey(`${keyPrefix}.jwk`)
  const chain = new AuditChain()
  const fd = openSync(file, 'w', 0o600)
  let buf: string[] = []
  let written = 0
  const emit = (body: AuditRecordBody) => {
    body.time = new Date(T0 + written * STEP_MS).toISOString().replace('Z', '000Z')
    buf.push(chain.seal(body).line)
    written++
    if (written % CHECKPOINT_EVERY === CHECKPOINT_EVERY - 1 || written === total - 1) {
      const time = new Date(T0 + written * STEP_MS).toISOString().replace('Z', '000Z')
      const cp = checkpointRecord(PROXY, signCheckpoint(key, chain.head, PROXY.instance, time))
      cp.time = time
      buf.push(chain.seal(cp).line)
      written++
    }
    if (buf.length >= 2000) {
      writeSync(fd, buf.join('\n') + '\n')
      buf = []
    }
  }
  for (let n = 0; written < total - 1; n++) {
    const c = context(n)
    if (n % 100 === 7) {
      // A failed login (every 100th); a noisy scanner address gets its own.
      const address = n % 500 === 7 ? '203.0.113.66' : c.connection.client.address
      emit(authFailureRecord(PROXY, { ...c.connection, client: { address, port: 50000 } }, {
        method: 'jwt', reason: 'token_expired', detail: 'the token expired', requested: { user: c.upstream.role, database: c.upstream.database, application_name: null },
        identity: { subject: c.identity.subject, issuer: c.identity.issuer },
      }))
      continue
    }
    c.session.started_at = new Date(T0 + written * STEP_MS).toISOString().replace('Z', '000Z')
    emit(sessionStartRecord(c))
    let seq = 0
    let txn = 0
    for (let k = 0; k < 18 && written < total - 2; k++) {
      const i = written
      if (k === 5 && n % 4 === 0) {
        // An explicit transaction of two writes, rolled back now and then.
        const tx = { number: ++txn, kind: 'explicit' as const }
        const first = seq + 1
        emit(statementRecord(c, observed(SHAPES[1]!, ++seq, tx, i)))
        emit(statementRecord(c, observed(SHAPES[2]!, ++seq, tx, i + 1)))
        emit(transactionEndRecord(c, { number: tx.number, outcome: n % 12 === 0 ? 'rolled_back' : 'committed', cause: n % 12 === 0 ? 'rollback' : 'commit', gid: null, firstSeq: first, lastSeq: seq, undone: [] }))
        continue
      }
      const shape = k === 9 && n % 50 === 0 ? DDL : k === 11 && n % 500 === 0 ? BULK : SHAPES[(n + k) % SHAPES.length]!
      const denied = shape === DDL && !String(c.identity.subject).includes('@')
      emit(statementRecord(c, observed(shape, ++seq, { number: ++txn, kind: 'autocommit' }, i, denied ? 'denied' : 'ok')))
    }
    emit(sessionEndRecord(c, { reason: 'client_closed', detail: null, durationMs: 18 * STEP_MS, statements: seq, bytesIn: 4096, bytesOut: 65536 }))
  }
  if (buf.length > 0) writeSync(fd, buf.join('\n') + '\n')
  closeSync(fd)
  return { seconds: (performance.now() - t0) / 1000 }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { records: { type: 'string', default: '1000000' }, out: { type: 'string' }, 'key-out': { type: 'string' } } })
  const file = values.out ?? path.join(mkdtempSync(path.join(os.tmpdir(), 'pgw-report-log-')), 'audit.jsonl')
  const keyPrefix = values['key-out'] ?? path.join(path.dirname(file), 'audit-signing')
  const total = Number(values.records)
  const { seconds } = writeReportLog(file, total, keyPrefix)
  console.log(`wrote ${total.toLocaleString('en')} records to ${file} in ${seconds.toFixed(1)} s; public key ${keyPrefix}.pub.jwk`)
}
