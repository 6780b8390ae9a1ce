/**
 * Issue 8 item 1 (unit half): property-based fuzzing of the pure protocol
 * code with fast-check — the MessageStream framer, the startup decoder, the
 * handshake SocketReader and the frontend decoders — fed valid streams,
 * randomly mutated valid streams and random bytes, split at random points.
 *
 * Properties: nothing but a ProtocolViolation (a PgError, SQLSTATE 08P01, or
 * for a StartupMessage PostgreSQL's 0A000 / 28000) is
 * ever thrown; every call returns (no loop without progress) and every read
 * settles once the input has ended; memory is bounded by the configured
 * limits whatever the declared lengths say (allocations are measured);
 * invalid lengths (negative, < 4, > the maximum) are refused from the header
 * alone. The random-buffer and Bind-agreement properties of the single
 * decoders live in protocol-frontend.test.ts and protocol-startup.test.ts.
 */
import { PassThrough } from 'node:stream'
import fc from 'fast-check'
import t from 'tap'
import { serialize } from 'pg-protocol/dist/serializer'
import { PgError, ProtocolViolation } from '../../src/protocol/errors.js'
import {
  BindStreamDecoder,
  decodeBind,
  decodeClose,
  decodeCopyFail,
  decodeDescribe,
  decodeExecute,
  decodeFunctionCall,
  decodeParse,
  decodePassword,
  decodeQuery,
  FrontendType as F,
} from '../../src/protocol/frontend.js'
import { BodyMode, MessageStream, frameOf, type MessageHandler } from '../../src/protocol/message-stream.js'
import { decodeStartupPacket, MAX_STARTUP_PACKET_BYTES, startupPacketLength } from '../../src/protocol/startup.js'
import { ClientGone, MessageTooLarge, SocketReader } from '../../src/session/socket-reader.js'

/** Runs fn; a ProtocolViolation is an accepted outcome, anything else fails the property. */
function onlyViolations<T>(fn: () => T): { ok: T } | { violation: ProtocolViolation } {
  try {
    return { ok: fn() }
  } catch (e) {
    // 08P01, or the SQLSTATE PostgreSQL uses for a bad StartupMessage (0A000 unsupported version, 28000 no user).
    if (e instanceof ProtocolViolation && e instanceof PgError && ['08P01', '0A000', '28000'].includes(e.code)) return { violation: e }
    throw e
  }
}

// ---------------------------------------------------------------------------
// Generators

const i32 = (n: number) => {
  const b = Buffer.alloc(4)
  b.writeInt32BE(n | 0)
  return b
}

function frame(type: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([type]), i32(body.length + 4), body])
}

/** A SQL-ish text (no NUL). */
const text = fc.string({ unit: 'grapheme', maxLength: 40 }).map((s) => s.replace(/\0/g, ''))
const name = fc.oneof(fc.constant(''), fc.string({ unit: 'grapheme-ascii', maxLength: 12 }).map((s) => s.replace(/\0/g, '')))
const paramValue = fc.oneof(fc.constant(null), fc.string({ maxLength: 20 }).map((s) => s.replace(/\0/g, '')), fc.uint8Array({ maxLength: 20 }).map((a) => Buffer.from(a)))

/** One valid frontend message, as pg-protocol's serializer (what drivers send) or by hand. */
const validFrontendMessage: fc.Arbitrary<Buffer> = fc.oneof(
  text.map((q) => serialize.query(q)),
  fc.record({ name, text, types: fc.array(fc.nat({ max: 5000 }), { maxLength: 3 }) }).map((p) => serialize.parse(p)),
  fc.record({ portal: name, statement: name, values: fc.array(paramValue, { maxLength: 4 }), binary: fc.boolean() }).map((b) =>
    serialize.bind({ portal: b.portal, statement: b.statement, values: b.values as Array<string | Buffer | null>, binary: b.binary })),
  fc.record({ portal: name, rows: fc.nat({ max: 1000 }) }).map((e) => serialize.execute(e)),
  fc.record({ type: fc.constantFrom('S' as const, 'P' as const), name }).map((d) => serialize.describe(d)),
  fc.record({ type: fc.constantFrom('S' as const, 'P' as const), name }).map((c) => serialize.close(c)),
  fc.constant(serialize.sync()),
  fc.constant(serialize.flush()),
  fc.uint8Array({ maxLength: 64 }).map((a) => serialize.copyData(Buffer.from(a))),
  fc.constant(serialize.copyDone()),
  text.map((m) => serialize.copyFail(m)),
  // FunctionCall: pg-protocol has no serializer for it.
  fc.record({ oid: fc.nat(), args: fc.array(fc.uint8Array({ maxLength: 8 }), { maxLength: 3 }) }).map(({ oid, args }) => {
    const parts = [Buffer.alloc(4), Buffer.from([0, 1, 0, 1]), Buffer.alloc(2)]
    parts[0]!.writeUInt32BE(oid)
    parts[2]!.writeUInt16BE(args.length)
    for (const a of args) parts.push(i32(a.length), Buffer.from(a))
    parts.push(Buffer.from([0, 1]))
    return frame(F.FunctionCall, Buffer.concat(parts))
  }),
  fc.string({ maxLength: 60 }).map((p) => serialize.password(p.replace(/\0/g, ''))),
)

