import t from 'tap'
import type { Test } from 'tap'
import fc from 'fast-check'
// Subpath import: tap's ts-node loader mis-resolves the package's ESM entry.
import { serialize } from 'pg-protocol/dist/serializer'
import { ProtocolViolation } from '../../src/protocol/errors.js'
import {
  BindStreamDecoder,
  FrontendType,
  MAX_NAME_BYTES,
  assertEmptyBody,
  bindParamFormat,
  decodeBind,
  decodeClose,
  decodeCopyFail,
  decodeDescribe,
  decodeExecute,
  decodeFunctionCall,
  decodeParse,
  decodePassword,
  decodeQuery,
  type DecodedBind,
} from '../../src/protocol/frontend.js'

/** Check header of a serialized message and return its body. */
function body(msg: Buffer, type: number): Buffer {
  if (msg[0] !== type) throw new Error(`type ${msg[0]} != ${type}`)
  if (msg.readInt32BE(1) !== msg.length - 1) throw new Error('length word')
  return msg.subarray(5)
}

function throwsPV(t: Test, fn: () => unknown, message?: RegExp | string): void {
  try {
    fn()
    t.fail('expected ProtocolViolation')
  } catch (e) {
    if (!(e instanceof ProtocolViolation)) {
      t.fail(`expected ProtocolViolation, got ${String(e)}`)
      return
    }
    t.equal(e.code, '08P01')
    if (message !== undefined) t.match(e.message, message)
  }
}

const cstr = (s: string) => Buffer.from(s + '\0')
const u16 = (n: number) => {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(n & 0xffff)
  return b
}
const i32 = (n: number) => {
  const b = Buffer.alloc(4)
  b.writeInt32BE(n)
  return b
}

interface BindSpec {
  portal: string
  statement: string
  paramFormats: number[]
  params: (Buffer | null)[]
  resultFormats: number[]
}

function encodeBindBody(s: BindSpec): Buffer {
  const parts: Buffer[] = [cstr(s.portal), cstr(s.statement), u16(s.paramFormats.length)]
  for (const f of s.paramFormats) parts.push(u16(f))
  parts.push(u16(s.params.length))
  for (const p of s.params) {
    if (p === null) parts.push(i32(-1))
    else parts.push(i32(p.length), p)
  }
  parts.push(u16(s.resultFormats.length))
  for (const f of s.resultFormats) parts.push(u16(f))
  return Buffer.concat(parts)
}

function expectedBind(s: BindSpec, max: number): DecodedBind {
  return {
    portal: s.portal,
    statement: s.statement,
    paramFormats: s.paramFormats,
    params: s.params.map((p) =>
      p === null
        ? { isNull: true, length: -1, value: Buffer.alloc(0), truncated: false }
        : { isNull: false, length: p.length, value: p.subarray(0, max), truncated: p.length > max },
    ),
    resultFormats: s.resultFormats.map((f) => (f << 16) >> 16),
  }
}

function streamDecode(b: Buffer, max: number, cuts: number[]): DecodedBind {
  const d = new BindStreamDecoder(b.length, max)
  let prev = 0
  for (const c of [...cuts].sort((x, y) => x - y)) {
    d.push(b.subarray(prev, c))
    prev = c
  }
  d.push(b.subarray(prev))
  return d.result()
}

/** Outcome of a decode: the value, or the ProtocolViolation message. Rethrows anything else. */
function outcome<T>(fn: () => T): { ok: T } | { err: string } {
  try {
    return { ok: fn() }
  } catch (e) {
    if (e instanceof ProtocolViolation) return { err: e.message }
    throw e
  }
}

t.test('FrontendType codes', async (t) => {
  t.equal(FrontendType.Query, 'Q'.charCodeAt(0))
  t.equal(FrontendType.Bind, 'B'.charCodeAt(0))
  t.equal(FrontendType.CopyData, 'd'.charCodeAt(0))
  t.equal(FrontendType.Password, 'p'.charCodeAt(0))
  t.equal(serialize.sync()[0], FrontendType.Sync)
  t.equal(serialize.flush()[0], FrontendType.Flush)
  t.equal(serialize.end()[0], FrontendType.Terminate)
  t.equal(serialize.copyDone()[0], FrontendType.CopyDone)
  t.equal(serialize.copyData(Buffer.from('x'))[0], FrontendType.CopyData)
})

