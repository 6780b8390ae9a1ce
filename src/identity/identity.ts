import type { AuthFailureReason, IdentityInfo } from './types.js'
import { PgError, SQLSTATE } from '../protocol/errors.js'
import { formatEpochSeconds } from '../util/time.js'

/** Who is connecting, as established by a verified token and/or certificate. */
export interface WorkloadIdentity {
  method: 'jwt' | 'mtls' | 'jwt+mtls'
  subject: string
  issuer: string
  audience: string[]
  tokenId: string | null
  /** JWT exp, seconds since the epoch. */
  expiresAt: number | null
  spiffeId: string | null
  certSha256: string | null
  /** The claims the issuer config selects for recording. */
  recordedClaims: Record<string, unknown>
  /** Every verified claim: for policy matching only, never recorded whole. */
  claims: Record<string, unknown>
}

/**
 * Authentication failed or was refused. `reason` is the stable audit code;
 * the message is safe to show the client (it never contains the token).
 */
export class IdentityError extends PgError {
  readonly reason: AuthFailureReason
  readonly partialIdentity: Partial<IdentityInfo> | null

  constructor(reason: AuthFailureReason, message: string, opts: { code?: string; partial?: Partial<IdentityInfo> | null } = {}) {
    super({ severity: 'FATAL', code: opts.code ?? SQLSTATE.invalidPassword, message })
    this.name = 'IdentityError'
    this.reason = reason
    this.partialIdentity = opts.partial ?? null
  }
}

export function identityInfo(id: WorkloadIdentity, policyRule: string | null): IdentityInfo {
  return {
    method: id.method,
    subject: id.subject,
    issuer: id.issuer,
    audience: id.audience,
    token_id: id.tokenId,
    token_expires_at: id.expiresAt === null ? null : formatEpochSeconds(id.expiresAt),
    spiffe_id: id.spiffeId,
    cert_sha256: id.certSha256,
    claims: id.recordedClaims,
    policy_rule: policyRule,
  }
}
