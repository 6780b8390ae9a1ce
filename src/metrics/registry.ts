import { performance } from 'node:perf_hooks'
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type LabelValues } from 'prom-client'
import type { AuditSink, AuditSinkObserver } from '../ledger/log.js'
import type { AuthFailureReason, OutcomeStatus } from '../evidence/types.js'
import type { JwksStats } from '../identity/jwks.js'
import { AuditMetrics, type AuditLogState, type AuditSinkLag } from './audit-metrics.js'
import type { ByteDirection, ConnectionOutcome, ProxyMetrics, RelayByteCounts, UpstreamPoolStats } from './proxy-metrics.js'
import { sourcedCounter } from './sourced-counter.js'
import { PlainHistogram } from './plain-histogram.js'

export { AUDIT_IO_BUCKETS, type AuditLogState, type AuditSinkLag } from './audit-metrics.js'
export type { ByteDirection, ConnectionOutcome, ProxyMetrics, RelayByteCounts, UpstreamPoolStats } from './proxy-metrics.js'

/**
 * Prometheus metrics of one ProxyServer (prefix `pgwitness_`).
 *
 * The rest of the code calls the small `ProxyMetrics` interface
 * (proxy-metrics.ts); the prom-client objects stay in here and in
 * audit-metrics.ts (the audit stream's). Per-statement and per-chunk work is kept
 * off prom-client: statements and audit records bump plain numbers in typed
 * arrays, relayed bytes are read from the live relays' own counters, and all
 * of it is folded into the counters at scrape time (collect callbacks), so
 * the hot path builds no label strings and hashes nothing.
 */

/** Buckets (seconds) for statement durations: 100 µs … 30 s. */
export const STATEMENT_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
/** Buckets (seconds) for upstream connect + login: 1 ms … 10 s. */
export const CONNECT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/** Statement class label values: the audit classes, NONE (no class), OTHER (anything unexpected). */
export const STATEMENT_CLASS_LABELS = ['READ', 'WRITE', 'FUNCTION', 'ROLE', 'DDL', 'MISC', 'MISC_SET', 'REPLICATION', 'NONE', 'OTHER'] as const
const CLASS_NONE = STATEMENT_CLASS_LABELS.indexOf('NONE')
const CLASS_OTHER = STATEMENT_CLASS_LABELS.indexOf('OTHER')

/** Statement status label values (OutcomeStatus) plus "other". */
export const STATEMENT_STATUS_LABELS = ['ok', 'error', 'denied', 'cancelled', 'unknown', 'other'] as const
const STATUS_OTHER = STATEMENT_STATUS_LABELS.indexOf('other')

/** Every auth.failure reason; others are counted as "other" so the label set stays bounded. */
const AUTH_FAILURE_REASONS: Record<AuthFailureReason, true> = {
  token_signature_invalid: true, token_expired: true, token_not_yet_valid: true, issuer_untrusted: true,
  audience_mismatch: true, algorithm_not_allowed: true, token_malformed: true, token_missing: true,
  cert_untrusted: true, cert_expired: true, token_not_bound: true, tls_required: true, policy_no_match: true,
  role_not_allowed: true, database_not_allowed: true, upstream_auth_failed: true, upstream_unavailable: true,
  upstream_rejected: true, handshake_timeout: true, protocol_violation: true, startup_rejected: true, rate_limited: true,
  approval_missing: true, approval_invalid: true, approval_expired: true, approval_not_bound: true, approval_out_of_scope: true,
  replication_not_allowed: true,
}

export const CONNECTION_OUTCOMES: readonly ConnectionOutcome[] = ['admitted', 'refused', 'aborted', 'cancel_request', 'shutdown']

const classIndex = new Map<string, number>(STATEMENT_CLASS_LABELS.map((c, i) => [c, i]))
const statusIndex = new Map<string, number>(STATEMENT_STATUS_LABELS.map((s, i) => [s, i]))

/** The auth failure label value for a reason. */
export function authFailureLabel(reason: string): string {
  return Object.prototype.hasOwnProperty.call(AUTH_FAILURE_REASONS, reason) ? reason : 'other'
}

