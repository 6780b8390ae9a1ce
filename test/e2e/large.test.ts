/**
 * Large messages (issue 2, item 9): a 32 MiB bind parameter, a 50 MB result
 * (one row, and many rows) stream through the proxy without it holding them
 * whole (its RSS — it runs in this process — stays bounded), and what the
 * audit record keeps of very long parameters and statement texts is capped by
 * audit.max_parameter_bytes / audit.max_statement_bytes and marked truncated.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import type pg from 'pg'
import type { Test } from 'tap'
import { startFixture, type Fixture } from '../helpers/proxy.js'
import { readAuditLog, readValidAuditLog, recordsOfType, validateRecord, waitForRecords, type RecordOfType } from '../helpers/audit.js'
import { cstr, serialize, shape, WireClient } from '../helpers/wire.js'

type StatementRec = RecordOfType<'statement'>

const MAX_PARAM = 1024
const MAX_STATEMENT = 2048
const MiB = 1024 * 1024

// No `log:` key: the file log defaults to audit/audit.jsonl next to the
// generated config, which is exactly the fixture's auditPath.
const f: Fixture = await startFixture({
  auditYaml: `audit:
  durability: batched
  fsync_interval: 20ms
  max_parameter_bytes: ${MAX_PARAM}
  max_statement_bytes: ${MAX_STATEMENT}`,
})
t.teardown(() => f.stop())

async function sessionIdOf(c: pg.Client): Promise<string> {
  return (await c.query('show pgwitness.session_id')).rows[0]['pgwitness.session_id'] as string
}

/** Records of one session after its end; asserts they match the v1 schema. */
async function sessionRecords(t: Test, match: (r: RecordOfType<'session.start'>) => boolean) {
  const recs = await waitForRecords(f.auditPath, (rs) => {
    const start = recordsOfType(rs, 'session.start').find(match)
    return !!start && rs.some((r) => r.type === 'session.end' && r.session.id === start.session.id)
  }, 30_000)
  const sid = recordsOfType(recs, 'session.start').find(match)!.session.id
  const mine = readAuditLog(f.auditPath).filter((r) => 'session' in r && r.session.id === sid)
  const problems = mine.flatMap((r) => validateRecord(r).map((p) => `${r.type}: ${p}`))
  t.same(problems, [], 'the records of this session match the v1 schema')
  const statements: StatementRec[] = recordsOfType(mine, 'statement')
  return { sid, statements, end: recordsOfType(mine, 'session.end')[0]! }
}

const bySession = (sid: string) => (r: RecordOfType<'session.start'>) => r.session.id === sid
const byAppName = (name: string) => (r: RecordOfType<'session.start'>) => r.session.application_name === name

/** psql through the proxy with its output discarded (so this process never holds it). */
async function psqlDiscard(sql: string, appName: string): Promise<{ code: number | null; stderr: string }> {
  const env = { ...f.libpqEnv(await f.token()), PGAPPNAME: appName }
  return new Promise((resolve, reject) => {
    const p = spawn('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-At', '-c', sql], { env, stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    p.on('error', reject)
    p.on('close', (code) => resolve({ code, stderr }))
  })
}

/** Samples process RSS while `fn` runs; returns the peak growth over `baseline`. */
async function peakRssGrowth<T>(baseline: number, fn: () => Promise<T>): Promise<{ result: T; growth: number }> {
  let peak = process.memoryUsage().rss
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss)
  }, 10)
  try {
    const result = await fn()
    peak = Math.max(peak, process.memoryUsage().rss)
    return { result, growth: peak - baseline }
  } finally {
    clearInterval(timer)
  }
}

