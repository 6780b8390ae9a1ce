/**
 * Issue 8 item 4: the JWT attack suite against TokenVerifier. Every hostile
 * token is refused with its reason code (audit-record-v1: token_malformed,
 * token_signature_invalid, token_expired, token_not_yet_valid,
 * issuer_untrusted, audience_mismatch, algorithm_not_allowed), never with an
 * unexpected exception, and no refusal message echoes the token.
 *
 * Already covered elsewhere and not repeated here (see docs/security.md):
 * alg none in all spellings, HS256/384/512 keyed with the issuer's public key
 * (PEM, JWK, JWKS file), algorithms outside the allow-list, forged payloads,
 * unknown critical headers, audience arrays matching one or none of several
 * configured audiences, skew bounds (test/unit/jwt.test.ts, and end to end in
 * test/e2e/auth.test.ts); jku/x5u of a jwks_url issuer (test/unit/jwks.test.ts).
 *
 * Here: kid injection, jku/x5u/jwk/x5c never fetched or trusted (a local
 * HTTP server counts requests), crit edge cases, oversized tokens, exact
 * exp/nbf/iat boundaries on a fixed clock, out-of-range dates, malformed
 * audiences, typ/cty decisions, encrypted (JWE) and nested tokens, and a
 * token of issuer A replayed against issuer B's configuration.
 */
import { createPrivateKey, KeyObject, sign as cryptoSign } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { CompactEncrypt, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose'
import t, { type Test } from 'tap'
import type { AuthFailureReason } from '../../src/evidence/types.js'
import type { JwtIssuerConfig } from '../../src/config/types.js'
import { createDevPki } from '../../src/dev/pki.js'
import { IdentityError } from '../../src/identity/identity.js'
import { TokenVerifier, type TokenVerifierOptions } from '../../src/identity/jwt.js'
import { signingKey, startJwksServer } from '../helpers/jwks-server.js'

const ISS = 'https://idp-a.example.com'
const ISS_B = 'https://idp-b.example.com'
const AUD = 'pgwitness'
const SKEW = 30
/** The fixed clock: 2030-03-17T17:46:40Z, plus 999 ms so that second boundaries are exercised. */
const NOW = 1_900_000_000
const clock = () => NOW * 1000 + 999

const dir = mkdtempSync(path.join(tmpdir(), 'pgw-jwt-attacks-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

interface Key {
  kid: string
  alg: 'ES256' | 'RS256'
  privateKey: CryptoKey | KeyObject
  publicJwk: JWK
}

async function key(alg: Key['alg'], kid: string): Promise<Key> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true })
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } }
}

const es = await key('ES256', 'es-1')
const rs = await key('RS256', 'rs-1')
const attacker = await key('ES256', 'attacker-1')
const issuerB = await key('ES256', 'b-1')
const jwksA = path.join(dir, 'a.json')
writeFileSync(jwksA, JSON.stringify({ keys: [es.publicJwk, rs.publicJwk] }))
const jwksB = path.join(dir, 'b.json')
writeFileSync(jwksB, JSON.stringify({ keys: [issuerB.publicJwk] }))

function issuer(o: Partial<JwtIssuerConfig> = {}): JwtIssuerConfig {
  return {
    issuer: ISS, audience: [AUD], jwksFile: jwksA, jwksUrl: null, algorithms: ['ES256', 'RS256'],
    subjectClaim: 'sub', recordClaims: [], clockSkewSeconds: SKEW, ...o,
  }
}

function verifierFor(configs: JwtIssuerConfig[], o: TokenVerifierOptions = {}): TokenVerifier {
  const v = new TokenVerifier(configs, { now: clock, ...o })
  t.teardown(() => v.close())
  return v
}

const verifier = verifierFor([issuer()])

const b64 = (v: string | Buffer) => Buffer.from(v).toString('base64url')

