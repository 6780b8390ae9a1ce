/**
 * Issue 8 item 2: slow and hostile clients. 1,000 concurrent TLS clients up
 * to the password prompt (handshake budgets raised for them: the default
 * ones are tested in handshake-budget.test.ts) and limits.max_connections,
 * which counts authenticated sessions (one more is refused with FATAL 53300,
 * as PostgreSQL does when full); a client that
 * never reads its results (back-pressure: PostgreSQL waits in ClientWrite,
 * the proxy stops reading instead of buffering); half-closed sockets before
 * and after authentication; abrupt resets (TCP RST) during a multi-statement
 * query and in the middle of a COPY.
 *
 * After each: a session.end record for every session.start, every statement
 * PostgreSQL executed recorded, no connection left in the proxy
 * (pgwitness_connections_active 0), no PostgreSQL backend left, and this
 * process (which runs the proxy) back to its sockets and timers from before.
 * The handshake timeout itself is tested in handshake.test.ts.
 */
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import net from 'node:net'
import tls from 'node:tls'
import t, { type Test } from 'tap'
import { serialize } from 'pg-protocol/dist/serializer'
import { readValidAuditLog, recordsOfType, waitForRecords, type RecordOfType } from '../helpers/audit.js'
import { activeConnections, backends, openResources, secondProxy, until, type OpenResources } from '../helpers/hostile.js'
import { parseExposition, sum } from '../helpers/metrics.js'
import { startFixture } from '../helpers/proxy.js'
import { WireClient } from '../helpers/wire.js'

const CLIENTS = 1000

const SESSIONS = 50
const f = await startFixture({ limitsYaml: `  handshake_timeout: 60s\n  max_connections: ${SESSIONS}\n  max_handshakes: 2000\n  max_handshakes_per_source: 2000` })
t.teardown(() => f.stop())
await f.pg.query('create table hc_items(id int); alter table hc_items owner to app; create table hc_copy(id int); alter table hc_copy owner to app', [], 'appdb')
const token = await f.token()

let appSeq = 0
const appName = (tag: string) => `hc-${tag}-${++appSeq}`

/** Nothing left behind: no proxy connection, no app backend, this process back to `before` (sockets, timers). */
async function nothingLeft(t: Test, before: OpenResources): Promise<void> {
  await until('pgwitness_connections_active 0', () => activeConnections(f.proxy), (n) => n === 0, 30_000)
  await until('no PostgreSQL backend of role app', () => backends(f, 'app').then((b) => b.length), (n) => n === 0, 30_000)
  const after = await until('sockets and timers back to where they were', () => openResources(),
    (r) => r.tcp <= before.tcp && r.timers <= before.timers, 30_000)
  t.ok(after.tcp <= before.tcp, `TCP handles back to ${before.tcp} (${after.tcp})`)
  t.ok(after.timers <= before.timers, `timers back to ${before.timers} (${after.timers})`)
  t.ok(after.fds <= before.fds + 2, `file descriptors back to about ${before.fds} (${after.fds})`)
}

/** Every session.start of the log has its session.end; returns the records of one application_name. */
async function sessionOf(app: string) {
  const recs = await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'session.end').some((r) => r.session.application_name === app), 30_000)
  const start = recordsOfType(recs, 'session.start').find((r) => r.session.application_name === app)!
  const mine = recs.filter((r) => 'session' in r && r.session.id === start.session.id)
  return { start, statements: recordsOfType(mine, 'statement'), end: recordsOfType(mine, 'session.end')[0]! }
}

interface Started {
  s: tls.TLSSocket
  raw: net.Socket
  data: () => Buffer
  closed: () => boolean
}

/** TLS, then a StartupMessage. */
async function tlsStartup(app: string): Promise<Started> {
  const raw = net.connect(f.proxy.port, '127.0.0.1')
  raw.on('error', () => undefined)
  await new Promise<void>((r, j) => raw.once('connect', () => r()).once('error', j))
  raw.write(serialize.requestSsl())
  const answer = await new Promise<Buffer>((r) => raw.once('data', r))
  if (answer.toString() !== 'S') throw new Error(`SSLRequest answered ${JSON.stringify(answer.toString('latin1'))}`)
  const s = tls.connect({ socket: raw, rejectUnauthorized: false })
  s.on('error', () => undefined)
  await new Promise<void>((r, j) => s.once('secureConnect', () => r()).once('error', j))
  const parts: Buffer[] = []
  let closed = false
  s.on('data', (b: Buffer) => parts.push(b))
  s.on('close', () => (closed = true))
  s.write(serialize.startup({ user: 'app', database: 'appdb', application_name: app }))
  return { s, raw, data: () => Buffer.concat(parts), closed: () => closed }
}

