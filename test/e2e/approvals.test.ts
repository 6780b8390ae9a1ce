/**
 * Approvals end to end (identity.approvals, require_approval): real
 * PostgreSQL, node-postgres with `options` and psql with PGOPTIONS. Refusals
 * carry their reason in auth.failure and reach the client as 28000; a valid
 * approval is on every record of its session, never reaches the server or
 * the operational log, lets statement-level require_approval pass, and ends
 * the session when it expires.
 */
import t from 'tap'
import { runProgram } from '../helpers/cli.js'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import pg from 'pg'
import pino from 'pino'
import type { AuditRecord, AuthFailureRecord, StatementRecord } from '../../src/evidence/types.js'
import { DEV_APPROVALS_ISSUER, mintDevApproval, type DevApprovalOptions } from '../../src/dev/approvals.js'
import { createDevIssuerKeys, DEV_AUDIENCE, DEV_ISSUER } from '../../src/dev/tokens.js'
import { ProxyServer } from '../../src/server.js'
import { readValidAuditLog, recordsOfType, waitForRecords } from '../helpers/audit.js'
import { runCli } from '../helpers/cli.js'
import { startFixture } from '../helpers/proxy.js'

const DBA = 'spiffe://test.local/ns/dba/sa/alice'
const APP = 'spiffe://test.local/ns/billing/sa/api'
const approvalsDir = path.join(os.tmpdir(), `pgw-approvals-${process.pid}`)
t.teardown(() => rmSync(approvalsDir, { recursive: true, force: true }))
const approvalKeys = await createDevIssuerKeys(approvalsDir)
const rogueKeys = await createDevIssuerKeys(path.join(approvalsDir, 'rogue'))

const f = await startFixture({
  extraYaml: 'dev: true',
  identityYaml: `  approvals:
    - issuer: ${DEV_APPROVALS_ISSUER}
      audience: ${DEV_AUDIENCE}
      jwks_file: ${approvalKeys.jwksPath}`,
  policyYaml: `policy:
  - name: dba-elevated
    match: { issuer: ${DEV_ISSUER}, subject: "spiffe://test.local/ns/dba/*" }
    roles: [postgres]
    databases: [appdb]
    require_approval: true
  - name: billing-app
    match: { issuer: ${DEV_ISSUER}, subject: "spiffe://test.local/ns/billing/*" }
    roles: [app]
    databases: [appdb]
    statements:
      require_approval: [{ name: ddl-needs-approval, class: DDL }]`,
})
t.teardown(() => f.stop())
await f.pg.query('grant create on schema public to app', [], 'appdb')

// A second proxy on the same config whose operational log (at trace level) the test reads.
let operationalLog = ''
const auditPath = path.join(f.dir, 'approvals-audit.jsonl')
const proxy = await ProxyServer.start(
  { ...f.config, audit: { ...f.config.audit, log: auditPath } },
  pino({ level: 'trace' }, new Writable({ write(chunk, _e, done) { operationalLog += chunk.toString(); done() } })),
)
t.teardown(() => proxy.stop())
const presented: string[] = []

const approve = async (o: Partial<DevApprovalOptions> = {}, keys = approvalKeys): Promise<string> => {
  const jwt = await mintDevApproval(keys.privateJwk, { subject: DBA, ticket: 'CHG-4711', approver: 'carol@example.com', roles: ['postgres'], databases: ['appdb'], ...o })
  presented.push(jwt)
  return jwt
}

async function connect(o: { subject?: string; user?: string; approval?: string | null; options?: string; app: string }): Promise<pg.Client> {
  const options = [o.options, o.approval ? `-c pgwitness.approval=${o.approval}` : undefined].filter(Boolean).join(' ')
  const c = new pg.Client({
    host: '127.0.0.1', port: proxy.port, user: o.user ?? 'postgres', database: 'appdb', ssl: { rejectUnauthorized: false },
    password: await f.token({ subject: o.subject ?? DBA }), application_name: o.app, ...(options ? { options } : {}),
  })
  c.on('error', () => undefined)
  await c.connect()
  return c
}

