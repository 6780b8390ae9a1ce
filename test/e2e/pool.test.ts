/**
 * Issue 7 item 4: upstream connection reuse (`upstream.pool`, off by default).
 * Real clients (node-postgres) → pgwitness → real PostgreSQL: a session that
 * ends idle leaves its upstream connection reset (DISCARD ALL) for the next
 * session with the same role, database, startup parameters and credentials;
 * nothing of one session's state reaches the next; the governed session id
 * is per session and visible server-side; a connection that is not idle, or
 * that the server closed, is never handed out; every session still records
 * the backend pid and server session id it used.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import pg from 'pg'
import { parseConfig } from '../../src/config/load.js'
import type { PgwitnessConfig, UpstreamPoolConfig } from '../../src/config/types.js'
import { POOLED_APPLICATION_NAME, setupQuery } from '../../src/upstream/pool.js'
import { serverView } from '../helpers/server-view.js'
import { startFixture, type Fixture } from '../helpers/proxy.js'
import { readValidAuditLog, recordsOfType, waitForRecords } from '../helpers/audit.js'
import { parseExposition, sum } from '../helpers/metrics.js'

/** BackendKeyData as node-postgres keeps it (not in its type definitions). */
const keyOf = (c: pg.Client) => c as unknown as { processID: number; secretKey: number }
import type { AuditRecord } from '../../src/evidence/types.js'

const f: Fixture = await startFixture()
t.teardown(async () => {
  await f.stop()
  rmSync(f.dir, { recursive: true, force: true })
})

const POOL: UpstreamPoolConfig = { enabled: true, maxIdlePerKey: 4, idleTimeoutMs: 60_000, maxLifetimeMs: 30 * 60_000 }
/** The config in force (reload() replaces it). */
let live: PgwitnessConfig = f.config

function reload(next: PgwitnessConfig): void {
  live = next
  f.proxy.reload(next)
}

function enablePool(over: Partial<UpstreamPoolConfig> = {}): void {
  reload({ ...live, upstream: { ...live.upstream, pool: { ...POOL, ...over } } })
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  return sum(parseExposition(await f.proxy.metrics.exposition()), name, labels)
}

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > deadline) {
      const pool = parseExposition(await f.proxy.metrics.exposition()).filter((m) => m.name.startsWith('pgwitness_upstream_pool_'))
      throw new Error(`timed out waiting for ${what}; pool metrics: ${JSON.stringify(pool)}`)
    }
    await sleep(20)
  }
}

const idle = (): Promise<number> => metric('pgwitness_upstream_pool_idle_connections')
const discarded = (reason: string): Promise<number> => metric('pgwitness_upstream_pool_discarded_total', { reason })

interface Conn {
  client: pg.Client
  /** ParameterStatus values the client got at startup (and later). */
  params: Map<string, string>
}

async function connect(o: { user?: string; database?: string; token?: string; applicationName?: string; options?: string } = {}): Promise<Conn> {
  const params = new Map<string, string>()
  const c = new pg.Client({
    host: '127.0.0.1',
    port: f.proxy.port,
    user: o.user ?? 'app',
    database: o.database ?? 'appdb',
    password: o.token ?? (await f.token()),
    ssl: { rejectUnauthorized: false },
    application_name: o.applicationName ?? 'pool-test',
    ...(o.options !== undefined ? { options: o.options } : {}),
  })
  c.on('error', () => undefined)
  ;(c as unknown as { connection: NodeJS.EventEmitter }).connection.on('parameterStatus', (m: { parameterName: string; parameterValue: string }) =>
    params.set(m.parameterName, m.parameterValue))
  await c.connect()
  return { client: c, params }
}

/** End a session and wait until its connection is back in the pool (idle count reaches `expectIdle`). */
async function endAndPool(c: pg.Client, expectIdle: number): Promise<void> {
  await c.end()
  await waitFor(`${expectIdle} idle pooled connection(s)`, async () => (await idle()) >= expectIdle)
}

