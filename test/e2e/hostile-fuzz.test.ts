/**
 * Issue 8 item 1 (live half): random and mutated bytes against a running
 * proxy — before TLS, inside TLS before the StartupMessage, as the password
 * message, and after authentication — with a recording TCP forwarder between
 * the proxy and PostgreSQL.
 *
 * What must hold for every input:
 * - nothing reaches PostgreSQL before authentication succeeded: the forwarder
 *   sees one connection per successful login and no other;
 * - the proxy never asks for a password over plaintext;
 * - the client gets exactly what the startup state machine says (an oracle
 *   built on the proxy's pure decoders, which protocol-fuzz.test.ts covers):
 *   what PostgreSQL answers to a bad StartupMessage (FATAL 08P01, 0A000 for
 *   an unsupported protocol version or a repeated SSLRequest/GSSENCRequest,
 *   28000 for no user), 28000 for plaintext, 22023 for an invalid replication value, 28P01
 *   for a bad or oversized token — or a close without a message where
 *   PostgreSQL closes silently too (an impossible startup packet length, an
 *   incomplete packet at EOF, a CancelRequest, well-formed or not);
 * - after authentication the proxy forwards whole, decodable messages only:
 *   what PostgreSQL receives is a prefix of what the client sent, cut at a
 *   message boundary (plus a Terminate), never a byte of a malformed message;
 *   a malformed message ends the session with FATAL 08P01 and a session.end
 *   record with reason protocol_violation;
 * - the proxy stays up: a new client works afterwards, and every connection
 *   and upstream connection is closed in the end.
 */
import net from 'node:net'
import tls from 'node:tls'
import fc from 'fast-check'
import pg from 'pg'
import t from 'tap'
import { serialize } from 'pg-protocol/dist/serializer'
import { ProtocolViolation, SilentProtocolViolation } from '../../src/protocol/errors.js'
import { decodeBind, decodeClose, decodeDescribe, decodeExecute, decodeFunctionCall, decodeParse, decodePassword, decodeQuery, FrontendType as F } from '../../src/protocol/frontend.js'
import { decodeStartupPacket } from '../../src/protocol/startup.js'
import { readValidAuditLog, recordsOfType, waitForRecords } from '../helpers/audit.js'
import { activeConnections, secondProxy, startForwarder, until } from '../helpers/hostile.js'
import { startFixture } from '../helpers/proxy.js'
import { WireClient } from '../helpers/wire.js'

const MAX_MESSAGE = 1 << 20
const f = await startFixture({ limitsYaml: '  handshake_timeout: 5s\n  max_message_bytes: 1MiB\n  max_token_bytes: 4096' })
t.teardown(() => f.stop())
// Whatever the fuzz makes PostgreSQL run, it may not run long.
await f.pg.query('ALTER ROLE app SET statement_timeout = 5000')
const fwd = await startForwarder(f.pg.port)
t.teardown(() => fwd.close())
const { proxy, auditPath } = await secondProxy(f, 'fuzz', (c) => ({ ...c, upstream: { ...c.upstream, port: fwd.port } }))
t.teardown(() => proxy.stop())
// Every top-level await comes before the first assertion: with a top-level teardown, tap ends the
// root test once it is idle after an assertion, and a later await would outlast that.
const token = await f.token()
t.equal(f.config.limits.maxMessageBytes, MAX_MESSAGE, 'limits.max_message_bytes: 1MiB from the YAML')
t.equal(f.config.limits.maxTokenBytes, 4096)

const TERMINATE = Buffer.from([0x58, 0, 0, 0, 4])
/** Successful logins so far: the only connections PostgreSQL may see. */
let logins = 0

// ---------------------------------------------------------------------------
// Generators (mutations as in protocol-fuzz.test.ts, kept small here)

