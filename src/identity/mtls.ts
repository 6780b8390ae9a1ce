import { createHash } from 'node:crypto'
import type tls from 'node:tls'
import { SQLSTATE } from '../protocol/errors.js'
import { IdentityError, type WorkloadIdentity } from './identity.js'

/** OID of the TLS client authentication extended key usage. */
const CLIENT_AUTH_EKU = '1.3.6.1.5.5.7.3.2'

/** A verified client certificate, as identity material. */
export interface ClientCertificate {
  /** SHA-256 of the DER certificate, lowercase hex (the recorded fingerprint). */
  sha256: string
  /** base64url SHA-256 of the DER certificate: RFC 8705 `cnf.x5t#S256`. */
  x5tS256: string
  spiffeId: string | null
  commonName: string | null
  /** The issuing CA's subject, e.g. "CN=pgwitness dev CA". */
  issuer: string
}

/**
 * The client certificate of a TLS connection, verified against the
 * configured CA bundle by the TLS layer (chain and validity period) and here
 * for its usage; null when the client sent none. A certificate that was sent
 * but does not verify is an error: a client presenting a bad certificate is
 * refused rather than silently treated as certificate-less.
 */
export function verifiedClientCertificate(socket: tls.TLSSocket): ClientCertificate | null {
  const cert = socket.getPeerCertificate()
  if (!cert || !cert.raw) return null
  const code = chainVerifyError(socket)
  if (code !== null) {
    if (code === 'CERT_HAS_EXPIRED') throw certError('cert_expired', 'the client certificate has expired')
    if (code === 'CERT_NOT_YET_VALID') throw certError('cert_expired', 'the client certificate is not valid yet')
    throw certError('cert_untrusted', `the client certificate is not trusted (${code})`)
  }
  const eku = (cert as tls.PeerCertificate & { ext_key_usage?: string[] }).ext_key_usage
  if (eku && !eku.includes(CLIENT_AUTH_EKU)) {
    throw certError('cert_untrusted', 'the client certificate is not valid for client authentication (extended key usage)')
  }
  const digest = createHash('sha256').update(cert.raw).digest()
  return {
    sha256: digest.toString('hex'),
    x5tS256: digest.toString('base64url'),
    spiffeId: spiffeIdOf(cert.subjectaltname),
    commonName: firstValue(cert.subject?.CN),
    issuer: distinguishedName(cert.issuer),
  }
}

/** The identity a certificate alone establishes (certificate-only mode). */
export function certificateIdentity(cert: ClientCertificate, subject: 'spiffe' | 'cn'): WorkloadIdentity {
  const principal = subject === 'spiffe' ? cert.spiffeId : cert.commonName
  if (!principal) {
    throw certError('cert_untrusted', subject === 'spiffe'
      ? 'the client certificate has no SPIFFE ID (URI SAN spiffe://…)'
      : 'the client certificate has no subject common name')
  }
  return {
    method: 'mtls',
    subject: principal,
    issuer: cert.issuer,
    audience: [],
    tokenId: null,
    expiresAt: null,
    spiffeId: cert.spiffeId,
    certSha256: cert.sha256,
    recordedClaims: {},
    claims: {},
  }
}

/** A token identity presented over a verified certificate: both, recorded together. */
export function combineTokenAndCertificate(token: WorkloadIdentity, cert: ClientCertificate): WorkloadIdentity {
  return { ...token, method: 'jwt+mtls', certSha256: cert.sha256, spiffeId: token.spiffeId ?? cert.spiffeId }
}

/** RFC 8705: is the token bound to this certificate (cnf.x5t#S256)? */
export function tokenIsBoundTo(token: WorkloadIdentity, cert: ClientCertificate): boolean {
  const cnf = token.claims.cnf as Record<string, unknown> | undefined
  return typeof cnf?.['x5t#S256'] === 'string' && cnf['x5t#S256'] === cert.x5tS256
}

/**
 * OpenSSL's verdict on the peer's chain (against the context's CA bundle and
 * validity period), or null when it verifies. tls.Server computes this into
 * `authorized`/`authorizationError`, but a TLSSocket wrapped around an
 * existing socket (as after SSLRequest) never does, so ask the handle the
 * same way tls.Server does.
 */
function chainVerifyError(socket: tls.TLSSocket): string | null {
  if (socket.authorized) return null
  const handle = (socket as unknown as { _handle?: { verifyError?: () => (Error & { code?: string }) | null } })._handle
  if (typeof handle?.verifyError !== 'function') return String(socket.authorizationError ?? 'verification unavailable')
  const err = handle.verifyError()
  return err ? String(err.code ?? err.message) : null
}

function certError(reason: 'cert_untrusted' | 'cert_expired', message: string): IdentityError {
  return new IdentityError(reason, message, { code: SQLSTATE.invalidAuthorization })
}

function spiffeIdOf(san: string | undefined): string | null {
  if (!san) return null
  for (const part of san.split(/,\s*/)) {
    if (part.startsWith('URI:spiffe://')) return part.slice(4)
  }
  return null
}

function firstValue(v: string | string[] | undefined): string | null {
  if (v === undefined) return null
  return Array.isArray(v) ? (v[0] ?? null) : v
}

function distinguishedName(name: tls.Certificate | undefined): string {
  if (!name) return ''
  return Object.entries(name)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : v}`)
    .join(', ')
}