t.test('round-trips with pg-protocol serialize', async (t) => {
  t.same(decodeQuery(body(serialize.query('select 1 -- ✓'), FrontendType.Query)), { text: 'select 1 -- ✓' })
  t.same(decodeQuery(body(serialize.query(''), FrontendType.Query)), { text: '' })

  t.same(decodeParse(body(serialize.parse({ name: 's1', text: 'select $1, $2', types: [23, 0, 4294967295] }), FrontendType.Parse)), {
    name: 's1',
    text: 'select $1, $2',
    paramTypes: [23, 0, 4294967295],
  })
  t.same(decodeParse(body(serialize.parse({ text: 'select 1' }), FrontendType.Parse)), {
    name: '',
    text: 'select 1',
    paramTypes: [],
  })

  const bin = Buffer.from([0, 1, 2, 255])
  const b = decodeBind(
    body(serialize.bind({ portal: 'p1', statement: 's1', values: ['abc', null, bin, 'ü', ''], binary: true }), FrontendType.Bind),
    1000,
  )
  t.same(b, {
    portal: 'p1',
    statement: 's1',
    paramFormats: [0, 0, 1, 0, 0],
    params: [
      { isNull: false, length: 3, value: Buffer.from('abc'), truncated: false },
      { isNull: true, length: -1, value: Buffer.alloc(0), truncated: false },
      { isNull: false, length: 4, value: bin, truncated: false },
      { isNull: false, length: 2, value: Buffer.from('ü'), truncated: false },
      { isNull: false, length: 0, value: Buffer.alloc(0), truncated: false },
    ],
    resultFormats: [1],
  })
  t.same(bindParamFormat(b, 2), 1)
  t.same(bindParamFormat(b, 0), 0)
  t.same(decodeBind(body(serialize.bind(), FrontendType.Bind), 10), {
    portal: '',
    statement: '',
    paramFormats: [],
    params: [],
    resultFormats: [0],
  })
  // Truncation
  const tr = decodeBind(body(serialize.bind({ values: ['0123456789'] }), FrontendType.Bind), 4)
  t.same(tr.params[0], { isNull: false, length: 10, value: Buffer.from('0123'), truncated: true })
  const tr0 = decodeBind(body(serialize.bind({ values: ['0123456789'] }), FrontendType.Bind), 0)
  t.same(tr0.params[0], { isNull: false, length: 10, value: Buffer.alloc(0), truncated: true })

  t.same(decodeExecute(body(serialize.execute({ portal: 'p1', rows: 100 }), FrontendType.Execute)), { portal: 'p1', maxRows: 100 })
  t.same(decodeExecute(body(serialize.execute(), FrontendType.Execute)), { portal: '', maxRows: 0 })

  t.same(decodeDescribe(body(serialize.describe({ type: 'S', name: 'stmt' }), FrontendType.Describe)), { target: 'S', name: 'stmt' })
  t.same(decodeDescribe(body(serialize.describe({ type: 'P' }), FrontendType.Describe)), { target: 'P', name: '' })
  t.same(decodeDescribe(body(serialize.describe({ type: 'S' }), FrontendType.Describe)), { target: 'S', name: '' })
  t.same(decodeClose(body(serialize.close({ type: 'P', name: 'c' }), FrontendType.Close)), { target: 'P', name: 'c' })
  t.same(decodeClose(body(serialize.close({ type: 'S' }), FrontendType.Close)), { target: 'S', name: '' })

  t.same(decodeCopyFail(body(serialize.copyFail('boom'), FrontendType.CopyFail)), { message: 'boom' })
  t.equal(decodePassword(body(serialize.password('s3cr3t ✓'), FrontendType.Password)), 's3cr3t ✓')
  t.equal(decodePassword(body(serialize.password(''), FrontendType.Password)), '')

  t.same(body(serialize.copyData(Buffer.from('a\tb\n')), FrontendType.CopyData), Buffer.from('a\tb\n'))
  for (const m of [serialize.sync(), serialize.flush(), serialize.end(), serialize.copyDone()]) {
    t.doesNotThrow(() => assertEmptyBody(body(m, m[0]!), 'X'))
  }
})

