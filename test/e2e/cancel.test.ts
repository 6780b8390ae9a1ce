/**
 * Item 8 (Cancel), issue 12 item 6: clients get a BackendKeyData with the
 * upstream backend's real pid (so pg_backend_pid(), a notification's sender
 * pid and pg_terminate_backend(pid) agree with it, as when connected
 * directly) and a secret minted by the proxy; a CancelRequest naming that
 * (pid, secret) — on a new plaintext connection (libpq, node-postgres) or
 * over TLS (postgres.js) — is forwarded upstream with the server's real
 * secret; an unknown pid or a wrong secret does nothing.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import net from 'node:net'
import tls from 'node:tls'
import { rmSync } from 'node:fs'
import pg from 'pg'
import { startFixture, type Fixture } from '../helpers/proxy.js'
import { WireClient } from '../helpers/wire.js'
import { readValidAuditLog, recordsOfType, waitForRecords, type RecordOfType } from '../helpers/audit.js'

const f: Fixture = await startFixture()
t.teardown(async () => {
  await f.stop()
  rmSync(f.dir, { recursive: true, force: true })
})

type PgErr = Error & { code?: string }

/** pid and secret the client received in BackendKeyData. */
function keyOf(c: pg.Client): { pid: number; secret: number } {
  const k = c as unknown as { processID: number; secretKey: number }
  return { pid: k.processID, secret: k.secretKey }
}

async function backendPid(c: pg.Client): Promise<number> {
  return (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid
}

/** Poll the cluster directly until the backend runs a pg_sleep. */
async function waitUntilSleeping(pid: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const r = await f.pg.query("select count(*)::int as n from pg_stat_activity where pid = $1 and state = 'active' and query like '%pg_sleep%'", [pid])
    if (r[0]?.n === 1) return
    if (Date.now() > deadline) throw new Error(`backend ${pid} did not start sleeping within ${timeoutMs} ms`)
    await new Promise((res) => setTimeout(res, 20))
  }
}

function cancelPacket(pid: number, secret: number | Buffer): Buffer {
  const key = typeof secret === 'number' ? Buffer.alloc(4) : secret
  if (typeof secret === 'number') key.writeInt32BE(secret | 0, 0)
  const b = Buffer.alloc(12 + key.length)
  b.writeInt32BE(b.length, 0)
  b.writeInt32BE(80877102, 4)
  b.writeInt32BE(pid | 0, 8)
  key.copy(b, 12)
  return b
}

/**
 * Send a CancelRequest to the proxy on a new connection (plaintext, or TLS
 * after an SSLRequest); resolves when the proxy has closed the connection,
 * i.e. after it processed the request.
 */
function sendCancel(pid: number, secret: number | Buffer, o: { tls?: boolean } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the proxy did not close the cancel connection within 10 s')), 10_000)
    const done = () => {
      clearTimeout(timer)
      resolve()
    }
    const raw = net.connect(f.proxy.port, '127.0.0.1')
    raw.on('error', () => undefined)
    if (!o.tls) {
      raw.once('connect', () => raw.write(cancelPacket(pid, secret)))
      raw.on('data', () => undefined)
      raw.once('close', done)
      return
    }
    raw.once('connect', () => {
      const ssl = Buffer.alloc(8)
      ssl.writeInt32BE(8, 0)
      ssl.writeInt32BE(80877103, 4)
      raw.write(ssl)
    })
    raw.once('data', (b: Buffer) => {
      if (b.toString() !== 'S') {
        clearTimeout(timer)
        reject(new Error(`SSLRequest answered ${JSON.stringify(b.toString())}`))
        return
      }
      const s = tls.connect({ socket: raw, rejectUnauthorized: false })
      s.on('error', () => undefined)
      s.once('secureConnect', () => s.write(cancelPacket(pid, secret)))
      s.on('data', () => undefined)
      s.once('close', done)
    })
  })
}

async function statementRecord(sessionPid: number, text: string): Promise<RecordOfType<'statement'>> {
  const match = (r: { type: string }) =>
    r.type === 'statement' && (r as RecordOfType<'statement'>).upstream.backend_pid === sessionPid && (r as RecordOfType<'statement'>).statement.text === text
  const recs = await waitForRecords(f.auditPath, (rs) => rs.some(match))
  readValidAuditLog(f.auditPath)
  return recs.filter(match)[0] as RecordOfType<'statement'>
}

t.test('BackendKeyData carries the backend\'s real pid (as pg_backend_pid() says) and a secret of the proxy\'s', async (t) => {
  const a = await f.client()
  const b = await f.client()
  const ka = keyOf(a)
  const kb = keyOf(b)
  t.equal(ka.pid, await backendPid(a), 'the client-visible pid is pg_backend_pid()')
  t.equal(kb.pid, await backendPid(b))
  t.not(ka.pid, kb.pid, 'each session its own backend')
  t.not(ka.secret, kb.secret, 'each session its own secret')
  await a.end()
  await b.end()
})