/**
 * Sign exactly these header and payload bytes (JSON text, so that hostile
 * shapes jose's own signer refuses to produce can be made). ES256 signatures
 * are raw r||s (JWS), RS256 PKCS#1 v1.5.
 */
function signRaw(k: Key, header: string, payload: string): string {
  const input = `${b64(header)}.${b64(payload)}`
  const privateKey = k.privateKey instanceof KeyObject ? k.privateKey : KeyObject.from(k.privateKey as Parameters<typeof KeyObject.from>[0])
  const sig = cryptoSign('sha256', Buffer.from(input), k.alg === 'ES256' ? { key: privateKey, dsaEncoding: 'ieee-p1363' } : privateKey)
  return `${input}.${b64(sig)}`
}

/** A token signed by `k` (default: the trusted ES256 key); header and claims add to / override the defaults (undefined removes). */
function token(o: { key?: Key; header?: Record<string, unknown>; claims?: Record<string, unknown>; rawPayload?: string } = {}): string {
  const k = o.key ?? es
  const header: Record<string, unknown> = { alg: k.alg, kid: k.kid, typ: 'JWT', ...o.header }
  const claims: Record<string, unknown> = { iss: ISS, aud: AUD, sub: 'spiffe://example.org/ns/billing/sa/api', iat: NOW, exp: NOW + 300, ...o.claims }
  for (const m of [header, claims]) for (const k2 of Object.keys(m)) if (m[k2] === undefined) delete m[k2]
  return signRaw(k, JSON.stringify(header), o.rawPayload ?? JSON.stringify(claims))
}

/** 'accepted' or the reason code; anything but an IdentityError fails the test. The message never echoes the token. */
async function outcome(tok: string, v: TokenVerifier = verifier): Promise<AuthFailureReason | 'accepted'> {
  try {
    await v.verifyWorkloadToken(tok)
    return 'accepted'
  } catch (err) {
    if (!(err instanceof IdentityError)) throw new Error(`not an IdentityError: ${String(err)}`)
    if (tok.length > 20 && err.message.includes(tok)) throw new Error('the refusal echoes the token')
    const sig = tok.split('.')[2]
    if (sig && sig.length > 16 && err.message.includes(sig)) throw new Error('the refusal echoes the signature')
    if (err.message.length > 400) throw new Error(`a ${err.message.length}-character refusal message`)
    if (/[\x00-\x1f]/.test(err.message)) throw new Error('control characters in the refusal message')
    return err.reason
  }
}

async function table(tt: Test, rows: Array<[string, string | Promise<string>, AuthFailureReason | 'accepted', TokenVerifier?]>): Promise<void> {
  for (const [what, tok, want, v] of rows) tt.equal(await outcome(await tok, v), want, what)
}

t.test('sanity: the baseline token is accepted', async (t) => {
  t.equal(await outcome(token()), 'accepted')
  t.equal(await outcome(token({ key: rs })), 'accepted')
})

t.test('kid with path traversal, SQL injection and other hostile text matches no key', async (t) => {
  const hostile = [
    '../../../../../../etc/passwd', '..\\..\\..\\windows\\win.ini', '/dev/zero', 'file:///etc/shadow',
    "' OR '1'='1", "es-1' --", 'es-1"; DROP TABLE keys; --', 'es-1\u0000', 'es-1\n', ' es-1', 'ES-1',
    '${jndi:ldap://127.0.0.1/a}', '<script>alert(1)</script>', '%2e%2e%2f%2e%2e%2fetc%2fpasswd', 'x'.repeat(4000),
  ]
  for (const kid of hostile) {
    t.equal(await outcome(token({ key: attacker, header: { kid } })), 'token_signature_invalid', `attacker key, kid ${JSON.stringify(kid.slice(0, 40))}`)
    t.equal(await outcome(token({ header: { kid } })), 'token_signature_invalid', `trusted key under a kid that is not its own: ${JSON.stringify(kid.slice(0, 40))}`)
  }
  for (const kid of [42, null, true, ['es-1'], { kid: 'es-1' }]) {
    t.equal(await outcome(token({ key: attacker, header: { kid } })), 'token_signature_invalid', `a ${JSON.stringify(kid)} kid`)
  }
})