/** The session.start record of a governed session id. */
async function startRecord(sessionId: string) {
  const ofSession = (r: AuditRecord) => 'session' in r && (r as { session: { id: string } }).session.id === sessionId
  const recs = await waitForRecords(f.auditPath, (rs) => rs.some((r) => r.type === 'session.end' && ofSession(r)))
  const start = recordsOfType(recs.filter(ofSession), 'session.start')
  const end = recordsOfType(recs.filter(ofSession), 'session.end')
  if (start.length !== 1 || end.length !== 1) throw new Error(`expected one session.start and one session.end for ${sessionId}`)
  return { start: start[0]!, end: end[0]! }
}

/** Close every idle connection (turn the pool off and on) so each test starts empty. */
async function emptyPool(): Promise<void> {
  reload({ ...live, upstream: { ...live.upstream, pool: { ...POOL, enabled: false } } })
  // The next open() notices the reload and closes idle connections; a direct connection does not go through the pool.
  const c = await connect()
  await c.client.end()
  await waitFor('an empty pool', async () => (await idle()) === 0)
  enablePool()
}

// ---------------------------------------------------------------------------

t.test('config: upstream.pool is validated, off by default', async (t) => {
  const yaml = readFileSync(path.join(f.dir, 'pgwitness.yaml'), 'utf8')
  const withPool = (pool: string) =>
    parseConfig(yaml.replace('  tls: { mode: disable }\n', `  tls: { mode: disable }\n  pool: ${pool}\n`), { baseDir: f.dir, source: path.join(f.dir, 'x.yaml') })
  t.equal(f.config.upstream.pool, undefined, 'no upstream.pool => not configured (off)')
  t.same(withPool('{}').upstream.pool, { enabled: false, maxIdlePerKey: 16, idleTimeoutMs: 60_000, maxLifetimeMs: 1_800_000 }, 'defaults; enabled: false')
  t.same(withPool('{ enabled: true, max_idle_per_key: 3, idle_timeout: 10s, max_lifetime: 5m }').upstream.pool, {
    enabled: true, maxIdlePerKey: 3, idleTimeoutMs: 10_000, maxLifetimeMs: 300_000,
  })
  t.throws(() => withPool('{ enabled: yes please }'), /upstream\.pool\.enabled: must be true or false/)
  t.throws(() => withPool('{ max_idle_per_key: 0 }'), /upstream\.pool\.max_idle_per_key: must be 1\.\.10000/)
  t.throws(() => withPool('{ idle_timeout: soon }'), /upstream\.pool\.idle_timeout/)
  t.throws(() => withPool('{ idle_timeout: 2h, max_lifetime: 1h }'), /upstream\.pool\.idle_timeout: must not be longer than upstream\.pool\.max_lifetime/)
  t.throws(() => withPool('{ size: 10 }'), /upstream\.pool\.size/)
  t.throws(() => withPool('true'), /upstream\.pool/)
})

t.test('without upstream.pool every session gets its own upstream connection', async (t) => {
  const a = await connect()
  const va = await serverView(a.client)
  await a.client.end()
  const b = await connect()
  const vb = await serverView(b.client)
  await b.client.end()
  t.not(vb.serverSessionId, va.serverSessionId, 'a new server session')
  t.equal(await idle(), 0)
})

