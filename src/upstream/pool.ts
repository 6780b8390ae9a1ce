/**
 * Upstream connection reuse (`upstream.pool`, off by default).
 *
 * When a governed session ends cleanly — the client closed or sent
 * Terminate while the server connection was idle (not in a transaction or a
 * failed one, not in COPY, nothing in flight, nothing half-sent) — its
 * authenticated upstream connection is reset with `DISCARD ALL` and kept. The
 * next session mapped to the same role, database, startup parameters (all
 * but application_name) and upstream (host, port, TLS settings and the
 * role's credentials: a reload that changes any of these changes the key) is
 * handed it instead of paying for TCP + TLS + SCRAM + a backend fork.
 *
 * Governed settings: a pooled connection is opened with neutral startup
 * values (`application_name=pgw:pooled`, `pgwitness.session_id=''`), and each
 * session that gets it sets its own with one `set_config` round trip before
 * the client is told it is logged in. Startup values are what `RESET ALL` /
 * `DISCARD ALL` restore, so a client resetting on a reused connection gets
 * the neutral values — never another session's id.
 *
 * The pool only sees the relay through the socket it hands out: a Proxy of
 * the real socket that (a) frames the frontend bytes written to it, keeping
 * the client's Terminate from reaching the server, and counting the messages
 * that end a request cycle (Query, Sync, FunctionCall) against the server's
 * ReadyForQuery, (b) records the listeners the relay adds, to remove them on
 * release, and (c) ignores end()/destroy() once the session is over and the
 * connection released. A connection is watched for its whole life: one that
 * the server closes (or that says anything) while idle is dropped at once,
 * and a checkout's set_config round trip is the liveness check.
 */
import { createHash } from 'node:crypto'
import type { Logger } from 'pino'
import { serialize } from 'pg-protocol'
import type { UpstreamConfig } from '../config/types.js'
import type { ProxyMetrics, UpstreamPoolStats } from '../metrics/registry.js'
import { decodeErrorFields } from '../protocol/backend-fields.js'
import { SQLSTATE } from '../protocol/errors.js'
import { BodyMode, MessageStream } from '../protocol/message-stream.js'
import { connectUpstream, UpstreamError, type UpstreamConnection, type UpstreamLogin } from './connect.js'

/** What the pool needs from the proxy: the live config (replaced on reload), metrics and the log. */
export interface PoolHost {
  readonly config: { readonly upstream: UpstreamConfig }
  readonly metrics: ProxyMetrics
  readonly log: Logger
}

/** Startup values of the governed settings on a pooled connection (what RESET ALL restores). */
export const POOLED_APPLICATION_NAME = 'pgw:pooled'
export const POOLED_SESSION_ID = ''

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

const BE_ERROR = 0x45 // E
const BE_READY = 0x5a // Z
const BE_PARAMETER_STATUS = 0x53 // S
const STATUS_IDLE = 0x49 // I

const FE_QUERY = 0x51 // Q
const FE_SYNC = 0x53 // S
const FE_FUNCTION_CALL = 0x46 // F
const FE_FLUSH = 0x48 // H
const FE_TERMINATE = 0x58 // X
const FE_COPY_DATA = 0x64 // d
const FE_COPY_DONE = 0x63 // c
const FE_COPY_FAIL = 0x66 // f

const TERMINATE = Buffer.from([FE_TERMINATE, 0, 0, 0, 4])

/** Backend messages a DISCARD ALL may answer with (besides ErrorResponse and ReadyForQuery). */
const RESET_REPLIES: ReadonlySet<number> = new Set([0x43 /* C */, BE_PARAMETER_STATUS, 0x4e /* N */, 0x41 /* A */])
/** … and the set_config query. */
const SETUP_REPLIES: ReadonlySet<number> = new Set([0x54 /* T */, 0x44 /* D */, 0x43 /* C */, BE_PARAMETER_STATUS, 0x4e /* N */])

/**
 * A client that closes right after it has its answer can be ahead of the
 * server's last messages (PostgreSQL flushes an ErrorResponse before its
 * ReadyForQuery): the answers to requests already sent are awaited this long.
 * A statement still running by then is not waited for.
 */
const DRAIN_GRACE_MS = 250

/** Session end reasons after which the connection may be kept (if it is idle). */
const CLEAN_END = new Set(['client_closed', 'token_expired', 'policy_terminated'])

