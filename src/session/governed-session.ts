import { createHash } from 'node:crypto'
import net from 'node:net'
import tls from 'node:tls'
import type { Duplex } from 'node:stream'
import type { ApprovalInfo, AuthFailureReason, ConnectionInfo, IdentityInfo, SessionEndReason } from '../evidence/types.js'
import { authFailureRecord, sessionEndRecord, sessionStartRecord, type SessionContext } from '../evidence/records.js'
import { identityInfo, IdentityError, type WorkloadIdentity } from '../identity/identity.js'
import { certificateIdentity, combineTokenAndCertificate, tokenIsBoundTo, verifiedClientCertificate, type ClientCertificate } from '../identity/mtls.js'
import type { PgwitnessConfig, PolicyRule } from '../config/types.js'
import { evaluateAccess } from '../policy/access.js'
import * as msg from '../protocol/backend-messages.js'
import { PgError, ProtocolViolation, SilentProtocolViolation, SQLSTATE } from '../protocol/errors.js'
import { decodePassword, FrontendType } from '../protocol/frontend.js'
import { decodeStartupPacket, GSSENC_REQUEST_CODE, SSL_REQUEST_CODE, unsupportedProtocol } from '../protocol/startup.js'
import { sendUpstreamCancel, UpstreamError, type UpstreamConnection } from '../upstream/connect.js'
import { openUpstream } from '../upstream/pool.js'
import { uuidv7 } from '../util/ids.js'
import { deepFreeze } from '../ledger/canonical-json.js'
import { rfc3339Micros } from '../util/time.js'
import type { ProxyContext } from './context.js'
import { startupParametersFor } from './startup-parameters.js'
import { Relay } from './relay.js'
import { SessionStatements } from './statement-records.js'
import { armDeadline, sessionDeadline, withApprovalDeadline } from './lifetime.js'
import { ClientGone, MessageTooLarge, SocketReader } from './socket-reader.js'
import { HandshakeError, tooManyClients } from './handshake-error.js'
import { ALWAYS_ADMIT, type SessionAdmission } from './handshake-budget.js'
import { SessionStatementRules } from '../policy/statement-rules.js'
import { ApprovalError, approvalInfo, type Approval } from '../identity/approval.js'
import { takeApproval } from './approval-option.js'
import type { ReplicationMode } from '../config/types.js'
import { replicationModeOf, replicationParameter } from '../replication/commands.js'

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
  /** The backend pid the session's cancel key is registered under (set once the key is issued). */
  private cancelPid: number | null = null
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
  /** The approval token from the startup options (never forwarded, never logged). */
  private presentedApproval: string | null = null
  /** The verified approval, once it is (recorded with a refusal too). */
  private approval: Approval | null = null
  /** A replication connection (startup `replication`): which kind; null for an ordinary session. */
  private replication: ReplicationMode | null = null
  private closedPromise: Promise<void>
  private resolveClosed!: () => void

  /** The config in force when the client connected: a reload (SIGHUP) applies to new connections. */
  private readonly config: PgwitnessConfig

  constructor(
    private readonly raw: net.Socket,
    private readonly ctx: ProxyContext,
    /** Accepted over limits.max_connections: refused with FATAL 53300 once the client has said who it is. */
    private readonly overLimit = false,
    /** The server's handshake and session budgets (handshake-budget.ts). */
    private readonly admission: SessionAdmission = ALWAYS_ADMIT,
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
      if (this.overLimit) throw tooManyClients(this.config.limits.maxConnections)
      await this.authenticate(reader)
    } catch (err) {
      this.refuse(err, reader)
    }
  }

  /** SSLRequest / GSSENCRequest / CancelRequest, until a StartupMessage arrives. */
  private async negotiate(reader: SocketReader): Promise<SocketReader> {
    // As PostgreSQL: each negotiation once (TLS rules out GSSAPI encryption too); a repeated request
    // is read as a StartupMessage of an unknown protocol version (FATAL 0A000).
    let gssDeclined = false
    for (;;) {
      const packet = decodeStartupPacket(await reader.readStartupPacket())
      switch (packet.kind) {
        case 'ssl-request': {
          if (this.tlsInfo) throw unsupportedProtocol(SSL_REQUEST_CODE)
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
          if (this.tlsInfo || gssDeclined) throw unsupportedProtocol(GSSENC_REQUEST_CODE)
          gssDeclined = true
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
    const taken = takeApproval(req.parameters)
    req.parameters = taken.parameters
    this.presentedApproval = taken.approval
    this.replication = replicationModeOf(req.parameters.get('replication'))
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
    // A place among limits.max_connections is taken only now, by an authenticated client.
    if (!this.admission.claimSession()) throw tooManyClients(cfg.limits.maxConnections)

    const sessionId = uuidv7()
    // From upstream.pool when it is enabled (a reused connection, reset and re-tagged), else a new one.
    const upstream = await this.ctx.metrics.timeUpstreamConnect(() => openUpstream(this.ctx, cfg.upstream, {
      role: req.user,
      database: req.database,
      password: cfg.upstream.roles[req.user]?.password ?? null,
      parameters: {
        ...startupParametersFor(req.parameters, sessionId),
        ...(this.replication ? { replication: replicationParameter(this.replication) } : {}),
      },
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
      session: { id: sessionId, started_at: rfc3339Micros(), application_name: req.applicationName, ...(this.replication ? { replication: this.replication } : {}) },
      identity: identityInfo(identity, rule.name),
      ...(this.approval ? { approval: approvalInfo(this.approval) } : {}),
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

    // The real backend pid (as a direct connection would see it) with a secret of the proxy's, new for every session.
    const key = this.ctx.cancels.register(upstream.backendPid, this)
    this.cancelPid = key.processId
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
      governedSettings: cfg.session.governedSettings,
      unparseable: a.unparseable,
      serverParameters: upstream.parameters,
      statementRules: rule.statements ? new SessionStatementRules(rule.name, rule.statements, identity.claims, this.approval, req.user) : null,
      replication: this.replication,
    }, {
      statement: (s) => statements.record(s),
      transactionEnd: (e) => statements.transactionEnd(e),
      nextSeq: () => statements.nextSeq(),
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
    const d = withApprovalDeadline(sessionDeadline(this.config.session, identity.expiresAt), this.approval?.expiresAt ?? null)
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
    const request = { role: req.user, database: req.database, replication: this.replication }
    if (this.certError) throw this.certError
    const cert = this.clientCert
    if (cert) {
      const certOnly = tryCertificateIdentity(cert, cfg.identity.mtls.subject)
      // An approval that does not verify for the certificate's subject: no certificate-only admission (the token decides).
      const approval = certOnly && (await this.verifyApproval(certOnly).catch(() => undefined))
      const decision = certOnly && approval !== undefined && evaluateAccess(cfg.policy, certOnly, request, false, approval)
      if (certOnly && decision && decision.allowed) return { identity: certOnly, rule: decision.rule }
      this.identity = certOnly
      this.approval = null
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
    const approval = await this.verifyApproval(identity)
    const decision = evaluateAccess(cfg.policy, identity, request, cert !== null && tokenIsBoundTo(fromToken, cert), approval)
    if (!decision.allowed) {
      // As PostgreSQL refuses a walsender to a role without REPLICATION: 42501.
      const code = decision.reason === 'replication_not_allowed' ? SQLSTATE.insufficientPrivilege : SQLSTATE.invalidAuthorization
      throw new HandshakeError(decision.reason, { code, message: `access denied: ${decision.detail}` })
    }
    return { identity, rule: decision.rule }
  }

  /** The approval presented in the startup options, verified for `identity` (null: none presented); throws ApprovalError. */
  private async verifyApproval(identity: WorkloadIdentity): Promise<Approval | null> {
    if (this.presentedApproval === null) return null
    this.approval = await this.ctx.approvals.verify(this.presentedApproval, identity.subject)
    return this.approval
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
    if (this.cancelPid !== null) this.ctx.cancels.unregister(this.cancelPid, this)
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
      streamed: this.replication ? r.streamed : null,
    }))
    this.resolveClosed()
  }

  private finishHandshake(): void {
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer)
    this.handshakeTimer = null
    this.admission.handshakeEnded()
  }

  private onHandshakeTimeout(): void {
    const message = `the connection did not complete authentication within ${this.config.limits.handshakeTimeoutMs} ms`
    // No complete StartupMessage yet: PostgreSQL's authentication_timeout closes without a word then.
    this.refuse(this.requested === null ? new SilentHandshakeTimeout(message) : new HandshakeError('handshake_timeout', { code: SQLSTATE.connectionFailure, message }), null)
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
      this.ctx.authFailures.record(authFailureRecord(this.ctx.proxy, this.connection, {
        method: this.credentialPresented ? (this.clientCert ? 'jwt+mtls' : 'jwt') : this.identity?.method ?? (this.clientCert || this.certError ? 'mtls' : 'none'),
        reason: failure.record.reason,
        detail: failure.record.detail,
        requested: { user: this.requested.user, database: this.requested.database, application_name: this.requested.applicationName },
        identity: this.identity ? identityInfo(this.identity, null) : failure.record.partial,
        ...refusedApproval(this.approval, err),
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
  if (err instanceof SilentProtocolViolation) return { tell: null, record: { reason: 'protocol_violation', detail: err.message, partial: null } }
  if (err instanceof SilentHandshakeTimeout) return { tell: null, record: { reason: 'handshake_timeout', detail: err.message, partial: null } }
  if (err instanceof ProtocolViolation) return { tell: err, record: { reason: 'protocol_violation', detail: err.message, partial: null } }
  if (err instanceof ClientGone) return { tell: null, record: { reason: 'token_missing', detail: err.message, partial: null } }
  const e = new PgError({ code: SQLSTATE.internalError, message: 'internal error during authentication' })
  return { tell: e, record: { reason: 'startup_rejected', detail: `internal error: ${(err as Error)?.message ?? String(err)}`, partial: null } }
}

/** The handshake timed out before a StartupMessage: closed without an answer, as PostgreSQL does. */
class SilentHandshakeTimeout extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'SilentHandshakeTimeout'
  }
}

/** The approval a refused session presented, when it was verified (it was not bound, or out of scope). */
function refusedApproval(verified: Approval | null, err: unknown): { approval?: ApprovalInfo } {
  const info = verified ? approvalInfo(verified) : err instanceof ApprovalError ? err.approval : null
  return info ? { approval: info } : {}
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
