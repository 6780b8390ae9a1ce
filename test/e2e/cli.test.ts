import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import pg from 'pg'
import { createDevPki } from '../../src/dev/pki.js'
import { createDevIssuerKeys, mintDevToken } from '../../src/dev/tokens.js'
import { startPostgres } from '../harness/postgres.js'
import { readValidAuditLog, recordsOfType } from '../helpers/audit.js'
import { runCli, spawnCli, waitForOutput } from '../helpers/cli.js'

t.test('--help lists the commands; each command has its own help', async (t) => {
  const main = await runCli(['--help'])
  t.equal(main.code, 0)
  for (const c of ['serve', 'check-config', 'token', 'certs']) t.match(main.stdout, c)
  for (const c of ['serve', 'check-config', 'token', 'certs']) {
    const r = await runCli([c, '--help'])
    t.equal(r.code, 0, `${c} --help`)
    t.match(r.stdout, `Usage: pgwitness ${c}`)
  }
  const bad = await runCli(['frobnicate'])
  t.not(bad.code, 0)
  t.match(bad.stderr, 'unknown command')
})

t.test('a broken config names the key and the problem, and the proxy does not start', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgw-cli-'))
  const file = path.join(dir, 'bad.yaml')
  writeFileSync(file, 'listen: "127.0.0.1:0"\ntls: { cert: nope.crt, key: nope.key }\n')
  const r = await runCli(['serve', '--config', file])
  t.equal(r.code, 2)
  t.match(r.stderr, /config: tls\.cert: /)
  writeFileSync(file, 'listen: "127.0.0.1:0"\nupstream: { tls: { mode: verify } }\n')
  const r2 = await runCli(['check-config', file])
  t.equal(r2.code, 2)
  t.match(r2.stderr, /config: /)
  const secret = 'hunter2-' + Math.random()
  writeFileSync(file, 'listen: "127.0.0.1:0"\nupstream: { roles: { app: { password: "${env:PGW_TEST_MISSING}" } } }\nbogus: 1\n')
  const r3 = await runCli(['check-config', file], { ...process.env, PGW_UNRELATED: secret })
  t.equal(r3.code, 2)
  t.notMatch(r3.stderr, secret)
})

t.test('serve --config runs the proxy; SIGTERM stops it with proxy.stop', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgw-cli-'))
  const cluster = await startPostgres()
  t.teardown(() => cluster.stop())
  const pki = await createDevPki(path.join(dir, 'pki'))
  const issuer = await createDevIssuerKeys(path.join(dir, 'issuer'))
  const audit = path.join(dir, 'audit.jsonl')
  const file = path.join(dir, 'pgwitness.yaml')
  writeFileSync(file, `
listen: "127.0.0.1:0"
tls: { cert: ${pki.serverCert}, key: ${pki.serverKey} }
identity:
  jwt: [{ issuer: https://dev.pgwitness.local, audience: pgwitness, jwks_file: ${issuer.jwksPath} }]
upstream:
  port: ${cluster.port}
  roles: { postgres: { password: "\${env:PGW_TEST_PG_PASSWORD}" } }
policy:
  - { name: all, match: {}, roles: [postgres], databases: [postgres] }
audit: { log: ${audit}, durability: batched }
`)
  const ok = await runCli(['check-config', file], { ...process.env, PGW_TEST_PG_PASSWORD: cluster.superuserPassword })
  t.equal(ok.code, 0, ok.stderr)
  t.match(ok.stdout, 'config OK')

  const proc = spawnCli(['serve', '--config', file], { ...process.env, PGW_TEST_PG_PASSWORD: cluster.superuserPassword })
  const line = await waitForOutput(proc, /"listen":"127\.0\.0\.1:(\d+)"/)
  const port = Number(/:(\d+)"/.exec(line)![1])
  const token = await mintDevToken(issuer.privateJwk, { subject: 'someone' })
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', password: token, ssl: { rejectUnauthorized: false } })
  await c.connect()
  t.same((await c.query('select 40 + 2 as n')).rows, [{ n: 42 }])
  c.on('error', () => undefined)
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)))
  proc.kill('SIGTERM')
  t.equal(await exited, 0)
  const err = await c.query('select 1').then(() => null, (e: Error & { code?: string }) => e)
  t.ok(err, 'the session was ended by the shutdown')
  const recs = readValidAuditLog(audit)
  t.equal(recs[0]!.type, 'proxy.start')
  t.equal(recs[recs.length - 1]!.type, 'proxy.stop')
  const end = recordsOfType(recs, 'session.end')
  t.equal(end.length, 1)
  t.equal(end[0]!.reason, 'proxy_shutdown')
  t.equal(recordsOfType(recs, 'statement').length, 1)
  t.notMatch(readFileSync(audit, 'utf8'), cluster.superuserPassword, 'the upstream password is in no record')
})

t.test('token refuses a non-dev config', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgw-cli-'))
  const pki = await createDevPki(path.join(dir, 'pki'))
  const issuer = await createDevIssuerKeys(path.join(dir, 'issuer'))
  const file = path.join(dir, 'prod.yaml')
  const body = `listen: "127.0.0.1:0"
tls: { cert: ${pki.serverCert}, key: ${pki.serverKey} }
identity:
  jwt: [{ issuer: https://dev.pgwitness.local, audience: pgwitness, jwks_file: ${issuer.jwksPath} }]
`
  writeFileSync(file, body)
  const r = await runCli(['token', '--config', file])
  t.equal(r.code, 2)
  t.match(r.stderr, 'not a dev config')
  writeFileSync(file, 'dev: true\n' + body)
  const ok = await runCli(['token', '--config', file, '--sub', 'alice', '--claim', 'groups=["dba"]', '--ttl', '5m'])
  t.equal(ok.code, 0, ok.stderr)
  const payload = JSON.parse(Buffer.from(ok.stdout.trim().split('.')[1]!, 'base64url').toString())
  t.equal(payload.sub, 'alice')
  t.same(payload.groups, ['dba'])
  t.ok(payload.exp - payload.iat === 300)
})
