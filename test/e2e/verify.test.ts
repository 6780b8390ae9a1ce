/**
 * The audit log's hash chain end to end: a proxy writes a chained log,
 * `pgwitness verify` (the CLI, as a child process) finds it intact; a
 * restarted proxy continues the chain of the same file; tampering with the
 * file is reported with the right line and reason.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import pino from 'pino'
import t from 'tap'
import { ProxyServer } from '../../src/server.js'
import { AuditChain } from '../../src/ledger/chain.js'
import { listLogFiles } from '../../src/ledger/log-files.js'
import type { AuditRecordBody } from '../../src/evidence/types.js'
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

t.test('signed checkpoints and rotation: verify --public-key over the rotated files; a rewritten tail is caught', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgw-keys-'))
  const kg = await runCli(['keygen', '--out', path.join(dir, 'signing')])
  t.equal(kg.code, 0, `keygen: ${kg.stderr}`)
  const keyId = /key id {2}(\S+)/.exec(kg.stdout)![1]!
  const auditPath = path.join(dir, 'audit', 'audit.jsonl')
  const f = await startFixture({
    auditYaml: `audit:
  log: ${auditPath}
  checkpoint: { key: ${path.join(dir, 'signing.jwk')}, every_records: 25, every_seconds: 3600 }
  rotate: { max_size: 16KiB }`,
  })
  t.teardown(() => f.stop())
  const c = await f.client()
  for (let i = 0; i < 60; i++) await c.query('select $1::int as n, repeat($2, 40) as pad', [i, 'x'])
  await c.end()
  await f.proxy.stop()

  const files = listLogFiles(auditPath).map((x) => x.path)
  t.ok(files.length >= 3, `${files.length} files after rotation`)
  const recs = files.flatMap((file) => readValidAuditLog(file))
  const start = recs.find((r) => r.type === 'proxy.start')!
  t.equal((start as { checkpoint_key_id: string | null }).checkpoint_key_id, keyId, 'proxy.start names the signing key')
  t.equal(recs.at(-1)!.type, 'checkpoint', 'the log of a stopped proxy ends with a checkpoint')
  const pub = path.join(dir, 'signing.pub.jwk')
  const ok = await runCli(['verify', '--public-key', pub, ...files])
  t.equal(ok.code, 0, `verify --public-key over ${files.length} files exits 0: ${ok.stdout}${ok.stderr}`)
  t.match(ok.stdout, /signed checkpoint\(s\) verified; signed through seq \d+/)

  // Rewrite the tail of the last file: edit a statement, recompute its chain, drop the checkpoints after it.
  const last = files.at(-1)!
  const lines = readFileSync(last, 'utf8').split('\n').slice(0, -1)
  const at = lines.findIndex((l) => l.includes('"type":"statement"'))
  t.ok(at >= 0, 'a statement in the last file')
  const before = JSON.parse(lines[at - 1] ?? readFileSync(files.at(-2)!, 'utf8').trim().split('\n').at(-1)!) as { chain: { seq: number; hash: string } }
  const chain = new AuditChain({ seq: before.chain.seq, hash: before.chain.hash })
  const rewritten = lines.slice(0, at)
  for (const l of lines.slice(at)) {
    const { chain: _c, ...rec } = JSON.parse(l) as Record<string, unknown>
    if (rec.type === 'checkpoint') continue
    if (rec.type === 'statement') (rec.statement as { text: string }).text = 'select 1 -- nothing to see here'
    rewritten.push(chain.seal(rec as unknown as AuditRecordBody).line)
  }
  const forged = path.join(dir, 'forged.jsonl')
  writeFileSync(forged, rewritten.join('\n') + '\n')
  const chainOnly = await runCli(['verify', ...files.slice(0, -1), forged])
  t.equal(chainOnly.code, 0, 'the chain alone cannot tell (it was recomputed)')
  t.match(chainOnly.stdout, /signatures were NOT checked/)
  const signed = await runCli(['verify', '--public-key', pub, ...files.slice(0, -1), forged])
  t.equal(signed.code, 1, 'with the public key, verify exits 1')
  t.match(signed.stderr, new RegExp(`${forged}:${at + 1}: unsigned tail: `), 'at the first record after the last valid checkpoint')
})
