/**
 * Signed checkpoints (src/ledger/checkpoint.ts) written by the AuditChainer,
 * rotation of the log file (FileAuditSink, src/ledger/log-files.ts), and what
 * `verify` makes of them: a tail rewritten with a recomputed chain is caught
 * by the signatures, a tail with its checkpoints removed is reported as
 * unsigned, and rotated files verify as one chain.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pino from 'pino'
import t from 'tap'
import { AuditChain, EMPTY_HEAD } from '../../src/ledger/chain.js'
import {
  checkCheckpoint, loadCheckpointPublicKeys, loadCheckpointSigningKey, signCheckpoint, writeCheckpointKeyPair,
} from '../../src/ledger/checkpoint.js'
import { listLogFiles, rotatedLogPath } from '../../src/ledger/log-files.js'
import { AuditChainer, FileAuditSink, type CheckpointSchedule, type RotationPolicy } from '../../src/ledger/log.js'
import { proxyLifecycleRecord } from '../../src/evidence/records.js'
import type { AuditRecord, AuditRecordBody } from '../../src/evidence/types.js'
import { verifyChain } from '../../src/ledger/verify.js'
import { assertValidRecord } from '../helpers/audit.js'

const dir = mkdtempSync(path.join(os.tmpdir(), 'pgw-checkpoint-'))
const proxy = { instance: 'pgw-test', version: '0.1.0' }
writeCheckpointKeyPair(path.join(dir, 'key.jwk'), path.join(dir, 'key.pub.jwk'))
const key = loadCheckpointSigningKey(path.join(dir, 'key.jwk'))
const publicKeys = loadCheckpointPublicKeys(path.join(dir, 'key.pub.jwk'))
const silent = pino({ level: 'silent' })

function body(i: number): AuditRecordBody {
  return proxyLifecycleRecord('proxy.start', proxy, { configSha256: String(i).padStart(64, '0'), listen: `127.0.0.1:${6000 + i}`, checkpointKeyId: key.keyId })
}

async function writeLog(file: string, n: number, opts: { everyRecords?: number; rotation?: RotationPolicy | null } = {}): Promise<void> {
  const sink = await FileAuditSink.open(file, silent, 1000, undefined, opts.rotation ?? null)
  const schedule: CheckpointSchedule = { key, proxy, everyRecords: opts.everyRecords ?? 10, everySeconds: 3600 }
  const chainer = new AuditChainer(sink, sink.head, silent, schedule)
  for (let i = 0; i < n; i++) chainer.append(body(i))
  await chainer.close()
}

const records = (file: string): AuditRecord[] => readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as AuditRecord)

t.test('keys: keygen writes a private JWK 0600 and a public JWK with the same key id; openssl PEM keys work too', async (t) => {
  t.equal(statSync(path.join(dir, 'key.jwk')).mode & 0o777, 0o600)
  t.same([...publicKeys.keys()], [key.keyId])
  t.throws(() => writeCheckpointKeyPair(path.join(dir, 'key.jwk'), path.join(dir, 'other.pub.jwk')), /EEXIST/, 'never overwrites a key')
  const pem = path.join(dir, 'o.pem')
  execFileSync('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', pem])
  execFileSync('openssl', ['pkey', '-in', pem, '-pubout', '-out', pem + '.pub'])
  const k = loadCheckpointSigningKey(pem)
  t.same([...loadCheckpointPublicKeys(pem + '.pub').keys()], [k.keyId], 'the key id is the same from the private and the public PEM')
  execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', pem + '.ec'])
  t.throws(() => loadCheckpointSigningKey(pem + '.ec'), /must be Ed25519/, 'another key type is refused')
})

t.test('checkCheckpoint refuses other algorithms, altered payloads and wrong keys', async (t) => {
  const cp = signCheckpoint(key, { seq: 5, hash: 'a'.repeat(64) }, 'pgw-test', '2026-11-26T08:00:00.000000Z')
  t.ok(checkCheckpoint(cp, publicKeys).ok)
  const [h, p, s] = cp.jws.split('.') as [string, string, string]
  const none = Buffer.from(JSON.stringify({ alg: 'none', kid: key.keyId })).toString('base64url')
  t.match(checkCheckpoint({ ...cp, jws: `${none}.${p}.` }, publicKeys), { ok: false, reason: 'checkpoint_invalid', detail: /only EdDSA/ })
  const forgedPayload = Buffer.from(JSON.stringify({ hash: 'b'.repeat(64), instance: 'pgw-test', seq: 5, time: cp.time })).toString('base64url')
  t.match(checkCheckpoint({ ...cp, hash: 'b'.repeat(64), jws: `${h}.${forgedPayload}.${s}` }, publicKeys), { ok: false, reason: 'signature_invalid' })
  t.match(checkCheckpoint({ ...cp, seq: 6 }, publicKeys), { ok: false, reason: 'checkpoint_invalid', detail: /seq/ })
  writeCheckpointKeyPair(path.join(dir, 'other.jwk'), path.join(dir, 'other.pub.jwk'))
  t.match(checkCheckpoint(cp, loadCheckpointPublicKeys(path.join(dir, 'other.pub.jwk'))), { ok: false, reason: 'unknown_key' })
})

t.test('the chainer writes a checkpoint every N records and at close; verify checks each signature', async (t) => {
  const file = path.join(dir, 'plain.jsonl')
  await writeLog(file, 25, { everyRecords: 10 })
  const recs = records(file)
  for (const r of recs) assertValidRecord(r)
  t.pass(`${recs.length} records match the schema`)
  const cps = recs.filter((r) => r.type === 'checkpoint')
  t.equal(cps.length, 3, 'after records 10 and 20, and at close')
  t.equal(recs[recs.length - 1]!.type, 'checkpoint', 'a cleanly closed log ends with a checkpoint')
  const first = cps[0] as Extract<AuditRecord, { type: 'checkpoint' }>
  t.equal(first.checkpoint.seq, 10)
  t.equal(first.checkpoint.hash, recs[9]!.chain.hash, 'it signs the head just before it')
  const ok = await verifyChain([file], { publicKeys })
  t.ok(ok.ok, 'verifies with the public key')
  t.equal(ok.checkpoints, 3)
  t.equal(ok.unsignedTail, 0)
  t.equal(ok.signedThrough, recs.length)
  const unchecked = await verifyChain([file])
  t.ok(unchecked.ok)
  t.equal(unchecked.signaturesChecked, false)
})

/** Rewrite the log from record `from` (0-based) on, editing one record and recomputing the chain. */
function rewriteTail(file: string, from: number, keep: (r: AuditRecord) => boolean): string {
  const recs = records(file)
  const out = recs.slice(0, from)
  const chain = new AuditChain(from === 0 ? EMPTY_HEAD : { seq: recs[from - 1]!.chain.seq, hash: recs[from - 1]!.chain.hash })
  const lines = out.map((r) => JSON.stringify(r))
  for (const r of recs.slice(from)) {
    if (!keep(r)) continue
    const { chain: _c, ...b } = r
    if (b.type === 'proxy.start') (b as { listen: string }).listen = '10.6.6.6:5432'
    lines.push(chain.seal(b as AuditRecordBody).line)
  }
  const copy = file.replace('.jsonl', `-rewritten-${from}.jsonl`)
  writeFileSync(copy, lines.map((l) => l + '\n').join(''))
  return copy
}