t.test('kid injection against a jwks_url issuer: only the configured URL is fetched, rate-limited', async (t) => {
  const pki = await createDevPki(path.join(dir, 'pki'))
  const signer = await signingKey('url-1')
  const server = await startJwksServer(pki, [signer.publicJwk])
  t.teardown(() => server.close())
  const v = verifierFor([issuer({
    jwksFile: null, jwksUrl: server.url, algorithms: ['ES256'],
    jwksFetch: { ca: readFileSync(pki.caCert, 'utf8'), caPath: pki.caCert, tokenFile: null, timeoutMs: 2000, refreshMs: 600_000, minRefreshIntervalMs: 600_000, keyGraceMs: 60_000 },
  })], { now: Date.now })
  const n = Math.floor(Date.now() / 1000)
  const urlKey: Key = { kid: 'url-1', alg: 'ES256', privateKey: signer.privateKey, publicJwk: signer.publicJwk }
  const fresh = (kid: string) => token({ key: urlKey, header: { kid }, claims: { iat: n, exp: n + 300 } })
  t.equal(await outcome(fresh('url-1'), v), 'accepted', 'the published key works')
  const hitsBefore = server.hits
  for (const kid of ['../../admin/keys', "url-1' OR 1=1 --", 'https://attacker.example/jwks.json', '\u0000\u001b[31mred']) {
    let message = ''
    try {
      await v.verifyWorkloadToken(fresh(kid))
    } catch (err) {
      message = (err as Error).message
      t.equal((err as IdentityError).reason, 'token_signature_invalid', `kid ${JSON.stringify(kid)}`)
    }
    t.notMatch(message, /[\x00-\x1f]/, 'no control characters reach the message')
  }
  t.ok(server.hits - hitsBefore <= 1, `unknown kids cause at most one (rate-limited) refresh of the configured URL (${server.hits - hitsBefore})`)
})

t.test('jku, x5u, jwk and x5c headers are ignored: nothing is fetched, embedded keys bring no trust', async (t) => {
  const requests: string[] = []
  const server = http.createServer((req, res) => {
    requests.push(req.url ?? '')
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [attacker.publicJwk] }))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => server.close(() => r())))
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const pki = await createDevPki(path.join(dir, 'pki-x5c'))
  // x5c: the attacker's own certificate chain (a real certificate for the signing key).
  const der = (pem: string) => Buffer.from(readFileSync(pem, 'utf8').replace(/-----[^-]+-----|\s/g, ''), 'base64').toString('base64')
  const clientKey: Key = { kid: 'client', alg: 'ES256', privateKey: createPrivateKey(readFileSync(pki.clientKey)), publicJwk: {} }
  await table(t, [
    ['jku naming the attacker key set', token({ key: attacker, header: { jku: `${base}/jwks.json` } }), 'token_signature_invalid'],
    ['jku with the trusted kid', token({ key: attacker, header: { kid: 'es-1', jku: `${base}/jwks.json` } }), 'token_signature_invalid'],
    ['x5u', token({ key: attacker, header: { x5u: `${base}/cert.pem` } }), 'token_signature_invalid'],
    ['jwk embedding the attacker key', token({ key: attacker, header: { jwk: attacker.publicJwk } }), 'token_signature_invalid'],
    ['jwk with the trusted kid', token({ key: attacker, header: { kid: 'es-1', jwk: { ...attacker.publicJwk, kid: 'es-1' } } }), 'token_signature_invalid'],
    ['x5c with a real certificate chain for the signing key', token({ key: clientKey, header: { kid: undefined, x5c: [der(pki.clientCert), der(pki.caCert)] } }), 'token_signature_invalid'],
    ['crit naming jku (must-understand does not make it trusted)', token({ key: attacker, header: { jku: `${base}/jwks.json`, crit: ['jku'] } }), 'token_malformed'],
    // Ignored, not refused: a validly signed token that also carries them verifies against the configured keys only.
    ['a trusted token carrying jku/x5u', token({ header: { jku: `${base}/jwks.json`, x5u: `${base}/cert.pem` } }), 'accepted'],
  ])
  t.same(requests, [], 'no request ever reached the URLs named in tokens')
})

