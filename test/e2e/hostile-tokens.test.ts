/**
 * Issue 8 item 4, end to end: hostile tokens sent as the password through a
 * real client are refused with FATAL 28P01 and an auth.failure record with
 * the right reason, PostgreSQL never sees a connection, and URLs named in a
 * token are never fetched. The full matrix is test/unit/jwt-attacks.test.ts;
 * alg none, HMAC confusion, bad signatures, expiry and audience are end to
 * end in auth.test.ts.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { CompactEncrypt, generateKeyPair, importJWK, SignJWT } from 'jose'
import type pg from 'pg'
import t from 'tap'
import type { AuthFailureReason } from '../../src/evidence/types.js'
import { DEV_AUDIENCE, DEV_ISSUER } from '../../src/dev/tokens.js'
import { readValidAuditLog, recordsOfType, waitForRecords } from '../helpers/audit.js'
import { startFixture } from '../helpers/proxy.js'

const f = await startFixture({ pg: { settings: { log_connections: 'on' } } })
t.teardown(() => f.stop())
const upstreamConnections = () => f.pg.readLog().split('\n').filter((l) => l.includes('connection received:')).length

const requests: string[] = []
const server = http.createServer((req, res) => {
  requests.push(req.url ?? '')
  res.writeHead(200, { 'content-type': 'application/json' }).end('{"keys":[]}')
})
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
t.teardown(() => new Promise<void>((r) => server.close(() => r())))
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

const key = await importJWK(f.issuer.privateJwk, 'ES256')
const kid = f.issuer.privateJwk.kid!
const now = Math.floor(Date.now() / 1000)
const claims = (extra: Record<string, unknown> = {}) => ({
  iss: DEV_ISSUER, aud: DEV_AUDIENCE, sub: 'spiffe://test.local/ns/billing/sa/api', iat: now, exp: now + 600, ...extra,
})
/** Signed by the trusted issuer key, with these header fields. */
const signed = (header: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  new SignJWT(claims(extra)).setProtectedHeader({ alg: 'ES256', kid, ...header }).sign(key)

const attacker = await generateKeyPair('ES256', { extractable: true })
const { publicKey: encKey } = await generateKeyPair('RSA-OAEP-256', { extractable: true })
const inner = await signed({ typ: 'JWT' })

const cases: Array<[string, Promise<string> | string, AuthFailureReason, RegExp]> = [
  ['a token larger than limits.max_token_bytes', signed({ typ: 'JWT' }, { groups: Array.from({ length: 2000 }, (_, i) => `group-${i}`) }), 'token_malformed', /too large/],
  ['jku and x5u naming a key set the attacker controls', new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', kid: 'attacker', jku: `${url}/jwks.json`, x5u: `${url}/cert.pem` }).sign(attacker.privateKey), 'token_signature_invalid', /key|signature/],
  ['kid with path traversal', new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', kid: '../../../../etc/passwd' }).sign(attacker.privateKey), 'token_signature_invalid', /key|signature/],
  ["kid with SQL injection", new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', kid: "x' OR '1'='1" }).sign(attacker.privateKey), 'token_signature_invalid', /key|signature/],
  ['a JWE (encrypted token, five parts)', new CompactEncrypt(new TextEncoder().encode(inner)).setProtectedHeader({ alg: 'RSA-OAEP-256', enc: 'A256GCM', cty: 'JWT' }).encrypt(encKey), 'token_malformed', /not a JWT/],
  ['typ dpop+jwt (another kind of token)', signed({ typ: 'dpop+jwt' }), 'token_malformed', /typ/],
  ['cty JWT (a nested token)', signed({ typ: 'JWT', cty: 'JWT' }), 'token_malformed', /nested/],
  ['crit with an unknown extension', new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', kid, crit: ['x-pgw'], 'x-pgw': 1 } as never).sign(key, { crit: { 'x-pgw': true } }), 'token_malformed', /unsupported|crit/],
  ['issued in the future (iat beyond the skew)', signed({ typ: 'JWT' }, { iat: now + 3600 }), 'token_not_yet_valid', /future/],
  ['exp in milliseconds', signed({ typ: 'JWT' }, { exp: (now + 600) * 1000 }), 'token_malformed', /out of range/],
]

t.test('hostile tokens through a real client', async (t) => {
  const before = upstreamConnections()
  let n = 0
  for (const [what, tokenP, reason, message] of cases) {
    const token = await tokenP
    const app = `tok-${++n}`
    const err = await f.client({ token, applicationName: app }).then(
      async (c) => {
        await c.end()
        return null
      },
      (e: pg.DatabaseError) => e,
    )
    t.match(err, { severity: 'FATAL', code: '28P01', message }, `${what}: refused (${err?.message})`)
    const recs = await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'auth.failure').some((r) => r.requested.application_name === app))
    t.equal(recordsOfType(recs, 'auth.failure').find((r) => r.requested.application_name === app)!.reason, reason, `${what}: auth.failure ${reason}`)
  }
  t.equal(upstreamConnections(), before, 'nothing reached PostgreSQL')
  t.same(requests, [], 'no URL named in a token was fetched')
  readValidAuditLog(f.auditPath)
})
