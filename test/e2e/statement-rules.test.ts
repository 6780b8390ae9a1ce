/**
 * Statement rules (policy[].statements) through the proxy with real
 * clients: a denied statement never reaches PostgreSQL, the client gets
 * 42501 naming the rule, the session goes on, and transactions end as
 * PostgreSQL's own error would leave them. node-postgres, psql, pgbench
 * (-M extended and -M prepared) and a pipelined raw client.
 */
import t from 'tap'
import { runProgram } from '../helpers/cli.js'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { serialize } from 'pg-protocol'
import { DEV_ISSUER } from '../../src/dev/tokens.js'
import type { StatementRecord } from '../../src/evidence/types.js'
import { readValidAuditLog, recordsOfType, waitForRecords } from '../helpers/audit.js'
import { startFixture } from '../helpers/proxy.js'
import { frame, WireClient } from '../helpers/wire.js'
import { parseExposition, sum } from '../helpers/metrics.js'

const f = await startFixture({
  extraYaml: 'metrics: { listen: "127.0.0.1:0" }',
  policyYaml: `policy:
  - name: billing-app
    match: { issuer: ${DEV_ISSUER}, subject: "spiffe://test.local/ns/billing/*" }
    roles: [app]
    databases: [appdb]
    statements:
      deny: [{ name: no-ddl, class: DDL }, { name: no-secrets, object: "public.secrets*" }, { name: no-file-read, function: pg_read_file }]
      require_claims: [{ class: ROLE, claim: change_ticket }]
  - name: rollout
    match: { issuer: ${DEV_ISSUER}, subject: "spiffe://test.local/ns/rollout/*" }
    roles: [app]
    databases: [appdb]
    statements:
      mode: monitor
      deny: [{ name: no-ddl, class: DDL }]`,
})
t.teardown(() => f.stop())
await f.pg.query(`create table public.ledger (n int primary key);
  create table public.secrets_cards (pan text);
  grant all on public.ledger, public.secrets_cards to app;
  grant create on schema public to app`, [], 'appdb')

const count = async (): Promise<number> => Number((await f.pg.query('select count(*)::int as n from public.ledger', [], 'appdb'))[0].n)
const tableExists = async (name: string): Promise<boolean> =>
  (await f.pg.query('select to_regclass($1) is not null as e', [name], 'appdb'))[0].e === true
const statements = (): StatementRecord[] => recordsOfType(readValidAuditLog(f.auditPath), 'statement') as StatementRecord[]
const byApp = (app: string) => statements().filter((s) => s.session.application_name === app)

t.test('node-postgres: a denied statement gets 42501 naming the rule; the session goes on', async (t) => {
  const c = await f.client({ applicationName: 'rules-pg' })
  const err = await c.query('CREATE TABLE public.sneaky (a int)').catch((e: { code?: string; message: string }) => e)
  t.match(err, { code: '42501', message: /pgwitness: statement denied by policy rule "billing-app" \(no-ddl: class DDL\)/ })
  t.notOk(await tableExists('public.sneaky'), 'the server never saw it')
  t.same((await c.query('SELECT 1 AS one')).rows, [{ one: 1 }], 'the session goes on')
  const read = await c.query('SELECT * FROM secrets_cards').catch((e: { code?: string; message: string }) => e)
  t.match(read, { code: '42501', message: /no-secrets: object secrets_cards/ }, 'an unqualified name is caught too')
  const file = await c.query("SELECT pg_read_file('/etc/hostname')").catch((e: { code?: string; message: string }) => e)
  t.match(file, { code: '42501', message: /no-file-read: function pg_read_file/ })
  const garbage = await c.query('SELEC 1').catch((e: { code?: string; message: string }) => e)
  t.match(garbage, { code: '42501', message: /unknown: a statement the proxy cannot classify/ }, 'fail closed on what the proxy cannot classify')
  await c.end()
  await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'session.end').some((r) => r.session.application_name === 'rules-pg'))
  const recs = byApp('rules-pg')
  const denied = recs.filter((s) => s.outcome.status === 'denied')
  t.same(denied.map((s) => [s.statement.text, s.outcome.sqlstate, s.policy?.denied_by?.statement_rule]), [
    ['CREATE TABLE public.sneaky (a int)', '42501', 'no-ddl'],
    ['SELECT * FROM secrets_cards', '42501', 'no-secrets'],
    ["SELECT pg_read_file('/etc/hostname')", '42501', 'no-file-read'],
    ['SELEC 1', '42501', 'unknown'],
  ])
  t.same(denied[0]!.policy, { denied_by: { rule: 'billing-app', statement_rule: 'no-ddl', matched: 'class DDL' } })
  t.equal(recs.find((s) => s.statement.text === 'SELECT 1 AS one')?.policy, undefined, 'nothing said of an allowed statement')
})

