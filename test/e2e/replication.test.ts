/**
 * Replication clients through the proxy (issue 15 part 3): pg_recvlogical
 * (test_decoding) sees a change another session makes, pg_receivewal streams
 * WAL, pg_basebackup copies the cluster (WAL streamed on a second replication
 * connection), node-postgres runs SQL and a replication command on a
 * replication=database connection, and a rule without `replication:` refuses
 * a replication connection. The records are checked against the server's own
 * log (log_replication_commands): one REPLICATION record per command the
 * walsender received, in the session PostgreSQL names by %c.
 */
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readdirSync, statSync } from 'node:fs'
import path from 'node:path'
import pg from 'pg'
import type { Test } from 'tap'
import { DEV_ISSUER } from '../../src/dev/tokens.js'
import { readAuditLog, recordsOfType, validateRecord, waitForRecords, type RecordOfType } from '../helpers/audit.js'
import { startFixture } from '../helpers/proxy.js'

const f = await startFixture({
  pg: { settings: { wal_level: 'logical', log_replication_commands: 'on', max_wal_senders: '10', max_replication_slots: '10' } },
  policyYaml: `policy:
  - name: cdc
    match: { issuer: ${DEV_ISSUER}, subject: "spiffe://test.local/ns/cdc/*" }
    roles: [app]
    databases: [appdb]
    replication: [logical, physical]
  - name: logical-only
    match: { issuer: ${DEV_ISSUER}, subject: "spiffe://test.local/ns/decoder/*" }
    roles: [app]
    databases: [appdb]
    replication: logical
  - name: no-backups
    match: { issuer: ${DEV_ISSUER}, subject: "spiffe://test.local/ns/restricted/*" }
    roles: [app]
    databases: [appdb]
    replication: [logical, physical]
    statements:
      deny: [{ name: no-base-backup, command: BASE_BACKUP }, { name: no-slots, class: REPLICATION, command: CREATE_REPLICATION_SLOT }]
  - name: billing-app
    match: { issuer: ${DEV_ISSUER}, subject: "spiffe://test.local/ns/billing/*" }
    roles: [app]
    databases: [appdb]`,
})
t.teardown(() => f.stop())
// The upstream role needs REPLICATION: the proxy logs in as it, PostgreSQL decides what it may stream.
await f.pg.query('ALTER ROLE app REPLICATION')
await f.pg.query('CREATE TABLE public.orders (id int PRIMARY KEY, note text)', [], 'appdb')
await f.pg.query('ALTER TABLE public.orders OWNER TO app', [], 'appdb')

const cdcToken = () => f.token({ subject: 'spiffe://test.local/ns/cdc/sa/debezium' })
const bin = (name: string) => path.join(f.pg.binDir, name)

