import t from 'tap'
import type { PolicyMatch, PolicyRule } from '../../src/config/types.js'
import type { WorkloadIdentity } from '../../src/identity/identity.js'
import { evaluateAccess, identityMatchesRule } from '../../src/policy/access.js'
import { globMatches } from '../../src/policy/glob.js'

const IDP = 'https://idp.example.com'
const K8S = 'https://kubernetes.default.svc'

function identity(o: Partial<WorkloadIdentity> = {}): WorkloadIdentity {
  return {
    method: 'jwt',
    subject: 'spiffe://example.org/ns/billing/sa/api',
    issuer: IDP,
    audience: ['pgwitness'],
    tokenId: null,
    expiresAt: null,
    spiffeId: null,
    certSha256: null,
    recordedClaims: {},
    claims: {},
    ...o,
  }
}

function rule(name: string, match: Partial<PolicyMatch>, roles: string[], databases: string[]): PolicyRule {
  return { name, match: { method: null, issuer: null, subject: null, claims: {}, certSha256: null, ...match }, roles, databases, requireTokenBinding: false, requireApproval: false, statements: null }
}

t.test('glob: * spans any run of characters including "/", ? exactly one', async (t) => {
  t.ok(globMatches('spiffe://example.org/ns/billing/*', 'spiffe://example.org/ns/billing/sa/api'))
  t.ok(globMatches('spiffe://example.org/ns/billing/*', 'spiffe://example.org/ns/billing/'), '* matches the empty run')
  t.notOk(globMatches('spiffe://example.org/ns/billing/*', 'spiffe://example.org/ns/billing'))
  t.ok(globMatches('spiffe://example.org/*/sa/api', 'spiffe://example.org/ns/billing/sa/api'), '* crosses "/" in the middle')
  t.ok(globMatches('*', ''))
  t.ok(globMatches('*', 'anything/at/all'))
  t.ok(globMatches('a?c', 'abc'))
  t.notOk(globMatches('a?c', 'ac'), '? needs one character')
  t.notOk(globMatches('a?c', 'abbc'))
  t.ok(globMatches('a?c', 'a/c'), '? matches "/" too')
  t.ok(globMatches('user-??', 'user-42'))
  t.ok(globMatches('a**b', 'ab'))
  t.ok(globMatches('*@example.com', 'alice@example.com'))
  t.ok(globMatches('ns/*/sa/*', 'ns/a/sa/b'))
  t.notOk(globMatches('ns/*/sa/*', 'ns/a/sb/b'))
})

t.test('glob: anchored at both ends and case-sensitive', async (t) => {
  t.notOk(globMatches('spiffe://example.org/ns/billing/*', 'xspiffe://example.org/ns/billing/a'), 'anchored at the start')
  t.notOk(globMatches('alice', 'alice2'), 'anchored at the end')
  t.notOk(globMatches('alice', 'malice'))
  t.notOk(globMatches('Alice', 'alice'))
  t.ok(globMatches('', ''))
  t.notOk(globMatches('', 'a'), 'the empty glob matches only the empty subject')
})

t.test('glob: regular-expression characters in a glob are literal', async (t) => {
  t.ok(globMatches('a.b', 'a.b'))
  t.notOk(globMatches('a.b', 'axb'), '. is literal')
  t.notOk(globMatches('a+', 'aa'), '+ is literal')
  t.ok(globMatches('a+', 'a+'))
  t.notOk(globMatches('(a|b)', 'a'), '( | ) are literal')
  t.ok(globMatches('(a|b)', '(a|b)'))
  t.notOk(globMatches('[ab]', 'a'), '[ ] are literal')
  t.ok(globMatches('[ab]', '[ab]'))
  t.notOk(globMatches('^a$', 'a'), '^ $ are literal')
  t.ok(globMatches('^a$', '^a$'))
  t.notOk(globMatches('a{2}', 'aa'), '{ } are literal')
  t.ok(globMatches('a\\d', 'a\\d'), 'a backslash is literal')
  t.notOk(globMatches('a\\d', 'a1'))
  t.ok(globMatches('a\\*', 'a\\xyz'), 'a backslash does not escape *: "a\\*" is "a\\" then anything')
  t.notOk(globMatches('a\\*', 'a*'))
  t.ok(globMatches('user.*', 'user.name'))
  t.notOk(globMatches('user.*', 'username'), '. before * is still literal')
})

t.test('glob: * and ? match across newlines (no newline tricks)', async (t) => {
  t.ok(globMatches('a*b', 'a\nb'))
  t.ok(globMatches('a?b', 'a\nb'))
  t.notOk(globMatches('spiffe://example.org/ns/billing/*', 'evil\nspiffe://example.org/ns/billing/x'), 'no multi-line anchoring')
  t.notOk(globMatches('alice', 'alice\n'), 'a trailing newline does not satisfy the end anchor')
})