const i32 = (n: number) => {
  const b = Buffer.alloc(4)
  b.writeInt32BE(n | 0)
  return b
}
const hostileInt32 = fc.constantFrom(-1, 0, 3, 4, 7, 8, 9, 10000, 10001, 4100, 1 << 20, (1 << 20) + 1, 0x7fffffff, 80877103, 80877104, 80877102, 196608, 196610)
type Mutation = [kind: number, at: number, value: number, bytes: Uint8Array]
const mutation: fc.Arbitrary<Mutation> = fc.tuple(fc.integer({ min: 0, max: 4 }), fc.nat(), hostileInt32, fc.uint8Array({ minLength: 1, maxLength: 6 }))
function mutate(input: Buffer, ops: Mutation[]): Buffer {
  let b = Buffer.from(input)
  for (const [kind, at0, value, bytes] of ops) {
    const at = b.length === 0 ? 0 : at0 % (b.length + 1)
    if (kind === 0 && b.length > 0) b[at % b.length] = bytes[0]!
    else if (kind === 1) b = Buffer.concat([b.subarray(0, at), Buffer.from(bytes), b.subarray(at)])
    else if (kind === 2) b = Buffer.concat([b.subarray(0, at), b.subarray(at + bytes.length)])
    else if (kind === 3 && b.length >= 4) b.writeInt32BE(value, Math.min(at, b.length - 4))
    else if (kind === 4) b = b.subarray(0, at)
  }
  return b
}
const param = fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 8 }).map((s) => s.replace(/\0/g, '') || 'k')
const startupPacket = fc
  .tuple(fc.dictionary(param, param, { maxKeys: 3 }), fc.constantFrom(0, 0, 2))
  .map(([params, minor]) => {
    const body = Buffer.concat([...Object.entries({ user: 'app', database: 'appdb', ...params }).map(([k, v]) => Buffer.from(`${k}\0${v}\0`)), Buffer.from([0])])
    return Buffer.concat([i32(8 + body.length), i32((3 << 16) | minor), body])
  })
const SSL_REQUEST = serialize.requestSsl()
const GSSENC_REQUEST = Buffer.concat([i32(8), i32(80877104)])
const firstPackets = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(fc.array(fc.oneof(startupPacket, fc.constant(SSL_REQUEST), fc.constant(GSSENC_REQUEST), fc.constant(serialize.cancel(1, 2))), { minLength: 1, maxLength: 3 }), fc.array(mutation, { maxLength: 3 })).map(([ps, ops]) => mutate(Buffer.concat(ps), ops)) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 120 }).map((a) => Buffer.from(a)) },
)

// ---------------------------------------------------------------------------
// What the proxy sends before authentication, as tokens: 'S'/'N' (one-byte
// answers), 'v' (NegotiateProtocolVersion), 'R3' (password prompt), 'R0'
// (authenticated; the rest is not tokenized), 'E:<SQLSTATE>' (always FATAL).

function tokenize(b: Buffer): string[] {
  const out: string[] = []
  let off = 0
  while (off < b.length) {
    const c = String.fromCharCode(b[off]!)
    if (c === 'S' || c === 'N') {
      out.push(c)
      off++
      continue
    }
    if (b.length - off < 5) return [...out, `partial:${c}`]
    const len = b.readInt32BE(off + 1)
    if (b.length - off < 1 + len) return [...out, `partial:${c}`]
    const body = b.subarray(off + 5, off + 1 + len)
    if (c === 'E') {
      const fields = new Map<string, string>()
      for (let i = 0; i < body.length && body[i] !== 0;) {
        const z = body.indexOf(0, i + 1)
        fields.set(String.fromCharCode(body[i]!), body.toString('utf8', i + 1, z))
        i = z + 1
      }
      out.push(fields.get('V') === 'FATAL' ? `E:${fields.get('C')}` : `E(${fields.get('V')}):${fields.get('C')}`)
    } else if (c === 'R') {
      out.push(`R${body.readInt32BE(0)}`)
      if (body.readInt32BE(0) === 0) return out
    } else {
      out.push(c)
    }
    off += 1 + len
  }
  return out
}

interface Expectation {
  tokens: string[]
  /** The proxy waits for more: the client ends its side to finish (a close without a message follows). */
  clientEnds: boolean
}

/**
 * What the proxy answers to `b` as the client's first bytes (plaintext, or
 * inside TLS when `encrypted`): one or more acceptable expectations.
 */
