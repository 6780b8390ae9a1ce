/**
 * Decoders for typed frontend (client -> server) messages, i.e. everything
 * after the startup packet. Pure functions over Buffers.
 *
 * Every decoder takes the message BODY only: the Buffer without the 1-byte
 * type and the 4-byte length word. Malformed input always raises
 * ProtocolViolation (SQLSTATE 08P01), never another exception type. The
 * checks follow PostgreSQL's (pq_getmsg*() in src/backend/libpq/pqformat.c,
 * exec_bind_message() etc. in src/backend/tcop/postgres.c), including which
 * messages reject trailing bytes.
 *
 * Zero-copy: returned `value` Buffers of decodeBind/decodeFunctionCall are
 * views (subarray) into `body`. Copy them if the body's memory is reused.
 *
 * Strings are decoded as UTF-8; invalid sequences become U+FFFD (except in
 * decodePassword, which rejects them). Counts are unsigned 16-bit, exactly as
 * PostgreSQL reads them (so 0xFFFF means 65535, not -1); a count larger than
 * the data present fails with "insufficient data left in message".
 */
import { ProtocolViolation } from './errors.js'
import { EMPTY, MAX_NAME_BYTES, MSG_BAD_STRING, MSG_FORMAT, MSG_INSUFFICIENT } from './frontend-violations.js'
import { badParamLength, checkMax, formatCountMismatch, nameTooLong, unsupportedFormat, violation } from './frontend-violations.js'

export { MAX_NAME_BYTES } from './frontend-violations.js'
export { BindStreamDecoder } from './bind-stream.js'

export const FrontendType = {
  Query: 0x51 /* Q */,
  Parse: 0x50 /* P */,
  Bind: 0x42 /* B */,
  Execute: 0x45 /* E */,
  Describe: 0x44 /* D */,
  Close: 0x43 /* C */,
  Sync: 0x53 /* S */,
  Flush: 0x48 /* H */,
  Terminate: 0x58 /* X */,
  CopyData: 0x64 /* d */,
  CopyDone: 0x63 /* c */,
  CopyFail: 0x66 /* f */,
  FunctionCall: 0x46 /* F */,
  Password: 0x70 /* p */,
} as const
export type FrontendTypeCode = (typeof FrontendType)[keyof typeof FrontendType]

/** Sequential reader over one message body; one small object per message. */
class Reader {
  off = 0
  constructor(
    readonly buf: Buffer,
    readonly what: string,
  ) {}

  fail(message: string, detail?: string): never {
    throw violation(message, this.what, detail)
  }

  /** NUL-terminated string, unbounded (query text, messages). */
  cstring(): string {
    const buf = this.buf
    const off = this.off
    const z = buf.indexOf(0, off)
    if (z < 0) this.fail(MSG_BAD_STRING)
    this.off = z + 1
    return z === off ? '' : buf.toString('utf8', off, z)
  }

  /** NUL-terminated string as bytes (a view into the body), for text in the client encoding. */
  cstringBytes(): Buffer {
    const buf = this.buf
    const off = this.off
    const z = buf.indexOf(0, off)
    if (z < 0) this.fail(MSG_BAD_STRING)
    this.off = z + 1
    return buf.subarray(off, z)
  }

  /** NUL-terminated statement/portal name, at most MAX_NAME_BYTES. */
  name(): string {
    const buf = this.buf
    const off = this.off
    const z = buf.indexOf(0, off)
    if ((z < 0 ? buf.length : z) - off > MAX_NAME_BYTES) throw nameTooLong(this.what)
    if (z < 0) this.fail(MSG_BAD_STRING)
    this.off = z + 1
    return z === off ? '' : buf.toString('utf8', off, z)
  }

  byte(): number {
    if (this.off >= this.buf.length) this.fail(MSG_INSUFFICIENT)
    return this.buf[this.off++]!
  }

  uint16(): number {
    const off = this.off
    if (off + 2 > this.buf.length) this.fail(MSG_INSUFFICIENT)
    this.off = off + 2
    return this.buf.readUInt16BE(off)
  }

  int16(): number {
    const off = this.off
    if (off + 2 > this.buf.length) this.fail(MSG_INSUFFICIENT)
    this.off = off + 2
    return this.buf.readInt16BE(off)
  }

  int32(): number {
    const off = this.off
    if (off + 4 > this.buf.length) this.fail(MSG_INSUFFICIENT)
    this.off = off + 4
    return this.buf.readInt32BE(off)
  }