t.test('crit edge cases', async (t) => {
  await table(t, [
    ['crit empty', token({ header: { crit: [] } }), 'token_malformed'],
    ['crit not an array', token({ header: { crit: 'exp' } }), 'token_malformed'],
    ['crit naming an absent header', token({ header: { crit: ['x-policy'] } }), 'token_malformed'],
    ['crit with an empty name', token({ header: { crit: [''] } }), 'token_malformed'],
    ['unencoded payload (RFC 7797 b64: false)', token({ header: { crit: ['b64'], b64: false } }), 'token_malformed'],
  ])
})

t.test('oversized tokens are refused before decoding; the limit is limits.max_token_bytes', async (t) => {
  const big = token({ claims: { groups: Array.from({ length: 2000 }, (_, i) => `group-${i}`) } })
  t.ok(big.length > 16384, `a ${big.length}-byte token`)
  t.equal(await outcome(big), 'token_malformed', 'over the default 16384 bytes')
  const exact = verifierFor([issuer()], { maxTokenBytes: big.length })
  t.equal(await outcome(big, exact), 'accepted', 'exactly at the limit: verified')
  const oneLess = verifierFor([issuer()], { maxTokenBytes: big.length - 1 })
  t.equal(await outcome(big, oneLess), 'token_malformed', 'one byte over: refused')
  const err = (await oneLess.verifyWorkloadToken(big).catch((e: IdentityError) => e)) as IdentityError
  t.match(err.message, new RegExp(`larger than ${big.length - 1} bytes`))
  // Not even base64-decoded: a megabyte of garbage is refused as quickly as a short one.
  t.equal(await outcome('A'.repeat(1 << 20)), 'token_malformed')
})

t.test('exp, nbf and iat exactly at the skew boundary (fixed clock, 30 s skew)', async (t) => {
  const strict = verifierFor([issuer({ clockSkewSeconds: 0 })])
  await table(t, [
    ['exp = now - skew: expired', token({ claims: { exp: NOW - SKEW } }), 'token_expired'],
    ['exp = now - skew + 1: accepted', token({ claims: { exp: NOW - SKEW + 1 } }), 'accepted'],
    ['exp = now, skew 0: expired', token({ claims: { exp: NOW } }), 'token_expired', strict],
    ['exp = now + 1, skew 0: accepted', token({ claims: { exp: NOW + 1 } }), 'accepted', strict],
    ['exp fractional, half a second past the boundary: expired', token({ claims: { exp: NOW - SKEW - 0.5 } }), 'token_expired'],
    ['nbf = now + skew: accepted', token({ claims: { nbf: NOW + SKEW } }), 'accepted'],
    ['nbf = now + skew + 1: not yet valid', token({ claims: { nbf: NOW + SKEW + 1 } }), 'token_not_yet_valid'],
    ['nbf = now + 1, skew 0: not yet valid', token({ claims: { nbf: NOW + 1 } }), 'token_not_yet_valid', strict],
    ['iat = now + skew: accepted', token({ claims: { iat: NOW + SKEW } }), 'accepted'],
    ['iat = now + skew + 1 (issued in the future): not yet valid', token({ claims: { iat: NOW + SKEW + 1 } }), 'token_not_yet_valid'],
    ['iat = now + 1, skew 0: not yet valid', token({ claims: { iat: NOW + 1 } }), 'token_not_yet_valid', strict],
    ['iat ten years ago, exp in the future: accepted (exp bounds a token, not its age)', token({ claims: { iat: NOW - 315_360_000 } }), 'accepted'],
    ['no iat: accepted', token({ claims: { iat: undefined } }), 'accepted'],
  ])
})

