import t from 'tap'
import { existsSync, statSync } from 'node:fs'
import net from 'node:net'
import pg from 'pg'
import { findPgBinDir, startPostgres, type PgCluster } from './harness/postgres.js'
import { freePort } from './harness/net.js'
import { createDevPki } from '../src/dev/pki.js'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

async function tryConnect(
  c: PgCluster,
  user: string,
  password: string | undefined,
  database = 'postgres',
): Promise<{ ok: true; rows: any[] } | { ok: false; code: string | undefined; message: string }> {
  const client = new pg.Client({ host: c.host, port: c.port, user, password, database })
  client.on('error', () => {})
  try {
    await client.connect()
    const res = await client.query('SELECT current_user AS u, current_database() AS db')
    return { ok: true, rows: res.rows }
  } catch (err) {
    const e = err as { code?: string; message: string }
    return { ok: false, code: e.code, message: e.message }
  } finally {
    await client.end().catch(() => undefined)
  }
}

t.test('findPgBinDir / freePort', async (t) => {
  const dir = findPgBinDir()
  t.ok(existsSync(`${dir}/initdb`), `initdb in ${dir}`)
  t.ok(existsSync(`${dir}/postgres`), `postgres in ${dir}`)
  const port = await freePort()
  t.ok(port > 0 && port < 65536, 'freePort returns a port')
  // the port is really free: we can listen on it
  await new Promise<void>((resolve, reject) => {
    const s = net.createServer().once('error', reject)
    s.listen(port, '127.0.0.1', () => s.close(() => resolve()))
  })
  t.pass('port can be bound')
})

t.test('scram-sha-256 cluster', async (t) => {
  const started = Date.now()
  const c = await startPostgres({
    settings: { log_statement: 'all', application_name: 'harness test', work_mem: "'7MB'" },
  })
  t.comment(`startPostgres took ${Date.now() - started} ms`)
  t.teardown(() => c.stop())

  t.equal(c.host, '127.0.0.1')
  t.not(c.port, 5432, 'never the machine postgres')
  t.equal(c.superuser, 'postgres')
  t.ok(c.superuserPassword.length >= 16, 'random superuser password')
  t.ok(existsSync(`${c.dataDir}/PG_VERSION`), 'data dir exists')
  t.ok(existsSync(c.binDir), 'bin dir exists')

  const [enc] = await c.query('SHOW password_encryption')
  t.equal(enc.password_encryption, 'scram-sha-256')
  const [port] = await c.query('SHOW port')
  t.equal(Number(port.port), c.port)
  const [ls] = await c.query('SHOW log_statement')
  t.equal(ls.log_statement, 'all', 'settings applied')
  const [wm] = await c.query('SHOW work_mem')
  t.equal(wm.work_mem, '7MB', 'quoted setting applied')
  const [an] = await c.query('SHOW application_name')
  t.equal(an.application_name, 'harness test', 'unquoted value with a space is quoted')
  const [mc] = await c.query('SHOW max_connections')
  t.equal(mc.max_connections, '200')
  const [la] = await c.query('SHOW listen_addresses')
  t.equal(la.listen_addresses, '127.0.0.1')

  const rows = await c.query('SELECT $1::int + $2::int AS sum', [2, 3])
  t.same(rows, [{ sum: 5 }], 'parameters work')

  const [hash] = await c.query("SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'")
  t.match(hash.rolpassword, /^SCRAM-SHA-256\$/, 'superuser password stored as SCRAM')

  const bad = await tryConnect(c, 'postgres', 'wrong password')
  t.equal(bad.ok, false, 'wrong password fails')
  if (!bad.ok) t.equal(bad.code, '28P01', 'invalid_password')

  await c.createRole('alice', 's3cret pw', { database: 'alicedb' })
  const good = await tryConnect(c, 'alice', 's3cret pw', 'alicedb')
  t.same(good.ok && good.rows, [{ u: 'alice', db: 'alicedb' }], 'new role can log in to its database')
  const [owner] = await c.query(
    "SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = 'alicedb'",
  )
  t.equal(owner.owner, 'alice', 'database owned by the role')
  const [isSuper] = await c.query("SELECT rolsuper FROM pg_roles WHERE rolname = 'alice'")
  t.equal(isSuper.rolsuper, false)

  await c.createRole('Bob "the admin"', 'pw2', { superuser: true })
  const bob = await tryConnect(c, 'Bob "the admin"', 'pw2')
  t.equal(bob.ok, true, 'role with odd name and superuser')
  const [bobSuper] = await c.query('SELECT rolsuper FROM pg_roles WHERE rolname = $1', ['Bob "the admin"'])
  t.equal(bobSuper.rolsuper, true)

  await c.createRole('nopass', null)
  const np = await tryConnect(c, 'nopass', 'anything')
  t.equal(np.ok, false, 'role without password cannot log in with scram')

  // query() against another database
  const [db] = await c.query('SELECT current_database() AS d', [], 'alicedb')
  t.equal(db.d, 'alicedb')

  await c.query("SELECT 'harness-marker-42' AS m")
  const log = c.readLog()
  t.match(log, /database system is ready to accept connections/, 'log has startup lines')
  t.match(log, /\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \S+ \[\d+\] [0-9a-f]+\.[0-9a-f]+ /, 'default log_line_prefix %m [%p] %c')
  t.match(log, /statement: SELECT 'harness-marker-42'/, 'log_statement=all output in log')
  t.match(log, /password authentication failed for user "postgres"/, 'failed auth logged')

  const dataDir = c.dataDir
  await c.stop()
  await c.stop() // idempotent
  t.notOk(existsSync(dataDir), 'temp dir removed')
  const after = await tryConnect(c, 'postgres', c.superuserPassword)
  t.equal(after.ok, false, 'server is gone after stop()')
})

