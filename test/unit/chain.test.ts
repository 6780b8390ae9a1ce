/**
 * The audit hash chain (src/ledger/chain.ts), its writer (AuditChainer and
 * FileAuditSink in src/ledger/log.ts: sealing, continuing a log, torn tails)
 * and its verifier (src/ledger/verify.ts): every kind of tampering the chain
 * can show, with the line and reason reported, and the two it cannot
 * (a rewritten tail with a recomputed chain, a tail cut at a line boundary),
 * which signed checkpoints will catch.
 */
import { createHash } from 'node:crypto'
import { appendFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import fc from 'fast-check'
import pino from 'pino'
import t from 'tap'
import { canonicalize } from '../../src/ledger/canonical-json.js'
import { AuditChain, canonicalLine, chainShapeProblem, EMPTY_HEAD, GENESIS_HASH, recordParts, type ChainHead } from '../../src/ledger/chain.js'
import { AuditChainer, AuditFanout, FileAuditSink, StdoutAuditSink, type AuditRecordWriter } from '../../src/ledger/log.js'
import { authFailureRecord, proxyLifecycleRecord, sessionEndRecord, sessionStartRecord, statementRecord, type SessionContext } from '../../src/evidence/records.js'
import type { AuditRecord, AuditRecordBody } from '../../src/evidence/types.js'
import { CanonicalLineScanner } from '../../src/ledger/canonical-scan.js'
import { verifyChain, type VerifyReason } from '../../src/ledger/verify.js'
import type { ObservedStatement } from '../../src/session/statement-tracker.js'
import { assertValidRecord } from '../helpers/audit.js'
import { byteEdits, editedLine, randomBody } from '../helpers/record-mutants.js'

const dir = mkdtempSync(path.join(os.tmpdir(), 'pgw-chain-'))
let fileNo = 0
const tmp = (name = 'audit') => path.join(dir, `${name}-${++fileNo}.jsonl`)

const proxy = { instance: 'pgw-test', version: '0.1.0' }
const ctx: SessionContext = {
  proxy,
  connection: { id: 'c-1', client: { address: '10.0.0.7', port: 53122 }, tls: { version: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', client_cert_sha256: null } },
  session: { id: '01936a4e-7d2c-7abc-8def-0123456789ab', started_at: '2026-11-26T05:38:42.123456Z', application_name: 'wörker "α" 😀' },
  identity: {
    method: 'jwt',
    subject: 'spiffe://test.local/ns/billing/sa/api',
    issuer: 'https://issuer.test',
    audience: ['pgwitness'],
    token_id: null,
    token_expires_at: null,
    spiffe_id: null,
    cert_sha256: null,
    // Integer-like names (JavaScript enumerates them first, numerically; JCS sorts them as strings), non-ASCII, escapes.
    claims: { '10': 'ten', '9': 'nine', team: 'payments\n"core"', 'ünï': ['€', 1.5, -0, 1e21, null, true] },
    policy_rule: 'billing-app',
  },
  upstream: { host: '127.0.0.1', port: 5432, database: 'appdb', role: 'app', backend_pid: 4711, server_session_id: '6745a1b2.1267' },
}

function stmt(i: number, text = `SELECT ${i} AS "n", 'tab\there' AS s`): ObservedStatement {
  return {
    key: i,
    protocol: i % 2 === 0 ? 'extended' : 'simple',
    text,
    textTruncated: false,
    parameters: i % 2 === 0 ? [{ format: 'text', value: String(i) }, null] : null,
    preparedName: i % 2 === 0 ? '' : null,
    portal: i % 2 === 0 ? '' : null,
    functionOid: null,
    command: 'SELECT',
    classes: ['READ'],
    objects: [],
    node: null,
    seq: i,
    split: 'parser', governedSettingChanged: false, textOrigin: null, policy: null,
    inTransaction: false,
    transaction: { number: i, kind: 'autocommit' },
    suspended: false,
    portalRows: null,
    status: 'ok',
    commandTag: 'SELECT 1',
    rows: 1,
    sqlstate: null,
    message: null,
    startedAtUs: 1_795_000_000_000_000 + i,
    durationUs: 250 + i,
  }
}

/** A realistic stream of record bodies: proxy.start, an auth failure, a session with statements. */
function bodies(n: number): AuditRecordBody[] {
  const out: AuditRecordBody[] = [proxyLifecycleRecord('proxy.start', proxy, { configSha256: 'a'.repeat(64), listen: '127.0.0.1:6432', checkpointKeyId: null })]
  out.push(authFailureRecord(proxy, ctx.connection, { method: 'jwt', reason: 'token_expired', detail: 'expired', requested: { user: 'app', database: 'appdb', application_name: null }, identity: null }))
  out.push(sessionStartRecord(ctx))
  for (let i = 1; out.length < n - 1; i++) out.push(statementRecord(ctx, stmt(i)))
  out.push(sessionEndRecord(ctx, { reason: 'client_closed', detail: null, durationMs: 12, statements: n - 4, bytesIn: 100, bytesOut: 200 }))
  return out.slice(0, n)
}

function sealAll(bs: AuditRecordBody[], head: ChainHead = EMPTY_HEAD): { records: AuditRecord[]; lines: string[] } {
  const chain = new AuditChain(head)
  const sealed = bs.map((b) => chain.seal(b))
  return { records: sealed.map((s) => s.record), lines: sealed.map((s) => s.line) }
}

function writeLines(lines: string[], file = tmp()): string {
  writeFileSync(file, lines.map((l) => l + '\n').join(''))
  return file
}

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex')

function opLog(): { logger: pino.Logger; lines: () => Array<Record<string, unknown>> } {
  const out: string[] = []
  const w = new Writable({
    write(chunk: Buffer, _e, cb) {
      out.push(chunk.toString())
      cb()
    },
  })
  return { logger: pino({ level: 'info' }, w), lines: () => out.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) }
}

t.test('sealing: seq from 1, prev links, hash over the canonical record without chain.hash; the line is the canonical record', async (t) => {
  const { records, lines } = sealAll(bodies(12))
  let prev = GENESIS_HASH
  records.forEach((r, i) => {
    t.equal(r.chain.seq, i + 1, `seq ${i + 1}`)
    t.equal(r.chain.prev, prev, `prev of ${i + 1}`)
    // Independently: RFC 8785 over the record with chain = {seq, prev}.
    const { hash, ...chainNoHash } = r.chain
    t.equal(hash, sha256(canonicalize({ ...r, chain: chainNoHash })), `hash of ${i + 1}`)
    t.equal(lines[i], canonicalize(r), `line ${i + 1} is the canonical JSON of the record`)
    t.same(JSON.parse(lines[i]!), r, 'and parses back to it')
    assertValidRecord(r)
    prev = hash
  })
})

t.test('a record that is not I-JSON is recorded with U+FFFD / null, not refused', async (t) => {
  const chain = new AuditChain()
  const body = sessionStartRecord({ ...ctx, identity: { ...ctx.identity, claims: { bad: 'x\ud800y', n: NaN } } })
  const s = chain.seal(body)
  t.equal(s.sanitized, true)
  t.match(s.line, '"bad":"x\ufffdy"')
  t.match(s.line, '"n":null')
  t.equal(sha256(canonicalize({ ...JSON.parse(s.line), chain: { prev: GENESIS_HASH, seq: 1 } })), s.record.chain.hash)
  t.equal(chain.seal(sessionStartRecord(ctx)).sanitized, false)
})

t.test('verify: an intact log', async (t) => {
  const { lines } = sealAll(bodies(50))
  const file = writeLines(lines)
  const r = await verifyChain([file])
  t.equal(r.ok, true)
  t.equal(r.records, 50)
  t.equal(r.firstSeq, 1)
  t.equal(r.lastSeq, 50)
  t.equal(r.startsMidChain, false)
  t.equal(r.failure, null)
  const empty = tmp()
  writeFileSync(empty, '')
  t.same((await verifyChain([empty])).records, 0, 'an empty log is intact with no records')
})

interface Tamper {
  name: string
  /** Tamper with the 20 lines (0-based indexes) of a sealed log; or return raw file text. */
  apply(lines: string[], records: AuditRecord[]): string[] | string
  reason: VerifyReason
  line: number
  message?: RegExp
}

/** Re-seal a record body with chain fields of our choosing (what a forger with the file can do). */
function forge(rec: AuditRecord, seq: number, prev: string, edit: (r: Record<string, unknown>) => void = () => undefined): string {
  const { chain: _c, ...body } = structuredClone(rec) as AuditRecord & Record<string, unknown>
  edit(body)
  return new AuditChain({ seq: seq - 1, hash: prev }).seal(body as unknown as AuditRecordBody).line
}

const TAMPERS: Tamper[] = [
  {
    name: 'a field edited in place',
    apply: (l) => l.map((x, i) => (i === 9 ? x.replace('"rows":1', '"rows":0') : x)),
    reason: 'hash_mismatch',
    line: 10,
    message: /altered/,
  },
  {
    name: 'statement text edited',
    apply: (l) => l.map((x, i) => (i === 6 ? x.replace('SELECT 4 AS', 'DELETE 4 AS') : x)),
    reason: 'hash_mismatch',
    line: 7,
  },
  {
    name: 'a record edited and its own hash recomputed',
    apply: (l, r) => l.map((x, i) => (i === 9 ? forge(r[9]!, 10, r[8]!.chain.hash, (b) => ((b['outcome'] as { rows: number }).rows = 0)) : x)),
    reason: 'prev_mismatch',
    line: 11,
    message: /seq 10\) was replaced/,
  },
  { name: 'a line deleted', apply: (l) => l.filter((_, i) => i !== 9), reason: 'seq_gap', line: 10, message: /record 10 is missing here \(deleted\)/ },
  { name: 'three lines deleted', apply: (l) => l.filter((_, i) => i < 9 || i > 11), reason: 'seq_gap', line: 10, message: /records 10\.\.12 are missing/ },
  { name: 'the first line deleted', apply: (l) => l.slice(1), reason: 'seq_gap', line: 1, message: /expected seq 1, found 2: record 1 is missing/ },
  {
    name: 'a first record with the wrong prev',
    apply: (l, r) => [forge(r[0]!, 1, 'e'.repeat(64)), ...l.slice(1)],
    reason: 'bad_genesis',
    line: 1,
    message: /64 zeros/,
  },
  {
    name: 'a line duplicated further on',
    apply: (l) => [...l.slice(0, 15), l[4]!, ...l.slice(15)],
    reason: 'seq_back',
    line: 16,
    message: /expected seq 16, found 5/,
  },
  {
    name: 'a forged record inserted, chained to the one before it',
    apply: (l, r) => [...l.slice(0, 9), forge(r[9]!, 10, r[8]!.chain.hash, (b) => (b['id'] = '01936a4e-7d2c-7fff-8def-0123456789ab')), ...l.slice(9)],
    reason: 'seq_back',
    line: 11,
    message: /inserted before this line/,
  },
  {
    name: 'two lines swapped',
    apply: (l) => l.map((x, i) => (i === 9 ? l[10]! : i === 10 ? l[9]! : x)),
    reason: 'seq_gap',
    line: 10,
    message: /record 10 is at line 11 \(records reordered\)/,
  },
  {
    name: 'a line moved to the end',
    apply: (l) => [...l.filter((_, i) => i !== 3), l[3]!],
    reason: 'seq_gap',
    line: 4,
    message: /record 4 is at line 20/,
  },
  { name: 'truncated mid-record', apply: (l) => l.join('\n') + '\n' + '{"chain":{"hash":"ab', reason: 'truncated', line: 21, message: /incomplete/ },
  { name: 'truncated: last newline missing', apply: (l) => l.join('\n'), reason: 'truncated', line: 20 },
  { name: 'an empty line', apply: (l) => [...l.slice(0, 5), '', ...l.slice(5)], reason: 'invalid_json', line: 6, message: /empty line/ },
  { name: 'garbage', apply: (l) => [...l.slice(0, 5), 'not json', ...l.slice(5)], reason: 'invalid_json', line: 6 },
  {
    name: 'a record without chain',
    apply: (l) => l.map((x, i) => (i === 2 ? x.replace(/"chain":\{[^}]*\},/, '') : x)),
    reason: 'chain_invalid',
    line: 3,
    message: /no "chain"/,
  },
  {
    name: 'whitespace added (same record, other text)',
    apply: (l) => l.map((x, i) => (i === 7 ? x.replace('"type":', '"type": ') : x)),
    reason: 'not_canonical',
    line: 8,
  },
  {
    name: 'a duplicate member that JSON.parse drops (one parser sees "session.end", another "statement")',
    apply: (l) => l.map((x, i) => (i === 7 ? x.replace('"type":"statement"', '"type":"session.end","type":"statement"') : x)),
    reason: 'not_canonical',
    line: 8,
  },
  {
    name: 'members reordered',
    apply: (l) => l.map((x, i) => (i === 7 ? JSON.stringify({ type: 'statement', ...JSON.parse(x) }) : x)),
    reason: 'not_canonical',
    line: 8,
  },
  { name: 'CRLF line ends', apply: (l) => l.map((x) => x + '\r'), reason: 'not_canonical', line: 1 },
  {
    name: 'a byte that is not UTF-8',
    apply: (l) => l.join('\n').replace('"SELECT 3 AS', '"SELECT \u00ff3 AS') + '\n',
    reason: 'invalid_json',
    line: 6,
  },
]

