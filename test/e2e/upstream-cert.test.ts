/**
 * Item 6 (Upstream identity of the proxy): certificate authentication to
 * PostgreSQL. The proxy presents a client certificate per upstream role
 * (`upstream.roles.ROLE: { cert, key }`) over verify-full TLS, and a
 * `hostssl … cert` rule logs it in with no password. Failures reach the client
 * as a clear FATAL and an auth.failure record; key material appears nowhere.
 */
import t, { type Test } from 'tap'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import pg from 'pg'
import pino from 'pino'
import { ConfigError, parseConfig } from '../../src/config/load.js'
import { createDevPki, issueClientCert, type DevPki } from '../../src/dev/pki.js'
import { createDevIssuerKeys, DEV_AUDIENCE, DEV_ISSUER, mintDevToken, type DevIssuerKeys } from '../../src/dev/tokens.js'
import { ProxyServer } from '../../src/server.js'
import { startPostgres, type PgCluster } from '../harness/postgres.js'
import { readValidAuditLog, recordsOfType, waitForRecords, type RecordOfType } from '../helpers/audit.js'

interface CertFiles {
  cert: string
  key: string
}

interface Shared {
  dir: string
  pki: DevPki
  issuer: DevIssuerKeys
  /** TLS 1.3 (the default): the server checks the client certificate after the client's handshake is done. */
  cluster: PgCluster
  /** ssl_max_protocol_version TLSv1.2: the server checks the client certificate during the handshake. */
  cluster12: PgCluster
  /** CN app, issued by the CA the server trusts. */
  app: CertFiles
  /** CN not-app, same CA. */
  wrongCn: CertFiles
  /** CN reporter, same CA (the server asks reporter for a password). */
  reporter: CertFiles
  /** CN app, issued by a CA the server does not trust. */
  foreign: CertFiles
  reporterPassword: string
}

async function startShared(): Promise<Shared> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgw-upstream-cert-'))
  const [pki, otherPki, issuer] = await Promise.all([
    createDevPki(path.join(dir, 'pki')),
    createDevPki(path.join(dir, 'other-pki')),
    createDevIssuerKeys(path.join(dir, 'issuer')),
  ])
  const [app, wrongCn, reporter, foreign] = await Promise.all([
    issueClientCert(pki, 'upstream-app', { cn: 'app' }),
    issueClientCert(pki, 'upstream-wrong-cn', { cn: 'not-app' }),
    issueClientCert(pki, 'upstream-reporter', { cn: 'reporter' }),
    issueClientCert(otherPki, 'upstream-foreign', { cn: 'app' }),
  ])
  const reporterPassword = 'reporter-' + Math.random().toString(36).slice(2)
  const start = async (settings: Record<string, string>): Promise<PgCluster> => {
    const cluster = await startPostgres({
      // ssl_ca_file: the server requests and verifies client certificates.
      ssl: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert },
      hba: [
        'local all all trust',
        'hostssl all app 127.0.0.1/32 cert',
        'hostssl all reporter 127.0.0.1/32 scram-sha-256',
        // The harness's own admin channel: postgres + password over TLS.
        'hostssl all postgres 127.0.0.1/32 scram-sha-256',
        'host all all 127.0.0.1/32 reject',
      ],
      settings,
    })
    try {
      // `app` has no password at all: only its certificate can log it in.
      await cluster.createRole('app', null, { database: 'appdb' })
      await cluster.createRole('reporter', reporterPassword)
    } catch (err) {
      await cluster.stop()
      throw err
    }
    return cluster
  }
  const started = await Promise.allSettled([start({}), start({ ssl_max_protocol_version: 'TLSv1.2' })])
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failed) {
    await Promise.all(started.map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)))
    throw failed.reason
  }
  const [cluster, cluster12] = started.map((r) => (r as PromiseFulfilledResult<PgCluster>).value) as [PgCluster, PgCluster]
  return { dir, pki, issuer, cluster, cluster12, app, wrongCn, reporter, foreign, reporterPassword }
}