t.test('test encoder agrees with pg-protocol', async (t) => {
  const spec: BindSpec = {
    portal: 'p',
    statement: 's',
    paramFormats: [0, 1],
    params: [Buffer.from('x'), Buffer.from([9])],
    resultFormats: [0],
  }
  t.same(encodeBindBody(spec), body(serialize.bind({ portal: 'p', statement: 's', values: ['x', Buffer.from([9])] }), FrontendType.Bind))
})

t.test('bind format rules', async (t) => {
  t.equal(bindParamFormat({ paramFormats: [] }, 5), 0)
  t.equal(bindParamFormat({ paramFormats: [1] }, 5), 1)
  t.equal(bindParamFormat({ paramFormats: [0, 1, 0] }, 1), 1)
  t.equal(bindParamFormat({ paramFormats: [0, 1, 0] }, 2), 0)
  const one = decodeBind(
    encodeBindBody({ portal: '', statement: '', paramFormats: [1], params: [Buffer.from('a'), null], resultFormats: [1, 0, 65535] }),
    10,
  )
  t.same(one.paramFormats, [1])
  t.same(one.resultFormats, [1, 0, -1]) // result formats as sent (signed)
  t.equal(bindParamFormat(one, 1), 1)
})

t.test('function call', async (t) => {
  const b = Buffer.concat([i32(1598), u16(2), u16(0), u16(1), u16(2), i32(3), Buffer.from('abc'), i32(-1), u16(1)])
  t.same(decodeFunctionCall(b, 2), {
    functionOid: 1598,
    argFormats: [0, 1],
    args: [
      { isNull: false, length: 3, value: Buffer.from('ab'), truncated: true },
      { isNull: true, length: -1, value: Buffer.alloc(0), truncated: false },
    ],
    resultFormat: 1,
  })
  const oid = Buffer.concat([i32(-1), u16(0), u16(0), u16(0)])
  t.equal(decodeFunctionCall(oid, 2).functionOid, 4294967295)
  throwsPV(t, () => decodeFunctionCall(Buffer.concat([i32(1), u16(2), u16(0), u16(0), u16(1), i32(-1), u16(0)]), 1), /2 argument formats but 1 arguments/)
  throwsPV(t, () => decodeFunctionCall(Buffer.concat([i32(1), u16(0), u16(1), i32(-2), u16(0)]), 1), /insufficient data/)
  throwsPV(t, () => decodeFunctionCall(Buffer.concat([i32(1), u16(1), u16(7), u16(0), u16(0)]), 1), /unsupported format code: 7/)
  throwsPV(t, () => decodeFunctionCall(Buffer.concat([i32(1), u16(0), u16(0), u16(0), Buffer.from([0])]), 1), /invalid message format/)
  throwsPV(t, () => decodeFunctionCall(Buffer.concat([i32(1), u16(0), u16(0)]), 1), /insufficient data/)
  t.throws(() => decodeFunctionCall(oid, -1), RangeError)
})

