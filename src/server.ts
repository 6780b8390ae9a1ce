import net from 'node:net'
import tls from 'node:tls'
import type { Logger } from 'pino'
import { AuditFanout, DisabledAuditSink, FileAuditSink, StdoutAuditSink, type AuditSink } from './audit/log.js'
import { proxyLifecycleRecord } from './audit/records.js'
import { loadSqlParser } from './audit/split.js'
import type { ProxyInfo } from './audit/types.js'
import type { PgwitnessConfig, TlsConfig } from './config/types.js'
import { TokenVerifier } from './identity/jwt.js'
import { PgError, SQLSTATE } from './protocol/errors.js'
import { CancelRegistry } from './session/cancel-registry.js'
import type { ProxyContext } from './session/context.js'
import { GovernedSession } from './session/governed-session.js'
import { VERSION } from './version.js'

/**
 * The listener: accepts client connections and runs a GovernedSession for
 * each; owns the shared parts (TLS context, token verifier, audit sink,
 * cancel registry) and the proxy.start / proxy.stop records.
 */
export class ProxyServer {
  private readonly sessions = new Set<GovernedSession>()
  private stopping: Promise<void> | null = null

  private constructor(
    private readonly server: net.Server,
    private readonly ctx: ProxyContext,
    readonly audit: AuditSink,
  ) {}

  static async start(config: PgwitnessConfig, log: Logger): Promise<ProxyServer> {
    await loadSqlParser()
    const audit = await openAuditSink(config, log)
    const secure = secureContextFor(config.tls)
    const proxy: ProxyInfo = { instance: config.instance, version: VERSION }
    const ctx: ProxyContext = {
      config,
      proxy,
      verifier: new TokenVerifier(config.identity.jwt, { log }),
      audit,
      log,
      cancels: new CancelRegistry(),
      secureContext: () => secure,
    }
    const server = net.createServer({ noDelay: true })
    const ps = new ProxyServer(server, ctx, audit)
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
    return ps
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
      socket.destroy()
      return
    }
    const session = new GovernedSession(socket, this.ctx)
    this.sessions.add(session)
    void session.closed.then(() => this.sessions.delete(session))
    session.run().catch((err: Error) => this.ctx.log.error({ err: err.message, stack: err.stack }, 'session crashed'))
  }

  /** Stop accepting, end every session (FATAL 57P01), write proxy.stop and flush the audit log. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      // close() only completes once every connection is gone, so end the sessions while it waits.
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
      const shutdown = new PgError({ code: SQLSTATE.adminShutdown, message: 'terminating connection due to administrator command (pgwitness is shutting down)' })
      for (const s of this.sessions) s.terminate('proxy_shutdown', shutdown)
      await Promise.all([...this.sessions].map((s) => s.closed))
      await closed
      this.audit.append(proxyLifecycleRecord('proxy.stop', this.ctx.proxy, {
        configSha256: this.ctx.config.sha256, listen: this.listenAddress, checkpointKeyId: null,
      }))
      this.ctx.verifier.close()
      await this.audit.close()
    })()
    return this.stopping
  }
}

export function secureContextFor(t: TlsConfig): tls.SecureContext {
  return tls.createSecureContext({ cert: t.cert, key: t.key, minVersion: 'TLSv1.2', ...(t.clientCa ? { ca: t.clientCa } : {}) })
}

async function openAuditSink(config: PgwitnessConfig, log: Logger): Promise<AuditSink> {
  const a = config.audit
  if (!a.enabled) {
    log.warn('audit is DISABLED by configuration (audit.enabled: false): no records are written')
    return new DisabledAuditSink()
  }
  const sinks: AuditSink[] = []
  if (a.log !== null) sinks.push(await FileAuditSink.open(a.log, log, a.fsyncIntervalMs))
  if (a.stdout) sinks.push(new StdoutAuditSink())
  return sinks.length === 1 ? sinks[0]! : new AuditFanout(sinks)
}