/** TLS, StartupMessage, until the password prompt. */
async function toPasswordPrompt(app: string): Promise<Started> {
  const c = await tlsStartup(app)
  const prompt = await until('the password prompt (or a close)', () => ({ b: c.data(), closed: c.closed() }),
    ({ b, closed }) => closed || (b.length >= 9 && b[0] === 0x52), 60_000, 10)
  if (prompt.b[0] !== 0x52 || prompt.b.readInt32BE(5) !== 3) throw new Error(`no password prompt: ${prompt.b.toString('latin1')}`)
  return c
}

function maxOpenFiles(): number {
  const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'))
  return Number(line?.split(/\s+/)[3] ?? 0)
}

t.test(`${CLIENTS} concurrent TLS clients at the prompt; limits.max_connections (${SESSIONS} sessions) refuses the next one with 53300`, async (t) => {
  const need = 2 * CLIENTS + 500 // both ends live in this process
  t.ok(maxOpenFiles() >= need, `the open-files limit (${maxOpenFiles()}) allows ${need} descriptors (Node raises it to the hard limit)`)
  const before = openResources()
  const rssBefore = process.memoryUsage().rss
  const clients: Array<Awaited<ReturnType<typeof toPasswordPrompt>>> = []
  for (let i = 0; i < CLIENTS; i += 50) {
    clients.push(...(await Promise.all(Array.from({ length: Math.min(50, CLIENTS - i) }, (_, j) => toPasswordPrompt(`hc-many-${i + j}`)))))
  }
  t.equal(clients.length, CLIENTS, `${CLIENTS} clients at the password prompt at once`)
  t.equal(await activeConnections(f.proxy), CLIENTS, 'pgwitness_connections_active counts them')
  t.comment(`RSS grew by ${((process.memoryUsage().rss - rssBefore) / 1024 / 1024).toFixed(1)} MiB for ${CLIENTS} TLS connections (client and proxy ends together)`)
  t.equal((await backends(f, 'app')).length, 0, 'none of them reached PostgreSQL')

  // Half-open connections take no session's place: SESSIONS of the thousand log in and work concurrently while the rest wait.
  const sessions = clients.slice(0, SESSIONS)
  await Promise.all(sessions.map(async (c, i) => {
    c.s.write(serialize.password(token))
    await until('ReadyForQuery', c.data, (b) => b.includes(Buffer.from([0x5a, 0, 0, 0, 5, 0x49])), 60_000, 20)
    c.s.write(serialize.query(`select ${i} as n`))
    await until('the query result', c.data, (b) => b.includes(Buffer.from('SELECT 1')), 60_000, 20)
  }))
  t.equal((await backends(f, 'app')).length, SESSIONS, `${SESSIONS} governed sessions upstream, ${CLIENTS - SESSIONS} clients still at the prompt`)

  // The next client at the prompt authenticates, and finds every session place taken: FATAL 53300 after its token.
  const late = clients[SESSIONS]!
  late.s.write(serialize.password(token))
  await until('the refusal', late.closed, (x) => x, 30_000)
  t.match(late.data().toString('latin1'), /E.*SFATAL\0.*C53300\0Msorry, too many clients already\0/s, 'an authenticated client over max_connections: FATAL 53300')
  t.equal((await backends(f, 'app')).length, SESSIONS, 'it never reached PostgreSQL')

  // A new connection: refused as a full PostgreSQL refuses, after TLS and the StartupMessage (so the client can read why).
  const over = await tlsStartup(appName('over-limit'))
  await until('the refusal', over.closed, (x) => x, 30_000)
  t.match(over.data().toString('latin1'), /^E.*SFATAL\0.*C53300\0Msorry, too many clients already\0/s, 'TLS, StartupMessage, then FATAL 53300 (no password prompt)')
  const rec = await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'auth.failure').filter((r) => r.reason === 'rate_limited').length === 2)
  t.match(recordsOfType(rec, 'auth.failure').filter((r) => r.reason === 'rate_limited').slice(0, 2), [
    { requested: { user: 'app', database: 'appdb', application_name: `hc-many-${SESSIONS}` }, identity: { subject: 'spiffe://test.local/ns/billing/sa/api' }, detail: /too many clients/ },
    { requested: { user: 'app', database: 'appdb', application_name: /over-limit/ }, detail: /too many clients/ },
  ], 'auth.failure rate_limited for both, with who asked')
  // libpq reads it like PostgreSQL's own.
  const psql = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const p = spawn('psql', ['-X', '-c', 'select 1'], { env: f.libpqEnv(token), stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    p.on('close', (code) => resolve({ code, stderr }))
  })
  t.not(psql.code, 0, 'psql fails')
  t.match(psql.stderr, /FATAL: +sorry, too many clients already/, `psql says why: ${psql.stderr.trim()}`)
  // Refusals in progress are bounded too: clients that stall before their StartupMessage hold at most 64
  // of them; the next over-limit connection gets the ErrorResponse at once, before TLS, and is closed.
  const open = await until('the refusals to end', () => activeConnections(f.proxy), (n) => n === CLIENTS - 1)
  const stalled = await Promise.all(Array.from({ length: 64 }, () => new Promise<net.Socket>((resolve) => {
    const s = net.connect(f.proxy.port, '127.0.0.1', () => resolve(s))
    s.on('error', () => undefined)
  })))
  await until('the stalled over-limit connections to be accepted', () => activeConnections(f.proxy), (n) => n === open + 64)
  const extra = net.connect(f.proxy.port, '127.0.0.1')
  const got: Buffer[] = []
  extra.on('data', (b: Buffer) => got.push(b))
  extra.on('error', () => undefined)
  await new Promise<void>((r) => extra.once('close', () => r()))
  const reply = Buffer.concat(got)
  t.equal(String.fromCharCode(reply[0]!), 'E', 'an ErrorResponse without waiting for the client')
  t.match(reply.toString('latin1'), /SFATAL\0.*C53300\0Msorry, too many clients already\0/s, 'FATAL 53300 sorry, too many clients already')
  for (const s of stalled) s.destroy()

  for (const c of clients) c.raw.destroy()
  const recs = await waitForRecords(f.auditPath, (rs) =>
    recordsOfType(rs, 'session.end').filter((r) => r.session.application_name?.startsWith('hc-many-')).length === SESSIONS &&
    recordsOfType(rs, 'auth.failure').filter((r) => r.requested.application_name?.startsWith('hc-many-')).length === CLIENTS - SESSIONS, 60_000)
  const failures = recordsOfType(recs, 'auth.failure').filter((r) => r.requested.application_name?.startsWith('hc-many-') && r.reason !== 'rate_limited')
  t.equal(failures.length, CLIENTS - SESSIONS - 1)
  t.same([...new Set(failures.map((r) => r.reason))], ['token_missing'], 'those that left at the prompt: auth.failure token_missing')
  await nothingLeft(t, before)
  const s = parseExposition(await f.proxy.metrics.exposition())
  t.ok(sum(s, 'pgwitness_connections_total', { outcome: 'refused' }) >= 1, 'the refused connection is counted')
})