t.test('in an explicit transaction and in a multi-statement Query nothing of the denied work commits', async (t) => {
  const before = await count()
  const c = await f.client({ applicationName: 'rules-tx' })
  await c.query('BEGIN')
  await c.query('INSERT INTO public.ledger VALUES (1)')
  const e = await c.query('DROP TABLE public.ledger').catch((x: { code?: string }) => x)
  t.match(e, { code: '42501' })
  const after = await c.query('SELECT 1').catch((x: { code?: string }) => x)
  t.match(after, { code: '25P02' }, 'the transaction is aborted, as after any error')
  const commit = await c.query('COMMIT')
  t.equal(commit.command, 'ROLLBACK', 'COMMIT of an aborted transaction rolls back (the server says so)')
  t.equal(await count(), before, 'the INSERT did not commit')

  const multi = await c.query('INSERT INTO public.ledger VALUES (2); DROP TABLE public.ledger; INSERT INTO public.ledger VALUES (3)').catch((x: { code?: string; message: string }) => x)
  t.match(multi, { code: '42501', message: /statement 2 of 3 in the query; none of them ran/ })
  t.equal(await count(), before, 'no statement of the Query ran')
  t.same((await c.query('SELECT 2 AS two')).rows, [{ two: 2 }])
  await c.end()
  await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'session.end').some((r) => r.session.application_name === 'rules-tx'))
  const recs = byApp('rules-tx')
  const multiRecs = recs.filter((s) => s.statement.text?.includes('VALUES (2)') || s.statement.text?.includes('VALUES (3)') || s.statement.text === ' DROP TABLE public.ledger;')
  t.same(multiRecs.map((s) => s.outcome.status), ['denied', 'denied', 'denied'], 'every statement of the refused Query is recorded as denied')
  t.equal(multiRecs[1]!.policy?.denied_by?.statement_rule, 'no-ddl', 'the one that matched carries the rule')
  const ends = recordsOfType(readValidAuditLog(f.auditPath), 'transaction.end').filter((r) => r.session.application_name === 'rules-tx')
  t.ok(ends.some((r) => r.transaction.outcome === 'rolled_back'), 'the explicit transaction is recorded as rolled back')
})

t.test('a pipelined extended-protocol batch with a denial in the middle: error there, the rest skipped to Sync', async (t) => {
  const before = await count()
  const c = await WireClient.connect({ port: f.proxy.port, token: await f.token(), applicationName: 'rules-pipe' })
  t.teardown(() => c.destroy())
  const step = (text: string) => [serialize.parse({ text }), serialize.bind({}), serialize.describe({ type: 'P' }), serialize.execute({})]
  c.send(...step('INSERT INTO public.ledger VALUES (10)'), ...step('TRUNCATE public.secrets_cards'), ...step('INSERT INTO public.ledger VALUES (11)'), serialize.sync())
  const msgs = await c.untilReady()
  const names = msgs.map((m) => m.name)
  t.same(names.slice(0, 4), ['parseComplete', 'bindComplete', 'noData', 'commandComplete'], 'the first statement ran')
  const err = msgs.find((m) => m.name === 'error')
  t.match(err, { code: '42501', message: /no-secrets: object public.secrets_cards/ }, 'the error comes at the denied statement')
  t.equal(names.filter((n) => n === 'commandComplete').length, 1, 'nothing after it ran')
  t.equal(names[names.length - 1], 'readyForQuery')
  t.equal(await count(), before, 'the implicit transaction rolled back')
  const ok = await c.query('SELECT 3 AS three')
  t.ok(ok.some((m) => m.name === 'dataRow'), 'the session goes on')
  await c.end()
  await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'session.end').some((r) => r.session.application_name === 'rules-pipe'))
  t.same(byApp('rules-pipe').map((s) => [s.statement.text, s.outcome.status]), [
    ['INSERT INTO public.ledger VALUES (10)', 'ok'],
    ['TRUNCATE public.secrets_cards', 'denied'],
    ['SELECT 3 AS three', 'ok'],
  ], 'one record per statement the server ran or the proxy refused; none for the skipped one')
})

