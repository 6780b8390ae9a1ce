import { createHash, X509Certificate } from 'node:crypto'
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import pg from 'pg'
import pino from 'pino'
import { ProxyServer } from '../../src/server.js'
import { createDevPki, issueClientCert } from '../../src/dev/pki.js'
import { DEV_ISSUER } from '../../src/dev/tokens.js'
import { startFixture } from '../helpers/proxy.js'
import { readValidAuditLog, recordsOfType, waitForRecords } from '../helpers/audit.js'

const SPIFFE = 'spiffe://dev.pgwitness.local/ns/default/sa/dev-client'

t.test('mTLS: certificate-only mode, untrusted/expired/wrong-usage certificates, token binding', async (t) => {
  const f = await startFixture({
    tlsYaml: 'tls:\n  cert: {cert}\n  key: {key}\n  client_ca: {ca}',
    policyYaml: `policy:
  - name: cert-workload
    match: { method: mtls, subject: "spiffe://dev.pgwitness.local/ns/default/*" }
    roles: [app]
    databases: [appdb]
  - name: dba-bound
    match: { method: jwt+mtls, issuer: ${DEV_ISSUER}, claims: { groups: dba } }
    require_token_binding: true
    roles: ["*"]
    databases: ["*"]
  - name: billing-app
    match: { issuer: ${DEV_ISSUER}, subject: "spiffe://test.local/ns/billing/*" }
    roles: [app]
    databases: [appdb]`,
  })
  t.teardown(() => f.stop())
  const pki = f.pki
  const der = new X509Certificate(readFileSync(pki.clientCert)).raw
  const fingerprint = createHash('sha256').update(der).digest('hex')
  const x5t = createHash('sha256').update(der).digest('base64url')

  const connect = async (o: { cert?: { cert: string; key: string }; token?: string; user?: string; database?: string }) => {
    const c = new pg.Client({
      host: '127.0.0.1', port: f.proxy.port, user: o.user ?? 'app', database: o.database ?? 'appdb',
      password: o.token ?? '',
      ssl: { rejectUnauthorized: false, ...(o.cert ? { cert: readFileSync(o.cert.cert), key: readFileSync(o.cert.key) } : {}) },
    })
    c.on('error', () => undefined)
    try {
      await c.connect()
      return { client: c, error: null }
    } catch (e) {
      return { client: null, error: e as Error & { code?: string } }
    }
  }

  await t.test('psql with only a client certificate is admitted without a password prompt', async (t) => {
    const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile('psql', ['-w', '-X', '-A', '-t', '-c', 'select current_user'], {
        env: { ...f.libpqEnv(''), PGPASSWORD: '', PGSSLCERT: pki.clientCert, PGSSLKEY: pki.clientKey, PGSSLROOTCERT: pki.caCert, PGSSLMODE: 'verify-ca' },
      }, (err, stdout, stderr) => resolve({ code: err ? (err as { code?: number }).code ?? 1 : 0, stdout, stderr }))
    })
    t.equal(out.code, 0, out.stderr)
    t.equal(out.stdout.trim(), 'app')
    const recs = await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'session.end').length >= 1)
    const start = recordsOfType(recs, 'session.start')[0]!
    t.equal(start.identity.method, 'mtls')
    t.equal(start.identity.subject, SPIFFE)
    t.equal(start.identity.spiffe_id, SPIFFE)
    t.equal(start.identity.cert_sha256, fingerprint)
    t.equal(start.connection!.tls!.client_cert_sha256, fingerprint)
    t.equal(start.identity.policy_rule, 'cert-workload')
  })

  await t.test('a certificate the policy does not admit alone still needs a token', async (t) => {
    const r = await connect({ cert: { cert: pki.clientCert, key: pki.clientKey }, user: 'postgres', database: 'postgres' })
    t.ok(r.error, 'refused without a token')
    const ok = await connect({ cert: { cert: pki.clientCert, key: pki.clientKey }, token: await f.token() })
    t.notOk(ok.error, 'token + certificate works')
    await ok.client?.end()
  })

  await t.test('untrusted, expired and wrong-usage certificates are refused', async (t) => {
    const other = await createDevPki(mkdtempSync(path.join(os.tmpdir(), 'pgw-other-ca-')))
    const expired = await issueClientCert(pki, 'expired', { spiffeId: SPIFFE, days: 0 })
    const serverOnly = await issueClientCert(pki, 'server-usage', { spiffeId: SPIFFE, eku: 'serverAuth' })
    const cases: Array<[string, { cert: string; key: string }, string]> = [
      ['untrusted', { cert: other.clientCert, key: other.clientKey }, 'cert_untrusted'],
      ['expired', expired, 'cert_expired'],
      ['wrong usage', serverOnly, 'cert_untrusted'],
    ]
    for (const [name, cert, reason] of cases) {
      const r = await connect({ cert, token: await f.token() })
      t.ok(r.error, `${name}: refused`)
      t.equal(r.error?.code, '28000', `${name}: FATAL 28000`)
      t.match(r.error?.message, /certificate/, `${name}: the message says why`)
      const recs = await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'auth.failure').some((a) => a.reason === reason && a.connection!.tls!.client_cert_sha256 !== fingerprint))
      t.ok(recs, `${name}: auth.failure ${reason}`)
    }
  })

  await t.test('jwt+mtls with RFC 8705 token binding', async (t) => {
    const bound = await f.token({ subject: 'alice', claims: { groups: ['dba'], cnf: { 'x5t#S256': x5t } } })
    const r = await connect({ cert: { cert: pki.clientCert, key: pki.clientKey }, token: bound, user: 'postgres', database: 'postgres' })
    t.notOk(r.error, 'a bound token over its certificate is admitted')
    t.equal((await r.client!.query('select current_user as u')).rows[0].u, 'postgres')
    await r.client!.end()
    const unbound = await f.token({ subject: 'alice', claims: { groups: ['dba'] } })
    const r2 = await connect({ cert: { cert: pki.clientCert, key: pki.clientKey }, token: unbound, user: 'postgres', database: 'postgres' })
    t.equal(r2.error?.code, '28000')
    const wrong = await f.token({ subject: 'alice', claims: { groups: ['dba'], cnf: { 'x5t#S256': 'A'.repeat(43) } } })
    const r3 = await connect({ cert: { cert: pki.clientCert, key: pki.clientKey }, token: wrong, user: 'postgres', database: 'postgres' })
    t.equal(r3.error?.code, '28000')
    const recs = await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'auth.failure').filter((a) => a.reason === 'token_not_bound').length >= 2)
    const fail = recordsOfType(recs, 'auth.failure').find((a) => a.reason === 'token_not_bound')!
    t.equal(fail.method, 'jwt+mtls')
    const starts = recordsOfType(recs, 'session.start').filter((s) => s.identity.policy_rule === 'dba-bound')
    t.equal(starts.length, 1)
    t.equal(starts[0]!.identity.method, 'jwt+mtls')
    t.equal(starts[0]!.identity.cert_sha256, fingerprint)
  })

  await t.test('identity.mtls.subject: cn takes the subject common name', async (t) => {
    const config = {
      ...f.config,
      identity: { ...f.config.identity, mtls: { subject: 'cn' as const } },
      policy: [{ ...f.config.policy[0]!, name: 'by-cn', match: { ...f.config.policy[0]!.match, subject: 'dev-client' } }],
      audit: { ...f.config.audit, log: path.join(f.dir, 'cn-audit.jsonl') },
    }
    const proxy = await ProxyServer.start(config, pino({ level: 'silent' }))
    t.teardown(() => proxy.stop())
    const c = new pg.Client({
      host: '127.0.0.1', port: proxy.port, user: 'app', database: 'appdb', password: '',
      ssl: { rejectUnauthorized: false, cert: readFileSync(pki.clientCert), key: readFileSync(pki.clientKey) },
    })
    await c.connect()
    await c.end()
    const recs = await waitForRecords(config.audit.log, (rs) => rs.some((x) => x.type === 'session.end'))
    const start = recordsOfType(recs, 'session.start')[0]!
    t.equal(start.identity.subject, 'dev-client')
    t.equal(start.identity.method, 'mtls')
    t.equal(start.identity.policy_rule, 'by-cn')
  })

  await t.test('psql with a token and a client certificate (jwt+mtls)', async (t) => {
    const bound = await f.token({ subject: 'bob', claims: { groups: ['dba'], cnf: { 'x5t#S256': x5t } } })
    const out = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile('psql', ['-w', '-X', '-A', '-t', '-c', 'select current_user'], {
        env: { ...f.libpqEnv(bound, { user: 'postgres', database: 'postgres' }), PGSSLCERT: pki.clientCert, PGSSLKEY: pki.clientKey, PGSSLROOTCERT: pki.caCert, PGSSLMODE: 'verify-ca' },
      }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, stdout, stderr }))
    })
    t.equal(out.code, 0, out.stderr)
    t.equal(out.stdout.trim(), 'postgres')
    const recs = await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'session.start').some((s) => s.identity.subject === 'bob'))
    const start = recordsOfType(recs, 'session.start').find((s) => s.identity.subject === 'bob')!
    t.equal(start.identity.method, 'jwt+mtls')
    t.equal(start.identity.cert_sha256, fingerprint)
  })

  await t.test('token-only clients keep working when client certificates are optional', async (t) => {
    const r = await connect({ token: await f.token() })
    t.notOk(r.error)
    await r.client?.end()
  })
  readValidAuditLog(f.auditPath)
})

