import type { PolicyRule, ReplicationMode } from '../config/types.js'
import type { WorkloadIdentity } from '../identity/identity.js'
import { claimMatches, getClaim } from '../identity/claims.js'
import { approvalCovers, type Approval } from '../identity/approval.js'
import { globMatches } from './glob.js'

/** The upstream role and database a client asked for in its StartupMessage. */
export interface AccessRequest {
  role: string
  database: string
  /** A replication connection (startup `replication`), which a rule must allow by name (`replication:`). */
  replication?: ReplicationMode | null
}

export type AccessDecision =
  | { allowed: true; rule: PolicyRule }
  | {
    allowed: false
    reason: 'policy_no_match' | 'role_not_allowed' | 'database_not_allowed' | 'token_not_bound' | 'approval_missing' | 'approval_out_of_scope' | 'replication_not_allowed'
    detail: string
  }

/**
 * Ordered policy evaluation: the first rule that matches the identity AND
 * grants the requested role and database admits the session. When none does,
 * the most specific refusal is reported: a matching rule that grants the role
 * but not the database beats one that does not grant the role, which beats no
 * matching rule at all.
 */
export function evaluateAccess(
  rules: readonly PolicyRule[],
  identity: WorkloadIdentity,
  request: AccessRequest,
  /** Whether the token is bound to the client certificate (RFC 8705), for rules that require it. */
  tokenBound = false,
  /** The session's verified approval, for rules that require one (`require_approval: true`). */
  approval: Approval | null = null,
): AccessDecision {
  let identityMatched = false
  let roleMatched = false
  let bindingMissing = false
  let replicationMissing = false
  const replication = request.replication ?? null
  let approvalMissing = false
  let approvalOutOfScope = false
  for (const rule of rules) {
    if (!identityMatchesRule(rule, identity)) continue
    identityMatched = true
    if (!grants(rule.roles, request.role)) continue
    roleMatched = true
    // A physical walsender serves the whole cluster: the database it names is not one it is confined to.
    if (replication !== 'physical' && !grants(rule.databases, request.database)) continue
    if (rule.requireTokenBinding && !tokenBound) {
      bindingMissing = true
      continue
    }
    if (replication !== null && !rule.replication?.includes(replication)) {
      replicationMissing = true
      continue
    }
    // A presented approval must cover the session it comes with, required or not.
    if (approval !== null && !approvalCovers(approval, request.role, request.database)) {
      approvalOutOfScope = true
      continue
    }
    if (rule.requireApproval && approval === null) {
      approvalMissing = true
      continue
    }
    return { allowed: true, rule }
  }
  if (replicationMissing) {
    return { allowed: false, reason: 'replication_not_allowed', detail: `no policy rule allows ${replication} replication connections for role "${request.role}" (policy[].replication)` }
  }
  if (approvalOutOfScope) {
    return { allowed: false, reason: 'approval_out_of_scope', detail: `the approval does not cover role "${request.role}" on database "${request.database}"` }
  }
  if (approvalMissing) {
    return { allowed: false, reason: 'approval_missing', detail: `policy grants role "${request.role}" only with an approval (present one in the startup options: -c pgwitness.approval=<token>)` }
  }
  if (bindingMissing) {
    return { allowed: false, reason: 'token_not_bound', detail: 'the policy requires the token to be bound to the client certificate (cnf.x5t#S256)' }
  }
  if (roleMatched) {
    return { allowed: false, reason: 'database_not_allowed', detail: `policy does not allow database "${request.database}" for role "${request.role}"` }
  }
  if (identityMatched) {
    return { allowed: false, reason: 'role_not_allowed', detail: `policy does not allow role "${request.role}" for this identity` }
  }
  return { allowed: false, reason: 'policy_no_match', detail: 'no policy rule matches this identity' }
}

export function identityMatchesRule(rule: PolicyRule, identity: WorkloadIdentity): boolean {
  const m = rule.match
  // A token presented over a verified certificate still satisfies a rule asking for a token.
  if (m.method != null && m.method !== identity.method && !(m.method === 'jwt' && identity.method === 'jwt+mtls')) return false
  if (m.certSha256 && m.certSha256 !== identity.certSha256) return false
  if (m.issuer !== null && m.issuer !== identity.issuer) return false
  if (m.subject !== null && !globMatches(m.subject, identity.subject)) return false
  for (const [path, expected] of Object.entries(m.claims)) {
    if (!claimMatches(getClaim(identity.claims, path), expected)) return false
  }
  return true
}

function grants(allowed: readonly string[], requested: string): boolean {
  return allowed.includes('*') || allowed.includes(requested)
}
