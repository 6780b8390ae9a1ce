import t from 'tap'
import type { Test } from 'tap'
import fc from 'fast-check'
// Subpath import: tap's ts-node loader mis-resolves the package's ESM entry.
import { serialize } from 'pg-protocol/dist/serializer'
import { ProtocolViolation, SilentProtocolViolation } from '../../src/protocol/errors.js'
import {
  MAX_STARTUP_PACKET_BYTES,
  decodeStartupPacket,
  startupPacketLength,
} from '../../src/protocol/startup.js'

/** Build a startup-style packet: length word + int32 code + raw rest. */
function packet(code: number, rest: Buffer = Buffer.alloc(0)): Buffer {
  const buf = Buffer.alloc(8 + rest.length)
  buf.writeInt32BE(buf.length, 0)
  buf.writeUInt32BE(code, 4)
  rest.copy(buf, 8)
  return buf
}

function params(...kv: string[]): Buffer {
  return Buffer.concat([...kv.map((s) => Buffer.from(s + '\0')), Buffer.from([0])])
}

const V30 = (3 << 16) | 0

/**
 * Expect a ProtocolViolation with PostgreSQL's answer: `code` is the SQLSTATE of its FATAL,
 * or 'silent' where PostgreSQL closes without one (ereport COMMERROR).
 */
function throwsPV(t: Test, fn: () => unknown, message?: RegExp | string, code: string = '08P01'): void {
  try {
    fn()
    t.fail('expected ProtocolViolation')
  } catch (e) {
    t.type(e, ProtocolViolation)
    t.equal(e instanceof SilentProtocolViolation ? 'silent' : (e as ProtocolViolation).code, code, `answer: ${code}`)
    if (message !== undefined) t.match((e as Error).message, message)
  }
}

t.test('startupPacketLength', async (t) => {
  t.equal(startupPacketLength(Buffer.alloc(0)), null)
  t.equal(startupPacketLength(Buffer.from([0, 0, 0])), null)
  t.equal(startupPacketLength(Buffer.from([0, 0, 0, 8])), 8)
  t.equal(startupPacketLength(serialize.startup({ user: 'alice' })), serialize.startup({ user: 'alice' }).length)
  const max = Buffer.alloc(4)
  max.writeInt32BE(MAX_STARTUP_PACKET_BYTES)
  t.equal(startupPacketLength(max), MAX_STARTUP_PACKET_BYTES)
  for (const bad of [0, 4, 7, -1, MAX_STARTUP_PACKET_BYTES + 1, 0x7fffffff]) {
    const b = Buffer.alloc(4)
    b.writeInt32BE(bad)
    throwsPV(t, () => startupPacketLength(b), /invalid length of startup packet/, 'silent')
  }
  // PostgreSQL's MAX_STARTUP_PACKET_LENGTH (10000) does not count the length word.
  t.equal(MAX_STARTUP_PACKET_BYTES, 10004)
  // A Terminate or an HTTP request sent first: an impossible length word.
  throwsPV(t, () => startupPacketLength(Buffer.from([0x58, 0, 0, 0, 4])), /invalid length/, 'silent')
  throwsPV(t, () => startupPacketLength(Buffer.from('GET / HTTP/1.1')), /invalid length/, 'silent')
})

t.test('startup round-trip with pg-protocol', async (t) => {
  const buf = serialize.startup({ user: 'alice', database: 'shop', application_name: 'psql ✓' })
  const p = decodeStartupPacket(buf)
  if (p.kind !== 'startup') throw new Error('kind')
  t.equal(p.major, 3)
  t.equal(p.minor, 0)
  t.same(
    [...p.parameters],
    [
      ['user', 'alice'],
      ['database', 'shop'],
      ['application_name', 'psql ✓'],
      ['client_encoding', 'UTF8'],
    ],
  )
})

t.test('database defaults to user', async (t) => {
  for (const buf of [
    serialize.startup({ user: 'bob' }),
    packet(V30, params('user', 'bob', 'database', '')),
  ]) {
    const p = decodeStartupPacket(buf)
    if (p.kind !== 'startup') throw new Error('kind')
    t.equal(p.parameters.get('database'), 'bob')
  }
})

t.test('protocol 3.2 and _pq_ options are kept', async (t) => {
  const p = decodeStartupPacket(packet((3 << 16) | 2, params('user', 'u', '_pq_.foo', 'bar')))
  t.same(p, {
    kind: 'startup',
    major: 3,
    minor: 2,
    parameters: new Map([
      ['user', 'u'],
      ['_pq_.foo', 'bar'],
      ['database', 'u'],
    ]),
  })
  const q = decodeStartupPacket(packet((3 << 16) | 9999, params('user', 'u')))
  t.match(q, { kind: 'startup', major: 3, minor: 9999 })
})

t.test('duplicate parameter: last wins', async (t) => {
  const p = decodeStartupPacket(packet(V30, params('user', 'a', 'user', 'b')))
  t.equal(p.kind === 'startup' && p.parameters.get('user'), 'b')
})

