/**
 * The verify worker's member stripping (src/report/strip-members.ts): on
 * canonical JSON it must give exactly the record less the members named,
 * whatever the strings hold, and refuse (throw, never loop or read past the
 * line) text that is not a complete object.
 */
import fc from 'fast-check'
import t from 'tap'
import { canonicalize } from '../../src/ledger/canonical-json.js'
import { compileDrops, copyStripped, REPORT_UNUSED, REPORT_UNUSED_MEMBERS, type MemberDrops } from '../../src/report/strip-members.js'
import { bodiesOfEveryType, seal, statement } from '../helpers/sample-records.js'
import type { AuditRecordBody } from '../../src/evidence/types.js'

/** The reference: drop members on the parsed value. */
function dropMembers(value: unknown, drops: MemberDrops): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const rule = drops[k]
    if (rule === 0) continue
    out[k] = rule !== undefined && v !== null && typeof v === 'object' && !Array.isArray(v) ? dropMembers(v, rule) : v
  }
  return out
}

function strip(line: string, drops = REPORT_UNUSED): string {
  const src = Buffer.from(`xx${line}yy`) // the line sits inside a larger buffer, as in a read chunk
  const dst = Buffer.alloc(src.length + 8)
  const end = copyStripped(src, 2, src.length - 2, drops, dst, 3)
  return dst.toString('utf8', 3, end)
}

t.test('records: the report-unused members are gone, the rest is byte for byte the canonical JSON', async (t) => {
  const bodies = [
    ...bodiesOfEveryType(),
    { ...statement('SELECT', 'SELECT "a\\"b" FROM t -- é ✓ \u0001', { rows: 3, status: 'ok' }, ['READ']), time: '2026-11-26T10:00:01.000000Z' },
  ] as AuditRecordBody[]
  for (const { line } of seal(bodies)) {
    const expected = dropMembers(JSON.parse(line), REPORT_UNUSED_MEMBERS)
    const got = strip(line)
    t.equal(got, canonicalize(expected), 'canonical JSON of the record less the members')
    t.notMatch(got, /"prev"|"parameters"|"proxy"|"backend_pid"/)
    t.match(got, /"seq":\d+/)
  }
})

t.test('any canonical object: the same as dropping on the parsed value', async (t) => {
  const key = fc.constantFrom('a', 'b', 'id', 'chain', 'prev', 'x', 'é', 'a"b', 'a\\b')
  const drops: MemberDrops = { a: 0, chain: { prev: 0, x: { b: 0 } }, 'a"b': 0, é: { id: 0 } }
  const spec = compileDrops(drops)
  const json = fc.letrec((tie) => ({
    value: fc.oneof({ depthSize: 'small' }, fc.string({ unit: 'binary' }), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null), tie('array'), tie('object')),
    array: fc.array(tie('value'), { maxLength: 4 }),
    object: fc.dictionary(key, tie('value'), { maxKeys: 6 }),
  }))
  fc.assert(fc.property(json.object, (obj) => {
    const line = canonicalize(obj)
    t.equal(strip(line, spec), canonicalize(dropMembers(JSON.parse(line), drops)))
  }), { numRuns: 500 })
})

t.test('not a complete object: refused, never read past the line', async (t) => {
  for (const bad of ['{"a":"x', '{"a":[1,2', '{"a":1', '{"a":{"b":"\\"}}', '{"chain":{"prev":"p"']) {
    t.throws(() => strip(bad), bad)
  }
  t.throws(() => strip('{"a":1}{"b":2}'), /not at the end of the line/)
})
