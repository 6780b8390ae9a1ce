/**
 * One authenticated upstream connection owned by the pool (`upstream.pool`,
 * see ./pool.ts), watched for its whole life: one that the server closes (or
 * that says anything) while idle is dropped at once. It frames what the
 * server sends to know when the server is idle, runs the proxy's own queries
 * (the checkout's set_config, the release's DISCARD ALL), and hands itself to
 * one session at a time through a Lease (./lease.ts).
 */
import { serialize } from 'pg-protocol'
import { decodeErrorFields } from '../protocol/backend-fields.js'
import { BodyMode, MessageStream } from '../protocol/message-stream.js'
import type { UpstreamConnection } from './connect.js'
import { Lease } from './lease.js'
import { parameterPair } from './parameter-pairs.js'
import { BackendType } from '../protocol/backend-types.js'

/** Why the pool closed a connection (metric label values). */
export type DiscardReason =
  /** The session ended in a state that cannot be reset safely (transaction, COPY, statement in flight, …). */
  | 'not_idle'
  /** The session ended for a reason that is not a clean end (upstream error, protocol violation, shutdown). */
  | 'session_end_reason'
  /** DISCARD ALL failed or timed out. */
  | 'reset_failed'
  /** The server closed the connection (or sent something) while it was idle in the pool. */
  | 'closed_while_idle'
  | 'idle_timeout'
  | 'max_lifetime'
  /** max_idle_per_key idle connections are already kept for its key. */
  | 'full'
  /** A reload changed the upstream or the role's credentials. */
  | 'credentials_changed'
  /** upstream.pool was turned off by a reload. */
  | 'disabled'
  /** Setting the next session's governed settings failed (the connection was dead). */
  | 'checkout_failed'
  | 'shutdown'

const BE = BackendType
const STATUS_IDLE = 0x49 // I

const TERMINATE = Buffer.from([0x58 /* X */, 0, 0, 0, 4])

/** Backend messages a DISCARD ALL may answer with (besides ErrorResponse and ReadyForQuery). */
export const RESET_REPLIES: ReadonlySet<number> = new Set([BE.CommandComplete, BE.ParameterStatus, BE.NoticeResponse, BE.NotificationResponse])
/** … and the set_config query. */
export const SETUP_REPLIES: ReadonlySet<number> = new Set([BE.RowDescription, BE.DataRow, BE.CommandComplete, BE.ParameterStatus, BE.NoticeResponse])

/** What a connection tells the pool that owns it. */
export interface ConnectionOwner {
  /** The session's lease is over: `verdict` null if the connection may be reset and kept. */
  release(c: PooledConnection, verdict: DiscardReason | null): void
  /** Idle timer fired, or the server closed an idle connection. */
  expire(c: PooledConnection, why: DiscardReason): void
}

/** One authenticated upstream connection owned by the pool, watched for its whole life. */
export class PooledConnection {
  readonly socket: UpstreamConnection['socket']
  readonly backendPid: number
  readonly secretKey: number
  readonly serverSessionId: string
  readonly tls: boolean
  readonly createdAt = Date.now()
  /** The server's current ParameterStatus values, in the order it first sent them. */
  readonly parameters = new Map<string, string>()
  private state: 'leased' | 'resetting' | 'idle' | 'closed' = 'leased'
  private dead = false
  private readonly fromServer: MessageStream
  /** Type of the last complete backend message (0 inside one). */
  lastServerType = 0
  lastReadyStatus = 0
  /** ReadyForQuery messages seen. */
  readyCount = 0
  private waiter: ((type: number, body: Buffer | null) => void) | null = null
  private onDeath: (() => void) | null = null
  private idleTimer: NodeJS.Timeout | null = null
  private current: Lease | null = null

  constructor(
    conn: UpstreamConnection,
    readonly key: string,
    readonly fingerprint: string,
    readonly role: string,
    private readonly pool: ConnectionOwner,
  ) {
    this.socket = conn.socket
    this.backendPid = conn.backendPid
    this.secretKey = conn.secretKey
    this.serverSessionId = conn.serverSessionId
    this.tls = conn.tls
    for (const [k, v] of conn.parameters) this.parameters.set(k, v)
    this.fromServer = new MessageStream(
      {
        header: (type) => {
          this.lastServerType = 0
          return type === BE.ReadyForQuery || type === BE.ParameterStatus || (type === BE.ErrorResponse && this.waiter) ? BodyMode.Capture : BodyMode.Skip
        },
        message: (type, body) => this.serverMessage(type, body),
        piece: () => undefined,
        end: (type) => this.serverMessage(type, null),
        // A run of DataRows is one event here: what is waited for (ReadyForQuery, errors) is never a row.
        run: (type) => this.serverMessage(type, null),
      },
      0x7fffffff,
      'server',
      BE.DataRow,
    )
    const s = this.socket
    s.on('data', (chunk: Buffer) => {
      if (this.state === 'idle') {
        // An idle backend says nothing unless it is going away (FATAL before closing).
        this.dead = true
        this.pool.expire(this, 'closed_while_idle')
        return
      }
      if (this.state === 'closed') return
      try {
        this.fromServer.push(chunk)
      } catch {
        this.died()
      }
    })
    s.on('end', () => this.died())
    s.on('close', () => this.died())
    s.on('error', () => this.died())
  }