const records = (): AuditRecord[] => readValidAuditLog(auditPath)
const ofSession = (app: string) => records().filter((r) => 'session' in r && r.session.application_name === app)
const sessionEnded = (app: string) => waitForRecords(auditPath, (rs) => recordsOfType(rs, 'session.end').some((r) => r.session.application_name === app))

t.test('refusals: each with its reason in auth.failure, 28000 to the client', async (t) => {
  const cases: Array<[string, () => Promise<string | null>, string, RegExp]> = [
    ['no approval', async () => null, 'approval_missing', /only with an approval/],
    ['an approval for another subject', () => approve({ subject: 'spiffe://test.local/ns/dba/sa/mallory' }), 'approval_not_bound', /granted to another subject/],
    ['an expired approval', () => approve({ ttlSeconds: -120 }), 'approval_expired', /the approval has expired/],
    ['an approval from an untrusted issuer', () => approve({ issuer: 'https://rogue-approvals.example' }, rogueKeys), 'approval_invalid', /not trusted/],
    ['an approval signed with a key the issuer does not publish', () => approve({}, rogueKeys), 'approval_invalid', /signature|key/],
    ['an approval for another audience', () => approve({ audience: 'another-proxy' }), 'approval_invalid', /audience/],
    ['an approval out of scope (another role)', () => approve({ roles: ['app'] }), 'approval_out_of_scope', /does not cover role "postgres" on database "appdb"/],
    ['an approval out of scope (another database)', () => approve({ databases: ['postgres'] }), 'approval_out_of_scope', /does not cover/],
  ]
  for (const [what, make, reason, message] of cases) {
    const app = `refused-${reason}-${cases.findIndex((c) => c[0] === what)}`
    const err = await connect({ approval: await make(), app }).then(() => null, (e: { code?: string; message: string }) => e)
    t.match(err, { code: '28000', message }, `${what}: refused with 28000`)
    const recs = await waitForRecords(auditPath, (rs) => recordsOfType(rs, 'auth.failure').some((r) => r.requested.application_name === app))
    const fail = recordsOfType(recs, 'auth.failure').find((r) => r.requested.application_name === app) as AuthFailureRecord
    t.equal(fail.reason, reason, `${what}: reason ${reason}`)
    t.match(fail.detail, message)
    t.equal(fail.identity?.subject, DBA, 'the authenticated identity is recorded')
    if (reason === 'approval_not_bound' || reason === 'approval_out_of_scope') {
      t.match(fail.approval, { ticket: 'CHG-4711', approver: 'carol@example.com', issuer: DEV_APPROVALS_ISSUER }, 'the verified approval is on the refusal')
    } else {
      t.equal(fail.approval, undefined)
    }
  }
  t.notOk(recordsOfType(records(), 'session.start').some((r) => r.session.application_name?.startsWith('refused-')), 'no refused session started')
})

