import t, { type Test } from 'tap'
import { createHmac } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose'
import { parseConfig } from '../../src/config/load.js'
import type { JwtIssuerConfig } from '../../src/config/types.js'
import { IdentityError } from '../../src/identity/identity.js'
import { TokenVerifier } from '../../src/identity/jwt.js'

const ISS = 'https://idp.example.com'
const ISS2 = 'https://k8s.example.com'
const AUD = 'pgwitness'
const SKEW = 30

interface KeyPair {
  kid: string
  alg: string
  privateKey: CryptoKey
  publicKey: CryptoKey
  publicJwk: JWK
}

async function keyPair(alg: string, kid: string): Promise<KeyPair> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true })
  return { kid, alg, privateKey, publicKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } }
}

const dir = mkdtempSync(path.join(tmpdir(), 'pgw-jwt-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

const es = await keyPair('ES256', 'es-1')
const rs = await keyPair('RS256', 'rs-1')
const k8sKey = await keyPair('ES256', 'k8s-1')
const attacker = await keyPair('ES256', 'es-1') // same kid as the trusted key, different key
const jwksPath = path.join(dir, 'jwks.json')
writeFileSync(jwksPath, JSON.stringify({ keys: [es.publicJwk, rs.publicJwk] }))
const k8sJwksPath = path.join(dir, 'k8s-jwks.json')
writeFileSync(k8sJwksPath, JSON.stringify({ keys: [k8sKey.publicJwk] }))

function issuerConfig(o: Partial<JwtIssuerConfig> = {}): JwtIssuerConfig {
  return {
    issuer: ISS,
    audience: [AUD],
    jwksFile: jwksPath,
    jwksUrl: null,
    algorithms: ['RS256', 'ES256', 'EdDSA'],
    subjectClaim: 'sub',
    recordClaims: ['groups', 'kubernetes.io.namespace'],
    clockSkewSeconds: SKEW,
    ...o,
  }
}

const verifier = new TokenVerifier([
  issuerConfig(),
  issuerConfig({ issuer: ISS2, audience: ['https://kubernetes.default.svc', AUD], jwksFile: k8sJwksPath, algorithms: ['ES256'], subjectClaim: 'kubernetes.io.serviceaccount.name', recordClaims: ['kubernetes.io'] }),
])

const now = () => Math.floor(Date.now() / 1000)

interface MintOptions {
  key?: KeyPair
  header?: Record<string, unknown>
  /** Claims; `undefined` values remove the default claim. */
  claims?: Record<string, unknown>
  crit?: Record<string, boolean>
}

async function mint(o: MintOptions = {}): Promise<string> {
  const key = o.key ?? es
  const n = now()
  const claims: Record<string, unknown> = {
    iss: ISS,
    aud: AUD,
    sub: 'spiffe://example.org/ns/billing/sa/api',
    iat: n,
    exp: n + 300,
    jti: 'jti-1',
    ...o.claims,
  }
  for (const k of Object.keys(claims)) if (claims[k] === undefined) delete claims[k]
  return new SignJWT(claims as JWTPayload)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...o.header } as { alg: string })
    .sign(key.privateKey, o.crit ? { crit: o.crit } : undefined)
}

const b64url = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url')

/** Expect a refusal with this reason; the message must not echo the token. */
async function refused(tt: Test, token: string, reason: string, message?: RegExp, v: TokenVerifier = verifier): Promise<IdentityError | null> {
  try {
    const id = await v.verifyWorkloadToken(token)
    tt.fail(`expected ${reason}, but the token was accepted for ${id.subject}`)
    return null
  } catch (err) {
    if (!(err instanceof IdentityError)) {
      tt.fail(`expected an IdentityError, got ${String(err)}`)
      return null
    }
    tt.equal(err.reason, reason, `reason (message: ${err.message})`)
    tt.equal(err.code, '28P01', 'SQLSTATE invalid_password, as PostgreSQL reports bad credentials')
    tt.equal(err.severity, 'FATAL')
    if (message) tt.match(err.message, message)
    if (token.length > 0) {
      tt.notOk(err.message.includes(token), 'the message does not echo the token')
      const sig = token.split('.')[2]
      if (sig && sig.length > 8) tt.notOk(err.message.includes(sig), 'nor its signature')
      if (err.detail) tt.notOk(err.detail.includes(token), 'nor does the detail')
    }
    return err
  }
}