t.test('dates of the wrong type or out of range are malformed', async (t) => {
  const claimsText = (exp: string) => `{"iss":"${ISS}","aud":"${AUD}","sub":"s","exp":${exp}}`
  await table(t, [
    ['exp a string', token({ claims: { exp: String(NOW + 300) } }), 'token_malformed'],
    ['nbf a string', token({ claims: { nbf: 'yesterday' } }), 'token_malformed'],
    ['iat a string', token({ claims: { iat: '2030-01-01' } }), 'token_malformed'],
    ['iat null', token({ claims: { iat: null } }), 'token_malformed'],
    ['exp in milliseconds (year 62000)', token({ claims: { exp: (NOW + 300) * 1000 } }), 'token_malformed'],
    ['exp 1e20', token({ rawPayload: claimsText('1e20') }), 'token_malformed'],
    ['exp 1e400 (Infinity once parsed)', token({ rawPayload: claimsText('1e400') }), 'token_malformed'],
    ['exp 9999-12-31T23:59:59Z: accepted', token({ claims: { exp: 253402300799 } }), 'accepted'],
    ['exp negative', token({ claims: { exp: -1 } }), 'token_expired'],
  ])
})

t.test('audience arrays', async (t) => {
  const multi = verifierFor([issuer({ audience: ['db-proxy', AUD] })])
  await table(t, [
    ['one of several token audiences is ours', token({ claims: { aud: ['https://other', AUD, 'third'] } }), 'accepted'],
    ['none of several token audiences is ours', token({ claims: { aud: ['https://other', 'PGWITNESS', 'pgwitness '] } }), 'audience_mismatch'],
    ['a token audience matching the second configured audience', token({ claims: { aud: ['x', 'db-proxy'] } }), 'accepted', multi],
    ['an audience array with a non-string entry', token({ claims: { aud: [AUD, 42] } }), 'token_malformed'],
    ['an audience object', token({ claims: { aud: { 0: AUD } } }), 'audience_mismatch'],
    ['a nested audience array', token({ claims: { aud: [[AUD]] } }), 'audience_mismatch'],
  ])
})

t.test('typ and cty: JWT, at+jwt or JOSE (or none); other token kinds and nested tokens are refused', async (t) => {
  await table(t, [
    ['no typ (Kubernetes service-account tokens)', token({ header: { typ: undefined } }), 'accepted'],
    ['typ JWT', token({ header: { typ: 'JWT' } }), 'accepted'],
    ['typ jwt (case-insensitive)', token({ header: { typ: 'jwt' } }), 'accepted'],
    ['typ at+jwt (RFC 9068 access token)', token({ header: { typ: 'at+jwt' } }), 'accepted'],
    ['typ application/at+JWT', token({ header: { typ: 'application/at+JWT' } }), 'accepted'],
    ['typ JOSE (allowed by the JWT-SVID spec)', token({ header: { typ: 'JOSE' } }), 'accepted'],
    ['typ JWE', token({ header: { typ: 'JWE' } }), 'token_malformed'],
    ['typ dpop+jwt (a DPoP proof)', token({ header: { typ: 'dpop+jwt' } }), 'token_malformed'],
    ['typ logout+jwt (an OIDC logout token)', token({ header: { typ: 'logout+jwt' } }), 'token_malformed'],
    ['typ secevent+jwt (a security event token)', token({ header: { typ: 'secevent+jwt' } }), 'token_malformed'],
    ['typ JOSE+JSON', token({ header: { typ: 'JOSE+JSON' } }), 'token_malformed'],
    ['typ empty', token({ header: { typ: '' } }), 'token_malformed'],
    ['typ a number', token({ header: { typ: 1 } }), 'token_malformed'],
    ['cty JWT (a nested token)', token({ header: { cty: 'JWT' } }), 'token_malformed'],
    ['cty application/jwt', token({ header: { cty: 'application/jwt' } }), 'token_malformed'],
    ['enc in a signed token', token({ header: { enc: 'A256GCM' } }), 'token_malformed'],
    ['zip in a signed token', token({ header: { zip: 'DEF' } }), 'token_malformed'],
  ])
})

