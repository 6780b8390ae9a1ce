/** `policy:` — ordered rules mapping identities to upstream roles and databases. */
import { fail, formatPath, type KeyPath, shown, typeName } from './errors.js'
import { given, type Reader } from './reader.js'
import type { IdentityConfig, IdentityMethod, PolicyMatch, PolicyRule } from './types.js'
import { parseStatementRules } from './parse-statements.js'
import { ConfigProblems, mapEach } from './problems.js'
import { parseReplication } from './parse-replication.js'

const METHODS = ['jwt', 'mtls', 'jwt+mtls'] as const
const RULE_KEYS = ['name', 'match', 'roles', 'databases', 'require_token_binding', 'require_approval', 'statements', 'replication']
const MATCH_KEYS = ['method', 'issuer', 'subject', 'claims', 'cert_sha256']

/**
 * An empty or absent policy is valid: every connection is denied. `identity`
 * null: the identity section has problems of its own, so issuer names are not checked.
 */
export function parsePolicy(r: Reader, v: unknown, identity: IdentityConfig | null): PolicyRule[] {
  const path = ['policy']
  if (v === null || v === undefined) return []
  const issuers = identity === null ? null : new Set(identity.jwt.map((j) => j.issuer))
  const names = new Map<string, number>()
  return mapEach(r.list(v, path), (item, i) => {
    const rule = parseRule(r, item, [...path, i], issuers)
    if (rule.requireApproval && identity !== null && identity.approvals.length === 0) {
      fail([...path, i, 'require_approval'], 'needs a trusted approvals issuer (identity.approvals)')
    }
    const prev = names.get(rule.name)
    if (prev !== undefined) {
      fail([...path, i, 'name'], `duplicate rule name ${JSON.stringify(rule.name)} (also used by ${formatPath([...path, prev])})`)
    }
    names.set(rule.name, i)
    return rule
  })
}

function parseRule(r: Reader, v: unknown, path: KeyPath, issuers: Set<string> | null): PolicyRule {
  const m = r.mapping(v, path, RULE_KEYS)
  // The keys of a rule are checked independently: every problem of it is reported at once.
  const p = new ConfigProblems()
  const name = p.part(() => {
    if (!given(m, 'name')) fail([...path, 'name'], 'is required')
    return r.string(m.name, [...path, 'name'])
  })
  // A rule without `match` would grant access to every authenticated
  // identity; that must be written explicitly as `match: {}`.
  const match = p.part(() => {
    if (!given(m, 'match')) fail([...path, 'match'], 'is required (use `match: {}` to match every authenticated identity)')
    return parseMatch(r, m.match, [...path, 'match'], issuers)
  })
  const roles = p.part(() => {
    if (!given(m, 'roles')) fail([...path, 'roles'], 'is required (a non-empty list of upstream roles, or ["*"])')
    return r.stringList(m.roles, [...path, 'roles'], true)
  })
  const databases = p.part(() => {
    if (!given(m, 'databases')) fail([...path, 'databases'], 'is required (a non-empty list of databases, or ["*"])')
    return r.stringList(m.databases, [...path, 'databases'], true)
  })
  const requireTokenBinding = p.part(() => {
    const binding = r.bool(m.require_token_binding, [...path, 'require_token_binding'], false)
    if (binding && match !== undefined && match.method !== 'jwt+mtls') {
      fail([...path, 'require_token_binding'], 'needs match.method jwt+mtls (a token bound to a client certificate needs both)')
    }
    return binding
  })
  const requireApproval = p.part(() => r.bool(m.require_approval, [...path, 'require_approval'], false))
  const statements = p.part(() => parseStatementRules(r, m.statements, [...path, 'statements']))
  const replication = p.part(() => parseReplication(r, m.replication, [...path, 'replication']))
  p.throwIfAny()
  return {
    name: name!, match: match!, roles: roles!, databases: databases!, requireTokenBinding: requireTokenBinding!, requireApproval: requireApproval!, statements: statements!,
    ...(replication!.length > 0 ? { replication: replication! } : {}),
  }
}

function parseMatch(r: Reader, v: unknown, path: KeyPath, issuers: Set<string> | null): PolicyMatch {
  const m = r.mapping(v, path, MATCH_KEYS)
  const method: IdentityMethod | null = given(m, 'method') ? r.oneOf(m.method, [...path, 'method'], METHODS, 'jwt') : null

  let issuer: string | null = null
  if (given(m, 'issuer')) {
    issuer = r.string(m.issuer, [...path, 'issuer'])
    if (method === 'mtls') fail([...path, 'issuer'], 'an issuer applies to JWT identities only, but this rule has method mtls')
    if (issuers !== null && !issuers.has(issuer)) {
      fail([...path, 'issuer'], `no trusted issuer with this name is configured (see identity.jwt); got ${shown(m.issuer)}`)
    }
  }

  const subject = r.optString(m.subject, [...path, 'subject'])

  const claims: Record<string, string | number | boolean> = Object.create(null) as Record<string, string | number | boolean>
  if (given(m, 'claims')) {
    if (method === 'mtls') fail([...path, 'claims'], 'claims apply to JWT identities only, but this rule has method mtls')
    for (const [claim, value] of r.entries(m.claims, [...path, 'claims'])) {
      const cp = [...path, 'claims', claim]
      if (claim === '') fail(cp, 'a claim name must not be empty')
      if (typeof value === 'string') claims[claim] = r.string(value, cp, false)
      else if (typeof value === 'number' || typeof value === 'boolean') claims[claim] = value
      else fail(cp, `must be a string, number or boolean (got ${typeName(value)})`)
    }
  }
  let certSha256: string | null = null
  if (given(m, 'cert_sha256')) {
    certSha256 = r.string(m.cert_sha256, [...path, 'cert_sha256']).toLowerCase().replace(/:/g, '')
    if (!/^[0-9a-f]{64}$/.test(certSha256)) fail([...path, 'cert_sha256'], 'must be a SHA-256 fingerprint (64 hex digits, colons allowed)')
    if (method === 'jwt') fail([...path, 'cert_sha256'], 'a certificate fingerprint needs method mtls or jwt+mtls')
  }
  return { method, issuer, subject, claims, certSha256 }
}
