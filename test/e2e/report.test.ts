/**
 * `pgwitness report` as the SOC uses it: a real proxy and PostgreSQL, real
 * clients (several identities, failed logins, a refused statement, DDL with
 * and without a change ticket, a rolled-back transaction, a bulk read of a
 * sensitive table, one token used from two addresses), a rotating signed
 * log; then `node dist/cli.js report` on it. report.json must say what
 * happened, the CSV files must parse and agree with it, report.html must be
 * self-contained and render in Chromium without a network request or a
 * console error; a tampered copy of the log yields a report marked broken.
 */
import { spawn } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import t from 'tap'
import { writeCheckpointKeyPair } from '../../src/ledger/checkpoint.js'
import { listLogFiles } from '../../src/ledger/log-files.js'
import type { AuditRecord } from '../../src/evidence/types.js'
import { DEV_ISSUER } from '../../src/dev/tokens.js'
import type { ReportJson } from '../../src/report/report-json.js'
import { validateRecord } from '../helpers/audit.js'
import { ROOT } from '../helpers/cli.js'
import { parseCsv } from '../helpers/csv.js'
import { startFixture } from '../helpers/proxy.js'

const CLI = path.join(ROOT, 'dist', 'cli.js')
const work = mkdtempSync(path.join(os.tmpdir(), 'pgw-report-'))
const logDir = path.join(work, 'audit')
mkdirSync(logDir)
const auditPath = path.join(logDir, 'audit.jsonl')
const { keyId } = writeCheckpointKeyPair(path.join(work, 'sign.jwk'), path.join(work, 'sign.pub.jwk'))

const f = await startFixture({
  policyYaml: `policy:
  - name: billing-app
    match: { issuer: ${DEV_ISSUER}, subject: "spiffe://test.local/ns/billing/*" }
    roles: [app]
    databases: [appdb]
    statements:
      deny: [{ name: no-secrets, object: "public.secrets*" }]
  - name: dba
    match: { issuer: ${DEV_ISSUER}, claims: { groups: dba } }
    roles: ["*"]
    databases: ["*"]
    statements:
      mode: monitor
      require_claims: [{ class: DDL, claim: change_ticket }]
  - name: reporting
    match: { issuer: ${DEV_ISSUER}, subject: "spiffe://test.local/ns/reporting/*" }
    roles: [reporter]
    databases: [appdb]`,
  auditYaml: `audit:
  log: ${auditPath}
  durability: strict
  rotate: { max_size: 8KiB }
  checkpoint: { key: ${path.join(work, 'sign.jwk')}, every_records: 7 }`,
})
t.teardown(() => f.stop())
await f.pg.query(`create schema pii; create table pii.customers (id int, email text);
  insert into pii.customers select g, 'c' || g || '@example.com' from generate_series(1, 25) g;
  grant usage on schema pii to app; grant select on pii.customers to app;
  create table public.ledger (n int); create table public.secrets_cards (pan text);
  grant all on public.ledger, public.secrets_cards to app`, [], 'appdb')

