/**
 * One session's use of a pooled connection (`upstream.pool`, see ./pool.ts).
 *
 * The pool only sees the relay through the socket it hands out: a Proxy of
 * the real socket that (a) frames the frontend bytes written to it, keeping
 * the client's Terminate from reaching the server, and counting the messages
 * that end a request cycle (Query, Sync, FunctionCall) against the server's
 * ReadyForQuery, (b) records the listeners the relay adds, to remove them on
 * release, and (c) ignores end()/destroy() once the session is over and the
 * connection released. When the session ends, what the Proxy saw decides
 * whether the connection can be reset and kept.
 */
import type { UpstreamConnection } from './connect.js'
import type { DiscardReason, PooledConnection } from './pooled-connection.js'

const FE_QUERY = 0x51 // Q
const FE_SYNC = 0x53 // S
const FE_FUNCTION_CALL = 0x46 // F
const FE_FLUSH = 0x48 // H
const FE_TERMINATE = 0x58 // X
const FE_COPY_DATA = 0x64 // d
const FE_COPY_DONE = 0x63 // c
const FE_COPY_FAIL = 0x66 // f

/**
 * A client that closes right after it has its answer can be ahead of the
 * server's last messages (PostgreSQL flushes an ErrorResponse before its
 * ReadyForQuery): the answers to requests already sent are awaited this long.
 * A statement still running by then is not waited for.
 */
const DRAIN_GRACE_MS = 250

/** Session end reasons after which the connection may be kept (if it is idle). */
const CLEAN_END = new Set(['client_closed', 'token_expired', 'policy_terminated'])

type Listener = (...args: unknown[]) => void

/**
 * One session's use of a pooled connection: the socket the relay gets is a
 * Proxy of the real one (see the module comment).
 */
export class Lease {
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
  /** The client vanished with statements running: the relay ended the server session (it closes). */
  private endedBusy = false

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

  private readonly end = (...args: unknown[]): unknown => {
    // The client vanished (no Terminate of its own) with statements still running: the relay
    // ends the server session itself and reads their outcomes until the server closes
    // (Relay drain). That connection is not reusable: let the Terminate through, as without a pool.
    const data = args[0]
    if (!this.detached && !this.settled && !this.terminated && Buffer.isBuffer(data) && this.inFlight()) {
      this.spoiled = true
      this.endedBusy = true
      this.conn.socket.end(data)
      return this.proxy
    }
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

  /** Requests sent whose ReadyForQuery has not come back yet. */
  private inFlight(): boolean {
    return this.readyAtStart + this.cycles - this.conn.readyCount > 0 || this.unsynced
  }

  /** null: reusable now; 'drain': reusable once the answers still due have arrived. */
  private verdict(reason: string): DiscardReason | 'drain' | null {
    const clean = CLEAN_END.has(reason) || (reason === 'upstream_closed' && this.terminated)
    if (!clean) return 'session_end_reason'
    if (this.endedBusy) return 'not_idle'
    if (!this.conn.alive) return 'closed_while_idle'
    const clientClean = !this.spoiled && this.remaining < 0 && this.headerFill === 0 && !this.unsynced
    if (!clientClean) return 'not_idle'
    const due = this.readyAtStart + this.cycles - this.conn.readyCount
    if (due > 0) return 'drain'
    return due === 0 && this.conn.serverIdle ? null : 'not_idle'
  }
}

function noop(): void {}
