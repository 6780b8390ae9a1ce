/**
 * The identity-mode examples in config/examples/ load with parseConfig when
 * the files and environment variables they reference exist, fail naming the
 * key when one is missing, and their policies do what their comments say for
 * tokens shaped like the real ones (Kubernetes projected service-account
 * tokens, SPIRE JWT-SVIDs, corporate OIDC tokens for people), verified by the
 * real TokenVerifier and evaluated by the real policy code.
 */
import { randomUUID } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose'
import t, { type Test } from 'tap'
import { ConfigError, parseConfig } from '../../src/config/load.js'
import type { JwtIssuerConfig, PgwitnessConfig } from '../../src/config/types.js'
import { IdentityError, type WorkloadIdentity } from '../../src/identity/identity.js'
import { TokenVerifier } from '../../src/identity/jwt.js'
import { evaluateAccess } from '../../src/policy/access.js'

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const example = (name: string) => readFileSync(join(repo, 'config/examples', name), 'utf8')

const CERT = '-----BEGIN CERTIFICATE-----\nMIIBdummy\n-----END CERTIFICATE-----\n'
const KEY = '-----BEGIN PRIVATE KEY-----\nMIIBdummy\n-----END PRIVATE KEY-----\n'
const JWKS = JSON.stringify({ keys: [{ kty: 'RSA', n: 'AQAB', e: 'AQAB', kid: 'k1', use: 'sig', alg: 'RS256' }] })

const K8S = 'https://kubernetes.default.svc.cluster.local'
const SPIRE = 'https://oidc-discovery.example.org'
const CORP = 'https://login.example.com/realms/corp'

/** A temp folder standing for the folder of the example (relative paths resolve against it). */
function folder(tt: Test, files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgw-examples-'))
  tt.teardown(() => rmSync(dir, { recursive: true, force: true }))
  for (const [rel, text] of Object.entries({ 'tls/server.crt': CERT, 'tls/server.key': KEY, 'tls/upstream-ca.crt': CERT, ...files })) {
    const p = join(dir, rel)
    mkdirSync(dirname(p), { recursive: true })
    writeFileSync(p, text)
  }
  return dir
}

function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T): T {
  const saved: Record<string, string | undefined> = {}
  for (const [k, v] of Object.entries(vars)) {
    saved[k] = process.env[k]
    if (v === undefined) delete process.env[k]
    else process.env[k] = v
  }
  try {
    return fn()
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  }
}

function load(dir: string, text: string, env: Record<string, string | undefined>): PgwitnessConfig {
  return withEnv(env, () => parseConfig(text, { baseDir: dir, source: join(dir, 'pgwitness.yaml') }))
}

function rejects(tt: Test, fn: () => unknown, key: string, problem: RegExp) {
  try {
    fn()
    tt.fail(`expected a ConfigError for ${key}`)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    tt.equal(err.key, key, `names the key: ${err.message}`)
    tt.match(err.problem, problem)
  }
}

const K8S_ENV = { PGW_BILLING_RW_PASSWORD: 'rw-pass', PGW_BILLING_RO_PASSWORD: 'ro-pass' }
const SPIFFE_ENV = { PGW_BILLING_RW_PASSWORD: 'rw-pass', PGW_REPORTING_RO_PASSWORD: 'rep-pass' }
const PEOPLE_ENV = { PGW_ANALYST_PASSWORD: 'an-pass' }

// ---------------------------------------------------------------------------
// Signing keys and tokens shaped like the real ones.

interface Signer {
  key: CryptoKey
  alg: string
  kid: string
  /** The public JWK as the issuer publishes it. */
  publicJwk: JWK
}

async function signer(alg: 'RS256' | 'ES256', kid: string, publish: (jwk: JWK) => JWK = (j) => ({ ...j, kid, alg, use: 'sig' })): Promise<Signer> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true })
  return { key: privateKey, alg, kid, publicJwk: publish(await exportJWK(publicKey)) }
}

const now = () => Math.floor(Date.now() / 1000)

