/**
 * Item 7 (Governed session): a UUIDv7 session id, visible server-side
 * (pgwitness.session_id and a tag in application_name); the upstream backend
 * pid and PostgreSQL's own session id (%c) learned at connect time;
 * session.start / session.end records; parameter statuses passed through.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { rmSync } from 'node:fs'
import pg from 'pg'
import { serverView } from '../helpers/server-view.js'
import { startFixture, type Fixture } from '../helpers/proxy.js'
import { readValidAuditLog, recordsOfType, waitForRecords, type RecordOfType } from '../helpers/audit.js'
import type { AuditRecord } from '../../src/evidence/types.js'

const UUIDV7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

const f: Fixture = await startFixture({ pg: { settings: { log_connections: 'on', log_disconnections: 'on' } } })
t.teardown(async () => {
  await f.stop()
  rmSync(f.dir, { recursive: true, force: true })
})

/** Connect a pg client through the proxy with full control over startup parameters. */
async function connect(o: { applicationName?: string | undefined; options?: string; onParameter?: (name: string, value: string) => void } = {}): Promise<pg.Client> {
  const c = new pg.Client({
    host: '127.0.0.1',
    port: f.proxy.port,
    user: 'app',
    database: 'appdb',
    password: await f.token(),
    ssl: { rejectUnauthorized: false },
    ...(o.applicationName !== undefined ? { application_name: o.applicationName } : {}),
    ...(o.options !== undefined ? { options: o.options } : {}),
  })
  c.on('error', () => undefined)
  if (o.onParameter) {
    const cb = o.onParameter
    ;(c as unknown as { connection: NodeJS.EventEmitter }).connection.on('parameterStatus', (m: { parameterName: string; parameterValue: string }) =>
      cb(m.parameterName, m.parameterValue))
  }
  await c.connect()
  return c
}

/** Records of one governed session, once its session.end is written. */
async function sessionRecords(sessionId: string): Promise<{ start: RecordOfType<'session.start'>; end: RecordOfType<'session.end'>; all: AuditRecord[] }> {
  const ofSession = (r: AuditRecord) => 'session' in r && (r as { session: { id: string } }).session.id === sessionId
  const recs = await waitForRecords(f.auditPath, (rs) => rs.some((r) => r.type === 'session.end' && ofSession(r)))
  readValidAuditLog(f.auditPath)
  const mine = recs.filter(ofSession)
  const start = recordsOfType(mine, 'session.start')
  const end = recordsOfType(mine, 'session.end')
  if (start.length !== 1 || end.length !== 1) throw new Error(`expected one session.start and one session.end for ${sessionId}, got ${start.length} / ${end.length}`)
  return { start: start[0]!, end: end[0]!, all: mine }
}

function psql(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('psql', ['-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', ...args], { env, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? Number((err as NodeJS.ErrnoException).code) : 1) : 0
      resolve({ code, stdout: String(stdout), stderr: String(stderr) })
    })
  })
}