/** Index into the statement counts of (class, status); unknown values map to OTHER / other. */
export function statementCell(cls: string | null, status: string): number {
  const c = cls === null ? CLASS_NONE : (classIndex.get(cls) ?? CLASS_OTHER)
  return c * STATEMENT_STATUS_LABELS.length + (statusIndex.get(status) ?? STATUS_OTHER)
}

let processRegistry: Registry | null = null

/**
 * prom-client's default process metrics (process_*, nodejs_*), under their
 * standard names so stock dashboards work. They describe the process, not one
 * proxy, so they live in one registry per process that each proxy's exposition
 * includes (collecting them per proxy would add GC and event-loop observers per instance).
 */
function defaultMetricsRegistry(): Registry {
  if (processRegistry === null) {
    processRegistry = new Registry()
    collectDefaultMetrics({ register: processRegistry })
  }
  return processRegistry
}


export class PrometheusMetrics implements ProxyMetrics {
  /** This proxy's own metrics. */
  readonly registry = new Registry()
  /** What /metrics serves: this registry plus the process-wide default metrics. */
  private readonly exposed: Registry

  private readonly connectionsActive: Gauge
  private readonly connectionsTotal: Counter<'outcome'>
  private readonly connectionChildren = new Map<ConnectionOutcome, { inc(): void }>()
  private readonly authFailures: Counter<'reason'>
  private readonly authChildren = new Map<string, { inc(): void }>()
  private readonly sessions: Counter<'policy_rule'>
  private readonly sessionChildren = new Map<string, { inc(): void }>()
  private readonly ruleDenials: Counter<'rule' | 'statement_rule'>
  private readonly ruleWouldDeny: Counter<'rule' | 'statement_rule'>
  private readonly statementDuration: PlainHistogram
  private readonly upstreamOk: { observe(v: number): void }
  private readonly upstreamError: { observe(v: number): void }
  private readonly audit: AuditMetrics

  /** Statements per (class, status): STATEMENT_CLASS_LABELS × STATEMENT_STATUS_LABELS. */
  private readonly statementCounts = new Float64Array(STATEMENT_CLASS_LABELS.length * STATEMENT_STATUS_LABELS.length)
  /** Bytes of ended relays (and bytes()). */
  private bytesToServer = 0
  private bytesToClient = 0
  private readonly liveRelays = new Set<RelayByteCounts>()
  private jwksStats: () => Record<string, JwksStats> = () => ({})
  private poolStats: (() => UpstreamPoolStats) | null = null

