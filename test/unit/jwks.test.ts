/**
 * The jwks_url key source against a local HTTPS endpoint: warm-up, refresh on
 * an unknown kid (rate-limited, shared by concurrent callers), grace for
 * retired keys, endpoint down / failing / hanging, and the config keys.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { jwtVerify } from 'jose'
import t, { type Test } from 'tap'
import { parseConfig } from '../../src/config/load.js'
import type { JwtIssuerConfig } from '../../src/config/types.js'
import { createDevPki } from '../../src/dev/pki.js'
import { IdentityError } from '../../src/identity/identity.js'
import { JwksKeySource, JwksNoKeyError, type JwksSourceOptions } from '../../src/identity/jwks.js'
import { TokenVerifier } from '../../src/identity/jwt.js'
import { signingKey, signToken, startJwksServer, type JwksServer, type SigningKey } from '../helpers/jwks-server.js'

const ISS = 'https://idp.example.com'
const AUD = 'pgwitness'
const dir = mkdtempSync(path.join(tmpdir(), 'pgw-jwks-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const pki = await createDevPki(path.join(dir, 'pki'))
const ca = readFileSync(pki.caCert, 'utf8')
const [A, B, C] = await Promise.all([signingKey('key-a'), signingKey('key-b'), signingKey('key-c')])

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const token = (k: SigningKey, header: Record<string, unknown> = {}) => signToken(k, { iss: ISS, aud: AUD, sub: 'svc' }, header)

/** A server publishing `keys` and a started source over it (both closed at teardown). */
async function setup(tt: Test, keys: SigningKey[], o: Partial<JwksSourceOptions> = {}) {
  const server = await startJwksServer(pki, keys.map((k) => k.publicJwk))
  const src = new JwksKeySource({ url: server.url, issuer: ISS, ca, refreshMs: 60_000, minRefreshIntervalMs: 100, ...o })
  tt.teardown(async () => {
    src.close()
    await server.close()
  })
  src.start()
  await src.refresh() // joins the start-up fetch
  return { server, src, verify: async (tok: string) => (await jwtVerify(tok, src.getKey, { issuer: ISS, audience: AUD })).payload }
}

async function rejectsNoKey(tt: Test, p: Promise<unknown>, message: RegExp) {
  const err = await p.then(() => null, (e: unknown) => e)
  tt.type(err, JwksNoKeyError, 'JwksNoKeyError')
  tt.match((err as Error | null)?.message, message)
}

t.test('the first fetch warms the cache; a rotation is picked up when a token names the new kid', async (tt) => {
  const { server, src, verify } = await setup(tt, [A])
  tt.equal(server.hits, 1, 'one fetch at start')
  tt.equal((await verify(await token(A))).sub, 'svc')
  tt.equal(server.hits, 1, 'a known kid needs no fetch')
  server.keys = [A.publicJwk, B.publicJwk]
  await sleep(150)
  tt.equal((await verify(await token(B))).sub, 'svc', 'the new key works')
  tt.equal(server.hits, 2, 'the unknown kid caused one refresh')
  tt.match(src.stats(), { refreshes: 2, failures: 0, lastError: null, keys: 2, retiredKeys: 0 })
})