t.test('a tail rewritten with a recomputed chain is caught by the signatures', async (t) => {
  const file = path.join(dir, 'tail.jsonl')
  await writeLog(file, 25, { everyRecords: 10 })
  // Keeping the checkpoints: the next one signs a head that no longer exists.
  const kept = rewriteTail(file, 12, () => true)
  const chainOnly = await verifyChain([kept])
  t.notOk(chainOnly.ok, 'even without the key: the checkpoint payload no longer matches the recomputed chain')
  t.equal(chainOnly.failure?.reason, 'checkpoint_invalid')
  // Dropping the checkpoints after the edit: the chain is intact, only the signatures can tell.
  const dropped = rewriteTail(file, 12, (r) => r.type !== 'checkpoint')
  t.ok((await verifyChain([dropped])).ok, 'the chain alone accepts the rewritten tail')
  const signed = await verifyChain([dropped], { publicKeys })
  t.notOk(signed.ok, 'with the public key it does not')
  t.equal(signed.failure?.reason, 'unsigned_tail')
  t.equal(signed.failure?.line, 12, 'the first record after the last valid checkpoint (line 11 is the checkpoint)')
  t.equal(signed.signedThrough, 11)
  // Re-signing with the attacker's own key: unknown key.
  const evil = path.join(dir, 'evil')
  writeCheckpointKeyPair(evil + '.jwk', evil + '.pub.jwk')
  const evilKey = loadCheckpointSigningKey(evil + '.jwk')
  const recs = records(dropped)
  const chain = new AuditChain({ seq: recs[recs.length - 1]!.chain.seq, hash: recs[recs.length - 1]!.chain.hash })
  const cp = signCheckpoint(evilKey, chain.head, proxy.instance, '2026-11-26T08:00:00.000000Z')
  const forged = dropped.replace('.jsonl', '-resigned.jsonl')
  const { records: _r, ...cpRec } = { records: 0, schema: 'pgwitness.audit/v1', id: '01936a4e-7d2c-7abc-8def-0123456789ab', time: cp.time, type: 'checkpoint', proxy, connection: null, checkpoint: cp }
  writeFileSync(forged, readFileSync(dropped, 'utf8') + chain.seal(cpRec as unknown as AuditRecordBody).line + '\n')
  t.match(await verifyChain([forged], { publicKeys }), { ok: false, failure: { reason: 'unknown_key' } })
  t.ok((await verifyChain([dropped], { publicKeys, allowUnsignedTail: true })).ok, '--allow-unsigned-tail accepts an unsigned tail')
})