t.test('a second session reuses the backend; its governed session id is its own, server-side and in the records', async (t) => {
  enablePool()
  const a = await connect({ applicationName: 'billing-api' })
  const va = await serverView(a.client)
  t.equal(va.appName, `billing-api pgw:${va.sessionId}`, 'a fresh pooled connection is tagged like any other')
  t.equal(va.activityAppName, va.appName)
  t.equal(a.params.get('application_name'), va.appName, 'the client was told its tagged application_name at startup')
  await endAndPool(a.client, 1)

  const b = await connect({ applicationName: 'billing-api' })
  const vb = await serverView(b.client)
  t.equal(vb.pid, va.pid, 'same backend pid')
  t.equal(vb.serverSessionId, va.serverSessionId, 'same server session (%c)')
  t.not(vb.sessionId, va.sessionId, 'a new governed session id')
  t.equal(vb.appName, `billing-api pgw:${vb.sessionId}`, 'application_name carries the new id')
  t.equal(vb.activityAppName, vb.appName, 'pg_stat_activity shows the new tag')
  t.equal(b.params.get('application_name'), vb.appName, 'startup ParameterStatus application_name is the new tag')
  for (const k of ['server_version', 'server_encoding', 'client_encoding', 'DateStyle', 'TimeZone', 'integer_datetimes', 'standard_conforming_strings']) {
    t.equal(b.params.get(k), a.params.get(k), `startup ParameterStatus ${k} as for the fresh connection`)
  }
  t.equal(keyOf(b.client).processID, vb.pid, 'BackendKeyData: the real backend pid, the same for both sessions')
  t.equal(keyOf(a.client).processID, va.pid)
  t.not(keyOf(b.client).secretKey, keyOf(a.client).secretKey, 'a new proxy-minted secret for the new session')
  const sh = await b.client.query('SHOW pgwitness.session_id')
  t.equal((sh.rows[0] as Record<string, string>)['pgwitness.session_id'], vb.sessionId)
  // A client may change the governed settings (session.governed_settings: record, the default: the
  // statements run and are flagged in the records) …
  await b.client.query("SET application_name = 'spoof'")
  await b.client.query(`SELECT set_config('pgwitness.session_id', '${va.sessionId}', false)`)
  await endAndPool(b.client, 1)
  // … but nothing of it reaches the next session on the same backend: it gets its own governed values.
  const c = await connect({ applicationName: 'billing-api' })
  const vc = await serverView(c.client)
  t.equal(vc.pid, va.pid, 'the same backend again')
  t.not(vc.sessionId, va.sessionId)
  t.not(vc.sessionId, vb.sessionId)
  t.equal(vc.appName, `billing-api pgw:${vc.sessionId}`, 'application_name carries the third session\'s id')
  await endAndPool(c.client, 1)
  const flaggedOf = (rs: AuditRecord[]) => recordsOfType(rs, 'statement')
    .filter((r) => r.session.id === vb.sessionId && r.statement.governed_setting_changed === true).map((r) => r.statement.command)
  const recs = await waitForRecords(f.auditPath, (rs) => flaggedOf(rs).length >= 2)
  t.same(flaggedOf(recs), ['SET', 'SELECT'], 'both changes are in the second session\'s records, flagged')

  const ra = await startRecord(va.sessionId)
  const rb = await startRecord(vb.sessionId)
  t.equal(ra.start.upstream.backend_pid, va.pid)
  t.equal(rb.start.upstream.backend_pid, va.pid, 'session.start of the second session: the same backend_pid')
  t.equal(rb.start.upstream.server_session_id, va.serverSessionId, '… and server_session_id')
  t.equal(ra.start.upstream.server_session_id, va.serverSessionId)
  t.equal(rb.start.session.application_name, 'billing-api')
  t.equal(ra.end.reason, 'client_closed')
  t.equal(rb.end.reason, 'client_closed')
  t.ok(ra.end.time <= rb.start.time, 'the sessions do not overlap: (server_session_id, start..end) tells them apart')
  readValidAuditLog(f.auditPath)
  t.ok((await metric('pgwitness_upstream_pool_reused_total')) >= 1, 'reuse counted')
})

