/**
 * Issue 8 item 3: upstream faults. PostgreSQL restarted under live sessions
 * (idle and busy): clients get the server's FATAL, the proxy stays up,
 * session.end says upstream_closed, connections while it is down are refused
 * with 08004 and recorded (upstream_unavailable), and new sessions work once
 * it is back. A backend killed outright (PostgreSQL's crash recovery ends
 * every session). A slow upstream connection, and a long statement, do not
 * hold up other sessions.
 *
 * PostgreSQL unreachable at connect time in its other forms (port closed,
 * accepting but silent, dropping SYNs, TLS verification failing) is covered
 * in upstream.test.ts.
 */
import path from 'node:path'
import pg from 'pg'
import t from 'tap'
import { run } from '../../src/dev/server-process.js'
import { readValidAuditLog, recordsOfType, waitForRecords } from '../helpers/audit.js'
import { activeConnections, backends, secondProxy, startForwarder, until } from '../helpers/hostile.js'
import { startFixture } from '../helpers/proxy.js'

const f = await startFixture()
t.teardown(() => f.stop())

let appSeq = 0
const appName = (tag: string) => `uf-${tag}-${++appSeq}`

/** A node-postgres client through the proxy (port) that records the error that ends it. */
async function client(app: string, port = f.proxy.port): Promise<pg.Client & { lost: Promise<Error> }> {
  const c = new pg.Client({
    host: '127.0.0.1', port, user: 'app', database: 'appdb', password: await f.token(),
    ssl: { rejectUnauthorized: false }, application_name: app, connectionTimeoutMillis: 20_000,
  }) as pg.Client & { lost: Promise<Error> }
  c.lost = new Promise<Error>((resolve) => c.on('error', resolve))
  await c.connect()
  return c
}

async function connectError(app: string): Promise<Error & { code?: string; severity?: string }> {
  return client(app).then(
    async (c) => {
      await c.end()
      throw new Error('connected, but a refusal was expected')
    },
    (e: Error) => e,
  )
}

function pgCtl(args: string[]) {
  return run(path.join(f.pg.binDir, 'pg_ctl'), args, path.dirname(f.pg.dataDir), 60_000)
}

async function sessionEnd(app: string) {
  const recs = await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'session.end').some((r) => r.session.application_name === app), 30_000)
  return recordsOfType(recs, 'session.end').find((r) => r.session.application_name === app)!
}

t.test('PostgreSQL restarted under live sessions', async (t) => {
  const idleApp = appName('idle')
  const busyApp = appName('busy')
  const idle = await client(idleApp)
  const busy = await client(busyApp)
  const running = busy.query('select pg_sleep(60)').then(() => null, (e: Error & { code?: string }) => e)
  await until('the sleep to run upstream', () => backends(f, 'app'), (bs) => bs.some((b) => b.state === 'active'))

  const stop = await pgCtl(['stop', '-D', f.pg.dataDir, '-m', 'fast', '-w', '-t', '30'])
  t.equal(stop.code, 0, `PostgreSQL stopped (fast): ${stop.stderr.trim()}`)
  const err = (await running) as (Error & { code?: string; severity?: string }) | null
  t.equal(err?.code, '57P01', `the busy client gets the server's FATAL: ${err?.message}`)
  t.match(err?.message, /terminating connection due to administrator command/)
  const idleErr = (await idle.lost) as Error & { code?: string }
  t.equal(idleErr.code, '57P01', `the idle client too: ${idleErr.message}`)

  for (const app of [idleApp, busyApp]) {
    const end = await sessionEnd(app)
    t.equal(end.reason, 'upstream_closed', `${app}: session.end upstream_closed`)
    t.match(end.detail, /upstream server closed the connection/)
  }
  const recs = readValidAuditLog(f.auditPath)
  const sleep = recordsOfType(recs, 'statement').find((r) => r.session.application_name === busyApp && r.statement.text === 'select pg_sleep(60)')
  t.match(sleep?.outcome, { status: 'error', sqlstate: '57P01' }, 'the interrupted statement is recorded with the server\'s error')

  // While it is down: a clear refusal, recorded; the proxy itself stays up.
  const downApp = appName('down')
  const refused = await connectError(downApp)
  t.equal(refused.code, '08004', `refused with 08004: ${refused.message}`)
  t.match(refused.message, /could not connect to the upstream PostgreSQL server/)
  const failure = recordsOfType(await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'auth.failure').some((r) => r.requested.application_name === downApp)), 'auth.failure')
    .find((r) => r.requested.application_name === downApp)!
  t.equal(failure.reason, 'upstream_unavailable')

  const start = await pgCtl(['start', '-D', f.pg.dataDir, '-l', f.pg.logFile, '-w', '-t', '60', '-s'])
  t.equal(start.code, 0, `PostgreSQL started again: ${start.stderr.trim()}`)
  const back = await client(appName('back'))
  t.same((await back.query('select 1 as one')).rows, [{ one: 1 }], 'new sessions work once it is back')
  await back.end()
  await until('no active connections', () => activeConnections(f.proxy), (n) => n === 0)
})