t.test('identityMatchesRule: each criterion', async (t) => {
  const id = identity({ claims: { groups: ['dev', 'dba'], 'kubernetes.io': { namespace: 'billing' }, level: 3, admin: true } })
  t.ok(identityMatchesRule(rule('any', {}, ['*'], ['*']), id), 'an empty match matches every identity')
  t.ok(identityMatchesRule(rule('m', { method: 'jwt' }, [], []), id))
  t.notOk(identityMatchesRule(rule('m', { method: 'mtls' }, [], []), id))
  t.notOk(identityMatchesRule(rule('m', { method: 'jwt+mtls' }, [], []), id), 'jwt alone does not satisfy jwt+mtls')
  t.ok(identityMatchesRule(rule('m', { method: 'jwt+mtls' }, [], []), identity({ method: 'jwt+mtls' })))
  t.ok(identityMatchesRule(rule('i', { issuer: IDP }, [], []), id))
  t.notOk(identityMatchesRule(rule('i', { issuer: IDP + '/' }, [], []), id), 'issuer is exact, not a prefix')
  t.notOk(identityMatchesRule(rule('i', { issuer: 'https://idp.example.*' }, [], []), id), 'issuer is not a glob')
  t.ok(identityMatchesRule(rule('s', { subject: 'spiffe://example.org/ns/billing/*' }, [], []), id))
  t.notOk(identityMatchesRule(rule('s', { subject: 'spiffe://example.org/ns/payments/*' }, [], []), id))
  t.ok(identityMatchesRule(rule('c', { claims: { groups: 'dba' } }, [], []), id), 'array claim contains')
  t.notOk(identityMatchesRule(rule('c', { claims: { groups: 'ops' } }, [], []), id))
  t.ok(identityMatchesRule(rule('c', { claims: { 'kubernetes.io.namespace': 'billing' } }, [], []), id), 'dotted claim path')
  t.notOk(identityMatchesRule(rule('c', { claims: { 'kubernetes.io.namespace': 'other' } }, [], []), id))
  t.ok(identityMatchesRule(rule('c', { claims: { level: 3, admin: true } }, [], []), id), 'number and boolean claims')
  t.notOk(identityMatchesRule(rule('c', { claims: { level: '3' } }, [], []), id), 'no coercion')
  t.notOk(identityMatchesRule(rule('c', { claims: { groups: 'dba', absent: 'x' } }, [], []), id), 'all claims must match')
  t.notOk(
    identityMatchesRule(rule('all', { method: 'jwt', issuer: IDP, subject: 'spiffe://example.org/ns/billing/*', claims: { groups: 'nope' } }, [], []), id),
    'every criterion is required (AND)',
  )
  t.notOk(
    identityMatchesRule(rule('c', { claims: { groups: 'dba' } }, [], []), identity({ recordedClaims: { groups: ['dba'] }, claims: {} })),
    'matching uses the verified claims, not the recorded selection',
  )
})

t.test('evaluateAccess: first rule that matches and grants wins', async (t) => {
  const rules = [
    rule('billing-app', { issuer: IDP, subject: 'spiffe://example.org/ns/billing/*' }, ['app_rw'], ['billing']),
    rule('billing-ro', { issuer: IDP, subject: 'spiffe://example.org/ns/billing/*' }, ['app_rw', 'app_ro'], ['billing', 'reports']),
    rule('dba', { claims: { groups: 'dba' } }, ['*'], ['*']),
  ]
  const id = identity()
  const a = evaluateAccess(rules, id, { role: 'app_rw', database: 'billing' })
  t.ok(a.allowed)
  if (a.allowed) t.equal(a.rule.name, 'billing-app', 'the first admitting rule')
  const b = evaluateAccess(rules, id, { role: 'app_ro', database: 'reports' })
  t.ok(b.allowed)
  if (b.allowed) t.equal(b.rule.name, 'billing-ro', 'a later rule admits what an earlier one does not')
  const c = evaluateAccess(rules, id, { role: 'app_rw', database: 'reports' })
  t.ok(c.allowed && c.rule.name === 'billing-ro', 'an earlier rule granting the role but not the database does not stop the search')
  const dba = identity({ subject: 'alice@example.com', claims: { groups: ['staff', 'dba'] } })
  const d = evaluateAccess(rules, dba, { role: 'postgres', database: 'anything' })
  t.ok(d.allowed && d.rule.name === 'dba', '"*" grants any role and database')
  const both = identity({ claims: { groups: 'dba' } })
  const e = evaluateAccess(rules, both, { role: 'app_rw', database: 'billing' })
  t.ok(e.allowed && e.rule.name === 'billing-app', 'rule order, not specificity, decides which rule is recorded')
})

