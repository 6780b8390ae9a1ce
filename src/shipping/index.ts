/**
 * Audit sinks shipped from the local audit log (nats, syslog, http): one
 * shipper per configured sink, each with its own follower of the log and its
 * own cursor (`<log dir>/.cursors/<name>.json`). ProxyServer starts them
 * after the audit log is open and stops them after the log's final flush.
 */
import type { Logger } from 'pino'
import type { AuditConfig, AuditSinkConfig } from '../config/types.js'
import type { PrometheusMetrics } from '../metrics/registry.js'
import { CursorStore, cursorDir } from './cursor.js'
import { AuditLogFollower } from './follower.js'
import { HttpTransport } from './http.js'
import { NatsTransport } from './nats.js'
import { DEFAULT_BACKOFF, Shipper, type BackoffOptions } from './shipper.js'
import { SyslogTransport } from './syslog.js'
import { StdoutTransport } from './stdout.js'
import type { SinkTransport } from './types.js'

export { Shipper } from './shipper.js'
export { AuditLogFollower } from './follower.js'
export { CursorStore, cursorDir } from './cursor.js'

export interface AuditShippers {
  readonly shippers: readonly Shipper[]
  /** Let each shipper deliver what is in the log for up to its drain_timeout, then stop it (cursors stay persisted). */
  stop(): Promise<void>
}

export interface ShipperEnvironment {
  log: Logger
  metrics?: PrometheusMetrics
  /** Seq of the last record appended to the log (the chain head); lag is measured against it. */
  headSeq?: () => number
  /** Follower poll interval (tests). */
  pollMs?: number
  backoff?: BackoffOptions
}

/** Read batches of at most this many bytes from the log for sinks without their own byte limit. */
const DEFAULT_BATCH_BYTES = 4 * 1024 * 1024

export function transportFor(c: AuditSinkConfig, log: Logger): SinkTransport {
  switch (c.type) {
    case 'nats':
      return new NatsTransport(c, log)
    case 'syslog':
      return new SyslogTransport(c, log)
    case 'http':
      return new HttpTransport(c, log)
    case 'stdout':
      return new StdoutTransport(c)
  }
}

/**
 * Start a shipper for every sink in `audit.sinks`. A sink that cannot be
 * reached does not stop the proxy: its shipper keeps retrying and its lag
 * grows. Nothing here runs in the path of client traffic.
 */
export async function startAuditShippers(audit: AuditConfig, env: ShipperEnvironment): Promise<AuditShippers> {
  const shippers: Shipper[] = []
  if (audit.enabled && audit.log !== null) {
    const logPath = audit.log
    for (const c of audit.sinks) {
      const log = env.log.child({ audit_sink: c.name })
      const errors = env.metrics?.auditObserver(c.name)
      const shipper = new Shipper({
        name: c.name,
        follower: new AuditLogFollower(logPath, { log, pollMs: env.pollMs }),
        cursor: new CursorStore(cursorDir(logPath), c.name),
        transport: transportFor(c, log),
        log,
        batchSize: c.batchSize,
        batchBytes: c.type === 'http' ? c.batchBytes : DEFAULT_BATCH_BYTES,
        ...(env.headSeq ? { headSeq: env.headSeq } : {}),
        backoff: env.backoff ?? { ...DEFAULT_BACKOFF, capMs: c.maxBackoffMs },
        ...(errors ? { onError: () => errors.failed() } : {}),
      })
      await shipper.start()
      env.metrics?.watchSink(c.name, shipper)
      shippers.push(shipper)
    }
  } else if (audit.sinks.length > 0) {
    env.log.warn('audit sinks configured but audit is disabled: nothing is shipped')
  }
  const drain = new Map(audit.sinks.map((c) => [c.name, c.drainTimeoutMs]))
  let stopping: Promise<void> | null = null
  return {
    shippers,
    stop() {
      stopping ??= Promise.all(shippers.map((s) => s.stop(drain.get(s.name) ?? 0))).then(() => undefined)
      return stopping
    },
  }
}