const pools = new WeakMap<PoolHost, UpstreamPool>()

/** The pool of this proxy (created on first use). */
export function upstreamPool(host: PoolHost): UpstreamPool {
  let p = pools.get(host)
  if (!p) pools.set(host, (p = new UpstreamPool(host)))
  return p
}

/**
 * Connect upstream for a governed session: from the pool when upstream.pool
 * is enabled (a reused connection, or a new one that will be pooled), else a
 * plain connectUpstream. `login.parameters` carries the session's governed
 * settings (application_name with its tag, pgwitness.session_id).
 */
export function openUpstream(host: PoolHost, cfg: UpstreamConfig, login: UpstreamLogin): Promise<UpstreamConnection> {
  if (!cfg.pool?.enabled || !host.config.upstream.pool?.enabled) {
    // Pooling was turned off by a reload: close what the pool still holds.
    pools.get(host)?.recheck(host.config.upstream)
    return connectUpstream(cfg, login)
  }
  return upstreamPool(host).open(cfg, login)
}

/** Close every idle pooled connection and stop pooling (proxy shutdown). */
export function closeUpstreamPool(host: PoolHost): void {
  pools.get(host)?.close()
}

export class UpstreamPool implements UpstreamPoolStats {
  private readonly idleByKey = new Map<string, PooledConnection[]>()
  reused = 0
  opened = 0
  readonly discarded: Record<string, number> = Object.create(null) as Record<string, number>
  private closed = false
  /** The upstream config the idle connections were last checked against. */
  private checkedConfig: UpstreamConfig | null = null

  constructor(private readonly host: PoolHost) {
    host.metrics.watchUpstreamPool?.(() => this)
  }

  get idle(): number {
    let n = 0
    for (const list of this.idleByKey.values()) n += list.length
    return n
  }

  async open(cfg: UpstreamConfig, login: UpstreamLogin): Promise<UpstreamConnection> {
    const current = this.host.config.upstream
    const fp = credentialFingerprint(cfg, login.role)
    // A session admitted under a config that a reload has since replaced: no pooling for it.
    if (this.closed || fp !== credentialFingerprint(current, login.role)) return connectUpstream(cfg, login)
    this.recheck(current)
    const key = poolKey(login, fp)
    const governed = {
      applicationName: login.parameters.application_name ?? POOLED_APPLICATION_NAME,
      sessionId: login.parameters['pgwitness.session_id'] ?? POOLED_SESSION_ID,
    }
    const setup = setupQuery(governed.applicationName, governed.sessionId)
    const list = this.idleByKey.get(key)
    while (list && list.length > 0) {
      const c = list.pop()! // most recently used first: the others may idle out
      if (list.length === 0) this.idleByKey.delete(key)
      c.takeFromIdle()
      if (!c.alive) {
        this.discard(c, 'closed_while_idle')
        continue
      }
      if (Date.now() - c.createdAt >= (current.pool?.maxLifetimeMs ?? Infinity)) {
        this.discard(c, 'max_lifetime')
        continue
      }
      try {
        await c.exchange(setup, SETUP_REPLIES, cfg.connectTimeoutMs)
      } catch (err) {
        this.host.log.debug({ backend_pid: c.backendPid, err: (err as Error).message }, 'a pooled upstream connection failed its checkout; opening another')
        this.discard(c, 'checkout_failed')
        continue
      }
      this.reused++
      return c.lease()
    }

    const conn = await connectUpstream(cfg, {
      ...login,
      parameters: { ...login.parameters, application_name: POOLED_APPLICATION_NAME, 'pgwitness.session_id': POOLED_SESSION_ID },
    })
    const c = new PooledConnection(conn, key, fp, login.role, this)
    this.opened++
    try {
      await c.exchange(setup, SETUP_REPLIES, cfg.connectTimeoutMs)
    } catch (err) {
      c.destroy()
      throw new UpstreamError('upstream_rejected', {
        code: SQLSTATE.connectionRejected,
        message: `could not set the governed session settings on the upstream connection: ${(err as Error).message}`,
      })
    }
    return c.lease()
  }