t.test('a client that never reads its results: PostgreSQL waits in ClientWrite, the proxy stops reading', async (t) => {
  const before = openResources()
  const app = appName('slow-reader')
  const c = await WireClient.connect({ port: f.proxy.port, token, applicationName: app })
  const pid = Number((await c.query('select pg_backend_pid()')).find((m) => m.name === 'dataRow')!.fields![0])
  const relayed = async () => sum(parseExposition(await f.proxy.metrics.exposition()), 'pgwitness_bytes_total', { direction: 'server_to_client' })
  const rows = 100_000
  const rowBytes = 1000
  c.socket.pause() // stop reading: the kernel buffers fill, then the proxy's writes stall
  c.send(serialize.query(`select repeat('x', ${rowBytes}) from generate_series(1, ${rows})`))
  const backend = await until('the backend to block writing to the proxy', async () => (await backends(f, 'app')).find((b) => b.pid === pid),
    (b) => b?.wait_event === 'ClientWrite', 60_000, 100)
  t.equal(backend!.state, 'active', 'the statement is still running')
  // Unbounded buffering would read the whole result from PostgreSQL within a second or two; sample for 3 s.
  let most = 0
  for (let i = 0; i < 6; i++) {
    most = Math.max(most, await relayed())
    await new Promise((r) => setTimeout(r, 500))
  }
  t.equal((await backends(f, 'app')).find((b) => b.pid === pid)?.wait_event, 'ClientWrite', 'PostgreSQL is still held back')
  t.ok(most < 32 * 1024 * 1024, `the proxy read at most ${(most / 1024 / 1024).toFixed(1)} MiB of the ${(rows * rowBytes) / 1024 / 1024} MiB result while the client did not read (kernel socket buffers included)`)
  c.socket.resume()
  const msgs = await c.untilReady(120_000)
  t.equal(msgs.filter((m) => m.name === 'dataRow').length, rows, 'every row arrives once the client reads again')
  t.equal(msgs.find((m) => m.name === 'commandComplete')?.text, `SELECT ${rows}`)
  await c.end()
  const s = await sessionOf(app)
  t.match(s.statements.at(-1), { statement: { text: `select repeat('x', ${rowBytes}) from generate_series(1, ${rows})` }, outcome: { status: 'ok', rows } })
  t.equal(s.end.reason, 'client_closed')
  await nothingLeft(t, before)
})

