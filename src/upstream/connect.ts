import net from 'node:net'
import tls from 'node:tls'
import { serialize } from 'pg-protocol'
import { Parser } from 'pg-protocol/dist/parser'
import type { BackendMessage } from 'pg-protocol/dist/messages'
import sasl from 'pg/lib/crypto/sasl'
import pgCrypto from 'pg/lib/crypto/utils'
import { formatPath } from '../config/errors.js'
import type { UpstreamClientCert, UpstreamConfig } from '../config/types.js'
import { PgError, SQLSTATE } from '../protocol/errors.js'
import { BodyMode, MessageStream } from '../protocol/message-stream.js'
import { parameterPair, type ParameterPair } from './parameter-pairs.js'

/** An authenticated upstream connection, ready for the client's first query. */
export interface UpstreamConnection {
  socket: net.Socket | tls.TLSSocket
  backendPid: number
  secretKey: number
  /** ParameterStatus values in the order the server sent them. */
  parameters: ParameterPair[]
  /** PostgreSQL's own session id, as %c prints it: hex(backend start epoch).hex(pid). */
  serverSessionId: string
  tls: boolean
  /**
   * Set on a connection from upstream.pool (src/upstream/pool.ts): call it
   * once when the session ends, with the session.end reason; the pool then
   * resets and keeps the connection, or closes it.
   */
  release?: (reason: string) => void
}

export interface UpstreamLogin {
  role: string
  database: string
  password: string | null
  /**
   * Client certificate to present over TLS (PostgreSQL `cert` authentication);
   * default: the one configured for the role in upstream.roles, if any.
   */
  clientCert?: UpstreamClientCert | null
  /** Further startup parameters (client_encoding, application_name, pgwitness.session_id, …). */
  parameters: Record<string, string>
}

/** Why connecting upstream failed; `reason` is the audit code. */
export class UpstreamError extends PgError {
  readonly reason: 'upstream_auth_failed' | 'upstream_unavailable' | 'upstream_rejected'
  constructor(reason: UpstreamError['reason'], fields: { code: string; message: string; detail?: string }) {
    super({ severity: 'FATAL', ...fields })
    this.name = 'UpstreamError'
    this.reason = reason
  }
}

// Fully schema-qualified: the client's role may own objects and set search_path,
// and must not be able to forge the session id the audit trail joins on.
const SESSION_ID_QUERY =
  "SELECT pg_catalog.to_hex(pg_catalog.floor(pg_catalog.date_part('epoch', a.backend_start))::pg_catalog.int8) " +
  "OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.to_hex(a.pid) " +
  'FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) a'

/**
 * Connect and authenticate to PostgreSQL as `login.role` with the proxy's own
 * credentials (a client certificate over TLS, SCRAM-SHA-256, md5, cleartext
 * over TLS, or trust), then learn the server's session id. Credentials never
 * appear in errors.
 */
export async function connectUpstream(cfg: UpstreamConfig, login: UpstreamLogin): Promise<UpstreamConnection> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await connectOnce(cfg, login)
    } catch (err) {
      // A physical walsender whose start second is not known for sure (see physicalSessionId): connect again.
      if (!(err instanceof AmbiguousStart) || attempt >= 3) throw err instanceof AmbiguousStart ? new UpstreamError('upstream_rejected', { code: SQLSTATE.connectionFailure, message: err.message }) : err
    }
  }
}

async function connectOnce(cfg: UpstreamConfig, login: UpstreamLogin): Promise<UpstreamConnection> {
  const clientCert = login.clientCert !== undefined ? login.clientCert : roleClientCert(cfg, login.role)
  if (clientCert && cfg.tls.mode === 'disable') {
    // The config loader refuses this; a hand-built config must not silently skip the certificate.
    throw new UpstreamError('upstream_auth_failed', {
      code: SQLSTATE.invalidAuthorization,
      message: `upstream role "${login.role}" has a client certificate, but upstream.tls.mode is disable`,
    })
  }
  let socket: net.Socket | tls.TLSSocket | null = null
  const timer = destroyAfter(cfg.connectTimeoutMs, `timed out after ${cfg.connectTimeoutMs} ms`, () => socket)
  try {
    const openedAtMs = Date.now()
    socket = await openSocket(cfg, (s) => (socket = s))
    socket.setNoDelay(true)
    if (cfg.tls.mode !== 'disable') socket = await startTls(socket, cfg, clientCert ? { role: login.role, cert: clientCert } : null)
    const conn = await authenticate(socket, cfg, login, clientCert !== null, openedAtMs)
    socket.setKeepAlive(true, 60_000)
    return conn
  } catch (err) {
    socket?.destroy()
    if (err instanceof UpstreamError || err instanceof AmbiguousStart) throw err
    if (clientCert && isCertificateAlert(err)) {
      // The server's TLS layer refused the certificate (untrusted, expired, …).
      // With TLS 1.3 its alert arrives after the client considers the handshake
      // done, while the startup message is under way; with TLS 1.2 during the handshake.
      throw new UpstreamError('upstream_auth_failed', {
        code: SQLSTATE.invalidAuthorization,
        message:
          `the upstream server refused the client certificate of role "${login.role}" ` +
          `(${formatPath(['upstream', 'roles', login.role, 'cert'])}): ${tlsReason(err)}`,
      })
    }
    throw new UpstreamError('upstream_unavailable', {
      code: SQLSTATE.connectionRejected,
      message: `could not connect to the upstream PostgreSQL server: ${(err as Error).message}`,
    })
  } finally {
    clearTimeout(timer)
  }
}