t.test('a valid token yields the identity', async (t) => {
  const token = await mint({ claims: { groups: ['dev', 'dba'], 'kubernetes.io': { namespace: 'billing', pod: { name: 'p' } }, secret_claim: 'x' } })
  const id = await verifier.verifyWorkloadToken(token)
  t.equal(id.method, 'jwt')
  t.equal(id.subject, 'spiffe://example.org/ns/billing/sa/api')
  t.equal(id.issuer, ISS)
  t.same(id.audience, [AUD], 'a string aud becomes an array')
  t.equal(id.tokenId, 'jti-1')
  t.type(id.expiresAt, 'number')
  t.equal(id.spiffeId, 'spiffe://example.org/ns/billing/sa/api', 'a spiffe:// subject is the SPIFFE id')
  t.equal(id.certSha256, null)
  t.same(id.recordedClaims, { groups: ['dev', 'dba'], 'kubernetes.io.namespace': 'billing' }, 'only the configured claims are recorded')
  t.equal(id.claims.secret_claim, 'x', 'all verified claims are available to policy')
})

t.test('RS256 from the same issuer is accepted; no jti and a non-spiffe subject', async (t) => {
  const token = await mint({ key: rs, claims: { jti: undefined, sub: 'alice@example.com' } })
  const id = await verifier.verifyWorkloadToken(token)
  t.equal(id.subject, 'alice@example.com')
  t.equal(id.tokenId, null)
  t.equal(id.spiffeId, null)
  t.same(id.recordedClaims, {})
})

t.test('a token without kid is accepted when exactly one trusted key fits', async (t) => {
  const token = await mint({ header: { kid: undefined } })
  t.equal((await verifier.verifyWorkloadToken(token)).issuer, ISS)
})

t.test('expiry and not-before, with the configured clock skew', async (t) => {
  const n = now()
  t.ok(await verifier.verifyWorkloadToken(await mint({ claims: { exp: n - SKEW + 5 } })), 'expired less than the skew ago: accepted')
  await refused(t, await mint({ claims: { exp: n - SKEW } }), 'token_expired', /expired/)
  await refused(t, await mint({ claims: { exp: n - 3600, iat: n - 7200 } }), 'token_expired', /expired/)
  t.ok(await verifier.verifyWorkloadToken(await mint({ claims: { nbf: n + SKEW } })), 'nbf exactly skew ahead: accepted')
  t.ok(await verifier.verifyWorkloadToken(await mint({ claims: { nbf: n + SKEW - 5 } })), 'nbf within the skew: accepted')
  await refused(t, await mint({ claims: { nbf: n + SKEW + 5 } }), 'token_not_yet_valid', /not valid yet/)
  await refused(t, await mint({ claims: { nbf: n + 3600 } }), 'token_not_yet_valid')
})

t.test('skew 0: no tolerance at all', async (t) => {
  const strict = new TokenVerifier([issuerConfig({ clockSkewSeconds: 0 })])
  const n = now()
  await refused(t, await mint({ claims: { exp: n } }), 'token_expired', undefined, strict)
  await refused(t, await mint({ claims: { exp: n - 2 } }), 'token_expired', undefined, strict)
  await refused(t, await mint({ claims: { nbf: n + 3 } }), 'token_not_yet_valid', undefined, strict)
  t.ok(await strict.verifyWorkloadToken(await mint({ claims: { exp: n + 5 } })))
})

t.test('the configured clock skew is bounded at 60 s', async (t) => {
  writeFileSync(path.join(dir, 'server.crt'), '-----BEGIN CERTIFICATE-----\nMIIBdummy\n-----END CERTIFICATE-----\n')
  writeFileSync(path.join(dir, 'server.key'), '-----BEGIN PRIVATE KEY-----\nMIIBdummy\n-----END PRIVATE KEY-----\n')
  const yaml = (skew: number) => `
listen: "127.0.0.1:6432"
tls: { cert: server.crt, key: server.key }
identity:
  jwt:
    - issuer: ${ISS}
      audience: ${AUD}
      jwks_file: ${jwksPath}
      clock_skew_seconds: ${skew}
`
  t.throws(() => parseConfig(yaml(61), { baseDir: dir, source: null }), /clock_skew_seconds/)
  t.throws(() => parseConfig(yaml(3600), { baseDir: dir, source: null }), /clock_skew_seconds/)
  t.throws(() => parseConfig(yaml(-1), { baseDir: dir, source: null }), /clock_skew_seconds/)
  const ok = parseConfig(yaml(60), { baseDir: dir, source: null })
  t.equal(ok.identity.jwt[0]?.clockSkewSeconds, 60, '60 s is the maximum')
})

