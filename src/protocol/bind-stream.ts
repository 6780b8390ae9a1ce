/**
 * Streaming decoding of Bind ('B') bodies too large to capture whole; the
 * result is the same as decodeBind's (src/protocol/frontend.ts).
 */
import { ProtocolViolation } from './errors.js'
import type { DecodedBind, DecodedBindParam } from './frontend.js'
import { EMPTY, MAX_NAME_BYTES, MSG_BAD_STRING, MSG_FORMAT, MSG_INSUFFICIENT } from './frontend-violations.js'
import { badParamLength, checkMax, formatCountMismatch, nameTooLong, unsupportedFormat, violation } from './frontend-violations.js'

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