t.test('evaluateAccess: refusal reasons and their precedence', async (t) => {
  const rules = [
    rule('billing-app', { subject: 'spiffe://example.org/ns/billing/*' }, ['app_rw'], ['billing']),
    rule('billing-ro', { subject: 'spiffe://example.org/ns/billing/*' }, ['app_ro'], ['reports']),
  ]
  const id = identity()

  const none = evaluateAccess(rules, identity({ subject: 'spiffe://example.org/ns/other/sa/x' }), { role: 'app_rw', database: 'billing' })
  t.same(none.allowed ? null : none.reason, 'policy_no_match')

  const role = evaluateAccess(rules, id, { role: 'postgres', database: 'billing' })
  t.same(role.allowed ? null : role.reason, 'role_not_allowed', 'identity matched, no rule grants the role')
  if (!role.allowed) t.match(role.detail, /postgres/)

  const db = evaluateAccess(rules, id, { role: 'app_rw', database: 'reports' })
  t.same(db.allowed ? null : db.reason, 'database_not_allowed', 'a rule grants the role but not the database')
  if (!db.allowed) t.match(db.detail, /reports/)

  // database_not_allowed (from any rule) beats role_not_allowed (from another), whatever the order.
  const mixed1 = [
    rule('r1', { subject: '*' }, ['other'], ['*']),
    rule('r2', { subject: '*' }, ['app_rw'], ['billing']),
  ]
  const m1 = evaluateAccess(mixed1, id, { role: 'app_rw', database: 'secret' })
  t.same(m1.allowed ? null : m1.reason, 'database_not_allowed', 'role granted by a later rule')
  const m2 = evaluateAccess([...mixed1].reverse(), id, { role: 'app_rw', database: 'secret' })
  t.same(m2.allowed ? null : m2.reason, 'database_not_allowed', 'role granted by an earlier rule')

  // A rule that does not match the identity never contributes a more specific reason.
  const other = [rule('other', { subject: 'spiffe://example.org/ns/other/*' }, ['app_rw'], ['*'])]
  const o = evaluateAccess(other, id, { role: 'app_rw', database: 'billing' })
  t.same(o.allowed ? null : o.reason, 'policy_no_match')

  const empty = evaluateAccess([], id, { role: 'app_rw', database: 'billing' })
  t.same(empty.allowed ? null : empty.reason, 'policy_no_match', 'no rules at all: deny')
})

t.test('evaluateAccess: role and database grants are exact names (no globbing, case-sensitive)', async (t) => {
  const rules = [rule('r', {}, ['app_rw'], ['billing'])]
  const id = identity()
  for (const [role, database, reason] of [
    ['app_RW', 'billing', 'role_not_allowed'],
    ['app_rw ', 'billing', 'role_not_allowed'],
    ['app', 'billing', 'role_not_allowed'],
    ['app_rw', 'Billing', 'database_not_allowed'],
    ['app_rw', 'billing2', 'database_not_allowed'],
    ['app_rw', '', 'database_not_allowed'],
  ] as const) {
    const d = evaluateAccess(rules, id, { role, database })
    t.same(d.allowed ? null : d.reason, reason, `${JSON.stringify(role)} / ${JSON.stringify(database)}`)
  }
  const globby = [rule('g', {}, ['app_*'], ['bill*'])]
  const g = evaluateAccess(globby, id, { role: 'app_rw', database: 'billing' })
  t.same(g.allowed ? null : g.reason, 'role_not_allowed', '"app_*" in roles is a literal name, only a lone "*" is a wildcard')
  const star = evaluateAccess(globby, id, { role: 'app_*', database: 'bill*' })
  t.ok(star.allowed, 'a literal match of the same string')
})

t.test('evaluateAccess: method-specific rules', async (t) => {
  const rules = [
    rule('cert', { method: 'mtls', subject: 'spiffe://example.org/ns/billing/*' }, ['app_rw'], ['billing']),
    rule('dba', { method: 'jwt+mtls', claims: { groups: 'dba' } }, ['*'], ['*']),
  ]
  const jwt = evaluateAccess(rules, identity(), { role: 'app_rw', database: 'billing' })
  t.same(jwt.allowed ? null : jwt.reason, 'policy_no_match', 'a JWT identity does not match an mtls rule')
  const mtls = evaluateAccess(rules, identity({ method: 'mtls' }), { role: 'app_rw', database: 'billing' })
  t.ok(mtls.allowed && mtls.rule.name === 'cert')
  const dbaJwtOnly = evaluateAccess(rules, identity({ subject: 'alice', claims: { groups: ['dba'] } }), { role: 'postgres', database: 'postgres' })
  t.same(dbaJwtOnly.allowed ? null : dbaJwtOnly.reason, 'policy_no_match', 'dba requires jwt+mtls')
  const dba = evaluateAccess(rules, identity({ method: 'jwt+mtls', subject: 'alice', claims: { groups: ['dba'] } }), { role: 'postgres', database: 'postgres' })
  t.ok(dba.allowed && dba.rule.name === 'dba')
})

t.test('issuer separation: the same subject from another issuer is not admitted', async (t) => {
  const rules = [rule('billing', { issuer: IDP, subject: 'system:serviceaccount:billing:*' }, ['app_rw'], ['billing'])]
  const ok = evaluateAccess(rules, identity({ subject: 'system:serviceaccount:billing:api' }), { role: 'app_rw', database: 'billing' })
  t.ok(ok.allowed)
  const k8s = evaluateAccess(rules, identity({ issuer: K8S, subject: 'system:serviceaccount:billing:api' }), { role: 'app_rw', database: 'billing' })
  t.same(k8s.allowed ? null : k8s.reason, 'policy_no_match')
})
