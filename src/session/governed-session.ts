import { createHash } from 'node:crypto'
import net from 'node:net'
import tls from 'node:tls'
import type { Duplex } from 'node:stream'
import type { AuthFailureReason, ConnectionInfo, IdentityInfo, SessionEndReason } from '../audit/types.js'
import { authFailureRecord, sessionEndRecord, sessionStartRecord, type SessionContext } from '../audit/records.js'
import { identityInfo, IdentityError, type WorkloadIdentity } from '../identity/identity.js'
import { certificateIdentity, combineTokenAndCertificate, tokenIsBoundTo, verifiedClientCertificate, type ClientCertificate } from '../identity/mtls.js'
import type { PgwitnessConfig, PolicyRule } from '../config/types.js'
import { evaluateAccess } from '../policy/access.js'
import * as msg from '../protocol/backend-messages.js'
import { PgError, ProtocolViolation, SQLSTATE } from '../protocol/errors.js'
import { decodePassword, FrontendType } from '../protocol/frontend.js'
import { decodeStartupPacket } from '../protocol/startup.js'
import { sendUpstreamCancel, UpstreamError, type UpstreamConnection } from '../upstream/connect.js'
import { openUpstream } from '../upstream/pool.js'
import { uuidv7 } from '../util/ids.js'
import { deepFreeze } from '../audit/canonical-json.js'
import { rfc3339Micros } from '../util/time.js'
import type { ProxyContext } from './context.js'
import { startupParametersFor } from './startup-parameters.js'
import { Relay } from './relay.js'
import { SessionStatements } from './statement-records.js'
import { armDeadline, sessionDeadline } from './lifetime.js'
import { ClientGone, MessageTooLarge, SocketReader } from './socket-reader.js'
import { HandshakeError } from './handshake-error.js'

/** What the client asked for in its StartupMessage. */
interface Requested {
  user: string
  database: string
  applicationName: string | null
  parameters: Map<string, string>
}

/**
 * One client connection, from its first byte to its session.end record:
 * TLS negotiation, startup, token verification, policy, upstream login, then
 * the observed relay. Nothing is sent upstream before the identity has been
 * verified and the policy has admitted it — the upstream connection does not
 * even exist until then.
 */
export class GovernedSession {
  readonly connectionId = uuidv7()
  /** Read at accept time: a closed socket no longer knows its peer. */
  private readonly client: ConnectionInfo['client']
  private socket: Duplex
  private tlsInfo: ConnectionInfo['tls'] = null
  private requested: Requested | null = null
  private identity: WorkloadIdentity | null = null
  private upstream: UpstreamConnection | null = null
  private relay: Relay | null = null
  private context: SessionContext | null = null
  private cancelId: number | null = null
  private readonly auditEnabled: boolean
  /** The session's statements and their records (set when the relay starts). */
  private statementLog: SessionStatements | null = null
  /** chain.seq of this session's session.start record. */
  private startSeq = 0
  private startedAtMs = 0
  private handshakeTimer: NodeJS.Timeout | null = null
  private cancelLifetime: (() => void) | null = null
  private handshakeOver = false
  /** The verified client certificate, if the client presented one (mTLS). */
  private clientCert: ClientCertificate | null = null
  /** Why a presented client certificate was not accepted (acted on after startup). */
  private certError: IdentityError | null = null
  /** A token was sent (auth.failure method jwt) — otherwise no credential was presented (none). */
  private credentialPresented = false
  private closedPromise: Promise<void>
  private resolveClosed!: () => void

  /** The config in force when the client connected: a reload (SIGHUP) applies to new connections. */
  private readonly config: PgwitnessConfig

  constructor(
    private readonly raw: net.Socket,
    private readonly ctx: ProxyContext,
    /** Accepted over limits.max_connections: refused with FATAL 53300 once the client has said who it is. */
    private readonly overLimit = false,
  ) {
    this.config = ctx.config
    this.auditEnabled = ctx.config.audit.enabled
    this.socket = raw
    this.client = { address: raw.remoteAddress ?? '', port: raw.remotePort ?? 0 }
    raw.setNoDelay(true)
    // Socket errors are handled through 'close'; without a listener an error event would crash the process.
    raw.on('error', ignore)
    this.closedPromise = new Promise((r) => (this.resolveClosed = r))
  }

