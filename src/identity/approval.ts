/**
 * Approvals (just-in-time elevation with evidence): a JWT from a trusted
 * approvals issuer (`identity.approvals`) that grants one subject a scope of
 * roles, databases and optionally statement classes until it expires, under
 * a change ticket and an approver.
 *
 * The token is verified exactly as a login token is (TokenVerifier: the
 * issuer's own key set and algorithm allow-list, aud, exp/nbf/iat, typ), then
 * its approval claims are checked. Messages never contain the token.
 */
import type { ApprovalInfo } from './types.js'
import type { ApprovalIssuerConfig } from '../config/types.js'
import { SQLSTATE } from '../protocol/errors.js'
import { formatEpochSeconds } from '../util/time.js'
import { IdentityError } from './identity.js'
import { TokenVerifier, type TokenVerifierOptions } from './jwt.js'

/** A verified approval. */
export interface Approval {
  /** `jti`. */
  id: string
  subject: string
  issuer: string
  ticket: string
  approver: string
  /** Upstream roles it covers; "*" covers any. */
  roles: string[]
  /** Databases it covers; "*" covers any. */
  databases: string[]
  /** Statement classes it covers (upper case); null: any. */
  classes: string[] | null
  /** `exp`, seconds since the epoch. */
  expiresAt: number
}

type ApprovalReason = 'approval_missing' | 'approval_invalid' | 'approval_expired' | 'approval_not_bound' | 'approval_out_of_scope'

/** An approval was required and missing, or presented and not accepted (FATAL 28000). */
export class ApprovalError extends IdentityError {
  constructor(
    reason: ApprovalReason,
    message: string,
    /** The approval, when it was verified but does not apply (for the auth.failure record). */
    readonly approval: ApprovalInfo | null = null,
  ) {
    super(reason, message, { code: SQLSTATE.invalidAuthorization })
    this.name = 'ApprovalError'
  }
}

export function approvalInfo(a: Approval): ApprovalInfo {
  return { id: a.id, ticket: a.ticket, approver: a.approver, issuer: a.issuer, expires_at: formatEpochSeconds(a.expiresAt) }
}

/** Whether the approval covers a session of `role` on `database`. */
export function approvalCovers(a: Approval, role: string, database: string): boolean {
  return (a.roles.includes('*') || a.roles.includes(role)) && (a.databases.includes('*') || a.databases.includes(database))
}

/** Verifies approvals against the trusted approvals issuers. */
export class ApprovalVerifier {
  private readonly tokens: TokenVerifier

  constructor(configs: readonly ApprovalIssuerConfig[], opts: TokenVerifierOptions = {}) {
    this.tokens = new TokenVerifier(configs, opts)
  }

  close(): void {
    this.tokens.close()
  }

  /** The approval `jwt` grants to `subject` (the authenticated identity's); throws ApprovalError. */
  async verify(jwt: string, subject: string): Promise<Approval> {
    let claims: Record<string, unknown>
    let issuer: string
    let expiresAt: number
    try {
      const verified = await this.tokens.verifyWorkloadToken(jwt)
      claims = verified.claims
      issuer = verified.issuer
      expiresAt = verified.expiresAt!
    } catch (err) {
      if (!(err instanceof IdentityError)) throw err
      if (err.reason === 'token_expired') throw new ApprovalError('approval_expired', 'the approval has expired')
      if (err.reason === 'token_missing') throw new ApprovalError('approval_invalid', 'the approval is empty')
      throw new ApprovalError('approval_invalid', `the approval is not valid: ${err.message}`)
    }
    const approval: Approval = {
      id: requiredString(claims, 'jti'),
      subject: requiredString(claims, 'sub'),
      issuer,
      ticket: requiredString(claims, 'ticket'),
      approver: requiredString(claims, 'approver'),
      roles: stringList(claims, 'roles', true)!,
      databases: stringList(claims, 'databases', true)!,
      classes: stringList(claims, 'classes', false)?.map((c) => c.toUpperCase()) ?? null,
      expiresAt,
    }
    if (approval.subject !== subject) {
      throw new ApprovalError('approval_not_bound', `the approval (${approval.id}) was granted to another subject`, approvalInfo(approval))
    }
    return approval
  }
}

function requiredString(claims: Record<string, unknown>, name: string): string {
  const v = claims[name]
  if (typeof v !== 'string' || v.length === 0) {
    throw new ApprovalError('approval_invalid', `the approval has no "${name}" claim (a non-empty string)`)
  }
  return v
}

/** A non-empty list of non-empty strings; absent is an error when `required`, else null. */
function stringList(claims: Record<string, unknown>, name: string, required: boolean): string[] | null {
  const v = claims[name]
  if (v === undefined && !required) return null
  if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === 'string' && x.length > 0)) {
    throw new ApprovalError('approval_invalid', `the approval claim "${name}" must be a non-empty list of names`)
  }
  return v as string[]
}
