import { Counter, Gauge, type Registry } from 'prom-client'
import type { OwnSerializer, SharedMembers } from '../ledger/chain.js'
import type { AuditSink, AuditSinkObserver } from '../ledger/log.js'
import { sourcedCounter } from './sourced-counter.js'
import { PlainHistogram } from './plain-histogram.js'

/**
 * The audit stream's metrics (part of PrometheusMetrics, registry.ts):
 * records appended, local log write/fsync times and backlog, and each
 * delivery sink's lag, deliveries and errors.
 */

/** Audit state read at scrape time. */
export interface AuditLogState {
  /** Records queued and not yet written. */
  readonly backlog: number
}

/** A delivery target of the audit stream, for the sink lag gauges. */
export interface AuditSinkLag {
  /** Records appended to the local log and not yet delivered by this sink. */
  lagRecords(): number
  /** Age of the oldest record not yet delivered (0 when none). */
  lagSeconds(): number
  /** Records delivered (acknowledged by the sink) since start; absent for the in-line writers. */
  delivered?(): number
}

/** Buckets (seconds) for audit log writes and fsyncs: 50 µs … 1 s. */
export const AUDIT_IO_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]

export class AuditMetrics {
  /** Records appended through meter() sinks. */
  private records = 0
  private log: AuditLogState | null = null
  private readonly sinks = new Map<string, AuditSinkLag>()
  private readonly writeSeconds: PlainHistogram
  private readonly fsyncSeconds: PlainHistogram
  private readonly deliveryErrors: Counter<'sink'>

  /** Registers the audit metrics (names prefixed with `p`) in `registers`. */
  constructor(p: string, registers: Registry[]) {
    sourcedCounter({
      name: `${p}audit_records_total`,
      help: 'Audit records appended to the audit stream (all types).',
      labelNames: [],
      registers,
      read: (emit) => emit({}, this.records),
    })
    // Observed once per event-loop turn that writes records: no allocation per observation.
    this.writeSeconds = new PlainHistogram(`${p}audit_write_seconds`, 'Writing one batch of records to the local audit log.', AUDIT_IO_BUCKETS, registers)
    this.fsyncSeconds = new PlainHistogram(`${p}audit_fsync_seconds`, 'fsync of the local audit log.', AUDIT_IO_BUCKETS, registers)
    const audit = this
    new Gauge({
      name: `${p}audit_backlog_records`,
      help: 'Audit records queued for the local audit log and not yet written.',
      registers,
      collect() {
        this.set(audit.log?.backlog ?? 0)
      },
    })
    new Gauge({
      name: `${p}audit_sink_lag_records`,
      help: 'Records in the local audit log not yet delivered by each sink.',
      labelNames: ['sink'],
      registers,
      collect() {
        for (const [sink, s] of audit.sinks) this.set({ sink }, s.lagRecords())
      },
    })
    new Gauge({
      name: `${p}audit_sink_lag_seconds`,
      help: 'Age of the oldest record each sink has not yet delivered (0 when caught up).',
      labelNames: ['sink'],
      registers,
      collect() {
        for (const [sink, s] of audit.sinks) this.set({ sink }, s.lagSeconds())
      },
    })
    sourcedCounter({
      name: `${p}audit_sink_delivered_total`,
      help: 'Audit records delivered to each shipped sink (nats, syslog, http) and acknowledged by it; a record re-sent after a failure counts again.',
      labelNames: ['sink'],
      registers,
      read: (emit) => {
        for (const [sink, s] of audit.sinks) if (s.delivered) emit({ sink }, s.delivered())
      },
    })
    this.deliveryErrors = new Counter({ name: `${p}audit_delivery_errors_total`, help: 'Failed attempts to write or deliver audit records, by sink (each is retried).', labelNames: ['sink'], registers })
  }

  /** Count every record appended through the returned sink. */
  meter(sink: AuditSink): AuditSink {
    const audit = this
    return {
      append(record) {
        audit.records++
        return sink.append(record)
      },
      ...(sink.appendShared ? {
        appendShared<T extends Readonly<Record<string, unknown>>>(own: T, shared: SharedMembers, serializeOwn?: OwnSerializer<T>): number {
          audit.records++
          return sink.appendShared!(own, shared, serializeOwn)
        },
      } : {}),
      flush: () => sink.flush(),
      close: () => sink.close(),
    }
  }

  /** Timing and error hooks for a sink writing the audit stream (FileAuditSink). */
  observer(sink: string): AuditSinkObserver {
    const errors = this.deliveryErrors.labels(sink)
    this.deliveryErrors.inc({ sink }, 0)
    return {
      written: (_records, seconds) => this.writeSeconds.observe(seconds),
      synced: (seconds) => this.fsyncSeconds.observe(seconds),
      failed: () => errors.inc(),
    }
  }

  /** The local audit log, for the backlog gauge. */
  watchLog(log: AuditLogState): void {
    this.log = log
  }

  /** A delivery sink, for the lag gauges (the local log and stdout are written in line: lag 0). */
  watchSink(name: string, lag: AuditSinkLag): void {
    this.sinks.set(name, lag)
  }
}