  /** Resolves when the session has ended and its records are queued. */
  get closed(): Promise<void> {
    return this.closedPromise
  }

  private get connection(): ConnectionInfo {
    return { id: this.connectionId, client: this.client, tls: this.tlsInfo }
  }

  async run(): Promise<void> {
    this.handshakeTimer = setTimeout(() => this.onHandshakeTimeout(), this.config.limits.handshakeTimeoutMs)
    let reader = new SocketReader(this.raw, this.config.limits.maxTokenBytes + 16384)
    try {
      reader = await this.negotiate(reader)
      if (this.handshakeOver) return
      if (this.overLimit) {
        throw new HandshakeError('rate_limited', {
          code: SQLSTATE.tooManyConnections,
          message: 'sorry, too many clients already',
          hint: `pgwitness admits ${this.config.limits.maxConnections} connections at once (limits.max_connections)`,
        })
      }
      await this.authenticate(reader)
    } catch (err) {
      this.refuse(err, reader)
    }
  }

  /** SSLRequest / GSSENCRequest / CancelRequest, until a StartupMessage arrives. */
  private async negotiate(reader: SocketReader): Promise<SocketReader> {
    for (;;) {
      const packet = decodeStartupPacket(await reader.readStartupPacket())
      switch (packet.kind) {
        case 'ssl-request': {
          if (this.tlsInfo) throw new ProtocolViolation('SSLRequest received on an encrypted connection')
          // Bytes sent after SSLRequest but before the TLS handshake would be
          // read as if encrypted (CVE-2021-23214): refuse them.
          if (reader.buffered > 0) throw new ProtocolViolation('received unencrypted data after SSL request')
          reader.detach()
          this.raw.write(msg.sslResponse(true))
          this.socket = await this.upgradeToTls()
          reader = new SocketReader(this.socket, this.config.limits.maxTokenBytes + 16384)
          continue
        }
        case 'gssenc-request':
          if (this.tlsInfo) throw new ProtocolViolation('GSSENCRequest received on an encrypted connection')
          this.raw.write(msg.sslResponse(false))
          continue
        case 'cancel-request':
          this.finishHandshake()
          this.ctx.metrics.connectionOutcome('cancel_request')
          reader.detach()
          await this.ctx.cancels.lookup(packet.processId, packet.secretKey)?.cancelUpstream().catch((err: Error) =>
            this.ctx.log.warn({ err: err.message }, 'forwarding a cancel request failed'))
          this.socket.destroy()
          this.handshakeOver = true
          this.resolveClosed()
          return reader
        case 'startup': {
          const p = packet.parameters
          this.requested = {
            user: p.get('user')!,
            database: p.get('database')!,
            applicationName: p.get('application_name') ?? null,
            parameters: p,
          }
          // A newer minor version or _pq_ options: say what we speak (3.0, no options) and go on.
          const options = [...p.keys()].filter((k) => k.startsWith('_pq_.'))
          if (packet.minor > 0 || options.length > 0) {
            this.socket.write(msg.negotiateProtocolVersion(0, options))
          }
          return reader
        }
      }
    }
  }

  private upgradeToTls(): Promise<tls.TLSSocket> {
    // With a client CA configured, certificates are requested and verified;
    // the verdict is acted on after the StartupMessage, so a refusal is recorded with what was asked for.
    const requestCert = this.config.tls.clientCa !== null
    return new Promise((resolve, reject) => {
      const s = new tls.TLSSocket(this.raw, { isServer: true, secureContext: this.ctx.secureContext(), requestCert, rejectUnauthorized: false })
      s.on('error', ignore)
      s.once('secure', () => {
        s.off('error', reject)
        const cipher = s.getCipher()
        this.tlsInfo = { version: s.getProtocol() ?? 'unknown', cipher: cipher.standardName ?? cipher.name, client_cert_sha256: peerCertSha256(s) }
        if (requestCert) {
          try {
            this.clientCert = verifiedClientCertificate(s)
          } catch (err) {
            this.certError = err as IdentityError
          }
        }
        resolve(s)
      })
      s.once('error', (e: Error) => reject(new ClientGone(`TLS handshake failed: ${e.message}`)))
    })
  }

