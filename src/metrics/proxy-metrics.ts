import type { OutcomeStatus } from '../evidence/types.js'

/** What the rest of the proxy reports to its metrics (PrometheusMetrics implements it in registry.ts). */

/** How a client connection's handshake ended (one per connection). */
export type ConnectionOutcome =
  /** A governed session started. */
  | 'admitted'
  /** Refused after the StartupMessage (an auth.failure record was written). */
  | 'refused'
  /** Ended before a StartupMessage: TCP probe, failed TLS handshake, timeout, garbage. */
  | 'aborted'
  /** A CancelRequest connection. */
  | 'cancel_request'
  /** Accepted while the proxy was shutting down, and closed at once. */
  | 'shutdown'

export type ByteDirection = 'client_to_server' | 'server_to_client'

/** A relay's running byte counts (Relay has them as plain fields). */
export interface RelayByteCounts {
  readonly bytesIn: number
  readonly bytesOut: number
}

/** What the proxy reports; every method is cheap enough for its call site. */
export interface ProxyMetrics {
  /** A client connection was accepted (active gauge +1). */
  connectionOpened(): void
  /** A connection accepted with connectionOpened() is over (active gauge -1). */
  connectionClosed(): void
  /** How the connection's handshake ended; call once per connection. */
  connectionOutcome(outcome: ConnectionOutcome): void
  /** One auth.failure record; its reason (an unknown reason is counted as "other"). */
  authFailure(reason: string): void
  /** A governed session started under this policy rule (also counts connection outcome "admitted"). */
  sessionStarted(policyRule: string): void
  /** One statement record: one increment per class ("NONE" without classes); duration observed when known. */
  statement(classes: readonly string[], status: OutcomeStatus, durationUs: number | null): void
  /** A statement rule refused a statement (`enforced`) or, in monitor mode, would have. */
  statementRule(rule: string, statementRule: string, enforced: boolean): void
  /** Bytes relayed outside a tracked relay. */
  bytes(direction: ByteDirection, n: number): void
  /** Count this relay's bytes live, at every scrape, until relayEnded(). */
  relayStarted(relay: RelayByteCounts): void
  /** Fold the relay's final byte counts into the totals and stop reading it. */
  relayEnded(relay: RelayByteCounts): void
  /** Run the upstream connect + login and observe how long it took (result ok / error). */
  timeUpstreamConnect<T>(connect: () => Promise<T>): Promise<T>
  upstreamConnect(seconds: number, ok: boolean): void
  /** The upstream connection pool (upstream.pool), read at scrape time. Optional: a pool may run without metrics. */
  watchUpstreamPool?(stats: () => UpstreamPoolStats): void
}

/** Counts of the upstream connection pool (src/upstream/pool.ts). */
export interface UpstreamPoolStats {
  /** Idle authenticated connections waiting for a session now. */
  readonly idle: number
  /** Sessions that got a pooled connection instead of a new one (monotonic). */
  readonly reused: number
  /** Connections closed by the pool instead of being kept or handed out, by reason (monotonic). */
  readonly discarded: Readonly<Record<string, number>>
}