t.test('a governed session: UUIDv7 id visible server-side, backend pid and %c learned, start/end records agree', async (t) => {
  const c = await connect({ applicationName: 'billing-api' })
  const v = await serverView(c)
  t.match(v.sessionId, UUIDV7, 'pgwitness.session_id is a UUIDv7')
  t.equal(v.appName, `billing-api pgw:${v.sessionId}`, "application_name keeps the client's name and carries the tag")
  t.equal(v.activityAppName, v.appName, 'pg_stat_activity shows the tagged name')
  await c.end()

  const { start, end, all } = await sessionRecords(v.sessionId)
  t.equal(start.session.id, v.sessionId, 'session.id = SHOW pgwitness.session_id')
  t.match(start.session.id, UUIDV7)
  t.equal(start.session.application_name, 'billing-api', "the record keeps the client's own application_name")
  t.equal(start.upstream.backend_pid, v.pid, 'upstream.backend_pid = pg_backend_pid()')
  t.equal(start.upstream.server_session_id, v.serverSessionId, 'upstream.server_session_id = %c as computed by the server')
  t.match(start.upstream.server_session_id, /^[0-9a-f]+\.[0-9a-f]+$/)
  t.equal(start.upstream.server_session_id.split('.')[1], v.pid.toString(16), '%c ends in hex(pid)')
  t.same(start.upstream, { host: '127.0.0.1', port: f.pg.port, database: 'appdb', role: 'app', backend_pid: v.pid, server_session_id: v.serverSessionId })
  t.equal(start.identity.subject, 'spiffe://test.local/ns/billing/sa/api')
  t.equal(start.identity.policy_rule, 'billing-app')

  t.same(end.session, start.session, 'session.end carries the same session')
  t.same(end.identity, start.identity, '… identity')
  t.same(end.upstream, start.upstream, '… and upstream')
  t.same(end.connection, start.connection, '… and connection')
  t.equal(end.reason, 'client_closed')
  t.equal(end.statements, 2, 'two statements were run (the select and SHOW)')
  t.ok(end.duration_ms >= 0)
  t.ok(end.bytes_in > 0 && end.bytes_out > 0)
  t.ok(start.time <= end.time)
  for (const s of recordsOfType(all, 'statement')) {
    t.same(s.session, start.session)
    t.same(s.upstream, start.upstream)
  }

  // PostgreSQL's own log, with %c in log_line_prefix, joins to the record.
  const line = f.pg.readLog().split('\n').find((l) => l.includes(`[${v.pid}] ${v.serverSessionId} `) && l.includes('connection authorized'))
  t.ok(line, `the server log has "[${v.pid}] ${v.serverSessionId} … connection authorized"`)
  t.match(line ?? '', new RegExp(`application_name=billing-api pgw:${v.sessionId}`), 'and the governed id in application_name')
  await waitFor(() => f.pg.readLog().split('\n').some((l) => l.includes(`[${v.pid}] ${v.serverSessionId} `) && l.includes('disconnection')))
  t.pass('the disconnection is logged under the same %c')
})

t.test('the tag survives a long client application_name (60 chars)', async (t) => {
  const long = 'reporting-service-' + 'x'.repeat(42)
  t.equal(long.length, 60)
  const c = await connect({ applicationName: long })
  const v = await serverView(c)
  const tag = `pgw:${v.sessionId}`
  t.ok(v.appName.endsWith(' ' + tag), `server-side name ends with the tag: ${v.appName}`)
  t.ok(Buffer.byteLength(v.appName) <= 63, 'fits PostgreSQL\'s 63-byte limit')
  t.ok(v.appName.startsWith('reporting-service-'), "keeps as much of the client's name as fits")
  t.equal(v.activityAppName, v.appName, 'pg_stat_activity (truncated at 63 bytes) still shows the whole tag')
  await c.end()
  const { start } = await sessionRecords(v.sessionId)
  t.equal(start.session.application_name, long, 'the record has the full client name')
})

t.test('multi-byte client application_name: the tag still survives in pg_stat_activity', async (t) => {
  const name = 'é'.repeat(30)
  const c = await connect({ applicationName: name })
  const v = await serverView(c)
  const tag = `pgw:${v.sessionId}`
  t.ok(v.activityAppName.endsWith(tag), `pg_stat_activity.application_name ends with the tag: ${v.activityAppName}`)
  await c.end()
  const { start } = await sessionRecords(v.sessionId)
  t.equal(start.session.application_name, name)
})

t.test('no client application_name: the tag alone, and null in the record', async (t) => {
  const c = await connect({ applicationName: undefined })
  const v = await serverView(c)
  t.equal(v.appName, `pgw:${v.sessionId}`)
  await c.end()
  const { start } = await sessionRecords(v.sessionId)
  t.equal(start.session.application_name, null)
})

t.test('backend terminated by a superuser: the client gets the server FATAL, session.end reason upstream_closed', async (t) => {
  const c = await connect({ applicationName: 'victim' })
  const errors: Array<Error & { code?: string }> = []
  c.on('error', (e) => errors.push(e))
  const ended = new Promise<void>((resolve) => c.once('end', () => resolve()))
  const v = await serverView(c)
  const r = await f.pg.query('select pg_terminate_backend($1) as ok', [v.pid])
  t.equal(r[0]?.ok, true, 'terminated directly on the cluster')
  await withTimeout(ended, 10_000, 'the client connection was not closed')
  t.ok(errors.length >= 1, 'the client saw an error')
  t.equal(errors[0]?.code, '57P01', 'admin_shutdown from the server')
  t.match(errors[0]?.message ?? '', /terminating connection due to administrator command/)
  const { end } = await sessionRecords(v.sessionId)
  t.equal(end.reason, 'upstream_closed')
  t.equal(end.upstream.backend_pid, v.pid)
})

