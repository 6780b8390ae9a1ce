/**
 * A raw PostgreSQL protocol client for tests that need control over exactly
 * which frontend messages are sent and when (pipelining, Describe/Flush,
 * row-limited Execute, CopyFail, huge streamed messages).
 *
 * TLS to the proxy (SSLRequest first), StartupMessage, token as cleartext
 * password; then `send()` arbitrary frontend messages (built with pg-protocol's
 * `serialize`) and read parsed backend messages in order.
 */
import net from 'node:net'
import { Duplex } from 'node:stream'
import tls from 'node:tls'
import { serialize } from 'pg-protocol/dist/serializer'
import { Parser } from 'pg-protocol/dist/parser'
import type { BackendMessage } from 'pg-protocol/dist/messages'

export { serialize }

/**
 * A parsed backend message; the fields present depend on `name`.
 * pg-protocol's Parser does not know FunctionCallResponse ('V'); it is
 * reported here as `functionCallResponse` (without its value).
 */
export type Msg = Omit<BackendMessage, 'name'> & {
  name: BackendMessage['name'] | 'functionCallResponse'
  // error / notice
  code?: string
  message?: string
  // commandComplete
  text?: string
  // dataRow
  fields?: Array<string | null>
  // readyForQuery
  status?: string
  // backendKeyData
  processID?: number
  secretKey?: number
  // copyData
  chunk?: Buffer
  // parameterStatus
  parameterName?: string
  parameterValue?: string
}

export interface WireConnectOptions {
  port: number
  token: string
  user?: string
  database?: string
  applicationName?: string
  host?: string
  /** Extra startup parameters. */
  parameters?: Record<string, string>
  /**
   * Run TLS over a stream bridge instead of handing it the TCP socket, so
   * that reset() can abort the TCP connection with an RST (Node cannot reset
   * a TLS socket itself).
   */
  resettable?: boolean
}

export class WireClient {
  /** Backend messages received and not yet consumed. */
  private readonly queue: Msg[] = []
  private waiter: (() => void) | null = null
  private closed = false
  private closeError: Error | null = null
  private readonly parser = new Parser()
  readonly parameters = new Map<string, string>()
  backendKey: { processID: number; secretKey: number } | null = null

  /** The TCP socket under the TLS socket (set for `resettable` clients). */
  private raw: net.Socket | null = null

  private constructor(readonly socket: tls.TLSSocket) {
    socket.on('data', (chunk: Buffer) => {
      this.parser.parse(chunk, (m) => {
        const msg = m as Msg
        if (msg.name === 'error' && msg.code === undefined && msg.message === 'received invalid response: 56') {
          msg.name = 'functionCallResponse'
        }
        // The parser hands out CopyData chunks as views into its own buffer, which it reuses.
        if (msg.name === 'copyData' && msg.chunk) msg.chunk = Buffer.from(msg.chunk)
        this.queue.push(msg)
      })
      this.wake()
    })
    socket.on('error', (e: Error) => {
      this.closeError ??= e
    })
    socket.on('close', () => {
      this.closed = true
      this.wake()
    })
  }