  uint32(): number {
    const off = this.off
    if (off + 4 > this.buf.length) this.fail(MSG_INSUFFICIENT)
    this.off = off + 4
    return this.buf.readUInt32BE(off)
  }

  /** pq_getmsgend: no trailing bytes allowed. */
  end(): void {
    if (this.off !== this.buf.length) this.fail(MSG_FORMAT, `${this.buf.length - this.off} trailing bytes`)
  }

  /** Format codes that must be 0 (text) or 1 (binary). */
  formats(n: number): number[] {
    const out = new Array<number>(n)
    for (let i = 0; i < n; i++) {
      const f = this.int16()
      if (f !== 0 && f !== 1) throw unsupportedFormat(f, this.what)
      out[i] = f
    }
    return out
  }

  /** Format codes kept as sent (signed 16-bit). */
  rawFormats(n: number): number[] {
    const out = new Array<number>(n)
    for (let i = 0; i < n; i++) out[i] = this.int16()
    return out
  }

  /** Bind parameter values / FunctionCall arguments: int32 length (-1 = NULL) + bytes. */
  values(n: number, maxValueBytes: number): DecodedBindParam[] {
    const buf = this.buf
    const out = new Array<DecodedBindParam>(n)
    for (let i = 0; i < n; i++) {
      const len = this.int32()
      if (len === -1) {
        out[i] = { isNull: true, length: -1, value: EMPTY, truncated: false }
        continue
      }
      if (len < -1) throw badParamLength(len, this.what)
      const off = this.off
      if (len > buf.length - off) this.fail(MSG_INSUFFICIENT)
      this.off = off + len
      const truncated = len > maxValueBytes
      const keep = truncated ? maxValueBytes : len
      out[i] = { isNull: false, length: len, value: keep === 0 ? EMPTY : buf.subarray(off, off + keep), truncated }
    }
    return out
  }
}

/** Query ('Q'): the SQL text. */
export function decodeQuery(body: Buffer): { text: string } {
  return { text: decodeQueryBytes(body).text.toString('utf8') }
}

/** Query ('Q'): the SQL text's bytes (a view into `body`), to decode in the session's client encoding. */
export function decodeQueryBytes(body: Buffer): { text: Buffer } {
  const r = new Reader(body, 'Query')
  const text = r.cstringBytes()
  r.end()
  return { text }
}

/** Parse ('P'): statement name, SQL text, parameter type OIDs (unsigned; 0 = unspecified). */
export function decodeParse(body: Buffer): { name: string; text: string; paramTypes: number[] } {
  const p = decodeParseBytes(body)
  return { name: p.name, text: p.text.toString('utf8'), paramTypes: p.paramTypes }
}

/** Parse ('P') with the SQL text as bytes (a view into `body`), to decode in the session's client encoding. */
export function decodeParseBytes(body: Buffer): { name: string; text: Buffer; paramTypes: number[] } {
  const r = new Reader(body, 'Parse')
  const name = r.name()
  const text = r.cstringBytes()
  const n = r.uint16()
  if (n * 4 > body.length - r.off) r.fail(MSG_INSUFFICIENT)
  const paramTypes = new Array<number>(n)
  for (let i = 0; i < n; i++) paramTypes[i] = r.uint32()
  r.end()
  return { name, text, paramTypes }
}

export interface DecodedBindParam {
  isNull: boolean
  /** Declared length in bytes; -1 for NULL. */
  length: number
  /** At most maxValueBytes of the value; empty for NULL. */
  value: Buffer
  /** true when length > maxValueBytes (value holds only a prefix). */
  truncated: boolean
}

export interface DecodedBind {
  portal: string
  statement: string
  /** 0 text, 1 binary, as sent (0, 1 or n entries); validated to be 0 or 1. */
  paramFormats: number[]
  params: DecodedBindParam[]
  /** As sent (signed 16-bit; the server validates them). */
  resultFormats: number[]
}

/**
 * Bind ('B'). Values longer than maxValueBytes are cut to their first
 * maxValueBytes bytes (truncated: true, length: the declared length).
 * Returned values are views into `body`.
 */
