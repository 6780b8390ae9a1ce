/**
 * The WebAssembly canonical-form scanner (src/ledger/wasm/canonical-scan.c)
 * against the TypeScript scanner it speeds up: it may leave a line to the
 * TypeScript scanner, but whatever it accepts, the TypeScript scanner
 * accepts too, with the same chain fields, chain offset and checkpoint
 * flag; and it accepts the records the proxy writes (or it would not be
 * used at all).
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import fc from 'fast-check'
import t from 'tap'
import { AuditChain } from '../../src/ledger/chain.js'
import { CanonicalLineScanner } from '../../src/ledger/canonical-scan.js'
import { FACT_SLOT_NAMES, wasmLineScanner } from '../../src/ledger/wasm/canonical-scan-wasm.js'
import { CANONICAL_SCAN_SOURCE_SHA256 } from '../../src/ledger/wasm/canonical-scan-module.js'
import { checkpointRecord } from '../../src/evidence/records.js'
import type { AuditRecordBody } from '../../src/evidence/types.js'
import { bodiesOfEveryType, proxy, statement } from '../helpers/sample-records.js'
import { byteEdits, editedLine, randomBody } from '../helpers/record-mutants.js'

const typescript = new CanonicalLineScanner(false)
const wasm = wasmLineScanner()!

/** What each scanner says of buf[start, end): null (not accepted) or the fields a caller reads. */
function typescriptVerdict(buf: Buffer, start: number, end: number) {
  const c = typescript.scan(buf, start, end)
  return c === null ? null : { ...c, chainAt: typescript.chainAt, checkpoint: typescript.checkpoint }
}

function wasmVerdict(buf: Buffer, start: number, end: number) {
  if (!wasm.scan(buf, start, end)) return null
  const r = wasm.last
  const typeValue = buf.toString('latin1', start + r.typeStart, start + r.typeEnd)
  return {
    seq: r.seq,
    prev: buf.toString('latin1', start + r.prevAt, start + r.prevAt + 64),
    hash: buf.toString('latin1', start + r.hashAt, start + r.hashAt + 64),
    chainAt: start + r.chainAt,
    checkpoint: typeValue === '"checkpoint"',
  }
}

/** Fails unless the WebAssembly verdict is "not accepted" or exactly the TypeScript one. */
function agree(buf: Buffer, start = 0, end = buf.length): boolean {
  const w = wasmVerdict(buf, start, end)
  if (w === null) return true
  const s = typescriptVerdict(buf, start, end)
  if (s === null || JSON.stringify(w) !== JSON.stringify(s)) throw new Error(`wasm accepted ${JSON.stringify(w)}, typescript says ${JSON.stringify(s)}: ${buf.toString('utf8', start, end).slice(0, 300)}`)
  return true
}

t.test('the embedded module was built from the committed C source (scripts/build-wasm.sh)', async (t) => {
  const source = readFileSync(new URL('../../src/ledger/wasm/canonical-scan.c', import.meta.url))
  t.equal(createHash('sha256').update(source).digest('hex'), CANONICAL_SCAN_SOURCE_SHA256, 'rebuild with scripts/build-wasm.sh after changing canonical-scan.c')
})

t.test('it accepts the records the proxy writes, with the fields the TypeScript scanner reads', async (t) => {
  const texts = ['SELECT 1', "SELECT 'é€😀\ttab\n\"q\"\\' AS x", 'SELECT $1::text', 'x'.repeat(100_000)]
  const bodies: AuditRecordBody[] = [...bodiesOfEveryType(), ...texts.map((x) => statement('SELECT', x) as unknown as AuditRecordBody)]
  const chain = new AuditChain()
  let n = 0
  for (const b of bodies) {
    const line = Buffer.from(chain.seal(b).line, 'utf8')
    // Inside a larger buffer, as verify hands lines over: offsets are relative to the buffer.
    const buf = Buffer.concat([Buffer.from('junk\n'), line, Buffer.from('\n{"more":1}')])
    t.ok(wasm.scan(buf, 5, 5 + line.length), `accepted: ${(b as { type: string }).type}`)
    agree(buf, 5, 5 + line.length)
    n++
  }
  const cp = chain.seal(checkpointRecord(proxy, { seq: 3, hash: 'a'.repeat(64), time: '2026-12-03T00:00:00.000000Z', instance: 'pgw-test', key_id: 'k1', jws: 'e30..c2ln' }) as unknown as AuditRecordBody)
  const line = Buffer.from(cp.line)
  t.ok(wasm.scan(line, 0, line.length))
  t.equal(wasmVerdict(line, 0, line.length)!.checkpoint, true, 'a checkpoint is told apart')
  t.ok(n > 5)
})

t.test('a line longer than its memory: the module grows and scans it', async (t) => {
  const line = Buffer.from(new AuditChain().seal(statement('SELECT', 'SELECT ' + "'é€😀'||".repeat(300_000) + "''") as unknown as AuditRecordBody).line)
  t.ok(line.length > 3_000_000)
  t.ok(wasm.scan(line, 0, line.length))
  t.ok(agree(line))
  // And a small one after it, in the grown memory.
  const small = Buffer.from(new AuditChain().seal(statement('SELECT', 'SELECT 2') as unknown as AuditRecordBody).line)
  t.ok(wasm.scan(small, 0, small.length))
})

