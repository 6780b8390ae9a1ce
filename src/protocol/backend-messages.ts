/**
 * Builders for the backend (server -> client) messages the proxy itself
 * sends. Each returns a fresh Buffer holding one complete message (type byte,
 * int32 length, body), except sslResponse which is a single unframed byte.
 *
 * Strings are written as UTF-8. A NUL inside a string would corrupt the
 * framing, so NUL characters are removed from every string field.
 */
import type { PgError } from './errors.js'

function clean(s: string): string {
  return s.includes('\0') ? s.replaceAll('\0', '') : s
}

/** Allocate a message with type byte and length word filled in; body starts at offset 5. */
function frame(type: number, bodyLength: number): Buffer {
  const buf = Buffer.allocUnsafe(5 + bodyLength)
  buf[0] = type
  buf.writeInt32BE(4 + bodyLength, 1)
  return buf
}

/** Reply to SSLRequest (or GSSENCRequest when accept is false): 'S' or 'N', one byte, no framing. */
export function sslResponse(accept: boolean): Buffer {
  return Buffer.from([accept ? 0x53 : 0x4e])
}

function authentication(code: number): Buffer {
  const buf = frame(0x52 /* R */, 4)
  buf.writeInt32BE(code, 5)
  return buf
}

/** AuthenticationCleartextPassword: R, int32 3. */
export function authenticationCleartextPassword(): Buffer {
  return authentication(3)
}

/** AuthenticationOk: R, int32 0. */
export function authenticationOk(): Buffer {
  return authentication(0)
}

/**
 * BackendKeyData ('K'). secretKey must be exactly 4 bytes for protocol 3.0;
 * protocol 3.2 allows 4..256 bytes. Throws RangeError outside 4..256.
 */
export function backendKeyData(processId: number, secretKey: Buffer): Buffer {
  if (secretKey.length < 4 || secretKey.length > 256) {
    throw new RangeError(`secret key must be 4..256 bytes, got ${secretKey.length}`)
  }
  const buf = frame(0x4b /* K */, 4 + secretKey.length)
  buf.writeInt32BE(processId | 0, 5)
  secretKey.copy(buf, 9)
  return buf
}

/** ParameterStatus ('S'): name, value. */
export function parameterStatus(name: string, value: string): Buffer {
  const n = clean(name)
  const v = clean(value)
  const nLen = Buffer.byteLength(n)
  const vLen = Buffer.byteLength(v)
  const buf = frame(0x53 /* S */, nLen + vLen + 2)
  let off = 5 + buf.write(n, 5, 'utf8')
  buf[off++] = 0
  off += buf.write(v, off, 'utf8')
  buf[off] = 0
  return buf
}

/** ReadyForQuery ('Z'): I idle, T in transaction, E failed transaction. */
export function readyForQuery(status: 'I' | 'T' | 'E'): Buffer {
  const buf = frame(0x5a /* Z */, 1)
  buf[5] = status.charCodeAt(0)
  return buf
}

/**
 * NegotiateProtocolVersion ('v'): the newest minor version supported for the
 * requested major version, and the protocol options (`_pq_.*` startup
 * parameters) that were not recognized.
 */
export function negotiateProtocolVersion(newestMinor: number, unrecognizedOptions: string[]): Buffer {
  const opts = unrecognizedOptions.map(clean)
  let len = 8
  for (const o of opts) len += Buffer.byteLength(o) + 1
  const buf = frame(0x76 /* v */, len)
  buf.writeInt32BE(newestMinor | 0, 5)
  buf.writeInt32BE(opts.length, 9)
  let off = 13
  for (const o of opts) {
    off += buf.write(o, off, 'utf8')
    buf[off++] = 0
  }
  return buf
}

/** Fields of ErrorResponse / NoticeResponse. */
function fieldsMessage(
  type: number,
  severity: string,
  code: string,
  message: string,
  detail: string | undefined,
  hint: string | undefined,
): Buffer {
  const sev = clean(severity)
  const c = clean(code)
  const m = clean(message)
  const d = detail === undefined ? undefined : clean(detail)
  const h = hint === undefined ? undefined : clean(hint)
  const sevLen = Buffer.byteLength(sev)
  // Each field: 1 type byte + string + NUL; final NUL terminator.
  let len = 2 * (sevLen + 2) + Buffer.byteLength(c) + 2 + Buffer.byteLength(m) + 2 + 1
  if (d !== undefined) len += Buffer.byteLength(d) + 2
  if (h !== undefined) len += Buffer.byteLength(h) + 2
  const buf = frame(type, len)
  let off = 5
  off = field(buf, off, 0x53 /* S */, sev)
  off = field(buf, off, 0x56 /* V */, sev)
  off = field(buf, off, 0x43 /* C */, c)
  off = field(buf, off, 0x4d /* M */, m)
  if (d !== undefined) off = field(buf, off, 0x44 /* D */, d)
  if (h !== undefined) off = field(buf, off, 0x48 /* H */, h)
  buf[off] = 0
  return buf
}

function field(buf: Buffer, off: number, type: number, value: string): number {
  buf[off++] = type
  off += buf.write(value, off, 'utf8')
  buf[off++] = 0
  return off
}

/** ErrorResponse ('E'): fields S, V (same as S), C, M, then D and H when given. */
export function errorResponse(err: {
  severity: string
  code: string
  message: string
  detail?: string
  hint?: string
}): Buffer {
  return fieldsMessage(0x45 /* E */, err.severity, err.code, err.message, err.detail, err.hint)
}

/** ErrorResponse built from a PgError (ProtocolViolation etc.). */
export function errorResponseFromPgError(e: PgError): Buffer {
  return fieldsMessage(0x45 /* E */, e.severity, e.code, e.message, e.detail, e.hint)
}

/** NoticeResponse ('N'): fields S, V, C, M, then D when given. */
export function noticeResponse(n: { severity: string; code: string; message: string; detail?: string }): Buffer {
  return fieldsMessage(0x4e /* N */, n.severity, n.code, n.message, n.detail, undefined)
}

/** CommandComplete ('C'): the command tag, e.g. "SELECT 1". */
export function commandComplete(tag: string): Buffer {
  const t = clean(tag)
  const tLen = Buffer.byteLength(t)
  const buf = frame(0x43 /* C */, tLen + 1)
  buf.write(t, 5, 'utf8')
  buf[5 + tLen] = 0
  return buf
}

/** EmptyQueryResponse ('I'). */
export function emptyQueryResponse(): Buffer {
  return frame(0x49 /* I */, 0)
}