t.test('malformed messages', async (t) => {
  // Query
  throwsPV(t, () => decodeQuery(Buffer.alloc(0)), 'invalid string in message')
  throwsPV(t, () => decodeQuery(Buffer.from('select 1')), 'invalid string in message')
  throwsPV(t, () => decodeQuery(Buffer.from('select 1\0x')), 'invalid message format')
  throwsPV(t, () => decodeQuery(Buffer.from('select 1\0\0')), 'invalid message format')
  // Parse
  const pb = body(serialize.parse({ name: 's', text: 'select $1', types: [23] }), FrontendType.Parse)
  for (let i = 0; i < pb.length; i++) throwsPV(t, () => decodeParse(pb.subarray(0, i)))
  throwsPV(t, () => decodeParse(Buffer.concat([pb, Buffer.from([1])])), 'invalid message format')
  throwsPV(t, () => decodeParse(Buffer.concat([cstr('s'), cstr('q'), u16(0xffff)])), 'insufficient data left in message')
  throwsPV(t, () => decodeParse(Buffer.concat([cstr('x'.repeat(MAX_NAME_BYTES + 1)), cstr('q'), u16(0)])), /invalid message format/)
  t.equal(decodeParse(Buffer.concat([cstr('x'.repeat(MAX_NAME_BYTES)), cstr('q'), u16(0)])).name.length, MAX_NAME_BYTES)
  // Bind
  const bb = body(serialize.bind({ portal: 'p', statement: 's', values: ['abc', null, Buffer.from([1])] }), FrontendType.Bind)
  for (let i = 0; i < bb.length; i++) throwsPV(t, () => decodeBind(bb.subarray(0, i), 100))
  throwsPV(t, () => decodeBind(Buffer.concat([bb, Buffer.from([0])]), 100), 'invalid message format')
  const spec = (over: Partial<BindSpec>): Buffer =>
    encodeBindBody({ portal: '', statement: '', paramFormats: [], params: [], resultFormats: [], ...over })
  throwsPV(t, () => decodeBind(spec({ paramFormats: [0, 1], params: [null] }), 1), 'bind message has 2 parameter formats but 1 parameters')
  throwsPV(t, () => decodeBind(spec({ paramFormats: [2], params: [null] }), 1), 'unsupported format code: 2')
  throwsPV(t, () => decodeBind(spec({ paramFormats: [0xffff], params: [null] }), 1), 'unsupported format code: -1')
  // negative count (0xFFFF) is read as 65535, as PostgreSQL does -> not enough data
  throwsPV(t, () => decodeBind(Buffer.concat([cstr(''), cstr(''), u16(0), u16(0xffff), u16(0)]), 1), 'insufficient data left in message')
  throwsPV(t, () => decodeBind(Buffer.concat([cstr(''), cstr(''), u16(0xffff)]), 1), 'insufficient data left in message')
  // bad value lengths
  const withLen = (len: number, data = Buffer.alloc(0)) => Buffer.concat([cstr(''), cstr(''), u16(0), u16(1), i32(len), data, u16(0)])
  throwsPV(t, () => decodeBind(withLen(-2), 1), 'insufficient data left in message')
  throwsPV(t, () => decodeBind(withLen(-0x80000000), 1), 'insufficient data left in message')
  throwsPV(t, () => decodeBind(withLen(0x7fffffff), 1), 'insufficient data left in message')
  throwsPV(t, () => decodeBind(withLen(5, Buffer.from('abcd')), 1), 'insufficient data left in message')
  t.same(decodeBind(withLen(4, Buffer.from('abcd')), 1).params[0], { isNull: false, length: 4, value: Buffer.from('a'), truncated: true })
  throwsPV(t, () => decodeBind(Buffer.from('p'), 1), 'invalid string in message')
  throwsPV(t, () => decodeBind(Buffer.from('p\0s'), 1), 'invalid string in message')
  throwsPV(t, () => decodeBind(spec({ portal: 'x'.repeat(MAX_NAME_BYTES + 1) }), 1), /invalid message format/)
  t.throws(() => decodeBind(bb, -1), RangeError)
  t.throws(() => decodeBind(bb, 1.5), RangeError)
  // Execute
  const eb = body(serialize.execute({ portal: 'p', rows: 5 }), FrontendType.Execute)
  for (let i = 0; i < eb.length; i++) throwsPV(t, () => decodeExecute(eb.subarray(0, i)))
  throwsPV(t, () => decodeExecute(Buffer.concat([eb, Buffer.from([0])])), 'invalid message format')
  t.equal(decodeExecute(Buffer.concat([cstr(''), i32(-5)])).maxRows, -5)
  // Describe / Close
  throwsPV(t, () => decodeDescribe(Buffer.alloc(0)), 'insufficient data left in message')
  throwsPV(t, () => decodeDescribe(Buffer.from('X\0')), 'invalid DESCRIBE message subtype 88')
  throwsPV(t, () => decodeClose(Buffer.from('Q\0')), 'invalid CLOSE message subtype 81')
  throwsPV(t, () => decodeDescribe(Buffer.from('S')), 'invalid string in message')
  throwsPV(t, () => decodeClose(Buffer.from('Sname')), 'invalid string in message')
  throwsPV(t, () => decodeClose(Buffer.from('Sname\0\0')), 'invalid message format')
  // CopyFail: trailing ignored (as PostgreSQL), missing NUL is not
  t.same(decodeCopyFail(Buffer.from('why\0junk')), { message: 'why' })
  throwsPV(t, () => decodeCopyFail(Buffer.from('why')), 'invalid string in message')
  // Password
  throwsPV(t, () => decodePassword(Buffer.alloc(0)), 'invalid password packet size')
  throwsPV(t, () => decodePassword(Buffer.from('pw')), 'invalid password packet size')
  throwsPV(t, () => decodePassword(Buffer.from('pw\0\0')), 'invalid password packet size')
  throwsPV(t, () => decodePassword(Buffer.from('p\0w\0')), 'invalid password packet size')
  throwsPV(t, () => decodePassword(Buffer.from([0xff, 0xfe, 0])), /UTF-8/)
  // Sync/Flush bodies
  throwsPV(t, () => assertEmptyBody(Buffer.from([0]), 'Sync'), 'invalid message format')
})

