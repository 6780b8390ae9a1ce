/**
 * Item 6 (Upstream): the proxy logs in to PostgreSQL as the mapped role with
 * its own credentials (SCRAM-SHA-256, md5, trust; TLS disable / require /
 * verify-full), and upstream failures reach the client as a clear FATAL and
 * an auth.failure record, never leaking a credential.
 */
import t, { type Test } from 'tap'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import pg from 'pg'
import pino from 'pino'
import { parseConfig } from '../../src/config/load.js'
import { createDevPki, type DevPki } from '../../src/dev/pki.js'
import { createDevIssuerKeys, DEV_AUDIENCE, DEV_ISSUER, mintDevToken, type DevIssuerKeys } from '../../src/dev/tokens.js'
import { ProxyServer } from '../../src/server.js'
import { startPostgres, type PgCluster } from '../harness/postgres.js'
import { freePort } from '../harness/net.js'
import { startFixture } from '../helpers/proxy.js'
import { readValidAuditLog, recordsOfType, waitForRecords, type RecordOfType } from '../helpers/audit.js'

/** Connect with pg through a proxy; resolves to the connect error (fails the test if it connects). */
async function connectError(tt: Test, port: number, password: string, o: { user?: string; database?: string } = {}): Promise<Error & { code?: string; severity?: string }> {
  const c = new pg.Client({
    host: '127.0.0.1',
    port,
    user: o.user ?? 'app',
    database: o.database ?? 'appdb',
    password,
    ssl: { rejectUnauthorized: false },
    application_name: 'pgw-upstream-test',
    connectionTimeoutMillis: 15_000,
  })
  c.on('error', () => undefined)
  try {
    await c.connect()
  } catch (err) {
    return err as Error & { code?: string }
  }
  await c.end().catch(() => undefined)
  tt.fail('connected, but a connection error was expected')
  return new Error('connected')
}

/** The one auth.failure written after the first `mark` records (and no session.start). */
async function onlyAuthFailure(tt: Test, auditPath: string, mark = 0): Promise<RecordOfType<'auth.failure'>> {
  const recs = (await waitForRecords(auditPath, (rs) => rs.slice(mark).some((r) => r.type === 'auth.failure'))).slice(mark)
  readValidAuditLog(auditPath)
  const fails = recordsOfType(recs, 'auth.failure')
  tt.equal(fails.length, 1, 'one auth.failure record')
  tt.equal(recordsOfType(recs, 'session.start').length, 0, 'no session.start')
  return fails[0]!
}

/** Runs a query through the proxy and checks the session it ran in (the only session of that audit log, or the one after `mark`). */
async function sessionWorks(
  tt: Test,
  f: { client(): Promise<pg.Client>; auditPath: string },
  expectSsl: boolean,
  o: { role?: string; database?: string; mark?: number } = {},
): Promise<void> {
  const role = o.role ?? 'app'
  const database = o.database ?? 'appdb'
  const mark = o.mark ?? 0
  const c = await f.client()
  const r = await c.query<{ who: string; db: string; pid: number; ssl: boolean | null }>(
    'select current_user as who, current_database() as db, pg_backend_pid() as pid, ' +
      '(select ssl from pg_stat_ssl where pid = pg_backend_pid()) as ssl',
  )
  tt.same(r.rows[0]?.who, role, 'logged in upstream as the mapped role')
  tt.same(r.rows[0]?.db, database)
  tt.equal(r.rows[0]?.ssl, expectSsl, `pg_stat_ssl.ssl is ${expectSsl}`)
  await c.end()
  const recs = (await waitForRecords(f.auditPath, (rs) => rs.slice(mark).some((x) => x.type === 'session.end'))).slice(mark)
  readValidAuditLog(f.auditPath)
  const start = recordsOfType(recs, 'session.start')
  tt.equal(start.length, 1)
  tt.equal(start[0]?.upstream.role, role)
  tt.equal(start[0]?.upstream.database, database)
  tt.equal(start[0]?.upstream.backend_pid, r.rows[0]?.pid, 'upstream.backend_pid is the real backend')
  tt.equal(recordsOfType(recs, 'auth.failure').length, 0)
}

function assertNoSecret(tt: Test, haystacks: Record<string, string>, secrets: string[]): void {
  for (const [where, text] of Object.entries(haystacks)) {
    for (const s of secrets) tt.notOk(text.includes(s), `no credential in ${where}`)
  }
}