function startupOracle(b: Buffer, encrypted: boolean): Expectation[] {
  const tokens: string[] = []
  let off = 0
  let gssDeclined = false
  for (;;) {
    const rest = b.subarray(off)
    if (rest.length < 4) return [{ tokens, clientEnds: true }]
    const len = rest.readInt32BE(0)
    // An impossible length word: PostgreSQL (and the proxy) close without a word.
    if (len < 8 || len > 10004) return [{ tokens, clientEnds: false }]
    if (rest.length < len) return [{ tokens, clientEnds: true }]
    let p: ReturnType<typeof decodeStartupPacket>
    try {
      p = decodeStartupPacket(rest.subarray(0, len))
    } catch (e) {
      if (e instanceof SilentProtocolViolation) return [{ tokens, clientEnds: false }]
      if (!(e instanceof ProtocolViolation)) throw e
      return [{ tokens: [...tokens, `E:${e.code}`], clientEnds: false }]
    }
    off += len
    switch (p.kind) {
      case 'ssl-request':
        if (encrypted) return [{ tokens: [...tokens, 'E:0A000'], clientEnds: false }]
        // Bytes behind the SSLRequest are refused if they arrived with it (they usually do: one write).
        if (off < b.length) return [{ tokens: [...tokens, 'E:08P01'], clientEnds: false }, { tokens: [...tokens, 'S'], clientEnds: true }]
        return [{ tokens: [...tokens, 'S'], clientEnds: true }]
      case 'gssenc-request':
        if (encrypted || gssDeclined) return [{ tokens: [...tokens, 'E:0A000'], clientEnds: false }]
        gssDeclined = true
        tokens.push('N')
        continue
      case 'cancel-request':
        return [{ tokens, clientEnds: false }]
      case 'startup': {
        if (p.minor > 0 || [...p.parameters.keys()].some((k) => k.startsWith('_pq_.'))) tokens.push('v')
        // A replication connection is governed like any other; a value PostgreSQL would not accept is FATAL 22023.
        const replication = p.parameters.get('replication')
        if (replication !== undefined && replication !== 'database' && !VALID_REPLICATION.test(replication)) return [{ tokens: [...tokens, 'E:22023'], clientEnds: false }]
        if (!encrypted) return [{ tokens: [...tokens, 'E:28000'], clientEnds: false }]
        // Asked for the token; whatever follows is read as the password message.
        return passwordOracle(b.subarray(off)).map((e) => ({ ...e, tokens: [...tokens, 'R3', ...e.tokens] }))
      }
    }
  }
}

/** The `replication` booleans PostgreSQL accepts besides `database` (exact case): parse_bool's, any case, prefixes too. */
const VALID_REPLICATION = /^(t|tr|tru|true|y|ye|yes|on|1|f|fa|fal|fals|false|n|no|of|off|0)$/i

/** What the proxy answers to `b` sent after its password prompt (the token in a PasswordMessage, limits.max_token_bytes 4096). */
function passwordOracle(b: Buffer): Expectation[] {
  if (b.length < 5) return [{ tokens: [], clientEnds: true }]
  const len = b.readInt32BE(1)
  const type = b[0]
  if (len < 4) return [{ tokens: ['E:08P01'], clientEnds: false }]
  if (len - 4 > 4096) return [{ tokens: [type === F.Password ? 'E:28P01' : 'E:08P01'], clientEnds: false }]
  if (b.length < 1 + len) return [{ tokens: [], clientEnds: true }]
  if (type !== F.Password) return [{ tokens: ['E:08P01'], clientEnds: false }]
  let pw: string
  try {
    pw = decodePassword(b.subarray(5, 1 + len))
  } catch {
    return [{ tokens: ['E:08P01'], clientEnds: false }]
  }
  return pw === token ? [{ tokens: ['R0'], clientEnds: true }] : [{ tokens: ['E:28P01'], clientEnds: false }]
}