t.test('exp is required; sub (or the configured subject claim) is required', async (t) => {
  await refused(t, await mint({ claims: { exp: undefined } }), 'token_malformed', /exp/)
  await refused(t, await mint({ claims: { exp: 'tomorrow' } }), 'token_malformed')
  await refused(t, await mint({ claims: { sub: undefined } }), 'token_malformed', /sub/)
  await refused(t, await mint({ claims: { sub: '' } }), 'token_malformed', /sub/)
  await refused(t, await mint({ claims: { sub: 42 } }), 'token_malformed')
  await refused(t, await mint({ claims: { sub: ['a'] } }), 'token_malformed')
})

t.test('audience', async (t) => {
  await refused(t, await mint({ claims: { aud: 'someone-else' } }), 'audience_mismatch', /audience/)
  await refused(t, await mint({ claims: { aud: undefined } }), 'audience_mismatch', /audience/)
  await refused(t, await mint({ claims: { aud: [] } }), 'audience_mismatch')
  await refused(t, await mint({ claims: { aud: 'PGWITNESS' } }), 'audience_mismatch', undefined)
  const id = await verifier.verifyWorkloadToken(await mint({ claims: { aud: ['other', AUD] } }))
  t.same(id.audience, ['other', AUD], 'an aud array naming us among others is accepted and recorded whole')
  await refused(t, await mint({ claims: { aud: ['other', 'another'] } }), 'audience_mismatch')
  const multi = new TokenVerifier([issuerConfig({ audience: ['db-proxy', AUD] })])
  t.ok(await multi.verifyWorkloadToken(await mint({ claims: { aud: 'db-proxy' } })), 'any configured audience')
  t.ok(await multi.verifyWorkloadToken(await mint({ claims: { aud: AUD } })))
})

t.test('issuer', async (t) => {
  const e = await refused(t, await mint({ claims: { iss: 'https://evil.example.com' } }), 'issuer_untrusted', /not trusted/)
  t.same(e?.partialIdentity, { issuer: 'https://evil.example.com' }, 'the claimed issuer is kept for the record')
  await refused(t, await mint({ claims: { iss: ISS + '/' } }), 'issuer_untrusted', undefined)
  await refused(t, await mint({ claims: { iss: undefined } }), 'token_malformed', /iss/)
  const long = 'https://' + 'x'.repeat(5000)
  const e2 = await refused(t, await mint({ claims: { iss: long } }), 'issuer_untrusted')
  t.ok(e2 && e2.message.length < 400, 'a huge untrusted issuer is truncated in the message')
})

t.test('alg none is never accepted', async (t) => {
  const claims = { iss: ISS, aud: AUD, sub: 'spiffe://example.org/ns/billing/sa/api', exp: now() + 300 }
  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    const token = `${b64url({ alg, typ: 'JWT' })}.${b64url(claims)}.`
    await refused(t, token, 'algorithm_not_allowed', undefined)
    await refused(t, token + 'c2ln', 'algorithm_not_allowed', undefined)
  }
  const unsignedTwoParts = `${b64url({ alg: 'none' })}.${b64url(claims)}`
  await refused(t, unsignedTwoParts, 'token_malformed')
  const noAlg = `${b64url({ typ: 'JWT' })}.${b64url(claims)}.`
  await refused(t, noAlg, 'algorithm_not_allowed')
})

t.test('HS256 keyed with the issuer public key (algorithm confusion) is refused', async (t) => {
  const claims = { iss: ISS, aud: AUD, sub: 'spiffe://example.org/ns/billing/sa/api', exp: now() + 300 }
  const pem = await exportSPKI(es.publicKey)
  const secrets: Array<[string, Buffer]> = [
    ['SPKI PEM', Buffer.from(pem)],
    ['JWK JSON', Buffer.from(JSON.stringify(es.publicJwk))],
    ['JWKS file', Buffer.from(JSON.stringify({ keys: [es.publicJwk, rs.publicJwk] }))],
  ]
  for (const alg of ['HS256', 'HS384', 'HS512']) {
    for (const [what, secret] of secrets) {
      const input = `${b64url({ alg, kid: es.kid, typ: 'JWT' })}.${b64url(claims)}`
      const hash = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' }[alg]!
      const token = `${input}.${createHmac(hash, secret).update(input).digest('base64url')}`
      await refused(t, token, 'algorithm_not_allowed', undefined)
      t.pass(`${alg} with ${what}`)
    }
  }
  // Defense in depth: even an allow-list that (wrongly) names HS256 never verifies an HMAC with an asymmetric key.
  const misconfigured = new TokenVerifier([issuerConfig({ algorithms: ['HS256', 'ES256'] })])
  const input = `${b64url({ alg: 'HS256', kid: es.kid, typ: 'JWT' })}.${b64url(claims)}`
  const token = `${input}.${createHmac('sha256', Buffer.from(pem)).update(input).digest('base64url')}`
  try {
    await misconfigured.verifyWorkloadToken(token)
    t.fail('HS256 token accepted')
  } catch (err) {
    t.ok(err instanceof IdentityError, `refused: ${(err as Error).message}`)
  }
})