const sharedStart = startShared()
sharedStart.catch(() => undefined) // a failed start is reported by the test awaiting it
t.teardown(async () => {
  const s = await sharedStart.catch(() => null)
  await Promise.all([s?.cluster.stop(), s?.cluster12.stop()])
  if (s) rmSync(s.dir, { recursive: true, force: true })
})

interface MiniProxy {
  proxy: ProxyServer
  auditPath: string
  /** Everything the proxy logged (level trace). */
  logs: string[]
  token(): Promise<string>
  client(o?: { user?: string; database?: string }): Promise<pg.Client>
}

let proxyCount = 0

/** The proxy config: verify-full upstream TLS with the dev CA, and the given `upstream.roles` body. */
function configYaml(
  s: Shared,
  n: number,
  rolesYaml: string,
  tlsYaml = `{ mode: verify-full, ca: ${s.pki.caCert} }`,
  cluster: PgCluster = s.cluster,
): string {
  return `
instance: upstream-cert-test-${n}
listen: "127.0.0.1:0"
tls:
  cert: ${s.pki.serverCert}
  key: ${s.pki.serverKey}
identity:
  jwt:
    - issuer: ${DEV_ISSUER}
      audience: ${DEV_AUDIENCE}
      jwks_file: ${s.issuer.jwksPath}
upstream:
  host: 127.0.0.1
  port: ${cluster.port}
  tls: ${tlsYaml}
  roles:
${rolesYaml.replace(/^/gm, '    ')}
policy:
  - name: billing-app
    match: { issuer: ${DEV_ISSUER}, subject: "spiffe://test.local/ns/billing/*" }
    roles: [app, reporter]
    databases: [appdb, postgres]
audit:
  log: ${path.join(s.dir, `audit-${n}`, 'audit.jsonl')}
  durability: batched
  fsync_interval: 20ms
log: { level: trace }
`
}

async function miniProxy(tt: Test, rolesYaml: string, o: { tls12?: boolean } = {}): Promise<MiniProxy> {
  const s = await sharedStart
  const n = ++proxyCount
  const yaml = configYaml(s, n, rolesYaml, undefined, o.tls12 ? s.cluster12 : s.cluster)
  const cfgPath = path.join(s.dir, `pgwitness-${n}.yaml`)
  writeFileSync(cfgPath, yaml)
  const config = parseConfig(yaml, { baseDir: s.dir, source: cfgPath })
  const logs: string[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(chunk.toString('utf8'))
      cb()
    },
  })
  const proxy = await ProxyServer.start(config, pino({ level: 'trace' }, sink))
  const clients: pg.Client[] = []
  tt.teardown(async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)))
    await proxy.stop()
  })
  const token = () => mintDevToken(s.issuer.privateJwk, { subject: 'spiffe://test.local/ns/billing/sa/api' })
  return {
    proxy,
    auditPath: config.audit.log!,
    logs,
    token,
    async client(o = {}) {
      const c = new pg.Client({
        host: '127.0.0.1',
        port: proxy.port,
        user: o.user ?? 'app',
        database: o.database ?? 'appdb',
        password: await token(),
        ssl: { rejectUnauthorized: false },
        application_name: 'pgw-upstream-cert-test',
        connectionTimeoutMillis: 15_000,
      })
      c.on('error', () => undefined)
      clients.push(c)
      await c.connect()
      return c
    },
  }
}

/** Connects through the proxy; resolves to the connect error (fails the test if it connects). */
async function connectError(tt: Test, p: MiniProxy, o: { user?: string; database?: string } = {}): Promise<Error & { code?: string; severity?: string }> {
  try {
    await p.client(o)
  } catch (err) {
    return err as Error & { code?: string; severity?: string }
  }
  tt.fail('connected, but a connection error was expected')
  return new Error('connected')
}