  /** A session is over: reset and keep its connection, or close it. */
  release(c: PooledConnection, reusable: DiscardReason | null): void {
    if (reusable !== null) return this.discard(c, reusable)
    const refusal = this.refusal(c)
    if (refusal) return this.discard(c, refusal)
    c.exchange('DISCARD ALL', RESET_REPLIES, this.host.config.upstream.connectTimeoutMs).then(
      () => {
        const late = this.refusal(c)
        if (late) return this.discard(c, late)
        const pool = this.host.config.upstream.pool! // enabled: refusal() checked
        let list = this.idleByKey.get(c.key)
        if (!list) this.idleByKey.set(c.key, (list = []))
        if (list.length >= pool.maxIdlePerKey) return this.discard(c, 'full')
        list.push(c)
        const lifeLeft = Math.max(0, c.createdAt + pool.maxLifetimeMs - Date.now())
        if (lifeLeft < pool.idleTimeoutMs) c.toIdle(lifeLeft, 'max_lifetime')
        else c.toIdle(pool.idleTimeoutMs, 'idle_timeout')
      },
      (err: Error) => {
        this.host.log.debug({ backend_pid: c.backendPid, err: err.message }, 'resetting a pooled upstream connection failed; closing it')
        this.discard(c, 'reset_failed')
      },
    )
  }

  /** Why a released connection must not be kept under the current config, or null. */
  private refusal(c: PooledConnection): DiscardReason | null {
    const current = this.host.config.upstream
    if (this.closed) return 'shutdown'
    if (!current.pool?.enabled) return 'disabled'
    if (credentialFingerprint(current, c.role) !== c.fingerprint) return 'credentials_changed'
    if (!c.alive) return 'closed_while_idle'
    if (Date.now() - c.createdAt >= current.pool.maxLifetimeMs) return 'max_lifetime'
    return null
  }

  /** After a reload: close idle connections made with other credentials, or all when pooling was turned off. */
  recheck(current: UpstreamConfig): void {
    if (this.checkedConfig === current) return
    this.checkedConfig = current
    for (const list of [...this.idleByKey.values()]) {
      for (const c of [...list]) {
        const why = this.refusal(c)
        if (why) this.discard(c, why)
      }
    }
  }

  /** Idle timer fired, or the server closed an idle connection. */
  expire(c: PooledConnection, why: DiscardReason): void {
    this.discard(c, why)
  }

  discard(c: PooledConnection, why: DiscardReason): void {
    const list = this.idleByKey.get(c.key)
    const i = list ? list.indexOf(c) : -1
    if (i >= 0) {
      list!.splice(i, 1)
      if (list!.length === 0) this.idleByKey.delete(c.key)
    }
    if (c.destroy()) this.discarded[why] = (this.discarded[why] ?? 0) + 1
  }

  close(): void {
    this.closed = true
    for (const list of [...this.idleByKey.values()]) for (const c of [...list]) this.discard(c, 'shutdown')
  }
}