t.test('ssl, gssenc, cancel', async (t) => {
  t.same(decodeStartupPacket(serialize.requestSsl()), { kind: 'ssl-request' })
  t.same(decodeStartupPacket(packet(80877104)), { kind: 'gssenc-request' })
  const c = decodeStartupPacket(serialize.cancel(4242, 0x01020304))
  t.same(c, { kind: 'cancel-request', processId: 4242, secretKey: Buffer.from([1, 2, 3, 4]) })
  // Protocol 3.2: longer keys.
  const key = Buffer.alloc(256, 7)
  const long = Buffer.concat([Buffer.from([0, 0, 0, 0]), key])
  long.writeInt32BE(12345, 0)
  t.same(decodeStartupPacket(packet(80877102, long)), { kind: 'cancel-request', processId: 12345, secretKey: key })
  // Key copied, not a view.
  const buf = serialize.cancel(1, 0x0a0b0c0d)
  const cc = decodeStartupPacket(buf)
  buf.fill(0)
  t.same(cc.kind === 'cancel-request' && [...cc.secretKey], [0x0a, 0x0b, 0x0c, 0x0d])
})

t.test('malformed packets', async (t) => {
  throwsPV(t, () => decodeStartupPacket(Buffer.alloc(0)), undefined, 'silent')
  throwsPV(t, () => decodeStartupPacket(Buffer.from([0, 0, 0, 8, 0, 3])), undefined, 'silent')
  // length word disagrees with buffer
  const s = serialize.startup({ user: 'x' })
  throwsPV(t, () => decodeStartupPacket(s.subarray(0, s.length - 1)), /invalid length/, 'silent')
  throwsPV(t, () => decodeStartupPacket(Buffer.concat([s, Buffer.from([0])])), /invalid length/, 'silent')
  // ssl/gssenc with extra bytes: accepted, as PostgreSQL does (the rest is ignored)
  t.same(decodeStartupPacket(packet(80877103, Buffer.from([0]))), { kind: 'ssl-request' })
  t.same(decodeStartupPacket(packet(80877104, Buffer.alloc(4))), { kind: 'gssenc-request' })
  // cancel with bad key lengths: never answered (as any CancelRequest)
  throwsPV(t, () => decodeStartupPacket(packet(80877102, Buffer.alloc(4))), /cancel/, 'silent')
  throwsPV(t, () => decodeStartupPacket(packet(80877102, Buffer.alloc(7))), /cancel/, 'silent')
  throwsPV(t, () => decodeStartupPacket(packet(80877102, Buffer.alloc(4 + 257))), /cancel/, 'silent')
  // unknown request codes / protocol versions: FATAL 0A000, as PostgreSQL
  throwsPV(
    t,
    () => decodeStartupPacket(packet(2 << 16, params('user', 'u'))),
    'unsupported frontend protocol 2.0: server supports 3.0 to 3.2',
    '0A000',
  )
  throwsPV(t, () => decodeStartupPacket(packet(4 << 16, params('user', 'u'))), /unsupported frontend protocol 4\.0/, '0A000')
  throwsPV(t, () => decodeStartupPacket(packet(80877105)), /unsupported frontend protocol 1234\.5681/, '0A000')
  // layout errors
  const layout = /expected terminator as last byte/
  throwsPV(t, () => decodeStartupPacket(packet(V30)), layout) // no terminator at all
  throwsPV(t, () => decodeStartupPacket(packet(V30, Buffer.from('user\0alice\0'))), layout)
  throwsPV(t, () => decodeStartupPacket(packet(V30, Buffer.from('user\0alice'))), layout)
  throwsPV(t, () => decodeStartupPacket(packet(V30, Buffer.from('user\0'))), layout) // odd list
  throwsPV(t, () => decodeStartupPacket(packet(V30, Buffer.from('user\0alice\0db\0'))), layout)
  throwsPV(t, () => decodeStartupPacket(packet(V30, Buffer.from('user\0alice\0\0\0'))), layout) // junk after terminator
  throwsPV(t, () => decodeStartupPacket(packet(V30, Buffer.from('user'))), layout)
  // user
  const noUser = 'no PostgreSQL user name specified in startup packet'
  throwsPV(t, () => decodeStartupPacket(packet(V30, params('database', 'd'))), noUser, '28000')
  throwsPV(t, () => decodeStartupPacket(packet(V30, params('user', ''))), noUser, '28000')
  throwsPV(t, () => decodeStartupPacket(packet(V30, Buffer.from([0]))), noUser, '28000')
  // invalid UTF-8
  const bad = Buffer.concat([Buffer.from('user\0'), Buffer.from([0xc3, 0x28]), Buffer.from('\0\0')])
  throwsPV(t, () => decodeStartupPacket(packet(V30, bad)), /UTF-8/)
  // oversized
  const big = packet(V30, params('user', 'u', 'x', 'y'.repeat(MAX_STARTUP_PACKET_BYTES)))
  throwsPV(t, () => decodeStartupPacket(big), /invalid length/, 'silent')
})

t.test('random input: decode or ProtocolViolation, nothing else', async (t) => {
  const framed = fc.uint8Array({ maxLength: 64 }).chain((rest) =>
    fc.constantFrom(V30, (3 << 16) | 2, 80877102, 80877103, 80877104, 2 << 16).map((code) =>
      packet(code, Buffer.from(rest)),
    ),
  )
  const raw = fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a))
  fc.assert(
    fc.property(fc.oneof(framed, raw), (buf) => {
      try {
        decodeStartupPacket(buf)
      } catch (e) {
        if (!(e instanceof ProtocolViolation)) throw e
      }
      try {
        startupPacketLength(buf)
      } catch (e) {
        if (!(e instanceof ProtocolViolation)) throw e
      }
    }),
    { numRuns: 5000 },
  )
  t.pass('ok')
})