t.test('half-closed sockets', async (t) => {
  const before = openResources()
  // Before authentication: a StartupMessage, then the client shuts down its sending side.
  const pre = appName('half-pre')
  const c1 = await toPasswordPrompt(pre)
  c1.s.end()
  await new Promise<void>((r) => c1.s.once('close', () => r()))
  const recs = await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'auth.failure').some((r) => r.requested.application_name === pre))
  t.equal(recordsOfType(recs, 'auth.failure').find((r) => r.requested.application_name === pre)!.reason, 'token_missing', 'recorded as an attempt without a token')

  // After authentication: a query, then the client shuts down its sending side at once. The proxy
  // does not keep half-open clients: the session ends. Whether the query still reached PostgreSQL
  // (strict durability holds it until its intent is on disk), the records must say what happened.
  const post = appName('half-post')
  const c2 = await WireClient.connect({ port: f.proxy.port, token, applicationName: post })
  c2.send(serialize.query('select pg_sleep(0.2); insert into hc_items values (3)'))
  c2.socket.end()
  await until('the proxy to close', () => c2.socket.destroyed || c2.socket.readableEnded, (x) => x, 10_000)
  const s = await sessionOf(post)
  t.equal(s.end.reason, 'client_closed')
  await until('no backend of role app', () => backends(f, 'app').then((b) => b.length), (n) => n === 0)
  const ran = (await f.pg.query('select count(*)::int as n from hc_items where id = 3', [], 'appdb'))[0].n === 1
  const insert = s.statements.find((r) => r.statement.text === ' insert into hc_items values (3)')
  if (ran) t.equal(insert?.outcome.status, 'ok', 'PostgreSQL ran the insert: its record says ok')
  else t.not(insert?.outcome.status, 'ok', `PostgreSQL did not run the insert: no record says it did (${insert?.outcome.status ?? 'no record'})`)
  t.ok(s.statements.length >= 1, 'the query is recorded')
  c2.destroy()

  // The token and a query in one write, then the shutdown, while the proxy is still logging in
  // upstream: the session is set up, recorded and ended (it used to stay open for ever).
  const quick = appName('half-token')
  const c3 = await toPasswordPrompt(quick)
  c3.s.end(Buffer.concat([serialize.password(token), serialize.query('insert into hc_items values (4)')]))
  const s3 = await sessionOf(quick)
  t.equal(s3.end.reason, 'client_closed', 'session.start and session.end')
  await until('no backend of role app', () => backends(f, 'app').then((b) => b.length), (n) => n === 0)
  const ran3 = (await f.pg.query('select count(*)::int as n from hc_items where id = 4', [], 'appdb'))[0].n === 1
  const insert3 = s3.statements.find((r) => r.statement.text === 'insert into hc_items values (4)')
  t.equal(insert3?.outcome.status === 'ok', ran3, `the record matches what PostgreSQL did (ran: ${ran3}, recorded: ${insert3?.outcome.status ?? 'nothing'})`)
  await nothingLeft(t, before)
})

