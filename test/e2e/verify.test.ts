/**
 * The audit log's hash chain end to end: a proxy writes a chained log,
 * `pgwitness verify` (the CLI, as a child process) finds it intact; a
 * restarted proxy continues the chain of the same file; tampering with the
 * file is reported with the right line and reason.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import pg from 'pg'
import pino from 'pino'
import t from 'tap'
import { ProxyServer } from '../../src/server.js'
import { readValidAuditLog } from '../helpers/audit.js'
import { runCli } from '../helpers/cli.js'
import { startFixture } from '../helpers/proxy.js'

t.test('a proxy writes a chained log that verifies; a restart continues it; tampering is reported', async (t) => {
  const f = await startFixture()
  t.teardown(() => f.stop())

  // First run: a session with a few statements, one failing.
  const c = await f.client()
  await c.query('create table t (id int primary key, note text)')
  await c.query("insert into t values (1, 'é€😀 \"quoted\"\n'), (2, $1)", ['param'])
  await c.query('select * from t')
  await c.query('select 1/0').catch(() => undefined)
  await c.end()
  await f.proxy.stop()

  const first = readValidAuditLog(f.auditPath)
  t.ok(first.length >= 7, `${first.length} records written`)
  t.same(first.map((r) => r.chain.seq), first.map((_, i) => i + 1), 'seq counts from 1')
  const v1 = await runCli(['verify', f.auditPath])
  t.equal(v1.code, 0, `verify exits 0: ${v1.stdout}${v1.stderr}`)
  t.match(v1.stdout, `${f.auditPath}: ${first.length} record(s), seq 1..${first.length}, intact`)

  // Second run on the same file: the chain continues.
  const proxy2 = await ProxyServer.start(f.config, pino({ level: 'warn' }))
  let stopped = false
  t.teardown(() => (stopped ? undefined : proxy2.stop()))
  const c2 = new pg.Client({ host: '127.0.0.1', port: proxy2.port, user: 'app', database: 'appdb', password: await f.token(), ssl: { rejectUnauthorized: false } })
  c2.on('error', () => undefined)
  await c2.connect()
  await c2.query('update t set note = $1 where id = 2', ['changed'])
  await c2.query('select count(*) from t')
  await c2.end()
  await proxy2.stop()
  stopped = true

  const all = readValidAuditLog(f.auditPath)
  const second = all.slice(first.length)
  t.ok(second.length >= 5, `${second.length} more records`)
  t.equal(second[0]!.type, 'proxy.start')
  t.equal(second[0]!.chain.seq, first.length + 1, 'the restarted proxy continues the seq…')
  t.equal(second[0]!.chain.prev, first.at(-1)!.chain.hash, '…and links to the last record of the first run')
  const v2 = await runCli(['verify', f.auditPath])
  t.equal(v2.code, 0, `verify still exits 0: ${v2.stdout}${v2.stderr}`)
  t.match(v2.stdout, `${all.length} record(s), seq 1..${all.length}, intact`)

  // Tampering, each on a copy of the log.
  const lines = readFileSync(f.auditPath, 'utf8').split('\n').slice(0, -1)
  const stmtLine = all.findIndex((r) => r.type === 'statement' && r.statement.text?.startsWith('insert')) + 1
  t.ok(stmtLine > 1, `the insert is on line ${stmtLine}`)
  const cases: Array<{ name: string; text: string; line: number; reason: RegExp }> = [
    {
      name: 'edited statement text',
      text: lines.map((l, i) => (i === stmtLine - 1 ? l.replace('insert into t', 'insert into u') : l)).join('\n') + '\n',
      line: stmtLine,
      reason: /hash mismatch: .*altered/,
    },
    { name: 'deleted record', text: lines.filter((_, i) => i !== stmtLine - 1).join('\n') + '\n', line: stmtLine, reason: /seq gap: .*missing here \(deleted\)/ },
    {
      name: 'reordered records',
      text: lines.map((l, i) => (i === stmtLine - 1 ? lines[stmtLine]! : i === stmtLine ? lines[stmtLine - 1]! : l)).join('\n') + '\n',
      line: stmtLine,
      reason: /seq gap: .*at line \d+ \(records reordered\)/,
    },
    {
      name: 'inserted record (a copy of an earlier one)',
      text: [...lines.slice(0, stmtLine), lines[1]!, ...lines.slice(stmtLine)].join('\n') + '\n',
      line: stmtLine + 1,
      reason: /seq back: /,
    },
    { name: 'truncated file', text: lines.join('\n').slice(0, -40), line: lines.length, reason: /truncated: the last line is incomplete/ },
  ]
  for (const tc of cases) {
    const copy = path.join(f.dir, `tampered-${tc.name.replace(/\W+/g, '-')}.jsonl`)
    writeFileSync(copy, tc.text)
    const r = await runCli(['verify', copy])
    t.equal(r.code, 1, `${tc.name}: verify exits 1`)
    t.match(r.stderr, `${copy}:${tc.line}: `, `${tc.name}: reported at line ${tc.line}`)
    t.match(r.stderr, tc.reason, `${tc.name}: reason`)
  }

  const json = await runCli(['verify', '--json', f.auditPath])
  t.match(JSON.parse(json.stdout), { ok: true, records: all.length, firstSeq: 1, lastSeq: all.length, failure: null })
})
