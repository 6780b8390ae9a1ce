/**
 * The audit log follower (src/shipping/follower.ts), the sink cursor
 * (cursor.ts) and the shipper loop (shipper.ts) against real files: reading
 * across rotated files, a rotation while tailing, a torn last line, a cursor
 * that does not match the log, atomic cursor writes, and retries that never
 * skip a record.
 */
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pino from 'pino'
import t from 'tap'
import type { SealedRecord } from '../../src/ledger/chain.js'
import { rotatedLogPath } from '../../src/ledger/log-files.js'
import { CursorError, CursorStore, cursorDir } from '../../src/shipping/cursor.js'
import { AuditLogFollower } from '../../src/shipping/follower.js'
import { backoffDelay, Shipper } from '../../src/shipping/shipper.js'
import { SinkError, type FollowedRecord, type SinkTransport } from '../../src/shipping/types.js'
import { statements } from '../helpers/sample-records.js'

const quiet = pino({ level: 'silent' })
const root = mkdtempSync(path.join(os.tmpdir(), 'pgw-follower-'))
t.teardown(() => import('node:fs').then((fs) => fs.rmSync(root, { recursive: true, force: true })))
let n = 0

/** A fresh folder and the active log path in it. */
function newLog(): string {
  const dir = path.join(root, `log-${++n}`)
  mkdirSync(dir)
  return path.join(dir, 'audit.jsonl')
}

const lines = (recs: SealedRecord[]) => recs.map((r) => r.line + '\n').join('')
const seqs = (recs: FollowedRecord[]) => recs.map((r) => r.seq)
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i)

/** Read batches until `count` records came or `ms` passed. */
async function collect(f: AuditLogFollower, count: number, ms = 5000, maxRecords = 1000): Promise<FollowedRecord[]> {
  const out: FollowedRecord[] = []
  const deadline = Date.now() + ms
  while (out.length < count && Date.now() < deadline) {
    out.push(...(await f.next({ maxRecords, maxBytes: 1 << 30, signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())) })))
  }
  return out
}

/** Records 1..25: 1-10 and 11-20 in rotated files, 21-25 in the active file. */
function rotatedLog(): { active: string; recs: SealedRecord[] } {
  const active = newLog()
  const recs = statements(25)
  writeFileSync(rotatedLogPath(active, 1), lines(recs.slice(0, 10)))
  writeFileSync(rotatedLogPath(active, 11), lines(recs.slice(10, 20)))
  writeFileSync(active, lines(recs.slice(20)))
  return { active, recs }
}

function follower(active: string, tornGraceMs = 2000): AuditLogFollower {
  const f = new AuditLogFollower(active, { pollMs: 20, tornGraceMs, log: quiet })
  t.teardown(() => f.close())
  return f
}

t.test('reads every record from the start across rotated files, in order', async (tt) => {
  const { active, recs } = rotatedLog()
  const f = follower(active)
  await f.start({ seq: 0, hash: '' })
  const got = await collect(f, 25, 5000, 7)
  tt.same(seqs(got), range(1, 25))
  tt.equal(got[3]!.line, recs[3]!.line, 'the line as written')
  tt.equal(got[3]!.record.id, recs[3]!.record.id, 'and the parsed record')
  tt.equal(f.lastReadSeq, 25)
  tt.same(await collect(f, 1, 150), [], 'then waits: nothing more')
})

t.test('resumes after a cursor in a rotated file, and in the active file', async (tt) => {
  const { active, recs } = rotatedLog()
  const f = follower(active)
  await f.start({ seq: 12, hash: recs[11]!.record.chain.hash })
  tt.same(seqs(await collect(f, 13)), range(13, 25))
  const g = follower(active)
  await g.start({ seq: 22, hash: recs[21]!.record.chain.hash })
  tt.same(seqs(await collect(g, 3)), range(23, 25))
  const h = follower(active)
  await h.start({ seq: 25, hash: recs[24]!.record.chain.hash })
  tt.same(await collect(h, 1, 150), [], 'caught up: nothing to read')
})

t.test('batch limits: records and bytes (a longer line still comes alone)', async (tt) => {
  const { active, recs } = rotatedLog()
  const f = follower(active)
  await f.start({ seq: 0, hash: '' })
  tt.same(seqs(await f.next({ maxRecords: 4, maxBytes: 1 << 30 })), [1, 2, 3, 4])
  const oneLine = recs[4]!.line.length
  tt.same(seqs(await f.next({ maxRecords: 100, maxBytes: oneLine * 2 + 1 })), [5, 6])
  tt.same(seqs(await f.next({ maxRecords: 100, maxBytes: 10 })), [7], 'a record larger than maxBytes comes alone')
})

