import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { createLocalJWKSet, jwtVerify } from 'jose'
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

t.test('check-config and serve report every problem of a file at once, one line each', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgw-cli-'))
  const pki = await createDevPki(path.join(dir, 'pki'))
  const file = path.join(dir, 'five.yaml')
  // Five independent mistakes, one per section.
  writeFileSync(file, `listen: "127.0.0.1:99999"
tls: { cert: ${pki.serverCert}, key: missing.key }
upstream: { port: "fivefourthreetwo" }
policy:
  - { name: all, match: {}, databases: [postgres] }
limits: { max_connections: 0 }
`)
  const expected = [
    /^config: listen: .*99999/m,
    /^config: tls\.key: cannot read file .*missing\.key: no such file$/m,
    /^config: upstream\.port: must be a whole number \(got "fivefourthreetwo"\)$/m,
    /^config: policy\[0\]\.roles: is required/m,
    /^config: limits\.max_connections: must be 1\.\.1000000 \(got 0\)$/m,
  ]
  for (const command of [['check-config', file], ['serve', '--config', file]]) {
    const r = await runCli(command)
    t.equal(r.code, 2, `${command[0]}: exit 2`)
    for (const re of expected) t.match(r.stderr, re, `${command[0]}: ${re}`)
    t.equal(r.stderr.trim().split('\n').length, 5, `${command[0]}: five lines, nothing else:\n${r.stderr}`)
  }
  // Two unknown keys of one mapping are both named.
  writeFileSync(file, `listen: "127.0.0.1:0"\ntls: { cert: ${pki.serverCert}, key: ${pki.serverKey} }\nlimts: {}\nauditt: {}\n`)
  const r = await runCli(['check-config', file])
  t.equal(r.code, 2)
  t.match(r.stderr, /^config: limts: unknown key \(did you mean "limits"\?\)$/m)
  t.match(r.stderr, /^config: auditt: unknown key \(did you mean "audit"\?\)$/m)
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

t.test('token and serve create the issuer of a dev config whose jwks_file does not exist yet, the same way', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgw-cli-'))
  const pki = await createDevPki(path.join(dir, 'pki'))
  const body = (jwks: string) => `listen: "127.0.0.1:0"
tls: { cert: ${pki.serverCert}, key: ${pki.serverKey} }
identity:
  jwt: [{ issuer: https://dev.pgwitness.local, audience: pgwitness, jwks_file: ${jwks} }]
audit: { log: audit.jsonl, durability: batched }
`
  // Not a dev config: a missing JWKS file stays a config error, and nothing is created.
  const prod = path.join(dir, 'prod.yaml')
  writeFileSync(prod, body('prod-issuer/keys.json'))
  const refused = await runCli(['token', '--config', prod])
  t.equal(refused.code, 2)
  t.match(refused.stderr, /^config: identity\.jwt\[0\]\.jwks_file: cannot read JWKS file .*keys\.json: no such file$/m)
  t.notOk(existsSync(path.join(dir, 'prod-issuer')), 'no issuer made for a non-dev config')

  // token first: the issuer is created, and the token verifies against the JWKS the config names.
  const devFile = path.join(dir, 'dev.yaml')
  writeFileSync(devFile, 'dev: true\n' + body('dev-issuer/keys.json'))
  const first = await runCli(['token', '--config', devFile, '--sub', 'alice'])
  t.equal(first.code, 0, first.stderr)
  const jwksPath = path.join(dir, 'dev-issuer', 'keys.json')
  const jwks = createLocalJWKSet(JSON.parse(readFileSync(jwksPath, 'utf8')))
  const { payload } = await jwtVerify(first.stdout.trim(), jwks, { issuer: 'https://dev.pgwitness.local', audience: 'pgwitness' })
  t.equal(payload.sub, 'alice', 'the token verifies against the created JWKS')
  t.equal(statSync(path.join(dir, 'dev-issuer', 'signing-key.jwk')).mode & 0o777, 0o600, 'the signing key is private')
  const jwksText = readFileSync(jwksPath, 'utf8')
  const again = await runCli(['token', '--config', devFile])
  t.equal(again.code, 0)
  t.equal(readFileSync(jwksPath, 'utf8'), jwksText, 'the JWKS is not replaced by a second run')
  await jwtVerify(again.stdout.trim(), jwks, { issuer: 'https://dev.pgwitness.local', audience: 'pgwitness' })
  t.pass('a second token reuses the same issuer')

  // serve first (another config): it creates the issuer the same way, and token then signs for it.
  const serveFile = path.join(dir, 'dev-serve.yaml')
  writeFileSync(serveFile, 'dev: true\n' + body('serve-issuer/jwks.json'))
  const proc = spawnCli(['serve', '--config', serveFile])
  await waitForOutput(proc, /pgwitness listening/)
  const exited = new Promise((r) => proc.once('exit', r))
  proc.kill('SIGTERM')
  await exited
  const served = path.join(dir, 'serve-issuer', 'jwks.json')
  t.ok(existsSync(served), 'serve created the dev issuer')
  const tok = await runCli(['token', '--config', serveFile])
  t.equal(tok.code, 0, tok.stderr)
  await jwtVerify(tok.stdout.trim(), createLocalJWKSet(JSON.parse(readFileSync(served, 'utf8'))), { issuer: 'https://dev.pgwitness.local', audience: 'pgwitness' })
  t.pass('token signs with the issuer serve created')

  // A JWKS that exists without a dev signing key is somebody else's: never overwritten.
  const foreign = path.join(dir, 'foreign.yaml')
  mkdirSync(path.join(dir, 'foreign'))
  const foreignJwks = path.join(dir, 'foreign', 'jwks.json')
  copyFileSync(served, foreignJwks)
  writeFileSync(foreign, 'dev: true\n' + body(foreignJwks))
  const refusedForeign = await runCli(['token', '--config', foreign])
  t.equal(refusedForeign.code, 2)
  t.match(refusedForeign.stderr, /exists but there is no dev signing key next to it/)
  t.equal(readFileSync(foreignJwks, 'utf8'), readFileSync(served, 'utf8'), 'the foreign JWKS is unchanged')
})