/** A Kubernetes projected service-account token (as kube-apiserver 1.29+ issues it). */
async function k8sToken(s: Signer, o: { namespace: string; sa: string; pod: string; audience?: string[] }): Promise<string> {
  const iat = now()
  return new SignJWT({
    aud: o.audience ?? ['pgwitness'],
    exp: iat + 3607,
    iat,
    iss: K8S,
    jti: randomUUID(),
    'kubernetes.io': {
      namespace: o.namespace,
      node: { name: 'ip-10-0-12-34.eu-west-1.compute.internal', uid: randomUUID() },
      pod: { name: o.pod, uid: randomUUID() },
      serviceaccount: { name: o.sa, uid: randomUUID() },
    },
    nbf: iat,
    sub: `system:serviceaccount:${o.namespace}:${o.sa}`,
  })
    .setProtectedHeader({ alg: s.alg, kid: s.kid }) // the API server sets no typ
    .sign(s.key)
}

/** A SPIRE JWT-SVID: aud, exp, iat, iss (SPIRE jwt_issuer) and sub = the SPIFFE ID, nothing else. */
async function svid(s: Signer, spiffeId: string, extra: Record<string, unknown> = {}): Promise<string> {
  const iat = now()
  return new SignJWT({ aud: ['pgwitness'], exp: iat + 300, iat, iss: SPIRE, sub: spiffeId, ...extra })
    .setProtectedHeader({ alg: s.alg, kid: s.kid, typ: 'JWT' })
    .sign(s.key)
}

/** An OIDC token for a person, as a Keycloak-like IdP issues it. */
async function personToken(s: Signer, o: { email: string; name: string; groups: string[] }): Promise<string> {
  const iat = now()
  const [given, family] = o.name.split(' ')
  return new SignJWT({
    exp: iat + 300,
    iat,
    auth_time: iat - 20,
    jti: randomUUID(),
    iss: CORP,
    aud: 'pgwitness',
    sub: randomUUID(),
    typ: 'ID',
    azp: 'pgwitness',
    email_verified: true,
    name: o.name,
    preferred_username: o.email.split('@')[0],
    given_name: given,
    family_name: family,
    email: o.email,
    groups: o.groups,
  })
    .setProtectedHeader({ alg: s.alg, kid: s.kid, typ: 'JWT' })
    .sign(s.key)
}

/** The example's issuer, with its keys taken from a local file holding `keys`. */
function verifierFor(tt: Test, cfg: JwtIssuerConfig, keys: JWK[], extra: Record<string, unknown> = {}): TokenVerifier {
  const dir = mkdtempSync(join(tmpdir(), 'pgw-examples-keys-'))
  tt.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'jwks.json')
  writeFileSync(file, JSON.stringify({ keys, ...extra }))
  return new TokenVerifier([{ ...cfg, jwksFile: file, jwksUrl: null }])
}

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p
    return 'accepted'
  } catch (err) {
    if (err instanceof IdentityError) return err.reason
    throw err
  }
}

function decide(c: PgwitnessConfig, id: WorkloadIdentity, role: string, database: string): string {
  const d = evaluateAccess(c.policy, id, { role, database })
  return d.allowed ? `allowed by ${d.rule.name}` : d.reason
}

// ---------------------------------------------------------------------------