  constructor() {
    const registers = [this.registry]
    const p = 'pgwitness_'

    this.connectionsActive = new Gauge({ name: `${p}connections_active`, help: 'Client connections open now (handshaking or in a session).', registers })
    this.connectionsTotal = new Counter({
      name: `${p}connections_total`,
      help: 'Client connections by how their handshake ended: admitted, refused, aborted (before a StartupMessage), cancel_request, shutdown.',
      labelNames: ['outcome'],
      registers,
    })
    for (const o of CONNECTION_OUTCOMES) {
      this.connectionsTotal.inc({ outcome: o }, 0)
      this.connectionChildren.set(o, this.connectionsTotal.labels(o))
    }
    this.authFailures = new Counter({ name: `${p}auth_failures_total`, help: 'Refused connections (auth.failure records) by reason.', labelNames: ['reason'], registers })
    this.sessions = new Counter({ name: `${p}sessions_total`, help: 'Governed sessions started, by the policy rule that admitted them.', labelNames: ['policy_rule'], registers })

    this.ruleDenials = new Counter({
      name: `${p}statement_rule_denials_total`,
      help: 'Statements refused by a statement rule in enforce mode, by policy rule and statement rule.',
      labelNames: ['rule', 'statement_rule'],
      registers,
    })
    this.ruleWouldDeny = new Counter({
      name: `${p}statement_rule_would_deny_total`,
      help: 'Statements a statement rule in monitor mode would have refused (they ran), by policy rule and statement rule.',
      labelNames: ['rule', 'statement_rule'],
      registers,
    })

    const counts = this.statementCounts
    const cellLabels: Array<LabelValues<'class' | 'status'>> = []
    for (const c of STATEMENT_CLASS_LABELS) for (const s of STATEMENT_STATUS_LABELS) cellLabels.push({ class: c, status: s })
    sourcedCounter({
      name: `${p}statements_total`,
      help: 'Statements by audit class and outcome status; a statement counts once per class it has (class NONE when it has none).',
      labelNames: ['class', 'status'],
      registers,
      read: (emit) => {
        for (let i = 0; i < counts.length; i++) if (counts[i]! > 0) emit(cellLabels[i]!, counts[i]!)
      },
    })
    this.statementDuration = new PlainHistogram(
      `${p}statement_duration_seconds`,
      'Statement duration as the proxy saw it: first message sent upstream to the server finishing it.',
      STATEMENT_BUCKETS,
      registers,
    )

    const upstream = new Histogram({
      name: `${p}upstream_connect_seconds`,
      help: 'Connecting and logging in to the upstream PostgreSQL server (TCP, TLS, authentication, session id), by result.',
      labelNames: ['result'],
      buckets: CONNECT_BUCKETS,
      registers,
    })
    this.upstreamOk = upstream.labels('ok')
    this.upstreamError = upstream.labels('error')

    sourcedCounter({
      name: `${p}bytes_total`,
      help: 'Bytes relayed between clients and the upstream server in governed sessions, by direction.',
      labelNames: ['direction'],
      registers,
      read: (emit) => {
        let toServer = this.bytesToServer
        let toClient = this.bytesToClient
        for (const r of this.liveRelays) {
          toServer += r.bytesIn
          toClient += r.bytesOut
        }
        emit({ direction: 'client_to_server' }, toServer)
        emit({ direction: 'server_to_client' }, toClient)
      },
    })

    this.audit = new AuditMetrics(p, registers)
    const metrics = this

    sourcedCounter({
      name: `${p}jwks_refreshes_total`,
      help: 'Key set (JWKS) fetches of jwks_url issuers, by issuer and result (ok also counts a fetch still in flight at scrape time).',
      labelNames: ['issuer', 'result'],
      registers,
      read: (emit) => {
        for (const [issuer, s] of Object.entries(this.jwksStats())) {
          emit({ issuer, result: 'ok' }, s.refreshes - s.failures)
          emit({ issuer, result: 'error' }, s.failures)
        }
      },
    })
    new Gauge({
      name: `${p}jwks_keys`,
      help: 'Keys trusted now per jwks_url issuer (published plus retired ones within their grace period).',
      labelNames: ['issuer'],
      registers,
      collect() {
        for (const [issuer, s] of Object.entries(metrics.jwksStats())) this.set({ issuer }, s.keys)
      },
    })
    new Gauge({
      name: `${p}jwks_last_success_timestamp_seconds`,
      help: 'When each jwks_url issuer key set was last fetched successfully (Unix time; 0 = never).',
      labelNames: ['issuer'],
      registers,
      collect() {
        for (const [issuer, s] of Object.entries(metrics.jwksStats())) this.set({ issuer }, s.lastSuccessAt === null ? 0 : s.lastSuccessAt / 1000)
      },
    })

    new Gauge({
      name: `${p}upstream_pool_idle_connections`,
      help: 'Authenticated upstream connections idle in the pool (upstream.pool), ready for the next session.',
      registers,
      collect() {
        this.set(metrics.poolStats?.().idle ?? 0)
      },
    })
    sourcedCounter({
      name: `${p}upstream_pool_reused_total`,
      help: 'Sessions that were handed a pooled upstream connection (reset with DISCARD ALL) instead of a new one.',
      labelNames: [],
      registers,
      read: (emit) => emit({}, this.poolStats?.().reused ?? 0),
    })
    sourcedCounter({
      name: `${p}upstream_pool_discarded_total`,
      help: 'Upstream connections the pool closed instead of keeping or handing them out, by reason.',
      labelNames: ['reason'],
      registers,
      read: (emit) => {
        for (const [reason, n] of Object.entries(this.poolStats?.().discarded ?? {})) emit({ reason }, n)
      },
    })

    this.exposed = Registry.merge([this.registry, defaultMetricsRegistry()])
  }

