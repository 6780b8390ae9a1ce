/**
 * A raw PostgreSQL wire-protocol client for handshake tests: it writes exactly
 * the bytes a test gives it (built with pg-protocol's serializer or by hand)
 * and frames what comes back, so tests can send things no driver would
 * (protocol 3.2, `_pq_.*` options, malformed packets, bytes stuffed after an
 * SSLRequest) and see exactly what the proxy answers.
 *
 * Backend messages are parsed with pg-protocol's Parser, except
 * NegotiateProtocolVersion ('v'), which pg-protocol does not know and which
 * is decoded here.
 */
import net from 'node:net'
import tls from 'node:tls'
import { Parser } from 'pg-protocol/dist/parser'
import { serialize } from 'pg-protocol/dist/serializer'
import type { BackendMessage } from 'pg-protocol/dist/messages'

export { serialize }

export interface NegotiateProtocolVersion {
  name: 'negotiateProtocolVersion'
  newestMinor: number
  options: string[]
}

/** One framed backend message: its type byte, the raw bytes and the parsed form. */
export interface RawMessage {
  /** The type byte as a character, e.g. 'R', 'E', 'Z', 'v'. */
  type: string
  raw: Buffer
  /** pg-protocol's parse (or our own for 'v'). */
  msg: (BackendMessage & Record<string, any>) | NegotiateProtocolVersion
}

/** The error fields of an ErrorResponse as pg-protocol reports them. */
export interface ErrorFields {
  severity: string | undefined
  code: string | undefined
  message: string
  detail: string | undefined
  hint: string | undefined
}

export const SSL_REQUEST = (() => {
  const b = Buffer.alloc(8)
  b.writeInt32BE(8, 0)
  b.writeInt32BE(80877103, 4)
  return b
})()

export const GSSENC_REQUEST = (() => {
  const b = Buffer.alloc(8)
  b.writeInt32BE(8, 0)
  b.writeInt32BE(80877104, 4)
  return b
})()

/**
 * A StartupMessage with an arbitrary protocol version (pg-protocol's
 * serializer always writes 3.0). Parameters are written in insertion order.
 */
export function startupMessage(params: Record<string, string>, major = 3, minor = 0): Buffer {
  const parts: Buffer[] = []
  for (const [k, v] of Object.entries(params)) parts.push(Buffer.from(k + '\0' + v + '\0', 'utf8'))
  parts.push(Buffer.from([0]))
  const body = Buffer.concat(parts)
  const head = Buffer.alloc(8)
  head.writeInt32BE(8 + body.length, 0)
  head.writeUInt32BE(((major << 16) | minor) >>> 0, 4)
  return Buffer.concat([head, body])
}

export class RawClient {
  socket: net.Socket | tls.TLSSocket
  readonly raw: net.Socket
  private buf: Buffer = Buffer.alloc(0)
  private waiters: (() => void)[] = []
  private closedFlag = false
  private readonly closedPromise: Promise<void>
  private resolveClosed!: () => void
  /** Set once the TLS upgrade is done: framing continues on the TLS socket. */
  private tlsSocket: tls.TLSSocket | null = null

