import { ProtocolViolation } from './errors.js'

/**
 * Incremental framing of PostgreSQL's typed messages (1 type byte, int32
 * length including itself, body) over a byte stream, without holding large
 * messages whole.
 *
 * For each message the handler decides, from its type and length, whether
 * the body is captured whole (small control messages the proxy must read),
 * streamed to it piece by piece (a 32 MiB Bind, CopyData) or skipped (a
 * DataRow: only its type matters). Bodies that lie inside one chunk are
 * passed as subarrays of that chunk: valid only during the callback.
 */

export const enum BodyMode {
  Capture = 0,
  Stream = 1,
  Skip = 2,
}

export interface MessageHandler {
  /** Called once per message when its header is complete. */
  header(type: number, bodyLength: number): BodyMode
  /**
   * Capture mode: the whole body. `framed`: the message's 5 header bytes lie
   * right before `body` in the same memory (the whole message was in one
   * chunk; frameOf(body) is it, made only by a handler that wants it), else
   * false (the caller rebuilds the frame).
   */
  message(type: number, body: Buffer, framed: boolean): void
  /** Stream mode: the next piece of the body (never empty). */
  piece(type: number, piece: Buffer): void
  /** Stream and Skip modes: the message has ended. */
  end(type: number): void
  /**
   * `count` consecutive messages of the stream's run type (see MessageStream)
   * went by, counted, not framed one by one. Called before the next other
   * callback and at the end of each chunk, so events keep their order.
   */
  run?(type: number, count: number): void
}

const EMPTY = Buffer.alloc(0)

/** A message's header: its type byte and int32 length. */
export const HEADER_BYTES = 5

/** The whole message (header and body) of a body handed to message() with `framed` true. */
export function frameOf(body: Buffer): Buffer {
  return Buffer.from(body.buffer, body.byteOffset - HEADER_BYTES, body.length + HEADER_BYTES)
}

export class MessageStream {
  /** A header split across chunks, as far as it came; made when one first is (rare: most chunks end on a message). */
  private header: Buffer | null = null
  private headerFill = 0
  private type = 0
  private mode: BodyMode = BodyMode.Skip
  /** Body bytes of the current message not yet seen; -1 between messages. */
  private remaining = -1
  private capture: Buffer | null = null
  private captureFill = 0

  /** Messages of the run type counted and not yet reported (handler.run). */
  private runCount = 0

  constructor(
    private readonly handler: MessageHandler,
    /** Largest declared message length accepted (bytes, including the length word). */
    private readonly maxMessageBytes: number,
    private readonly peer: 'client' | 'server',
    /**
     * A message type only counted (the server's DataRow: a result's rows):
     * one whose whole message lies in the chunk gets no header() or end()
     * call but is counted and reported by run(); one split across chunks is
     * framed as usual (header, then end). -1: none.
     */
    private readonly runType = -1,
  ) {
    if (runType >= 0 && handler.run === undefined) throw new Error('MessageStream: a run type needs a handler with run()')
  }

  /** True when no message is partially received. */
  get atBoundary(): boolean {
    return this.remaining < 0 && this.headerFill === 0
  }

  push(chunk: Buffer): void {
    try {
      this.frame(chunk)
    } finally {
      this.reportRun()
    }
  }

  private reportRun(): void {
    if (this.runCount > 0) {
      const n = this.runCount
      this.runCount = 0
      this.handler.run!(this.runType, n)
    }
  }

  private frame(chunk: Buffer): void {
    const len = chunk.length
    let off = 0
    while (off < len) {
      if (this.remaining < 0) {
        // Between messages: read a header.
        let contiguous = false
        if (this.headerFill === 0 && len - off >= 5) {
          if (chunk[off] === this.runType) {
            // A message only counted (a DataRow), whole in this chunk and of a valid length: skipped over in place.
            const length = chunk.readInt32BE(off + 1)
            if (length >= 4 && length <= this.maxMessageBytes && len - off - 1 >= length) {
              off += 1 + length
              this.runCount++
              continue
            }
          }
          this.reportRun()
          this.type = chunk[off]!
          this.begin(chunk.readInt32BE(off + 1))
          off += 5
          contiguous = true
        } else {
          this.reportRun()
          const take = Math.min(5 - this.headerFill, len - off)
          const header = (this.header ??= Buffer.alloc(5))
          chunk.copy(header, this.headerFill, off, off + take)
          this.headerFill += take
          off += take
          if (this.headerFill < 5) return
          this.headerFill = 0
          this.type = header[0]!
          this.begin(header.readInt32BE(1))
        }
        if (this.mode === BodyMode.Capture && len - off >= this.remaining) {
          // Fast path: the whole body is in this chunk.
          const body = chunk.subarray(off, off + this.remaining)
          off += this.remaining
          this.finish(body, contiguous)
          continue
        }
        if (this.remaining === 0) {
          this.finish(EMPTY, false)
          continue
        }
        if (this.mode === BodyMode.Capture) {
          this.capture = Buffer.allocUnsafe(this.remaining)
          this.captureFill = 0
        }
        // The header ended the chunk: the body starts with the next one (never hand out an empty piece).
        if (off === len) return
      }
      // Inside a body.
      const take = Math.min(this.remaining, len - off)
      if (this.mode === BodyMode.Capture) {
        chunk.copy(this.capture!, this.captureFill, off, off + take)
        this.captureFill += take
      } else if (this.mode === BodyMode.Stream) {
        this.handler.piece(this.type, chunk.subarray(off, off + take))
      }
      off += take
      this.remaining -= take
      if (this.remaining === 0) {
        const body = this.capture ?? EMPTY
        this.capture = null
        this.finish(body, false)
      }
    }
  }

  private begin(length: number): void {
    if (length < 4 || length > this.maxMessageBytes) {
      const what = this.peer === 'client' ? 'client' : 'server'
      throw new ProtocolViolation(
        length < 4 ? `invalid message length ${length} from ${what}` : `message from ${what} too large (${length} bytes; limit ${this.maxMessageBytes})`,
        `message type ${JSON.stringify(String.fromCharCode(this.type))}`,
      )
    }
    this.remaining = length - 4
    this.mode = this.handler.header(this.type, this.remaining)
  }

  private finish(body: Buffer, framed: boolean): void {
    this.remaining = -1
    if (this.mode === BodyMode.Capture) this.handler.message(this.type, body, framed)
    else this.handler.end(this.type)
  }
}