t.test('encrypted and nested tokens are refused as malformed', async (t) => {
  const inner = token()
  const { publicKey } = await generateKeyPair('RSA-OAEP-256', { extractable: true })
  const jwe = await new CompactEncrypt(new TextEncoder().encode(inner))
    .setProtectedHeader({ alg: 'RSA-OAEP-256', enc: 'A256GCM', cty: 'JWT', kid: 'es-1' })
    .encrypt(publicKey)
  t.equal(jwe.split('.').length, 5, 'a real five-part JWE (compact)')
  const dir_ = await new CompactEncrypt(new TextEncoder().encode(inner))
    .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', cty: 'JWT' })
    .encrypt(new Uint8Array(32))
  t.equal(dir_.split('.')[1], '', 'alg dir leaves the encrypted key empty')
  const [h, p, s] = inner.split('.') as [string, string, string]
  await table(t, [
    ['JWE RSA-OAEP-256 + A256GCM wrapping a valid token', jwe, 'token_malformed'],
    ['JWE alg dir', dir_, 'token_malformed'],
    ['a signed token whose payload is a token (nested JWS)', token({ header: { cty: 'JWT' }, rawPayload: JSON.stringify(inner) }), 'token_malformed'],
    ['a signed token whose payload is the inner token text', signRaw(es, JSON.stringify({ alg: 'ES256', kid: 'es-1' }), inner), 'token_malformed'],
    ['JWS JSON serialization (flattened)', JSON.stringify({ protected: h, payload: p, signature: s }), 'token_malformed'],
    ['two tokens joined', `${inner}.${inner}`, 'token_malformed'],
  ])
})

t.test('a valid token of issuer A replayed against issuer B', async (t) => {
  const onlyB = verifierFor([issuer({ issuer: ISS_B, jwksFile: jwksB, audience: ['pgwitness-b'], algorithms: ['ES256'] })])
  const sameIssuerOtherAudience = verifierFor([issuer({ audience: ['pgwitness-staging'] })])
  const sameIssuerOtherKeys = verifierFor([issuer({ jwksFile: jwksB })])
  const bothIssuers = verifierFor([issuer(), issuer({ issuer: ISS_B, jwksFile: jwksB, audience: ['pgwitness-b'], algorithms: ['ES256'] })])
  const fromA = token()
  await table(t, [
    ['A\'s token at a proxy that trusts only B', fromA, 'issuer_untrusted', onlyB],
    ['A\'s token at a proxy for the same issuer but another audience (staging vs production)', fromA, 'audience_mismatch', sameIssuerOtherAudience],
    ['A\'s token at a proxy that knows another key set under A\'s issuer name', fromA, 'token_signature_invalid', sameIssuerOtherKeys],
    ['A\'s token with iss rewritten to B (signature no longer matches)', `${fromA.split('.')[0]}.${b64(JSON.stringify({ iss: ISS_B, aud: 'pgwitness-b', sub: 's', exp: NOW + 300 }))}.${fromA.split('.')[2]}`, 'token_signature_invalid', bothIssuers],
    ['A\'s key signing a token that claims B', token({ claims: { iss: ISS_B, aud: 'pgwitness-b' } }), 'token_signature_invalid', bothIssuers],
    ['A\'s token is fine at A', fromA, 'accepted', bothIssuers],
  ])
})
