/**
 * Real issuers, end to end: ONE proxy trusts three issuers at once — a
 * Kubernetes API server (projected service-account tokens, RS256), a SPIRE
 * server (JWT-SVIDs, ES256) and a corporate OIDC IdP (people, ES256,
 * subject_claim: email) — each with its own JWKS file, shaped as that issuer
 * publishes it. Tokens are shaped exactly like the real ones. Each kind of
 * client connects (node-postgres, and psql the way the docs say) under its
 * policy rule; `session.start` carries the right subject, issuer, SPIFFE ID
 * and exactly the `record_claims` of its issuer (nested claims such as the
 * pod name, so an ephemeral pod is identified at connect time) and nothing
 * else. A token of one issuer signed with another issuer's key is refused, as
 * is a pod of a namespace no rule admits (policy_no_match), and nothing
 * refused reaches PostgreSQL. Every record written is schema-valid.
 */
import { execFile } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { decodeJwt, exportJWK, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK } from 'jose'
import pg from 'pg'
import pino from 'pino'
import t, { type Test } from 'tap'
import type { AuthFailureReason } from '../../src/evidence/types.js'
import { parseConfig } from '../../src/config/load.js'
import { createDevPki } from '../../src/dev/pki.js'
import { createDevIssuerKeys } from '../../src/dev/tokens.js'
import { ProxyServer } from '../../src/server.js'
import { startPostgres } from '../harness/postgres.js'
import { readValidAuditLog, recordsOfType, waitForRecords } from '../helpers/audit.js'

const run = promisify(execFile)

const K8S = 'https://kubernetes.default.svc.cluster.local'
const SPIRE = 'https://oidc-discovery.example.org'
const CORP = 'https://login.example.com/realms/corp'
const K8S_RECORD = ['kubernetes.io.namespace', 'kubernetes.io.serviceaccount.name', 'kubernetes.io.pod.name', 'kubernetes.io.pod.uid']
const NODE_NAME = 'ip-10-0-12-34.eu-west-1.compute.internal'

interface Signer {
  key: CryptoKey
  alg: 'RS256' | 'ES256'
  kid: string
}

const now = () => Math.floor(Date.now() / 1000)

interface Pod {
  namespace: string
  serviceAccount: string
  pod: string
  podUid: string
}

/** A projected service-account token as kube-apiserver (1.29+) issues it: header { alg, kid }, no typ. */
async function k8sToken(s: Signer, p: Pod): Promise<string> {
  const iat = now()
  return new SignJWT({
    aud: ['pgwitness'],
    exp: iat + 3607,
    iat,
    iss: K8S,
    jti: randomUUID(),
    'kubernetes.io': {
      namespace: p.namespace,
      node: { name: NODE_NAME, uid: randomUUID() },
      pod: { name: p.pod, uid: p.podUid },
      serviceaccount: { name: p.serviceAccount, uid: randomUUID() },
    },
    nbf: iat,
    sub: `system:serviceaccount:${p.namespace}:${p.serviceAccount}`,
  })
    .setProtectedHeader({ alg: s.alg, kid: s.kid })
    .sign(s.key)
}

/** A SPIRE JWT-SVID: aud, exp, iat, iss (SPIRE's jwt_issuer) and sub = the SPIFFE ID; nothing else. */
async function jwtSvid(s: Signer, spiffeId: string, iss = SPIRE): Promise<string> {
  const iat = now()
  return new SignJWT({ aud: ['pgwitness'], exp: iat + 300, iat, iss, sub: spiffeId })
    .setProtectedHeader({ alg: s.alg, kid: s.kid, typ: 'JWT' })
    .sign(s.key)
}

interface Person {
  sub: string
  email: string
  name: string
  username: string
  groups: string[]
}

/** An OIDC ID token for a person, as a Keycloak-like IdP issues it after the device flow. */
async function personToken(s: Signer, p: Person, iss = CORP): Promise<string> {
  const iat = now()
  const [given, family] = p.name.split(' ')
  return new SignJWT({
    exp: iat + 300,
    iat,
    auth_time: iat - 30,
    jti: randomUUID(),
    iss,
    aud: 'pgwitness',
    sub: p.sub,
    typ: 'ID',
    azp: 'pgwitness',
    sid: randomUUID(),
    email_verified: true,
    name: p.name,
    preferred_username: p.username,
    given_name: given,
    family_name: family,
    email: p.email,
    groups: p.groups,
  })
    .setProtectedHeader({ alg: s.alg, kid: s.kid, typ: 'JWT' })
    .sign(s.key)
}

