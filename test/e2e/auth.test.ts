/**
 * JWT as password, end to end: a valid token opens a session recorded with
 * the verified identity; every kind of bad token (expired, not yet valid,
 * untrusted issuer, wrong audience, bad signature, alg none, HMAC keyed with
 * the issuer's public key, not a JWT at all) is refused with FATAL 28P01 and
 * a message saying why — never echoing the token — and an auth.failure
 * record with the right reason code, and nothing reaches PostgreSQL.
 */
import { createPublicKey } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { decodeJwt, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose'
import type pg from 'pg'
import t, { type Test } from 'tap'
import type { AuthFailureReason } from '../../src/evidence/types.js'
import { DEV_AUDIENCE, DEV_ISSUER, mintDevToken } from '../../src/dev/tokens.js'
import { readValidAuditLog, recordsOfType, waitForRecords } from '../helpers/audit.js'
import { startFixture, type Fixture } from '../helpers/proxy.js'

const BILLING = 'spiffe://test.local/ns/billing/sa/api'

/** Connections PostgreSQL has received so far (log_connections). */
function upstreamConnections(f: Fixture): number {
  return f.pg.readLog().split('\n').filter((l) => l.includes('connection received:')).length
}

let appSeq = 0
function appName(tag: string): string {
  return `auth-${tag}-${++appSeq}`
}

const b64url = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url')
const now = () => Math.floor(Date.now() / 1000)

/** A standard set of claims the trusted issuer would sign. */
function claims(extra: Record<string, unknown> = {}) {
  return { iss: DEV_ISSUER, aud: DEV_AUDIENCE, sub: BILLING, iat: now(), exp: now() + 600, jti: crypto.randomUUID(), ...extra }
}

interface Refusal {
  reason: AuthFailureReason
  code?: string
  message: RegExp
  user?: string
  database?: string
}

t.test('JWT as password', async (t) => {
  const f = await startFixture({ pg: { settings: { log_connections: 'on' } } })
  t.teardown(() => f.stop())
  const trustedKid = f.issuer.privateJwk.kid!
  const publicJwk = (JSON.parse(readFileSync(f.issuer.jwksPath, 'utf8')) as { keys: JWK[] }).keys[0]!

  /**
   * Connect with `token` as the password; assert the client is refused as
   * `want` says, the token is never echoed (client message, audit record,
   * audit log), the auth.failure record is right, every record is valid, and
   * nothing reached PostgreSQL.
   */
  async function expectRefused(t: Test, token: string, want: Refusal) {
    const user = want.user ?? 'app'
    const database = want.database ?? 'appdb'
    const app = appName(want.reason)
    const before = upstreamConnections(f)
    const err = await f.client({ token, user, database, applicationName: app }).then(
      async (c) => {
        await c.end()
        return null
      },
      (e: pg.DatabaseError) => e,
    )
    if (!err) {
      t.fail('the token was accepted')
      return
    }
    t.equal(err.severity, 'FATAL', 'FATAL')
    t.equal(err.code, want.code ?? '28P01', `SQLSTATE ${want.code ?? '28P01'}`)
    t.match(err.message, want.message, `message says why: ${err.message}`)
    const told = [err.message, err.detail ?? '', err.hint ?? ''].join('\n')
    t.notOk(told.includes(token), 'the client message does not contain the token')
    const sig = token.split('.')[2]
    if (sig && sig.length >= 16) t.notOk(told.includes(sig), 'nor its signature')

    const recs = await waitForRecords(f.auditPath, (rs) =>
      recordsOfType(rs, 'auth.failure').some((r) => r.requested.application_name === app))
    const rec = recordsOfType(recs, 'auth.failure').find((r) => r.requested.application_name === app)!
    t.equal(rec.reason, want.reason, `auth.failure reason ${want.reason}`)
    t.equal(rec.method, 'jwt')
    t.same(rec.requested, { user, database, application_name: app }, 'requested user/database')
    t.type(rec.detail, 'string')
    t.ok(rec.detail.length > 0, 'detail says why')
    t.notOk(rec.detail.includes(token), 'detail does not contain the token')
    t.match(rec.connection!.tls, { version: 'TLSv1.3' })
    const logText = readFileSync(f.auditPath, 'utf8')
    t.notOk(logText.includes(token), 'the audit log does not contain the token')
    if (sig && sig.length >= 16) t.notOk(logText.includes(sig), 'nor its signature')
    readValidAuditLog(f.auditPath)
    t.equal(upstreamConnections(f), before, 'nothing reached PostgreSQL')
    return rec
  }

  t.test('a valid token opens a session recorded with the verified identity', async (t) => {
    const before = upstreamConnections(f)
    const token = await f.token({
      claims: {
        team: 'billing',
        groups: ['dev'],
        'kubernetes.io': { namespace: 'billing', serviceaccount: { name: 'api' } },
      },
    })
    const payload = decodeJwt(token)
    const app = appName('valid')
    const c = await f.client({ token, applicationName: app })
    t.same((await c.query('select current_user as u')).rows, [{ u: 'app' }], 'runs as the mapped role')
    await c.end()
    const recs = await waitForRecords(f.auditPath, (rs) =>
      recordsOfType(rs, 'session.end').some((x) => x.session.application_name === app))
    readValidAuditLog(f.auditPath)
    const start = recordsOfType(recs, 'session.start').find((x) => x.session.application_name === app)!
    t.same(start.identity, {
      method: 'jwt',
      subject: BILLING,
      issuer: DEV_ISSUER,
      audience: [DEV_AUDIENCE],
      token_id: payload.jti,
      token_expires_at: start.identity.token_expires_at,
      spiffe_id: BILLING,
      cert_sha256: null,
      claims: { team: 'billing', 'kubernetes.io.namespace': 'billing' },
      policy_rule: 'billing-app',
    })
    t.equal(Date.parse(start.identity.token_expires_at!) / 1000, payload.exp, 'token_expires_at is exp')
    t.match(start.identity.token_expires_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/)
    t.match(start.upstream, { role: 'app', database: 'appdb' })
    t.notOk(readFileSync(f.auditPath, 'utf8').includes(token.split('.')[2]!), 'the signature is never recorded')
    t.equal(upstreamConnections(f), before + 1, 'one upstream connection (log_connections sees it)')
  })

  t.test('an expired token is refused', async (t) => {
    await expectRefused(t, await f.token({ ttlSeconds: -120 }), { reason: 'token_expired', message: /expired/ })
  })

  t.test('a token that is not valid yet is refused beyond the clock skew', async (t) => {
    await expectRefused(t, await f.token({ notBefore: now() + 300 }), { reason: 'token_not_yet_valid', message: /not valid yet|future/ })
  })

  t.test('a token whose nbf is within the 30 s clock skew is accepted', async (t) => {
    const c = await f.client({ token: await f.token({ notBefore: now() + 10 }), applicationName: appName('skew') })
    t.same((await c.query('select 1 as one')).rows, [{ one: 1 }])
    await c.end()
  })

  t.test('a token from an untrusted issuer is refused', async (t) => {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true })
    const evilJwk = { ...(await exportJWK(privateKey)), kid: 'evil-1', alg: 'ES256' }
    const token = await mintDevToken(evilJwk, { subject: BILLING, issuer: 'https://evil.example.com' })
    const rec = await expectRefused(t, token, { reason: 'issuer_untrusted', message: /issuer/ })
    t.match(rec?.identity, { issuer: 'https://evil.example.com' }, 'the claimed issuer is recorded as partial identity')
    t.notOk(rec?.identity && 'subject' in rec.identity, 'an unverified subject is not recorded')
  })

  t.test('a token for another audience is refused', async (t) => {
    await expectRefused(t, await f.token({ audience: 'some-other-service' }), { reason: 'audience_mismatch', message: /audience/ })
  })

  t.test('a token signed by another key with the trusted issuer and kid is refused', async (t) => {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true })
    const forged = { ...(await exportJWK(privateKey)), kid: trustedKid, alg: 'ES256' }
    const token = await mintDevToken(forged, { subject: BILLING })
    await expectRefused(t, token, { reason: 'token_signature_invalid', message: /signature/ })
  })

  t.test('a token signed by another key that embeds its own jwk in the header is refused', async (t) => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
    const token = await new SignJWT(claims())
      .setProtectedHeader({ alg: 'ES256', kid: 'attacker', jwk: await exportJWK(publicKey) })
      .sign(privateKey)
    await expectRefused(t, token, { reason: 'token_signature_invalid', message: /key|signature/ })
  })

  t.test('a valid token with an edited payload is refused', async (t) => {
    const [h, p, s] = (await f.token()).split('.')
    const payload = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>
    payload['groups'] = ['dba']
    const token = `${h}.${b64url(payload)}.${s}`
    await expectRefused(t, token, { reason: 'token_signature_invalid', message: /signature/, user: 'postgres', database: 'postgres' })
  })

  t.test('alg none tokens are refused', async (t) => {
    for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
      for (const sig of ['', 'AAAA']) {
        const token = `${b64url({ alg, typ: 'JWT', kid: trustedKid })}.${b64url(claims())}.${sig}`
        await t.test(`alg ${alg}, signature ${JSON.stringify(sig)}`, async (t) => {
          await expectRefused(t, token, { reason: 'algorithm_not_allowed', message: /algorithm/ })
        })
      }
    }
  })

  t.test('HS256 keyed with the issuer public key is refused', async (t) => {
    const pem = createPublicKey({ key: publicJwk as import('node:crypto').JsonWebKey, format: 'jwk' })
      .export({ type: 'spki', format: 'pem' }) as string
    const secrets: [string, Buffer][] = [
      ['PEM of the public key', Buffer.from(pem)],
      ['PEM without the trailing newline', Buffer.from(pem.trimEnd())],
      ['the public JWK as JSON', Buffer.from(JSON.stringify(publicJwk))],
      ['the JWKS file', readFileSync(f.issuer.jwksPath)],
    ]
    for (const [what, secret] of secrets) {
      for (const alg of ['HS256', 'HS384', 'HS512']) {
        const token = await new SignJWT(claims())
          .setProtectedHeader({ alg, kid: trustedKid, typ: 'JWT' })
          .sign(new Uint8Array(secret))
        await t.test(`${alg} with ${what}`, async (t) => {
          const rec = await expectRefused(t, token, { reason: 'algorithm_not_allowed', message: /algorithm/ })
          t.not(rec?.reason, 'token_signature_invalid')
        })
      }
    }
  })

  t.test('an RS256 token for an ES256 issuer key is refused', async (t) => {
    const { privateKey } = await generateKeyPair('RS256', { extractable: true })
    const token = await new SignJWT(claims()).setProtectedHeader({ alg: 'RS256', kid: trustedKid }).sign(privateKey)
    const rec = await expectRefused(t, token, { reason: 'token_signature_invalid', message: /key|signature/ })
    t.ok(rec, 'refused')
  })

  t.test('things that are not a JWT are refused as malformed', async (t) => {
    const cases: [string, string][] = [
      ['a plain password', 'hunter2-correct-horse-battery'],
      ['two parts', 'abc.def'],
      ['three parts of garbage', 'abc.def.ghi'],
      ['a JWT with spaces', `${b64url({ alg: 'ES256' })}. ${b64url(claims())}.sig`],
      ['a header that is not JSON', `${b64url('not json')}.${b64url(claims())}.c2ln`],
      ['a payload that is not JSON', `${b64url({ alg: 'ES256', kid: trustedKid })}.${b64url('not json')}.c2ln`],
      ['a JWE-like five-part token', 'a.b.c.d.e'],
    ]
    for (const [what, token] of cases) {
      await t.test(what, async (t) => {
        await expectRefused(t, token, { reason: 'token_malformed', message: /JWT|malformed|decoded/ })
      })
    }
  })

  t.test('a correctly signed token without iss or exp is refused', async (t) => {
    const key = await importJWK(f.issuer.privateJwk, 'ES256')
    const { exp: _exp, ...noExp } = claims()
    const token = await new SignJWT(noExp).setProtectedHeader({ alg: 'ES256', kid: trustedKid }).sign(key)
    await expectRefused(t, token, { reason: 'token_malformed', message: /exp/ })
    const { iss: _iss, ...noIss } = claims()
    const token2 = await new SignJWT(noIss).setProtectedHeader({ alg: 'ES256', kid: trustedKid }).sign(key)
    await expectRefused(t, token2, { reason: 'token_malformed', message: /iss/ })
  })

  t.test('the requested user and database are recorded as asked', async (t) => {
    await expectRefused(t, await f.token({ ttlSeconds: -300 }), {
      reason: 'token_expired', message: /expired/, user: 'reporter', database: 'postgres',
    })
  })

  t.test('every record written is schema-valid', async (t) => {
    const recs = readValidAuditLog(f.auditPath)
    t.ok(recordsOfType(recs, 'auth.failure').length >= 20, 'the failures were recorded')
  })
})