// ---------------------------------------------------------------------------
// Upstream authentication methods, via the standard fixture. Each needs its
// own cluster; they start in parallel (a cluster takes seconds to start) and
// the tests use them in turn.

const wrongPassword = 'wrong-Upstream-Secret-' + Math.random().toString(36).slice(2)
// Default (scram-sha-256) cluster; role `app` has a WRONG password in the
// config, `postgres` the right one, `reporter` none.
const fxScram = startFixture({ appPasswordInConfig: wrongPassword })
const fxMd5 = startFixture({ pg: { auth: 'md5' } })
const fxTrust = startFixture({ pg: { auth: 'trust' }, appPasswordInConfig: null })
const fixtures = [fxScram, fxMd5, fxTrust]
for (const p of fixtures) p.catch(() => undefined) // a failed start is reported by the test awaiting it
t.teardown(async () => {
  await Promise.all(
    fixtures.map(async (p) => {
      const f = await p.catch(() => null)
      await f?.stop()
      if (f) rmSync(f.dir, { recursive: true, force: true })
    }),
  )
})

t.test('SCRAM-SHA-256 upstream (fixture default), then failures on the same cluster', async (t) => {
  const f = await fxScram
  const dbaToken = () => f.token({ subject: 'alice', claims: { groups: ['dba'] } })

  t.test('SCRAM-SHA-256 login', async (t) => {
    const enc = await f.pg.query("select rolname, rolpassword like 'SCRAM-SHA-256$%' as scram from pg_authid where rolname in ('app', 'postgres') order by 1")
    t.same(enc.map((r) => r.scram), [true, true], 'the role passwords are SCRAM-encrypted')
    t.match(readFileSync(path.join(f.pg.dataDir, 'pg_hba.conf'), 'utf8'), /host\s+all\s+all\s+127\.0\.0\.1\/32\s+scram-sha-256/)
    // `postgres` has its right password in the config (the dba rule grants any role).
    await sessionWorks(t, { auditPath: f.auditPath, client: async () => f.client({ token: await dbaToken(), user: 'postgres', database: 'postgres' }) }, false, { role: 'postgres', database: 'postgres' })
  })

  t.test('wrong upstream password in config: 28P01 upstream_auth_failed, the password appears nowhere', async (t) => {
    const mark = readValidAuditLog(f.auditPath).length
    const token = await f.token()
    const err = await connectError(t, f.proxy.port, token)
    t.equal(err.code, '28P01', 'invalid_password, as the server reported it')
    t.equal(err.severity, 'FATAL')
    t.match(err.message, /upstream authentication failed/i)
    t.match(err.message, /"app"/, 'names the role')
    const rec = await onlyAuthFailure(t, f.auditPath, mark)
    t.equal(rec.reason, 'upstream_auth_failed')
    t.equal(rec.method, 'jwt')
    t.match(rec.detail, /upstream authentication failed/i)
    t.equal(rec.identity?.subject, 'spiffe://test.local/ns/billing/sa/api', 'the client identity was established before the upstream login')
    t.same(rec.requested, { user: 'app', database: 'appdb', application_name: 'pgw-upstream-test' })
    assertNoSecret(t, { 'the client error': JSON.stringify({ ...err, message: err.message }), 'the audit log': readFileSync(f.auditPath, 'utf8') }, [wrongPassword, f.appPassword, token])
    // The server saw a real authentication attempt for the role (not a proxy-side refusal).
    t.match(f.pg.readLog(), /password authentication failed for user "app"/)
  })

  t.test('upstream role without a configured password on a scram server', async (t) => {
    const mark = readValidAuditLog(f.auditPath).length
    // `reporter` exists upstream with a password, but upstream.roles has no entry for it; the dba rule grants any role.
    const err = await connectError(t, f.proxy.port, await dbaToken(), { user: 'reporter', database: 'postgres' })
    t.equal(err.code, '28P01')
    t.match(err.message, /upstream\.roles/, 'says where the credential is missing')
    t.match(err.message, /"reporter"/)
    const rec = await onlyAuthFailure(t, f.auditPath, mark)
    t.equal(rec.reason, 'upstream_auth_failed')
    t.match(rec.detail, /upstream\.roles/)
    t.equal(rec.identity?.policy_rule, null, 'no session was admitted')
  })

  t.test('a database that does not exist upstream: the server error reaches the client, upstream_rejected', async (t) => {
    const mark = readValidAuditLog(f.auditPath).length
    const err = await connectError(t, f.proxy.port, await dbaToken(), { user: 'postgres', database: 'no_such_db' })
    t.equal(err.code, '3D000', 'invalid_catalog_name, as the server said')
    t.match(err.message, /no_such_db/)
    const rec = await onlyAuthFailure(t, f.auditPath, mark)
    t.equal(rec.reason, 'upstream_rejected')
    t.equal(rec.requested.database, 'no_such_db')
  })

  t.test('upstream down (cluster stopped): 08004 upstream_unavailable', async (t) => {
    const mark = readValidAuditLog(f.auditPath).length
    await f.pg.stop()
    const err = await connectError(t, f.proxy.port, await f.token())
    t.equal(err.code, '08004', 'sqlclient_unable_to_establish_sqlconnection')
    t.equal(err.severity, 'FATAL')
    t.match(err.message, /could not connect to the upstream/i)
    const rec = await onlyAuthFailure(t, f.auditPath, mark)
    t.equal(rec.reason, 'upstream_unavailable')
    t.match(rec.detail, /could not connect to the upstream/i)
    assertNoSecret(t, { 'the audit log': readFileSync(f.auditPath, 'utf8'), 'the client error': err.message }, [f.appPassword])
  })
})