t.test('verify: each kind of tampering is reported at its line with its reason', async (t) => {
  const { records, lines } = sealAll(bodies(20))
  for (const tc of TAMPERS) {
    const out = tc.apply([...lines], records)
    const file = tmp('tampered')
    if (typeof out === 'string') {
      // 'a byte that is not UTF-8': write ÿ as the single byte 0xff.
      writeFileSync(file, tc.name.includes('UTF-8') ? Buffer.from(out.replace('\u00ff', '\u0000'), 'utf8').map((b) => (b === 0 ? 0xff : b)) : out)
    } else writeLines(out, file)
    const r = await verifyChain([file])
    t.equal(r.ok, false, `${tc.name}: detected`)
    t.equal(r.failure?.reason, tc.reason, `${tc.name}: reason`)
    t.equal(r.failure?.line, tc.line, `${tc.name}: line`)
    if (tc.message) t.match(r.failure?.message, tc.message, `${tc.name}: message`)
  }
})

t.test('verify: what the chain alone cannot show (signed checkpoints will)', async (t) => {
  const { records, lines } = sealAll(bodies(20))
  // A tail rewritten with a recomputed chain: records 15..20 replaced by forged ones chained from record 14.
  const forged = sealAll(
    records.slice(14).map((r) => {
      const { chain: _c, ...b } = structuredClone(r) as AuditRecord & Record<string, unknown>
      if (b['type'] === 'statement') (b['statement'] as { text: string }).text = 'SELECT 1'
      return b as unknown as AuditRecordBody
    }),
    records[13]!.chain,
  )
  const rewritten = await verifyChain([writeLines([...lines.slice(0, 14), ...forged.lines])])
  t.equal(rewritten.ok, true, 'a rewritten tail with a recomputed chain is NOT detected by the chain alone')
  t.equal(rewritten.lastSeq, 20)
  t.not(rewritten.head?.hash, records[19]!.chain.hash, '…but its head differs from the real one, which a signed checkpoint pins')
  const cut = await verifyChain([writeLines(lines.slice(0, 12))])
  t.equal(cut.ok, true, 'records cut off the end at a line boundary are NOT detected by the chain alone')
  t.equal(cut.lastSeq, 12)
})