/** Collects what arrives on a socket until it closes. */
function collect(s: net.Socket | tls.TLSSocket): { bytes(): Buffer; closed: Promise<void> } {
  const parts: Buffer[] = []
  s.on('data', (b: Buffer) => parts.push(b))
  s.on('error', () => undefined)
  return { bytes: () => Buffer.concat(parts), closed: new Promise<void>((r) => s.once('close', () => r())) }
}

/** Wait (with a deadline) until the proxy closes, or until `enough` tokens arrived and then end our side. */
async function settle(s: net.Socket | tls.TLSSocket, c: ReturnType<typeof collect>, expected: Expectation[]): Promise<string[]> {
  const deadline = Date.now() + 10_000
  let isClosed = false
  void c.closed.then(() => (isClosed = true))
  for (;;) {
    const got = tokenize(c.bytes())
    if (isClosed) return got
    if (expected.some((e) => e.clientEnds && sameTokens(got, e.tokens))) {
      s.end()
      await Promise.race([c.closed, new Promise((r) => setTimeout(r, 10_000))])
      if (!isClosed) throw new Error('the proxy did not close after the client ended')
      return tokenize(c.bytes())
    }
    if (Date.now() > deadline) throw new Error(`no close within 10 s; received ${JSON.stringify(got)}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

function sameTokens(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

function check(got: string[], expected: Expectation[], what: string): void {
  if (got.includes('R3') && !got.includes('S') && what.startsWith('plaintext')) throw new Error(`${what}: a password was asked for over plaintext`)
  if (!expected.some((e) => sameTokens(got, e.tokens))) {
    throw new Error(`${what}: got ${JSON.stringify(got)}, expected one of ${JSON.stringify(expected.map((e) => e.tokens))}`)
  }
}

async function tlsConnect(): Promise<{ raw: net.Socket; s: tls.TLSSocket }> {
  const raw = net.connect(proxy.port, '127.0.0.1')
  raw.on('error', () => undefined)
  await new Promise<void>((r, j) => raw.once('connect', () => r()).once('error', j))
  raw.write(SSL_REQUEST)
  const answer = await new Promise<Buffer>((r) => raw.once('data', r))
  if (answer.toString() !== 'S') throw new Error(`SSLRequest answered ${JSON.stringify(answer.toString('latin1'))}`)
  const s = tls.connect({ socket: raw, rejectUnauthorized: false })
  s.on('error', () => undefined)
  await new Promise<void>((r, j) => s.once('secureConnect', () => r()).once('error', j))
  return { raw, s }
}

t.test('before TLS: random and mutated first packets', async (t) => {
  let runs = 0
  await fc.assert(
    fc.asyncProperty(fc.noShrink(firstPackets), async (b) => {
      runs++
      const expected = startupOracle(b, false)
      const s = net.connect(proxy.port, '127.0.0.1')
      const c = collect(s)
      await new Promise<void>((r) => s.once('connect', () => r()))
      s.write(b)
      try {
        check(await settle(s, c, expected), expected, `plaintext ${b.toString('hex')}`)
      } finally {
        s.destroy()
      }
      if (fwd.connections.length !== logins) throw new Error(`PostgreSQL saw ${fwd.connections.length} connections, ${logins} logins succeeded`)
    }),
    { numRuns: 250 },
  )
  t.equal(fwd.connections.length, logins, `${runs} hostile clients, no upstream connection`)
})

t.test('inside TLS: random and mutated startup packets', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.noShrink(firstPackets), async (b) => {
      const expected = startupOracle(b, true)
      const { raw, s } = await tlsConnect()
      const c = collect(s)
      s.write(b)
      try {
        const got = await settle(s, c, expected)
        if (got.includes('R0')) logins++
        check(got, expected, `tls ${b.toString('hex')}`)
      } finally {
        raw.destroy()
      }
      if (fwd.connections.length !== logins) throw new Error(`PostgreSQL saw ${fwd.connections.length} connections, ${logins} logins succeeded`)
    }),
    { numRuns: 150 },
  )
  t.equal(fwd.connections.length, logins, 'no upstream connection')
})

t.test('the password message: mutated tokens, lengths and types', async (t) => {
  const password = serialize.password(token)
  const passwordInput = fc.oneof(
    { weight: 4, arbitrary: fc.array(mutation, { minLength: 1, maxLength: 3 }).map((ops) => mutate(password, ops)) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 60 }).map((a) => Buffer.from(a)) },
    { weight: 1, arbitrary: fc.constantFrom(
      // Oversized: declared beyond limits.max_token_bytes (4096), refused from the header.
      Buffer.concat([Buffer.from('p'), i32(5000)]),
      Buffer.concat([Buffer.from('p'), i32(0x7fffffff)]),
      Buffer.concat([Buffer.from('p'), i32(4101), Buffer.alloc(4097, 0x61)]),
      Buffer.concat([Buffer.from('Q'), i32(5000)]),
      Buffer.concat([Buffer.from('p'), i32(-1)]),
      serialize.query('select 1'),
      password,
    ) },
  )
  let authenticated = 0
  await fc.assert(
    fc.asyncProperty(fc.noShrink(passwordInput), async (b) => {
      const { raw, s } = await tlsConnect()
      const c = collect(s)
      s.write(serialize.startup({ user: 'app', database: 'appdb', application_name: 'fuzz-password' }))
      await until('the password prompt', () => tokenize(c.bytes()), (tk) => tk.includes('R3'), 10_000, 5)
      s.write(b)
      const expected = passwordOracle(b).map((e) => ({ ...e, tokens: ['R3', ...e.tokens] }))
      try {
        const got = await settle(s, c, expected)
        if (got.includes('R0')) {
          authenticated++
          logins++
        }
        check(got, expected, `password ${b.subarray(0, 80).toString('hex')}`)
      } finally {
        raw.destroy()
      }
      await until('the upstream count', () => fwd.connections.length, (n) => n === logins, 10_000)
    }),
    { numRuns: 150 },
  )
  t.equal(fwd.connections.length, logins, `upstream connections only for the ${authenticated} successful logins`)
  const recs = readValidAuditLog(auditPath)
  const failures = recordsOfType(recs, 'auth.failure').filter((r) => r.requested.application_name === 'fuzz-password')
  t.ok(failures.some((r) => r.reason === 'token_malformed' && /too large/.test(r.detail)), 'an oversized token is recorded as token_malformed')
  t.notOk(failures.some((r) => r.detail.includes(token)), 'no record repeats the token')
})

// ---------------------------------------------------------------------------
// After authentication

const KNOWN = new Set<number>([F.Query, F.Parse, F.Bind, F.Execute, F.Describe, F.Close, F.Sync, F.Flush, F.Terminate, F.CopyData, F.CopyDone, F.CopyFail, F.FunctionCall])
const DECODERS: Record<number, (b: Buffer) => unknown> = {
  [F.Query]: decodeQuery, [F.Parse]: decodeParse, [F.Bind]: (b) => decodeBind(b, 8), [F.Execute]: decodeExecute,
  [F.Describe]: decodeDescribe, [F.Close]: decodeClose, [F.FunctionCall]: (b) => decodeFunctionCall(b, 8),
}

type Verdict = 'valid' | 'violation' | 'incomplete' | 'terminate'

/**
 * Where what the proxy forwards of `b` may end: the ends of the messages it
 * accepts (0 included) up to the first malformed one or the Terminate, and — for a CopyData or
 * CopyDone cut short at the end, which the proxy streams on as it arrives
 * (large messages are never held whole) — anywhere after its header. And what
 * the stream is: a Terminate comes first, else a malformed message, else a
 * partial one.
 */
function relayOracle(b: Buffer): { boundaries: number[]; verdict: Verdict } {
  const boundaries = [0]
  let terminated = false
  let off = 0
  const done = (v: Verdict) => ({ boundaries, verdict: terminated ? 'terminate' as const : v })
  while (off < b.length) {
    if (b.length - off < 5) return done('incomplete')
    const type = b[off]!
    const len = b.readInt32BE(off + 1)
    if (!KNOWN.has(type) || len < 4 || len > MAX_MESSAGE) return done('violation')
    if (b.length - off < 1 + len) {
      if (type === F.CopyData || type === F.CopyDone) for (let k = off + 5; k <= b.length; k++) boundaries.push(k)
      return done('incomplete')
    }
    const dec = DECODERS[type]
    if (dec) {
      try {
        dec(b.subarray(off + 5, off + 1 + len))
      } catch {
        return done('violation')
      }
    }
    off += 1 + len
    boundaries.push(off)
    if (type === F.Terminate) {
      // Nothing behind the client's Terminate is forwarded, or answered (issue 12 item 7).
      terminated = true
      break
    }
  }
  return done('valid')
}

/** PostgreSQL received `after`: the start of what the client sent, cut at a message boundary, and maybe a Terminate of the proxy's. */
function isBoundaryPrefix(after: Buffer, sent: Buffer): boolean {
  const { boundaries } = relayOracle(sent)
  return boundaries.some((k) => {
    const prefix = sent.subarray(0, k)
    return after.equals(prefix) || after.equals(Buffer.concat([prefix, TERMINATE]))
  })
}

const text = fc.string({ maxLength: 30 }).map((s) => s.replace(/\0/g, ''))
const name = fc.string({ unit: 'grapheme-ascii', maxLength: 6 }).map((s) => s.replace(/\0/g, ''))
const sessionMessage = fc.oneof(
  text.map((q) => serialize.query(q)),
  fc.constantFrom('select 1', 'select $1::int', 'select * from pg_class limit 1', 'begin', 'rollback').map((q) => serialize.query(q)),
  fc.record({ name, text }).map((p) => serialize.parse({ name: p.name, text: p.text, types: [] })),
  fc.record({ portal: name, statement: name, values: fc.array(fc.oneof(fc.constant(null), text), { maxLength: 3 }) }).map((b) => serialize.bind(b)),
  name.map((portal) => serialize.execute({ portal, rows: 0 })),
  fc.record({ type: fc.constantFrom('S' as const, 'P' as const), name }).map((d) => serialize.describe(d)),
  fc.record({ type: fc.constantFrom('S' as const, 'P' as const), name }).map((d) => serialize.close(d)),
  fc.constant(serialize.sync()),
  fc.constant(serialize.flush()),
  fc.uint8Array({ maxLength: 20 }).map((a) => serialize.copyData(Buffer.from(a))),
  // A fastpath call of a function that does not exist (never pg_sleep by accident).
  fc.nat({ max: 1000 }).map((n) => {
    const body = Buffer.alloc(10)
    body.writeUInt32BE(4_000_000_000 + n, 0)
    return Buffer.concat([Buffer.from('F'), i32(14), body])
  }),
  fc.constant(serialize.password('not after authentication')),
)
const sessionInput = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fc.array(sessionMessage, { minLength: 1, maxLength: 6 }), fc.array(mutation, { maxLength: 3 })).map(([ms, ops]) => mutate(Buffer.concat(ms), ops)) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 80 }).map((a) => Buffer.from(a)) },
)

let appSeq = 0

t.test('after authentication: random and mutated message streams', async (t) => {
  const verdicts: Record<string, number> = {}
  await fc.assert(
    fc.asyncProperty(fc.noShrink(sessionInput), async (b) => {
      const app = `fuzz-session-${++appSeq}`
      const c = await WireClient.connect({ port: proxy.port, token, applicationName: app })
      logins++
      const upstream = fwd.connections.at(-1)!
      const loginBytes = upstream.toServerBytes
      const { verdict } = relayOracle(b)
      verdicts[verdict] = (verdicts[verdict] ?? 0) + 1
      c.socket.write(b)
      let sent = b
      let sawViolation = false
      try {
        if (verdict === 'violation') {
          const msgs = await c.until((m) => m.name === 'error' && m.code === '08P01' && (m as { severity?: string }).severity === 'FATAL', 10_000)
          sawViolation = msgs.length > 0
          await until('the proxy to close the session', () => c.socket.destroyed || c.socket.readableEnded, (x) => x, 10_000)
        } else if (verdict === 'valid') {
          // Still a working session: a Sync ends any extended-protocol error state, a ROLLBACK any
          // (failed) transaction the stream began, then a marker query.
          const more = Buffer.concat([serialize.sync(), serialize.query('rollback'), serialize.query(`select 'alive-${appSeq}' as marker`)])
          c.send(more)
          sent = Buffer.concat([b, more, TERMINATE])
          const msgs = await c.until((m) => (m.name === 'dataRow' && m.fields?.[0] === `alive-${appSeq}`) || (m.name === 'error' && m.code === '08P01'), 15_000)
          if (msgs.at(-1)!.name === 'error') sawViolation = true // PostgreSQL's own FATAL for a message the proxy passes on
          else await c.untilReady()
          await c.end()
        } else {
          // Incomplete or Terminate: the client ends (a half-close; the proxy closes both sides).
          c.socket.end()
          await until('the close', () => c.socket.destroyed || c.socket.readableEnded, (x) => x, 10_000).catch(() => undefined)
        }
      } finally {
        c.destroy()
      }
      // What PostgreSQL got after the login: the client's bytes up to a message boundary, maybe a Terminate. Nothing else.
      await until('the upstream connection to close', () => upstream.closed, (x) => x, 10_000)
      const after = upstream.sent().subarray(loginBytes)
      if (!isBoundaryPrefix(after, sent)) {
        throw new Error(`PostgreSQL received ${after.toString('hex')}: not a message-boundary prefix of the client's ${sent.toString('hex')}`)
      }
      const recs = await waitForRecords(auditPath, (rs) => recordsOfType(rs, 'session.end').some((r) => r.session.application_name === app), 10_000)
      const end = recordsOfType(recs, 'session.end').find((r) => r.session.application_name === app)!
      if (verdict === 'violation' && end.reason !== 'protocol_violation') throw new Error(`session.end reason ${end.reason} after a malformed message`)
      if (verdict === 'violation' && !sawViolation) throw new Error('no 08P01')
    }),
    { numRuns: 150 },
  )
  t.ok((verdicts.violation ?? 0) > 0 && (verdicts.valid ?? 0) > 0, `violations and valid streams both exercised: ${JSON.stringify(verdicts)}`)
})