t.test('md5 cluster', async (t) => {
  const c = await startPostgres({ auth: 'md5' })
  t.teardown(() => c.stop())
  const [enc] = await c.query('SHOW password_encryption')
  t.equal(enc.password_encryption, 'md5')
  const [hash] = await c.query("SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'")
  t.match(hash.rolpassword, /^md5[0-9a-f]{32}$/, 'superuser password re-hashed as md5')
  const rules = await c.query("SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host'")
  t.ok(rules.length > 0 && rules.every((r) => r.auth_method === 'md5'), 'hba uses md5')

  await c.createRole('md5user', 'pw-md5')
  const [h2] = await c.query("SELECT rolpassword FROM pg_authid WHERE rolname = 'md5user'")
  t.match(h2.rolpassword, /^md5/, 'new role stored as md5')
  const ok = await tryConnect(c, 'md5user', 'pw-md5')
  t.equal(ok.ok, true, 'md5 login works')
  const bad = await tryConnect(c, 'md5user', 'nope')
  t.equal(bad.ok, false)
  if (!bad.ok) t.equal(bad.code, '28P01')
})

t.test('trust cluster with custom hba, two clusters at once', async (t) => {
  const [a, b] = await Promise.all([
    startPostgres({ auth: 'trust' }),
    startPostgres({ hba: ['local all all trust', 'host all postgres 127.0.0.1/32 scram-sha-256', 'host all all 127.0.0.1/32 reject'] }),
  ])
  t.teardown(() => Promise.all([a.stop(), b.stop()]).then(() => undefined))
  t.not(a.port, b.port, 'different ports')
  t.not(a.dataDir, b.dataDir, 'different data dirs')

  const anyPw = await tryConnect(a, 'postgres', 'whatever')
  t.equal(anyPw.ok, true, 'trust: any password accepted')
  await a.createRole('carol', null)
  const carol = await tryConnect(a, 'carol', undefined)
  t.equal(carol.ok, true, 'trust: role without password logs in')

  await b.createRole('dave', 'pw')
  const dave = await tryConnect(b, 'dave', 'pw')
  t.equal(dave.ok, false, 'custom hba replaces the default')
  if (!dave.ok) t.equal(dave.code, '28000', 'rejected by pg_hba')
  const [one] = await b.query('SELECT 1 AS one')
  t.equal(one.one, 1, 'superuser allowed by custom hba')
})

t.test('log file is readable and grows', async (t) => {
  const c = await startPostgres({ settings: { log_connections: 'on' } })
  t.teardown(() => c.stop())
  const before = c.readLog().length
  await c.query('SELECT 1')
  t.ok(c.readLog().length > before, 'log grows')
  t.match(c.readLog(), /connection authorized: user=postgres/)
  t.ok(statSync(c.logFile).isFile())
})

t.test('ssl cluster', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgwitness-harness-ssl-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const pki = await createDevPki(dir)
  const c = await startPostgres({
    ssl: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert },
    hba: ['local all all trust', 'hostssl all all 127.0.0.1/32 scram-sha-256', 'host all all 127.0.0.1/32 reject'],
  })
  t.teardown(() => c.stop())
  const [s] = await c.query('SHOW ssl')
  t.equal(s.ssl, 'on')

  const client = new pg.Client({
    host: c.host,
    port: c.port,
    user: c.superuser,
    password: c.superuserPassword,
    database: 'postgres',
    ssl: { ca: readFileSync(pki.caCert, 'utf8'), servername: 'localhost', rejectUnauthorized: true },
  })
  await client.connect()
  t.teardown(() => client.end())
  const r = await client.query('SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()')
  t.equal(r.rows[0].ssl, true, 'connection is TLS, server cert verified against the dev CA')

  const plain = new pg.Client({ host: c.host, port: c.port, user: c.superuser, password: c.superuserPassword, ssl: false })
  plain.on('error', () => {})
  await t.rejects(plain.connect(), { code: '28000' }, 'non-TLS rejected by hba')
  await plain.end().catch(() => undefined)
})