t.test('verify: several files are one log, in order', async (t) => {
  const { lines } = sealAll(bodies(30))
  const a = writeLines(lines.slice(0, 10))
  const b = writeLines(lines.slice(10, 20))
  const c = writeLines(lines.slice(20))
  const ok = await verifyChain([a, b, c])
  t.equal(ok.ok, true)
  t.equal(ok.records, 30)
  t.same(ok.files.map((f) => [f.records, f.firstSeq, f.lastSeq]), [[10, 1, 10], [10, 11, 20], [10, 21, 30]])
  const missing = await verifyChain([a, c])
  t.same([missing.failure?.file, missing.failure?.line, missing.failure?.reason], [c, 1, 'seq_gap'], 'a file left out')
  const swapped = await verifyChain([a, c, b])
  t.same([swapped.failure?.file, swapped.failure?.line, swapped.failure?.reason], [c, 1, 'seq_gap'], 'files out of order')
  const later = await verifyChain([b, c])
  t.same([later.failure?.file, later.failure?.line, later.failure?.reason], [b, 1, 'seq_gap'], 'a log that does not start at seq 1 is missing its first records…')
  t.match(later.failure?.message, /records 1\.\.10 are missing.*earlier file.*--partial/)
  const partial = await verifyChain([b, c], { partial: true })
  t.equal(partial.ok, true, '…unless told that earlier files are not at hand (--partial): then it verifies from its first record…')
  t.equal(partial.startsMidChain, true, '…and says so')
  t.equal(partial.firstSeq, 11)
  const gone = await verifyChain([a, path.join(dir, 'no-such-file.jsonl')])
  t.equal(gone.failure?.reason, 'unreadable')
})