t.test('limits.max_message_bytes and invalid lengths after authentication', async (t) => {
  const cases: Array<[string, Buffer, RegExp]> = [
    ['length -1', Buffer.concat([Buffer.from('Q'), i32(-1)]), /invalid message length -1/],
    ['length 0', Buffer.concat([Buffer.from('Q'), i32(0)]), /invalid message length 0/],
    ['length 3', Buffer.concat([Buffer.from('P'), i32(3)]), /invalid message length 3/],
    ['one byte over max_message_bytes (header only: refused without waiting for the body)', Buffer.concat([Buffer.from('Q'), i32(MAX_MESSAGE + 1)]), /too large \(1048577 bytes; limit 1048576\)/],
    ['2 GiB declared', Buffer.concat([Buffer.from('d'), i32(0x7fffffff)]), /too large/],
    ['a valid query, then a bad length in the same write', Buffer.concat([serialize.query('select 1'), Buffer.from('Q'), i32(2)]), /invalid message length 2/],
  ]
  for (const [what, bytes, message] of cases) {
    const app = `fuzz-limit-${++appSeq}`
    const c = await WireClient.connect({ port: proxy.port, token, applicationName: app })
    logins++
    const upstream = fwd.connections.at(-1)!
    const loginBytes = upstream.toServerBytes
    c.socket.write(bytes)
    const msgs = await c.until((m) => m.name === 'error' && m.code === '08P01', 10_000)
    const err = msgs.at(-1)!
    t.match(err.message, message, `${what}: FATAL 08P01 "${err.message}"`)
    t.equal((err as { severity?: string }).severity, 'FATAL')
    await until('the upstream connection to close', () => upstream.closed, (x) => x, 10_000)
    const after = upstream.sent().subarray(loginBytes)
    const validPrefix = bytes.length > 10 && bytes[0] === F.Query && bytes.readInt32BE(1) === 13 ? bytes.subarray(0, 14) : Buffer.alloc(0)
    t.same([...after], [...validPrefix, ...TERMINATE], `${what}: PostgreSQL got the valid messages before it and a Terminate, nothing of the bad message`)
    c.destroy()
    const recs = await waitForRecords(auditPath, (rs) => recordsOfType(rs, 'session.end').some((r) => r.session.application_name === app))
    const end = recordsOfType(recs, 'session.end').find((r) => r.session.application_name === app)!
    t.equal(end.reason, 'protocol_violation', `${what}: session.end protocol_violation`)
  }
  // Exactly max_message_bytes is fine (and streams through).
  const c = await WireClient.connect({ port: proxy.port, token, applicationName: `fuzz-limit-${++appSeq}` })
  logins++
  const filler = 'x'.repeat(MAX_MESSAGE - 4 - "select '' as big".length - 1)
  const q = serialize.query(`select '${filler}' as big`)
  t.equal(q.length - 1, MAX_MESSAGE, 'a message of exactly max_message_bytes')
  await c.write(q)
  const msgs = await c.untilReady(30_000)
  t.equal(msgs.find((m) => m.name === 'dataRow')?.fields?.[0]?.length, filler.length, 'it ran')
  await c.end()
})