t.test('algorithm outside the issuer allow-list', async (t) => {
  const esOnly = new TokenVerifier([issuerConfig({ algorithms: ['ES256'] })])
  await refused(t, await mint({ key: rs }), 'algorithm_not_allowed', /RS256/, esOnly)
  const ps = await keyPair('PS256', 'rs-1')
  await refused(t, await mint({ key: ps }), 'algorithm_not_allowed', /PS256/)
  const es384 = await keyPair('ES384', 'es-384')
  await refused(t, await mint({ key: es384 }), 'algorithm_not_allowed')
})

t.test('signature problems', async (t) => {
  await refused(t, await mint({ key: attacker }), 'token_signature_invalid', /signature/)
  const good = await mint()
  const [h, p, s] = good.split('.') as [string, string, string]
  const forged = b64url({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), sub: 'spiffe://example.org/ns/admin/sa/root' })
  await refused(t, `${h}.${forged}.${s}`, 'token_signature_invalid')
  await refused(t, `${h}.${p}.`, 'token_signature_invalid')
  const flipped = (s[0] === 'A' ? 'B' : 'A') + s.slice(1)
  await refused(t, `${h}.${p}.${flipped}`, 'token_signature_invalid')
  // Key from another trusted issuer: ISS2's key cannot sign for ISS.
  await refused(t, await mint({ key: k8sKey }), 'token_signature_invalid', /kid|key/)
})

t.test('unknown kid', async (t) => {
  const stranger = await keyPair('ES256', 'nobody-knows-me')
  await refused(t, await mint({ key: stranger }), 'token_signature_invalid', /kid|key/)
  await refused(t, await mint({ header: { kid: 'rs-1' } }), 'token_signature_invalid', undefined)
})

t.test('an embedded jwk / jku / x5u header does not bring its own trust', async (t) => {
  const stranger = await keyPair('ES256', 'es-1')
  await refused(t, await mint({ key: stranger, header: { jwk: stranger.publicJwk } }), 'token_signature_invalid')
  await refused(t, await mint({ key: stranger, header: { kid: 'x', jku: 'https://evil.example.com/jwks.json' } }), 'token_signature_invalid')
})

t.test('unknown critical header', async (t) => {
  await refused(t, await mint({ header: { crit: ['x-must-understand'], 'x-must-understand': true }, crit: { 'x-must-understand': true } }), 'token_malformed', /crit/)
  await refused(t, await mint({ header: { crit: ['exp'], exp: 1 }, crit: { exp: true } }), 'token_malformed')
})

t.test('not a token', async (t) => {
  await refused(t, '', 'token_missing')
  await refused(t, 'my-database-password', 'token_malformed', /not a JWT/)
  await refused(t, 'a.b.c', 'token_malformed')
  await refused(t, 'a.b.c.d.e', 'token_malformed')
  await refused(t, `${b64url('not json')}.${b64url({})}.x`, 'token_malformed')
  await refused(t, `${b64url({ alg: 'ES256' })}.${b64url('[1,2]')}.x`, 'token_malformed')
  await refused(t, ' ' + (await mint()), 'token_malformed', undefined)
  await refused(t, (await mint()) + '\n', 'token_malformed', undefined)
})

t.test('a second issuer with its own keys, audience list and dotted subject claim', async (t) => {
  const n = now()
  const claims = {
    iss: ISS2,
    aud: ['https://kubernetes.default.svc'],
    sub: 'system:serviceaccount:billing:api',
    exp: n + 300,
    'kubernetes.io': { namespace: 'billing', serviceaccount: { name: 'api', uid: 'u' } },
  }
  const token = await mint({ key: k8sKey, claims })
  const id = await verifier.verifyWorkloadToken(token)
  t.equal(id.issuer, ISS2)
  t.equal(id.subject, 'api', 'subject from subject_claim "kubernetes.io.serviceaccount.name"')
  t.same(id.recordedClaims, { 'kubernetes.io': claims['kubernetes.io'] })
  // ISS1's key cannot sign for ISS2.
  await refused(t, await mint({ key: es, claims }), 'token_signature_invalid')
  // ISS2 allows only ES256.
  await refused(t, await mint({ key: rs, claims }), 'algorithm_not_allowed')
  await refused(t, await mint({ key: k8sKey, claims: { ...claims, 'kubernetes.io': { namespace: 'x' } } }), 'token_malformed', /kubernetes\.io\.serviceaccount\.name/)
})