  private async authenticate(reader: SocketReader): Promise<void> {
    const req = this.requested!
    const cfg = this.config
    if (req.parameters.has('replication')) {
      throw new HandshakeError('startup_rejected', { code: SQLSTATE.featureNotSupported, message: 'replication connections are not supported through pgwitness' })
    }
    if (!this.tlsInfo && !(cfg.tls.allowPlaintextLoopback && isLoopback(this.client.address))) {
      throw new HandshakeError('tls_required', {
        code: SQLSTATE.invalidAuthorization,
        message: 'pgwitness requires an encrypted connection: tokens are never accepted in plaintext',
        hint: 'Connect with sslmode=require (or verify-full).',
      })
    }
    const { identity, rule } = await this.establishIdentity(reader)
    this.identity = identity
    if (this.handshakeOver) return

    const sessionId = uuidv7()
    // From upstream.pool when it is enabled (a reused connection, reset and re-tagged), else a new one.
    const upstream = await this.ctx.metrics.timeUpstreamConnect(() => openUpstream(this.ctx, cfg.upstream, {
      role: req.user,
      database: req.database,
      password: cfg.upstream.roles[req.user]?.password ?? null,
      parameters: startupParametersFor(req.parameters, sessionId),
    }))
    if (this.handshakeOver) {
      upstream.socket.destroy()
      return
    }
    this.upstream = upstream
    this.finishHandshake()
    this.startedAtMs = Date.now()
    // Frozen: every record of the session repeats these objects, and frozen ones are serialized once (canonical-json.ts).
    this.context = deepFreeze({
      proxy: this.ctx.proxy,
      connection: this.connection,
      session: { id: sessionId, started_at: rfc3339Micros(), application_name: req.applicationName },
      identity: identityInfo(identity, rule.name),
      upstream: {
        host: cfg.upstream.host,
        port: cfg.upstream.port,
        database: req.database,
        role: req.user,
        backend_pid: upstream.backendPid,
        server_session_id: upstream.serverSessionId,
      },
    })
    this.startSeq = this.ctx.audit.append(sessionStartRecord(this.context))
    const statements = (this.statementLog = new SessionStatements(this.context, this.ctx.audit, this.ctx.metrics, this.auditEnabled, this.ctx.intents, this.startSeq))
    this.ctx.metrics.sessionStarted(rule.name)

    const key = this.ctx.cancels.register(this)
    this.cancelId = key.processId
    const hello = [msg.authenticationOk()]
    for (const [name, value] of upstream.parameters) hello.push(msg.parameterStatus(name, value))
    hello.push(msg.backendKeyData(key.processId, key.secretKey), msg.readyForQuery('I'))
    this.socket.write(Buffer.concat(hello))

    const a = cfg.audit
    this.relay = new Relay(this.socket, upstream.socket, {
      maxMessageBytes: cfg.limits.maxMessageBytes,
      maxStatementBytes: a.maxStatementBytes,
      maxParameterBytes: a.maxParameterBytes,
      parameters: { mode: a.parameters, hmacKey: a.parameterHmacKey },
    }, {
      statement: (s) => statements.record(s),
      end: (reason, detail) => this.ended(reason, detail),
      auditUnavailable: () => this.ctx.auditUnavailable(),
      ...statements.relayEvents(),
    })
    this.ctx.log.debug({ session: sessionId, subject: identity.subject, role: req.user, database: req.database }, 'session started')
    this.ctx.metrics.relayStarted(this.relay)
    // A client that left while its session was being set up (e.g. it sent its token and shut down
    // its side at once): its 'end' came before the relay listened for it. What it sent is relayed, then the session ends.
    const gone = reader.clientGone
    this.relay.start(reader.detach())
    if (gone) {
      this.relay.terminate('client_closed', new PgError({ code: SQLSTATE.connectionFailure, message: 'the client closed the connection while its session was being set up' }))
      return
    }
    this.scheduleLifetimeEnd(identity)
  }

