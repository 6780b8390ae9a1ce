import type { Duplex } from 'node:stream'
import { ProtocolViolation } from '../protocol/errors.js'
import { startupPacketLength } from '../protocol/startup.js'

/**
 * Pull-style reads over a socket during the handshake, where the proxy
 * drives a strict request/response sequence: one startup packet, then one
 * password message. After the handshake `detach()` hands the bytes read
 * ahead (a pipelining client's first query) to the relay.
 */
export class SocketReader {
  private buf: Buffer = Buffer.alloc(0)
  private waiter: (() => void) | null = null
  private ended: Error | null = null
  private readonly onData = (chunk: Buffer) => {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    // Never buffer more than a handshake needs: a flood before authentication is cut off.
    if (this.buf.length > this.limit) this.fail(new ProtocolViolation('too much data before authentication completed'))
    this.wake()
  }
  private readonly onEnd = () => this.fail(new ClientGone('the client closed the connection during the handshake'))
  private readonly onError = (err: Error) => this.fail(new ClientGone(`client connection error: ${err.message}`))

  constructor(
    readonly socket: Duplex,
    private readonly limit: number,
  ) {
    socket.on('data', this.onData)
    socket.on('end', this.onEnd)
    socket.on('close', this.onEnd)
    socket.on('error', this.onError)
  }

  /** Bytes received but not consumed yet. */
  get buffered(): number {
    return this.buf.length
  }

  /** The client has ended or closed the connection (seen while this reader was attached). */
  get clientGone(): boolean {
    return this.ended instanceof ClientGone
  }

  /**
   * The next length-prefixed startup-phase packet (SSLRequest, StartupMessage, CancelRequest …).
   * What arrived is judged before a flood or the client's leaving: an
   * impossible length word is refused as PostgreSQL does (silently), and a
   * complete packet is returned (a CancelRequest sent with a half-close).
   */
  async readStartupPacket(): Promise<Buffer> {
    for (;;) {
      const len = startupPacketLength(this.buf)
      if (len !== null && this.buf.length >= len) return this.take(len)
      try {
        await this.more()
      } catch (err) {
        const now = startupPacketLength(this.buf)
        if (now !== null && this.buf.length >= now) return this.take(now)
        throw err
      }
    }
  }

  /**
   * The next typed message; returns its type and body. A declared length
   * outside 4..maxBody+4 is refused from the header alone (MessageTooLarge
   * for a too-large one), before any of the body is buffered.
   */
  async readMessage(maxBody: number): Promise<{ type: number; body: Buffer }> {
    for (;;) {
      if (this.buf.length >= 5) {
        const len = this.buf.readInt32BE(1)
        if (len < 4) throw new ProtocolViolation(`invalid message length ${len} during authentication`)
        if (len - 4 > maxBody) throw new MessageTooLarge(this.buf[0]!, len, maxBody)
        if (this.buf.length >= 1 + len) {
          const type = this.buf[0]!
          const msg = this.take(1 + len)
          return { type, body: msg.subarray(5) }
        }
      }
      await this.more()
    }
  }

  /** Stop reading; returns the unconsumed bytes. */
  detach(): Buffer {
    this.socket.off('data', this.onData)
    this.socket.off('end', this.onEnd)
    this.socket.off('close', this.onEnd)
    this.socket.off('error', this.onError)
    const rest = this.buf
    this.buf = Buffer.alloc(0)
    return rest
  }

  private take(n: number): Buffer {
    const out = this.buf.subarray(0, n)
    this.buf = this.buf.subarray(n)
    return out
  }

  private more(): Promise<void> {
    if (this.ended) return Promise.reject(this.ended)
    return new Promise<void>((resolve) => {
      this.waiter = resolve
    }).then(() => {
      if (this.ended) throw this.ended
    })
  }

  private fail(err: Error): void {
    this.ended ??= err
    this.wake()
  }

  private wake(): void {
    const w = this.waiter
    this.waiter = null
    w?.()
  }
}

/** A message during the handshake declared a body longer than allowed. */
export class MessageTooLarge extends ProtocolViolation {
  constructor(
    readonly type: number,
    readonly length: number,
    readonly maxBody: number,
  ) {
    super(`invalid message length ${length} during authentication`, `At most ${maxBody + 4} bytes are accepted.`)
    this.name = 'MessageTooLarge'
  }
}

/** The client went away; nothing to send it. */
export class ClientGone extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ClientGone'
  }
}