t.test('verify: a line longer than the read chunk, split across chunks', async (t) => {
  const big = statementRecord(ctx, stmt(1, 'SELECT ' + "'é€😀'||".repeat(700_000) + "''"))
  const { lines } = sealAll([...bodies(3), big, ...bodies(3)])
  const file = writeLines(lines)
  const r = await verifyChain([file])
  t.equal(r.ok, true, `${(readFileSync(file).length / 1e6).toFixed(1)} MB`)
  t.equal(r.records, 7)
})

// ---- the fast path's soundness -------------------------------------------------

/** What the long way says about a line: canonical with a well-formed chain, and which chain. */
function slowVerdict(line: Buffer): { seq: number; prev: string; hash: string } | null {
  const text = line.toString('utf8')
  if (!Buffer.from(text, 'utf8').equals(line)) return null // not UTF-8
  let rec: unknown
  try {
    rec = JSON.parse(text)
  } catch {
    return null
  }
  if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) return null
  const chain = (rec as { chain?: unknown }).chain
  if (chainShapeProblem(chain) !== null) return null
  try {
    if (canonicalLine(recordParts(rec as Record<string, unknown>), chain as AuditRecord['chain']) !== text) return null
  } catch {
    return null
  }
  return chain as { seq: number; prev: string; hash: string }
}

