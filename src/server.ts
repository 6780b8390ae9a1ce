import net from 'node:net'
import tls from 'node:tls'
import type { Logger } from 'pino'
import { AuditChainer, AuditFanout, DisabledAuditSink, FileAuditSink, StdoutAuditSink, type AuditRecordWriter, type AuditSink } from './audit/log.js'
import { proxyLifecycleRecord } from './audit/records.js'
import { loadSqlParser } from './audit/split.js'
import type { ProxyInfo } from './audit/types.js'
import type { PgwitnessConfig, TlsConfig } from './config/types.js'
import { TokenVerifier } from './identity/jwt.js'
import { PgError, SQLSTATE } from './protocol/errors.js'
import { CancelRegistry } from './session/cancel-registry.js'
import type { ProxyContext } from './session/context.js'
import { GovernedSession } from './session/governed-session.js'
import { MetricsHttpServer } from './metrics/http.js'
import { evaluateReadiness, TcpProbe, type ReadinessCheck, type ReadinessReport } from './metrics/readiness.js'
import { PrometheusMetrics } from './metrics/registry.js'
import { VERSION } from './version.js'

/**
 * The listener: accepts client connections and runs a GovernedSession for
 * each; owns the shared parts (TLS context, token verifier, audit sink,
 * cancel registry) and the proxy.start / proxy.stop records.
 */
export class ProxyServer {
  private readonly sessions = new Set<GovernedSession>()
  private stopping: Promise<void> | null = null
  private prom!: PrometheusMetrics
  /** The /metrics, /healthz, /readyz listener; null without metrics.listen. */
  private metricsHttp: MetricsHttpServer | null = null
  private auditLog: FileAuditSink | null = null
  private upstreamProbe: TcpProbe | null = null

  private constructor(
    private readonly server: net.Server,
    private readonly ctx: ProxyContext,
    readonly audit: AuditSink,
  ) {}