t.test('nothing of one session reaches the next', async (t) => {
  await emptyPool()
  const a = await connect()
  const va = await serverView(a.client)
  const before = await a.client.query("select current_setting('work_mem') as wm, current_setting('search_path') as sp")
  const tzAtStart = a.params.get('TimeZone')
  const dateStyleAtStart = a.params.get('DateStyle')
  for (const sql of [
    'create temp table leak_tmp(a int)',
    'prepare leak_stmt as select 1',
    "set work_mem = '7MB'",
    "set myapp.tenant = 'acme'",
    'set search_path = pg_temp, public',
    "set TimeZone = 'Asia/Tokyo'",
    'set datestyle = sql, dmy',
    'select pg_advisory_lock(4242)',
    'listen leak_chan',
    'begin',
    'declare leak_cur cursor with hold for select 1',
    'commit',
    'set session characteristics as transaction read only',
  ]) await a.client.query(sql)
  t.equal(a.params.get('TimeZone'), 'Asia/Tokyo', 'the client saw its own SET TimeZone')
  await endAndPool(a.client, 1)

  const b = await connect()
  const vb = await serverView(b.client)
  t.equal(vb.pid, va.pid, 'the same backend')
  const q = async (sql: string): Promise<unknown> => Object.values((await b.client.query(sql)).rows[0] as Record<string, unknown>)[0]
  t.equal(await q("select to_regclass('pg_temp.leak_tmp')"), null, 'temp table gone')
  t.equal(await q('select count(*)::int from pg_prepared_statements'), 0, 'prepared statements gone')
  t.equal(await q("select current_setting('work_mem')"), (before.rows[0] as { wm: string }).wm, 'work_mem reset')
  t.equal(await q("select current_setting('search_path')"), (before.rows[0] as { sp: string }).sp, 'search_path reset')
  t.ok([null, ''].includes((await q("select current_setting('myapp.tenant', true)")) as string | null), 'custom setting reset')
  t.equal(await q("select count(*)::int from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()"), 0, 'advisory lock released')
  t.equal(await q('select count(*)::int from pg_listening_channels()'), 0, 'no LISTEN')
  t.equal(await q('select count(*)::int from pg_cursors'), 0, 'WITH HOLD cursor closed')
  t.equal(await q('show transaction_read_only'), 'off', 'session characteristics reset')
  t.equal(await q('show TimeZone'), tzAtStart, 'TimeZone reset')
  t.equal(b.params.get('TimeZone'), tzAtStart, 'the client is told the reset TimeZone at startup, not the previous session\'s')
  t.equal(b.params.get('DateStyle'), dateStyleAtStart, "nor its DateStyle")
  t.equal(await q('show DateStyle'), dateStyleAtStart)
  // A notification for the previous session's channel does not reach this one.
  const notes: string[] = []
  b.client.on('notification', (n) => notes.push(n.channel))
  await f.pg.query("select pg_notify('leak_chan', 'x')", [], 'appdb')
  await b.client.query('select 1')
  await sleep(100)
  await b.client.query('select 1')
  t.same(notes, [], 'no notification for LISTEN of the previous session')

  // RESET ALL / DISCARD ALL on a reused connection restore the neutral values, never the previous session's id.
  await b.client.query('RESET ALL')
  const afterReset = await serverView(b.client)
  t.not(afterReset.sessionId, va.sessionId, "RESET ALL does not bring back the previous session's id")
  t.equal(afterReset.sessionId, '', 'it restores the neutral startup value')
  t.equal(afterReset.appName, POOLED_APPLICATION_NAME)
  await b.client.end()
})