interface Run { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** A libpq replication client through the proxy, as the cdc identity unless a token is given. */
async function start(cmd: string, args: string[], appName: string, token?: string): Promise<{ p: ChildProcess; done: Promise<Run>; out: () => string }> {
  const env = { ...f.libpqEnv(token ?? (await cdcToken())), PGAPPNAME: appName }
  const p = spawn(bin(cmd), args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  p.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  p.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  const done = new Promise<Run>((resolve, reject) => {
    p.on('error', reject)
    p.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
  return { p, done, out: () => stdout }
}

async function run(cmd: string, args: string[], appName: string, token?: string): Promise<Run> {
  return (await start(cmd, args, appName, token)).done
}

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

type Session = {
  start: RecordOfType<'session.start'>
  statements: RecordOfType<'statement'>[]
  end: RecordOfType<'session.end'>
}

/** The sessions with this application_name, once all have ended; their records must match the schema. */
async function sessionsOf(t: Test, appName: string, count: number): Promise<Session[]> {
  const recs = await waitForRecords(f.auditPath, (rs) => {
    const ids = recordsOfType(rs, 'session.start').filter((r) => r.session.application_name === appName).map((r) => r.session.id)
    const ended = new Set(recordsOfType(rs, 'session.end').map((r) => r.session.id))
    return ids.length >= count && ids.every((id) => ended.has(id))
  }, 30_000)
  const starts = recordsOfType(recs, 'session.start').filter((r) => r.session.application_name === appName)
  const ids = new Set(starts.map((s) => s.session.id))
  const mine = recs.filter((r) => 'session' in r && ids.has(r.session.id))
  t.same(mine.flatMap((r) => validateRecord(r).map((p) => `${r.type}: ${p}`)), [], `the records of ${appName} match the v1 schema`)
  return starts.map((start) => ({
    start,
    statements: recordsOfType(mine, 'statement').filter((r) => r.session.id === start.session.id),
    end: recordsOfType(mine, 'session.end').find((r) => r.session.id === start.session.id)!,
  }))
}

/** The replication commands PostgreSQL logged (log_replication_commands) for the session it calls `sid` (%c). */
function serverCommands(sid: string): string[] {
  const re = new RegExp(`\\] ${sid.replace('.', '\\.')} LOG:  received replication command: (.*)$`)
  return f.pg.readLog().split('\n').flatMap((line) => re.exec(line)?.[1] ?? [])
}

/** Each session's REPLICATION records are exactly the commands the server received, in order. */
function matchesServerLog(t: Test, s: Session): void {
  const recorded = s.statements.filter((r) => r.statement.classes.includes('REPLICATION')).map((r) => r.statement.text)
  t.ok(recorded.length > 0, `session ${s.start.session.id} recorded replication commands`)
  t.same(recorded, serverCommands(s.start.upstream.server_session_id), `…the ones PostgreSQL logged for ${s.start.upstream.server_session_id}`)
}

function commands(s: Session): string[] {
  return s.statements.map((r) => r.statement.command)
}

t.test('pg_recvlogical (test_decoding): create a slot, stream a change another session makes, stop, drop the slot', async (t) => {
  const app = 'pgw-recvlogical'
  const create = await run('pg_recvlogical', ['-d', 'appdb', '--slot', 'cdc_slot', '--create-slot', '-P', 'test_decoding'], app)
  t.equal(create.code, 0, `slot created: ${create.stderr}`)

  const stream = await start('pg_recvlogical', ['-d', 'appdb', '--slot', 'cdc_slot', '--start', '-f', '-', '--status-interval', '1', '--fsync-interval', '1'], app)
  // The change is made by an ordinary session of another identity, through the proxy.
  const writer = await f.client()
  await until('the stream to start', () => f.pg.query("SELECT 1 FROM pg_stat_replication WHERE application_name LIKE 'pgw-recvlogical pgw:%'").then((r) => r.length > 0))
  await writer.query("INSERT INTO public.orders VALUES (42, 'through the proxy')")
  await until('the change to arrive', () => stream.out().includes("table public.orders: INSERT: id[integer]:42 note[text]:'through the proxy'"))
  // A standby status update or two (every second) reach the server before the stop.
  await new Promise((r) => setTimeout(r, 1500))
  stream.p.kill('SIGINT')
  const stopped = await stream.done
  t.equal(stopped.code, 0, `pg_recvlogical stopped cleanly on SIGINT: ${stopped.stderr}`)
  t.match(stopped.stdout, /BEGIN \d+\ntable public\.orders: INSERT: id\[integer\]:42/, 'the decoded change arrived through the proxy')

  // Stopping at an LSN: pg_recvlogical ends the copy (CopyDone both ways) and the command completes.
  // The harness runs with synchronous_commit off: this commit must be flushed before its LSN is an end position.
  await writer.query('SET synchronous_commit = on')
  await writer.query("INSERT INTO public.orders VALUES (43, 'second')")
  const [{ lsn }] = await f.pg.query('SELECT pg_current_wal_lsn()::text AS lsn')
  const bounded = await run('pg_recvlogical', ['-d', 'appdb', '--slot', 'cdc_slot', '--start', '-f', '-', '--endpos', lsn], app)
  t.equal(bounded.code, 0, `pg_recvlogical --endpos ended cleanly: ${bounded.stderr}`)
  t.match(bounded.stdout, /table public\.orders: INSERT: id\[integer\]:43/, 'the second change arrived')

  const drop = await run('pg_recvlogical', ['-d', 'appdb', '--slot', 'cdc_slot', '--drop-slot'], app)
  t.equal(drop.code, 0, `slot dropped: ${drop.stderr}`)
  t.same(await f.pg.query("SELECT slot_name FROM pg_replication_slots WHERE slot_name = 'cdc_slot'"), [], 'the slot is gone')

  const sessions = await sessionsOf(t, app, 4)
  t.equal(sessions.length, 4)
  for (const s of sessions) {
    t.equal(s.start.session.replication, 'logical', 'session.start says it is a logical replication session')
    t.equal(s.start.identity.policy_rule, 'cdc')
    matchesServerLog(t, s)
    // pg_recvlogical also runs SQL (it empties search_path): classified as SQL, not as replication.
    for (const r of s.statements.filter((r) => !r.statement.classes.includes('REPLICATION'))) t.equal(r.statement.command, 'SELECT', `SQL recorded as SQL: ${r.statement.text}`)
  }
  const [created, streamed, bounded_, dropped] = sessions as [Session, Session, Session, Session]
  for (const s of [created, bounded_, dropped]) {
    for (const r of s.statements) t.equal(r.outcome.status, 'ok', `${r.statement.command} ok`)
  }
  t.ok(commands(created).includes('CREATE_REPLICATION_SLOT'), 'CREATE_REPLICATION_SLOT recorded')
  t.ok(commands(dropped).includes('DROP_REPLICATION_SLOT'), 'DROP_REPLICATION_SLOT recorded')
  const startRec = streamed.statements.find((r) => r.statement.command === 'START_REPLICATION')!
  t.ok(startRec, 'START_REPLICATION recorded')
  t.match(startRec.statement.text, /START_REPLICATION SLOT "cdc_slot" LOGICAL/)
  // On SIGINT pg_recvlogical leaves without ending the copy: the server never completes the command.
  t.equal(startRec.outcome.status, 'unknown', 'a stream the client walked away from has no outcome')
  const boundedRec = bounded_.statements.find((r) => r.statement.command === 'START_REPLICATION')!
  t.equal(boundedRec.outcome.command_tag, 'START_REPLICATION', 'a stream ended by CopyDone completes with its own CommandComplete')
  const sent = streamed.end.streamed!
  t.ok(sent.from_server.messages >= 3 && sent.from_server.bytes > 0, `decoded changes and keepalives counted (${JSON.stringify(sent.from_server)})`)
  t.ok(sent.from_client.messages >= 1 && sent.from_client.bytes > 0, `standby status updates counted (${JSON.stringify(sent.from_client)})`)
  t.equal(streamed.end.reason, 'client_closed')
  t.notOk('streamed' in (recordsOfType(readAuditLog(f.auditPath), 'session.end').find((r) => r.session.application_name === 'pgw-test') ?? {}), 'an ordinary session.end has no streamed counts')
})

t.test('pg_receivewal streams WAL through the proxy (physical)', async (t) => {
  const app = 'pgw-receivewal'
  const dir = mkdtempSync(path.join(f.dir, 'wal-'))
  const recv = await start('pg_receivewal', ['-D', dir, '--no-loop', '--status-interval', '1', '-n'], app)
  await until('the WAL stream to start', () => f.pg.query("SELECT 1 FROM pg_stat_replication WHERE application_name LIKE 'pgw-receivewal pgw:%' AND state = 'streaming'").then((r) => r.length > 0))
  await f.pg.query("INSERT INTO public.orders VALUES (7, 'wal')", [], 'appdb')
  await f.pg.query('SELECT pg_switch_wal()')
  await until('a whole segment to be written', () => readdirSync(dir).some((n) => /^[0-9A-F]{24}$/.test(n)))
  await new Promise((r) => setTimeout(r, 1200))
  recv.p.kill('SIGINT')
  const done = await recv.done
  t.equal(done.code, 0, `pg_receivewal stopped cleanly: ${done.stderr}`)
  const segment = readdirSync(dir).find((n) => /^[0-9A-F]{24}$/.test(n))!
  t.equal(statSync(path.join(dir, segment)).size, 16 * 1024 * 1024, 'a complete WAL segment arrived')

  const [s] = await sessionsOf(t, app, 1)
  t.equal(s!.start.session.replication, 'physical')
  matchesServerLog(t, s!)
  t.ok(commands(s!).includes('IDENTIFY_SYSTEM') && commands(s!).includes('START_REPLICATION'), `commands: ${commands(s!).join(', ')}`)
  t.ok(s!.end.streamed!.from_server.bytes >= 16 * 1024 * 1024, `at least the segment's bytes streamed (${s!.end.streamed!.from_server.bytes})`)
  t.ok(s!.end.streamed!.from_client.messages >= 1, 'status updates counted')
})

t.test('pg_basebackup -X stream through the proxy: two physical sessions, the backup restores the table', async (t) => {
  const app = 'pgw-basebackup'
  const dir = path.join(mkdtempSync(path.join(f.dir, 'base-')), 'data')
  const t0 = process.hrtime.bigint()
  const r = await run('pg_basebackup', ['-D', dir, '-X', 'stream', '-c', 'fast', '--no-sync', '--no-manifest'], app)
  const proxiedMs = Number(process.hrtime.bigint() - t0) / 1e6
  t.equal(r.code, 0, `pg_basebackup succeeded: ${r.stderr}`)
  t.ok(statSync(path.join(dir, 'PG_VERSION')).isFile(), 'the backup holds a data directory')
  t.ok(readdirSync(path.join(dir, 'pg_wal')).some((n) => /^[0-9A-F]{24}$/.test(n)), 'WAL streamed into the backup')

  const sessions = await sessionsOf(t, app, 2)
  t.equal(sessions.length, 2, 'the backup and its WAL stream are two sessions')
  for (const s of sessions) {
    t.equal(s.start.session.replication, 'physical')
    matchesServerLog(t, s)
  }
  const backup = sessions.find((s) => commands(s).includes('BASE_BACKUP'))!
  const rec = backup.statements.find((r) => r.statement.command === 'BASE_BACKUP')!
  t.equal(rec.outcome.status, 'ok')
  t.equal(rec.outcome.command_tag, 'BASE_BACKUP', 'one record for the command, its several result sets and its COPY stream merged')
  t.ok(backup.end.streamed!.from_server.bytes > 10 * 1024 * 1024, `the backup's bytes counted (${backup.end.streamed!.from_server.bytes})`)
  const wal = sessions.find((s) => s !== backup)!
  t.ok(commands(wal).includes('START_REPLICATION'), 'the WAL stream session started replication')
  // For the record (not asserted: timing on a shared machine): the same backup straight to PostgreSQL.
  const direct = path.join(mkdtempSync(path.join(f.dir, 'direct-')), 'data')
  const t1 = process.hrtime.bigint()
  const d = await new Promise<number | null>((resolve) => spawn(bin('pg_basebackup'), ['-D', direct, '-X', 'stream', '-c', 'fast', '--no-sync', '--no-manifest'], {
    env: { ...process.env, PGHOST: f.pg.host, PGPORT: String(f.pg.port), PGUSER: f.pg.superuser, PGPASSWORD: f.pg.superuserPassword }, stdio: 'ignore',
  }).on('close', resolve))
  const directMs = Number(process.hrtime.bigint() - t1) / 1e6
  t.equal(d, 0, 'the direct backup succeeded too')
  t.comment(`pg_basebackup of ${(backup.end.streamed!.from_server.bytes / 1048576).toFixed(1)} MiB: through pgwitness ${proxiedMs.toFixed(0)} ms, direct ${directMs.toFixed(0)} ms`)
})

t.test('SQL and replication commands on a replication=database connection (node-postgres)', async (t) => {
  const app = 'pgw-repl-sql'
  const c = new pg.Client({
    host: '127.0.0.1', port: f.proxy.port, user: 'app', database: 'appdb', password: await cdcToken(),
    ssl: { rejectUnauthorized: false }, application_name: app, replication: 'database',
  } as pg.ClientConfig)
  await c.connect()
  const sys = await c.query('IDENTIFY_SYSTEM')
  t.equal(sys.rows[0].dbname, 'appdb', 'IDENTIFY_SYSTEM answered through the proxy')
  const rows = await c.query('SELECT id FROM public.orders')
  t.ok(Array.isArray(rows.rows), 'SQL runs on a replication=database connection')
  await c.query('TIMELINE_HISTORY 1').catch((e: pg.DatabaseError) => t.equal(e.code, '58P01', 'timeline 1 has no history file: the server says so'))
  // The walsender's keywords are upper case: the first SHOW is a replication command, the second SQL.
  await c.query('SHOW wal_segment_size')
  await c.query('show wal_segment_size')
  await c.end()
  const [s] = await sessionsOf(t, app, 1)
  t.same(s!.statements.map((r) => [r.statement.command, r.statement.classes, r.outcome.status]), [
    ['IDENTIFY_SYSTEM', ['REPLICATION'], 'ok'],
    ['SELECT', ['READ'], 'ok'],
    ['TIMELINE_HISTORY', ['REPLICATION'], 'error'],
    ['SHOW', ['REPLICATION'], 'ok'],
    ['SHOW', ['MISC'], 'ok'],
  ], 'replication commands are class REPLICATION; SQL is classified as SQL (the server log below says which was which)')
  t.same(s!.statements[1]!.statement.objects, [{ type: 'relation', schema: 'public', name: 'orders' }], 'its objects as for any SQL')
  matchesServerLog(t, s!)
})

t.test('a rule without replication refuses replication connections (42501, auth.failure replication_not_allowed)', async (t) => {
  const cases = [
    { app: 'pgw-repl-denied', token: await f.token(), mode: 'database', rule: 'billing-app allows no replication' },
    { app: 'pgw-repl-physical-denied', token: await f.token({ subject: 'spiffe://test.local/ns/decoder/sa/x' }), mode: 'true', rule: 'logical-only allows no physical' },
  ]
  for (const c of cases) {
    const r = await run('pg_receivewal', ['-D', f.dir, '--no-loop', '-n'], c.app, c.token)
    if (c.mode === 'database') {
      // The same refusal reaches a logical client.
      const client = new pg.Client({
        host: '127.0.0.1', port: f.proxy.port, user: 'app', database: 'appdb', password: c.token,
        ssl: { rejectUnauthorized: false }, application_name: c.app, replication: 'database',
      } as pg.ClientConfig)
      const err = await client.connect().then(() => null, (e: pg.DatabaseError) => e)
      t.equal(err?.code, '42501', `${c.rule}: a logical connection is refused with 42501`)
      t.match(err?.message, /no policy rule allows logical replication connections/)
    }
    t.not(r.code, 0, `${c.rule}: pg_receivewal is refused`)
    t.match(r.stderr, /no policy rule allows physical replication connections/)
    const recs = await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'auth.failure').some((a) => a.requested.application_name === c.app))
    const failures = recordsOfType(recs, 'auth.failure').filter((a) => a.requested.application_name === c.app)
    t.ok(failures.every((a) => a.reason === 'replication_not_allowed'), `${c.rule}: auth.failure reason replication_not_allowed`)
    t.ok(failures.every((a) => validateRecord(a).length === 0))
    t.notOk(recordsOfType(recs, 'session.start').some((s) => s.session.application_name === c.app), 'no session was started')
  }
  // The logical-only rule admits a logical connection.
  const ok = new pg.Client({
    host: '127.0.0.1', port: f.proxy.port, user: 'app', database: 'appdb', password: await f.token({ subject: 'spiffe://test.local/ns/decoder/sa/x' }),
    ssl: { rejectUnauthorized: false }, application_name: 'pgw-decoder', replication: 'database',
  } as pg.ClientConfig)
  await ok.connect()
  await ok.query('IDENTIFY_SYSTEM')
  await ok.end()
  const [s] = await sessionsOf(t, 'pgw-decoder', 1)
  t.equal(s!.start.identity.policy_rule, 'logical-only')
})

t.test('statement rules apply to replication commands (class REPLICATION, the command keyword)', async (t) => {
  const token = await f.token({ subject: 'spiffe://test.local/ns/restricted/sa/x' })
  const app = 'pgw-repl-restricted'
  const c = new pg.Client({
    host: '127.0.0.1', port: f.proxy.port, user: 'app', database: 'appdb', password: token,
    ssl: { rejectUnauthorized: false }, application_name: app, replication: 'database',
  } as pg.ClientConfig)
  await c.connect()
  await c.query('IDENTIFY_SYSTEM')
  const err = await c.query('CREATE_REPLICATION_SLOT "forbidden" LOGICAL "test_decoding"').then(() => null, (e: pg.DatabaseError) => e)
  t.equal(err?.code, '42501', 'refused on a logical connection with the policy\'s message')
  t.match(err?.message, /statement denied by policy rule "no-backups" \(no-slots/)
  await c.end()
  t.same(await f.pg.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'forbidden'"), [], 'no slot was created')

  const backup = await run('pg_basebackup', ['-D', path.join(mkdtempSync(path.join(f.dir, 'denied-')), 'data'), '-X', 'none', '-c', 'fast', '--no-sync', '--no-manifest'], 'pgw-backup-restricted', token)
  t.not(backup.code, 0, 'pg_basebackup is refused')
  // The walsender cannot run the SQL refusal a logical connection gets: the proxy answers itself, as the server would.
  t.match(backup.stderr, /could not initiate base backup: ERROR:  pgwitness: statement denied by policy rule "no-backups" \(no-base-backup/, 'with the policy\'s message')

  const [logical] = await sessionsOf(t, app, 1)
  const denied = logical!.statements.find((r) => r.statement.command === 'CREATE_REPLICATION_SLOT')!
  t.equal(denied.outcome.status, 'denied')
  t.same(denied.policy?.denied_by, { rule: 'no-backups', statement_rule: 'no-slots', matched: 'class REPLICATION, command CREATE_REPLICATION_SLOT' })
  const [physical] = await sessionsOf(t, 'pgw-backup-restricted', 1)
  const bb = physical!.statements.find((r) => r.statement.command === 'BASE_BACKUP')!
  t.equal(bb.outcome.status, 'denied', 'BASE_BACKUP refused on a physical connection')
  t.equal(bb.policy?.denied_by?.statement_rule, 'no-base-backup')
  t.equal(bb.outcome.sqlstate, '42501')
  t.notOk(serverCommands(physical!.start.upstream.server_session_id).includes(bb.statement.text!), 'the server never received the BASE_BACKUP')
  t.notOk(f.pg.readLog().includes(`${physical!.start.upstream.server_session_id} ERROR`), 'nor anything in its place')
})