  static async start(config: PgwitnessConfig, log: Logger): Promise<ProxyServer> {
    await loadSqlParser()
    const metrics = new PrometheusMetrics()
    const { sink, file } = await openAuditSink(config, log, metrics)
    const audit = metrics.meterAudit(sink)
    const secure = secureContextFor(config.tls)
    const proxy: ProxyInfo = { instance: config.instance, version: VERSION }
    const ctx: Mutable<ProxyContext> = {
      config,
      proxy,
      verifier: new TokenVerifier(config.identity.jwt, { log }),
      audit,
      log,
      cancels: new CancelRegistry(),
      metrics,
      secureContext: () => secure,
    }
    metrics.watchJwks(() => ctx.verifier.jwksStats())
    const server = net.createServer({ noDelay: true })
    const ps = new ProxyServer(server, ctx, audit)
    ps.prom = metrics
    ps.auditLog = file
    server.on('connection', (socket) => ps.accept(socket))
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(config.listen.port, config.listen.host, () => {
        server.off('error', reject)
        resolve()
      })
    })
    server.on('error', (err) => log.error({ err: err.message }, 'listener error'))
    audit.append(proxyLifecycleRecord('proxy.start', proxy, { configSha256: config.sha256, listen: ps.listenAddress, checkpointKeyId: null }))
    log.info({ listen: ps.listenAddress, upstream: `${config.upstream.host}:${config.upstream.port}`, audit: config.audit.log }, 'pgwitness listening')
    if (config.metrics.listen) {
      try {
        ps.metricsHttp = await MetricsHttpServer.start(config.metrics.listen, {
          metrics: async () => ({ contentType: metrics.contentType, body: await metrics.exposition() }),
          readiness: () => ps.readiness(),
        }, log)
      } catch (err) {
        await ps.stop()
        throw new Error(`cannot listen on metrics.listen ${config.metrics.listen.host}:${config.metrics.listen.port}: ${(err as Error).message}`)
      }
      log.info({ listen: ps.metricsAddress }, 'metrics, /healthz and /readyz listening')
    }
    return ps
  }

  /** This proxy's metrics (served on metrics.listen when configured). */
  get metrics(): PrometheusMetrics {
    return this.prom
  }

  /** Where /metrics is served ("host:port"); null without metrics.listen. */
  get metricsAddress(): string | null {
    const a = this.metricsHttp?.address
    if (!a) return null
    return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`
  }

  /** The bound port of the metrics listener; null without metrics.listen. */
  get metricsPort(): number | null {
    return this.metricsHttp?.port ?? null
  }

  /**
   * /readyz: ready while not shutting down, the configuration is loaded (it
   * is, for a running ProxyServer), the local audit log is writable, and the
   * upstream server accepts TCP connections (checked at most once a second).
   */
  readiness(): Promise<ReadinessReport> {
    const upstream = this.ctx.config.upstream
    this.upstreamProbe ??= new TcpProbe(() => ({ host: this.ctx.config.upstream.host, port: this.ctx.config.upstream.port }), Math.min(1000, upstream.connectTimeoutMs), 1000)
    const probe = this.upstreamProbe
    const checks: ReadinessCheck[] = [
      { name: 'running', check: () => (this.stopping ? 'the proxy is shutting down' : null) },
      { name: 'config', check: () => null },
      { name: 'audit_log', check: () => (this.auditLog?.error != null ? `the audit log is not writable: ${this.auditLog.error}` : null) },
      { name: 'upstream', check: () => probe.check() },
    ]
    return evaluateReadiness(checks)
  }

  /** The bound address (fixed at start; still known after stop). */
  private bound: net.AddressInfo | null = null

  get port(): number {
    return this.address.port
  }

  get listenAddress(): string {
    const a = this.address
    return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`
  }

  private get address(): net.AddressInfo {
    this.bound ??= this.server.address() as net.AddressInfo
    return this.bound
  }

  get activeSessions(): number {
    return this.sessions.size
  }

  private accept(socket: net.Socket): void {
    if (this.stopping) {
      this.metrics.connectionOutcome('shutdown')
      socket.destroy()
      return
    }
    const session = new GovernedSession(socket, this.ctx)
    this.sessions.add(session)
    this.metrics.connectionOpened()
    void session.closed.then(() => {
      this.sessions.delete(session)
      this.metrics.connectionClosed()
    })
    session.run().catch((err: Error) => this.ctx.log.error({ err: err.message, stack: err.stack }, 'session crashed'))
  }

  /**
   * Apply a new configuration (SIGHUP): TLS certificate, token issuers and
   * their keys, policy and upstream credentials take effect for new
   * connections; live sessions keep the config they were admitted under.
   * Everything is built before anything is swapped, so an invalid config
   * (e.g. a certificate that does not match its key) changes nothing.
   * Settings bound at start (listen, metrics.listen, audit) need a restart.
   */
  reload(next: PgwitnessConfig): void {
    const ctx = this.ctx as Mutable<ProxyContext>
    const prev = ctx.config
    const secure = secureContextFor(next.tls)
    const verifier = new TokenVerifier(next.identity.jwt, { log: ctx.log })
    const pinned = (['listen', 'metrics', 'audit'] as const).filter((k) => JSON.stringify(prev[k]) !== JSON.stringify(next[k]))
    if (pinned.length > 0) ctx.log.warn({ keys: pinned }, 'these settings change only on restart; their old values stay in force')
    const old = ctx.verifier
    ctx.config = { ...next, listen: prev.listen, metrics: prev.metrics, audit: prev.audit }
    ctx.verifier = verifier
    ctx.secureContext = () => secure
    old.close()
    ctx.log.info({ config_sha256: next.sha256, source: next.source }, 'configuration reloaded')
  }

  /**
   * Stop accepting; let statements in flight finish, up to
   * limits.shutdown_grace; end every session with FATAL 57P01 (idle ones at
   * once, busy ones as soon as their statement ends or the grace runs out);
   * write proxy.stop and flush the audit log.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      // close() only completes once every connection is gone, so end the sessions while it waits.
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
      const shutdown = new PgError({ code: SQLSTATE.adminShutdown, message: 'terminating connection due to administrator command (pgwitness is shutting down)' })
      const deadline = Date.now() + this.ctx.config.limits.shutdownGraceMs
      for (;;) {
        for (const s of this.sessions) if (!s.busy || Date.now() >= deadline) s.terminate('proxy_shutdown', shutdown)
        if (this.sessions.size === 0 || Date.now() >= deadline) break
        await new Promise((r) => setTimeout(r, 25))
      }
      await Promise.all([...this.sessions].map((s) => s.closed))
      await closed
      this.audit.append(proxyLifecycleRecord('proxy.stop', this.ctx.proxy, {
        configSha256: this.ctx.config.sha256, listen: this.listenAddress, checkpointKeyId: null,
      }))
      this.ctx.verifier.close()
      await this.audit.close()
      await this.metricsHttp?.close()
    })()
    return this.stopping
  }
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] }

export function secureContextFor(t: TlsConfig): tls.SecureContext {
  return tls.createSecureContext({ cert: t.cert, key: t.key, minVersion: 'TLSv1.2', ...(t.clientCa ? { ca: t.clientCa } : {}) })
}

async function openAuditSink(config: PgwitnessConfig, log: Logger, metrics: PrometheusMetrics): Promise<{ sink: AuditSink; file: FileAuditSink | null }> {
  const a = config.audit
  if (!a.enabled) {
    log.warn('audit is DISABLED by configuration (audit.enabled: false): no records are written')
    return { sink: new DisabledAuditSink(), file: null }
  }
  const sinks: AuditRecordWriter[] = []
  let file: FileAuditSink | null = null
  if (a.log !== null) {
    sinks.push((file = await FileAuditSink.open(a.log, log, a.fsyncIntervalMs, metrics.auditObserver('file'))))
    metrics.watchAuditLog(file)
    metrics.watchSink('file')
  }
  if (a.stdout) {
    sinks.push(new StdoutAuditSink())
    metrics.watchSink('stdout')
  }
  // One chain for the log: it continues where the file ends (a stdout-only stream starts at seq 1).
  const writer = sinks.length === 1 ? sinks[0]! : new AuditFanout(sinks)
  return { sink: new AuditChainer(writer, file?.head, log), file }
}