t.test('a connection left in a transaction, a failed transaction, a statement in flight or an unsynced pipeline is closed, not reused', async (t) => {
  await emptyPool()
  await f.pg.query('create table if not exists pool_tx(a int)', [], 'appdb')
  await f.pg.query('grant all on pool_tx to app', [], 'appdb')

  // open transaction
  const a = await connect()
  const va = await serverView(a.client)
  await a.client.query('begin')
  await a.client.query('insert into pool_tx values (1)')
  const notIdle0 = await discarded('not_idle')
  await a.client.end()
  await waitFor('the open-transaction connection to be discarded', async () => (await discarded('not_idle')) > notIdle0)
  t.equal(await idle(), 0, 'not pooled')
  const b = await connect()
  const vb = await serverView(b.client)
  t.not(vb.pid, va.pid, 'the next session gets another backend')
  t.equal((await b.client.query('select count(*)::int as n from pool_tx')).rows[0].n, 0, 'the open transaction was rolled back, not committed')
  await endAndPool(b.client, 1)

  // failed transaction (reuses b's clean connection, then leaves it failed)
  const c = await connect()
  const vc = await serverView(c.client)
  t.equal(vc.pid, vb.pid)
  await c.client.query('begin')
  await t.rejects(c.client.query('select 1/0'))
  const notIdle1 = await discarded('not_idle')
  await c.client.end()
  await waitFor('the failed-transaction connection to be discarded', async () => (await discarded('not_idle')) > notIdle1)
  t.equal(await idle(), 0)
  const d = await connect()
  t.not((await serverView(d.client)).pid, vc.pid, 'failed transaction: not reused')
  await endAndPool(d.client, 1)

  // statement in flight when the client vanished
  const e = await connect()
  const ve = await serverView(e.client)
  const notIdle2 = await discarded('not_idle')
  const conn = (e.client as unknown as { connection: { stream: import('node:net').Socket; query(text: string): void } }).connection
  conn.query('select pg_sleep(1)')
  await sleep(50)
  conn.stream.destroy()
  await waitFor('the busy connection to be discarded', async () => (await discarded('not_idle')) > notIdle2)
  const g = await connect()
  t.not((await serverView(g.client)).pid, ve.pid, 'statement in flight: not reused')
  await endAndPool(g.client, 1)

  // extended protocol: Parse + Flush answered, no Sync
  const h = await connect()
  const vh = await serverView(h.client)
  const hc = (h.client as unknown as { connection: NodeJS.EventEmitter & { parse(q: { text: string; name?: string }): void; flush(): void } }).connection
  const parsed = new Promise<void>((resolve) => hc.once('parseComplete', () => resolve()))
  hc.parse({ text: 'select 1', name: 'unsynced' })
  hc.flush()
  await parsed
  const notIdle3 = await discarded('not_idle')
  await h.client.end()
  await waitFor('the unsynced connection to be discarded', async () => (await discarded('not_idle')) > notIdle3)
  const k = await connect()
  t.not((await serverView(k.client)).pid, vh.pid, 'unsynced extended-protocol state: not reused')
  await k.client.end()
})

t.test('a connection left in COPY FROM STDIN is closed, not reused', async (t) => {
  await emptyPool()
  await f.pg.query('create table if not exists pool_tx(a int)', [], 'appdb')
  await f.pg.query('grant all on pool_tx to app', [], 'appdb')
  const a = await connect()
  const va = await serverView(a.client)
  const conn = (a.client as unknown as { connection: NodeJS.EventEmitter & { query(text: string): void } }).connection
  const copying = new Promise<void>((resolve) => conn.once('copyInResponse', () => resolve()))
  conn.query('copy pool_tx from stdin')
  await copying
  const notIdle = await discarded('not_idle')
  await a.client.end()
  await waitFor('the COPY connection to be discarded', async () => (await discarded('not_idle')) > notIdle)
  t.equal(await idle(), 0)
  const b = await connect()
  t.not((await serverView(b.client)).pid, va.pid, 'mid-COPY: not reused')
  await b.client.end()
})

t.test('concurrent sessions each get their own pooled connection', async (t) => {
  await emptyPool()
  const first = await Promise.all([connect(), connect(), connect()])
  const pids = await Promise.all(first.map(async (c) => (await serverView(c.client)).pid))
  t.equal(new Set(pids).size, 3)
  await Promise.all(first.map((c) => c.client.end()))
  await waitFor('3 idle connections', async () => (await idle()) === 3)
  const second = await Promise.all([connect(), connect(), connect()])
  const again = await Promise.all(second.map(async (c) => (await serverView(c.client)).pid))
  t.same([...again].sort(), [...pids].sort(), 'the three backends, one each')
  t.equal(await idle(), 0)
  await Promise.all(second.map((c) => c.client.end()))
  await waitFor('3 idle connections', async () => (await idle()) === 3)
})