t.test('config/examples/kubernetes.yaml', async (tt) => {
  const text = example('kubernetes.yaml')
  const dir = folder(tt, { 'k8s/jwks.json': JWKS })
  const c = load(dir, text, K8S_ENV)
  tt.equal(c.identity.jwt.length, 1)
  const k8s = c.identity.jwt[0]!
  tt.equal(k8s.issuer, K8S)
  tt.same(k8s.audience, ['pgwitness'])
  tt.equal(k8s.jwksFile, join(dir, 'k8s/jwks.json'))
  tt.equal(k8s.jwksUrl, null)
  tt.same(k8s.algorithms, ['RS256'])
  tt.equal(k8s.subjectClaim, 'sub')
  tt.same(k8s.recordClaims, [
    'kubernetes.io.namespace',
    'kubernetes.io.serviceaccount.name',
    'kubernetes.io.pod.name',
    'kubernetes.io.pod.uid',
  ])
  tt.same(c.policy.map((r) => r.name), ['k8s-billing', 'k8s-analytics-reports'])
  tt.same({ ...c.policy[0]!.match.claims }, { 'kubernetes.io.namespace': 'billing' })
  tt.equal(c.policy[1]!.match.subject, 'system:serviceaccount:analytics:report-*')
  tt.same({ ...c.upstream.roles }, { billing_rw: { password: 'rw-pass' }, billing_ro: { password: 'ro-pass' } })
  tt.equal(c.upstream.tls.mode, 'verify-full')
  tt.equal(c.audit.durability, 'strict')

  rejects(tt, () => load(dir, text, { ...K8S_ENV, PGW_BILLING_RO_PASSWORD: undefined }), 'upstream.roles.billing_ro.password', /PGW_BILLING_RO_PASSWORD/)
  const noJwks = folder(tt, {})
  rejects(tt, () => load(noJwks, text, K8S_ENV), 'identity.jwt[0].jwks_file', /k8s\/jwks\.json/)
  // The commented-out jwks_url alternative is valid on its own (without jwks_file).
  const withUrl = text.replace(/^ {6}jwks_file: .*$/m, '').replace(/^ {6}# +jwks_url: (.*)$/m, '      jwks_url: $1')
  const cu = load(dir, withUrl, K8S_ENV)
  tt.equal(cu.identity.jwt[0]!.jwksUrl, 'https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B7/keys')
})

t.test('config/examples/spiffe.yaml', async (tt) => {
  const text = example('spiffe.yaml')
  const dir = folder(tt, {})
  const c = load(dir, text, SPIFFE_ENV)
  const spire = c.identity.jwt[0]!
  tt.equal(c.identity.jwt.length, 1)
  tt.equal(spire.issuer, SPIRE)
  tt.same(spire.audience, ['pgwitness'])
  tt.equal(spire.jwksUrl, 'https://oidc-discovery.example.org/keys')
  tt.equal(spire.jwksFile, null)
  tt.same(spire.algorithms, ['ES256', 'RS256'])
  tt.same(spire.recordClaims, [])
  tt.equal(spire.clockSkewSeconds, 10)
  tt.same(c.policy.map((r) => [r.name, r.match.subject]), [
    ['spiffe-billing', 'spiffe://example.org/ns/billing/*'],
    ['spiffe-reporting-exporter', 'spiffe://example.org/ns/reporting/sa/exporter'],
  ])
  rejects(tt, () => load(dir, text, { ...SPIFFE_ENV, PGW_REPORTING_RO_PASSWORD: undefined }), 'upstream.roles.reporting_ro.password', /PGW_REPORTING_RO_PASSWORD/)
  // The commented-out jwks_file alternative loads when its file exists.
  const withFile = text.replace(/^ {6}jwks_url: .*$/m, '').replace(/^ {6}# +jwks_file: (.*)$/m, '      jwks_file: $1')
  const fdir = folder(tt, { 'spiffe/jwt-bundle.jwks': JWKS })
  tt.equal(load(fdir, withFile, SPIFFE_ENV).identity.jwt[0]!.jwksFile, join(fdir, 'spiffe/jwt-bundle.jwks'))
})

t.test('config/examples/oidc-people.yaml', async (tt) => {
  const text = example('oidc-people.yaml')
  const dir = folder(tt, { 'secrets/dba.password': 'dba-pass\n' })
  const c = load(dir, text, PEOPLE_ENV)
  const corp = c.identity.jwt[0]!
  tt.equal(corp.issuer, CORP)
  tt.equal(corp.jwksUrl, 'https://login.example.com/realms/corp/protocol/openid-connect/certs')
  tt.equal(corp.subjectClaim, 'email')
  tt.same(corp.recordClaims, ['groups', 'email', 'name'])
  tt.same({ ...c.upstream.roles }, { dba: { password: 'dba-pass' }, analyst: { password: 'an-pass' } })
  tt.same(c.policy.map((r) => [r.name, { ...r.match.claims }, r.roles, r.databases]), [
    ['dba', { groups: 'dba' }, ['dba'], ['*']],
    ['analysts', { groups: 'analysts' }, ['analyst'], ['billing', 'reporting']],
  ])
  rejects(tt, () => load(folder(tt, {}), text, PEOPLE_ENV), 'upstream.roles.dba.password', /secrets\/dba\.password/)
})

t.test('the examples combine into one proxy trusting all three issuers', async (tt) => {
  const dir = folder(tt, { 'k8s/jwks.json': JWKS, 'secrets/dba.password': 'x' })
  const identityOf = (name: string) => /^identity:\n(?:(?: .*)?\n)+/m.exec(example(name))![0].replace(/^identity:\n {2}jwt:\n/, '')
  const policyOf = (name: string) => /^policy:\n(?:(?: .*)?\n)+/m.exec(example(name))![0].replace(/^policy:\n/, '')
  const files = ['kubernetes.yaml', 'spiffe.yaml', 'oidc-people.yaml']
  const yaml = `listen: "127.0.0.1:6432"
tls: { cert: tls/server.crt, key: tls/server.key }
identity:
  jwt:
${files.map(identityOf).join('')}
policy:
${files.map(policyOf).join('')}`
  const c = parseConfig(yaml, { baseDir: dir, source: null })
  tt.same(c.identity.jwt.map((j) => j.issuer), [K8S, SPIRE, CORP])
  tt.same(c.policy.map((r) => r.name), ['k8s-billing', 'k8s-analytics-reports', 'spiffe-billing', 'spiffe-reporting-exporter', 'dba', 'analysts'])
})

t.test('the Kubernetes example policy, with projected service-account tokens', async (tt) => {
  const c = load(folder(tt, { 'k8s/jwks.json': JWKS }), example('kubernetes.yaml'), K8S_ENV)
  const sa = await signer('RS256', 'HcQb1pXr-3vE9tJ0lL5hPq2kKzV8sYwN4mR7aUfGdOc')
  const v = verifierFor(tt, c.identity.jwt[0]!, [sa.publicJwk])

  const api = await v.verifyWorkloadToken(await k8sToken(sa, { namespace: 'billing', sa: 'api', pod: 'api-7d9f8b6c5d-x2x7k' }))
  tt.equal(api.subject, 'system:serviceaccount:billing:api')
  tt.equal(api.spiffeId, null)
  tt.same(Object.keys(api.recordedClaims), c.identity.jwt[0]!.recordClaims, 'every selected claim, in order, and no other')
  tt.equal(api.recordedClaims['kubernetes.io.pod.name'], 'api-7d9f8b6c5d-x2x7k')
  tt.equal(api.recordedClaims['kubernetes.io.namespace'], 'billing')
  tt.equal(api.recordedClaims['kubernetes.io.serviceaccount.name'], 'api')
  tt.equal(decide(c, api, 'billing_rw', 'billing'), 'allowed by k8s-billing')
  tt.equal(decide(c, api, 'billing_ro', 'billing'), 'role_not_allowed')

  const report = await v.verifyWorkloadToken(await k8sToken(sa, { namespace: 'analytics', sa: 'report-nightly', pod: 'report-nightly-28551360-9wq4s' }))
  tt.equal(decide(c, report, 'billing_ro', 'billing'), 'allowed by k8s-analytics-reports')
  tt.equal(decide(c, report, 'billing_rw', 'billing'), 'role_not_allowed')
  const notReport = await v.verifyWorkloadToken(await k8sToken(sa, { namespace: 'analytics', sa: 'notebook', pod: 'notebook-0' }))
  tt.equal(decide(c, notReport, 'billing_ro', 'billing'), 'policy_no_match')
  const other = await v.verifyWorkloadToken(await k8sToken(sa, { namespace: 'other', sa: 'api', pod: 'api-5c6d7e8f9-abcde' }))
  tt.equal(decide(c, other, 'billing_rw', 'billing'), 'policy_no_match')

  // The token every pod has by default (API-server audience) is not a pgwitness token.
  tt.equal(await refusal(v.verifyWorkloadToken(await k8sToken(sa, { namespace: 'billing', sa: 'api', pod: 'p', audience: [K8S] }))), 'audience_mismatch')
})

t.test('the SPIFFE example policy, with JWT-SVIDs', async (tt) => {
  const c = load(folder(tt, {}), example('spiffe.yaml'), SPIFFE_ENV)
  // A JWT bundle as the Workload API / spiffe-helper writes it: a plain JWKS, no "use", no "alg".
  const spire = await signer('ES256', 'q4ZQzfbOCDCJ0WbrH1Zl3qE5qEjQTkT0', (j) => ({ ...j, kid: 'q4ZQzfbOCDCJ0WbrH1Zl3qE5qEjQTkT0' }))
  const v = verifierFor(tt, c.identity.jwt[0]!, [spire.publicJwk])

  const api = await v.verifyWorkloadToken(await svid(spire, 'spiffe://example.org/ns/billing/sa/api'))
  tt.equal(api.subject, 'spiffe://example.org/ns/billing/sa/api')
  tt.equal(api.spiffeId, 'spiffe://example.org/ns/billing/sa/api')
  tt.same(api.recordedClaims, {})
  tt.equal(decide(c, api, 'billing_rw', 'billing'), 'allowed by spiffe-billing')
  const exporter = await v.verifyWorkloadToken(await svid(spire, 'spiffe://example.org/ns/reporting/sa/exporter'))
  tt.equal(decide(c, exporter, 'reporting_ro', 'reporting'), 'allowed by spiffe-reporting-exporter')
  tt.equal(decide(c, exporter, 'billing_rw', 'billing'), 'role_not_allowed')
  for (const id of ['spiffe://example.org/ns/reporting/sa/other', 'spiffe://evil.example/ns/billing/sa/api', 'spiffe://example.org/ns/billing-x/sa/api']) {
    const other = await v.verifyWorkloadToken(await svid(spire, id))
    tt.equal(decide(c, other, 'billing_rw', 'billing'), 'policy_no_match', id)
  }
  // SPIRE without jwt_issuer mints SVIDs without "iss": refused, saying so.
  const noIss = await new SignJWT({ aud: ['pgwitness'], exp: now() + 300, iat: now(), sub: 'spiffe://example.org/ns/billing/sa/api' })
    .setProtectedHeader({ alg: 'ES256', kid: spire.kid, typ: 'JWT' })
    .sign(spire.key)
  tt.equal(await refusal(v.verifyWorkloadToken(noIss)), 'token_malformed')
})

t.test('a SPIFFE-format trust bundle (keys with use "jwt-svid") as jwks_file', async (tt) => {
  // `spire-server bundle show -format spiffe` (and SPIFFE federation bundle
  // endpoints) publish JWT authorities with "use": "jwt-svid" next to
  // "x509-svid" CA entries; jose only uses keys with no "use" or "use": "sig",
  // so the verifier maps jwt-svid to sig and drops the x509-svid entries.
  const c = load(folder(tt, {}), example('spiffe.yaml'), SPIFFE_ENV)
  const spire = await signer('ES256', 'c2pyZS1qd3QtMQ', (j) => ({ ...j, kid: 'c2pyZS1qd3QtMQ', use: 'jwt-svid' }))
  const x509Entry: JWK = { kty: 'EC', crv: 'P-256', x: spire.publicJwk.x!, y: spire.publicJwk.y!, use: 'x509-svid', x5c: ['MIIBdummy'] }
  const v = verifierFor(tt, c.identity.jwt[0]!, [x509Entry, spire.publicJwk], { spiffe_sequence: 7, spiffe_refresh_hint: 300 })
  const reason = await refusal(v.verifyWorkloadToken(await svid(spire, 'spiffe://example.org/ns/billing/sa/api')))
  tt.equal(reason, 'accepted', 'an SVID signed by a jwt-svid key of the bundle is accepted')
})

t.test('the people example policy, with corporate OIDC tokens', async (tt) => {
  const c = load(folder(tt, { 'secrets/dba.password': 'x' }), example('oidc-people.yaml'), PEOPLE_ENV)
  const idp = await signer('RS256', 'Zk3o9VwqE0m7pA1sYx2b5nT8cJ6dLr4uHgFi')
  // Keycloak also publishes its encryption key in the same set.
  const enc = await signer('RS256', 'enc-1', (j) => ({ ...j, kid: 'enc-1', alg: 'RSA-OAEP', use: 'enc' }))
  const v = verifierFor(tt, c.identity.jwt[0]!, [enc.publicJwk, idp.publicJwk])

  const alice = await v.verifyWorkloadToken(await personToken(idp, { email: 'alice@example.com', name: 'Alice Martin', groups: ['staff', 'dba'] }))
  tt.equal(alice.subject, 'alice@example.com', 'subject_claim: email')
  tt.same(alice.recordedClaims, { groups: ['staff', 'dba'], email: 'alice@example.com', name: 'Alice Martin' })
  tt.equal(decide(c, alice, 'dba', 'postgres'), 'allowed by dba')
  tt.equal(decide(c, alice, 'analyst', 'billing'), 'role_not_allowed')
  const carol = await v.verifyWorkloadToken(await personToken(idp, { email: 'carol@example.com', name: 'Carol Diaz', groups: ['staff', 'analysts'] }))
  tt.equal(decide(c, carol, 'analyst', 'reporting'), 'allowed by analysts')
  tt.equal(decide(c, carol, 'dba', 'postgres'), 'role_not_allowed')
  tt.equal(decide(c, carol, 'analyst', 'postgres'), 'database_not_allowed')
  const dave = await v.verifyWorkloadToken(await personToken(idp, { email: 'dave@example.com', name: 'Dave Ng', groups: ['staff'] }))
  tt.equal(decide(c, dave, 'dba', 'postgres'), 'policy_no_match')
  // A group whose name merely contains "dba" is not the dba group.
  const eve = await v.verifyWorkloadToken(await personToken(idp, { email: 'eve@example.com', name: 'Eve Stone', groups: ['dba-readers', '/dba'] }))
  tt.equal(decide(c, eve, 'dba', 'postgres'), 'policy_no_match')
})

t.test('the Kubernetes manifest (config/k8s) carries a config that loads', async (tt) => {
  const { parseAllDocuments } = await import('yaml')
  const docs = parseAllDocuments(readFileSync(join(repo, 'config/k8s/pgwitness.yaml'), 'utf8')).map((d) => d.toJS())
  const cm = docs.find((d) => d?.kind === 'ConfigMap')
  tt.ok(cm, 'a ConfigMap holds the proxy config')
  // Point the absolute in-cluster paths at temp files standing for the mounted secrets.
  const dir = folder(tt, { 'tls/tls.crt': CERT, 'tls/tls.key': KEY, 'upstream-ca/ca.crt': CERT, 'sa/ca.crt': CERT })
  const text = (cm.data['pgwitness.yaml'] as string)
    .replaceAll('/etc/pgwitness/tls/', `${dir}/tls/`)
    .replaceAll('/etc/pgwitness/upstream-ca/', `${dir}/upstream-ca/`)
    .replaceAll('/var/run/secrets/kubernetes.io/serviceaccount/', `${dir}/sa/`)
  const c = withEnv({ PGW_BILLING_RW_PASSWORD: 'x' }, () => parseConfig(text, { baseDir: dir, source: null }))
  tt.equal(c.identity.jwt[0]!.audience[0], 'pgwitness')
  tt.equal(c.policy[0]!.name, 'billing-api')
  const pod = docs.find((d) => d?.kind === 'Pod')
  const projected = pod.spec.volumes.find((v: { projected?: unknown }) => v.projected).projected.sources[0].serviceAccountToken
  tt.equal(projected.audience, 'pgwitness', 'the client pod projects a token for audience pgwitness')
})