t.test('md5 upstream', async (t) => {
  const f = await fxMd5
  const enc = await f.pg.query("select rolpassword like 'md5%' as md5 from pg_authid where rolname = 'app'")
  t.equal(enc[0]?.md5, true, 'the role password is md5-encrypted, so the server really asks for md5')
  await sessionWorks(t, f, false)
})

t.test('trust upstream, no password configured', async (t) => {
  const f = await fxTrust
  t.equal(f.config.upstream.roles.app?.password, null)
  await sessionWorks(t, f, false)
})


// ---------------------------------------------------------------------------
// Upstream TLS (and further failure cases) need upstream settings the
// standard fixture does not expose: a small variant that builds the config
// itself, against one TLS-only cluster shared by these tests.

interface Shared {
  dir: string
  pki: DevPki
  otherPki: DevPki
  issuer: DevIssuerKeys
  cluster: PgCluster
  appPassword: string
}

interface MiniProxy {
  proxy: ProxyServer
  auditPath: string
  /** Everything the proxy logged (level trace). */
  logs: string[]
  token(): Promise<string>
  client(): Promise<pg.Client>
}

async function startShared(): Promise<Shared> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgw-upstream-'))
  const pki = await createDevPki(path.join(dir, 'pki'))
  const otherPki = await createDevPki(path.join(dir, 'other-pki'))
  const issuer = await createDevIssuerKeys(path.join(dir, 'issuer'))
  const cluster = await startPostgres({
    ssl: { cert: pki.serverCert, key: pki.serverKey },
    // TLS only: a plaintext login would be rejected, so a working session proves TLS.
    hba: ['local all all trust', 'hostssl all all 127.0.0.1/32 scram-sha-256', 'hostnossl all all 127.0.0.1/32 reject'],
  })
  const appPassword = 'app-tls-' + Math.random().toString(36).slice(2)
  await cluster.createRole('app', appPassword, { database: 'appdb' })
  return { dir, pki, otherPki, issuer, cluster, appPassword }
}

const sharedStart = startShared()
sharedStart.catch(() => undefined)
const getShared = (): Promise<Shared> => sharedStart
t.teardown(async () => {
  const s = await sharedStart.catch(() => null)
  await s?.cluster.stop()
  if (s) rmSync(s.dir, { recursive: true, force: true })
})

let proxyCount = 0

async function miniProxy(tt: Test, upstreamYaml: string, o: { appPassword?: string; handshakeTimeout?: string } = {}): Promise<MiniProxy> {
  const s = await getShared()
  const n = ++proxyCount
  const auditPath = path.join(s.dir, `audit-${n}`, 'audit.jsonl')
  const yaml = `
instance: upstream-test-${n}
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
${upstreamYaml.replace(/^/gm, '  ')}
  roles:
    app: { password: ${JSON.stringify(o.appPassword ?? s.appPassword)} }
policy:
  - name: billing-app
    match: { issuer: ${DEV_ISSUER}, subject: "spiffe://test.local/ns/billing/*" }
    roles: [app]
    databases: [appdb]
audit:
  log: ${auditPath}
  durability: batched
  fsync_interval: 20ms
limits:
  handshake_timeout: ${o.handshakeTimeout ?? '10s'}
log: { level: trace }
`
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
    auditPath,
    logs,
    token,
    async client() {
      const c = new pg.Client({
        host: '127.0.0.1',
        port: proxy.port,
        user: 'app',
        database: 'appdb',
        password: await token(),
        ssl: { rejectUnauthorized: false },
        application_name: 'pgw-upstream-test',
      })
      c.on('error', () => undefined)
      await c.connect()
      clients.push(c)
      return c
    },
  }
}