const ALICE: Person = { sub: 'f3b1c9a2-5d7e-4e8f-9a0b-1c2d3e4f5a6b', email: 'alice@example.com', name: 'Alice Martin', username: 'amartin', groups: ['staff', 'dba'] }
const BOB: Person = { sub: '0a9b8c7d-6e5f-4a3b-2c1d-0e9f8a7b6c5d', email: 'bob@example.com', name: 'Bob Okafor', username: 'bokafor', groups: ['dba', 'oncall'] }
const DAVE: Person = { sub: '5e4d3c2b-1a09-4f8e-7d6c-5b4a39281706', email: 'dave@example.com', name: 'Dave Ng', username: 'dng', groups: ['staff'] }

t.test('one proxy, three real issuers', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgw-issuers-'))
  const cluster = await startPostgres({ settings: { log_connections: 'on' } })
  let proxy: ProxyServer | null = null
  const clients: pg.Client[] = []
  t.teardown(async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)))
    await proxy?.stop()
    await cluster.stop()
    rmSync(dir, { recursive: true, force: true })
  })
  // The upstream credentials only pgwitness knows.
  const passwords = { billing_rw: 'rw-' + randomUUID(), billing_ro: 'ro-' + randomUUID(), dba: 'dba-' + randomUUID() }
  await cluster.createRole('billing_rw', passwords.billing_rw, { database: 'billing' })
  await cluster.createRole('billing_ro', passwords.billing_ro)
  await cluster.createRole('dba', passwords.dba, { superuser: true })
  const pki = await createDevPki(path.join(dir, 'pki'))

  // Kubernetes: the API server's RSA service-account key; the JWKS is what
  // `kubectl get --raw /openid/v1/jwks` returns.
  const k8sPair = await generateKeyPair('RS256', { extractable: true })
  const k8s: Signer = { key: k8sPair.privateKey, alg: 'RS256', kid: 'Xb3kN8vZ0qPjR2sT5uW7yA9cE1gI4lO6mQ8rS0tU2wY' }
  const k8sJwks = path.join(dir, 'k8s', 'jwks.json')
  mkdirSync(path.dirname(k8sJwks), { recursive: true })
  writeFileSync(k8sJwks, JSON.stringify({ keys: [{ use: 'sig', ...(await exportJWK(k8sPair.publicKey)), kid: k8s.kid, alg: 'RS256' }] }))

  // SPIRE: an ES256 JWT key; the bundle as the Workload API / spiffe-helper
  // writes it (a plain JWKS: kty, kid, crv, x, y — no "use", no "alg").
  const spireKeys = await createDevIssuerKeys(path.join(dir, 'spire'), 'vGJ2ZkV5aF0pR1vQx8cM3nLw7tYs4uBe')
  const spireJwks = JSON.parse(readFileSync(spireKeys.jwksPath, 'utf8')) as { keys: JWK[] }
  writeFileSync(spireKeys.jwksPath, JSON.stringify({ keys: spireJwks.keys.map(({ use: _u, alg: _a, ...k }) => k) }))
  const spire: Signer = { key: (await importJWK(spireKeys.privateJwk, 'ES256')) as CryptoKey, alg: 'ES256', kid: spireKeys.privateJwk.kid! }

  // Corporate IdP: an ES256 signing key, published next to an RSA-OAEP
  // encryption key (as Keycloak's certs endpoint does).
  const corpKeys = await createDevIssuerKeys(path.join(dir, 'corp'), 'corp-sig-2024-11')
  const encPair = await generateKeyPair('RSA-OAEP', { extractable: true })
  const corpJwks = JSON.parse(readFileSync(corpKeys.jwksPath, 'utf8')) as { keys: JWK[] }
  corpJwks.keys.unshift({ ...(await exportJWK(encPair.publicKey)), kid: 'corp-enc-2024-11', use: 'enc', alg: 'RSA-OAEP' })
  writeFileSync(corpKeys.jwksPath, JSON.stringify(corpJwks))
  const corp: Signer = { key: (await importJWK(corpKeys.privateJwk, 'ES256')) as CryptoKey, alg: 'ES256', kid: corpKeys.privateJwk.kid! }

  const auditPath = path.join(dir, 'audit', 'audit.jsonl')
  const yaml = `
instance: issuers-test
listen: "127.0.0.1:0"
tls:
  cert: ${pki.serverCert}
  key: ${pki.serverKey}
identity:
  jwt:
    - issuer: ${K8S}
      audience: pgwitness
      jwks_file: ${k8sJwks}
      algorithms: [RS256]
      subject_claim: sub
      record_claims: ${JSON.stringify(K8S_RECORD)}
    - issuer: ${SPIRE}
      audience: pgwitness
      jwks_file: ${spireKeys.jwksPath}
      algorithms: [ES256, RS256]
      clock_skew_seconds: 10
    - issuer: ${CORP}
      audience: pgwitness
      jwks_file: ${corpKeys.jwksPath}
      algorithms: [RS256, ES256]
      subject_claim: email
      record_claims: [groups, email, name]
upstream:
  host: 127.0.0.1
  port: ${cluster.port}
  tls: { mode: disable }
  roles:
    billing_rw: { password: ${JSON.stringify(passwords.billing_rw)} }
    billing_ro: { password: ${JSON.stringify(passwords.billing_ro)} }
    dba: { password: ${JSON.stringify(passwords.dba)} }
policy:
  - name: k8s-billing
    match: { method: jwt, issuer: ${K8S}, claims: { "kubernetes.io.namespace": billing } }
    roles: [billing_rw]
    databases: [billing]
  - name: k8s-analytics-reports
    match: { method: jwt, issuer: ${K8S}, subject: "system:serviceaccount:analytics:report-*" }
    roles: [billing_ro]
    databases: [billing]
  - name: spiffe-billing
    match: { method: jwt, issuer: ${SPIRE}, subject: "spiffe://example.org/ns/billing/*" }
    roles: [billing_rw]
    databases: [billing]
  - name: dba
    match: { method: jwt, issuer: ${CORP}, claims: { groups: dba } }
    roles: [dba]
    databases: ["*"]
audit:
  log: ${auditPath}
  durability: batched
  fsync_interval: 20ms
limits:
  handshake_timeout: 10s
log: { level: ${process.env.PGW_TEST_LOG ?? 'warn'} }
`
  const configPath = path.join(dir, 'pgwitness.yaml')
  writeFileSync(configPath, yaml)
  const config = parseConfig(yaml, { baseDir: dir, source: configPath })
  proxy = await ProxyServer.start(config, pino({ level: config.log.level }, pino.destination(2)))
  const port = proxy.port

  const upstreamConnections = () => cluster.readLog().split('\n').filter((l) => l.includes('connection received:')).length
  let seq = 0
  const appName = (tag: string) => `issuers-${tag}-${++seq}`

  /** node-postgres through the proxy; the password may be a function, as a pod reading its token file uses it. */
  function connect(password: string | (() => Promise<string>), user: string, database: string, app: string): Promise<pg.Client> {
    const c = new pg.Client({
      host: '127.0.0.1',
      port,
      user,
      database,
      password,
      ssl: { rejectUnauthorized: false },
      application_name: app,
    })
    c.on('error', () => undefined)
    return c.connect().then(() => {
      clients.push(c)
      return c
    })
  }

  async function sessionStart(app: string) {
    const recs = await waitForRecords(auditPath, (rs) => recordsOfType(rs, 'session.start').some((r) => r.session.application_name === app))
    return recordsOfType(recs, 'session.start').find((r) => r.session.application_name === app)!
  }

  async function whoami(c: pg.Client) {
    const { rows } = await c.query<{ u: string; d: string }>('select current_user as u, current_database() as d')
    return rows[0]
  }

  /** The client is refused with FATAL `code`, an auth.failure `reason` is recorded, and nothing reaches PostgreSQL. */
  async function expectRefused(t: Test, token: string, want: { reason: AuthFailureReason; code: string; message: RegExp; user?: string; database?: string; issuer: string }) {
    const app = appName(want.reason)
    const before = upstreamConnections()
    const err = await connect(token, want.user ?? 'billing_rw', want.database ?? 'billing', app).then(
      async (c) => {
        await c.end()
        return null
      },
      (e: pg.DatabaseError) => e,
    )
    if (!err) {
      t.fail('the connection was accepted')
      return null
    }
    t.equal(err.severity, 'FATAL')
    t.equal(err.code, want.code, `SQLSTATE ${want.code}`)
    t.match(err.message, want.message, `says why: ${err.message}`)
    const recs = await waitForRecords(auditPath, (rs) => recordsOfType(rs, 'auth.failure').some((r) => r.requested.application_name === app))
    const rec = recordsOfType(recs, 'auth.failure').find((r) => r.requested.application_name === app)!
    t.equal(rec.reason, want.reason, `auth.failure ${want.reason}`)
    t.equal(rec.method, 'jwt')
    t.equal(rec.identity?.issuer, want.issuer, 'the claimed issuer is recorded')
    t.notOk(readFileSync(auditPath, 'utf8').includes(token.split('.')[2]!), 'the signature is never recorded')
    t.equal(upstreamConnections(), before, 'nothing reached PostgreSQL')
    return rec
  }

  t.test('a Kubernetes pod with its projected service-account token (node-postgres, token read from the volume)', async (t) => {
    const podA: Pod = { namespace: 'billing', serviceAccount: 'api', pod: 'api-7d9f8b6c5d-x2x7k', podUid: randomUUID() }
    const podB: Pod = { ...podA, pod: 'api-7d9f8b6c5d-q9w4z', podUid: randomUUID() }
    // The kubelet writes each pod's token into its projected volume; the
    // driver reads the file at every connect (the kubelet refreshes it).
    const tokenFile = (p: Pod) => path.join(dir, 'pods', p.pod, 'var/run/secrets/pgwitness/token')
    for (const p of [podA, podB]) {
      mkdirSync(path.dirname(tokenFile(p)), { recursive: true })
      writeFileSync(tokenFile(p), await k8sToken(k8s, p))
    }
    const apps = [appName('k8s-a'), appName('k8s-b')]
    const before = upstreamConnections()
    const [a, b] = await Promise.all([podA, podB].map((p, i) => connect(() => readFile(tokenFile(p), 'utf8'), 'billing_rw', 'billing', apps[i]!)))
    t.same(await whoami(a!), { u: 'billing_rw', d: 'billing' })
    t.same(await whoami(b!), { u: 'billing_rw', d: 'billing' })
    t.equal(upstreamConnections(), before + 2)

    for (const [i, p] of [podA, podB].entries()) {
      const start = await sessionStart(apps[i]!)
      const payload = decodeJwt(readFileSync(tokenFile(p), 'utf8'))
      t.same(start.identity, {
        method: 'jwt',
        subject: 'system:serviceaccount:billing:api',
        issuer: K8S,
        audience: ['pgwitness'],
        token_id: payload.jti,
        token_expires_at: new Date(payload.exp! * 1000).toISOString().replace('Z', '000Z'),
        spiffe_id: null,
        cert_sha256: null,
        claims: {
          'kubernetes.io.namespace': 'billing',
          'kubernetes.io.serviceaccount.name': 'api',
          'kubernetes.io.pod.name': p.pod,
          'kubernetes.io.pod.uid': p.podUid,
        },
        policy_rule: 'k8s-billing',
      }, `${p.pod}: identified at connect time, exactly the selected claims`)
      // Records are written as RFC 8785 canonical JSON (the hash chain's form): members, claims included, in sorted order.
      t.same(Object.keys(start.identity.claims), [...K8S_RECORD].sort(), 'exactly the record_claims, in canonical (sorted) order')
      t.match(start.upstream, { role: 'billing_rw', database: 'billing' })
    }
    t.notOk(readFileSync(auditPath, 'utf8').includes(NODE_NAME), 'claims not selected (the node) are never recorded')
  })

  t.test('a Kubernetes CronJob pod matched by service-account glob, with psql and a password file', async (t) => {
    const pod: Pod = { namespace: 'analytics', serviceAccount: 'report-nightly', pod: 'report-nightly-28551360-9wq4s', podUid: randomUUID() }
    // libpq does not read a bare token file: the docs' wrapper writes one
    // wildcard .pgpass line holding the token (mode 0600).
    const passfile = path.join(dir, 'pods', pod.pod, '.pgpass')
    mkdirSync(path.dirname(passfile), { recursive: true })
    writeFileSync(passfile, `*:*:*:*:${await k8sToken(k8s, pod)}\n`, { mode: 0o600 })
    const app = appName('k8s-cron')
    const { PGPASSWORD: _none, ...env } = process.env
    const { stdout } = await run('psql', ['-XAtc', 'select current_user'], {
      env: {
        ...env,
        PGHOST: '127.0.0.1', PGPORT: String(port), PGUSER: 'billing_ro', PGDATABASE: 'billing',
        PGPASSFILE: passfile, PGSSLMODE: 'require', PGAPPNAME: app, PGCONNECT_TIMEOUT: '10',
      },
      timeout: 20_000,
    })
    t.equal(stdout.trim(), 'billing_ro')
    const start = await sessionStart(app)
    t.equal(start.identity.subject, 'system:serviceaccount:analytics:report-nightly')
    t.equal(start.identity.policy_rule, 'k8s-analytics-reports')
    t.same(start.identity.claims, {
      'kubernetes.io.namespace': 'analytics',
      'kubernetes.io.serviceaccount.name': 'report-nightly',
      'kubernetes.io.pod.name': pod.pod,
      'kubernetes.io.pod.uid': pod.podUid,
    })
  })

  t.test('a SPIFFE workload with its JWT-SVID', async (t) => {
    const id = 'spiffe://example.org/ns/billing/sa/api'
    const token = await jwtSvid(spire, id)
    const payload = decodeJwt(token)
    t.same(Object.keys(payload).sort(), ['aud', 'exp', 'iat', 'iss', 'sub'], 'the SVID carries no other claims')
    const app = appName('svid')
    const c = await connect(token, 'billing_rw', 'billing', app)
    t.same(await whoami(c), { u: 'billing_rw', d: 'billing' })
    const start = await sessionStart(app)
    t.same(start.identity, {
      method: 'jwt',
      subject: id,
      issuer: SPIRE,
      audience: ['pgwitness'],
      token_id: null,
      token_expires_at: new Date(payload.exp! * 1000).toISOString().replace('Z', '000Z'),
      spiffe_id: id,
      cert_sha256: null,
      claims: {},
      policy_rule: 'spiffe-billing',
    })
  })

  t.test('a DBA with a token from the corporate IdP (node-postgres and psql)', async (t) => {
    const token = await personToken(corp, ALICE)
    const app = appName('dba')
    const c = await connect(token, 'dba', 'postgres', app)
    t.same(await whoami(c), { u: 'dba', d: 'postgres' })
    const start = await sessionStart(app)
    const payload = decodeJwt(token)
    t.same(start.identity, {
      method: 'jwt',
      subject: 'alice@example.com',
      issuer: CORP,
      audience: ['pgwitness'],
      token_id: payload.jti,
      token_expires_at: new Date(payload.exp! * 1000).toISOString().replace('Z', '000Z'),
      spiffe_id: null,
      cert_sha256: null,
      claims: { groups: ['staff', 'dba'], email: 'alice@example.com', name: 'Alice Martin' },
      policy_rule: 'dba',
    }, 'subject_claim email; exactly groups, email, name')
    const log = readFileSync(auditPath, 'utf8')
    t.notOk(log.includes(ALICE.sub), 'the opaque sub is not recorded (not selected)')
    t.notOk(log.includes(ALICE.username), 'nor preferred_username')

    // Another admin, the same upstream role, with psql and PGPASSWORD as the docs show.
    const bobApp = appName('dba-psql')
    const { stdout } = await run('psql', ['-XAtc', 'select current_user'], {
      env: {
        ...process.env,
        PGHOST: '127.0.0.1', PGPORT: String(port), PGUSER: 'dba', PGDATABASE: 'billing',
        PGPASSWORD: await personToken(corp, BOB), PGSSLMODE: 'require', PGAPPNAME: bobApp, PGCONNECT_TIMEOUT: '10',
      },
      timeout: 20_000,
    })
    t.equal(stdout.trim(), 'dba')
    const bob = await sessionStart(bobApp)
    t.equal(bob.identity.subject, 'bob@example.com')
    t.same(bob.identity.claims, { groups: ['dba', 'oncall'], email: 'bob@example.com', name: 'Bob Okafor' })
    t.equal(bob.upstream.role, start.upstream.role, 'same upstream role, different people on record')
  })

  t.test('a person outside the dba group is refused', async (t) => {
    const rec = await expectRefused(t, await personToken(corp, DAVE), {
      reason: 'policy_no_match', code: '28000', message: /policy/, user: 'dba', database: 'postgres', issuer: CORP,
    })
    t.equal(rec?.identity?.subject, 'dave@example.com', 'the refused person is named')
  })

  t.test('a pod of a namespace no rule admits is refused by policy', async (t) => {
    const pod: Pod = { namespace: 'other', serviceAccount: 'api', pod: 'api-5c6d7e8f9-abcde', podUid: randomUUID() }
    const rec = await expectRefused(t, await k8sToken(k8s, pod), {
      reason: 'policy_no_match', code: '28000', message: /policy/, issuer: K8S,
    })
    t.equal(rec?.identity?.subject, 'system:serviceaccount:other:api', 'the refused workload is named')
    t.same(rec?.identity?.claims, {
      'kubernetes.io.namespace': 'other',
      'kubernetes.io.serviceaccount.name': 'api',
      'kubernetes.io.pod.name': pod.pod,
      'kubernetes.io.pod.uid': pod.podUid,
    }, 'down to the pod')
    t.equal(rec?.identity?.policy_rule, null)
  })

  t.test('a token of one issuer signed with another issuer\'s key is refused', async (t) => {
    const pod: Pod = { namespace: 'billing', serviceAccount: 'api', pod: 'api-7d9f8b6c5d-x2x7k', podUid: randomUUID() }
    const otherRsa = await generateKeyPair('RS256', { extractable: true })
    const cases: [string, Promise<string>, AuthFailureReason, string][] = [
      ['corporate token, SPIRE key and kid', personToken({ ...spire }, ALICE), 'token_signature_invalid', CORP],
      ['corporate token, SPIRE key, the IdP\'s kid', personToken({ ...spire, kid: corp.kid }, ALICE), 'token_signature_invalid', CORP],
      ['SVID, IdP key and kid', jwtSvid({ ...corp }, 'spiffe://example.org/ns/billing/sa/api'), 'token_signature_invalid', SPIRE],
      ['SVID, Kubernetes RSA key and kid', jwtSvid({ ...k8s }, 'spiffe://example.org/ns/billing/sa/api'), 'token_signature_invalid', SPIRE],
      ['Kubernetes token, a foreign RSA key with the cluster\'s kid', k8sToken({ key: otherRsa.privateKey, alg: 'RS256', kid: k8s.kid }, pod), 'token_signature_invalid', K8S],
      ['Kubernetes token, SPIRE ES256 key', k8sToken({ ...spire }, pod), 'algorithm_not_allowed', K8S],
    ]
    for (const [what, token, reason, issuer] of cases) {
      await t.test(what, async (t) => {
        await expectRefused(t, await token, {
          reason, issuer, code: '28P01', message: reason === 'algorithm_not_allowed' ? /algorithm/ : /key|signature/,
        })
      })
    }
  })

  t.test('every record written is schema-valid', async (t) => {
    await Promise.all(clients.splice(0).map((c) => c.end().catch(() => undefined)))
    const recs = await waitForRecords(auditPath, (rs) =>
      recordsOfType(rs, 'session.end').length >= recordsOfType(rs, 'session.start').length)
    t.ok(recordsOfType(recs, 'session.start').length >= 6, 'the sessions were recorded')
    const all = readValidAuditLog(auditPath)
    t.ok(all.length >= recs.length, `${all.length} records, all valid`)
  })
})