/** node-postgres through the proxy from a chosen loopback source address. */
async function clientFrom(localAddress: string, token: string): Promise<pg.Client> {
  class FromSocket extends net.Socket {
    override connect(...args: unknown[]): this {
      return super.connect({ port: args[0] as number, host: args[1] as string, localAddress })
    }
  }
  const c = new pg.Client({ host: '127.0.0.1', port: f.proxy.port, user: 'app', database: 'appdb', password: token, ssl: { rejectUnauthorized: false }, stream: () => new FromSocket() })
  c.on('error', () => undefined)
  await c.connect()
  return c
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const API = 'spiffe://test.local/ns/billing/sa/api'
const BATCH = 'spiffe://test.local/ns/billing/sa/batch'

// Before the period: the api workload (the baseline of known identities).
const early = await f.client()
await early.query('insert into public.ledger values (1), (2)')
await early.end()
await sleep(50)
const since = new Date().toISOString()
await sleep(20)

// In the period.
// (Checked in the first test: tap takes no assertions before its tests start.)
const expiredRefused: boolean[] = []
for (let i = 0; i < 4; i++) {
  expiredRefused.push(await f.client({ token: await f.token({ ttlSeconds: -120 }) }).then(() => false, () => true))
}
const batch = await f.client({ token: await f.token({ subject: BATCH }) })
const bulkRows = (await batch.query('select * from pii.customers')).rowCount
const refused = await batch.query('select * from public.secrets_cards').catch((e: { code?: string }) => e)
await batch.end()

const alice = await f.client({ user: 'postgres', token: await f.token({ subject: 'alice@corp', claims: { groups: ['dba'], change_ticket: 'CHG-7' } }) })
await alice.query('create table public.with_ticket (a int)')
await alice.end()
const bob = await f.client({ user: 'postgres', token: await f.token({ subject: 'bob@corp', claims: { groups: ['dba'] } }) })
await bob.query('create table public.no_ticket (a int)')
await bob.query('begin')
await bob.query('create table public.rolled_back (a int)')
await bob.query('rollback')
await bob.end()

const shared = await f.token()
for (const address of ['127.0.0.1', '127.0.0.2']) {
  const c = await clientFrom(address, shared)
  await c.query('select count(*) from public.ledger')
  await c.end()
}
await f.proxy.stop()

const hour = new Date().getUTCHours()
const offHours = hour < 12 ? '13:00-14:00' : '01:00-02:00'

function report(out: string, files: string[], extra: string[] = []): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, 'report', '--out', out, '--public-key', path.join(work, 'sign.pub.jwk'), '--since', since,
      '--config', path.join(f.dir, 'pgwitness.yaml'), '--sensitive', 'pii.*', '--bulk-rows', '10', '--auth-failures', '3', '--working-hours', offHours, ...extra, ...files], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    p.stdout.on('data', (d) => (stdout += d))
    p.stderr.on('data', (d) => (stderr += d))
    p.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

const logFiles = listLogFiles(auditPath).map((x) => x.path)
const records: AuditRecord[] = logFiles.flatMap((p) => readFileSync(p, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditRecord))
const bySeq = new Map(records.map((r) => [r.chain.seq, r]))
const out = path.join(work, 'report')

