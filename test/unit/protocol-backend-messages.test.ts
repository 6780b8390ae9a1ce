import t from 'tap'
// Subpath import: tap's ts-node loader mis-resolves the package's ESM entry.
import { Parser } from 'pg-protocol/dist/parser'
import { PgError, ProtocolViolation, SQLSTATE } from '../../src/protocol/errors.js'
import {
  authenticationCleartextPassword,
  authenticationOk,
  backendKeyData,
  commandComplete,
  emptyQueryResponse,
  errorResponse,
  errorResponseFromPgError,
  negotiateProtocolVersion,
  noticeResponse,
  parameterStatus,
  readyForQuery,
  sslResponse,
} from '../../src/protocol/backend-messages.js'

/** Parse with pg-protocol's client-side parser; returns all messages as plain objects. */
function pgParse(...bufs: Buffer[]): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = []
  new Parser().parse(Buffer.concat(bufs), (msg) => out.push(msg as unknown as Record<string, unknown>))
  return out
}

/** Independent framing check: type byte, length word = rest; returns body. */
function frame(buf: Buffer, type: string): Buffer {
  if (String.fromCharCode(buf[0]!) !== type) throw new Error(`type ${String.fromCharCode(buf[0]!)} != ${type}`)
  if (buf.readInt32BE(1) !== buf.length - 1) throw new Error('bad length word')
  return buf.subarray(5)
}

/** Raw ErrorResponse/NoticeResponse fields in order. */
function fields(body: Buffer): [string, string][] {
  const out: [string, string][] = []
  let off = 0
  while (body[off] !== 0) {
    const type = String.fromCharCode(body[off]!)
    const z = body.indexOf(0, off + 1)
    if (z < 0) throw new Error('unterminated field')
    out.push([type, body.toString('utf8', off + 1, z)])
    off = z + 1
  }
  if (off !== body.length - 1) throw new Error('trailing bytes after terminator')
  return out
}

t.test('sslResponse', async (t) => {
  t.same(sslResponse(true), Buffer.from('S'))
  t.same(sslResponse(false), Buffer.from('N'))
})

t.test('authentication', async (t) => {
  const [ok, clear] = pgParse(authenticationOk(), authenticationCleartextPassword())
  t.match(ok, { name: 'authenticationOk' })
  t.match(clear, { name: 'authenticationCleartextPassword' })
  t.same(authenticationOk(), Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]))
  t.same(authenticationCleartextPassword(), Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3]))
})

t.test('backendKeyData', async (t) => {
  const [k] = pgParse(backendKeyData(12345, Buffer.from([0xde, 0xad, 0xbe, 0xef])))
  t.match(k, { name: 'backendKeyData', processID: 12345, secretKey: 0xdeadbeef | 0 })
  // Protocol 3.2: longer key.
  const key = Buffer.alloc(32, 0xab)
  const body = frame(backendKeyData(7, key), 'K')
  t.equal(body.readInt32BE(0), 7)
  t.same(body.subarray(4), key)
  t.throws(() => backendKeyData(1, Buffer.alloc(3)), RangeError)
  t.throws(() => backendKeyData(1, Buffer.alloc(257)), RangeError)
})

t.test('parameterStatus, readyForQuery, commandComplete, emptyQuery', async (t) => {
  const msgs = pgParse(
    parameterStatus('server_version', '17.0 (pgwitness)'),
    parameterStatus('application_name', 'ünïcode'),
    readyForQuery('I'),
    readyForQuery('T'),
    readyForQuery('E'),
    commandComplete('SELECT 1'),
    commandComplete(''),
    emptyQueryResponse(),
  )
  t.match(msgs, [
    { name: 'parameterStatus', parameterName: 'server_version', parameterValue: '17.0 (pgwitness)' },
    { name: 'parameterStatus', parameterName: 'application_name', parameterValue: 'ünïcode' },
    { name: 'readyForQuery', status: 'I' },
    { name: 'readyForQuery', status: 'T' },
    { name: 'readyForQuery', status: 'E' },
    { name: 'commandComplete', text: 'SELECT 1' },
    { name: 'commandComplete', text: '' },
    { name: 'emptyQuery' },
  ])
  t.equal(msgs.length, 8)
  t.same(emptyQueryResponse(), Buffer.from([0x49, 0, 0, 0, 4]))
})