t.test('fast path: accepts every canonical line (random content) with the right chain fields', async (t) => {
  const scanner = new CanonicalLineScanner()
  fc.assert(
    fc.property(randomBody, fc.integer({ min: 0, max: 1e6 }), (b, seq) => {
      const s = new AuditChain({ seq, hash: 'f'.repeat(64) }).seal(b as unknown as AuditRecordBody)
      const buf = Buffer.from(s.line, 'utf8')
      const got = scanner.scan(buf, 0, buf.length)
      return got !== null && got.seq === seq + 1 && got.prev === 'f'.repeat(64) && got.hash === s.record.chain.hash
    }),
    { numRuns: 3000 },
  )
  t.pass('3000 random records')
})

t.test('fast path: never accepts a line the long way refuses (random byte edits of canonical lines)', async (t) => {
  const scanner = new CanonicalLineScanner()
  let accepted = 0
  let mutants = 0
  fc.assert(
    fc.property(randomBody, byteEdits, (b, edits) => {
      const buf = editedLine(new AuditChain().seal(b as unknown as AuditRecordBody).line, edits)
      const fast = scanner.scan(buf, 0, buf.length)
      mutants++
      if (fast === null) return true
      accepted++
      const slow = slowVerdict(buf)
      return slow !== null && slow.seq === fast.seq && slow.prev === fast.prev && slow.hash === fast.hash
    }),
    { numRuns: 5000 },
  )
  t.pass(`${mutants} mutated lines, ${accepted} still canonical and accepted, all agreeing with the long way`)
})

// ---- the writer -----------------------------------------------------------------

async function writeThrough(file: string, bs: AuditRecordBody[], logger = pino({ level: 'silent' })): Promise<FileAuditSink> {
  const sink = await FileAuditSink.open(file, logger, 1000)
  const chainer = new AuditChainer(sink, sink.head, logger)
  for (const b of bs) chainer.append(b)
  await chainer.close()
  return sink
}

t.test('writer: a restarted writer continues the chain of its file', async (t) => {
  const file = tmp()
  const first = await writeThrough(file, bodies(7))
  t.same(first.head, EMPTY_HEAD, 'a new file starts the chain')
  const second = await writeThrough(file, bodies(5))
  t.equal(second.head.seq, 7, 'the second writer found seq 7 at the end of the file')
  const third = await writeThrough(file, bodies(3))
  t.equal(third.head.seq, 12)
  const r = await verifyChain([file])
  t.equal(r.ok, true)
  t.equal(r.records, 15)
  t.equal(r.lastSeq, 15)
})

t.test('writer: a torn last line is cut off at open, logged, and the chain continues', async (t) => {
  const file = tmp()
  await writeThrough(file, bodies(6))
  const intact = readFileSync(file)
  const nextLine = sealAll(bodies(7)).lines[6]!
  appendFileSync(file, nextLine.slice(0, 100)) // a crash mid-write
  t.equal((await verifyChain([file])).failure?.reason, 'truncated', 'before restart, verify reports the torn line')
  const op = opLog()
  const sink = await writeThrough(file, bodies(2), op.logger)
  t.equal(sink.head.seq, 6, 'continues from the last complete record')
  const warn = op.lines().find((l) => /incomplete record/.test(String(l['msg'])))
  t.ok(warn, 'the operational log says so')
  t.match(warn, { level: 40, offset: intact.length, bytes: 100, sha256: sha256(nextLine.slice(0, 100)), continues_after_seq: 6 })
  t.equal(readFileSync(file).subarray(0, intact.length).equals(intact), true, 'the complete records are untouched')
  const r = await verifyChain([file])
  t.equal(r.ok, true, 'the file verifies again')
  t.equal(r.records, 8)
})

