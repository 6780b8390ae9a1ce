import net from 'node:net'
import tls from 'node:tls'
import type { Logger } from 'pino'
import { AuditChainer, AuditFanout, DisabledAuditSink, FileAuditSink, StdoutAuditSink, type AuditRecordWriter, type AuditSink, type CheckpointSchedule } from './ledger/log.js'
import { loadCheckpointSigningKey } from './ledger/checkpoint.js'
import { AuthFailureSummarizer } from './evidence/auth-failure-summary.js'
import { IntentJournal, intentJournalPath, intentRecord } from './ledger/intent-journal.js'
import { unfinishedStatements } from './ledger/recovery.js'
import { rfc3339Micros } from './util/time.js'
import { closeUpstreamPool } from './upstream/pool.js'
import { proxyLifecycleRecord } from './evidence/records.js'
import { startAuditShippers, type AuditShippers } from './shipping/index.js'
import { loadSqlParser } from './classify/split.js'
import type { AuditRecordBody, ProxyInfo } from './evidence/types.js'
import type { PgwitnessConfig, TlsConfig } from './config/types.js'
import { TokenVerifier } from './identity/jwt.js'
import { ApprovalVerifier } from './identity/approval.js'
import { errorResponseFromPgError } from './protocol/backend-messages.js'
import { PgError, SQLSTATE } from './protocol/errors.js'
import { CancelRegistry } from './session/cancel-registry.js'
import type { ProxyContext } from './session/context.js'
import { GovernedSession } from './session/governed-session.js'
import { closeOverBudget, HandshakeBudget } from './session/handshake-budget.js'
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
  /** Connections past authentication (limits.max_connections counts these only). */
  private authenticated = 0
  private handshakes!: HandshakeBudget
  private stopping: Promise<void> | null = null
  private prom!: PrometheusMetrics
  /** The /metrics, /healthz, /readyz listener; null without metrics.listen. */
  private metricsHttp: MetricsHttpServer | null = null
  private auditLog: FileAuditSink | null = null
  /** Shippers of audit.sinks (nats, syslog, http), fed from the audit log file. */
  private shippers: AuditShippers | null = null
  private checkpointKeyId: string | null = null
  private upstreamProbe: TcpProbe | null = null

  private constructor(
    private readonly server: net.Server,
    private readonly ctx: ProxyContext,
    readonly audit: AuditSink,
  ) {}

  static async start(config: PgwitnessConfig, log: Logger): Promise<ProxyServer> {
    await loadSqlParser()
    const metrics = new PrometheusMetrics()
    const { sink, file, checkpointKeyId, intents } = await openAuditSink(config, log, metrics, { instance: config.instance, version: VERSION })
    const audit = metrics.meterAudit(sink)
    const secure = secureContextFor(config.tls)
    const proxy: ProxyInfo = { instance: config.instance, version: VERSION }
    const ctx: Mutable<ProxyContext> = {
      config,
      proxy,
      verifier: new TokenVerifier(config.identity.jwt, { log, maxTokenBytes: config.limits.maxTokenBytes }),
      approvals: new ApprovalVerifier(config.identity.approvals, { log, maxTokenBytes: config.limits.maxTokenBytes }),
      audit,
      authFailures: new AuthFailureSummarizer(audit, config.audit.authFailureSummary),
      intents,
      auditUnavailable: () =>
        file?.error != null ? `the audit log cannot be written (${file.error})`
          : intents?.error != null ? `the statement intent journal cannot be written (${intents.error})`
            : null,
      log,
      cancels: new CancelRegistry(),
      metrics,
      secureContext: () => secure,
    }
    metrics.watchJwks(() => ctx.verifier.jwksStats())
    const server = net.createServer({ noDelay: true })
    const ps = new ProxyServer(server, ctx, audit)
    ps.prom = metrics
    ps.handshakes = new HandshakeBudget(() => ps.ctx.config.limits, metrics, log)
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
    ps.checkpointKeyId = checkpointKeyId
    audit.append(proxyLifecycleRecord('proxy.start', proxy, { configSha256: config.sha256, listen: ps.listenAddress, checkpointKeyId }))
    log.info({ listen: ps.listenAddress, upstream: `${config.upstream.host}:${config.upstream.port}`, audit: config.audit.log }, 'pgwitness listening')
    // Shippers read the log file on their own; a sink that is down only grows its lag.
    ps.shippers = await startAuditShippers(config.audit, { log, metrics, ...(sink instanceof AuditChainer ? { headSeq: () => sink.head.seq } : {}) })
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
      { name: 'audit_log', check: () => this.ctx.auditUnavailable() },
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
    // Handshake budgets first: beyond them a connection is closed before a byte is read or TLS is started.
    const slot = this.handshakes.acquire(socket.remoteAddress ?? '')
    if ('refused' in slot) {
      closeOverBudget(socket)
      return
    }
    // limits.max_connections (authenticated sessions): one more is refused as a full PostgreSQL refuses it — after TLS and the
    // StartupMessage, so that the client can read why (FATAL 53300), and recorded (rate_limited). Only a
    // few such refusals run at once; beyond them a connection gets the error in plaintext at once.
    const maxConnections = () => this.ctx.config.limits.maxConnections
    const overLimit = this.authenticated >= maxConnections()
    if (overLimit) this.noteOverLimit()
    if (overLimit && this.overLimitSessions >= OVER_LIMIT_HANDSHAKES) {
      slot.release()
      this.refuseOverLimit(socket)
      return
    }
    let claimed = false
    const session = new GovernedSession(socket, this.ctx, overLimit, {
      handshakeEnded: slot.release,
      claimSession: () => {
        if (this.authenticated >= maxConnections()) return false
        this.authenticated++
        claimed = true
        slot.release() // authenticated: no longer a handshake, whatever the upstream login takes
        return true
      },
    })
    this.sessions.add(session)
    if (overLimit) this.overLimitSessions++
    this.metrics.connectionOpened()
    void session.closed.then(() => {
      slot.release()
      if (claimed) this.authenticated--
      this.sessions.delete(session)
      if (overLimit) this.overLimitSessions--
      this.metrics.connectionClosed()
    })
    session.run().catch((err: Error) => this.ctx.log.error({ err: err.message, stack: err.stack }, 'session crashed'))
  }

  private overLimitLoggedAt = 0
  private overLimitRefused = 0
  /** Connections accepted over limits.max_connections, being refused after their StartupMessage. */
  private overLimitSessions = 0

  /**
   * Beyond OVER_LIMIT_HANDSHAKES refusals in progress: the ErrorResponse at
   * once, in plaintext, without reading a byte (what PostgreSQL does when it
   * cannot fork). libpq reports "server sent an error response during SSL
   * exchange"; node-postgres "There was an error establishing an SSL connection".
   */
  private refuseOverLimit(socket: net.Socket): void {
    this.metrics.connectionOutcome('refused')
    socket.on('error', () => undefined)
    socket.end(errorResponseFromPgError(new PgError({ code: SQLSTATE.tooManyConnections, message: 'sorry, too many clients already' })))
    setTimeout(() => socket.destroy(), 1000).unref()
  }

  private noteOverLimit(): void {
    this.overLimitRefused++
    const now = Date.now()
    if (now - this.overLimitLoggedAt >= 10_000) {
      this.ctx.log.warn({ max_connections: this.ctx.config.limits.maxConnections, refused: this.overLimitRefused },
        'limits.max_connections reached: refusing new connections')
      this.overLimitLoggedAt = now
      this.overLimitRefused = 0
    }
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
    const verifier = new TokenVerifier(next.identity.jwt, { log: ctx.log, maxTokenBytes: next.limits.maxTokenBytes })
    const approvals = new ApprovalVerifier(next.identity.approvals, { log: ctx.log, maxTokenBytes: next.limits.maxTokenBytes })
    const pinned = (['listen', 'metrics', 'audit', 'instance', 'log'] as const).filter((k) => JSON.stringify(prev[k]) !== JSON.stringify(next[k]))
    if (pinned.length > 0) ctx.log.warn({ keys: pinned }, 'these settings change only on restart; their old values stay in force')
    const old = ctx.verifier
    const oldApprovals = ctx.approvals
    ctx.config = { ...next, listen: prev.listen, metrics: prev.metrics, audit: prev.audit, instance: prev.instance, log: prev.log }
    ctx.verifier = verifier
    ctx.approvals = approvals
    ctx.secureContext = () => secure
    old.close()
    oldApprovals.close()
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
      this.ctx.authFailures.flush()
      this.audit.append(proxyLifecycleRecord('proxy.stop', this.ctx.proxy, {
        configSha256: this.ctx.config.sha256, listen: this.listenAddress, checkpointKeyId: this.checkpointKeyId,
      }))
      this.ctx.verifier.close()
      this.ctx.approvals.close()
      closeUpstreamPool(this.ctx)
      await this.audit.close()
      // After the final flush: each shipper may deliver what is left for its drain_timeout, then stops at its cursor.
      await this.shippers?.stop()
      await this.ctx.intents?.close()
      await this.metricsHttp?.close()
    })()
    return this.stopping
  }
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] }