/** Interesting values to write over a length or count field. */
const hostileInt32 = fc.constantFrom(-1, -4, -0x80000000, 0, 1, 3, 4, 5, 255, 0xffff, 1 << 20, 0x7fffffff)

type Mutation =
  | { op: 'set'; at: number; byte: number }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'delete'; at: number; n: number }
  | { op: 'int32'; at: number; value: number }
  | { op: 'truncate'; at: number }
  | { op: 'duplicate'; at: number; n: number }

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ op: fc.constant('int32' as const), at: fc.nat(), value: hostileInt32 }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('duplicate' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 16 }) }),
)

function mutate(input: Buffer, ops: Mutation[]): Buffer {
  let b = Buffer.from(input)
  for (const m of ops) {
    const at = b.length === 0 ? 0 : m.at % (b.length + 1)
    switch (m.op) {
      case 'set':
        if (b.length > 0) b[at % b.length] = m.byte
        break
      case 'insert':
        b = Buffer.concat([b.subarray(0, at), Buffer.from(m.bytes), b.subarray(at)])
        break
      case 'delete':
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.n)])
        break
      case 'int32':
        if (b.length >= 4) b.writeInt32BE(m.value, Math.min(at, b.length - 4))
        break
      case 'truncate':
        b = b.subarray(0, at)
        break
      case 'duplicate':
        b = Buffer.concat([b.subarray(0, at + m.n), b.subarray(at)])
        break
    }
  }
  return b
}

/** Split points for a buffer of length n (sorted, possibly repeated: empty chunks are fine). */
function splits(n: number): fc.Arbitrary<number[]> {
  return fc.array(fc.integer({ min: 0, max: n }), { maxLength: 8 }).map((a) => a.sort((x, y) => x - y))
}

function chunks(b: Buffer, cuts: number[]): Buffer[] {
  const out: Buffer[] = []
  let prev = 0
  for (const c of cuts) {
    out.push(b.subarray(prev, c))
    prev = c
  }
  out.push(b.subarray(prev))
  return out
}

/** Records the largest Buffer.alloc/allocUnsafe size while fn runs. */
function largestAllocation(fn: () => void): number {
  const orig = { alloc: Buffer.alloc, allocUnsafe: Buffer.allocUnsafe }
  let largest = 0
  Buffer.allocUnsafe = ((size: number) => {
    largest = Math.max(largest, size)
    return orig.allocUnsafe(size)
  }) as typeof Buffer.allocUnsafe
  Buffer.alloc = ((size: number, ...rest: unknown[]) => {
    largest = Math.max(largest, size)
    return (orig.alloc as (...a: unknown[]) => Buffer)(size, ...rest)
  }) as typeof Buffer.alloc
  try {
    fn()
  } finally {
    Buffer.alloc = orig.alloc
    Buffer.allocUnsafe = orig.allocUnsafe
  }
  return largest
}

// ---------------------------------------------------------------------------
// MessageStream

interface Seen {
  type: number
  body: Buffer
}

/** A handler choosing the body mode from the type (as the relay does) and reassembling what it is given. */
function recorder(modeFor: (type: number, len: number) => BodyMode): { handler: MessageHandler; seen: Seen[]; headers: number } {
  const rec = { seen: [] as Seen[], headers: 0, handler: null as unknown as MessageHandler }
  let pieces: Buffer[] = []
  rec.handler = {
    header(type, len) {
      rec.headers++
      pieces = []
      return modeFor(type, len)
    },
    message(type, body, framed) {
      if (framed) {
        // The header is right before the body, in the same memory.
        const f = frameOf(body)
        if (f[0] !== type || f.readInt32BE(1) !== body.length + 4 || !f.subarray(5).equals(body)) throw new Error('frame and body disagree')
      }
      rec.seen.push({ type, body: Buffer.from(body) })
    },
    piece(type, piece) {
      if (piece.length === 0) throw new Error('empty piece')
      pieces.push(Buffer.from(piece))
    },
    end(type) {
      rec.seen.push({ type, body: Buffer.concat(pieces) })
    },
  }
  return rec
}

