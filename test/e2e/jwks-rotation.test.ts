/**
 * JWKS by URL, end to end: the proxy trusts an issuer whose keys come from a
 * local HTTPS JWKS endpoint (dev CA via `jwks_ca`). The issuer rotates its key
 * mid-test: a live session keeps working, tokens signed with the new key
 * work, tokens signed with the old key still work within the grace period;
 * with the endpoint down the cached keys keep working and a token naming an
 * unknown kid is refused (FATAL 28P01, auth.failure token_signature_invalid)
 * with a reason saying the key set could not be refreshed.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import pino from 'pino'
import t, { type Test } from 'tap'
import { parseConfig } from '../../src/config/load.js'
import { createDevPki } from '../../src/dev/pki.js'
import { DEV_AUDIENCE, DEV_ISSUER } from '../../src/dev/tokens.js'
import { ProxyServer } from '../../src/server.js'
import { startPostgres } from '../harness/postgres.js'
import { readValidAuditLog, recordsOfType, waitForRecords } from '../helpers/audit.js'
import { signingKey, signToken, startJwksServer, type SigningKey } from '../helpers/jwks-server.js'

const BILLING = 'spiffe://test.local/ns/billing/sa/api'
const MIN_REFRESH_MS = 200
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

t.test('JWKS by URL: key rotation and an unreachable endpoint', async (t) => {
  // Cleanups run last-registered first: clients, proxy, JWKS server, PostgreSQL, files.
  const cleanups: (() => Promise<unknown> | void)[] = []
  t.teardown(async () => {
    for (const f of cleanups.reverse()) await f()
  })
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgw-jwks-e2e-'))
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
  const cluster = await startPostgres()
  cleanups.push(() => cluster.stop())
  const appPassword = 'app-' + Math.random().toString(36).slice(2)
  await cluster.createRole('app', appPassword, { database: 'appdb' })
  const pki = await createDevPki(path.join(dir, 'pki'))
  const [oldKey, newKey, strayKey] = await Promise.all([signingKey('2024-old'), signingKey('2025-new'), signingKey('never-published')])
  const jwks = await startJwksServer(pki, [oldKey.publicJwk])
  cleanups.push(() => jwks.close())
  const auditPath = path.join(dir, 'audit.jsonl')

  const yaml = `
instance: jwks-test
listen: "127.0.0.1:0"
tls: { cert: ${pki.serverCert}, key: ${pki.serverKey} }
identity:
  jwt:
    - issuer: ${DEV_ISSUER}
      audience: ${DEV_AUDIENCE}
      jwks_url: ${jwks.url}
      jwks_ca: ${pki.caCert}
      jwks_timeout: 2s
      jwks_min_refresh_interval: ${MIN_REFRESH_MS}ms
      jwks_key_grace: 1h
      algorithms: [ES256]
upstream:
  host: 127.0.0.1
  port: ${cluster.port}
  tls: { mode: disable }
  roles:
    app: { password: ${JSON.stringify(appPassword)} }
policy:
  - name: billing-app
    match: { issuer: ${DEV_ISSUER}, subject: "spiffe://test.local/ns/billing/*" }
    roles: [app]
    databases: [appdb]
audit:
  log: ${auditPath}
  durability: batched
  fsync_interval: 20ms
log: { level: ${process.env.PGW_TEST_LOG ?? 'warn'} }
`
  const config = parseConfig(yaml, { baseDir: dir, source: path.join(dir, 'pgwitness.yaml') })
  const proxy = await ProxyServer.start(config, pino({ level: config.log.level }, pino.destination(2)))
  cleanups.push(() => proxy.stop())

  const token = (key: SigningKey) => signToken(key, { iss: DEV_ISSUER, aud: DEV_AUDIENCE, sub: BILLING })
  let seq = 0
  const clients: pg.Client[] = []
  cleanups.push(() => Promise.all(clients.map((c) => c.end().catch(() => undefined))))
  async function connect(tok: string, app = `jwks-${++seq}`): Promise<pg.Client> {
    const c = new pg.Client({
      host: '127.0.0.1', port: proxy.port, user: 'app', database: 'appdb', password: tok,
      ssl: { rejectUnauthorized: false }, application_name: app,
    })
    c.on('error', () => undefined)
    await c.connect()
    clients.push(c)
    return c
  }
  async function works(t: Test, c: pg.Client, what: string) {
    t.same((await c.query('select current_user as u')).rows, [{ u: 'app' }], what)
  }

  // The key set is fetched at start, before any client connects.
  for (let i = 0; i < 100 && jwks.hits === 0; i++) await sleep(20)
  t.equal(jwks.hits, 1, 'the JWKS was fetched once at proxy start')

  const live = await connect(await token(oldKey), 'jwks-live')
  await works(t, live, 'a live session with a token signed by the old key')
  t.equal(jwks.hits, 1, 'a cached kid needs no fetch')

  await t.test('the issuer rotates: new key published, old key withdrawn', async (t) => {
    jwks.keys = [newKey.publicJwk]
    await sleep(MIN_REFRESH_MS + 100)
    const c = await connect(await token(newKey))
    await works(t, c, 'a token signed by the new key opens a session')
    t.equal(jwks.hits, 2, 'the unknown kid triggered one refresh')
    await works(t, live, 'the live session keeps working across the rotation')
    const old = await connect(await token(oldKey))
    await works(t, old, 'a new token signed by the withdrawn key still works within the grace period')
    t.equal(jwks.hits, 2, 'no further fetch')
  })

  await t.test('the endpoint goes down: cached keys keep working, an unknown kid is refused', async (t) => {
    await jwks.close()
    await sleep(MIN_REFRESH_MS + 100)
    await works(t, live, 'the live session keeps working')
    await works(t, await connect(await token(newKey)), 'the new key (cached) still works')
    await works(t, await connect(await token(oldKey)), 'the old key (cached, in grace) still works')

    const app = 'jwks-unknown-kid'
    const err = await connect(await token(strayKey), app).then(() => null, (e: pg.DatabaseError) => e)
    t.ok(err, 'a token with an unknown kid is refused')
    t.equal(err?.severity, 'FATAL')
    t.equal(err?.code, '28P01')
    const why = /^no key with kid "never-published" in the issuer's key set \(the issuer's key set could not be refreshed: connection refused\)$/
    t.match(err?.message, why, `the client is told why: ${err?.message}`)
    const recs = await waitForRecords(auditPath, (rs) => recordsOfType(rs, 'auth.failure').some((r) => r.requested.application_name === app))
    const rec = recordsOfType(recs, 'auth.failure').find((r) => r.requested.application_name === app)!
    t.equal(rec.reason, 'token_signature_invalid', 'auth.failure reason')
    t.match(rec.detail, why, 'auth.failure detail')
    t.match(rec.identity, { issuer: DEV_ISSUER })
    await works(t, live, 'the live session is unaffected')
  })

  await t.test('no live session was dropped', async (t) => {
    await live.end()
    const recs = await waitForRecords(auditPath, (rs) =>
      recordsOfType(rs, 'session.end').some((r) => r.session.application_name === 'jwks-live'))
    const end = recordsOfType(recs, 'session.end').find((r) => r.session.application_name === 'jwks-live')!
    t.equal(end.reason, 'client_closed', 'the live session ended only when the client closed it')
    t.ok(end.statements >= 4, `it ran every statement (${end.statements})`)
    const starts = recordsOfType(recs, 'session.start').filter((r) => r.session.application_name?.startsWith('jwks-'))
    t.equal(starts.length, 5, 'five sessions opened')
    t.ok(starts.every((s) => s.identity.subject === BILLING && s.identity.issuer === DEV_ISSUER), 'each with the verified identity')
    readValidAuditLog(auditPath)
  })
})