t.test('require_claims: the claim lets the statement run and is recorded; without it, denied', async (t) => {
  const withTicket = await f.client({ applicationName: 'rules-claims', token: await f.token({ claims: { change_ticket: 'CHG-4711' } }) })
  await withTicket.query("ALTER ROLE app SET work_mem = '5MB'")
  await withTicket.end()
  const without = await f.client({ applicationName: 'rules-claims' })
  const e = await without.query("ALTER ROLE app SET work_mem = '6MB'").catch((x: { code?: string; message: string }) => x)
  t.match(e, { code: '42501', message: /require_claims\[0\]: class ROLE, without claim change_ticket/ })
  await without.end()
  await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'session.end').filter((r) => r.session.application_name === 'rules-claims').length === 2)
  const recs = byApp('rules-claims').filter((s) => s.statement.command === 'ALTER ROLE')
  t.same(recs.map((s) => [s.outcome.status, s.policy]), [
    ['ok', { claims: { change_ticket: 'CHG-4711' } }],
    ['denied', { denied_by: { rule: 'billing-app', statement_rule: 'require_claims[0]', matched: 'class ROLE, without claim change_ticket' } }],
  ])
})

t.test('monitor mode: the statement runs and its record says the rule would have denied it', async (t) => {
  const c = await f.client({ applicationName: 'rules-monitor', token: await f.token({ subject: 'spiffe://test.local/ns/rollout/sa/migrator' }) })
  await c.query('CREATE TABLE public.rollout_probe (a int)')
  await c.end()
  t.ok(await tableExists('public.rollout_probe'), 'it ran')
  await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'session.end').some((r) => r.session.application_name === 'rules-monitor'))
  const rec = byApp('rules-monitor').find((s) => s.statement.command === 'CREATE TABLE')
  t.same([rec?.outcome.status, rec?.policy], ['ok', { would_deny: [{ rule: 'rollout', statement_rule: 'no-ddl', matched: 'class DDL' }] }])
  const m = parseExposition(await (await fetch(`http://${f.proxy.metricsAddress}/metrics`)).text())
  t.equal(sum(m, 'pgwitness_statement_rule_would_deny_total', { rule: 'rollout', statement_rule: 'no-ddl' }), 1, 'counted per rule')
  t.ok(sum(m, 'pgwitness_statement_rule_denials_total', { rule: 'billing-app', statement_rule: 'no-ddl' }) >= 1, 'enforced denials counted too')
})

/** A libpq program through the proxy. */
async function run(cmd: string, args: string[], appName: string, input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = { ...f.libpqEnv(await f.token()), PGAPPNAME: appName }
  return runProgram(cmd, args, env, input)
}

t.test('psql: the denial is an ordinary error; the script goes on', async (t) => {
  const r = await run('psql', ['-X', '-At', '-v', 'ON_ERROR_STOP=0', '-f', '-'], 'rules-psql', 'DROP TABLE public.ledger;\nSELECT 40 + 2;\n')
  t.equal(r.code, 0, r.stderr)
  t.match(r.stderr, /ERROR: {2}pgwitness: statement denied by policy rule "billing-app" \(no-ddl: class DDL\)/)
  t.equal(r.stdout.trim(), '42')
  t.ok(await tableExists('public.ledger'))
})

const script = (name: string, sql: string): string => {
  const file = path.join(f.dir, name)
  writeFileSync(file, sql)
  return file
}