t.test('report.json says what happened', async (t) => {
  t.same(expiredRefused, [true, true, true, true], 'the expired tokens were refused')
  t.equal(bulkRows, 25, 'the bulk read returned every row')
  t.match(refused, { code: '42501' }, 'the statement rule refused the secrets table')
  t.ok(logFiles.length > 1, `the log rotated (${logFiles.length} files)`)
  t.same(records.flatMap(validateRecord), [], 'every record is valid')
  const r = await report(out, [auditPath])
  t.equal(r.code, 0, `exit 0: ${r.stdout}${r.stderr}`)
  const j = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8')) as ReportJson

  t.equal(j.integrity.verdict, 'intact')
  t.same(j.integrity.files_given, logFiles, 'the rotated files and the active one, in chain order')
  t.equal(j.integrity.records_verified, records.length)
  t.ok(j.integrity.signatures_checked && j.integrity.checkpoints > 0, `${j.integrity.checkpoints} signed checkpoints`)
  t.same(j.integrity.signing_key_ids, [keyId])
  t.equal(records.at(-1)!.type, 'checkpoint', 'a cleanly stopped proxy ends its log with a checkpoint')
  t.equal(j.integrity.signed_through_seq, records.at(-1)!.chain.seq, 'signed through the last record')
  t.equal(j.integrity.unsigned_tail, 0)

  const subjects = j.inventory.identities.map((i) => i.subject)
  t.same(subjects.sort(), [API, BATCH, 'alice@corp', 'bob@corp'].sort(), 'every identity that had a session in the period')
  const api = j.inventory.identities.find((i) => i.subject === API)!
  t.same(api.source_addresses.map((s) => s.key).sort(), ['127.0.0.1', '127.0.0.2'])
  t.equal(api.token_ids.length, 1, 'one token id (used twice)')
  t.equal(api.token_ids[0]!.sessions, 2)

  const batchRow = j.access.rows.find((a) => a.identity.startsWith(BATCH))!
  t.match(batchRow, { role: 'app', database: 'appdb', sessions: 1, statements: 2, denied: 1, policy_rules: ['billing-app'] })
  t.same(j.access.unused_grants?.map((u) => `${u.rule}:${u.role}:${u.database}`), ['reporting:reporter:appdb'], 'the unused rule is a candidate for removal')

  const priv = (text: string) => j.privileged.rows.find((p) => p.text?.includes(text))
  t.match(priv('with_ticket'), { identity: /^alice@corp/, status: 'ok', effect: 'committed', ticket: 'CHG-7' })
  t.match(priv('no_ticket'), { identity: /^bob@corp/, status: 'ok', effect: 'committed', ticket: null, rule: /dba\/require_claims\[0\] \(monitor/ })
  t.match(priv('rolled_back'), { status: 'ok', effect: 'rolled_back' })
  t.match(priv('secrets_cards'), { identity: new RegExp(`^${BATCH}`), status: 'denied', effect: 'not_run', rule: /billing-app\/no-secrets/ })
  t.equal(j.privileged.total, 4)

  t.equal(j.failed_logins.total, 4)
  t.same(j.failed_logins.by_reason, [{ key: 'token_expired', count: 4 }])

  const finding = (kind: string, key?: RegExp) => j.findings.findings.find((x) => x.kind === kind && (key === undefined || key.test(x.key)))
  t.match(finding('auth_failures_from_source'), { key: '127.0.0.1', count: 4 })
  t.match(finding('privileged_without_ticket', /^bob@corp/), { count: 2 })
  t.notOk(finding('privileged_without_ticket', /^alice@corp/), 'the ticketed DDL is not a finding')
  t.ok(finding('privileged_off_hours', /^alice@corp/), 'DDL outside the working hours given')
  t.match(finding('bulk_read'), { key: new RegExp(`^${BATCH}`), detail: /25 rows/ })
  t.match(finding('sensitive_object'), { key: 'pii.customers' })
  t.same(j.findings.findings.filter((x) => x.kind === 'new_identity').map((x) => x.key.split(' ')[0]).sort(), [BATCH, 'alice@corp', 'bob@corp'].sort(), 'api was seen before the period')
  t.match(finding('shared_credential'), { key: /^token /, detail: /127\.0\.0\.1, 127\.0\.0\.2/ })
  for (const x of j.findings.findings) {
    for (const ref of x.records) t.equal(bySeq.get(ref.seq)?.time, ref.time, `${x.kind}: record seq ${ref.seq} is in the log`)
  }

  const batchSession = j.timelines.shown.find((s) => s.identity.startsWith(BATCH))!
  t.same(batchSession.events.filter((e) => e.kind === 'statement').map((e) => [e.command, e.status, e.rows]), [['SELECT', 'ok', 25], ['SELECT', 'denied', null]])
  for (const s of ['inventory', 'access', 'privileged', 'failed_logins', 'timelines', 'findings'] as const) t.equal(j[s].integrity.verdict, 'intact', `${s}: intact`)

  // The CSV files parse and agree with report.json.
  const csv = (name: string) => parseCsv(readFileSync(path.join(out, name), 'utf8'))
  const privileged = csv('privileged.csv')
  t.equal(privileged.length - 1, j.privileged.total, 'privileged.csv: one row per privileged statement')
  t.ok(privileged.slice(1).some((row) => row[privileged[0]!.indexOf('effect')] === 'rolled_back'))
  t.equal(csv('failed-logins.csv').length - 1, 4)
  const statements = csv('statements.csv')
  t.equal(statements.slice(1).filter((row) => row[4] === 'statement').length, records.filter((x) => x.type === 'statement' && x.time >= since).length, 'statements.csv: every statement of the period')
  t.equal(csv('sessions.csv').length - 1, j.timelines.sessions)

  // report.html is one self-contained file.
  const html = readFileSync(path.join(out, 'report.html'), 'utf8')
  t.notMatch(html, /(src|href)\s*=\s*["']?\s*(https?:)?\/\//i, 'no external src/href')
  t.notMatch(html, /<script/i, 'no script at all')
  t.notMatch(html, /@import|url\(/i, 'no CSS imports or url()')
})

t.test('report.html renders in Chromium: verdict, sections and rows, no network, no console error', async (t) => {
  if (!existsSync('/usr/bin/chromium')) return t.fail('chromium is not installed (.ci/run installs the Debian package)')
  const { chromium } = await import('playwright-core')
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu'] })
  t.teardown(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } })
  const requests: string[] = []
  const problems: string[] = []
  page.on('request', (req) => requests.push(req.url()))
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(m.text())
  })
  page.on('pageerror', (e) => problems.push(e.message))
  const url = `file://${path.join(out, 'report.html')}`
  await page.goto(url)
  t.match(await page.textContent('#integrity .verdict'), /^INTACT/)
  for (const id of ['findings', 'activity', 'inventory', 'access', 'privileged', 'failed-logins', 'timelines']) {
    t.ok(await page.isVisible(`section#${id} h2`), `section ${id} is shown`)
  }
  t.equal(await page.locator('#inventory tbody tr').count(), 4, 'four identities')
  t.match(await page.textContent('#privileged'), /CHG-7/)
  t.match(await page.textContent('#findings'), /Repeated authentication failures from one source address/)
  t.ok(await page.locator('#activity svg rect').count() > 0, 'the activity chart is drawn')
  t.ok(await page.locator('#timelines svg rect').count() > 0, 'session timelines are drawn')
  const shot = process.env.PGW_REPORT_SCREENSHOT ?? path.join(work, 'report.png')
  await page.screenshot({ path: shot, fullPage: false })
  t.same(requests, [url], 'the page loaded nothing but itself')
  t.same(problems, [], 'no console errors or warnings')
})