t.test('a session ends when its token expires', async (t) => {
  const f = await startFixture()
  t.teardown(() => f.stop())
  const c = await f.client({ token: await f.token({ ttlSeconds: 2 }) })
  const ended = new Promise<Error & { code?: string }>((resolve) => c.on('error', resolve))
  const err = await ended
  t.equal(err.code, '28000')
  t.match(err.message, /token expired/)
  const recs = await waitForRecords(f.auditPath, (rs) => rs.some((x) => x.type === 'session.end'))
  t.equal(recordsOfType(recs, 'session.end')[0]!.reason, 'token_expired')
  readValidAuditLog(f.auditPath)
})

t.test('session.outlive_token lets a session outlive its token up to max_duration', async (t) => {
  const f = await startFixture({ extraYaml: 'session: { outlive_token: true, max_duration: 3s }' })
  t.teardown(() => f.stop())
  const c = await f.client({ token: await f.token({ ttlSeconds: 1 }) })
  await new Promise((r) => setTimeout(r, 1500))
  t.same((await c.query('select 1 as x')).rows, [{ x: 1 }], 'still working after the token expired')
  const err = await new Promise<Error & { code?: string }>((resolve) => c.on('error', resolve))
  t.match(err.message, /maximum duration/)
  const recs = await waitForRecords(f.auditPath, (rs) => rs.some((x) => x.type === 'session.end'))
  t.equal(recordsOfType(recs, 'session.end')[0]!.reason, 'policy_terminated')
})