t.test('a backend killed outright: crash recovery ends every session; the proxy stays up', async (t) => {
  const victimApp = appName('victim')
  const bystanderApp = appName('bystander')
  const victim = await client(victimApp)
  const bystander = await client(bystanderApp)
  const pid = (await victim.query('select pg_backend_pid() as pid')).rows[0].pid as number
  const running = victim.query('select pg_sleep(60)').then(() => null, (e: Error) => e)
  await until('the sleep to run', () => backends(f, 'app'), (bs) => bs.some((b) => b.pid === pid && b.state === 'active'))
  process.kill(pid, 'SIGKILL')
  t.ok(await running, `the victim's statement fails: ${(await running)?.message}`)
  const other = (await bystander.lost) as Error & { code?: string }
  t.ok(other, `the bystander is ended by PostgreSQL's crash recovery: ${other.code} ${other.message}`)
  for (const app of [victimApp, bystanderApp]) t.equal((await sessionEnd(app)).reason, 'upstream_closed', `${app}: upstream_closed`)
  const sleep = recordsOfType(readValidAuditLog(f.auditPath), 'statement').find((r) => r.session.application_name === victimApp && r.statement.text === 'select pg_sleep(60)')
  t.not(sleep?.outcome.status, 'ok', `the killed statement is not recorded as successful (${sleep?.outcome.status})`)
  // Recovery takes a moment; the proxy refuses meanwhile and works again after.
  const again = await until('a session to work again after crash recovery', async () => {
    try {
      const c = await client(appName('after-crash'))
      const r = await c.query('select 2 as two')
      await c.end()
      return r.rows[0].two as number
    } catch {
      return null
    }
  }, (v) => v === 2, 60_000, 250)
  t.equal(again, 2)
  await until('no active connections', () => activeConnections(f.proxy), (n) => n === 0)
})

t.test('a slow upstream connection and a long statement do not hold up other sessions', async (t) => {
  // A second proxy whose upstream connections go through a forwarder; one of them is made slow.
  const fwd = await startForwarder(f.pg.port)
  t.teardown(() => fwd.close())
  const { proxy, auditPath } = await secondProxy(f, 'slow-upstream', (c) => ({ ...c, upstream: { ...c.upstream, port: fwd.port } }))
  t.teardown(() => proxy.stop())
  const slowApp = appName('slow')
  const slow = await client(slowApp, proxy.port)
  const slowConn = fwd.connections.at(-1)!
  // From now on, each chunk from the server on this one connection waits 200 ms.
  slowConn.delayMs = 200
  let slowDone = false
  const big = slow.query("select repeat('x', 1000) from generate_series(1, 20000)").then((r) => {
    slowDone = true
    return r.rowCount
  })
  // Meanwhile, on the same proxy: new sessions and statements complete while the slow one still trickles in.
  const busyApp = appName('long')
  const long = await client(busyApp, proxy.port)
  let longDone = false
  const sleeping = long.query('select pg_sleep(60)').then(() => (longDone = true), (e: Error & { code?: string }) => e.code)
  for (let i = 0; i < 5; i++) {
    const c = await client(appName(`quick-${i}`), proxy.port)
    t.same((await c.query('select $1::int as n', [i])).rows, [{ n: i }], `session ${i} works`)
    await c.end()
  }
  t.notOk(slowDone, 'the slow session was still receiving its result')
  t.notOk(longDone, 'the long statement was still running')
  t.ok(slowConn.toClientBytes < 20_000 * 1000, 'the slow connection had not delivered its result yet')
  slowConn.delayMs = 0
  t.equal(await big, 20_000, 'the slow session completes once its upstream speeds up')
  await f.pg.query("select pg_cancel_backend(pid) from pg_stat_activity where application_name like $1", [`${busyApp} %`])
  t.equal(await sleeping, '57014', 'the long statement, cancelled, ends too')
  await slow.end()
  await long.end()
  await until('no active connections', () => activeConnections(proxy), (n) => n === 0)
  readValidAuditLog(auditPath)
})