const modes = (type: number, len: number): BodyMode =>
  type === F.CopyData ? BodyMode.Stream : type === F.Sync || type === F.Flush ? BodyMode.Skip : len > 30 ? BodyMode.Stream : BodyMode.Capture

t.test('MessageStream: valid streams split anywhere frame exactly as sent', async (t) => {
  fc.assert(
    fc.property(
      fc.array(validFrontendMessage, { maxLength: 12 }).chain((msgs) => {
        const stream = Buffer.concat(msgs)
        return fc.tuple(fc.constant(msgs), fc.constant(stream), splits(stream.length))
      }),
      ([msgs, stream, cuts]) => {
        const r = recorder(modes)
        const ms = new MessageStream(r.handler, 1 << 20, 'client')
        for (const c of chunks(stream, cuts)) ms.push(c)
        if (!ms.atBoundary) throw new Error('not at a message boundary after whole messages')
        if (r.seen.length !== msgs.length) throw new Error(`${r.seen.length} messages framed, ${msgs.length} sent`)
        msgs.forEach((m, i) => {
          const s = r.seen[i]!
          if (s.type !== m[0]) throw new Error(`message ${i}: type ${s.type} != ${m[0]}`)
          const mode = modes(m[0]!, m.length - 5)
          if (mode !== BodyMode.Skip && !s.body.equals(m.subarray(5))) throw new Error(`message ${i}: body differs`)
        })
      },
    ),
    { numRuns: 5000 },
  )
  t.pass('every message framed once, with its exact body, whatever the chunking')
})

t.test('MessageStream with a run type: counted runs report what framing every message would, in order, however split', async (t) => {
  const D = 0x44
  // Server-like streams: DataRows (the run type) among other messages, some long enough to span chunks.
  const serverMessage = fc.tuple(fc.constantFrom(D, D, D, 0x43, 0x5a, 0x54, 0x45, 0x64), fc.uint8Array({ maxLength: 40 })).map(([type, body]) => frame(type, Buffer.from(body)))
  /** Consecutive DataRow events merged into one count: what the tracker adds up. */
  type Event = { type: number; rows: number } | { type: number; body: string }
  const merged = (events: Event[]): Event[] => {
    const out: Event[] = []
    for (const e of events) {
      const last = out[out.length - 1]
      if ('rows' in e && last !== undefined && 'rows' in last) last.rows += e.rows
      else out.push({ ...e })
    }
    return out
  }
  const handlerFor = (events: Event[], withRun: boolean): MessageHandler => ({
    header: (type) => (type === D ? BodyMode.Skip : BodyMode.Capture),
    message: (type, body) => void events.push({ type, body: body.toString('hex') }),
    piece: () => undefined,
    end: (type) => void events.push(type === D ? { type, rows: 1 } : { type, body: '' }),
    ...(withRun ? { run: (type: number, n: number) => void events.push({ type, rows: n }) } : {}),
  })
  let counted = 0
  fc.assert(
    fc.property(
      fc.array(serverMessage, { maxLength: 16 }).chain((msgs) => {
        const stream = Buffer.concat(msgs)
        return fc.tuple(fc.constant(stream), splits(stream.length))
      }),
      ([stream, cuts]) => {
        const plain: Event[] = []
        const runs: Event[] = []
        const a = new MessageStream(handlerFor(plain, false), 1 << 20, 'server')
        const b = new MessageStream(handlerFor(runs, true), 1 << 20, 'server', D)
        for (const c of chunks(stream, cuts)) {
          a.push(c)
          b.push(c)
          // After each chunk both have reported the same rows so far (nothing is held back across chunks).
          if (JSON.stringify(merged(plain)) !== JSON.stringify(merged(runs))) throw new Error('events differ after a chunk')
        }
        if (!b.atBoundary) throw new Error('not at a message boundary after whole messages')
        counted += runs.filter((e) => 'rows' in e && e.rows > 1).length
      },
    ),
    { numRuns: 3000 },
  )
  t.ok(counted > 0, 'runs of several DataRows were counted in one call')
  t.throws(() => new MessageStream(handlerFor([], false), 1 << 20, 'server', D), /run\(\)/, 'a run type needs run()')
  // A DataRow with an impossible length is refused from its header, as any message is.
  const bad = Buffer.concat([frame(D, Buffer.alloc(2)), Buffer.from([D, 0, 0, 0, 2])])
  t.throws(() => new MessageStream(handlerFor([], true), 1 << 20, 'server', D).push(bad), ProtocolViolation)
  // So is one longer than the limit, even when it lies whole in the chunk.
  t.throws(() => new MessageStream(handlerFor([], true), 16, 'server', D).push(frame(D, Buffer.alloc(20))), ProtocolViolation)
})