t.test('abrupt resets: during a multi-statement query and in the middle of a COPY', async (t) => {
  const before = openResources()
  // A multi-statement query, then an RST before any result: PostgreSQL runs it all
  // (it reads the Terminate only after the query); every statement must be recorded.
  const app = appName('reset-query')
  const c = await WireClient.connect({ port: f.proxy.port, token, applicationName: app, resettable: true })
  const pid = Number((await c.query('select pg_backend_pid()')).find((m) => m.name === 'dataRow')!.fields![0])
  c.send(serialize.query('insert into hc_items values (10); select pg_sleep(1); insert into hc_items values (11)'))
  await until('PostgreSQL to be running the query', () => backends(f, 'app'), (bs) => bs.some((b) => b.pid === pid && b.state === 'active'), 15_000)
  c.reset()
  const s = await sessionOf(app)
  t.equal(s.end.reason, 'client_closed')
  const committed = await f.pg.query('select id from hc_items where id in (10, 11) order by id', [], 'appdb')
  t.same(committed.map((r) => r.id), [10, 11], 'PostgreSQL ran the whole query (the session ended after it did)')
  t.same(s.statements.map((r) => [r.statement.text, r.outcome.status]), [
    ['select pg_backend_pid()', 'ok'],
    ['insert into hc_items values (10);', 'ok'],
    [' select pg_sleep(1);', 'ok'],
    [' insert into hc_items values (11)', 'ok'],
  ], 'every statement PostgreSQL ran has its record and real outcome')

  // COPY FROM STDIN, some data, then an RST: the COPY fails upstream, nothing is committed.
  const app2 = appName('reset-copy')
  const c2 = await WireClient.connect({ port: f.proxy.port, token, applicationName: app2, resettable: true })
  c2.send(serialize.query('copy hc_copy from stdin'))
  await c2.until((m) => m.name === 'copyInResponse')
  for (let i = 0; i < 20; i++) c2.send(serialize.copyData(Buffer.from(`${i}\n`)))
  await new Promise((r) => setTimeout(r, 100))
  c2.reset()
  const s2 = await sessionOf(app2)
  t.equal(s2.end.reason, 'client_closed')
  const copy = s2.statements.find((r) => r.statement.text === 'copy hc_copy from stdin') as RecordOfType<'statement'> | undefined
  t.ok(copy, 'the COPY is recorded')
  t.not(copy?.outcome.status, 'ok', `and not as successful (${copy?.outcome.status}: ${copy?.outcome.message})`)
  t.same(await f.pg.query('select count(*)::int as n from hc_copy', [], 'appdb'), [{ n: 0 }], 'nothing of the aborted COPY was committed')
  await nothingLeft(t, before)
})

t.test('with upstream.pool: an RST during a multi-statement query', async (t) => {
  const { proxy, auditPath } = await secondProxy(f, 'pooled', (c) => ({
    ...c, upstream: { ...c.upstream, pool: { enabled: true, maxIdlePerKey: 4, idleTimeoutMs: 60_000, maxLifetimeMs: 3_600_000 } },
  }))
  t.teardown(() => proxy.stop())
  const app = appName('pooled-reset')
  const c = await WireClient.connect({ port: proxy.port, token, applicationName: app, resettable: true })
  const pid = Number((await c.query('select pg_backend_pid()')).find((m) => m.name === 'dataRow')!.fields![0])
  c.send(serialize.query('insert into hc_items values (20); select pg_sleep(1); insert into hc_items values (21)'))
  await until('PostgreSQL to be running the query', () => backends(f, 'app'), (bs) => bs.some((b) => b.pid === pid && b.state === 'active'), 15_000)
  c.reset()
  await until('PostgreSQL to finish the query', () => backends(f, 'app'), (bs) => !bs.some((b) => b.pid === pid && b.state === 'active'), 15_000)
  const ran = (await f.pg.query('select id from hc_items where id in (20, 21) order by id', [], 'appdb')).map((r) => r.id as number)
  const recs = await waitForRecords(auditPath, (rs) => recordsOfType(rs, 'session.end').some((r) => r.session.application_name === app), 30_000)
  const recorded = recordsOfType(recs, 'statement').filter((r) => r.session.application_name === app && r.outcome.status === 'ok').map((r) => r.statement.text)
  for (const id of ran) t.ok(recorded.some((text) => /^ ?insert into hc_items values \((\d+)\);?$/.exec(text ?? '')?.[1] === String(id)), `insert ${id} was committed: its record says ok`)
})

t.test('every session has its session.end, every record is schema-valid', async (t) => {
  const recs = readValidAuditLog(f.auditPath)
  const ended = new Set(recordsOfType(recs, 'session.end').map((r) => r.session.id))
  const open = recordsOfType(recs, 'session.start').filter((r) => !ended.has(r.session.id))
  t.same(open.map((r) => r.session.application_name), [], 'no session without its end')
  t.ok(recordsOfType(recs, 'session.start').length >= 54)
})