t.test('random canonical records: whatever it accepts, the TypeScript scanner accepts alike', async (t) => {
  let accepted = 0
  fc.assert(
    fc.property(randomBody, fc.integer({ min: 0, max: 1e6 }), (b, seq) => {
      const line = Buffer.from(new AuditChain({ seq, hash: 'f'.repeat(64) }).seal(b as unknown as AuditRecordBody).line, 'utf8')
      if (wasm.scan(line, 0, line.length)) accepted++
      return agree(line)
    }),
    { numRuns: 3000 },
  )
  // The generator's names are mostly escapes and non-ASCII (left to TypeScript); the plain ones must still be taken.
  t.ok(accepted > 100, `${accepted} of 3000 accepted by the WebAssembly scanner`)
})

t.test('random byte edits of canonical lines: it never accepts what the TypeScript scanner refuses', async (t) => {
  let accepted = 0
  fc.assert(
    fc.property(randomBody, byteEdits, (b, edits) => {
      const buf = editedLine(new AuditChain().seal(b as unknown as AuditRecordBody).line, edits)
      if (wasm.scan(buf, 0, buf.length)) accepted++
      return agree(buf)
    }),
    { numRuns: 8000 },
  )
  t.pass(`${accepted} mutants accepted, all agreeing`)
})

t.test('hand-made edge cases agree', async (t) => {
  const chain = `"chain":{"hash":"${'a'.repeat(64)}","prev":"${'b'.repeat(64)}","seq":7}`
  const cases = [
    `{${chain}}`,
    `{"a":-0,${chain}}`, `{"a":0,${chain}}`, `{"a":-1,${chain}}`, `{"a":01,${chain}}`, `{"a":1.5,${chain}}`, `{"a":1e21,${chain}}`,
    `{"a":123456789012345,${chain}}`, `{"a":1234567890123456,${chain}}`,
    `{"a":"\\u001f",${chain}}`, `{"a":"\\u000a",${chain}}`, `{"a":"\\u001F",${chain}}`, `{"a":"\\/",${chain}}`,
    `{"b":1,"a":2,${chain}}`, `{"a":1,"a":2,${chain}}`, `{"a":1,"ab":2,${chain}}`,
    `{${chain},"type":"checkpoint"}`, `{${chain},"type":"checkpoints"}`, `{${chain},"type":1}`,
    `{${chain.replace('"seq":7', '"seq":07')}}`, `{${chain.replace('"seq":7', '"seq":1234567890123456')}}`,
    `{"chain":"x"}`, `{}`, `[]`, `{${chain}} `, `{${chain}}x`, `{"a":[${'['.repeat(250)}${']'.repeat(250)}],${chain}}`,
    `{"a":"\xed\xa0\x80",${chain}}`, `{"a":"\xc0\xaf",${chain}}`, `{"a":"\xf4\x90\x80\x80",${chain}}`, `{"a":"\xe2\x82",${chain}}`,
  ]
  for (const c of cases) {
    const buf = Buffer.from(c, c.includes('\xed') || c.includes('\xc0') || c.includes('\xf4') || c.includes('\xe2') ? 'latin1' : 'utf8')
    t.ok(agree(buf), c.slice(0, 60))
  }
  t.ok(wasm.scan(Buffer.from(`{"a":-1,${chain}}`), 0, 8 + chain.length + 1), 'a plain negative integer is accepted')
})

t.test('scanFacts finds each field where JSON.parse finds it, in records of every type and random statements', async (t) => {
  const chain = new AuditChain()
  const texts = fc.sample(fc.string({ unit: fc.constantFrom('a', ' ', '"', '\\', '\n', 'é', '😀', ','), maxLength: 40 }), 50)
  const bodies: AuditRecordBody[] = [...bodiesOfEveryType(), ...texts.map((x, i) => statement(i % 2 ? 'SELECT' : 'DELETE', x, { rows: i * 1000, status: i % 3 ? 'ok' : 'error' }, i % 2 ? ['READ'] : ['WRITE', 'DDL']) as unknown as AuditRecordBody)]
  let fields = 0
  for (const b of bodies) {
    const line = Buffer.concat([Buffer.from('x\n'), Buffer.from(chain.seal(b).line, 'utf8')])
    if (!wasm.scanFacts(line, 2, line.length)) return t.fail(`not accepted: ${line.toString().slice(0, 200)}`)
    const rec = JSON.parse(line.toString('utf8', 2)) as Record<string, unknown>
    FACT_SLOT_NAMES.forEach((name, slot) => {
      if (name === null) return
      const [parent, child] = name.includes('.') ? name.split('.') : [null, name]
      const holder = parent === null ? rec : (rec[parent!] as Record<string, unknown> | undefined)
      const expected = holder !== null && typeof holder === 'object' ? holder[child!] : undefined
      const [vs, ve] = [wasm.facts[2 * slot]!, wasm.facts[2 * slot + 1]!]
      if (expected === undefined) {
        if (ve !== 0) t.fail(`${name}: found where the record has none`)
        return
      }
      fields++
      const got = JSON.parse(line.toString('utf8', 2 + vs, 2 + ve)) as unknown
      if (JSON.stringify(got) !== JSON.stringify(expected)) t.fail(`${name}: ${JSON.stringify(got)} where the record has ${JSON.stringify(expected)}`)
    })
  }
  t.ok(fields > 500, `${fields} fields found, all equal to the parsed record's`)
})