t.test('MessageStream: mutated and random streams raise only ProtocolViolation, with bounded allocation', async (t) => {
  const MAX = 4096
  const input = fc.oneof(
    {
      weight: 3,
      arbitrary: fc
        .tuple(fc.array(validFrontendMessage, { minLength: 1, maxLength: 8 }), fc.array(mutation, { minLength: 1, maxLength: 4 }))
        .map(([msgs, ops]) => mutate(Buffer.concat(msgs), ops)),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)) },
  )
  let violations = 0
  let largestSeen = 0
  fc.assert(
    fc.property(input.chain((b) => fc.tuple(fc.constant(b), splits(b.length), fc.boolean())), ([b, cuts, captureAll]) => {
      const r = recorder(captureAll ? () => BodyMode.Capture : modes)
      const ms = new MessageStream(r.handler, MAX, 'client')
      let consumed = 0
      let refused = false
      const largest = largestAllocation(() => {
        for (const c of chunks(b, cuts)) {
          const o = onlyViolations(() => ms.push(c))
          if ('violation' in o) {
            violations++
            refused = true
            if (!/invalid message length|too large/.test(o.violation.message)) throw new Error(`unexpected violation: ${o.violation.message}`)
            return // the relay stops reading at the first violation
          }
          consumed += c.length
        }
      })
      if (!refused && consumed !== b.length) throw new Error('bytes lost')
      largestSeen = Math.max(largestSeen, largest)
      if (largest > MAX) throw new Error(`allocated ${largest} bytes with a ${MAX}-byte message limit`)
      for (const s of r.seen) if (s.body.length > MAX - 4) throw new Error('a body longer than the limit was delivered')
    }),
    { numRuns: 20000 },
  )
  t.ok(violations > 0, `the mutations did produce violations (${violations})`)
  t.ok(largestSeen > 0, `allocations were measured (largest ${largestSeen} bytes)`)
})

t.test('MessageStream: invalid lengths are refused from the 5-byte header alone', async (t) => {
  const MAX = 1 << 20
  const cases: Array<[number, RegExp]> = [
    [-1, /invalid message length -1/],
    [-0x80000000, /invalid message length/],
    [0, /invalid message length 0/],
    [3, /invalid message length 3/],
    [MAX + 1, /too large \(1048577 bytes; limit 1048576\)/],
    [0x7fffffff, /too large/],
  ]
  for (const [len, message] of cases) {
    const r = recorder(() => BodyMode.Capture)
    const ms = new MessageStream(r.handler, MAX, 'client')
    const header = Buffer.concat([Buffer.from('Q'), i32(len)])
    // Byte by byte: nothing happens before the fifth byte, the refusal on it.
    for (let i = 0; i < 4; i++) ms.push(header.subarray(i, i + 1))
    let err: unknown = null
    const largest = largestAllocation(() => {
      try {
        ms.push(header.subarray(4))
      } catch (e) {
        err = e
      }
    })
    t.type(err, ProtocolViolation, `length ${len} refused`)
    t.match((err as Error | null)?.message, message)
    t.equal((err as PgError | null)?.code, '08P01')
    t.equal(r.headers, 0, 'the handler never saw the message')
    t.ok(largest < 64, `nothing allocated for the declared body (largest allocation ${largest})`)
  }
  // The bounds themselves are accepted: an empty body (length 4) and exactly the maximum.
  const r = recorder((_type, len) => (len > 16 ? BodyMode.Stream : BodyMode.Capture))
  const ms = new MessageStream(r.handler, MAX, 'client')
  ms.push(frame(F.Sync, Buffer.alloc(0)))
  ms.push(frame(F.CopyData, Buffer.alloc(MAX - 4, 0x61)))
  t.same(r.seen.map((s) => [s.type, s.body.length]), [[F.Sync, 0], [F.CopyData, MAX - 4]])
})