  /** End the session at its deadline (token expiry or session.max_duration; see lifetime.ts). */
  private scheduleLifetimeEnd(identity: WorkloadIdentity): void {
    const d = sessionDeadline(this.config.session, identity.expiresAt)
    if (d === null) return
    this.cancelLifetime = armDeadline(d.at, () => this.relay?.terminate(d.reason, new PgError({ code: SQLSTATE.invalidAuthorization, message: d.message })))
  }

  /**
   * Who the client is and which policy rule admits it. A verified client
   * certificate that a rule admits on its own is enough (certificate-only
   * mode: no password prompt); otherwise the client must send a token, which
   * is combined with its certificate when it presented one.
   */
  private async establishIdentity(reader: SocketReader): Promise<{ identity: WorkloadIdentity; rule: PolicyRule }> {
    const req = this.requested!
    const cfg = this.config
    const request = { role: req.user, database: req.database }
    if (this.certError) throw this.certError
    const cert = this.clientCert
    if (cert) {
      const certOnly = tryCertificateIdentity(cert, cfg.identity.mtls.subject)
      const decision = certOnly && evaluateAccess(cfg.policy, certOnly, request)
      if (certOnly && decision?.allowed) return { identity: certOnly, rule: decision.rule }
      this.identity = certOnly
    }
    this.socket.write(msg.authenticationCleartextPassword())
    const m = await reader.readMessage(cfg.limits.maxTokenBytes).catch((err: unknown) => {
      // A password message longer than limits.max_token_bytes: an oversized token, refused from its header alone.
      if (err instanceof MessageTooLarge && err.type === FrontendType.Password) {
        this.credentialPresented = true
        throw new IdentityError('token_malformed', `the token is too large (a ${err.length - 5}-byte password; limits.max_token_bytes is ${err.maxBody})`)
      }
      throw err
    })
    if (m.type !== FrontendType.Password) throw new ProtocolViolation(`expected a password message, got message type ${m.type}`)
    const token = decodePassword(m.body)
    this.credentialPresented = token.length > 0
    const fromToken = await this.ctx.verifier.verifyWorkloadToken(token)
    const identity = cert ? combineTokenAndCertificate(fromToken, cert) : fromToken
    this.identity = identity
    const decision = evaluateAccess(cfg.policy, identity, request, cert !== null && tokenIsBoundTo(fromToken, cert))
    if (!decision.allowed) {
      throw new HandshakeError(decision.reason, { code: SQLSTATE.invalidAuthorization, message: `access denied: ${decision.detail}` })
    }
    return { identity, rule: decision.rule }
  }

  /** Forward a client's cancel to the upstream backend with the real key. */
  cancelUpstream(): Promise<void> {
    const u = this.upstream
    if (!u) return Promise.resolve()
    return sendUpstreamCancel(this.config.upstream, u.backendPid, u.secretKey)
  }

  /** End the session from the proxy's side (shutdown, policy). */
  terminate(reason: SessionEndReason, err: PgError): void {
    if (this.relay) this.relay.terminate(reason, err)
    else this.refuse(err, null)
  }

  /** Running a statement right now (a graceful shutdown lets it finish). */
  get busy(): boolean {
    return this.relay?.busy ?? false
  }

  private ended(reason: SessionEndReason, detail: string | null): void {
    if (this.cancelId !== null) this.ctx.cancels.unregister(this.cancelId)
    this.cancelLifetime?.()
    const r = this.relay!
    this.ctx.metrics.relayEnded(r)
    // upstream.pool: hand the connection back (reset and kept if the session ended idle, else closed).
    if (this.upstream?.release) {
      this.upstream.release(reason)
      this.upstream = null // a late cancel request must not reach the connection's next session
    }
    const statements = this.statementLog!
    statements.end()
    this.ctx.audit.append(sessionEndRecord(this.context!, {
      reason,
      detail,
      durationMs: Date.now() - this.startedAtMs,
      statements: statements.count,
      bytesIn: r.bytesIn,
      bytesOut: r.bytesOut,
    }))
    this.resolveClosed()
  }