t.test('a tampered log still gets a report, marked broken in every section', async (t) => {
  const dir = path.join(work, 'tampered')
  mkdirSync(dir)
  const copies = logFiles.map((p) => {
    const to = path.join(dir, path.basename(p))
    copyFileSync(p, to)
    return to
  })
  // Edit the bulk read's text in its file.
  const at = copies.find((p) => readFileSync(p, 'utf8').includes('select * from pii.customers'))!
  writeFileSync(at, readFileSync(at, 'utf8').replace('select * from pii.customers', 'select id from pii.customers'))
  const out2 = path.join(work, 'report-tampered')
  const r = await report(out2, [path.join(dir, 'audit.jsonl')])
  t.equal(r.code, 1, `exit 1 for a broken log: ${r.stderr}`)
  t.match(r.stderr, /log BROKEN .*hash mismatch/)
  const j = JSON.parse(readFileSync(path.join(out2, 'report.json'), 'utf8')) as ReportJson
  t.equal(j.integrity.verdict, 'broken')
  t.match(j.integrity.first_problem, { file: at, reason: 'hash_mismatch' })
  t.ok(j.integrity.records_not_verified > 0, 'the records from the problem on are read, not verified')
  for (const s of ['inventory', 'access', 'privileged', 'failed_logins', 'timelines', 'findings', 'activity'] as const) t.equal(j[s].integrity.verdict, 'broken', `${s}: broken`)
  t.match(j.findings.findings.find((x) => x.kind === 'bulk_read'), { intact: false }, 'the finding resting on the edited record says so')
  const html = readFileSync(path.join(out2, 'report.html'), 'utf8')
  t.match(html, /<div class="verdict broken"><b>BROKEN<\/b>/)
  t.equal(html.match(/<section id="[a-z-]+" data-verdict="broken">/g)?.length, 8, 'every section of the page is marked broken')
  t.ok(readdirSync(out2).includes('statements.csv'))
})

t.test('bad arguments are refused with what is wrong, and no report', async (t) => {
  const bad = path.join(work, 'bad-thresholds.yaml')
  writeFileSync(bad, 'bulk: 5\n')
  const cases: Array<[string[], RegExp]> = [
    [['--since', 'yesterday'], /^report: --since: not a time: "yesterday"/m],
    [['--findings', bad], /^findings: bulk: unknown key/m],
    [['--bulk-rows', '0'], /^report: --bulk-rows: expected a positive integer/m],
    [['--public-key', path.join(work, 'missing.pub.jwk')], /^pgwitness report: cannot read public key/m],
  ]
  for (const [args, message] of cases) {
    const dir = path.join(work, `bad-${args[0]!.slice(2)}`)
    const r = await report(dir, [auditPath], args)
    t.equal(r.code, 2, `${args.join(' ')}: exit 2`)
    t.match(r.stderr, message)
    t.notOk(existsSync(path.join(dir, 'report.html')), 'no report written')
  }
})