// ---------------------------------------------------------------------------
// Frontend decoders on mutated valid messages

const decoders: Record<number, (body: Buffer) => unknown> = {
  [F.Query]: decodeQuery,
  [F.Parse]: decodeParse,
  [F.Bind]: (b) => decodeBind(b, 8),
  [F.Execute]: decodeExecute,
  [F.Describe]: decodeDescribe,
  [F.Close]: decodeClose,
  [F.CopyFail]: decodeCopyFail,
  [F.FunctionCall]: (b) => decodeFunctionCall(b, 8),
  [F.Password]: decodePassword,
}

t.test('frontend decoders: mutated valid bodies decode or raise ProtocolViolation', async (t) => {
  let ok = 0
  let refused = 0
  fc.assert(
    fc.property(validFrontendMessage, fc.array(mutation, { minLength: 1, maxLength: 3 }), (m, ops) => {
      const dec = decoders[m[0]!]
      if (!dec) return
      dec(m.subarray(5)) // unmutated, a valid message always decodes
      const o = onlyViolations(() => dec(mutate(m.subarray(5), ops)))
      if ('ok' in o) ok++
      else refused++
    }),
    { numRuns: 20000 },
  )
  t.ok(ok > 0 && refused > 0, `both outcomes seen (${ok} decoded, ${refused} refused)`)
})

t.test('BindStreamDecoder: allocation never follows a declared length, values stay within maxValueBytes', async (t) => {
  const MAXV = 16
  fc.assert(
    fc.property(
      fc.record({ portal: name, statement: name, values: fc.array(paramValue, { maxLength: 4 }) }),
      fc.array(mutation, { maxLength: 3 }),
      fc.nat(),
      (spec, ops, cutSeed) => {
        const msg = serialize.bind({ portal: spec.portal, statement: spec.statement, values: spec.values as Array<string | Buffer | null> })
        const body = mutate(msg.subarray(5), ops)
        const d = new BindStreamDecoder(body.length, MAXV)
        const cut = body.length === 0 ? 0 : cutSeed % body.length
        const largest = largestAllocation(() => {
          onlyViolations(() => {
            d.push(body.subarray(0, cut))
            d.push(body.subarray(cut))
            for (const p of d.result().params) if (p.value.length > MAXV) throw new Error('value longer than maxValueBytes kept')
          })
        })
        if (largest > Math.max(MAXV, body.length)) throw new Error(`allocated ${largest} bytes for a ${body.length}-byte body`)
      },
    ),
    { numRuns: 5000 },
  )
  t.pass('bounded')
})

// ---------------------------------------------------------------------------
// Startup phase: decodeStartupPacket and the handshake SocketReader

const SSL_REQUEST = serialize.requestSsl()
const startupPacket = fc
  .dictionary(
    fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 10 }).map((s) => s.replace(/\0/g, '') || 'k'),
    fc.string({ maxLength: 20 }).map((s) => s.replace(/\0/g, '')),
    { maxKeys: 5 },
  )
  .map((params) => serialize.startup({ user: 'app', database: 'appdb', ...params }))

t.test('decodeStartupPacket: mutated valid packets decode or raise ProtocolViolation', async (t) => {
  let decoded = 0
  let refused = 0
  fc.assert(
    fc.property(fc.oneof(startupPacket, fc.constant(SSL_REQUEST), fc.constant(serialize.cancel(1234, 5678))), fc.array(mutation, { minLength: 1, maxLength: 4 }), (p, ops) => {
      decodeStartupPacket(p)
      const m = mutate(p, ops)
      const length = onlyViolations(() => startupPacketLength(m))
      const whole = onlyViolations(() => decodeStartupPacket(m))
      if ('violation' in length && 'ok' in whole) throw new Error('a packet with an invalid length word decoded')
      if ('ok' in whole) {
        decoded++
        if (m.length > MAX_STARTUP_PACKET_BYTES) throw new Error('an oversized packet decoded')
      } else {
        refused++
      }
    }),
    { numRuns: 10000 },
  )
  t.ok(decoded > 0 && refused > 0, `both outcomes seen (${decoded} decoded, ${refused} refused)`)
})