/**
 * After `ms`, destroy the socket `current()` names (the raw or the TLS one,
 * whichever the exchange has reached) with `message`. The step waiting on
 * it sees the error; the no-op listener only makes sure that a socket
 * between steps, with no listener of its own, cannot crash the process.
 */
function destroyAfter(ms: number, message: string, current: () => net.Socket | null): NodeJS.Timeout {
  return setTimeout(() => current()?.on('error', () => undefined).destroy(new Error(message)), ms)
}

/** Connect; `created` receives the socket before the connect completes, so a timeout can destroy it. */
function openSocket(cfg: UpstreamConfig, created: (s: net.Socket) => void): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: cfg.host, port: cfg.port })
    created(s)
    s.once('connect', () => {
      s.off('error', reject)
      resolve(s)
    })
    s.once('error', reject)
  })
}

/** The client certificate configured for `role` (own keys only: the role name comes from a client). */
function roleClientCert(cfg: UpstreamConfig, role: string): UpstreamClientCert | null {
  return Object.prototype.hasOwnProperty.call(cfg.roles, role) ? (cfg.roles[role]!.clientCert ?? null) : null
}

/** A TLS alert by which the server refused our certificate (unknown ca, bad certificate, certificate expired, …). */
function isCertificateAlert(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return (
    typeof code === 'string' &&
    /^ERR_SSL_(SSLV3|TLSV1|TLSV13)_ALERT_(UNKNOWN_CA|BAD_CERTIFICATE|UNSUPPORTED_CERTIFICATE|CERTIFICATE_[A-Z_]+|ACCESS_DENIED)$/.test(code)
  )
}

/** OpenSSL's short reason ("tlsv1 alert unknown ca"), not its whole error line. */
function tlsReason(err: unknown): string {
  const reason = (err as { reason?: unknown } | null)?.reason
  return typeof reason === 'string' && reason !== '' ? reason : (err as Error).message
}

async function startTls(
  socket: net.Socket | tls.TLSSocket,
  cfg: UpstreamConfig,
  client: { role: string; cert: UpstreamClientCert } | null = null,
): Promise<tls.TLSSocket> {
  const answer = await new Promise<number>((resolve, reject) => {
    socket.once('data', (b: Buffer) => (b.length === 1 ? resolve(b[0]!) : reject(new Error('unexpected answer to SSLRequest'))))
    socket.once('error', reject)
    socket.once('close', () => reject(new Error('server closed the connection during SSL negotiation')))
    socket.write(serialize.requestSsl())
  })
  socket.removeAllListeners('error')
  socket.removeAllListeners('close')
  if (answer !== 0x53 /* S */) throw new Error('the server does not support TLS, but upstream.tls.mode requires it')
  const verify = cfg.tls.mode === 'verify-full'
  let tlsSocket: tls.TLSSocket
  try {
    tlsSocket = tls.connect({
      socket,
      servername: net.isIP(cfg.tls.servername ?? cfg.host) ? undefined : (cfg.tls.servername ?? cfg.host),
      ca: cfg.tls.ca ?? undefined,
      ...(client ? { cert: client.cert.cert, key: client.cert.key } : {}),
      rejectUnauthorized: verify,
      checkServerIdentity: verify
        ? (_host, cert) => tls.checkServerIdentity(cfg.tls.servername ?? cfg.host, cert)
        : () => undefined,
    })
  } catch (err) {
    // Building the TLS context failed: an unusable certificate or key (e.g. a
    // key that does not belong to the certificate). OpenSSL's reason names no key material.
    if (!client) throw err
    throw new Error(
      `the client certificate of upstream role "${client.role}" cannot be used ` +
        `(${formatPath(['upstream', 'roles', client.role, 'cert'])} and key): ${tlsReason(err)}`,
    )
  }
  await new Promise<void>((resolve, reject) => {
    tlsSocket.once('secureConnect', resolve)
    tlsSocket.once('error', (e: Error & { code?: string; reason?: string }) => {
      // Keep OpenSSL's code and reason: with TLS 1.2 the server refuses a
      // client certificate during the handshake (see isCertificateAlert).
      reject(Object.assign(new Error(`TLS to the upstream failed: ${e.message}`), { code: e.code, reason: e.reason }))
    })
  })
  tlsSocket.removeAllListeners('error')
  return tlsSocket
}

