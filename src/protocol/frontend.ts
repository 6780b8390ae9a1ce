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

/**
 * Longest accepted statement/portal name, in bytes (excluding the NUL).
 * Longer names are treated as malformed by every decoder here, streaming or
 * not (PostgreSQL itself has no such limit, but no sane client comes close).
 */
export const MAX_NAME_BYTES = 65536

const EMPTY: Buffer = Buffer.alloc(0)

// Error messages, worded as PostgreSQL's.
const MSG_BAD_STRING = 'invalid string in message'
const MSG_INSUFFICIENT = 'insufficient data left in message'
const MSG_FORMAT = 'invalid message format'

function violation(message: string, what: string, detail?: string): ProtocolViolation {
  return new ProtocolViolation(message, detail === undefined ? `${what} message.` : `${what} message: ${detail}.`)
}

function nameTooLong(what: string): ProtocolViolation {
  return violation(MSG_FORMAT, what, `name longer than ${MAX_NAME_BYTES} bytes`)
}

function unsupportedFormat(code: number, what: string): ProtocolViolation {
  return violation(`unsupported format code: ${code}`, what)
}

function badParamLength(len: number, what: string): ProtocolViolation {
  return violation(MSG_INSUFFICIENT, what, `invalid parameter length ${len}`)
}

function formatCountMismatch(nFormats: number, nParams: number, what: string): ProtocolViolation {
  return what === 'Bind'
    ? violation(`bind message has ${nFormats} parameter formats but ${nParams} parameters`, what)
    : violation(`function call message contains ${nFormats} argument formats but ${nParams} arguments`, what)
}

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

function checkMax(maxValueBytes: number): void {
  if (!Number.isSafeInteger(maxValueBytes) || maxValueBytes < 0) {
    throw new RangeError(`maxValueBytes must be a non-negative integer, got ${maxValueBytes}`)
  }
}

/** Query ('Q'): the SQL text. */
export function decodeQuery(body: Buffer): { text: string } {
  const r = new Reader(body, 'Query')
  const text = r.cstring()
  r.end()
  return { text }
}