  private constructor(raw: net.Socket) {
    this.raw = raw
    this.socket = raw
    this.closedPromise = new Promise((r) => (this.resolveClosed = r))
    raw.on('error', () => undefined)
    raw.on('data', (c: Buffer) => this.onData(c))
    raw.on('close', () => this.onClose())
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host })
      s.once('error', reject)
      s.once('connect', () => {
        s.off('error', reject)
        resolve(new RawClient(s))
      })
    })
  }

  get closed(): boolean {
    return this.closedFlag
  }

  /** Bytes received and not consumed yet. */
  get pending(): number {
    return this.buf.length
  }

  write(b: Buffer): void {
    this.socket.write(b)
  }

  /** Send SSLRequest, expect 'S', upgrade to TLS (no certificate verification). */
  async startTls(): Promise<tls.TLSSocket> {
    this.write(SSL_REQUEST)
    const answer = await this.readByte()
    if (answer !== 'S') throw new Error(`expected 'S' in answer to SSLRequest, got ${JSON.stringify(answer)}`)
    if (this.buf.length > 0) throw new Error('server sent bytes after its SSLRequest answer')
    this.raw.removeAllListeners('data')
    const t = tls.connect({ socket: this.raw, rejectUnauthorized: false })
    t.on('error', () => undefined)
    await new Promise<void>((resolve, reject) => {
      t.once('secureConnect', () => resolve())
      t.once('error', reject)
    })
    t.on('data', (c: Buffer) => this.onData(c))
    t.on('close', () => this.onClose())
    this.socket = t
    this.tlsSocket = t
    return t
  }

  /** One unframed byte (the answer to SSLRequest / GSSENCRequest), as a character. */
  async readByte(timeoutMs = 5000): Promise<string> {
    await this.waitFor(() => this.buf.length >= 1, timeoutMs, 'a one-byte answer')
    const c = String.fromCharCode(this.buf[0]!)
    this.buf = this.buf.subarray(1)
    return c
  }

  /** The next framed backend message. Throws when the connection closes first or on timeout. */
  async next(timeoutMs = 5000): Promise<RawMessage> {
    await this.waitFor(() => this.frameLength() !== null, timeoutMs, 'a backend message')
    const len = this.frameLength()!
    const raw = this.buf.subarray(0, len)
    this.buf = this.buf.subarray(len)
    return decode(Buffer.from(raw))
  }

  /** Messages up to and including the first one of type `type`. */
  async until(type: string, timeoutMs = 5000): Promise<RawMessage[]> {
    const out: RawMessage[] = []
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const m = await this.next(Math.max(1, deadline - Date.now()))
      out.push(m)
      if (m.type === type) return out
    }
  }

  /** Every message until the server closes the connection. */
  async readToClose(timeoutMs = 5000): Promise<RawMessage[]> {
    const out: RawMessage[] = []
    const deadline = Date.now() + timeoutMs
    for (;;) {
      await this.waitFor(() => this.frameLength() !== null || this.closedFlag, Math.max(1, deadline - Date.now()), 'the connection to close')
      if (this.frameLength() !== null) {
        out.push(await this.next())
        continue
      }
      return out
    }
  }

  /** Resolves true when the server closed the connection within timeoutMs, false otherwise. */
  async waitClosed(timeoutMs = 5000): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs)))
    const closed = this.closedPromise.then(() => true)
    const r = await Promise.race([closed, timedOut])
    clearTimeout(timer)
    return r
  }

  destroy(): void {
    this.tlsSocket?.destroy()
    this.raw.destroy()
  }

  private frameLength(): number | null {
    if (this.buf.length < 5) return null
    const len = 1 + this.buf.readInt32BE(1)
    return this.buf.length >= len ? len : null
  }

  private onData(c: Buffer): void {
    this.buf = this.buf.length === 0 ? c : Buffer.concat([this.buf, c])
    this.wake()
  }

  private onClose(): void {
    if (this.closedFlag) return
    this.closedFlag = true
    this.resolveClosed()
    this.wake()
  }

  private wake(): void {
    const ws = this.waiters
    this.waiters = []
    for (const w of ws) w()
  }

  private async waitFor(ready: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!ready()) {
      if (this.closedFlag) throw new ConnectionClosed(`connection closed while waiting for ${what}`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.waiters.push(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
  }
}

export class ConnectionClosed extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ConnectionClosed'
  }
}

function decode(raw: Buffer): RawMessage {
  const type = String.fromCharCode(raw[0]!)
  if (type === 'v') {
    const newestMinor = raw.readInt32BE(5)
    const n = raw.readInt32BE(9)
    const options: string[] = []
    let off = 13
    for (let i = 0; i < n; i++) {
      const end = raw.indexOf(0, off)
      options.push(raw.toString('utf8', off, end))
      off = end + 1
    }
    return { type, raw, msg: { name: 'negotiateProtocolVersion', newestMinor, options } }
  }
  let parsed: BackendMessage | undefined
  new Parser().parse(raw, (m) => (parsed = m))
  if (!parsed) throw new Error(`could not parse backend message of type ${type}`)
  return { type, raw, msg: parsed as BackendMessage & Record<string, any> }
}

/** The fields of an ErrorResponse message. */
export function errorFields(m: RawMessage): ErrorFields {
  if (m.type !== 'E') throw new Error(`expected an ErrorResponse, got message type ${m.type}`)
  const e = m.msg as unknown as ErrorFields
  return { severity: e.severity, code: e.code, message: e.message, detail: e.detail, hint: e.hint }
}