  /** Open and not ended by either side. */
  get alive(): boolean {
    const s = this.socket
    return !this.dead && !s.destroyed && s.writable && !s.readableEnded
  }

  /** The server is waiting for a query outside any transaction, with nothing half-received. */
  get serverIdle(): boolean {
    return this.fromServer.atBoundary && this.lastServerType === BE.ReadyForQuery && this.lastReadyStatus === STATUS_IDLE
  }

  private serverMessage(type: number, body: Buffer | null): void {
    this.lastServerType = type
    if (type === BE.ReadyForQuery) {
      this.readyCount++
      this.lastReadyStatus = body && body.length > 0 ? body[0]! : 0
    } else if (type === BE.ParameterStatus && body) {
      const nameEnd = body.indexOf(0)
      const valueEnd = body.indexOf(0, nameEnd + 1)
      if (nameEnd > 0 && valueEnd > nameEnd) this.parameters.set(body.toString('utf8', 0, nameEnd), body.toString('utf8', nameEnd + 1, valueEnd))
    }
    this.waiter?.(type, body)
  }

  private died(): void {
    if (this.dead) return
    this.dead = true
    const cb = this.onDeath
    this.onDeath = null
    cb?.()
    if (this.state === 'idle') this.pool.expire(this, 'closed_while_idle')
  }

  /**
   * Send one simple Query the proxy itself runs and wait for its
   * ReadyForQuery: it must succeed and leave the connection idle ('I').
   */
  exchange(sql: string, replies: ReadonlySet<number>, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      if (!this.alive) return reject(new Error('the connection is closed'))
      let error: string | null = null
      let settled = false
      const finish = (err: Error | null): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        this.waiter = null
        this.onDeath = null
        if (err) reject(err)
        else resolve()
      }
      const timer = setTimeout(() => finish(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)
      this.waiter = (type, body) => {
        if (type === BE.ErrorResponse) {
          const e = decodeErrorFields(body!)
          error = `${e.code}: ${e.message}`
        } else if (type === BE.ReadyForQuery) {
          finish(error ? new Error(error) : this.lastReadyStatus !== STATUS_IDLE ? new Error('the server is not idle after the query') : null)
        } else if (!replies.has(type)) {
          finish(new Error(`unexpected message type ${JSON.stringify(String.fromCharCode(type))}`))
        }
      }
      this.onDeath = () => finish(new Error('the server closed the connection'))
      this.socket.resume()
      this.socket.write(serialize.query(sql))
    })
  }

  takeFromIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer)
    this.idleTimer = null
    this.state = 'leased'
    this.socket.ref()
  }

  toIdle(timeoutMs: number, why: DiscardReason): void {
    this.state = 'idle'
    this.socket.unref()
    this.idleTimer = setTimeout(() => this.pool.expire(this, why), timeoutMs)
    this.idleTimer.unref()
  }

  /** Hand the connection to a session. */
  lease(): UpstreamConnection {
    this.state = 'leased'
    const lease = (this.current = new Lease(this, this.readyCount))
    return {
      socket: lease.proxy,
      backendPid: this.backendPid,
      secretKey: this.secretKey,
      parameters: Array.from(this.parameters, ([k, v]) => parameterPair(k, v)),
      serverSessionId: this.serverSessionId,
      tls: this.tls,
      release: (reason) => lease.settle(reason),
    }
  }

  /**
   * The session is over but answers to requests it sent are still due: wait
   * (at most graceMs) for the server to reach ReadyForQuery number `ready`,
   * then release the connection if that leaves it idle.
   */
  drain(lease: Lease, ready: number, graceMs: number): void {
    let done = false
    const finish = (verdict: DiscardReason | null): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      this.waiter = null
      this.onDeath = null
      this.released(lease, verdict)
    }
    const timer = setTimeout(() => finish('not_idle'), graceMs)
    this.waiter = (type) => {
      if (type === BE.ReadyForQuery && this.readyCount >= ready) finish(this.serverIdle ? null : 'not_idle')
    }
    this.onDeath = () => finish('closed_while_idle')
    this.socket.resume()
  }

  /** The session's lease is over (see Lease.settle). */
  released(lease: Lease, verdict: DiscardReason | null): void {
    if (this.current !== lease) return
    this.current = null
    this.state = 'resetting'
    this.pool.release(this, verdict)
  }

  /** Close for good (Terminate, then FIN); false if it already was closed. */
  destroy(): boolean {
    if (this.state === 'closed') return false
    this.state = 'closed'
    this.current?.detach()
    this.current = null
    if (this.idleTimer) clearTimeout(this.idleTimer)
    this.idleTimer = null
    this.waiter = null
    const s = this.socket
    if (!s.destroyed) {
      if (s.writable && !this.dead) s.end(TERMINATE)
      else s.end()
      setTimeout(() => s.destroy(), 5000).unref()
    }
    this.dead = true
    return true
  }
}
