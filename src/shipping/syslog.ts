/**
 * syslog over TCP or TLS (RFC 5425), RFC 5424 messages with octet-counting
 * framing (syslog-message.ts).
 *
 * Delivery guarantee: TCP syslog has no application-level acknowledgement.
 * A batch counts as delivered once it has been written to the socket and
 * the connection is still healthy a moment later (SETTLE_MS): a receiver
 * that went away answers a write with a reset, which this catches, and the
 * batch is re-sent on a new connection from the cursor. Records written just
 * before a receiver fails in a way TCP cannot report (a host crash, a
 * receiver that accepted the bytes and then lost them) can still be lost —
 * use NATS JetStream or HTTP where the sink must confirm every record.
 */
import net from 'node:net'
import tls from 'node:tls'
import type { Logger } from 'pino'
import type { SyslogSinkConfig } from '../config/types.js'
import { rendererFor, type RecordRenderer } from './format.js'
import { syslogFrame, type SyslogHeader } from './syslog-message.js'
import { errorText, SinkError, type FollowedRecord, type SinkTransport } from './types.js'

/** How long a written batch must leave the connection healthy before it counts as delivered. */
const SETTLE_MS = 50

export class SyslogTransport implements SinkTransport {
  readonly describe: string
  private socket: net.Socket | null = null
  /** Why the current connection is unusable (error, reset, or the receiver closed it). */
  private broken: string | null = null
  private readonly render: RecordRenderer
  private readonly header: SyslogHeader

  constructor(private readonly c: SyslogSinkConfig, private readonly log: Logger) {
    this.describe = `${c.transport}://${c.host.includes(':') ? `[${c.host}]` : c.host}:${c.port}`
    this.render = rendererFor(c.format)
    this.header = { facility: c.facility, hostname: c.hostname, procid: String(process.pid) }
  }

  async send(batch: readonly FollowedRecord[], signal: AbortSignal): Promise<void> {
    const data = Buffer.concat(batch.map((r) => syslogFrame(r.record, this.render(r), this.header)))
    const socket = await this.connection()
    try {
      await this.write(socket, data)
      await sleep(SETTLE_MS)
      if (signal.aborted) throw new SinkError('aborted')
      if (this.broken !== null) throw new SinkError(`syslog receiver ${this.describe}: ${this.broken}`)
    } catch (err) {
      this.drop()
      throw err instanceof SinkError ? err : new SinkError(`syslog receiver ${this.describe}: ${errorText(err)}`, { cause: err })
    }
  }

  async close(): Promise<void> {
    const s = this.socket
    this.socket = null
    if (s === null || s.destroyed) return
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        s.destroy()
        resolve()
      }, 1000)
      s.end(() => {
        clearTimeout(t)
        resolve()
      })
    })
  }

  private drop(): void {
    this.socket?.destroy()
    this.socket = null
  }

  private async connection(): Promise<net.Socket> {
    if (this.socket !== null && this.broken === null && !this.socket.destroyed) return this.socket
    this.drop()
    this.broken = null
    const s = await this.connect()
    // Receivers send nothing; read and discard so a chatty one cannot stall the socket.
    s.on('data', () => undefined)
    s.on('error', (err) => {
      this.broken ??= errorText(err)
    })
    s.on('end', () => {
      this.broken ??= 'the receiver closed the connection'
    })
    s.on('close', () => {
      this.broken ??= 'connection closed'
    })
    this.socket = s
    this.log.info({ sink: this.c.name, to: this.describe }, 'audit sink connected to the syslog receiver')
    return s
  }

  private connect(): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const c = this.c
      const s = c.transport === 'tls'
        ? tls.connect({
          host: c.host,
          port: c.port,
          minVersion: 'TLSv1.2',
          ...(net.isIP(c.host) ? {} : { servername: c.host }),
          ...(c.ca !== null ? { ca: c.ca.pem } : {}),
        })
        : net.connect({ host: c.host, port: c.port })
      const timer = setTimeout(() => fail(new Error(`connect timed out after ${c.timeoutMs} ms`)), c.timeoutMs)
      const fail = (err: Error) => {
        clearTimeout(timer)
        s.destroy()
        reject(new SinkError(`cannot connect to the syslog receiver ${this.describe}: ${errorText(err)}`, { cause: err }))
      }
      s.once('error', fail)
      s.once(c.transport === 'tls' ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer)
        s.off('error', fail)
        // connection() adds the real handlers; never leave the socket without an error listener.
        s.on('error', () => undefined)
        s.setNoDelay(true)
        s.setKeepAlive(true, 30_000)
        resolve(s)
      })
    })
  }

  /** Write and wait until the bytes are handed to the kernel (or the write fails or times out). */
  private write(s: net.Socket, data: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`write timed out after ${this.c.timeoutMs} ms (the receiver is not reading)`)), this.c.timeoutMs)
      s.write(data, (err) => {
        clearTimeout(timer)
        if (err) reject(err)
        else resolve()
      })
    })
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}