/** The one auth.failure of this proxy's audit log (and no session.start). */
async function onlyAuthFailure(tt: Test, auditPath: string): Promise<RecordOfType<'auth.failure'>> {
  const recs = await waitForRecords(auditPath, (rs) => rs.some((r) => r.type === 'auth.failure'))
  readValidAuditLog(auditPath)
  const fails = recordsOfType(recs, 'auth.failure')
  tt.equal(fails.length, 1, 'one auth.failure record')
  tt.equal(recordsOfType(recs, 'session.start').length, 0, 'no session.start')
  return fails[0]!
}

/** The base64 lines of a PEM private key: any of them in a log would be key material. */
function keyMaterial(keyFile: string): string[] {
  const lines = readFileSync(keyFile, 'utf8').split('\n').map((l) => l.trim())
  const body = lines.filter((l) => l.length >= 16 && !l.startsWith('-----'))
  if (body.length === 0) throw new Error(`no key material found in ${keyFile}`)
  return body
}

function assertNoKeyMaterial(tt: Test, haystacks: Record<string, string>, keyFiles: string[]): void {
  const secrets = keyFiles.flatMap(keyMaterial)
  for (const [where, text] of Object.entries(haystacks)) {
    tt.notOk(secrets.some((sec) => text.includes(sec)), `no private key material in ${where}`)
    tt.notOk(/PRIVATE KEY/.test(text), `no PEM private key block in ${where}`)
  }
}

t.test('certificate authentication: the proxy presents the role\'s client certificate, no password', async (t) => {
  const s = await sharedStart
  const p = await miniProxy(t, `app: { cert: ${s.app.cert}, key: ${s.app.key} }`)
  const c = await p.client()
  const r = await c.query<{ who: string; db: string; pid: number; ssl: boolean; version: string; client_dn: string | null }>(
    'select current_user as who, current_database() as db, pg_backend_pid() as pid, ssl, version, client_dn ' +
      'from pg_stat_ssl where pid = pg_backend_pid()',
  )
  t.equal(r.rows.length, 1)
  t.equal(r.rows[0]?.who, 'app', 'logged in upstream as app')
  t.equal(r.rows[0]?.db, 'appdb')
  t.equal(r.rows[0]?.ssl, true, 'the upstream connection is TLS')
  t.equal(r.rows[0]?.version, 'TLSv1.3')
  t.equal(r.rows[0]?.client_dn, '/CN=app', 'PostgreSQL saw the proxy\'s client certificate for app')
  // Twice over the same proxy: no per-connection state goes stale.
  const c2 = await p.client()
  const r2 = await c2.query<{ client_dn: string }>('select client_dn from pg_stat_ssl where pid = pg_backend_pid()')
  t.equal(r2.rows[0]?.client_dn, '/CN=app')
  await c.end()
  await c2.end()

  const recs = await waitForRecords(p.auditPath, (rs) => recordsOfType(rs, 'session.end').length === 2)
  readValidAuditLog(p.auditPath)
  const starts = recordsOfType(recs, 'session.start')
  t.equal(starts.length, 2)
  t.equal(starts[0]?.upstream.role, 'app')
  t.equal(starts[0]?.upstream.backend_pid, r.rows[0]?.pid, 'upstream.backend_pid is the real backend')
  t.equal(recordsOfType(recs, 'auth.failure').length, 0)
  t.notMatch(s.cluster.readLog(), /authentication failed for user "app"/)
  t.ok(p.logs.length > 0, 'the proxy did log at trace level')
  assertNoKeyMaterial(t, { 'the audit log': readFileSync(p.auditPath, 'utf8'), 'the proxy log': p.logs.join('') }, [s.app.key])
})

