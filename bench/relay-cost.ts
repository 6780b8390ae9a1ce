/**
 * The proxy's own JavaScript per pgbench transaction, without sockets, TLS
 * or PostgreSQL: a Relay fed pgbench -S -M prepared's bytes (Bind, Execute,
 * Sync; BindComplete, DataRow, CommandComplete, ReadyForQuery) by hand, in
 * three configurations, so a change to framing, tracking, metrics or the
 * record path can be measured without the host's noise:
 *   off:      framing and tracking, the statement counted in metrics (audit off)
 *   batched:  the same, each statement recorded into a real file log (AuditChainer + FileAuditSink)
 *   floor:    the chunks handed to a relay that only writes them on (what a pass-through does in JS)
 *   npx tsx bench/relay-cost.ts [TRANSACTIONS] [MODES] [alloc]     (MODES: comma-separated, default floor,off,batched)
 * Each configuration runs 3 rounds; printed: µs per transaction (CPU of this
 * process, the file writes' kernel time included). Every 2 transactions the
 * loop yields to the event loop (one file write per two records, about what pgbench -c 8 makes).
 * With `alloc`, the last round of each mode also runs V8's sampling heap
 * profiler (objects the GC collected included) and prints the bytes
 * allocated per transaction, by the function that allocated them: what the
 * garbage collector and the caches pay for, which the CPU figure alone hides.
 */
import { EventEmitter } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setImmediate as turn } from 'node:timers/promises'
import { serialize } from 'pg-protocol'
import pino from 'pino'
import { Relay } from '../src/session/relay.js'
import { SessionStatements } from '../src/session/statement-records.js'
import { AuditChainer, FileAuditSink, type AuditSink } from '../src/ledger/log.js'
import { PrometheusMetrics } from '../src/metrics/registry.js'
import { commandComplete, readyForQuery } from '../src/protocol/backend-messages.js'
import { benchSessionContext as ctx } from './lib/session-context.js'
import { AllocationSampler } from './lib/allocation-sampler.js'

const N = Number(process.argv[2] ?? 100000)
const MODES = (process.argv[3] ?? 'floor,off,batched').split(',') as Mode[]
const ALLOC = process.argv[4] === 'alloc'

class FakeSocket extends EventEmitter {
  destroyed = false
  writable = true
  written = 0
  write(b: Buffer): boolean { this.written += b.length; return true }
  cork(): void {}
  uncork(): void {}
  pause(): this { return this }
  resume(): this { return this }
  end(): this { return this }
  destroy(): this { return this }
}


function backend(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(5)
  h[0] = type
  h.writeInt32BE(body.length + 4, 1)
  return Buffer.concat([h, body])
}
const dataRow = (value: string) => {
  const v = Buffer.from(value)
  const b = Buffer.alloc(2 + 4 + v.length)
  b.writeInt16BE(1, 0)
  b.writeInt32BE(v.length, 2)
  v.copy(b, 6)
  return backend(0x44, b)
}

const TEXT = 'SELECT abalance FROM pgbench_accounts WHERE aid = $1;'
const prepare = Buffer.concat([serialize.parse({ name: 'P0_1', text: TEXT, types: [] }), serialize.describe({ type: 'S', name: 'P0_1' }), serialize.sync()])
const prepared = Buffer.concat([backend(0x31, Buffer.alloc(0)), backend(0x74, Buffer.from([0, 1, 0, 0, 0, 23])), backend(0x54, Buffer.from('0001616261bc616e636500000000000003000417000000040000ffffffff0000', 'hex')), readyForQuery('I')])
const clientTx = (aid: number) => Buffer.concat([serialize.bind({ portal: '', statement: 'P0_1', values: [String(aid)] }), serialize.execute({ portal: '', rows: 0 }), serialize.sync()])
const serverTx = Buffer.concat([backend(0x32, Buffer.alloc(0)), dataRow('-4711'), commandComplete('SELECT 1'), readyForQuery('I')])
const clientChunks = Array.from({ length: 64 }, (_, i) => clientTx(1 + i * 1543))

type Mode = 'floor' | 'off' | 'batched'

async function run(mode: Mode, dir: string, sampler: AllocationSampler | null): Promise<number> {
  const client = new FakeSocket()
  const upstream = new FakeSocket()
  const metrics = new PrometheusMetrics()
  let sink: AuditSink | null = null
  let file: FileAuditSink | null = null
  if (mode === 'batched') {
    file = await FileAuditSink.open(join(dir, `audit-${Date.now()}.jsonl`), pino({ level: 'silent' }), 50)
    sink = new AuditChainer(file, file.head)
  }
  const statements = new SessionStatements(ctx, sink ?? ({ append: () => 0 } as unknown as AuditSink), metrics, mode === 'batched', null, 1)
  if (mode === 'floor') {
    client.on('data', (c: Buffer) => upstream.write(c))
    upstream.on('data', (c: Buffer) => client.write(c))
  } else {
    const relay = new Relay(client as never, upstream as never, {
      maxMessageBytes: 1 << 30, maxStatementBytes: 65536, maxParameterBytes: 4096, parameters: { mode: 'full', hmacKey: null },
      governedSettings: 'record', unparseable: 'forward', serverParameters: [['client_encoding', 'UTF8'], ['standard_conforming_strings', 'on']],
    } as never, {
      statement: (s) => statements.record(s),
      transactionEnd: (e) => statements.transactionEnd(e),
      nextSeq: () => statements.nextSeq(),
      end: () => undefined,
    })
    relay.start(Buffer.alloc(0))
  }
  client.emit('data', prepare)
  upstream.emit('data', prepared)
  await turn()
  await sampler?.start()
  const t0 = process.cpuUsage()
  for (let i = 0; i < N; i++) {
    client.emit('data', clientChunks[i & 63])
    upstream.emit('data', serverTx)
    if ((i & 1) === 1) await turn()
  }
  await sink?.flush()
  const c = process.cpuUsage(t0)
  if (sampler) console.log(`${mode}: bytes allocated per transaction\n${await sampler.stop(N)}`)
  await sink?.close()
  return (c.user + c.system) / N
}

const dir = mkdtempSync(join(tmpdir(), 'pgw-relay-cost-'))
try {
  for (let round = 1; round <= 3; round++) {
    const line: string[] = []
    for (const mode of MODES) line.push(`${mode} ${(await run(mode, dir, ALLOC && round === 3 ? new AllocationSampler() : null)).toFixed(2)} µs`)
    console.log(`round ${round}: ${line.join(', ')} per transaction`)
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}