/** Parse ('P'): statement name, SQL text, parameter type OIDs (unsigned; 0 = unspecified). */
export function decodeParse(body: Buffer): { name: string; text: string; paramTypes: number[] } {
  const r = new Reader(body, 'Parse')
  const name = r.name()
  const text = r.cstring()
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

// ---------------------------------------------------------------------------
// Streaming Bind decoding

const S_PORTAL = 0
const S_STATEMENT = 1
const S_NPFORMATS = 2
const S_PFORMAT = 3
const S_NPARAMS = 4
const S_PLEN = 5
const S_PVALUE = 6
const S_NRFORMATS = 7
const S_RFORMAT = 8
const S_DONE = 9

/**
 * Incremental decoder of one Bind body delivered in chunks. push() each chunk
 * of the body in order (chunks may split anywhere: inside length words,
 * strings, values); after the last byte, result() returns what decodeBind
 * would (values capped at maxValueBytes and copied, so chunks may be reused;
 * truncated flags set). Memory held is O(maxValueBytes * params + names),
 * never the whole body.
 *
 * Errors: push() throws ProtocolViolation as soon as the input is known to be
 * malformed (e.g. a declared length past the end of the body, a bad format
 * code, trailing bytes); the decoder is then dead and every later call
 * rethrows the same error. result() throws ProtocolViolation if the body was
 * malformed or is incomplete. Pushing more than bodyLength bytes in total is
 * a caller bug and throws a plain Error.
 */
export class BindStreamDecoder {
  private readonly bodyLength: number
  private readonly maxValueBytes: number
  /** Bytes of the body pushed before the current chunk. */
  private base = 0
  /** Position in the current chunk. */
  private p = 0
  private state = S_PORTAL
  private error: ProtocolViolation | null = null
  private done: DecodedBind | null = null

  // Fixed-width integers split across chunks.
  private readonly carry = Buffer.alloc(4)
  private carryLen = 0
  private v = 0

  // Names split across chunks (copied pieces, bounded by MAX_NAME_BYTES).
  private strParts: Buffer[] = []
  private strLen = 0

  private portal = ''
  private statement = ''
  private nPFormats = 0
  private paramFormats: number[] = []
  private nParams = 0
  private params: DecodedBindParam[] = []
  private nRFormats = 0
  private resultFormats: number[] = []

  // Current parameter value.
  private valLen = 0
  private valRemaining = 0
  private valBuf: Buffer = EMPTY
  private valFill = 0

  constructor(bodyLength: number, maxValueBytes: number) {
    if (!Number.isSafeInteger(bodyLength) || bodyLength < 0) {
      throw new RangeError(`bodyLength must be a non-negative integer, got ${bodyLength}`)
    }
    checkMax(maxValueBytes)
    this.bodyLength = bodyLength
    this.maxValueBytes = maxValueBytes
  }

  /** Bytes pushed so far. */
  get received(): number {
    return this.base
  }

  push(chunk: Buffer): void {
    if (this.error !== null) throw this.error
    const n = chunk.length
    if (n > this.bodyLength - this.base) {
      throw new Error(`BindStreamDecoder: pushed ${this.base + n} bytes, body is ${this.bodyLength}`)
    }
    this.p = 0
    try {
      while (this.p < n) this.step(chunk, n)
    } catch (e) {
      if (e instanceof ProtocolViolation) this.error = e
      throw e
    } finally {
      this.base += n
    }
  }

  result(): DecodedBind {
    if (this.error !== null) throw this.error
    if (this.done !== null) return this.done
    if (this.base < this.bodyLength) {
      throw violation(MSG_INSUFFICIENT, 'Bind', `only ${this.base} of ${this.bodyLength} bytes received`)
    }
    // The whole body was received but the decoder did not finish.
    this.error =
      this.state === S_PORTAL || this.state === S_STATEMENT
        ? violation(MSG_BAD_STRING, 'Bind')
        : violation(MSG_INSUFFICIENT, 'Bind')
    throw this.error
  }

  /** Advance by at least one byte of chunk (p < n on entry). */
  private step(chunk: Buffer, n: number): void {
    switch (this.state) {
      case S_PORTAL:
      case S_STATEMENT: {
        const p = this.p
        const z = chunk.indexOf(0, p)
        const pieceEnd = z < 0 ? n : z
        const total = this.strLen + (pieceEnd - p)
        if (total > MAX_NAME_BYTES) throw nameTooLong('Bind')
        if (z < 0) {
          this.strParts.push(Buffer.from(chunk.subarray(p, n)))
          this.strLen = total
          this.p = n
          return
        }
        let s: string
        if (this.strParts.length === 0) {
          s = z === p ? '' : chunk.toString('utf8', p, z)
        } else {
          this.strParts.push(chunk.subarray(p, z))
          s = Buffer.concat(this.strParts, total).toString('utf8')
          this.strParts = []
        }
        this.strLen = 0
        this.p = z + 1
        if (this.state === S_PORTAL) {
          this.portal = s
          this.state = S_STATEMENT
        } else {
          this.statement = s
          this.state = S_NPFORMATS
        }
        return
      }
      case S_NPFORMATS:
        if (!this.readInt(chunk, n, 2)) return
        this.nPFormats = this.v
        this.paramFormats = []
        this.state = this.v > 0 ? S_PFORMAT : S_NPARAMS
        return
      case S_PFORMAT: {
        if (!this.readInt(chunk, n, 2)) return
        const f = (this.v << 16) >> 16
        if (f !== 0 && f !== 1) throw unsupportedFormat(f, 'Bind')
        this.paramFormats.push(f)
        if (this.paramFormats.length === this.nPFormats) this.state = S_NPARAMS
        return
      }
      case S_NPARAMS:
        if (!this.readInt(chunk, n, 2)) return
        this.nParams = this.v
        if (this.nPFormats > 1 && this.nPFormats !== this.nParams) {
          throw formatCountMismatch(this.nPFormats, this.nParams, 'Bind')
        }
        this.state = this.nParams > 0 ? S_PLEN : S_NRFORMATS
        return
      case S_PLEN: {
        if (!this.readInt(chunk, n, 4)) return
        const len = this.v
        if (len === -1) {
          this.finishParam({ isNull: true, length: -1, value: EMPTY, truncated: false })
          return
        }
        if (len < -1) throw badParamLength(len, 'Bind')
        if (len > this.bodyLength - (this.base + this.p)) throw violation(MSG_INSUFFICIENT, 'Bind')
        if (len === 0) {
          this.finishParam({ isNull: false, length: 0, value: EMPTY, truncated: false })
          return
        }
        const keep = len > this.maxValueBytes ? this.maxValueBytes : len
        this.valLen = len
        this.valRemaining = len
        this.valBuf = keep === 0 ? EMPTY : Buffer.allocUnsafe(keep)
        this.valFill = 0
        this.state = S_PVALUE
        return
      }
      case S_PVALUE: {
        const p = this.p
        const avail = n - p
        const take = avail < this.valRemaining ? avail : this.valRemaining
        const room = this.valBuf.length - this.valFill
        if (room > 0) {
          const c = take < room ? take : room
          chunk.copy(this.valBuf, this.valFill, p, p + c)
          this.valFill += c
        }
        this.p = p + take
        this.valRemaining -= take
        if (this.valRemaining === 0) {
          const len = this.valLen
          const value = this.valBuf
          this.valBuf = EMPTY
          this.finishParam({ isNull: false, length: len, value, truncated: len > this.maxValueBytes })
        }
        return
      }
      case S_NRFORMATS:
        if (!this.readInt(chunk, n, 2)) return
        this.nRFormats = this.v
        this.resultFormats = []
        if (this.v > 0) this.state = S_RFORMAT
        else this.finish()
        return
      case S_RFORMAT:
        if (!this.readInt(chunk, n, 2)) return
        this.resultFormats.push((this.v << 16) >> 16)
        if (this.resultFormats.length === this.nRFormats) this.finish()
        return
      default:
        // S_DONE with bytes left: trailing garbage.
        throw violation(MSG_FORMAT, 'Bind', `${this.bodyLength - (this.base + this.p)} trailing bytes`)
    }
  }

  private finishParam(param: DecodedBindParam): void {
    this.params.push(param)
    this.state = this.params.length === this.nParams ? S_NRFORMATS : S_PLEN
  }

  private finish(): void {
    this.state = S_DONE
    this.done = {
      portal: this.portal,
      statement: this.statement,
      paramFormats: this.paramFormats,
      params: this.params,
      resultFormats: this.resultFormats,
    }
  }

  /**
   * Read a big-endian integer of `size` (2: unsigned 16-bit, 4: signed
   * 32-bit) into this.v, carrying partial bytes across chunks. Returns false
   * if the chunk ended first.
   */
  private readInt(chunk: Buffer, n: number, size: 2 | 4): boolean {
    let p = this.p
    if (this.carryLen === 0 && p + size <= n) {
      this.v = size === 2 ? chunk.readUInt16BE(p) : chunk.readInt32BE(p)
      this.p = p + size
      return true
    }
    const carry = this.carry
    while (this.carryLen < size && p < n) carry[this.carryLen++] = chunk[p++]!
    this.p = p
    if (this.carryLen < size) return false
    this.carryLen = 0
    this.v = size === 2 ? carry.readUInt16BE(0) : carry.readInt32BE(0)
    return true
  }
}