t.test('values are views into the body (zero-copy)', async (t) => {
  const b = body(serialize.bind({ values: ['hello'] }), FrontendType.Bind)
  const d = decodeBind(b, 100)
  t.equal(d.params[0]!.value.buffer, b.buffer)
})

// ---------------------------------------------------------------------------
// Streaming

const bindSpecArb: fc.Arbitrary<BindSpec> = fc
  .record({
    portal: fc.string({ maxLength: 8, unit: 'binary' }).map((s) => s.replaceAll('\0', '')),
    statement: fc.string({ maxLength: 8, unit: 'binary' }).map((s) => s.replaceAll('\0', '')),
    params: fc.array(fc.option(fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)), { nil: null }), { maxLength: 6 }),
    fmtMode: fc.constantFrom('none', 'one', 'each'),
    fmtBits: fc.array(fc.constantFrom(0, 1), { minLength: 6, maxLength: 6 }),
    resultFormats: fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 4 }),
  })
  .map(({ portal, statement, params, fmtMode, fmtBits, resultFormats }) => ({
    portal,
    statement,
    params,
    paramFormats: fmtMode === 'none' ? [] : fmtMode === 'one' ? [fmtBits[0]!] : fmtBits.slice(0, params.length),
    resultFormats,
  }))

function cutsArb(len: number): fc.Arbitrary<number[]> {
  return fc.array(fc.integer({ min: 0, max: len }), { maxLength: 12 })
}

t.test('BindStreamDecoder equals decodeBind for random splits', async (t) => {
  fc.assert(
    fc.property(
      bindSpecArb.chain((spec) => {
        const b = encodeBindBody(spec)
        return fc.tuple(fc.constant(spec), fc.constant(b), cutsArb(b.length), fc.integer({ min: 0, max: 50 }))
      }),
      ([spec, b, cuts, max]) => {
        const whole = decodeBind(b, max)
        const expected = expectedBind(spec, max)
        if (!deepEqualBind(whole, expected)) throw new Error('decodeBind mismatch')
        const streamed = streamDecode(b, max, cuts)
        if (!deepEqualBind(streamed, expected)) throw new Error('stream mismatch')
      },
    ),
    { numRuns: 2000 },
  )
  t.pass('ok')
})

function deepEqualBind(a: DecodedBind, b: DecodedBind): boolean {
  if (a.portal !== b.portal || a.statement !== b.statement) return false
  if (JSON.stringify(a.paramFormats) !== JSON.stringify(b.paramFormats)) return false
  if (JSON.stringify(a.resultFormats) !== JSON.stringify(b.resultFormats)) return false
  if (a.params.length !== b.params.length) return false
  return a.params.every((p, i) => {
    const q = b.params[i]!
    return p.isNull === q.isNull && p.length === q.length && p.truncated === q.truncated && p.value.equals(q.value)
  })
}