t.test('writer: a last record that lost only its newline is kept', async (t) => {
  const file = tmp()
  const bs = bodies(5)
  await writeThrough(file, bs.slice(0, 4))
  appendFileSync(file, sealAll(bs).lines[4]!) // sealing is deterministic: this is the record the writer would have written
  const op = opLog()
  const sink = await writeThrough(file, bodies(2), op.logger)
  t.equal(sink.head.seq, 5, 'the complete record counts')
  t.ok(op.lines().some((l) => /lacked its newline/.test(String(l['msg']))))
  const r = await verifyChain([file])
  t.equal(r.ok, true)
  t.equal(r.records, 7)
})

t.test('writer: a log whose last line is not a chained record is refused (the chain cannot continue)', async (t) => {
  const legacy = tmp()
  writeFileSync(legacy, JSON.stringify({ schema: 'pgwitness.audit/v1', type: 'proxy.start' }) + '\n')
  await t.rejects(FileAuditSink.open(legacy, pino({ level: 'silent' }), 1000), /not a chained record.*no "chain".*move the file aside/i)
  const broken = tmp()
  writeFileSync(broken, sealAll(bodies(2)).lines[0] + '\n{oops}\n')
  await t.rejects(FileAuditSink.open(broken, pino({ level: 'silent' }), 1000), /last line is not valid JSON/)
})

t.test('writer: the end of a large file is found without reading all of it, across chunk boundaries', async (t) => {
  const file = tmp()
  const huge = statementRecord(ctx, stmt(1, 'SELECT ' + 'x'.repeat(300_000)))
  await writeThrough(file, [...bodies(3), huge])
  const sink = await writeThrough(file, bodies(1))
  t.equal(sink.head.seq, 4)
  t.equal((await verifyChain([file])).ok, true)
})

t.test('writer: file and stdout get the same sealed record and the same line', async (t) => {
  const got: Array<[string, unknown]> = []
  const w = (name: string): AuditRecordWriter => ({ write: (s) => void got.push([name, s]), flush: async () => undefined, close: async () => undefined })
  const chainer = new AuditChainer(new AuditFanout([w('file'), w('stdout')]))
  chainer.append(sessionStartRecord(ctx))
  t.equal(got.length, 2)
  t.equal(got[0]![1], got[1]![1], 'one sealed object for both')
  t.equal(chainer.head.seq, 1)

  const printed: string[] = []
  const write = process.stdout.write
  process.stdout.write = ((chunk: string) => (printed.push(chunk), true)) as typeof process.stdout.write
  const file = tmp()
  let fileSink: FileAuditSink
  try {
    fileSink = await FileAuditSink.open(file, pino({ level: 'silent' }), 1000)
    const both = new AuditChainer(new AuditFanout([fileSink, new StdoutAuditSink()]), fileSink.head)
    both.append(sessionStartRecord(ctx))
    both.append(statementRecord(ctx, stmt(1)))
    await fileSink.close()
  } finally {
    process.stdout.write = write
  }
  t.equal(printed.join(''), readFileSync(file, 'utf8'), 'stdout printed exactly the lines of the file')
})

t.test('writer: appending after close throws before a seq is used', async (t) => {
  const file = tmp()
  const sink = await FileAuditSink.open(file, pino({ level: 'silent' }), 1000)
  const chainer = new AuditChainer(sink, sink.head)
  chainer.append(sessionStartRecord(ctx))
  await chainer.close()
  t.throws(() => chainer.append(sessionStartRecord(ctx)), /closed/)
  t.equal(chainer.head.seq, 1)
})

t.test('writer: a sanitized record is logged and still verifies', async (t) => {
  const file = tmp()
  const op = opLog()
  await writeThrough(file, [sessionStartRecord({ ...ctx, identity: { ...ctx.identity, claims: { bad: '\udc00' } } })], op.logger)
  t.ok(op.lines().some((l) => /not I-JSON/.test(String(l['msg']))))
  t.equal((await verifyChain([file])).ok, true)
})