t.test('a valid approval (node-postgres options): on every record of the session, never upstream', async (t) => {
  const jwt = await approve()
  const c = await connect({ approval: jwt, options: '-c work_mem=7MB', app: 'approved-pg' })
  t.same((await c.query('SHOW work_mem')).rows, [{ work_mem: '7MB' }], 'the other options reach the server')
  t.same((await c.query("SELECT current_setting('pgwitness.approval', true) AS v")).rows, [{ v: null }], 'the server never saw the approval')
  t.same((await c.query("SELECT count(*)::int AS n FROM pg_settings WHERE name = 'pgwitness.approval'")).rows, [{ n: 0 }])
  t.match(await c.query('SHOW pgwitness.approval').catch((e: { code?: string }) => e), { code: '42704' }, 'SHOW: unrecognized parameter')
  const activity = await f.pg.query("SELECT coalesce(query, '') || ' ' || coalesce(application_name, '') AS seen FROM pg_stat_activity", [], 'appdb')
  t.ok(activity.length > 0)
  t.notOk(activity.some((r: { seen: string }) => r.seen.includes(jwt.split('.')[2]!)), 'nothing in pg_stat_activity shows it')
  await c.query('BEGIN; CREATE TABLE public.approved_t (a int); COMMIT')
  await c.end()
  await sessionEnded('approved-pg')
  const recs = ofSession('approved-pg')
  t.same([...new Set(recs.map((r) => r.type))].sort(), ['session.end', 'session.start', 'statement', 'transaction.end'])
  const start = recs.find((r) => r.type === 'session.start')!
  t.match(start, { identity: { subject: DBA, policy_rule: 'dba-elevated' }, upstream: { role: 'postgres' } })
  const approval = (start as { approval?: Record<string, string> }).approval!
  t.match(approval, { ticket: 'CHG-4711', approver: 'carol@example.com', issuer: DEV_APPROVALS_ISSUER, expires_at: /^\d{4}-.*Z$/ })
  t.equal(approval.id, JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()).jti, 'id is the approval jti')
  for (const r of recs) t.same((r as { approval?: unknown }).approval, approval, `${r.type} carries the approval`)
  t.notOk(JSON.stringify(records()).includes(jwt.split('.')[2]!), 'the approval token itself is in no record')
})

/** psql with PGOPTIONS through the second proxy. */
function psql(sql: string, o: { token: string; user: string; pgoptions: string; app: string }): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = { ...f.libpqEnv(o.token, { user: o.user }), PGPORT: String(proxy.port), PGOPTIONS: o.pgoptions, PGAPPNAME: o.app }
  return runProgram('psql', ['-X', '-At', '-v', 'ON_ERROR_STOP=0', '-c', sql], env, null)
}

t.test('psql with PGOPTIONS: admitted with the approval, refused without', async (t) => {
  const token = await f.token({ subject: DBA })
  const ok = await psql("SELECT current_user || ' ' || coalesce(current_setting('pgwitness.approval', true), 'absent')", {
    token, user: 'postgres', pgoptions: `-c pgwitness.approval=${await approve()}`, app: 'approved-psql',
  })
  t.equal(ok.code, 0, ok.stderr)
  t.equal(ok.stdout.trim(), 'postgres absent')
  const refused = await psql('SELECT 1', { token, user: 'postgres', pgoptions: `-c pgwitness.approval=${await approve({ ttlSeconds: -120 })}`, app: 'expired-psql' })
  t.not(refused.code, 0)
  t.match(refused.stderr, /FATAL: {2}the approval has expired/)
  await sessionEnded('approved-psql')
  t.match(ofSession('approved-psql').find((r) => r.type === 'session.start'), { approval: { ticket: 'CHG-4711' } })
})

