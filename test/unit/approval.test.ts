/**
 * Approvals: taking one out of the startup options, verifying it (issuer,
 * signature, aud, exp, binding to the subject, claims), the policy it
 * satisfies (rule-level require_approval) and its config (identity.approvals).
 */
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { importJWK, SignJWT } from 'jose'
import { takeApproval } from '../../src/session/approval-option.js'
import { ApprovalError, ApprovalVerifier, approvalCovers, type Approval } from '../../src/identity/approval.js'
import { createDevIssuerKeys, DEV_AUDIENCE } from '../../src/dev/tokens.js'
import { DEV_APPROVALS_ISSUER, mintDevApproval } from '../../src/dev/approvals.js'
import { ConfigError, parseConfig } from '../../src/config/load.js'
import { evaluateAccess } from '../../src/policy/access.js'
import { withApprovalDeadline } from '../../src/session/lifetime.js'
import type { ApprovalIssuerConfig, PolicyRule } from '../../src/config/types.js'
import type { WorkloadIdentity } from '../../src/identity/identity.js'

const dir = mkdtempSync(join(tmpdir(), 'pgw-approval-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const keys = await createDevIssuerKeys(join(dir, 'approvals'))
const other = await createDevIssuerKeys(join(dir, 'other'))
const issuerConfig: ApprovalIssuerConfig = {
  issuer: DEV_APPROVALS_ISSUER, audience: [DEV_AUDIENCE], jwksFile: keys.jwksPath, jwksUrl: null,
  algorithms: ['ES256'], subjectClaim: 'sub', recordClaims: [], clockSkewSeconds: 0,
}
const verifier = new ApprovalVerifier([issuerConfig])
t.teardown(() => verifier.close())
const SUB = 'spiffe://test.local/ns/dba/sa/alice'
const mint = (o: Partial<Parameters<typeof mintDevApproval>[1]> = {}, jwk = keys.privateJwk) =>
  mintDevApproval(jwk, { subject: SUB, ticket: 'CHG-1', approver: 'carol', roles: ['app'], ...o })

/** The reason an approval is refused with (the test fails when it is accepted). */
async function refusal(jwt: string, subject = SUB): Promise<string> {
  try {
    await verifier.verify(jwt, subject)
  } catch (err) {
    if (err instanceof ApprovalError) return `${err.reason}: ${err.message}`
    throw err
  }
  return 'accepted'
}

t.test('takeApproval: the option forms clients send; the rest of options is kept byte for byte', async (t) => {
  const take = (options: string) => takeApproval(new Map([['user', 'app'], ['options', options]]))
  for (const opts of ['-c pgwitness.approval=JWT', '-cpgwitness.approval=JWT', '--pgwitness.approval=JWT', '-c PGWITNESS.Approval=JWT']) {
    const r = take(opts)
    t.equal(r.approval, 'JWT', opts)
    t.notOk(r.parameters.has('options'), `${opts}: nothing else, so no options at all`)
    t.equal(r.parameters.get('user'), 'app')
  }
  const r = take('-c search_path=a\\ b  -c pgwitness.approval=JWT -c work_mem=8MB')
  t.equal(r.approval, 'JWT')
  t.equal(r.parameters.get('options'), '-c search_path=a\\ b   -c work_mem=8MB', 'other options untouched (escapes included)')
  t.same(take('-c work_mem=8MB'), { parameters: new Map([['user', 'app'], ['options', '-c work_mem=8MB']]), approval: null })
  t.same(takeApproval(new Map([['user', 'app']])).approval, null, 'no options: no approval')
  t.throws(() => take('-c pgwitness.approval=A -c pgwitness.approval=B'), { reason: 'approval_invalid', message: /more than once/ })
  t.throws(() => take('-c pgwitness.approval'), { reason: 'approval_invalid', message: /without a value/ })
  t.throws(() => take('--pgwitness.approval='), { reason: 'approval_invalid', message: /without a value/ })
  t.equal(take('-c pgwitness.approvalx=1').approval, null, 'another setting is not the approval (the proxy refuses pgwitness.* later)')
})

t.test('a valid approval: its claims, bound to the subject', async (t) => {
  const a = await verifier.verify(await mint({ databases: ['appdb'], classes: ['ddl', 'ROLE'] }), SUB)
  t.match(a, { subject: SUB, issuer: DEV_APPROVALS_ISSUER, ticket: 'CHG-1', approver: 'carol', roles: ['app'], databases: ['appdb'], classes: ['DDL', 'ROLE'] })
  t.match(a.id, /^[0-9a-f-]{36}$/, 'jti is the approval id')
  t.ok(a.expiresAt > Date.now() / 1000 + 3500, 'exp')
  const any = await verifier.verify(await mint(), SUB)
  t.same([any.databases, any.classes], [['*'], null], 'no classes: any class')
})

t.test('refusals and their reasons', async (t) => {
  t.match(await refusal(await mint(), 'spiffe://test.local/ns/dba/sa/mallory'), /^approval_not_bound: the approval \(.+\) was granted to another subject/)
  t.match(await refusal(await mint({ ttlSeconds: -60 })), /^approval_expired/)
  t.match(await refusal(await mint({ issuer: 'https://elsewhere.example' })), /^approval_invalid: .*not trusted/)
  t.match(await refusal(await mint({}, other.privateJwk)), /^approval_invalid: .*(signature|key)/, 'signed by a key the issuer does not publish')
  t.match(await refusal(await mint({ audience: 'someone-else' })), /^approval_invalid: .*audience/)
  t.match(await refusal('not.a.jwt!'), /^approval_invalid/)
  t.match(await refusal(await mint({ ticket: '' })), /^approval_invalid: the approval has no "ticket" claim/)
  t.match(await refusal(await mint({ roles: [] })), /^approval_invalid: the approval claim "roles"/)
  const now = Math.floor(Date.now() / 1000)
  const unsigned = `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${Buffer.from(JSON.stringify({
    iss: DEV_APPROVALS_ISSUER, aud: DEV_AUDIENCE, sub: SUB, exp: now + 60, jti: 'x', ticket: 'T', approver: 'A', roles: ['app'], databases: ['*'],
  })).toString('base64url')}.`
  t.match(await refusal(unsigned), /^approval_invalid: .*none/, 'alg none')
  const hmac = await new SignJWT({ ticket: 'T', approver: 'A', roles: ['app'], databases: ['*'] })
    .setProtectedHeader({ alg: 'HS256' }).setIssuer(DEV_APPROVALS_ISSUER).setAudience(DEV_AUDIENCE).setSubject(SUB).setJti('x').setExpirationTime(now + 60)
    .sign(new TextEncoder().encode('k'.repeat(32)))
  t.match(await refusal(hmac), /^approval_invalid: .*algorithm/, 'a symmetric algorithm')
  const noJti = await new SignJWT({ ticket: 'T', approver: 'A', roles: ['app'], databases: ['*'] })
    .setProtectedHeader({ alg: 'ES256', kid: keys.privateJwk.kid! }).setIssuer(DEV_APPROVALS_ISSUER).setAudience(DEV_AUDIENCE).setSubject(SUB).setExpirationTime(now + 60)
    .sign(await importJWK(keys.privateJwk, 'ES256'))
  t.match(await refusal(noJti), /^approval_invalid: the approval has no "jti" claim/)
})

const approval = (o: Partial<Approval> = {}): Approval => ({
  id: 'a1', subject: SUB, issuer: DEV_APPROVALS_ISSUER, ticket: 'T', approver: 'A', roles: ['app'], databases: ['appdb'], classes: null, expiresAt: 0, ...o,
})

t.test('approvalCovers: role and database, "*" for any', async (t) => {
  t.ok(approvalCovers(approval(), 'app', 'appdb'))
  t.notOk(approvalCovers(approval(), 'postgres', 'appdb'))
  t.notOk(approvalCovers(approval(), 'app', 'postgres'))
  t.ok(approvalCovers(approval({ roles: ['*'], databases: ['*'] }), 'postgres', 'postgres'))
})

t.test('policy: require_approval grants its roles only with an approval covering them', async (t) => {
  const rule = (name: string, requireApproval: boolean, roles: string[]): PolicyRule => ({
    name, match: { method: null, issuer: null, subject: null, claims: {}, certSha256: null }, roles, databases: ['*'], requireTokenBinding: false, requireApproval, statements: null,
  })
  const id = { subject: SUB, method: 'jwt', claims: {} } as unknown as WorkloadIdentity
  const rules = [rule('elevated', true, ['app']), rule('read-only', false, ['reporter'])]
  t.match(evaluateAccess(rules, id, { role: 'app', database: 'appdb' }), { allowed: false, reason: 'approval_missing' })
  t.match(evaluateAccess(rules, id, { role: 'app', database: 'appdb' }, false, approval()), { allowed: true, rule: { name: 'elevated' } })
  t.match(evaluateAccess(rules, id, { role: 'app', database: 'otherdb' }, false, approval()), { allowed: false, reason: 'approval_out_of_scope', detail: /role "app" on database "otherdb"/ })
  t.match(evaluateAccess(rules, id, { role: 'reporter', database: 'appdb' }), { allowed: true, rule: { name: 'read-only' } }, 'rules without it are unchanged')
  t.match(evaluateAccess(rules, id, { role: 'reporter', database: 'appdb' }, false, approval()), { allowed: false, reason: 'approval_out_of_scope' },
    'an approval presented must cover the session it comes with')
})

t.test('the session deadline is the earlier of the token\'s and the approval\'s', async (t) => {
  const token = { at: 2_000_000, reason: 'token_expired' as const, message: 'token' }
  t.equal(withApprovalDeadline(token, null), token)
  t.equal(withApprovalDeadline(token, 3000), token, 'the token expires first')
  t.match(withApprovalDeadline(token, 1000), { at: 1_000_000, reason: 'approval_expired', message: /approval expired/ })
  t.match(withApprovalDeadline(null, 1000), { at: 1_000_000, reason: 'approval_expired' })
})

t.test('config: identity.approvals and require_approval', async (t) => {
  const cert = join(dir, 'server.crt')
  const key = join(dir, 'server.key')
  writeFileSync(cert, '-----BEGIN CERTIFICATE-----\nMIIBdummy\n-----END CERTIFICATE-----\n')
  writeFileSync(key, '-----BEGIN PRIVATE KEY-----\nMIIBdummy\n-----END PRIVATE KEY-----\n')
  const yaml = (identityExtra: string, policy = '') => `
listen: "127.0.0.1:6432"
tls: { cert: ${cert}, key: ${key} }
identity:
  jwt:
    - { issuer: https://idp.example.com, audience: pgwitness, jwks_file: ${other.jwksPath} }
${identityExtra}
${policy}`
  const problem = (y: string): string => {
    try {
      parseConfig(y, { baseDir: dir, source: null })
    } catch (err) {
      if (err instanceof ConfigError) return err.message
      throw err
    }
    return 'accepted'
  }
  const approvals = `  approvals:\n    - { issuer: ${DEV_APPROVALS_ISSUER}, audience: pgwitness, jwks_file: ${keys.jwksPath}, algorithms: [ES256] }`
  const policy = 'policy:\n  - { name: dba, match: {}, roles: [app], databases: ["*"], require_approval: true }'
  const c = parseConfig(yaml(approvals, policy), { baseDir: dir, source: null })
  t.match(c.identity.approvals, [{ issuer: DEV_APPROVALS_ISSUER, audience: ['pgwitness'], algorithms: ['ES256'], subjectClaim: 'sub', recordClaims: [] }])
  t.equal(c.policy[0]!.requireApproval, true)
  t.equal(problem(yaml(`  approvals:\n    - { issuer: https://idp.example.com, audience: pgwitness, jwks_file: ${keys.jwksPath} }`)),
    'config: identity.approvals[0].issuer: is also a token issuer (identity.jwt[0]); approvals must come from an issuer of their own')
  t.equal(problem(yaml('', policy)), 'config: policy[0].require_approval: needs a trusted approvals issuer (identity.approvals)')
  t.match(problem(yaml(`  approvals:\n    - { issuer: x, audience: pgwitness, jwks_file: ${keys.jwksPath}, algorithms: [none] }`)),
    'config: identity.approvals[0].algorithms[0]: none is never accepted')
  t.match(problem(yaml(`  approvals:\n    - { issuer: x, audience: pgwitness, jwks_file: ${keys.jwksPath}, subject_claim: email }`)),
    /^config: identity\.approvals\[0\]\.subject_claim: unknown key/)
  t.match(problem(yaml('  approvals:\n    - { issuer: x, audience: pgwitness }')), /^config: identity\.approvals\[0\]: one of jwks_file or jwks_url is required/)
})