t.test('raw client: BackendKeyData pid = pg_backend_pid(); LISTEN x; NOTIFY x gives a notification from that pid', async (t) => {
  const c = await WireClient.connect({ port: f.proxy.port, token: await f.token() })
  const pid = c.backendKey!.processID
  const rows = (await c.query('select pg_backend_pid()')).filter((m) => m.name === 'dataRow')
  t.same(rows.map((m) => Number(m.fields![0])), [pid], 'pg_backend_pid() is the BackendKeyData process id')
  const msgs = await c.query('LISTEN pgw_key; NOTIFY pgw_key, \'hello\'')
  const n = msgs.find((m) => m.name === 'notification') as { processId?: number; channel?: string; payload?: string } | undefined
  t.ok(n, 'a NotificationResponse')
  t.equal(n?.channel, 'pgw_key')
  t.equal(n?.payload, 'hello')
  t.equal(n?.processId, pid, 'the notifying process is the one named in BackendKeyData')
  await c.end()
})

t.test('node-postgres: a notification\'s processId is the client\'s processID, from the same session and from another', async (t) => {
  const a = await f.client()
  const b = await f.client()
  const got: Array<{ processId: number; payload?: string }> = []
  const two = new Promise<void>((resolve) => a.on('notification', (m) => {
    got.push({ processId: m.processId, payload: m.payload })
    if (got.length === 2) resolve()
  }))
  await a.query('LISTEN pgw_pids')
  await a.query("NOTIFY pgw_pids, 'self'")
  await b.query("NOTIFY pgw_pids, 'other'")
  await two
  t.same(got, [{ processId: keyOf(a).pid, payload: 'self' }, { processId: keyOf(b).pid, payload: 'other' }])
  await a.end()
  await b.end()
})

t.test('pg_terminate_backend(pid) with the pid a client was given, or pg_backend_pid(), behaves as direct', async (t) => {
  // Direct, for comparison: what the terminated client sees.
  const direct = (): Promise<pg.Client> => {
    const c = new pg.Client({ host: '127.0.0.1', port: f.pg.port, user: 'app', database: 'appdb', password: f.appPassword })
    c.on('error', () => undefined)
    return c.connect().then(() => c)
  }
  // The victim runs a statement when it is terminated, so the FATAL comes back as that statement's error.
  const outcome = async (victim: pg.Client, killer: pg.Client, how: 'other' | 'self') => {
    const fail = (e: PgErr) => `${e.code} ${e.message}`
    if (how === 'self') return { ok: true, after: await victim.query('select pg_terminate_backend(pg_backend_pid())').then(() => 'still alive', fail) }
    const realPid = await backendPid(victim)
    const running = victim.query('select pg_sleep(60)').then(() => 'still alive', fail)
    await waitUntilSleeping(realPid)
    const given = (victim as unknown as { processID: number }).processID
    const ok = (await killer.query<{ ok: boolean }>('select pg_terminate_backend($1) as ok', [given])).rows[0]!.ok
    if (!ok) await f.pg.query('select pg_cancel_backend($1)', [realPid]) // do not wait a minute for a failing test
    return { ok, after: await running }
  }
  for (const how of ['other', 'self'] as const) {
    const viaDirect = await outcome(await direct(), await direct(), how)
    const victim = await f.client()
    const vpid = await backendPid(victim)
    const viaProxy = await outcome(victim, await f.client(), how)
    t.same(viaProxy, viaDirect, `${how}: as direct (${JSON.stringify(viaDirect)})`)
    t.match(viaProxy.after, /^57P01 terminating connection due to administrator command/)
    const recs = await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'session.end').some((r) => r.upstream.backend_pid === vpid))
    t.equal(recordsOfType(recs, 'session.end').find((r) => r.upstream.backend_pid === vpid)?.reason, 'upstream_closed', `${how}: session.end upstream_closed`)
  }
})

t.test('node-postgres query cancel (pg.Client#cancel) → 57014 quickly, statement recorded as cancelled', async (t) => {
  const c = await f.client()
  const pid = await backendPid(c)
  const q = new pg.Query('select pg_sleep(30)')
  const result = new Promise<PgErr | null>((resolve) => {
    q.on('error', (e: PgErr) => resolve(e))
    q.on('end', () => resolve(null))
  })
  const t0 = Date.now()
  c.query(q)
  await waitUntilSleeping(pid)
  // node-postgres's own cancel: a new Connection to the same host/port sending CancelRequest with the client's key.
  const canceller = new pg.Client({ host: '127.0.0.1', port: f.proxy.port })
  ;(canceller as unknown as { connection: NodeJS.EventEmitter }).connection.on('error', () => undefined)
  ;(canceller as unknown as { cancel(c: pg.Client, q: pg.Query): void }).cancel(c, q)
  const err = await result
  const took = Date.now() - t0
  t.ok(err, 'the query failed')
  t.equal(err?.code, '57014', 'query_canceled')
  t.match(err?.message ?? '', /canceling statement due to user request/)
  t.ok(took < 15_000, `cancelled long before pg_sleep(30) would end (${took} ms)`)
  const after = await c.query('select 42 as x')
  t.equal(after.rows[0]?.x, 42, 'the session goes on after the cancel')
  const rec = await statementRecord(pid, 'select pg_sleep(30)')
  t.equal(rec.outcome.status, 'cancelled')
  t.equal(rec.outcome.sqlstate, '57014')
  t.match(rec.outcome.message ?? '', /canceling statement due to user request/)
  t.ok((rec.outcome.duration_us ?? 0) < 15_000_000)
  await c.end()
})