t.test('statement-level require_approval: DDL denied without an approval, runs with one that covers it', async (t) => {
  const without = await connect({ subject: APP, user: 'app', app: 'ddl-without' })
  const denied = await without.query('CREATE TABLE public.needs_ticket (a int)').catch((e: { code?: string; message: string }) => e)
  t.match(denied, { code: '42501', message: /ddl-needs-approval: class DDL, without an approval covering it/ })
  t.same((await without.query('SELECT 1 AS one')).rows, [{ one: 1 }], 'the session goes on; other statements need no approval')
  await without.end()

  const narrow = await connect({ subject: APP, user: 'app', approval: await approve({ subject: APP, roles: ['app'], classes: ['ROLE'] }), app: 'ddl-narrow' })
  t.match(await narrow.query('CREATE TABLE public.needs_ticket (a int)').catch((e: { code?: string }) => e), { code: '42501' }, 'an approval for ROLE does not cover DDL')
  await narrow.end()

  const withApproval = await connect({ subject: APP, user: 'app', approval: await approve({ subject: APP, roles: ['app'], classes: ['DDL'] }), app: 'ddl-with' })
  await withApproval.query('CREATE TABLE public.needs_ticket (a int)')
  await withApproval.end()
  t.same(await f.pg.query("SELECT to_regclass('public.needs_ticket') IS NOT NULL AS e", [], 'appdb'), [{ e: true }], 'it ran')

  await sessionEnded('ddl-with')
  await sessionEnded('ddl-without')
  const stmt = (app: string) => ofSession(app).filter((r): r is StatementRecord => r.type === 'statement' && r.statement.command === 'CREATE TABLE')[0]
  t.match(stmt('ddl-without'), { outcome: { status: 'denied' }, policy: { denied_by: { statement_rule: 'ddl-needs-approval' } } })
  t.equal((stmt('ddl-without') as { approval?: unknown }).approval, undefined)
  const ran = stmt('ddl-with')
  t.match(ran, { outcome: { status: 'ok' }, approval: { ticket: 'CHG-4711', approver: 'carol@example.com' } }, 'the statement the approval covered carries it')
  t.equal(ran.policy, undefined, 'no refusal recorded')
})

t.test('the session ends when its approval expires', async (t) => {
  const c = await connect({ approval: await approve({ ttlSeconds: 3 }), app: 'approval-expiry' })
  t.same((await c.query('SELECT 1 AS one')).rows, [{ one: 1 }])
  const ended = await waitForRecords(auditPath, (rs) => recordsOfType(rs, 'session.end').some((r) => r.session.application_name === 'approval-expiry'), 10_000)
  const end = recordsOfType(ended, 'session.end').find((r) => r.session.application_name === 'approval-expiry')!
  t.equal(end.reason, 'approval_expired')
  t.match(end.approval, { ticket: 'CHG-4711' })
  const started = Date.parse(end.session.started_at)
  t.ok(Date.parse(end.time) - started < 6000, 'at the expiry, not the token\'s')
  t.match(await c.query('SELECT 1').catch((e: Error) => e), Error, 'the client can no longer run statements')
})

t.test('pgwitness approve mints an approval the proxy accepts (dev config)', async (t) => {
  const configPath = path.join(f.dir, 'dev-approve.yaml')
  writeFileSync(configPath, readFileSync(path.join(f.dir, 'pgwitness.yaml'), 'utf8'))
  const r = await runCli(['approve', '--config', configPath, '--sub', DBA, '--ticket', 'CHG-9', '--approver', 'dave', '--role', 'postgres', '--database', 'appdb', '--ttl', '10m'])
  t.equal(r.code, 0, r.stderr)
  const jwt = r.stdout.trim()
  presented.push(jwt)
  const c = await connect({ approval: jwt, app: 'cli-approval' })
  await c.end()
  await sessionEnded('cli-approval')
  t.match(ofSession('cli-approval')[0], { approval: { ticket: 'CHG-9', approver: 'dave' } })
  const missing = await runCli(['approve', '--config', configPath, '--sub', DBA])
  t.equal(missing.code, 1)
  t.match(missing.stderr, /--ticket, --approver, --role are required/)
  const prod = path.join(f.dir, 'not-dev.yaml')
  writeFileSync(prod, readFileSync(configPath, 'utf8').replace('dev: true', ''))
  const refused = await runCli(['approve', '--config', prod, '--sub', DBA, '--ticket', 'T', '--approver', 'A', '--role', 'postgres'])
  t.equal(refused.code, 2)
  t.match(refused.stderr, /not a dev config/)
})

t.test('no approval token reaches the operational log', async (t) => {
  t.ok(operationalLog.length > 0, 'the proxy logged (at trace level)')
  t.ok(presented.length >= 10)
  for (const jwt of presented) {
    t.notOk(operationalLog.includes(jwt.split('.')[2]!), 'no approval signature in the log')
    t.notOk(operationalLog.includes(jwt.split('.')[1]!), 'no approval payload in the log')
  }
})