for (const mode of ['extended', 'prepared'] as const) {
  t.test(`pgbench -M ${mode}: allowed statements run, a denied one fails the client without a hang`, async (t) => {
    const ok = script('allowed.sql', 'SELECT count(*) FROM public.ledger WHERE n > :client_id;\n')
    const allowed = await run('pgbench', ['-n', '-t', '20', '-c', '2', '-M', mode, '-f', ok], `rules-pgbench-${mode}`)
    t.equal(allowed.code, 0, allowed.stderr)
    t.match(allowed.stdout, /number of transactions actually processed: 40\/40/)
    const bad = script('denied.sql', 'SELECT count(*) FROM public.secrets_cards;\n')
    const denied = await run('pgbench', ['-n', '-t', '5', '-c', '1', '-M', mode, '-f', bad], `rules-pgbench-${mode}-denied`)
    t.not(denied.code, 0, 'pgbench reports the failure')
    t.match(denied.stderr, /no-secrets: object public\.secrets_cards/)
  })
}

// A text pipelined behind a statement that changes standard_conforming_strings or
// client_encoding is read by the server under the new setting, which the proxy
// learns of only afterwards. Read under the old one, these texts are a single
// SELECT; the server, under the new one, runs a DROP TABLE behind it.
t.test('a DDL hidden by a setting changed in flight (pipelined) is still denied', async (t) => {
  await f.pg.query('create table public.victim_scs (a int); create table public.victim_sjis (a int); grant all on public.victim_scs, public.victim_sjis to app', [], 'appdb')
  const c = await WireClient.connect({ port: f.proxy.port, token: await f.token(), applicationName: 'rules-inflight' })
  t.teardown(() => c.destroy())
  const query = (bytes: Buffer) => frame('Q', Buffer.concat([bytes, Buffer.from([0])]))
  const ran = (msgs: Array<{ name: string }>) => msgs.map((m) => m.name)

  await c.query('SET standard_conforming_strings = off')
  c.send(serialize.query('SET standard_conforming_strings = on'), query(Buffer.from("SELECT 'a\\'; DROP TABLE public.victim_scs; -- '")))
  const scs = [...(await c.untilReady()), ...(await c.untilReady())]
  t.match(scs.find((m) => m.name === 'error'), { code: '42501', message: /no-ddl: class DDL/ }, 'standard_conforming_strings: the hidden DROP is denied')
  t.ok(await tableExists('public.victim_scs'), 'and never ran')

  await c.query('SET client_encoding TO latin1')
  const sjis = Buffer.concat([Buffer.from("SELECT E'", 'latin1'), Buffer.from([0x95, 0x5c]), Buffer.from("'; DROP TABLE public.victim_sjis; -- '", 'latin1')])
  c.send(serialize.query('SET client_encoding TO sjis'), query(sjis))
  const enc = [...(await c.untilReady()), ...(await c.untilReady())]
  t.match(enc.find((m) => m.name === 'error'), { code: '42501', message: /no-ddl: class DDL/ }, 'client_encoding: the hidden DROP is denied')
  t.ok(await tableExists('public.victim_sjis'), 'and never ran')
  t.equal(ran(enc).filter((n) => n === 'commandComplete').length, 1, 'only the SET completed')

  // Extended protocol: under standard_conforming_strings off this Parse is one harmless SELECT
  // ('a\\', pg_read_file(' / etc / hostname ') AS f --'); under on, it calls pg_read_file.
  await c.query('SET client_encoding TO UTF8')
  await c.query('SET standard_conforming_strings = off')
  const step = (text: string) => [serialize.parse({ text }), serialize.bind({}), serialize.execute({})]
  c.send(...step('SET standard_conforming_strings = on'), ...step("SELECT 'a\\', pg_read_file('/etc/hostname') AS f --'"), serialize.sync())
  const ext = await c.untilReady()
  t.match(ext.find((m) => m.name === 'error'), { code: '42501', message: /no-file-read: function pg_read_file.*standard_conforming_strings on/ }, 'extended: the hidden function call is denied at its Parse')

  c.send(serialize.query('SET standard_conforming_strings = on'), query(Buffer.from("SELECT 'C:\\temp', 'é'")))
  const plain = [...(await c.untilReady()), ...(await c.untilReady())]
  t.notOk(plain.some((m) => m.name === 'error'), 'a harmless pipelined text with a backslash and non-ASCII still runs')
  await c.end()
})