  /** Adds a metric made elsewhere (registered nowhere yet) to this proxy's registry and to /metrics. */
  adopt(metric: Parameters<Registry['registerMetric']>[0]): void {
    this.registry.registerMetric(metric)
    this.exposed.registerMetric(metric)
  }

  get contentType(): string {
    return this.exposed.contentType
  }

  /** The text exposition /metrics serves. */
  exposition(): Promise<string> {
    return this.exposed.metrics()
  }

  // ---- ProxyMetrics -------------------------------------------------------

  connectionOpened(): void {
    this.connectionsActive.inc()
  }

  connectionClosed(): void {
    this.connectionsActive.dec()
  }

  connectionOutcome(outcome: ConnectionOutcome): void {
    this.connectionChildren.get(outcome)?.inc()
  }

  authFailure(reason: string): void {
    const label = authFailureLabel(reason)
    let child = this.authChildren.get(label)
    if (!child) this.authChildren.set(label, (child = this.authFailures.labels(label)))
    child.inc()
  }

  sessionStarted(policyRule: string): void {
    this.connectionOutcome('admitted')
    let child = this.sessionChildren.get(policyRule)
    if (!child) this.sessionChildren.set(policyRule, (child = this.sessions.labels(policyRule)))
    child.inc()
  }

  statement(classes: readonly string[], status: OutcomeStatus, durationUs: number | null): void {
    const counts = this.statementCounts
    if (classes.length === 0) counts[statementCell(null, status)]++
    else for (let i = 0; i < classes.length; i++) counts[statementCell(classes[i]!, status)]++
    if (durationUs !== null) this.statementDuration.observe(durationUs / 1e6)
  }

  statementRule(rule: string, statementRule: string, enforced: boolean): void {
    ;(enforced ? this.ruleDenials : this.ruleWouldDeny).inc({ rule, statement_rule: statementRule })
  }

  bytes(direction: ByteDirection, n: number): void {
    if (direction === 'client_to_server') this.bytesToServer += n
    else this.bytesToClient += n
  }

  relayStarted(relay: RelayByteCounts): void {
    this.liveRelays.add(relay)
  }

  relayEnded(relay: RelayByteCounts): void {
    if (!this.liveRelays.delete(relay)) return
    this.bytesToServer += relay.bytesIn
    this.bytesToClient += relay.bytesOut
  }

  async timeUpstreamConnect<T>(connect: () => Promise<T>): Promise<T> {
    const t0 = performance.now()
    try {
      const v = await connect()
      this.upstreamConnect((performance.now() - t0) / 1000, true)
      return v
    } catch (err) {
      this.upstreamConnect((performance.now() - t0) / 1000, false)
      throw err
    }
  }

  upstreamConnect(seconds: number, ok: boolean): void {
    ;(ok ? this.upstreamOk : this.upstreamError).observe(seconds)
  }

  // ---- wiring (ProxyServer) ---------------------------------------------

  /** Count every record appended through the returned sink. */
  meterAudit(sink: AuditSink): AuditSink {
    return this.audit.meter(sink)
  }

  /** Timing and error hooks for a sink writing the audit stream (FileAuditSink). */
  auditObserver(sink: string): AuditSinkObserver {
    return this.audit.observer(sink)
  }

  /** The local audit log, for the backlog gauge. */
  watchAuditLog(log: AuditLogState): void {
    this.audit.watchLog(log)
  }

  /** A delivery sink, for the lag gauges (the local log and stdout are written in line: lag 0). */
  watchSink(name: string, lag: AuditSinkLag = { lagRecords: () => 0, lagSeconds: () => 0 }): void {
    this.audit.watchSink(name, lag)
  }

  /** The upstream connection pool's counts, read at scrape time. */
  watchUpstreamPool(stats: () => UpstreamPoolStats): void {
    this.poolStats = stats
  }

  /** JWKS fetch statistics, read at scrape time. */
  watchJwks(stats: () => Record<string, JwksStats>): void {
    this.jwksStats = stats
  }
}