t.test('a client cannot set pgwitness.session_id (or any pgwitness.*) through startup options', async (t) => {
  const mark = readValidAuditLog(f.auditPath).length
  for (const options of ['-c pgwitness.session_id=spoofed', '--pgwitness.session_id=spoofed', '-c PGWITNESS.SESSION_ID=spoofed', '-c pgwitness.anything=1']) {
    try {
      const c = await connect({ options })
      const v = await serverView(c)
      await c.end()
      t.fail(`options ${JSON.stringify(options)} were accepted (session_id ${v.sessionId})`)
    } catch (err) {
      const e = err as Error & { code?: string }
      t.equal(e.code, '42501', `options ${JSON.stringify(options)} refused with 42501`)
      t.match(e.message, /reserved for the proxy/)
    }
  }
  const recs = (await waitForRecords(f.auditPath, (rs) => recordsOfType(rs.slice(mark), 'auth.failure').length >= 4)).slice(mark)
  readValidAuditLog(f.auditPath)
  const fails = recordsOfType(recs, 'auth.failure')
  t.equal(fails.length, 4)
  for (const r of fails) t.equal(r.reason, 'startup_rejected')
  t.equal(recordsOfType(recs, 'session.start').length, 0)

  // libpq: PGOPTIONS
  const res = await psql(['-c', 'show pgwitness.session_id'], { ...f.libpqEnv(await f.token()), PGOPTIONS: '-c pgwitness.session_id=spoofed' })
  t.not(res.code, 0, 'psql with PGOPTIONS is refused')
  t.match(res.stderr, /reserved for the proxy/)
  t.notMatch(res.stdout, /spoofed/)
})

t.test('a backslash-escaped option (-c pgwitness\\.x=…) cannot set a pgwitness.* setting either', async (t) => {
  // PostgreSQL unescapes backslashes in `options`, so "pgwitness\.session_id" IS pgwitness.session_id to the server.
  for (const [options, name] of [
    ['-c pgwitness\\.session_id=spoofed', 'pgwitness.session_id'],
    ['-c pgwitness\\.audit=off', 'pgwitness.audit'],
  ] as const) {
    let c: pg.Client | null = null
    try {
      c = await connect({ options })
    } catch (err) {
      t.equal((err as { code?: string }).code, '42501', `${JSON.stringify(options)} refused`)
      continue
    }
    const r = await c.query('select current_setting($1, true) as v', [name])
    const value = (r.rows[0] as { v: string | null }).v
    await c.end()
    t.not(value, name === 'pgwitness.session_id' ? 'spoofed' : 'off', `${JSON.stringify(options)} was admitted and set ${name} = ${JSON.stringify(value)}`)
  }
})

t.test('concurrent sessions get distinct ids, each matching its own records', async (t) => {
  const clients = await Promise.all([connect({ applicationName: 'a' }), connect({ applicationName: 'b' }), connect({ applicationName: 'c' })])
  const views = await Promise.all(clients.map((c) => serverView(c)))
  const ids = views.map((v) => v.sessionId)
  t.equal(new Set(ids).size, 3, `distinct ids: ${ids.join(', ')}`)
  t.equal(new Set(views.map((v) => v.pid)).size, 3, 'distinct backends')
  await Promise.all(clients.map((c) => c.end()))
  for (const v of views) {
    const { start, end } = await sessionRecords(v.sessionId)
    t.equal(start.upstream.backend_pid, v.pid)
    t.equal(end.upstream.backend_pid, v.pid)
    t.equal(start.upstream.server_session_id, v.serverSessionId)
  }
})