t.test('max_idle_per_key, idle_timeout and max_lifetime bound what the pool keeps', async (t) => {
  await emptyPool()
  enablePool({ maxIdlePerKey: 1 })
  const full0 = await discarded('full')
  const two = await Promise.all([connect(), connect()])
  await Promise.all(two.map((c) => c.client.end()))
  await waitFor('one kept, one closed (full)', async () => (await idle()) === 1 && (await discarded('full')) === full0 + 1)
  t.pass('max_idle_per_key: 1 keeps one')

  enablePool({ idleTimeoutMs: 1000 })
  const timeout0 = await discarded('idle_timeout')
  const a = await connect()
  await a.client.end()
  await waitFor('the idle connection to time out', async () => (await discarded('idle_timeout')) > timeout0 && (await idle()) === 0, 15_000)
  t.pass('idle_timeout closes an unused connection')

  enablePool({ idleTimeoutMs: 1000, maxLifetimeMs: 1000 })
  const life0 = await discarded('max_lifetime')
  const b = await connect()
  const vb = await serverView(b.client)
  await sleep(1100)
  await b.client.end()
  await waitFor('the old connection to be closed at release', async () => (await discarded('max_lifetime')) > life0)
  const c = await connect()
  t.not((await serverView(c.client)).pid, vb.pid, 'a connection past max_lifetime is not reused')
  await c.client.end()
  enablePool()
})

t.test('different roles, databases or startup parameters never share a connection', async (t) => {
  await emptyPool()
  const app = await connect()
  const vApp = await serverView(app.client)
  await endAndPool(app.client, 1)

  const dbaToken = await f.token({ subject: 'alice@corp', claims: { groups: ['dba'] } })
  const dba = await connect({ user: 'postgres', database: 'appdb', token: dbaToken })
  const vDba = await serverView(dba.client)
  t.not(vDba.pid, vApp.pid, 'role postgres does not get role app\'s connection')
  t.equal((await dba.client.query('select current_user as u')).rows[0].u, 'postgres')
  await endAndPool(dba.client, 2)

  const dba2 = await connect({ user: 'postgres', database: 'postgres', token: dbaToken })
  const vDba2 = await serverView(dba2.client)
  t.not(vDba2.pid, vDba.pid, 'another database: another connection')
  t.not(vDba2.pid, vApp.pid)
  await endAndPool(dba2.client, 3)

  const opt = await connect({ options: '-c work_mem=8MB' })
  const vOpt = await serverView(opt.client)
  t.not(vOpt.pid, vApp.pid, 'other startup parameters (options): another connection')
  t.equal((await opt.client.query('show work_mem')).rows[0].work_mem, '8MB', 'opened with the client\'s own startup parameters')
  await endAndPool(opt.client, 4)

  const opt2 = await connect({ options: '-c work_mem=8MB' })
  t.equal((await serverView(opt2.client)).pid, vOpt.pid, 'the same startup parameters: reused')
  t.equal((await opt2.client.query('show work_mem')).rows[0].work_mem, '8MB', 'DISCARD ALL restored the startup value')
  await opt2.client.end()

  const app2 = await connect({ applicationName: 'another-name' })
  const vApp2 = await serverView(app2.client)
  t.equal(vApp2.pid, vApp.pid, 'application_name is not part of the key (it is re-tagged per session)')
  t.equal(vApp2.appName, `another-name pgw:${vApp2.sessionId}`)
  t.equal((await app2.client.query('select current_user as u')).rows[0].u, 'app')
  await app2.client.end()
})

