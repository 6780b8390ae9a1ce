import { X509Certificate } from 'node:crypto'
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import pg from 'pg'
import { createDevPki } from '../../src/dev/pki.js'
import { createDevIssuerKeys, mintDevToken } from '../../src/dev/tokens.js'
import { startPostgres } from '../harness/postgres.js'
import { spawnCli, waitForOutput } from '../helpers/cli.js'

t.test('SIGHUP: a rotated server certificate is served to new clients while an open session continues', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgw-reload-'))
  const cluster = await startPostgres()
  t.teardown(() => cluster.stop())
  const first = await createDevPki(path.join(dir, 'pki1'))
  const second = await createDevPki(path.join(dir, 'pki2'))
  mkdirSync(path.join(dir, 'tls'))
  const install = (pki: { serverCert: string; serverKey: string }) => {
    copyFileSync(pki.serverCert, path.join(dir, 'tls', 'server.crt'))
    copyFileSync(pki.serverKey, path.join(dir, 'tls', 'server.key'))
  }
  install(first)
  const issuer = await createDevIssuerKeys(path.join(dir, 'issuer'))
  const file = path.join(dir, 'pgwitness.yaml')
  const config = (subjectGlob: string) => `
listen: "127.0.0.1:0"
tls: { cert: tls/server.crt, key: tls/server.key }
identity:
  jwt: [{ issuer: https://dev.pgwitness.local, audience: pgwitness, jwks_file: ${issuer.jwksPath} }]
upstream:
  port: ${cluster.port}
  roles: { postgres: { password: ${JSON.stringify(cluster.superuserPassword)} } }
policy:
  - { name: people, match: { subject: "${subjectGlob}" }, roles: [postgres], databases: [postgres] }
audit: { log: audit.jsonl, durability: batched }
`
  writeFileSync(file, config('*'))
  const proc = spawnCli(['serve', '--config', file])
  t.teardown(() => proc.kill('SIGTERM'))
  const port = Number(/:(\d+)"/.exec(await waitForOutput(proc, /"listen":"127\.0\.0\.1:(\d+)"/))![1])
  const connect = async (subject = 'alice') => {
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', password: await mintDevToken(issuer.privateJwk, { subject }), ssl: { rejectUnauthorized: false } })
    c.on('error', () => undefined)
    await c.connect()
    const stream = (c as unknown as { connection: { stream: { getPeerCertificate(): { fingerprint256: string } } } }).connection.stream
    return { c, fingerprint: stream.getPeerCertificate().fingerprint256 }
  }
  const fp = (certPath: string) => new X509Certificate(readFileSync(certPath)).fingerprint256

  const open = await connect()
  t.equal(open.fingerprint, fp(first.serverCert), 'the first certificate is served')

  install(second)
  let reloaded = waitForOutput(proc, /configuration reloaded/)
  proc.kill('SIGHUP')
  await reloaded
  const fresh = await connect()
  t.equal(fresh.fingerprint, fp(second.serverCert), 'new clients get the rotated certificate')
  t.same((await open.c.query('select 1 as still')).rows, [{ still: 1 }], 'the open session continues')

  // An invalid config is rejected with a clear log line; the old one stays in force.
  writeFileSync(path.join(dir, 'tls', 'server.key'), 'not a key')
  const rejected = waitForOutput(proc, /new configuration is invalid/)
  proc.kill('SIGHUP')
  await rejected
  const after = await connect()
  t.equal(after.fingerprint, fp(second.serverCert), 'still the last good certificate')

  // Policy reloads too: new connections follow the new rules, admitted sessions keep theirs.
  install(second)
  writeFileSync(file, config('bob'))
  reloaded = waitForOutput(proc, /configuration reloaded/)
  proc.kill('SIGHUP')
  await reloaded
  const denied = await connect('alice').then(() => null, (e: Error & { code?: string }) => e)
  t.equal(denied?.code, '28000', 'alice is no longer admitted')
  t.ok(await connect('bob'), 'bob is')
  t.same((await open.c.query('select 2 as still')).rows, [{ still: 2 }], 'alice\'s open session continues')
  for (const x of [open, fresh, after]) await x.c.end()
})