t.test('parameter statuses reach the client (node-postgres)', async (t) => {
  const params = new Map<string, string>()
  const c = await connect({ applicationName: 'params', onParameter: (n, v) => params.set(n, v) })
  const direct = await f.pg.query("select current_setting('server_version') as v, current_setting('server_encoding') as e")
  for (const name of ['server_version', 'server_encoding', 'client_encoding', 'DateStyle', 'TimeZone', 'integer_datetimes', 'standard_conforming_strings', 'is_superuser', 'session_authorization', 'IntervalStyle', 'application_name']) {
    t.ok(params.has(name), `ParameterStatus ${name} = ${params.get(name)}`)
  }
  t.equal(params.get('server_version'), direct[0]?.v, 'the real server version')
  t.equal(params.get('server_encoding'), direct[0]?.e)
  t.equal(params.get('session_authorization'), 'app')
  t.equal(params.get('is_superuser'), 'off')
  const v = await serverView(c)
  t.equal(params.get('application_name'), `params pgw:${v.sessionId}`)
  // A ParameterStatus sent later in the session (after SET) is relayed too.
  const later = new Promise<string>((resolve) => {
    ;(c as unknown as { connection: NodeJS.EventEmitter }).connection.on('parameterStatus', (m: { parameterName: string; parameterValue: string }) => {
      if (m.parameterName === 'TimeZone') resolve(m.parameterValue)
    })
  })
  await c.query("SET TimeZone = 'Asia/Tokyo'")
  t.equal(await withTimeout(later, 5000, 'no ParameterStatus after SET'), 'Asia/Tokyo')
  await c.end()
  await sessionRecords(v.sessionId)
})

t.test('parameter statuses reach the client (psql)', async (t) => {
  const direct = await f.pg.query("select current_setting('server_version') as v")
  const res = await psql(['-c', '\\echo :SERVER_VERSION_NAME :ENCODING', '-c', 'show server_version', '-c', 'show pgwitness.session_id'], { ...f.libpqEnv(await f.token()), PGAPPNAME: 'psql-test', PGCLIENTENCODING: 'LATIN1' })
  t.equal(res.code, 0, res.stderr)
  const lines = res.stdout.trim().split('\n')
  t.equal(lines[0], `${direct[0]?.v} LATIN1`, 'psql learned server_version and the client encoding from ParameterStatus')
  t.equal(lines[1], direct[0]?.v)
  t.match(lines[2] ?? '', UUIDV7)
  const { start } = await sessionRecords(lines[2]!)
  t.equal(start.session.application_name, 'psql-test')
})

t.test('a client cannot forge upstream.server_session_id through its search_path', async (t) => {
  // The role owns its database, so it may create objects that shadow pg_catalog
  // when pg_catalog is put after them in search_path — via startup options, or
  // persistently with ALTER ROLE … SET, which any role may do for itself.
  const setup = await connect({ applicationName: 'setup' })
  await setup.query('create schema evil')
  await setup.query(
    'create view evil.pg_stat_activity as ' +
      "select pg_catalog.pg_backend_pid() as pid, timestamptz '2001-01-01 00:00:00+00' as backend_start",
  )
  await setup.end()
  t.teardown(async () => {
    await f.pg.query('alter role app reset search_path').catch(() => undefined)
    await f.pg.query('drop schema if exists evil cascade', [], 'appdb').catch(() => undefined)
  })

  const realSessionId = async (pid: number): Promise<string> => {
    const r = await f.pg.query(
      "select pg_catalog.to_hex(pg_catalog.floor(extract(epoch from backend_start))::bigint) || '.' || pg_catalog.to_hex(pid) as c " +
        'from pg_catalog.pg_stat_activity where pid = $1',
      [pid],
    )
    return r[0]?.c as string
  }

  for (const how of ['startup options', 'ALTER ROLE … SET search_path'] as const) {
    let c: pg.Client
    if (how === 'startup options') {
      c = await connect({ applicationName: 'forger', options: '-c search_path=evil,pg_catalog' })
    } else {
      const a = await connect({ applicationName: 'setup2' })
      await a.query('alter role app set search_path = evil, pg_catalog')
      await a.end()
      c = await connect({ applicationName: 'forger' })
    }
    const r = await c.query("select pg_catalog.pg_backend_pid() as pid, pg_catalog.current_setting('pgwitness.session_id') as sid, pg_catalog.current_setting('search_path') as sp")
    const row = r.rows[0] as { pid: number; sid: string; sp: string }
    t.match(row.sp, /^evil/, `search_path is attacker-controlled via ${how}`)
    const real = await realSessionId(row.pid)
    await c.end()
    const { start } = await sessionRecords(row.sid)
    t.equal(start.upstream.backend_pid, row.pid)
    t.equal(start.upstream.server_session_id, real, `server_session_id is the real %c despite ${how} (a forged one comes from evil.pg_stat_activity)`)
  }
})

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('waitFor: condition not met in time')
    await new Promise((r) => setTimeout(r, 25))
  }
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms)))])
  } finally {
    clearTimeout(timer)
  }
}