t.test('BindStreamDecoder: every 2- and 3-way split, and byte-by-byte', async (t) => {
  const spec: BindSpec = {
    portal: 'pörtal',
    statement: 'stmt',
    paramFormats: [0, 1, 0],
    params: [Buffer.from('hello'), null, Buffer.from([0, 0, 0, 0, 0, 1])],
    resultFormats: [1, 0],
  }
  const b = encodeBindBody(spec)
  for (const max of [0, 3, 100]) {
    const exp = expectedBind(spec, max)
    let ok = true
    for (let i = 0; i <= b.length; i++) {
      for (let j = i; j <= b.length; j++) ok &&= deepEqualBind(streamDecode(b, max, [i, j]), exp)
    }
    t.ok(ok, `all splits, max ${max}`)
    const d = new BindStreamDecoder(b.length, max)
    for (let i = 0; i < b.length; i++) d.push(b.subarray(i, i + 1))
    t.ok(deepEqualBind(d.result(), exp), `byte by byte, max ${max}`)
  }
})

t.test('BindStreamDecoder: 1 MiB parameter, maxValueBytes 100', async (t) => {
  const big = Buffer.alloc(1024 * 1024)
  for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff
  const spec: BindSpec = { portal: '', statement: 's', paramFormats: [1], params: [Buffer.from('x'), big, null], resultFormats: [] }
  const b = encodeBindBody(spec)
  fc.assert(
    fc.property(cutsArb(b.length), (cuts) => {
      const r = streamDecode(b, 100, cuts)
      const p = r.params[1]!
      if (p.length !== big.length || !p.truncated || !p.value.equals(big.subarray(0, 100))) throw new Error('bad')
      // Copied, not a view into a chunk: the backing store is small.
      if (p.value.buffer.byteLength >= 65536) throw new Error('retains chunk')
      if (!deepEqualBind(r, decodeBind(b, 100))) throw new Error('mismatch')
    }),
    { numRuns: 50 },
  )
  // Typical socket-sized chunks.
  const d = new BindStreamDecoder(b.length, 100)
  for (let off = 0; off < b.length; off += 65536) d.push(b.subarray(off, Math.min(b.length, off + 65536)))
  const r = d.result()
  t.same(r.params[1]!.value, big.subarray(0, 100))
  t.equal(r.params[1]!.length, 1024 * 1024)
  t.equal(r.params[1]!.truncated, true)
  t.same(r.params[0], { isNull: false, length: 1, value: Buffer.from('x'), truncated: false })
  t.equal(r.params[2]!.isNull, true)
})