t.test('a certificate whose CN is not the role: the server refuses, 28000 upstream_auth_failed', async (t) => {
  const s = await sharedStart
  const p = await miniProxy(t, `app: { cert: ${s.wrongCn.cert}, key: ${s.wrongCn.key} }`)
  const err = await connectError(t, p)
  t.comment(`client error: ${err.code} ${err.message}`)
  t.equal(err.severity, 'FATAL')
  t.equal(err.code, '28000', 'invalid_authorization_specification, as the server reported it')
  t.match(err.message, /upstream authentication failed for role "app"/)
  t.match(err.message, /certificate authentication failed for user "app"/, 'the server\'s reason reaches the client')
  const rec = await onlyAuthFailure(t, p.auditPath)
  t.equal(rec.reason, 'upstream_auth_failed')
  t.equal(rec.method, 'jwt')
  t.match(rec.detail, /certificate authentication failed for user "app"/)
  t.equal(rec.identity?.subject, 'spiffe://test.local/ns/billing/sa/api', 'the client identity was established first')
  t.match(s.cluster.readLog(), /provided user name \(app\) and authenticated user name \(not-app\) do not match/)
  assertNoKeyMaterial(
    t,
    { 'the audit log': readFileSync(p.auditPath, 'utf8'), 'the proxy log': p.logs.join(''), 'the client error': err.message },
    [s.wrongCn.key],
  )
})

t.test('a certificate from a CA the server does not trust: clear FATAL, upstream_auth_failed', async (t) => {
  const s = await sharedStart
  const p = await miniProxy(t, `app: { cert: ${s.foreign.cert}, key: ${s.foreign.key} }`)
  const err = await connectError(t, p)
  t.comment(`client error: ${err.code} ${err.message}`)
  t.equal(err.severity, 'FATAL')
  t.equal(err.code, '28000')
  t.match(err.message, /upstream server refused the client certificate of role "app"/)
  t.match(err.message, /upstream\.roles\.app\.cert/, 'names the config key')
  const rec = await onlyAuthFailure(t, p.auditPath)
  t.equal(rec.reason, 'upstream_auth_failed')
  t.match(rec.detail, /refused the client certificate/)
  assertNoKeyMaterial(
    t,
    { 'the audit log': readFileSync(p.auditPath, 'utf8'), 'the proxy log': p.logs.join(''), 'the client error': err.message },
    [s.foreign.key],
  )
})

t.test('TLS 1.2 upstream: the certificate logs in; an untrusted one is refused during the handshake', async (t) => {
  const s = await sharedStart
  t.test('certificate login', async (t) => {
    const p = await miniProxy(t, `app: { cert: ${s.app.cert}, key: ${s.app.key} }`, { tls12: true })
    const c = await p.client()
    const r = await c.query<{ who: string; version: string; client_dn: string }>(
      'select current_user as who, version, client_dn from pg_stat_ssl where pid = pg_backend_pid()',
    )
    t.same(r.rows, [{ who: 'app', version: 'TLSv1.2', client_dn: '/CN=app' }])
    await c.end()
  })
  t.test('untrusted certificate', async (t) => {
    const p = await miniProxy(t, `app: { cert: ${s.foreign.cert}, key: ${s.foreign.key} }`, { tls12: true })
    const err = await connectError(t, p)
    t.comment(`client error: ${err.code} ${err.message}`)
    t.equal(err.code, '28000')
    t.match(err.message, /upstream server refused the client certificate of role "app" \(upstream\.roles\.app\.cert\)/)
    const rec = await onlyAuthFailure(t, p.auditPath)
    t.equal(rec.reason, 'upstream_auth_failed')
  })
})

t.test('the server asks for a password although a certificate was presented, and the role has none', async (t) => {
  const s = await sharedStart
  // reporter's pg_hba rule is scram-sha-256, not cert.
  const p = await miniProxy(t, `reporter: { cert: ${s.reporter.cert}, key: ${s.reporter.key} }`)
  const err = await connectError(t, p, { user: 'reporter', database: 'postgres' })
  t.comment(`client error: ${err.code} ${err.message}`)
  t.equal(err.code, '28P01')
  t.match(err.message, /asks for a password for role "reporter"/)
  t.match(err.message, /client certificate/)
  t.match(err.message, /upstream\.roles/, 'says where the credential is missing')
  const rec = await onlyAuthFailure(t, p.auditPath)
  t.equal(rec.reason, 'upstream_auth_failed')
  t.match(rec.detail, /upstream\.roles/)
})

