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
 * This module is the pool itself (checkout, release, limits, reloads) and
 * the entry points the proxy calls. The rest of `upstream.pool`:
 * - ./pool-key.ts: the pool key and the governed settings each session sets
 *   on a shared connection;
 * - ./pooled-connection.ts: a pooled connection, watched for its whole life
 *   (one that the server closes while idle is dropped at once; a checkout's
 *   set_config round trip is the liveness check);
 * - ./lease.ts: the Proxy of the socket a session's relay gets, which keeps
 *   the client's Terminate from the server and decides on release whether
 *   the connection can be kept.
 */
import type { Logger } from 'pino'
import type { UpstreamConfig } from '../config/types.js'
import type { ProxyMetrics, UpstreamPoolStats } from '../metrics/registry.js'
import { SQLSTATE } from '../protocol/errors.js'
import { connectUpstream, UpstreamError, type UpstreamConnection, type UpstreamLogin } from './connect.js'
import { credentialFingerprint, poolKey, POOLED_APPLICATION_NAME, POOLED_SESSION_ID, setupQuery } from './pool-key.js'
import {
  PooledConnection,
  RESET_REPLIES,
  SETUP_REPLIES,
  type ConnectionOwner,
  type DiscardReason,
} from './pooled-connection.js'

export { credentialFingerprint, poolKey, POOLED_APPLICATION_NAME, POOLED_SESSION_ID, setupQuery } from './pool-key.js'
export type { DiscardReason } from './pooled-connection.js'

/** What the pool needs from the proxy: the live config (replaced on reload), metrics and the log. */
export interface PoolHost {
  readonly config: { readonly upstream: UpstreamConfig }
  readonly metrics: ProxyMetrics
  readonly log: Logger
}

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
  // A walsender is never reused: it cannot be reset, and runs no SQL when physical.
  if (login.parameters['replication'] !== undefined) return connectUpstream(cfg, login)
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

export class UpstreamPool implements UpstreamPoolStats, ConnectionOwner {
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