t.test('BindStreamDecoder: errors', async (t) => {
  // Huge declared length: rejected as soon as the length word arrives.
  const head = Buffer.concat([cstr(''), cstr(''), u16(0), u16(1), i32(0x7fffffff)])
  const d1 = new BindStreamDecoder(head.length + 100, 10)
  throwsPV(t, () => d1.push(head), 'insufficient data left in message')
  throwsPV(t, () => d1.push(Buffer.alloc(1)), 'insufficient data left in message') // dead: rethrows
  throwsPV(t, () => d1.result(), 'insufficient data left in message')

  const d2 = new BindStreamDecoder(head.length, 10)
  throwsPV(t, () => d2.push(Buffer.concat([cstr(''), cstr(''), u16(0), u16(1), i32(-7)])), 'insufficient data left in message')

  // Name too long: detected before the NUL arrives, while data streams in.
  const d3 = new BindStreamDecoder(10 * MAX_NAME_BYTES, 10)
  d3.push(Buffer.alloc(MAX_NAME_BYTES, 0x61))
  throwsPV(t, () => d3.push(Buffer.alloc(10, 0x61)), /invalid message format/)

  // Trailing garbage.
  const ok = encodeBindBody({ portal: '', statement: '', paramFormats: [], params: [], resultFormats: [] })
  const d4 = new BindStreamDecoder(ok.length + 1, 10)
  d4.push(ok)
  throwsPV(t, () => d4.push(Buffer.from([0])), 'invalid message format')

  // Incomplete.
  const d5 = new BindStreamDecoder(ok.length, 10)
  d5.push(ok.subarray(0, 3))
  throwsPV(t, () => d5.result(), 'insufficient data left in message')
  d5.push(ok.subarray(3))
  t.same(d5.result(), decodeBind(ok, 10))
  t.equal(d5.result(), d5.result(), 'result is memoised')

  // Body ends inside a string / integer.
  throwsPV(t, () => new BindStreamDecoder(0, 1).result(), 'invalid string in message')
  const d6 = new BindStreamDecoder(2, 1)
  d6.push(Buffer.from('ab'))
  throwsPV(t, () => d6.result(), 'invalid string in message')
  const d7 = new BindStreamDecoder(3, 1)
  d7.push(Buffer.from([0, 0, 0]))
  throwsPV(t, () => d7.result(), 'insufficient data left in message')

  // Format errors.
  const badFmt = encodeBindBody({ portal: '', statement: '', paramFormats: [3], params: [null], resultFormats: [] })
  throwsPV(t, () => streamDecode(badFmt, 1, []), 'unsupported format code: 3')
  const mism = encodeBindBody({ portal: '', statement: '', paramFormats: [0, 0, 0], params: [null], resultFormats: [] })
  throwsPV(t, () => streamDecode(mism, 1, [5]), 'bind message has 3 parameter formats but 1 parameters')

  // Caller bugs.
  const d8 = new BindStreamDecoder(2, 1)
  t.throws(() => d8.push(Buffer.alloc(3)), Error)
  t.throws(() => new BindStreamDecoder(-1, 1), RangeError)
  t.throws(() => new BindStreamDecoder(1, -1), RangeError)
})

t.test('BindStreamDecoder agrees with decodeBind on corrupted bodies', async (t) => {
  const corrupted = fc
    .tuple(bindSpecArb, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.nat(), fc.boolean())
    .map(([spec, flips, cut, doCut]) => {
      const b = Buffer.from(encodeBindBody(spec))
      for (const [pos, val] of flips) if (b.length > 0) b[pos % b.length] = val
      return doCut ? b.subarray(0, cut % (b.length + 1)) : b
    })
  fc.assert(
    fc.property(
      fc.oneof(corrupted, fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a))).chain((b) =>
        fc.tuple(fc.constant(b), cutsArb(b.length), fc.integer({ min: 0, max: 20 })),
      ),
      ([b, cuts, max]) => {
        const whole = outcome(() => decodeBind(b, max))
        const streamed = outcome(() => streamDecode(b, max, cuts))
        if ('err' in whole) {
          if (!('err' in streamed) || streamed.err !== whole.err) throw new Error(`stream ${JSON.stringify(streamed)} vs ${whole.err}`)
        } else if (!('ok' in streamed) || !deepEqualBind(streamed.ok, whole.ok)) {
          throw new Error('stream result differs')
        }
      },
    ),
    { numRuns: 5000 },
  )
  t.pass('ok')
})

t.test('random buffers: every decoder returns or throws ProtocolViolation', async (t) => {
  const decoders: ((b: Buffer) => unknown)[] = [
    decodeQuery,
    decodeParse,
    (b) => decodeBind(b, 8),
    decodeExecute,
    decodeDescribe,
    decodeClose,
    decodeCopyFail,
    (b) => decodeFunctionCall(b, 8),
    decodePassword,
    (b) => assertEmptyBody(b, 'Sync'),
  ]
  // Biased towards small numbers and NULs so that decoders get past their first fields.
  const byte = fc.oneof(fc.constantFrom(0, 0, 0, 1, 0xff, 0x53, 0x50), fc.integer({ min: 0, max: 255 }))
  const buffers = fc.oneof(
    fc.uint8Array({ maxLength: 80 }).map((a) => Buffer.from(a)),
    fc.array(byte, { maxLength: 80 }).map((a) => Buffer.from(a)),
  )
  fc.assert(
    fc.property(buffers, (b) => {
      for (const dec of decoders) outcome(() => dec(b))
    }),
    { numRuns: 20000 },
  )
  t.pass('ok')
})