/** Over-limit connections refused after their StartupMessage at the same time (the rest are refused at accept). */
const OVER_LIMIT_HANDSHAKES = 64

/**
 * TLS 1.2 cipher suites offered to clients: forward-secret (ECDHE) AEAD only,
 * as Mozilla's "intermediate" profile (no CBC, no RSA key exchange, no SHA-1
 * MACs). TLS 1.3 keeps OpenSSL's default suites (all AEAD).
 */
export const CLIENT_TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
].join(':')

export function secureContextFor(t: TlsConfig): tls.SecureContext {
  return tls.createSecureContext({
    cert: t.cert,
    key: t.key,
    minVersion: 'TLSv1.2',
    ciphers: CLIENT_TLS12_CIPHERS,
    honorCipherOrder: true,
    ...(t.clientCa ? { ca: t.clientCa } : {}),
  })
}

async function openAuditSink(
  config: PgwitnessConfig, log: Logger, metrics: PrometheusMetrics, proxy: ProxyInfo,
): Promise<{ sink: AuditSink; file: FileAuditSink | null; checkpointKeyId: string | null; intents: IntentJournal | null }> {
  const a = config.audit
  if (!a.enabled) {
    log.warn('audit is DISABLED by configuration (audit.enabled: false): no records are written')
    return { sink: new DisabledAuditSink(), file: null, checkpointKeyId: null, intents: null }
  }
  // Load the key before opening the log: a bad key must stop the start, not leave an unsigned log.
  const checkpoints: CheckpointSchedule | null = a.checkpoint
    ? { key: loadCheckpointSigningKey(a.checkpoint.key), proxy, everyRecords: a.checkpoint.everyRecords, everySeconds: a.checkpoint.everySeconds }
    : null
  const sinks: AuditRecordWriter[] = []
  let file: FileAuditSink | null = null
  if (a.log !== null) {
    sinks.push((file = await FileAuditSink.open(a.log, log, a.fsyncIntervalMs, metrics.auditObserver('file'), a.rotate)))
    metrics.watchAuditLog(file)
    metrics.watchSink('file')
  }
  if (a.stdout) {
    sinks.push(new StdoutAuditSink())
    metrics.watchSink('stdout')
  }
  // One chain for the log: it continues where the file ends (a stdout-only stream starts at seq 1).
  const writer = sinks.length === 1 ? sinks[0]! : new AuditFanout(sinks)
  const chainer = new AuditChainer(writer, file?.head, log, checkpoints)
  let intents: IntentJournal | null = null
  if (a.durability === 'strict') {
    if (file === null || a.log === null) {
      log.warn('audit.durability strict needs a file log (audit.log): without one, records are written as in batched mode')
    } else {
      intents = await openIntentJournal(a.log, chainer, file, log)
    }
  }
  return { sink: chainer, file, checkpointKeyId: checkpoints?.key.keyId ?? null, intents }
}

/**
 * Strict durability: open the statement intent journal, and first record the
 * statements a crashed predecessor forwarded but never saw end (outcome
 * unknown), durably, before the journal is emptied.
 */
async function openIntentJournal(logPath: string, chainer: AuditChainer, file: FileAuditSink, log: Logger): Promise<IntentJournal> {
  const { journal, previous } = await IntentJournal.open(intentJournalPath(logPath), log)
  const unfinished = await unfinishedStatements(logPath, previous)
  for (const i of unfinished) chainer.append({ ...intentRecord(i), time: rfc3339Micros() } as AuditRecordBody)
  if (unfinished.length > 0) {
    log.warn({ statements: unfinished.length, journal: journal.path },
      'recorded statements that were forwarded to PostgreSQL before the proxy stopped and whose outcome was never seen (outcome.status unknown)')
  }
  await chainer.flush()
  await journal.reset()
  file.onSynced((seq) => journal.logSynced(seq))
  return journal
}
