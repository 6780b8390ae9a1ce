/**
 * What an identity and its approval look like in evidence, and why an
 * authentication can fail. Defined in the identity layer, which produces
 * them; the record contract (src/evidence/types.ts) re-exports them.
 */

export interface IdentityInfo {
  method: 'jwt' | 'mtls' | 'jwt+mtls'
  subject: string
  issuer: string
  audience: string[]
  token_id: string | null
  token_expires_at: string | null
  spiffe_id: string | null
  cert_sha256: string | null
  claims: Record<string, unknown>
  policy_rule: string | null
}

/** The verified approval a session was admitted with (identity.approvals; src/identity/approval.ts). */
export interface ApprovalInfo {
  /** The approval's `jti`. */
  id: string
  ticket: string
  approver: string
  issuer: string
  /** RFC 3339; the session ends then. */
  expires_at: string
}

export type AuthFailureReason =
  | 'token_signature_invalid'
  | 'token_expired'
  | 'token_not_yet_valid'
  | 'issuer_untrusted'
  | 'audience_mismatch'
  | 'algorithm_not_allowed'
  | 'token_malformed'
  | 'token_missing'
  | 'cert_untrusted'
  | 'cert_expired'
  | 'token_not_bound'
  | 'tls_required'
  | 'policy_no_match'
  | 'role_not_allowed'
  | 'database_not_allowed'
  | 'upstream_auth_failed'
  | 'upstream_unavailable'
  | 'upstream_rejected'
  | 'handshake_timeout'
  | 'protocol_violation'
  | 'startup_rejected'
  | 'rate_limited'
  | 'approval_missing'
  | 'approval_invalid'
  | 'approval_expired'
  | 'approval_not_bound'
  | 'approval_out_of_scope'
  /** A replication connection that no admitting rule allows (policy[].replication). */
  | 'replication_not_allowed'