t.test('on-demand refreshes are rate-limited', async (tt) => {
  const { server, src, verify } = await setup(tt, [A], { minRefreshIntervalMs: 1000 })
  server.keys = [A.publicJwk, B.publicJwk]
  await rejectsNoKey(tt, verify(await token(B)), /^no key with kid "key-b" in the issuer's key set \(unknown kid or key type\)$/)
  tt.equal(server.hits, 1, 'no fetch within the minimum interval of the start-up fetch')
  await sleep(1100)
  tt.equal((await verify(await token(B))).sub, 'svc', 'after the interval the unknown kid triggers a refresh')
  for (let i = 0; i < 5; i++) await rejectsNoKey(tt, verify(await token(C)), /kid "key-c"/)
  tt.equal(server.hits, 2, 'five unknown kids in a row: no further fetch')
  tt.equal(src.stats().refreshes, 2)
})

t.test('concurrent callers share one in-flight fetch', async (tt) => {
  const { server, verify } = await setup(tt, [A])
  server.keys = [A.publicJwk, B.publicJwk]
  server.delayMs = 300
  await sleep(150)
  const tokens = await Promise.all(Array.from({ length: 20 }, () => token(B)))
  const results = await Promise.all(tokens.map((tok) => verify(tok)))
  tt.equal(results.length, 20)
  tt.ok(results.every((p) => p.sub === 'svc'), 'all 20 verified')
  tt.equal(server.hits, 2, 'one fetch served all of them')
})

t.test('a key the issuer stops publishing is honoured for the grace period, then refused', async (tt) => {
  const { server, src, verify } = await setup(tt, [A], { keyGraceMs: 700 })
  const oldToken = await token(A)
  server.keys = [B.publicJwk]
  await src.refresh()
  tt.match(src.stats(), { keys: 2, retiredKeys: 1 })
  tt.equal((await verify(oldToken)).sub, 'svc', 'the retired key still verifies within the grace period')
  tt.equal((await verify(await token(B))).sub, 'svc', 'the new key verifies')
  await sleep(800)
  await rejectsNoKey(tt, verify(oldToken), /no key with kid "key-a"/)
  tt.match(src.stats(), { keys: 1, retiredKeys: 0 })
  server.keys = [A.publicJwk, B.publicJwk]
  await src.refresh()
  tt.equal((await verify(oldToken)).sub, 'svc', 'a key published again is trusted again')
})

t.test('endpoint down: cached keys keep working, an unknown kid fails with a clear reason', async (tt) => {
  const { server, src, verify } = await setup(tt, [A])
  await server.close()
  await sleep(150)
  tt.equal((await verify(await token(A))).sub, 'svc', 'cached key works')
  await rejectsNoKey(tt, verify(await token(B)),
    /^no key with kid "key-b" in the issuer's key set \(the issuer's key set could not be refreshed: connection refused\)$/)
  tt.match(src.stats(), { refreshes: 2, failures: 1, lastError: 'connection refused', keys: 1 })
  await src.refresh()
  tt.equal((await verify(await token(A))).sub, 'svc', 'still works after more failed refreshes')
})

t.test('HTTP errors, bad documents and an empty key set keep the cache', async (tt) => {
  const { server, src, verify } = await setup(tt, [A])
  server.mode = 'error500'
  await src.refresh()
  tt.equal(src.stats().lastError, 'HTTP 500')
  server.mode = 'ok'
  server.keys = []
  await src.refresh()
  tt.equal(src.stats().lastError, 'the key set has no usable public signing keys')
  server.keys = [{ kty: 'oct', k: 'c2VjcmV0', kid: 'hmac' }, { ...B.publicJwk, d: 'private' }]
  await src.refresh()
  tt.equal(src.stats().lastError, 'the key set has no usable public signing keys', 'symmetric and private keys are never used')
  tt.match(src.stats(), { keys: 1, retiredKeys: 0, failures: 3 })
  tt.equal((await verify(await token(A))).sub, 'svc')
})

t.test('a server that never answers times out', async (tt) => {
  const server = await startJwksServer(pki, [A.publicJwk])
  server.mode = 'hang'
  const src = new JwksKeySource({ url: server.url, issuer: ISS, ca, timeoutMs: 300 })
  tt.teardown(async () => {
    src.close()
    await server.close()
  })
  const started = Date.now()
  src.start()
  await src.refresh()
  const took = Date.now() - started
  tt.ok(took >= 250 && took < 2000, `gave up after ~300ms (${took}ms)`)
  tt.match(src.stats(), { refreshes: 1, failures: 1, lastError: 'no answer within 300ms', keys: 0 })
  await rejectsNoKey(tt, jwtVerify(await token(A), src.getKey),
    /no key with kid "key-a" in the issuer's key set \(the issuer's key set could not be refreshed: no answer within 300ms\)/)
})