t.test('negotiateProtocolVersion', async (t) => {
  const body = frame(negotiateProtocolVersion(2, ['_pq_.foo', '_pq_.bär']), 'v')
  t.equal(body.readInt32BE(0), 2)
  t.equal(body.readInt32BE(4), 2)
  t.equal(body.subarray(8).toString('utf8'), '_pq_.foo\0_pq_.bär\0')
  const empty = frame(negotiateProtocolVersion(0, []), 'v')
  t.same(empty, Buffer.from([0, 0, 0, 0, 0, 0, 0, 0]))
})

t.test('errorResponse', async (t) => {
  const e = errorResponse({
    severity: 'FATAL',
    code: '28P01',
    message: 'password authentication failed for user "ä"',
    detail: 'Token expired.',
    hint: 'Log in again.',
  })
  const [parsed] = pgParse(e)
  t.match(parsed, {
    name: 'error',
    severity: 'FATAL',
    code: '28P01',
    message: 'password authentication failed for user "ä"',
    detail: 'Token expired.',
    hint: 'Log in again.',
  })
  t.same(fields(frame(e, 'E')), [
    ['S', 'FATAL'],
    ['V', 'FATAL'],
    ['C', '28P01'],
    ['M', 'password authentication failed for user "ä"'],
    ['D', 'Token expired.'],
    ['H', 'Log in again.'],
  ])
  // Optional fields absent.
  const minimal = errorResponse({ severity: 'ERROR', code: '42501', message: 'permission denied' })
  t.same(fields(frame(minimal, 'E')), [
    ['S', 'ERROR'],
    ['V', 'ERROR'],
    ['C', '42501'],
    ['M', 'permission denied'],
  ])
  t.match(pgParse(minimal)[0], { name: 'error', detail: undefined, hint: undefined })
  // NUL characters cannot break framing.
  const nul = errorResponse({ severity: 'ERROR', code: 'XX000', message: 'a\0b', detail: '\0' })
  t.same(fields(frame(nul, 'E')), [
    ['S', 'ERROR'],
    ['V', 'ERROR'],
    ['C', 'XX000'],
    ['M', 'ab'],
    ['D', ''],
  ])
})

t.test('errorResponseFromPgError', async (t) => {
  const pv = new ProtocolViolation('invalid string in message', 'Query message.')
  t.match(pgParse(errorResponseFromPgError(pv))[0], {
    name: 'error',
    severity: 'FATAL',
    code: '08P01',
    message: 'invalid string in message',
    detail: 'Query message.',
    hint: undefined,
  })
  const pe = new PgError({ severity: 'ERROR', code: SQLSTATE.insufficientPrivilege, message: 'nope', hint: 'ask' })
  t.same(fields(frame(errorResponseFromPgError(pe), 'E')), [
    ['S', 'ERROR'],
    ['V', 'ERROR'],
    ['C', '42501'],
    ['M', 'nope'],
    ['H', 'ask'],
  ])
})

t.test('noticeResponse', async (t) => {
  const n = noticeResponse({ severity: 'WARNING', code: '01000', message: 'audit sink degraded', detail: 'disk 95% full' })
  t.match(pgParse(n)[0], {
    name: 'notice',
    severity: 'WARNING',
    code: '01000',
    message: 'audit sink degraded',
    detail: 'disk 95% full',
  })
  t.same(fields(frame(n, 'N')), [
    ['S', 'WARNING'],
    ['V', 'WARNING'],
    ['C', '01000'],
    ['M', 'audit sink degraded'],
    ['D', 'disk 95% full'],
  ])
})