t.test('upstream TLS mode require', async (t) => {
  const s = await getShared()
  const p = await miniProxy(t, `host: 127.0.0.1\nport: ${s.cluster.port}\ntls: { mode: require }`)
  await sessionWorks(t, p, true)
})

t.test('upstream TLS mode verify-full with the right CA (IP SAN 127.0.0.1)', async (t) => {
  const s = await getShared()
  const p = await miniProxy(t, `host: 127.0.0.1\nport: ${s.cluster.port}\ntls: { mode: verify-full, ca: ${s.pki.caCert} }`)
  await sessionWorks(t, p, true)
})

t.test('upstream TLS mode verify-full with servername localhost (DNS SAN)', async (t) => {
  const s = await getShared()
  const p = await miniProxy(t, `host: 127.0.0.1\nport: ${s.cluster.port}\ntls: { mode: verify-full, ca: ${s.pki.caCert}, servername: localhost }`)
  await sessionWorks(t, p, true)
})

t.test('upstream TLS verify-full with a wrong CA: 08004 upstream_unavailable', async (t) => {
  const s = await getShared()
  const p = await miniProxy(t, `host: 127.0.0.1\nport: ${s.cluster.port}\ntls: { mode: verify-full, ca: ${s.otherPki.caCert} }`)
  const token = await p.token()
  const err = await connectError(t, p.proxy.port, token)
  t.equal(err.code, '08004')
  t.match(err.message, /TLS/)
  const rec = await onlyAuthFailure(t, p.auditPath)
  t.equal(rec.reason, 'upstream_unavailable')
  t.match(rec.detail, /TLS to the upstream failed/)
  assertNoSecret(t, { 'the audit log': readFileSync(p.auditPath, 'utf8'), 'the proxy log': p.logs.join(''), 'the client error': err.message }, [s.appPassword, token])
})

t.test('upstream TLS verify-full with a servername the certificate does not name', async (t) => {
  const s = await getShared()
  const p = await miniProxy(t, `host: 127.0.0.1\nport: ${s.cluster.port}\ntls: { mode: verify-full, ca: ${s.pki.caCert}, servername: db.example.com }`)
  const err = await connectError(t, p.proxy.port, await p.token())
  t.equal(err.code, '08004')
  const rec = await onlyAuthFailure(t, p.auditPath)
  t.equal(rec.reason, 'upstream_unavailable')
  t.match(rec.detail, /db\.example\.com|altnames|Hostname/i)
})

t.test('upstream TLS mode disable against a TLS-only server: the server refuses, clear FATAL', async (t) => {
  const s = await getShared()
  const p = await miniProxy(t, `host: 127.0.0.1\nport: ${s.cluster.port}\ntls: { mode: disable }`)
  const err = await connectError(t, p.proxy.port, await p.token())
  t.equal(err.severity, 'FATAL')
  t.match(err.message, /no encryption|pg_hba/, 'the server\'s reason reaches the client')
  const rec = await onlyAuthFailure(t, p.auditPath)
  t.equal(rec.reason, 'upstream_auth_failed', 'a pg_hba reject is 28000: an authorization failure upstream')
})

t.test('wrong password over upstream TLS: nothing secret in any log (proxy log at trace level included)', async (t) => {
  const s = await getShared()
  const wrong = 'wrong-tls-secret-' + Math.random().toString(36).slice(2)
  const p = await miniProxy(t, `host: 127.0.0.1\nport: ${s.cluster.port}\ntls: { mode: verify-full, ca: ${s.pki.caCert} }`, { appPassword: wrong })
  const token = await p.token()
  const err = await connectError(t, p.proxy.port, token)
  t.equal(err.code, '28P01')
  t.match(err.message, /upstream authentication failed/)
  const rec = await onlyAuthFailure(t, p.auditPath)
  t.equal(rec.reason, 'upstream_auth_failed')
  t.ok(p.logs.length > 0, 'the proxy did log something at trace level')
  assertNoSecret(t, { 'the audit log': readFileSync(p.auditPath, 'utf8'), 'the proxy log': p.logs.join(''), 'the client error': err.message }, [wrong, s.appPassword, token])
})