t.test('a pooled connection the server closed while idle is never handed out', async (t) => {
  await emptyPool()
  const a = await connect()
  const va = await serverView(a.client)
  await endAndPool(a.client, 1)
  await f.pg.query('select pg_terminate_backend($1)', [va.pid])
  await waitFor('the terminated connection to leave the pool', async () => (await idle()) === 0)
  t.ok((await discarded('closed_while_idle')) >= 1, 'counted as closed_while_idle')
  const b = await connect()
  const vb = await serverView(b.client)
  t.not(vb.pid, va.pid, 'a new backend')
  t.equal((await b.client.query('select 1 as x')).rows[0].x, 1)
  await endAndPool(b.client, 1)

  // Terminated and checked out at once: whichever notices first (the idle watch or
  // the checkout's round trip), the session gets a live connection.
  await f.pg.query('select pg_terminate_backend($1)', [vb.pid])
  const c = await connect()
  const vc = await serverView(c.client)
  t.not(vc.pid, vb.pid, 'not the terminated backend')
  t.equal((await c.client.query('select 2 as x')).rows[0].x, 2)
  await c.client.end()
})

t.test('cancel works on a reused connection', async (t) => {
  await emptyPool()
  const a = await connect()
  const va = await serverView(a.client)
  await endAndPool(a.client, 1)
  const b = await connect()
  t.equal((await serverView(b.client)).pid, va.pid)
  const q = new pg.Query('select pg_sleep(30)')
  const result = new Promise<{ code?: string } | null>((resolve) => {
    q.on('error', (e: Error & { code?: string }) => resolve(e))
    q.on('end', () => resolve(null))
  })
  b.client.query(q)
  await waitFor('the statement to run', async () =>
    (await f.pg.query("select count(*)::int as n from pg_stat_activity where pid = $1 and wait_event = 'PgSleep'", [va.pid]))[0].n === 1)
  const canceller = new pg.Client({ host: '127.0.0.1', port: f.proxy.port })
  ;(canceller as unknown as { connection: NodeJS.EventEmitter }).connection.on('error', () => undefined)
  ;(canceller as unknown as { cancel(c: pg.Client, q: pg.Query): void }).cancel(b.client, q)
  t.equal((await result)?.code, '57014', 'the statement was cancelled')
  await endAndPool(b.client, 1)
})

t.test('on a reused connection, the previous session\'s cancel key does not cancel the next session\'s statement', async (t) => {
  await emptyPool()
  const a = await connect()
  const va = await serverView(a.client)
  const stale = { pid: keyOf(a.client).processID, secret: keyOf(a.client).secretKey }
  await endAndPool(a.client, 1)
  const b = await connect()
  t.equal(keyOf(b.client).processID, stale.pid, 'the same backend, so the same pid')
  // b waits on a lock held by a direct connection: it runs exactly as long as the test wants.
  const holder = new pg.Client({ host: '127.0.0.1', port: f.pg.port, user: f.pg.superuser, password: f.pg.superuserPassword, database: 'appdb' })
  await holder.connect()
  await holder.query('select pg_advisory_lock(4712)')
  const running = b.client.query('select pg_advisory_lock(4712) as locked').then(() => null, (e: { code?: string }) => e)
  await waitFor('the statement to wait on the lock', async () =>
    (await f.pg.query("select count(*)::int as n from pg_stat_activity where pid = $1 and wait_event_type = 'Lock'", [va.pid]))[0].n === 1)
  await sendCancel(stale.pid, stale.secret) // resolves once the proxy has dealt with it (forwarded or not) and closed
  await holder.query('select pg_advisory_unlock(4712)')
  await holder.end()
  t.equal(await running, null, 'the statement was not cancelled by the earlier session\'s key')
  // The current key does cancel (so the stale one above was really refused, not lost).
  const again = b.client.query('select pg_sleep(30)').then(() => null, (e: { code?: string }) => e)
  await waitFor('the statement to run', async () =>
    (await f.pg.query("select count(*)::int as n from pg_stat_activity where pid = $1 and wait_event = 'PgSleep'", [va.pid]))[0].n === 1)
  await sendCancel(keyOf(b.client).processID, keyOf(b.client).secretKey)
  t.equal((await again)?.code, '57014', 'the current session\'s key cancels')
  await b.client.query('select pg_advisory_unlock_all()')
  await endAndPool(b.client, 1)
})