function authenticate(
  socket: net.Socket | tls.TLSSocket,
  cfg: UpstreamConfig,
  login: UpstreamLogin,
  presentedCert: boolean,
  openedAtMs: number,
): Promise<UpstreamConnection> {
  return new Promise((resolve, reject) => {
    const parser = new Parser()
    const parameters: ParameterPair[] = []
    let backendPid = 0
    let secretKey = 0
    let saslSession: ReturnType<typeof sasl.startSession> | null = null
    let phase: 'auth' | 'ready' | 'sessionid' = 'auth'
    let serverSessionId: string | null = null
    let done = false

    const fail = (err: Error) => {
      if (done) return
      done = true
      cleanup()
      reject(err)
    }
    const needPassword = (): string => {
      if (login.password === null) {
        throw new UpstreamError('upstream_auth_failed', {
          code: SQLSTATE.invalidPassword,
          message: presentedCert
            ? `the upstream server asks for a password for role "${login.role}" although the proxy presented the role's ` +
              `client certificate (its pg_hba.conf rule for this connection is not \`hostssl … cert\`), and the proxy ` +
              `has no password configured (upstream.roles)`
            : `the upstream server asks for a password for role "${login.role}", and the proxy has none configured (upstream.roles)`,
        })
      }
      return login.password
    }

    const onMessage = (msg: BackendMessage): void => {
      switch (msg.name) {
        case 'authenticationOk':
          return
        case 'authenticationCleartextPassword':
          if (!(socket instanceof tls.TLSSocket)) {
            throw new UpstreamError('upstream_auth_failed', {
              code: SQLSTATE.invalidAuthorization,
              message: 'the upstream server asks for a cleartext password over an unencrypted connection; refusing to send it',
            })
          }
          socket.write(serialize.password(needPassword()))
          return
        case 'authenticationMD5Password': {
          const salt = (msg as unknown as { salt: Buffer }).salt
          void pgCrypto.postgresMd5PasswordHash(login.role, needPassword(), salt)
            .then((h) => socket.write(serialize.password(h)), fail)
          return
        }
        case 'authenticationSASL': {
          needPassword()
          saslSession = sasl.startSession((msg as unknown as { mechanisms: string[] }).mechanisms)
          socket.write(serialize.sendSASLInitialResponseMessage(saslSession.mechanism, saslSession.response))
          return
        }
        case 'authenticationSASLContinue': {
          const s = saslSession!
          void sasl.continueSession(s, needPassword(), (msg as unknown as { data: string }).data)
            .then(() => socket.write(serialize.sendSCRAMClientFinalMessage(s.response)), fail)
          return
        }
        case 'authenticationSASLFinal':
          try {
            sasl.finalizeSession(saslSession!, (msg as unknown as { data: string }).data)
          } catch (err) {
            // The server could not prove it knows the password: not the server we meant to reach.
            throw new UpstreamError('upstream_auth_failed', {
              code: SQLSTATE.invalidPassword,
              message: `upstream SCRAM authentication failed: ${(err as Error).message}`,
            })
          }
          return
        case 'parameterStatus': {
          const m = msg as unknown as { parameterName: string; parameterValue: string }
          parameters.push(parameterPair(m.parameterName, m.parameterValue))
          return
        }
        case 'backendKeyData': {
          const m = msg as unknown as { processID: number; secretKey: number }
          backendPid = m.processID
          secretKey = m.secretKey
          return
        }
        case 'readyForQuery':
          if (phase === 'auth' && login.parameters['replication'] === 'true') {
            // Before letting go of the socket: an ambiguous start second throws here, and fail() rejects (connect again).
            const serverSessionId = physicalSessionId(openedAtMs, backendPid)
            done = true
            cleanup()
            resolve({ socket, backendPid, secretKey, parameters, serverSessionId, tls: socket instanceof tls.TLSSocket })
          } else if (phase === 'auth') {
            phase = 'sessionid'
            socket.write(serialize.query(SESSION_ID_QUERY))
          } else if (phase === 'sessionid') {
            if (serverSessionId === null) throw new Error('could not learn the upstream session id')
            done = true
            cleanup()
            resolve({ socket, backendPid, secretKey, parameters, serverSessionId, tls: socket instanceof tls.TLSSocket })
          }
          return
        case 'dataRow': {
          const v = String((msg as unknown as { fields: Array<string | null> }).fields[0])
          // It must name this very backend: hex(start).hex(pid).
          if (!/^[0-9a-f]+\.[0-9a-f]+$/.test(v) || !v.endsWith('.' + backendPid.toString(16))) {
            throw new Error('the upstream returned an invalid session id')
          }
          serverSessionId = v
          return
        }
        case 'error': {
          const m = msg as unknown as { code: string; message: string; detail?: string }
          const auth = m.code.startsWith('28')
          throw new UpstreamError(auth ? 'upstream_auth_failed' : 'upstream_rejected', {
            code: m.code,
            message: auth ? `upstream authentication failed for role "${login.role}": ${m.message}` : m.message,
            ...(m.detail ? { detail: m.detail } : {}),
          })
        }
        default:
          return // notices, row descriptions, command complete
      }
    }

    const frames = new MessageStream(
      {
        header: () => BodyMode.Capture,
        message: (type, body) => {
          const frame = Buffer.allocUnsafe(5 + body.length)
          frame[0] = type
          frame.writeInt32BE(body.length + 4, 1)
          body.copy(frame, 5)
          parser.parse(frame, onMessage)
        },
        piece: () => undefined,
        end: () => undefined,
      },
      1 << 20,
      'server',
    )
    const onData = (chunk: Buffer) => {
      try {
        frames.push(chunk)
      } catch (err) {
        fail(err as Error)
      }
    }
    const onError = (err: Error) => fail(err)
    const onClose = () => fail(new Error('the server closed the connection during startup'))
    const cleanup = () => {
      socket.off('data', onData)
      socket.off('error', onError)
      socket.off('close', onClose)
    }
    socket.on('data', onData)
    socket.on('error', onError)
    socket.on('close', onClose)
    socket.write(startupMessage({ ...login.parameters, user: login.role, database: login.database }))
  })
}