/** One authenticated upstream connection owned by the pool, watched for its whole life. */
class PooledConnection {
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
    private readonly pool: UpstreamPool,
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
          return type === BE_READY || type === BE_PARAMETER_STATUS || (type === BE_ERROR && this.waiter) ? BodyMode.Capture : BodyMode.Skip
        },
        message: (type, body) => this.serverMessage(type, body),
        piece: () => undefined,
        end: (type) => this.serverMessage(type, null),
      },
      0x7fffffff,
      'server',
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
    return this.fromServer.atBoundary && this.lastServerType === BE_READY && this.lastReadyStatus === STATUS_IDLE
  }

  private serverMessage(type: number, body: Buffer | null): void {
    this.lastServerType = type
    if (type === BE_READY) {
      this.readyCount++
      this.lastReadyStatus = body && body.length > 0 ? body[0]! : 0
    } else if (type === BE_PARAMETER_STATUS && body) {
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
        if (type === BE_ERROR) {
          const e = decodeErrorFields(body!)
          error = `${e.code}: ${e.message}`
        } else if (type === BE_READY) {
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
      parameters: [...this.parameters],
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
      if (type === BE_READY && this.readyCount >= ready) finish(this.serverIdle ? null : 'not_idle')
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

type Listener = (...args: unknown[]) => void

/**
 * One session's use of a pooled connection: the socket the relay gets is a
 * Proxy of the real one (see the module comment).
 */
class Lease {
  readonly proxy: UpstreamConnection['socket']
  private detached = false
  private settled = false
  private readonly listeners: Array<[string | symbol, Listener]> = []
  private readonly bound = new Map<string | symbol, unknown>()
  // Frontend framing of what the relay writes upstream.
  private readonly header = Buffer.alloc(5)
  private headerFill = 0
  /** Body bytes left of the current frontend message; -1 between messages. */
  private remaining = -1
  /** Request cycles sent (Query, Sync, FunctionCall): each ends with a ReadyForQuery. */
  private cycles = 0
  /** An extended-protocol message (Parse, Bind, Execute, Describe, Close) sent since the last Sync. */
  private unsynced = false
  /** The client's Terminate was seen (and kept from the server). */
  private terminated = false
  /** Something the server must not see made reuse impossible (a Terminate split across writes, bytes after Terminate). */
  private spoiled = false

  constructor(
    private readonly conn: PooledConnection,
    /** The connection's ReadyForQuery count when the session got it. */
    private readonly readyAtStart: number,
  ) {
    const socket = conn.socket
    const self = this
    this.proxy = new Proxy(socket, {
      get(target, prop) {
        switch (prop) {
          case 'write':
            return self.write
          case 'end':
            return self.end
          case 'destroy':
            return self.destroy
          case 'on':
          case 'addListener':
          case 'once':
          case 'prependListener':
          case 'prependOnceListener':
            return self.listen(prop)
          case 'removeAllListeners':
            return self.removeAll
        }
        const v = Reflect.get(target, prop, target) as unknown
        if (typeof v !== 'function') return v
        if (self.detached) return noop
        let b = self.bound.get(prop)
        if (!b) self.bound.set(prop, (b = (v as (...a: unknown[]) => unknown).bind(target)))
        return b
      },
    })
  }

  private readonly write = (chunk: Buffer | string, ...rest: unknown[]): boolean => {
    const socket = this.conn.socket
    if (this.detached || this.terminated) {
      if (this.terminated && !this.detached && chunk.length > 0) this.spoiled = true
      return true
    }
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
    const cut = this.scan(buf)
    if (cut < 0) return (socket.write as (c: Buffer, ...r: unknown[]) => boolean)(buf, ...rest)
    // The client's Terminate: forward what came before it, keep the server session, and
    // end the relay as the server would on Terminate (some clients wait for that close).
    const ok = cut > 0 ? socket.write(buf.subarray(0, cut)) : true
    if (cut + 5 < buf.length) this.spoiled = true
    setImmediate(() => {
      if (this.detached) return
      for (const [ev, fn] of this.listeners) if (ev === 'end') fn.call(socket)
    })
    return ok
  }

  /**
   * Frame the frontend bytes; returns the offset of a Terminate message in
   * `buf` (which is not to be forwarded), or -1.
   */
  private scan(buf: Buffer): number {
    let off = 0
    const n = buf.length
    while (off < n) {
      if (this.remaining >= 0) {
        const take = Math.min(this.remaining, n - off)
        off += take
        this.remaining -= take
        if (this.remaining === 0) this.remaining = -1
        continue
      }
      const start = off - this.headerFill
      const take = Math.min(5 - this.headerFill, n - off)
      buf.copy(this.header, this.headerFill, off, off + take)
      this.headerFill += take
      off += take
      if (this.headerFill < 5) break
      this.headerFill = 0
      const type = this.header[0]!
      const body = this.header.readInt32BE(1) - 4
      if (type === FE_TERMINATE) {
        this.terminated = true
        if (start < 0) {
          // Part of its header already went out: the server will see it.
          this.spoiled = true
          return -1
        }
        return start
      }
      if (type === FE_QUERY || type === FE_SYNC || type === FE_FUNCTION_CALL) {
        this.cycles++
        this.unsynced = false
      } else if (type !== FE_FLUSH && type !== FE_COPY_DATA && type !== FE_COPY_DONE && type !== FE_COPY_FAIL) {
        this.unsynced = true
      }
      if (body < 0) {
        this.spoiled = true
        this.remaining = -1
        return -1
      }
      this.remaining = body > 0 ? body : -1
    }
    return -1
  }

  private readonly end = (..._args: unknown[]): unknown => {
    // The relay is done with the connection; the session's release decides its fate.
    // Should no release come (a session that never calls it), close it.
    if (!this.detached && !this.settled) {
      setImmediate(() => {
        if (!this.settled) this.settle('unknown')
      })
    }
    return this.proxy
  }

  private readonly destroy = (..._args: unknown[]): unknown => {
    if (!this.detached && !this.settled) {
      this.settled = true
      this.detach()
      this.conn.released(this, 'session_end_reason')
    }
    return this.proxy
  }

  private listen(method: string): (ev: string | symbol, fn: Listener) => unknown {
    return (ev, fn) => {
      if (this.detached) return this.proxy
      this.listeners.push([ev, fn])
      ;(this.conn.socket as unknown as Record<string, (e: string | symbol, f: Listener) => unknown>)[method]!(ev, fn)
      return this.proxy
    }
  }

  private readonly removeAll = (ev?: string | symbol): unknown => {
    for (const [e, fn] of this.listeners) if (ev === undefined || e === ev) this.conn.socket.off(e, fn)
    return this.proxy
  }

  /** Take back everything the relay attached; the proxy goes inert. */
  detach(): void {
    if (this.detached) return
    this.detached = true
    for (const [ev, fn] of this.listeners) this.conn.socket.off(ev, fn)
    this.listeners.length = 0
  }

  /** The session ended with `reason`: decide whether the connection can be reset and kept. */
  settle(reason: string): void {
    if (this.settled) return
    this.settled = true
    const verdict = this.verdict(reason)
    this.detach()
    if (verdict === 'drain') this.conn.drain(this, this.readyAtStart + this.cycles, DRAIN_GRACE_MS)
    else this.conn.released(this, verdict)
  }

  /** null: reusable now; 'drain': reusable once the answers still due have arrived. */
  private verdict(reason: string): DiscardReason | 'drain' | null {
    const clean = CLEAN_END.has(reason) || (reason === 'upstream_closed' && this.terminated)
    if (!clean) return 'session_end_reason'
    if (!this.conn.alive) return 'closed_while_idle'
    const clientClean = !this.spoiled && this.remaining < 0 && this.headerFill === 0 && !this.unsynced
    if (!clientClean) return 'not_idle'
    const due = this.readyAtStart + this.cycles - this.conn.readyCount
    if (due > 0) return 'drain'
    return due === 0 && this.conn.serverIdle ? null : 'not_idle'
  }
}

function noop(): void {}

/**
 * What a pooled connection was made with besides role and database: the
 * upstream address, TLS settings and the role's credentials. Hashed, so no
 * secret is kept in the key; cached per config object (a reload makes a new one).
 */
const fingerprints = new WeakMap<UpstreamConfig, Map<string, string>>()

export function credentialFingerprint(cfg: UpstreamConfig, role: string): string {
  let byRole = fingerprints.get(cfg)
  if (!byRole) fingerprints.set(cfg, (byRole = new Map()))
  let fp = byRole.get(role)
  if (fp === undefined) {
    const creds = Object.prototype.hasOwnProperty.call(cfg.roles, role) ? cfg.roles[role]! : null
    fp = createHash('sha256')
      .update(JSON.stringify([
        cfg.host, cfg.port, cfg.tls.mode, cfg.tls.ca, cfg.tls.servername, role,
        creds?.password ?? null, creds?.clientCert?.cert ?? null, creds?.clientCert?.key ?? null,
      ]))
      .digest('base64url')
    byRole.set(role, fp)
  }
  return fp
}

/**
 * The pool key: role, database, the startup parameters the connection was
 * opened with (all but the governed ones, which each session sets), and the
 * credential fingerprint. A client whose client_encoding, DateStyle,
 * TimeZone, options, … differ gets a connection opened with its own.
 */
export function poolKey(login: UpstreamLogin, fingerprint: string): string {
  const params = Object.entries(login.parameters)
    .filter(([k]) => k !== 'application_name' && k !== 'pgwitness.session_id')
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return JSON.stringify([login.role, login.database, params, fingerprint])
}

/**
 * The governed settings for one session, as literals that mean the same
 * under any standard_conforming_strings (E'' strings), with schema-qualified
 * calls (the previous client may have set search_path: DISCARD ALL resets
 * it, but do not depend on that).
 */
export function setupQuery(applicationName: string, sessionId: string): string {
  const lit = (s: string): string => `E'${s.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`
  return (
    `SELECT pg_catalog.set_config('application_name', ${lit(applicationName)}, false), ` +
    `pg_catalog.set_config('pgwitness.session_id', ${lit(sessionId)}, false)`
  )
}