t.test('the endpoint certificate must chain to the configured CA (or the system roots)', async (tt) => {
  const server = await startJwksServer(pki, [A.publicJwk])
  const src = new JwksKeySource({ url: server.url, issuer: ISS })
  tt.teardown(async () => {
    src.close()
    await server.close()
  })
  await src.refresh()
  tt.match(src.stats().lastError, /^TLS certificate not trusted \(/)
  tt.equal(src.stats().keys, 0)
})

t.test('URLs named by a token (jku, x5u) and embedded jwks are never used', async (tt) => {
  const { server, verify } = await setup(tt, [A])
  const attacker = await startJwksServer(pki, [C.publicJwk])
  tt.teardown(() => attacker.close())
  await sleep(150)
  await rejectsNoKey(tt, verify(await token(C, { jku: attacker.url, x5u: attacker.url, jwk: C.publicJwk })), /kid "key-c"/)
  tt.equal(attacker.hits, 0, 'the URL in the token was not fetched')
  tt.equal(server.hits, 2, 'only the configured endpoint was asked')
})

t.test('TokenVerifier: jwks_url issuers warm at construction and map a missing key to token_signature_invalid', async (tt) => {
  const server = await startJwksServer(pki, [A.publicJwk])
  const cfg: JwtIssuerConfig = {
    issuer: ISS, audience: [AUD], jwksFile: null, jwksUrl: server.url, algorithms: ['ES256'],
    subjectClaim: 'sub', recordClaims: [], clockSkewSeconds: 30,
    jwksFetch: { ca, caPath: pki.caCert, timeoutMs: 1000, refreshMs: 60_000, minRefreshIntervalMs: 100, keyGraceMs: 60_000, tokenFile: null },
  }
  const verifier = new TokenVerifier([cfg])
  tt.teardown(async () => {
    verifier.close()
    await server.close()
  })
  tt.equal((await verifier.verifyWorkloadToken(await token(A))).subject, 'svc')
  tt.equal(server.hits, 1, 'the key set was fetched once, at construction')
  await server.close()
  await sleep(150)
  const err = await verifier.verifyWorkloadToken(await token(B)).then(() => null, (e: unknown) => e)
  tt.type(err, IdentityError)
  tt.equal((err as IdentityError).reason, 'token_signature_invalid')
  tt.match((err as IdentityError).message, /no key with kid "key-b" .*could not be refreshed: connection refused/)
  tt.match(verifier.jwksStats()[ISS], { refreshes: 2, failures: 1, keys: 1 })
})

t.test('config: jwks_url fetch settings, defaults and checks', async (tt) => {
  const base = `listen: "127.0.0.1:1"\ntls: { cert: ${pki.serverCert}, key: ${pki.serverKey} }\nidentity:\n  jwt:\n    - `
  const parse = (issuer: string) => parseConfig(base + issuer + '\n', { baseDir: dir, source: null }).identity.jwt[0]!
  tt.same(parse('{ issuer: i, audience: a, jwks_url: "https://idp.example.com/jwks" }').jwksFetch, {
    ca: null, caPath: null, tokenFile: null, timeoutMs: 5000, refreshMs: 300_000, minRefreshIntervalMs: 10_000, keyGraceMs: 3_600_000,
  })
  tt.same(
    parse(`{ issuer: i, audience: a, jwks_url: "https://idp/j", jwks_ca: pki/ca.crt, jwks_timeout: 2s, jwks_refresh: 1m, jwks_min_refresh_interval: 500ms, jwks_key_grace: 0s }`).jwksFetch,
    { ca, caPath: pki.caCert, tokenFile: null, timeoutMs: 2000, refreshMs: 60_000, minRefreshIntervalMs: 500, keyGraceMs: 0 },
  )
  const bad = (issuer: string, key: string, problem: RegExp) => {
    const err = (() => {
      try {
        parse(issuer)
      } catch (e) {
        return e as { key?: string; problem?: string }
      }
      return null
    })()
    tt.equal(err?.key, key)
    tt.match(err?.problem, problem)
  }
  bad('{ issuer: i, audience: a, jwks_url: "https://idp/j", jwks_timeout: 5m }', 'identity.jwt[0].jwks_timeout', /between 100ms and 1m/)
  bad('{ issuer: i, audience: a, jwks_url: "https://idp/j", jwks_min_refresh_interval: 0 }', 'identity.jwt[0].jwks_min_refresh_interval', /between/)
  bad('{ issuer: i, audience: a, jwks_url: "https://idp/j", jwks_ca: pki/server.key }', 'identity.jwt[0].jwks_ca', /does not contain a PEM certificate/)
  writeFileSync(path.join(dir, 'jwks.json'), JSON.stringify({ keys: [A.publicJwk] }))
  bad('{ issuer: i, audience: a, jwks_file: jwks.json, jwks_refresh: 1m }', 'identity.jwt[0].jwks_refresh', /applies only with jwks_url/)
})

t.test('jwks_token_file: the bearer token is read at each fetch and sent over https only', async (tt) => {
  const tokenFile = path.join(dir, 'sa-token')
  writeFileSync(tokenFile, 'first-token\n')
  const { server, src, verify } = await setup(tt, [A], { tokenFile })
  tt.equal(server.lastAuthorization, 'Bearer first-token', 'the start-up fetch carries the token')
  tt.match(await verify(await token(A)), { sub: 'svc' })
  writeFileSync(tokenFile, 'rotated-token')
  await src.refresh()
  tt.equal(server.lastAuthorization, 'Bearer rotated-token', 'a rotated token file is re-read')
  rmSync(tokenFile)
  const hits = server.hits
  await src.refresh()
  tt.equal(server.hits, hits, 'no request without the token')
  tt.match(src.stats().lastError, /cannot read the jwks_token_file/)
  writeFileSync(tokenFile, 'a-token')
  const plain = new JwksKeySource({ url: 'http://127.0.0.1:9/jwks', issuer: ISS, tokenFile })
  tt.teardown(() => plain.close())
  await plain.refresh()
  tt.match(plain.stats().lastError, /needs an https/)
})