t.test('tails the active file through a rotation: every record once, in order', async (tt) => {
  const active = newLog()
  const recs = statements(40)
  writeFileSync(active, lines(recs.slice(0, 5)))
  const f = follower(active)
  await f.start({ seq: 0, hash: '' })
  tt.same(seqs(await collect(f, 5)), range(1, 5))
  // More records, then the writer rotates: renames the file and starts a new one.
  appendFileSync(active, lines(recs.slice(5, 10)))
  renameSync(active, rotatedLogPath(active, 1))
  writeFileSync(active, lines(recs.slice(10, 15)))
  tt.same(seqs(await collect(f, 10)), range(6, 15))
  // A second rotation while the follower waits at the end of the new file.
  renameSync(active, rotatedLogPath(active, 11))
  await new Promise((r) => setTimeout(r, 50))
  writeFileSync(active, lines(recs.slice(15, 40)))
  tt.same(seqs(await collect(f, 25)), range(16, 40))
})

t.test('a torn last line is held back until its newline arrives', async (tt) => {
  const active = newLog()
  const recs = statements(3)
  writeFileSync(active, lines(recs.slice(0, 2)) + recs[2]!.line.slice(0, 40))
  const f = follower(active)
  await f.start({ seq: 0, hash: '' })
  tt.same(seqs(await collect(f, 3, 300)), [1, 2], 'the incomplete third line is not read')
  appendFileSync(active, recs[2]!.line.slice(40))
  tt.same(await collect(f, 1, 150), [], 'still no newline: still waiting')
  appendFileSync(active, '\n')
  const got = await collect(f, 1)
  tt.same(seqs(got), [3])
  tt.equal(got[0]!.line, recs[2]!.line, 'the line is whole')
})

t.test('an incomplete line at the end of a rotated file is skipped after a grace period', async (tt) => {
  const active = newLog()
  const recs = statements(6)
  writeFileSync(rotatedLogPath(active, 1), lines(recs.slice(0, 3)) + '{"torn":')
  writeFileSync(active, lines(recs.slice(3)))
  const f = follower(active, 100)
  await f.start({ seq: 0, hash: '' })
  tt.same(seqs(await collect(f, 6)), range(1, 6))
})

t.test('a cursor the log does not match: deliver again from the first record', async (tt) => {
  const { active, recs } = rotatedLog()
  const other = statements(30)
  const f = follower(active)
  await f.start({ seq: 12, hash: other[11]!.record.chain.hash })
  tt.same(seqs(await collect(f, 25)), range(1, 25), 'another hash at the cursor seq: everything again')
  const g = follower(active)
  await g.start({ seq: 30, hash: other[29]!.record.chain.hash })
  tt.same(seqs(await collect(g, 25)), range(1, 25), 'the cursor is past the end of the log: everything again')
  const h = follower(active)
  await h.start({ seq: 25, hash: recs[24]!.record.chain.hash })
  tt.same(await collect(h, 1, 150), [], 'a matching cursor at the head: nothing')
})

t.test('the log does not exist yet: waits for it', async (tt) => {
  const active = newLog()
  const f = follower(active)
  await f.start({ seq: 0, hash: '' })
  tt.same(await collect(f, 1, 100), [])
  writeFileSync(active, lines(statements(2)))
  tt.same(seqs(await collect(f, 2)), [1, 2])
})

t.test('cursor: missing, saved atomically (0600), reloaded, unreadable', async (tt) => {
  const active = newLog()
  const store = new CursorStore(cursorDir(active), 'nats')
  tt.same(await store.load(), { seq: 0, hash: '0'.repeat(64) }, 'no cursor yet: the start of the log')
  const hash = 'ab'.repeat(32)
  await store.save({ seq: 42, hash })
  tt.same(await store.load(), { seq: 42, hash })
  tt.equal(store.path, path.join(path.dirname(active), '.cursors', 'nats.json'))
  tt.equal(statSync(store.path).mode & 0o777, 0o600)
  tt.same(readdirSync(cursorDir(active)), ['nats.json'], 'no temp file left behind')
  await store.save({ seq: 43, hash })
  tt.equal((await store.load()).seq, 43)
  writeFileSync(store.path, '{"seq":')
  await tt.rejects(store.load(), CursorError)
  writeFileSync(store.path, '{"seq":-1,"hash":"x"}')
  await tt.rejects(store.load(), CursorError)
})