// Runs first, before other tests inflate this process's heap.
t.test('streaming: a 32 MiB Bind and 50 MB results pass through with bounded proxy memory', async (t) => {
  const w = await WireClient.connect({ port: f.proxy.port, token: await f.token(), applicationName: 'large-stream' })
  await w.query('select 1')
  const baseline = process.memoryUsage().rss

  const { result: bindResult, growth: bindGrowth } = await peakRssGrowth(baseline, async () => {
    // Parse, then a 32 MiB Bind written in 1 MiB pieces (the test never holds it whole either).
    const size = 32 * MiB
    w.send(serialize.parse({ text: 'select length($1::text) as n, md5($1::text) as h' }))
    const prefix = Buffer.concat([cstr(''), cstr(''), Buffer.from([0, 0, 0, 1]), Buffer.alloc(4)])
    prefix.writeInt32BE(size, prefix.length - 4)
    const suffix = Buffer.from([0, 0])
    const bodyLen = prefix.length + size + suffix.length
    const head = Buffer.alloc(5)
    head[0] = 0x42 // 'B'
    head.writeInt32BE(bodyLen + 4, 1)
    await w.write(Buffer.concat([head, prefix]))
    const piece = Buffer.alloc(MiB, 'y')
    const md5 = createHash('md5')
    for (let sent = 0; sent < size; sent += MiB) {
      await w.write(piece)
      md5.update(piece)
    }
    await w.write(suffix)
    w.send(serialize.execute({}), serialize.sync())
    const msgs = await w.untilReady(60_000)
    return { msgs, md5: md5.digest('hex') }
  })
  t.same(shape(bindResult.msgs), ['parseComplete', 'bindComplete', 'dataRow', 'commandComplete(SELECT 1)', 'readyForQuery(I)'])
  t.same(bindResult.msgs.find((m) => m.name === 'dataRow')!.fields, [String(32 * MiB), bindResult.md5], 'the server got all 32 MiB intact')
  t.ok(bindGrowth < 200 * MiB, `RSS growth during the 32 MiB Bind: ${(bindGrowth / MiB).toFixed(1)} MiB`)
  await w.end()

  const { result: one, growth: oneGrowth } = await peakRssGrowth(baseline, () =>
    psqlDiscard(`select repeat('x', ${50 * MiB})`, 'large-one-row'))
  t.equal(one.code, 0, one.stderr)
  t.ok(oneGrowth < 200 * MiB, `RSS growth during a 50 MiB single-row result: ${(oneGrowth / MiB).toFixed(1)} MiB`)

  const { result: many, growth: manyGrowth } = await peakRssGrowth(baseline, () =>
    psqlDiscard(`select g, repeat('x', 100) from generate_series(1, 100000) g`, 'large-many-rows'))
  t.equal(many.code, 0, many.stderr)
  t.ok(manyGrowth < 200 * MiB, `RSS growth during a 10 MB, 100k-row result: ${(manyGrowth / MiB).toFixed(1)} MiB`)

  const rb = await sessionRecords(t, byAppName('large-stream'))
  t.match(rb.statements[1]!, {
    statement: { protocol: 'extended', parameters: [{ format: 'text', truncated: true, length: 32 * MiB }] },
    outcome: { status: 'ok', rows: 1 },
  })
  t.equal((rb.statements[1]!.statement.parameters as Array<{ value: string }>)[0]!.value, 'y'.repeat(MAX_PARAM))
  t.ok(rb.end.bytes_in > 32 * MiB, 'bytes_in counts the whole Bind')

  const r1 = await sessionRecords(t, byAppName('large-one-row'))
  t.match(r1.statements, [{ statement: { command: 'SELECT' }, outcome: { status: 'ok', rows: 1, command_tag: 'SELECT 1' } }])
  t.ok(r1.end.bytes_out > 50 * MiB, `bytes_out ${r1.end.bytes_out} counts the 50 MiB row`)
  const rm = await sessionRecords(t, byAppName('large-many-rows'))
  t.match(rm.statements, [{ outcome: { status: 'ok', rows: 100000, command_tag: 'SELECT 100000' } }])
  t.ok(rm.end.bytes_out > 10_000_000)
})