  private finishHandshake(): void {
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer)
    this.handshakeTimer = null
  }

  private onHandshakeTimeout(): void {
    this.refuse(new HandshakeError('handshake_timeout', {
      code: SQLSTATE.connectionFailure,
      message: `the connection did not complete authentication within ${this.config.limits.handshakeTimeoutMs} ms`,
    }), null)
  }

  /** Refuse the connection during the handshake: tell the client, record the failure, close. */
  private refuse(err: unknown, reader: SocketReader | null): void {
    if (this.handshakeOver) return
    this.handshakeOver = true
    this.finishHandshake()
    reader?.detach()
    // An upstream connection made before the failure (the session could not be set up) is never used.
    if (this.upstream && !this.relay) this.upstream.socket.destroy()
    try {
      this.tellAndRecord(err)
    } catch (e) {
      // Never leave the connection (and the proxy's session count) hanging on a bug in building a record.
      this.ctx.log.error({ connection: this.connectionId, err: (e as Error)?.message }, 'recording a refused connection failed')
    } finally {
      setTimeout(() => this.socket.destroy(), 1000).unref()
      this.resolveClosed()
    }
  }

  private tellAndRecord(err: unknown): void {
    const failure = classifyFailure(err)
    if (failure.tell && !this.socket.destroyed) this.socket.end(msg.errorResponseFromPgError(failure.tell))
    this.ctx.metrics.connectionOutcome(this.requested !== null ? 'refused' : 'aborted')
    // A connection that closed before saying who it wants to be (a TCP probe) is not an auth attempt.
    if (failure.record && this.requested !== null) {
      this.ctx.metrics.authFailure(failure.record.reason)
      this.ctx.audit.append(authFailureRecord(this.ctx.proxy, this.connection, {
        method: this.credentialPresented ? (this.clientCert ? 'jwt+mtls' : 'jwt') : this.identity?.method ?? (this.clientCert || this.certError ? 'mtls' : 'none'),
        reason: failure.record.reason,
        detail: failure.record.detail,
        requested: { user: this.requested.user, database: this.requested.database, application_name: this.requested.applicationName },
        identity: this.identity ? identityInfo(this.identity, null) : failure.record.partial,
      }))
    } else if (failure.record) {
      this.ctx.log.info({ connection: this.connectionId, reason: failure.record.reason, detail: failure.record.detail }, 'connection refused before startup')
    }
  }
}

function classifyFailure(err: unknown): {
  tell: PgError | null
  record: { reason: AuthFailureReason; detail: string; partial: Partial<IdentityInfo> | null } | null
} {
  if (err instanceof IdentityError) return { tell: err, record: { reason: err.reason, detail: err.message, partial: err.partialIdentity } }
  if (err instanceof HandshakeError) return { tell: err, record: { reason: err.reason, detail: err.message, partial: null } }
  if (err instanceof UpstreamError) return { tell: err, record: { reason: err.reason, detail: err.message, partial: null } }
  if (err instanceof ProtocolViolation) return { tell: err, record: { reason: 'protocol_violation', detail: err.message, partial: null } }
  if (err instanceof ClientGone) return { tell: null, record: { reason: 'token_missing', detail: err.message, partial: null } }
  const e = new PgError({ code: SQLSTATE.internalError, message: 'internal error during authentication' })
  return { tell: e, record: { reason: 'startup_rejected', detail: `internal error: ${(err as Error)?.message ?? String(err)}`, partial: null } }
}

function tryCertificateIdentity(cert: ClientCertificate, subject: 'spiffe' | 'cn'): WorkloadIdentity | null {
  try {
    return certificateIdentity(cert, subject)
  } catch {
    return null // e.g. no SPIFFE ID: the certificate can still accompany a token
  }
}

function isLoopback(address: string | undefined): boolean {
  if (!address) return false
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.')
}

function peerCertSha256(s: tls.TLSSocket): string | null {
  const cert = s.getPeerCertificate()
  return cert && cert.raw ? createHash('sha256').update(cert.raw).digest('hex') : null
}

function ignore(): void {}