  /** Connect, negotiate TLS, authenticate with the token; resolves at the first ReadyForQuery. */
  static async connect(o: WireConnectOptions): Promise<WireClient> {
    const host = o.host ?? '127.0.0.1'
    const raw = net.connect({ host, port: o.port })
    raw.setNoDelay(true)
    await new Promise<void>((resolve, reject) => {
      raw.once('connect', resolve)
      raw.once('error', reject)
    })
    raw.write(serialize.requestSsl())
    const answer = await new Promise<Buffer>((resolve, reject) => {
      raw.once('data', resolve)
      raw.once('error', reject)
    })
    if (answer.length !== 1 || answer[0] !== 0x53 /* S */) {
      raw.destroy()
      throw new Error(`proxy refused SSLRequest: ${JSON.stringify(answer.toString('latin1'))}`)
    }
    raw.removeAllListeners('error')
    const socket = tls.connect({ socket: o.resettable ? bridge(raw) : raw, rejectUnauthorized: false, servername: undefined })
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve)
      socket.once('error', reject)
    })
    socket.removeAllListeners('error')
    const c = new WireClient(socket)
    if (o.resettable) c.raw = raw
    c.send(serialize.startup({
      user: o.user ?? 'app',
      database: o.database ?? 'appdb',
      application_name: o.applicationName ?? 'pgw-wire',
      client_encoding: 'UTF8',
      ...(o.parameters ?? {}),
    }))
    const first = await c.next()
    if (first.name !== 'authenticationCleartextPassword') {
      c.destroy()
      throw new Error(`expected AuthenticationCleartextPassword, got ${describe(first)}`)
    }
    c.send(serialize.password(o.token))
    for (;;) {
      const m = await c.next()
      if (m.name === 'error') {
        c.destroy()
        throw new Error(`authentication failed: ${m.code} ${m.message}`)
      }
      if (m.name === 'parameterStatus') c.parameters.set(m.parameterName!, m.parameterValue!)
      if (m.name === 'backendKeyData') c.backendKey = { processID: m.processID!, secretKey: m.secretKey! }
      if (m.name === 'readyForQuery') return c
    }
  }

  /** Write one or more frontend messages (concatenated into one write). */
  send(...messages: Buffer[]): void {
    this.socket.write(messages.length === 1 ? messages[0]! : Buffer.concat(messages))
  }

  /** Write raw bytes and resolve when the socket has accepted them (back-pressure aware). */
  async write(bytes: Buffer): Promise<void> {
    if (!this.socket.write(bytes)) {
      await new Promise<void>((resolve, reject) => {
        const onDrain = () => {
          this.socket.off('close', onClose)
          resolve()
        }
        const onClose = () => {
          this.socket.off('drain', onDrain)
          reject(new Error('connection closed while writing'))
        }
        this.socket.once('drain', onDrain)
        this.socket.once('close', onClose)
      })
    }
  }

  /** The next backend message (throws after timeoutMs or when the connection closes first). */
  async next(timeoutMs = 10_000): Promise<Msg> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const m = this.queue.shift()
      if (m) return m
      if (this.closed) throw new Error(`connection closed while waiting for a message${this.closeError ? `: ${this.closeError.message}` : ''}`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for a backend message`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.waiter = null
          resolve()
        }, left)
        this.waiter = () => {
          clearTimeout(timer)
          this.waiter = null
          resolve()
        }
      })
    }
  }

  /** Messages up to and including the first one matching `pred`. */
  async until(pred: (m: Msg) => boolean, timeoutMs = 10_000): Promise<Msg[]> {
    const out: Msg[] = []
    for (;;) {
      const m = await this.next(timeoutMs)
      out.push(m)
      if (pred(m)) return out
    }
  }

  /** Messages up to and including the next ReadyForQuery. */
  untilReady(timeoutMs = 10_000): Promise<Msg[]> {
    return this.until((m) => m.name === 'readyForQuery', timeoutMs)
  }

  /** Simple Query: send it and return everything up to ReadyForQuery. */
  async query(text: string, timeoutMs = 10_000): Promise<Msg[]> {
    this.send(serialize.query(text))
    return this.untilReady(timeoutMs)
  }

  /** Messages already received (without waiting). */
  get buffered(): number {
    return this.queue.length
  }

  /** Send Terminate and wait for the server side to close. */
  async end(): Promise<void> {
    if (this.closed) return
    this.socket.end(serialize.end())
    await new Promise<void>((resolve) => {
      if (this.closed) return resolve()
      const timer = setTimeout(() => {
        this.socket.destroy()
        resolve()
      }, 5000)
      this.socket.once('close', () => {
        clearTimeout(timer)
        resolve()
      })
    })
  }

  destroy(): void {
    this.socket.destroy()
  }

  /** Abort the connection with a TCP RST (a client that crashes or loses its network); `resettable` clients only. */
  reset(): void {
    if (!this.raw) throw new Error('reset() needs WireClient.connect({ resettable: true })')
    this.raw.resetAndDestroy()
    this.socket.destroy()
  }

  private wake(): void {
    this.waiter?.()
  }
}

/** A JS stream over a TCP socket, for TLS to run on while the TCP socket stays ours to reset. */
function bridge(raw: net.Socket): Duplex {
  const d = new Duplex({
    write(chunk: Buffer, _enc, cb) {
      raw.write(chunk, cb)
    },
    final(cb) {
      raw.end()
      cb()
    },
    read() {},
    destroy(err, cb) {
      raw.destroy()
      cb(err)
    },
  })
  raw.on('data', (b: Buffer) => d.push(b))
  raw.on('end', () => d.push(null))
  raw.on('error', () => undefined)
  raw.on('close', () => d.destroy())
  return d
}

/** Compact description of backend messages, for assertions and diagnostics. */
export function describe(m: Msg): string {
  switch (m.name) {
    case 'error':
      return `error(${m.code})`
    case 'commandComplete':
      return `commandComplete(${m.text})`
    case 'readyForQuery':
      return `readyForQuery(${m.status})`
    default:
      return m.name
  }
}

/** Names of messages, with dataRows collapsed ("dataRow×3"). */
export function shape(msgs: Msg[]): string[] {
  const out: string[] = []
  for (const m of msgs) {
    const d = describe(m)
    const last = out[out.length - 1]
    if (d === 'dataRow' && last !== undefined && /^dataRow(×\d+)?$/.test(last)) {
      const n = last === 'dataRow' ? 1 : Number(last.slice('dataRow×'.length))
      out[out.length - 1] = `dataRow×${n + 1}`
    } else {
      out.push(d)
    }
  }
  return out
}

/** Frontend message bytes: type byte, int32 length, body. */
export function frame(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5)
  head[0] = type.charCodeAt(0)
  head.writeInt32BE(body.length + 4, 1)
  return Buffer.concat([head, body])
}

/** A NUL-terminated UTF-8 string. */
export function cstr(s: string): Buffer {
  return Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])])
}