/**
 * A physical walsender runs no SQL, so its %c (hex(backend start second).hex(pid))
 * is derived: the backend started after the proxy began to connect and before
 * it answered, so when both fall in the same second that second is its start
 * (on the proxy's clock: exact when it agrees with the server's).
 */
function physicalSessionId(openedAtMs: number, backendPid: number): string {
  const start = Math.floor(openedAtMs / 1000)
  if (Math.floor(Date.now() / 1000) !== start) throw new AmbiguousStart('the upstream walsender\'s start second could not be determined')
  return `${start.toString(16)}.${backendPid.toString(16)}`
}

class AmbiguousStart extends Error {}

/** Forward a cancel request for an upstream backend on a new connection (TLS when the upstream uses it). */
export async function sendUpstreamCancel(cfg: UpstreamConfig, backendPid: number, secretKey: number): Promise<void> {
  // connect_timeout bounds the whole exchange (TCP, TLS, the request), like a login: the client's cancel connection waits for it.
  let socket: net.Socket | tls.TLSSocket | null = null
  const timer = destroyAfter(cfg.connectTimeoutMs, 'cancel request timed out', () => socket)
  try {
    socket = await openSocket(cfg, (s) => (socket = s))
    if (cfg.tls.mode !== 'disable') socket = await startTls(socket, cfg)
    const s = socket
    await new Promise<void>((resolve) => {
      s.once('close', () => resolve())
      s.once('error', () => resolve())
      s.end(serialize.cancel(backendPid, secretKey))
    })
  } finally {
    clearTimeout(timer)
    socket?.destroy()
  }
}

/** StartupMessage for protocol 3.0 (pg-protocol's always forces client_encoding UTF8; we pass the client's own). */
function startupMessage(params: Record<string, string>): Buffer {
  const parts: Buffer[] = [Buffer.alloc(8)]
  for (const [k, v] of Object.entries(params)) parts.push(Buffer.from(`${k}\0${v}\0`, 'utf8'))
  parts.push(Buffer.from([0]))
  const msg = Buffer.concat(parts)
  msg.writeInt32BE(msg.length, 0)
  msg.writeInt32BE(196608, 4)
  return msg
}