export function decodeBind(body: Buffer, maxValueBytes: number): DecodedBind {
  checkMax(maxValueBytes)
  const r = new Reader(body, 'Bind')
  const portal = r.name()
  const statement = r.name()
  const paramFormats = r.formats(r.uint16())
  const nParams = r.uint16()
  if (paramFormats.length > 1 && paramFormats.length !== nParams) {
    throw formatCountMismatch(paramFormats.length, nParams, 'Bind')
  }
  const params = r.values(nParams, maxValueBytes)
  const resultFormats = r.rawFormats(r.uint16())
  r.end()
  return { portal, statement, paramFormats, params, resultFormats }
}

/**
 * Format of parameter i per the protocol rule: no codes => all text; one code
 * => applies to all; else per parameter (an index without a code => text).
 */
export function bindParamFormat(bind: Pick<DecodedBind, 'paramFormats'>, i: number): 0 | 1 {
  const f = bind.paramFormats
  const n = f.length
  if (n === 0) return 0
  return (n === 1 ? f[0] : f[i]) === 1 ? 1 : 0
}

/** Execute ('E'): portal name and row limit (signed; <= 0 means no limit, as PostgreSQL treats it). */
export function decodeExecute(body: Buffer): { portal: string; maxRows: number } {
  const r = new Reader(body, 'Execute')
  const portal = r.name()
  const maxRows = r.int32()
  r.end()
  return { portal, maxRows }
}

function decodeTarget(body: Buffer, what: 'Describe' | 'Close'): { target: 'S' | 'P'; name: string } {
  const r = new Reader(body, what)
  const t = r.byte()
  if (t !== 0x53 && t !== 0x50) {
    throw new ProtocolViolation(`invalid ${what.toUpperCase()} message subtype ${t}`)
  }
  const name = r.name()
  r.end()
  return { target: t === 0x53 ? 'S' : 'P', name }
}

/** Describe ('D'): 'S' statement or 'P' portal, and its name. */
export function decodeDescribe(body: Buffer): { target: 'S' | 'P'; name: string } {
  return decodeTarget(body, 'Describe')
}

/** Close ('C'): 'S' statement or 'P' portal, and its name. */
export function decodeClose(body: Buffer): { target: 'S' | 'P'; name: string } {
  return decodeTarget(body, 'Close')
}

/** CopyFail ('f'): error message. Trailing bytes are ignored, as PostgreSQL does. */
export function decodeCopyFail(body: Buffer): { message: string } {
  return { message: new Reader(body, 'CopyFail').cstring() }
}

export interface DecodedFunctionCall {
  functionOid: number
  /** 0 or 1 each, as sent (0, 1 or n entries). */
  argFormats: number[]
  args: DecodedBindParam[]
  /** As sent (signed 16-bit). */
  resultFormat: number
}

/** FunctionCall ('F'). Argument values are views into `body`, cut at maxValueBytes like Bind. */
export function decodeFunctionCall(body: Buffer, maxValueBytes: number): DecodedFunctionCall {
  checkMax(maxValueBytes)
  const r = new Reader(body, 'FunctionCall')
  const functionOid = r.uint32()
  const argFormats = r.formats(r.uint16())
  const nArgs = r.uint16()
  if (argFormats.length > 1 && argFormats.length !== nArgs) {
    throw formatCountMismatch(argFormats.length, nArgs, 'FunctionCall')
  }
  const args = r.values(nArgs, maxValueBytes)
  const resultFormat = r.int16()
  r.end()
  return { functionOid, argFormats, args, resultFormat }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/**
 * PasswordMessage ('p', cleartext password): exactly one NUL-terminated
 * string filling the body ("invalid password packet size" otherwise). Invalid
 * UTF-8 is rejected rather than replaced, so distinct byte strings never
 * compare equal. Do not use for SASL/GSS responses, which share the type byte.
 */
export function decodePassword(body: Buffer): string {
  const z = body.indexOf(0)
  if (z < 0 || z !== body.length - 1) {
    throw new ProtocolViolation('invalid password packet size')
  }
  try {
    return strictUtf8.decode(body.subarray(0, z))
  } catch {
    throw new ProtocolViolation('invalid password packet: password is not valid UTF-8')
  }
}

/**
 * For messages without a body where PostgreSQL insists on that (Sync, Flush):
 * throws ProtocolViolation("invalid message format") if body is not empty.
 */
export function assertEmptyBody(body: Buffer, what: string): void {
  if (body.length !== 0) throw violation(MSG_FORMAT, what, `${body.length} trailing bytes`)
}