t.test('no certificate configured for a role the server authenticates by certificate', async (t) => {
  const p = await miniProxy(t, 'app: {}')
  const err = await connectError(t, p)
  t.comment(`client error: ${err.code} ${err.message}`)
  t.equal(err.code, '28000')
  t.match(err.message, /upstream authentication failed for role "app"/)
  t.match(err.message, /certificate/i, 'the server says it wants a certificate')
  const rec = await onlyAuthFailure(t, p.auditPath)
  t.equal(rec.reason, 'upstream_auth_failed')
})

t.test('a key that does not belong to the certificate: clear FATAL naming the config key, no key material', async (t) => {
  const s = await sharedStart
  const p = await miniProxy(t, `app: { cert: ${s.app.cert}, key: ${s.wrongCn.key} }`)
  const err = await connectError(t, p)
  t.comment(`client error: ${err.code} ${err.message}`)
  t.equal(err.severity, 'FATAL')
  t.equal(err.code, '08004')
  t.match(err.message, /client certificate of upstream role "app" cannot be used/)
  t.match(err.message, /upstream\.roles\.app\.cert/)
  const rec = await onlyAuthFailure(t, p.auditPath)
  t.equal(rec.reason, 'upstream_unavailable')
  assertNoKeyMaterial(
    t,
    { 'the audit log': readFileSync(p.auditPath, 'utf8'), 'the proxy log': p.logs.join(''), 'the client error': err.message },
    [s.wrongCn.key, s.app.key],
  )
})

t.test('config errors name the key', async (t) => {
  const s = await sharedStart
  const rejects = (yaml: string, key: string, problem: RegExp): void => {
    try {
      parseConfig(yaml, { baseDir: s.dir, source: null })
      t.fail(`expected a ConfigError for ${key}`)
    } catch (err) {
      t.ok(err instanceof ConfigError, String(err))
      t.equal((err as ConfigError).key, key, (err as Error).message)
      t.match((err as ConfigError).problem, problem)
      t.notOk(keyMaterial(s.app.key).some((l) => (err as Error).message.includes(l)), 'no key material in the message')
    }
  }
  rejects(configYaml(s, 0, `app: { cert: ${s.app.cert} }`), 'upstream.roles.app.key', /is required with cert/)
  rejects(configYaml(s, 0, `app: { key: ${s.app.key} }`), 'upstream.roles.app.cert', /is required with key/)
  rejects(
    configYaml(s, 0, `app: { cert: ${s.app.cert}, key: ${s.app.key} }`, '{ mode: disable }'),
    'upstream.tls.mode',
    /must be require or verify-full: upstream\.roles\.app\.cert is a client certificate/,
  )
  rejects(
    configYaml(s, 0, `app: { cert: ${s.app.cert}, key: ${s.app.key}, password: x }`),
    'upstream.roles.app.password',
    /cannot be combined with cert and key/,
  )
  rejects(configYaml(s, 0, `app: { cert: ${s.app.key}, key: ${s.app.key} }`), 'upstream.roles.app.cert', /does not contain a PEM certificate/)
  rejects(configYaml(s, 0, `app: { cert: ${s.app.cert}, key: ${s.app.cert} }`), 'upstream.roles.app.key', /does not contain a PEM private key/)
  // mode require is enough (the server is not verified, but the certificate is presented).
  const c = parseConfig(configYaml(s, 0, `app: { cert: ${s.app.cert}, key: ${s.app.key} }`, '{ mode: require }'), { baseDir: s.dir, source: null })
  t.equal(c.upstream.roles.app?.clientCert?.certPath, s.app.cert)
  t.equal(c.upstream.roles.app?.clientCert?.cert, readFileSync(s.app.cert, 'utf8'))
  t.equal(c.upstream.roles.app?.password, null)
})