t.test('upstream on a closed port: 08004 upstream_unavailable', async (t) => {
  const port = await freePort()
  const p = await miniProxy(t, `host: 127.0.0.1\nport: ${port}\ntls: { mode: disable }\nconnect_timeout: 20s`)
  const err = await connectError(t, p.proxy.port, await p.token())
  t.equal(err.code, '08004')
  t.match(err.message, /could not connect to the upstream/)
  t.match(err.message, /ECONNREFUSED/, 'refused, not timed out')
  const rec = await onlyAuthFailure(t, p.auditPath)
  t.equal(rec.reason, 'upstream_unavailable')
})

t.test('an upstream that accepts TCP but never answers: connect_timeout, upstream_unavailable', async (t) => {
  const net = await import('node:net')
  const held: import('node:net').Socket[] = []
  const silent = net.createServer((sock) => {
    held.push(sock)
    sock.on('error', () => undefined)
  })
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r))
  t.teardown(() => {
    for (const s of held) s.destroy()
    silent.close()
  })
  const port = (silent.address() as import('node:net').AddressInfo).port
  const p = await miniProxy(t, `host: 127.0.0.1\nport: ${port}\ntls: { mode: disable }\nconnect_timeout: 1s`)
  const t0 = Date.now()
  const err = await connectError(t, p.proxy.port, await p.token())
  const took = Date.now() - t0
  t.ok(took >= 900 && took < 12_000, `gave up after the connect timeout (${took} ms)`)
  t.equal(err.code, '08004')
  t.match(err.message, /timed out/)
  const rec = await onlyAuthFailure(t, p.auditPath)
  t.equal(rec.reason, 'upstream_unavailable')
})

t.test('connect_timeout also bounds the TCP connect itself (an upstream that drops SYNs)', async (t) => {
  // A listener with a full accept queue (backlog 0, never accepting) drops
  // further SYNs, as a firewalled or vanished host does: the TCP connect hangs.
  // Node always accepts, so the listener is a tiny python3 process.
  const { spawn, execFileSync } = await import('node:child_process')
  try {
    execFileSync('python3', ['-c', 'pass'], { stdio: 'ignore' })
  } catch {
    t.pass('SKIPPED: python3 is not available to simulate a black-holed upstream')
    return
  }
  const py = spawn('python3', ['-c', 'import socket,sys,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(120)'], { stdio: ['ignore', 'pipe', 'ignore'] })
  t.teardown(() => {
    py.kill('SIGKILL')
  })
  const port = await new Promise<number>((resolve, reject) => {
    py.stdout.once('data', (b: Buffer) => resolve(Number(b.toString().trim())))
    py.once('exit', () => reject(new Error('python3 listener exited')))
  })
  const net = await import('node:net')
  // Fill the accept queue.
  const filler = net.connect(port, '127.0.0.1')
  filler.on('error', () => undefined)
  await new Promise<void>((resolve) => filler.once('connect', () => resolve()))
  t.teardown(() => {
    filler.destroy()
  })
  const probe = net.connect(port, '127.0.0.1')
  probe.on('error', () => undefined)
  const probeConnected = await Promise.race([
    new Promise<boolean>((resolve) => probe.once('connect', () => resolve(true))),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 500)),
  ])
  probe.destroy()
  if (probeConnected) {
    t.pass('SKIPPED: this kernel does not drop SYNs on a full accept queue')
    return
  }

  const p = await miniProxy(t, `host: 127.0.0.1\nport: ${port}\ntls: { mode: disable }\nconnect_timeout: 1s`, { handshakeTimeout: '5s' })
  const t0 = Date.now()
  const err = await connectError(t, p.proxy.port, await p.token())
  const took = Date.now() - t0
  t.ok(took < 4500, `refused after about connect_timeout (1 s), not after the 5 s handshake timeout (${took} ms)`)
  t.equal(err.code, '08004', `08004 (got ${err.code}: ${err.message})`)
  const rec = await onlyAuthFailure(t, p.auditPath)
  t.equal(rec.reason, 'upstream_unavailable')
})