t.test('rotation by size: files renamed by first seq, each ends with a checkpoint, the chain continues across files and restarts', async (t) => {
  const sub = mkdtempSync(path.join(dir, 'rot-'))
  const file = path.join(sub, 'audit.jsonl')
  await writeLog(file, 40, { everyRecords: 1000, rotation: { maxBytes: 4096, intervalMs: null } })
  await writeLog(file, 15, { everyRecords: 1000, rotation: { maxBytes: 4096, intervalMs: null } })
  const files = listLogFiles(file)
  t.ok(files.length >= 4, `${files.length} files`)
  t.equal(files[files.length - 1]!.path, file, 'the active file comes last')
  let expectFirst = 1
  for (const f of files) {
    const recs = records(f.path)
    t.equal(recs[0]!.chain.seq, expectFirst, `${path.basename(f.path)} starts at seq ${expectFirst}`)
    if (f.firstSeq !== null) {
      t.equal(f.path, rotatedLogPath(file, f.firstSeq))
      t.equal(recs[recs.length - 1]!.type, 'checkpoint', `${path.basename(f.path)} ends with a checkpoint`)
      t.equal(statSync(f.path).mode & 0o777, 0o600)
    }
    expectFirst = recs[recs.length - 1]!.chain.seq + 1
  }
  const all = await verifyChain(files.map((f) => f.path), { publicKeys })
  t.ok(all.ok, 'all files verify as one chain, signatures included')
  t.equal(all.unsignedTail, 0)
  const one = files[1]!
  t.ok((await verifyChain([one.path], { publicKeys, partial: true })).ok, 'a rotated file verifies on its own with --partial')
  t.same(readdirSync(sub).filter((n) => !n.startsWith('audit')), [], 'nothing else in the directory')
})

t.test('rotation restarts the chain head from the newest rotated file when the active file is empty', async (t) => {
  const sub = mkdtempSync(path.join(dir, 'rot2-'))
  const file = path.join(sub, 'audit.jsonl')
  await writeLog(file, 30, { rotation: { maxBytes: 4096, intervalMs: null } })
  const before = listLogFiles(file)
  // A crash right after a rotation: the new active file is empty (or missing).
  const lastRotated = before.filter((f) => f.firstSeq !== null).pop()!
  writeFileSync(file, '')
  const head = records(lastRotated.path).pop()!.chain
  const sink = await FileAuditSink.open(file, silent, 1000)
  t.same(sink.head, { seq: head.seq, hash: head.hash }, 'continues from the last rotated file')
  await sink.close()
})

t.test('rotation by age: an idle log rotates once its interval has passed, ending with a checkpoint', async (t) => {
  const sub = mkdtempSync(path.join(dir, 'rot-age-'))
  const file = path.join(sub, 'audit.jsonl')
  const sink = await FileAuditSink.open(file, silent, 1000, undefined, { maxBytes: null, intervalMs: 1000 })
  const chainer = new AuditChainer(sink, sink.head, silent, { key, proxy, everyRecords: 1000, everySeconds: 3600 })
  for (let i = 0; i < 3; i++) chainer.append(body(i))
  // No more records: the chainer's timer notices the file's age.
  const deadline = Date.now() + 10_000
  while (listLogFiles(file).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
  chainer.append(body(3))
  await chainer.close()
  const files = listLogFiles(file)
  t.equal(files.length, 2, 'rotated once')
  const rotated = records(files[0]!.path)
  t.equal(rotated.length, 4, 'three records and the checkpoint before the rotation')
  t.equal(rotated.at(-1)!.type, 'checkpoint')
  t.ok((await verifyChain(files.map((f) => f.path), { publicKeys })).ok, 'the two files verify as one signed chain')
})