/** Send a CancelRequest (plaintext, as libpq does); resolves once the proxy has closed the connection. */
function sendCancel(pid: number, secret: number): Promise<void> {
  return new Promise((resolve) => {
    const b = Buffer.alloc(16)
    b.writeInt32BE(16, 0)
    b.writeInt32BE(80877102, 4)
    b.writeInt32BE(pid | 0, 8)
    b.writeInt32BE(secret | 0, 12)
    const s = net.connect(f.proxy.port, '127.0.0.1', () => s.write(b))
    s.on('error', () => undefined)
    s.on('data', () => undefined)
    s.once('close', () => resolve())
  })
}

t.test('pgbench -C (libpq: Terminate, then close): sessions reuse a few backends, each session recorded', async (t) => {
  await emptyPool()
  const script = path.join(f.dir, 'select1.sql')
  writeFileSync(script, 'select 1;\n')
  const reused0 = await metric('pgwitness_upstream_pool_reused_total')
  const token = await f.token()
  const r = await new Promise<{ code: number; out: string }>((resolve) => {
    execFile('pgbench', ['-n', '-C', '-c', '2', '-j', '1', '-t', '15', '-f', script], { env: f.libpqEnv(token), timeout: 120_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? 1 : 0, out: String(stdout) + String(stderr) }))
  })
  t.equal(r.code, 0, r.out)
  t.match(r.out, /number of transactions actually processed: 30\/30/)
  const reused = (await metric('pgwitness_upstream_pool_reused_total')) - reused0
  t.ok(reused >= 20, `most of the 30 sessions reused a pooled connection (${reused})`)
  const recs = readValidAuditLog(f.auditPath)
  const starts = recordsOfType(recs, 'session.start').filter((s) => s.session.application_name === 'pgbench')
  t.ok(starts.length >= 30, 'a session.start per pgbench connection')
  const last30 = starts.slice(-30)
  t.equal(new Set(last30.map((s) => s.session.id)).size, 30, 'each with its own governed session id')
  t.ok(new Set(last30.map((s) => s.upstream.server_session_id)).size <= 10, 'on a few server sessions')
})

t.test('a reload that changes the upstream credentials: connections made with the old ones are not handed out', async (t) => {
  await emptyPool()
  const a = await connect()
  const va = await serverView(a.client)
  await endAndPool(a.client, 1)
  const newPassword = 'rotated-' + Math.random().toString(36).slice(2)
  await f.pg.query(`alter role app password '${newPassword}'`)
  reload({ ...live, upstream: { ...live.upstream, roles: { ...live.upstream.roles, app: { password: newPassword } } } })
  const b = await connect()
  const vb = await serverView(b.client)
  t.not(vb.pid, va.pid, 'a new connection, made with the new password')
  t.ok((await discarded('credentials_changed')) >= 1, 'the old one was closed (credentials_changed)')
  await endAndPool(b.client, 1)
  const c = await connect()
  t.equal((await serverView(c.client)).pid, vb.pid, 'connections made with the new credentials are reused')
  await c.client.end()

  // Turning the pool off closes what it holds and stops pooling.
  reload({ ...live, upstream: { ...live.upstream, pool: { ...POOL, enabled: false } } })
  const d = await connect()
  const vd = await serverView(d.client)
  t.not(vd.pid, vb.pid)
  await d.client.end()
  await waitFor('an empty pool', async () => (await idle()) === 0)
})

t.test('setupQuery quotes any application_name safely', async (t) => {
  const name = "it's \\ a 'name' \\' $x$"
  const rows = await f.pg.query(`${setupQuery(name, 'sid-1').replace(/^SELECT /, 'SELECT ARRAY[')}] AS v`)
  t.same(rows[0].v, [name, 'sid-1'], 'the literals round-trip unchanged')
  const rows2 = await f.pg.query(`SET standard_conforming_strings = off; ${setupQuery(name, 'sid-1').replace(/^SELECT /, 'SELECT ARRAY[')}] AS v`)
  t.same(rows2[0].v, [name, 'sid-1'], '… also with standard_conforming_strings off')
})