t.test('backoff grows exponentially, with jitter, up to the cap', async (tt) => {
  const o = { baseMs: 100, capMs: 30_000 }
  tt.equal(backoffDelay(1, o, () => 0.5), 100)
  tt.equal(backoffDelay(2, o, () => 0.5), 200)
  tt.equal(backoffDelay(5, o, () => 0.5), 1600)
  tt.equal(backoffDelay(50, o, () => 0.5), 30_000)
  tt.equal(backoffDelay(50, o, () => 1), 30_000, 'never above the cap')
  tt.equal(backoffDelay(1, o, () => 0), 75, 'jitter: -25 %')
})

/** A transport that keeps what it was sent and fails while `down`. */
class MemoryTransport implements SinkTransport {
  readonly describe = 'memory'
  readonly received: number[] = []
  down = false
  attempts = 0
  async send(batch: readonly FollowedRecord[]): Promise<void> {
    this.attempts++
    if (this.down) throw new SinkError('down', { retryAfterMs: this.attempts % 2 === 0 ? 5 : null })
    this.received.push(...batch.map((r) => r.seq))
  }
  async close(): Promise<void> {}
}

t.test('shipper: retries while the sink is down, never skips, persists the cursor, resumes from it', async (tt) => {
  const active = newLog()
  const recs = statements(60)
  writeFileSync(active, lines(recs.slice(0, 20)))
  const transport = new MemoryTransport()
  let errors = 0
  const make = (tr: SinkTransport) => new Shipper({
    name: 'mem', follower: new AuditLogFollower(active, { pollMs: 20, log: quiet }), cursor: new CursorStore(cursorDir(active), 'mem'),
    transport: tr, log: quiet, batchSize: 7, batchBytes: 1 << 20, backoff: { baseMs: 5, capMs: 40 }, onError: () => errors++,
  })
  const s = make(transport)
  await s.start()
  const until = async (what: string, ok: () => boolean) => {
    const end = Date.now() + 5000
    while (!ok()) {
      if (Date.now() > end) throw new Error(`timed out: ${what}`)
      await new Promise((r) => setTimeout(r, 10))
    }
  }
  await until('first 20 delivered', () => s.cursor.seq === 20)
  tt.same(transport.received, range(1, 20))
  tt.equal(s.lagRecords(), 0)
  transport.down = true
  appendFileSync(active, lines(recs.slice(20, 40)))
  await until('failures', () => errors >= 3)
  tt.equal(s.cursor.seq, 20, 'the cursor stays while the sink is down')
  tt.ok(s.lagRecords() >= 1, 'lag grows')
  tt.ok(s.lagSeconds() > 0, 'lag in seconds grows')
  tt.ok(s.error?.includes('down'), 'the last error is kept')
  transport.down = false
  await until('all 40 delivered', () => s.cursor.seq === 40)
  tt.same(transport.received, range(1, 40), 'every record once, in order')
  tt.equal(s.delivered(), 40)
  tt.equal(s.errorCount, errors)
  tt.equal(s.error, null)
  await s.stop(1000)
  const saved = await new CursorStore(cursorDir(active), 'mem').load()
  tt.same(saved, { seq: 40, hash: recs[39]!.record.chain.hash }, 'cursor persisted')

  // Restart: resumes after the cursor.
  appendFileSync(active, lines(recs.slice(40, 60)))
  const again = new MemoryTransport()
  const s2 = make(again)
  await s2.start()
  await until('the rest delivered', () => s2.cursor.seq === 60)
  tt.same(again.received, range(41, 60))
  await s2.stop(1000)
})

t.test('shipper stop: drains what is in the log within the deadline, then stops at its cursor', async (tt) => {
  const active = newLog()
  writeFileSync(active, lines(statements(10)))
  const make = (transport: SinkTransport) => new Shipper({
    name: 'mem', follower: new AuditLogFollower(active, { pollMs: 20, log: quiet }), cursor: new CursorStore(cursorDir(active), 'mem'),
    transport, log: quiet, batchSize: 3, batchBytes: 1 << 20, backoff: { baseMs: 5, capMs: 20 },
  })
  const down = new MemoryTransport()
  down.down = true
  const s = make(down)
  await s.start()
  const t0 = Date.now()
  await s.stop(200)
  tt.ok(Date.now() - t0 < 2000, 'a sink that stays down does not hold the shutdown past its deadline')
  tt.equal(s.cursor.seq, 0, 'nothing was acknowledged, so the cursor did not move')

  const late = new MemoryTransport()
  late.down = true
  const s2 = make(late)
  await s2.start()
  setTimeout(() => (late.down = false), 100)
  await s2.stop(5000)
  tt.equal(s2.cursor.seq, 10, 'a sink that comes back within the deadline gets everything in the log')
  tt.same(late.received, range(1, 10))
})