t.test('after the client\'s Terminate nothing more is forwarded upstream, and the client is told nothing more', async (t) => {
  const cases: Array<[string, Buffer]> = [
    ['a Query behind it', serialize.query('select 2 as after_terminate')],
    ['an unknown message type behind it', Buffer.concat([Buffer.from([0x01]), i32(4)])],
    ['an invalid length behind it', Buffer.concat([Buffer.from('Q'), i32(2)])],
    ['a length over max_message_bytes behind it', Buffer.concat([Buffer.from('Q'), i32(MAX_MESSAGE + 1)])],
  ]
  for (const [what, behind] of cases) {
    const app = `fuzz-terminate-${++appSeq}`
    const c = await WireClient.connect({ port: proxy.port, token, applicationName: app })
    logins++
    const upstream = fwd.connections.at(-1)!
    const loginBytes = upstream.toServerBytes
    const before = serialize.query('select 1 as before_terminate')
    // One write: a query, the Terminate, and something behind it.
    c.socket.write(Buffer.concat([before, TERMINATE, behind]))
    const msgs: string[] = []
    for (;;) {
      const m = await c.next(10_000).catch(() => null)
      if (!m) break
      msgs.push(m.name === 'error' ? `error ${m.code} ${m.message}` : m.name)
    }
    t.notOk(msgs.some((m) => m.startsWith('error')), `${what}: no ErrorResponse after the Terminate (${msgs.join(', ')})`)
    await until('the upstream connection to close', () => upstream.closed, (x) => x, 10_000)
    t.same([...upstream.sent().subarray(loginBytes)], [...before, ...TERMINATE], `${what}: PostgreSQL got the query and the Terminate, nothing behind it`)
    c.destroy()
    const recs = await waitForRecords(auditPath, (rs) => recordsOfType(rs, 'session.end').some((r) => r.session.application_name === app))
    const end = recordsOfType(recs, 'session.end').find((r) => r.session.application_name === app)!
    t.equal(end.reason, 'client_closed', `${what}: session.end client_closed`)
    const texts = recordsOfType(recs, 'statement').filter((r) => r.session.id === end.session.id).map((r) => r.statement.text)
    t.same(texts, ['select 1 as before_terminate'], `${what}: the one statement that ran is recorded, nothing behind the Terminate`)
  }
})

t.test('the proxy is still up, and nothing is left open', async (t) => {
  const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'app', database: 'appdb', password: token, ssl: { rejectUnauthorized: false } })
  await c.connect()
  logins++
  t.same((await c.query('select 42 as answer')).rows, [{ answer: 42 }], 'a new client works')
  await c.end()
  await until('no active connections', () => activeConnections(proxy), (n) => n === 0)
  await until('every upstream connection closed', () => fwd.open, (n) => n === 0)
  t.equal(fwd.connections.length, logins, `PostgreSQL saw exactly the ${logins} successful logins`)
  readValidAuditLog(auditPath)
})