t.test('node-postgres: a 32 MiB text parameter works; its record keeps max_parameter_bytes, truncated, full length', async (t) => {
  const c = await f.client()
  const sid = await sessionIdOf(c)
  const big = 'ab'.repeat(16 * MiB)
  const r = await c.query('select length($1::text) as n, left($1::text, 3) as l, right($1::text, 3) as r', [big])
  t.same(r.rows, [{ n: 32 * MiB, l: 'aba', r: 'bab' }])
  const bin = Buffer.alloc(256 * 1024, 0xab)
  const rb = await c.query('select length($1::bytea) as n, $2::text as small', [bin, 'tiny'])
  t.same(rb.rows, [{ n: 256 * 1024, small: 'tiny' }])
  // Multi-byte text cut at the cap (the record must still be valid UTF-8 JSON).
  const euro = '€'.repeat(2000) // 6000 bytes
  const re = await c.query('select length($1::text) as n', [euro])
  t.same(re.rows, [{ n: 2000 }])
  await c.end()
  const { statements } = await sessionRecords(t, bySession(sid))
  const st = statements.slice(1)
  t.same(st[0]!.statement.parameters, [{ format: 'text', value: 'ab'.repeat(MAX_PARAM / 2), truncated: true, length: 32 * MiB }])
  t.same(st[1]!.statement.parameters, [
    { format: 'binary', base64: Buffer.alloc(MAX_PARAM, 0xab).toString('base64'), truncated: true, length: 256 * 1024 },
    { format: 'text', value: 'tiny' },
  ])
  const p = (st[2]!.statement.parameters as Array<{ value: string; truncated?: boolean; length?: number }>)[0]!
  t.equal(p.truncated, true)
  t.equal(p.length, 6000)
  t.ok(Buffer.byteLength(p.value) <= MAX_PARAM, `kept ${Buffer.byteLength(p.value)} bytes`)
  t.notMatch(p.value, /\uFFFD/, 'no replacement character: the value is cut on a character boundary')
  t.ok(euro.startsWith(p.value.replace(/\uFFFD+$/, '')), 'what is kept is a prefix of the value')
  t.ok(p.value.length >= 340, 'about max_parameter_bytes of it is kept')
  for (const s of st) t.equal(s.outcome.status, 'ok')
})

t.test('a very long statement text is cut to max_statement_bytes with text_truncated', async (t) => {
  const c = await f.client()
  const sid = await sessionIdOf(c)
  const long = `select '${'a'.repeat(5000)}' as v`
  t.equal((await c.query(long)).rows[0].v.length, 5000)
  // Extended protocol, and a multi-statement string where only one part is long.
  const longExt = `select $1::text || '${'b'.repeat(3000)}' as v`
  t.equal((await c.query(longExt, ['z'])).rows[0].v.length, 3001)
  await c.query(`select 1 as short; select '${'c'.repeat(3000)}' as long`)
  // Multi-byte characters are never split.
  const longUtf8 = `select '${'é'.repeat(3000)}' as v`
  t.equal((await c.query(longUtf8)).rows[0].v.length, 3000)
  // Over 1 MiB: the proxy streams the Query instead of capturing it.
  const huge = `select length('${'z'.repeat(2 * MiB)}') as n`
  t.same((await c.query(huge)).rows, [{ n: 2 * MiB }])
  await c.end()
  const { statements } = await sessionRecords(t, bySession(sid))
  const st = statements.slice(1)
  t.equal(st.length, 6)
  const [s1, s2, s3a, s3b, s4, s5] = st as [StatementRec, StatementRec, StatementRec, StatementRec, StatementRec, StatementRec]
  t.match(s1, { statement: { text_truncated: true, command: 'SELECT', protocol: 'simple' }, outcome: { status: 'ok', rows: 1 } })
  t.equal(s1.statement.text, long.slice(0, MAX_STATEMENT))
  t.match(s2, { statement: { text_truncated: true, protocol: 'extended', parameters: [{ format: 'text', value: 'z' }] } })
  t.equal(s2.statement.text, longExt.slice(0, MAX_STATEMENT))
  t.match(s3a, { statement: { text: 'select 1 as short', text_truncated: false } })
  t.match(s3b, { statement: { text_truncated: true } })
  t.equal(s3b.statement.text, ` select '${'c'.repeat(3000)}' as long`.slice(0, MAX_STATEMENT))
  t.equal(s4.statement.text_truncated, true)
  t.ok(Buffer.byteLength(s4.statement.text!) <= MAX_STATEMENT && Buffer.byteLength(s4.statement.text!) > MAX_STATEMENT - 2)
  t.ok(longUtf8.startsWith(s4.statement.text!), 'cut on a character boundary')
  t.match(s5, { statement: { text_truncated: true }, outcome: { status: 'ok', rows: 1 } })
  t.ok(Buffer.byteLength(s5.statement.text!) <= MAX_STATEMENT)
  t.ok(huge.startsWith(s5.statement.text!) && s5.statement.text!.length > 1000, 'the record keeps the start of the 2 MiB text')
})

t.test('every record written in this file matches the v1 schema', async (t) => {
  const all = readValidAuditLog(f.auditPath)
  t.ok(all.length > 5)
})