/** Everything a SocketReader yields from `input` (written in `cuts` chunks, then ended), and how it stopped. */
async function readAll(input: Buffer, cuts: number[], limit: number): Promise<{ packets: Buffer[]; stop: Error; maxBuffered: number }> {
  const socket = new PassThrough()
  const reader = new SocketReader(socket, limit)
  for (const c of chunks(input, cuts)) socket.write(c)
  socket.end()
  const packets: Buffer[] = []
  let maxBuffered = 0
  const guard = setTimeout(() => socket.destroy(new Error('the reader did not settle')), 5000)
  try {
    for (;;) {
      maxBuffered = Math.max(maxBuffered, reader.buffered)
      try {
        packets.push(await reader.readStartupPacket())
      } catch (stop) {
        return { packets, stop: stop as Error, maxBuffered }
      }
    }
  } finally {
    clearTimeout(guard)
  }
}

t.test('SocketReader: a startup phase fed anything, in any chunks, settles with packets or a typed error', async (t) => {
  const LIMIT = 16384
  const input = fc.oneof(
    fc.tuple(fc.array(fc.oneof(startupPacket, fc.constant(SSL_REQUEST)), { minLength: 1, maxLength: 3 }), fc.array(mutation, { maxLength: 3 }))
      .map(([ps, ops]) => mutate(Buffer.concat(ps), ops)),
    fc.uint8Array({ maxLength: 100 }).map((a) => Buffer.from(a)),
  )
  let packets = 0
  await fc.assert(
    fc.asyncProperty(input.chain((b) => fc.tuple(fc.constant(b), splits(b.length))), async ([b, cuts]) => {
      const r = await readAll(b, cuts, LIMIT)
      if (!(r.stop instanceof ProtocolViolation || r.stop instanceof ClientGone)) throw r.stop
      if (r.maxBuffered > LIMIT) throw new Error(`buffered ${r.maxBuffered} bytes`)
      for (const p of r.packets) {
        packets++
        if (p.length < 8 || p.length > MAX_STARTUP_PACKET_BYTES || p.readInt32BE(0) !== p.length) throw new Error('a packet with a bad length was returned')
        onlyViolations(() => decodeStartupPacket(p))
      }
    }),
    { numRuns: 3000 },
  )
  t.ok(packets > 0, `packets were read (${packets})`)
})

t.test('SocketReader: a flood before authentication is cut off at the limit', async (t) => {
  const socket = new PassThrough()
  const reader = new SocketReader(socket, 1024)
  // A plausible length word (within the 10,000-byte startup limit) and then far more than the limit.
  const head = i32(9000)
  socket.write(Buffer.concat([head, Buffer.alloc(4000)]))
  const err = await reader.readStartupPacket().then(() => null, (e: unknown) => e)
  t.type(err, ProtocolViolation)
  t.match((err as Error).message, /too much data before authentication/)
  socket.destroy()
})

t.test('SocketReader.readMessage: too-large or negative lengths are refused from the header, without waiting for the body', async (t) => {
  for (const [len, type, want] of [
    [1000, 0x70, MessageTooLarge],
    [0x7fffffff, 0x70, MessageTooLarge],
    [-1, 0x70, ProtocolViolation],
    [3, 0x51, ProtocolViolation],
  ] as const) {
    const socket = new PassThrough()
    const reader = new SocketReader(socket, 1 << 20)
    socket.write(Buffer.concat([Buffer.from([type]), i32(len)])) // the header only; the stream stays open
    const err = await reader.readMessage(64).then(() => null, (e: unknown) => e)
    t.type(err, want, `length ${len}`)
    if (err instanceof MessageTooLarge) {
      t.equal(err.type, type)
      t.equal(err.length, len)
      t.equal(err.maxBody, 64)
    }
    t.equal((err as PgError).code, '08P01')
    socket.destroy()
  }
  await fc.assert(
    fc.asyncProperty(fc.string({ maxLength: 80 }), fc.array(mutation, { maxLength: 3 }), async (password, ops) => {
      const socket = new PassThrough()
      const reader = new SocketReader(socket, 1 << 20)
      socket.end(mutate(serialize.password(password.replace(/\0/g, '')), ops))
      try {
        const m = await reader.readMessage(64)
        if (m.body.length > 64) throw new Error('a body over the limit was returned')
      } catch (e) {
        if (!(e instanceof ProtocolViolation || e instanceof ClientGone)) throw e
      }
    }),
    { numRuns: 2000 },
  )
})