t.test('a CancelRequest sent over TLS (as postgres.js does) is honoured', async (t) => {
  const c = await f.client()
  const pid = await backendPid(c)
  const k = keyOf(c)
  const running = c.query('select pg_sleep(30)').then(() => null, (e: PgErr) => e)
  await waitUntilSleeping(pid)
  await sendCancel(k.pid, k.secret, { tls: true })
  const err = await running
  t.equal(err?.code, '57014')
  const rec = await statementRecord(pid, 'select pg_sleep(30)')
  t.equal(rec.outcome.status, 'cancelled')
  await c.end()
})

t.test('psql: SIGINT sends a CancelRequest on a new plaintext connection; the statement is cancelled', async (t) => {
  const env = f.libpqEnv(await f.token())
  const child = spawn('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-c', 'select pg_backend_pid(), pg_sleep(30)'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
  child.stdout.on('data', () => undefined)
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
  })
  // Find psql's backend through the proxy's record of its session.
  const recs = await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'session.start').some((r) => r.session.application_name === 'psql'), 15_000)
  const start = recordsOfType(recs, 'session.start').filter((r) => r.session.application_name === 'psql').at(-1)!
  const pid = start.upstream.backend_pid
  await waitUntilSleeping(pid)
  const t0 = Date.now()
  child.kill('SIGINT')
  const code = await exited
  t.ok(Date.now() - t0 < 15_000, 'psql returned promptly')
  t.not(code, 0, 'psql reports the failed statement')
  t.match(stderr, /canceling statement due to user request/)
  const rec = await statementRecord(pid, 'select pg_backend_pid(), pg_sleep(30)')
  t.equal(rec.outcome.status, 'cancelled')
  t.equal(rec.outcome.sqlstate, '57014')
  t.equal(rec.session.id, start.session.id)
})

t.test('a CancelRequest with an unknown key does nothing', async (t) => {
  const c = await f.client()
  const pid = await backendPid(c)
  const k = keyOf(c)
  // A session that has ended: its key is no longer valid.
  const gone = await f.client()
  const goneKey = keyOf(gone)
  const gonePid = await backendPid(gone)
  await gone.end()
  await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'session.end').some((r) => r.upstream.backend_pid === gonePid))

  const text = 'select pg_sleep(1.5) as slept'
  const running = c.query(text).then((r) => r, (e: PgErr) => e)
  await waitUntilSleeping(pid)
  let unknownPid = (k.pid ^ 0x5a5a5a5a) & 0x7fffffff
  if (unknownPid === k.pid || unknownPid === goneKey.pid) unknownPid = (unknownPid + 1) & 0x7fffffff
  await sendCancel(unknownPid, k.secret)
  await sendCancel(goneKey.pid, goneKey.secret)
  await sendCancel(unknownPid, 12345, { tls: true })
  const res = await running
  t.notOk(res instanceof Error, `the query completed: ${res instanceof Error ? res.message : 'ok'}`)
  const rec = await statementRecord(pid, text)
  t.equal(rec.outcome.status, 'ok')
  t.equal(rec.outcome.sqlstate, null)
  await c.end()
})

t.test('a CancelRequest with the right pid but a wrong secret does nothing', async (t) => {
  const c = await f.client()
  const pid = await backendPid(c)
  const k = keyOf(c)
  const text = 'select pg_sleep(1.5) as slept_again'
  const running = c.query(text).then((r) => r, (e: PgErr) => e)
  await waitUntilSleeping(pid)
  await sendCancel(k.pid, k.secret ^ 1)
  await sendCancel(k.pid, ~k.secret)
  await sendCancel(k.pid, 0)
  const key = Buffer.alloc(4)
  key.writeInt32BE(k.secret | 0, 0)
  await sendCancel(k.pid, Buffer.concat([key, Buffer.from([0, 0, 0, 0])]), { tls: true }) // the right 4 bytes, then more
  const res = await running
  t.notOk(res instanceof Error, `the query completed: ${res instanceof Error ? res.message : 'ok'}`)
  const rec = await statementRecord(pid, text)
  t.equal(rec.outcome.status, 'ok')
  // And the right key still works afterwards (the wrong attempts did not unregister it).
  const again = c.query('select pg_sleep(30)').then(() => null, (e: PgErr) => e)
  await waitUntilSleeping(pid)
  await sendCancel(k.pid, k.secret)
  t.equal((await again)?.code, '57014', 'the right key cancels')
  await c.end()
})
