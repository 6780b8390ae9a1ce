/**
 * Budgets of connections that have not authenticated yet, so idle or slow
 * sockets cannot starve real sessions: at most `limits.max_handshakes`
 * handshakes (TLS, startup, authentication) in progress, at most
 * `limits.max_handshakes_per_source` of them from one client address.
 * Beyond either, a connection is closed at accept, before any TLS work, and
 * counted in pgwitness_handshakes_refused_total{reason}. Authenticated
 * sessions are counted apart (limits.max_connections), so half-open
 * connections never take their places.
 */
import type net from 'node:net'
import type { Logger } from 'pino'
import { Counter, Gauge } from 'prom-client'
import type { LimitsConfig } from '../config/types.js'
import type { PrometheusMetrics } from '../metrics/registry.js'

export type HandshakeRefusal = 'max_handshakes' | 'max_handshakes_per_source'
const REFUSALS: readonly HandshakeRefusal[] = ['max_handshakes', 'max_handshakes_per_source']

export class HandshakeBudget {
  private total = 0
  private readonly perSource = new Map<string, number>()
  private readonly refused: Counter<'reason'>
  private loggedAt = 0
  private refusedSinceLog = 0

  /** `limits` is read at every accept: a reload (SIGHUP) applies at once. */
  constructor(private readonly limits: () => LimitsConfig, metrics: PrometheusMetrics, private readonly log: Logger) {
    this.refused = new Counter({
      name: 'pgwitness_handshakes_refused_total',
      help: 'Connections closed at accept, before TLS, because limits.max_handshakes or limits.max_handshakes_per_source was reached.',
      labelNames: ['reason'],
      registers: [],
    })
    for (const reason of REFUSALS) this.refused.inc({ reason }, 0)
    metrics.adopt(this.refused)
    const budget = this
    metrics.adopt(new Gauge({
      name: 'pgwitness_handshakes_in_progress',
      help: 'Connections in their handshake now (accepted, not yet authenticated or refused).',
      registers: [],
      collect() {
        this.set(budget.total)
      },
    }))
  }

  /** A warning at most every 10 s while connections are being closed (a flood must not flood the log too). */
  private noteRefused(reason: HandshakeRefusal, address: string): void {
    this.refusedSinceLog++
    const now = Date.now()
    if (now - this.loggedAt < 10_000) return
    const l = this.limits()
    this.log.warn({ reason, address, refused: this.refusedSinceLog, max_handshakes: l.maxHandshakes, max_handshakes_per_source: l.maxHandshakesPerSource },
      'handshake budget reached: closing new connections at accept')
    this.loggedAt = now
    this.refusedSinceLog = 0
  }

  get inProgress(): number {
    return this.total
  }

  /**
   * Takes a handshake slot for a new connection from `address`; returns a
   * release function (idempotent), or why the connection must be closed.
   */
  acquire(address: string): { release: () => void } | { refused: HandshakeRefusal } {
    const l = this.limits()
    const fromSource = this.perSource.get(address) ?? 0
    const refused: HandshakeRefusal | null = this.total >= l.maxHandshakes ? 'max_handshakes'
      : fromSource >= l.maxHandshakesPerSource ? 'max_handshakes_per_source' : null
    if (refused !== null) {
      this.refused.inc({ reason: refused })
      this.noteRefused(refused, address)
      return { refused }
    }
    this.total++
    this.perSource.set(address, fromSource + 1)
    let held = true
    return {
      release: () => {
        if (!held) return
        held = false
        this.total--
        const n = (this.perSource.get(address) ?? 1) - 1
        if (n === 0) this.perSource.delete(address)
        else this.perSource.set(address, n)
      },
    }
  }
}

/** What a GovernedSession tells the server about its place in the budgets. */
export interface SessionAdmission {
  /** The handshake is over (session started, refused, abandoned): its handshake slot is free. Idempotent. */
  handshakeEnded(): void
  /** An authenticated client asks for a place among limits.max_connections (its handshake slot is then free); false when they are all taken. */
  claimSession(): boolean
}

/** Outside a server (no budgets): every session is admitted. */
export const ALWAYS_ADMIT: SessionAdmission = { handshakeEnded: () => undefined, claimSession: () => true }

/**
 * Closes a connection over a handshake budget: no byte read, no TLS; a reset
 * (RST) rather than a FIN so that no socket of the proxy lingers for a
 * client that never reads.
 */
export function closeOverBudget(socket: net.Socket): void {
  socket.on('error', () => undefined)
  socket.resetAndDestroy()
}
