/**
 * statementOwnMemberTexts serializes a statement record's own members from
 * known names and per-statement cached parts: it must give exactly
 * canonicalMembers(own) (RFC 8785) for every record statementOwnMembers
 * builds, including when one statement's objects array comes back with other
 * facts (the cache is keyed by it), and refuse what is not I-JSON as
 * canonicalMembers does.
 */
import fc from 'fast-check'
import t from 'tap'
import { canonicalMembers, CanonicalJsonError } from '../../src/ledger/canonical-json.js'
import { statementOwnMemberTexts } from '../../src/ledger/statement-members.js'
import { statementOwnMembers } from '../../src/evidence/records.js'
import type { ObservedStatement } from '../../src/evidence/observed.js'

const text = fc.oneof(fc.string({ maxLength: 12 }), fc.string({ unit: 'binary', maxLength: 12 }), fc.constantFrom('SELECT 1', 'x"y\\z\n', 'ünï 𝄞', '\u0000\u001f\u007f'))
const nullableText = fc.option(text, { nil: null })
const count = fc.oneof(fc.nat(), fc.integer({ min: -5, max: 5 }), fc.constantFrom(0, 2 ** 53 - 1, 1e21, 1.5))
const objectsArb = fc.array(fc.record({ type: fc.constantFrom('table', 'view', 'function'), schema: nullableText, name: text }), { maxLength: 3 })
const classesArb = fc.array(fc.constantFrom('READ', 'WRITE', 'DDL', 'ROLE', 'TCL', 'MISC'), { maxLength: 3 })
const parameter = fc.oneof(
  fc.constant(null),
  fc.record({ format: fc.constant('text' as const), value: text }, { requiredKeys: ['format', 'value'] }),
  // Each optional member present or not on its own (recordParameters adds raw_base64 alone for an inexact decoding).
  fc.record({ format: fc.constant('text' as const), value: text, truncated: fc.constant(true as const), length: fc.nat(), raw_base64: fc.base64String() }, { requiredKeys: ['format', 'value'] }),
  fc.record({ format: fc.constant('binary' as const), base64: fc.base64String() }),
  fc.record({ format: fc.constant('hmac' as const), hmac_sha256: fc.string({ unit: fc.constantFrom(...'0123456789abcdef') }), length: fc.nat() }),
)
const parametersArb = fc.oneof(fc.constant(null), fc.record({ count: fc.nat() }), fc.array(parameter, { maxLength: 3 }))
const hit = fc.record({ rule: text, statement_rule: text, matched: text })
const policyArb = fc.option(fc.record({ denied_by: hit, would_deny: fc.array(hit, { maxLength: 2 }), claims: fc.dictionary(text, fc.jsonValue({ maxDepth: 1 })) }, { requiredKeys: [] }), { nil: null })

function statementArb(objects: fc.Arbitrary<ObservedStatement['objects']>, classes: fc.Arbitrary<readonly string[]>): fc.Arbitrary<ObservedStatement> {
  return fc.record({
    key: fc.nat(), seq: fc.integer({ min: 1, max: 2 ** 40 }), protocol: fc.constantFrom('simple', 'extended', 'function_call') as fc.Arbitrary<ObservedStatement['protocol']>,
    text: nullableText, textTruncated: fc.boolean(), parameters: parametersArb as fc.Arbitrary<ObservedStatement['parameters']>,
    preparedName: nullableText, portal: nullableText, functionOid: fc.option(fc.nat(), { nil: null }), command: text,
    classes, objects, node: fc.constant(null), split: fc.constantFrom('parser', 'server') as fc.Arbitrary<'parser' | 'server'>,
    inTransaction: fc.boolean(), transaction: fc.record({ number: fc.nat(), kind: fc.constantFrom('autocommit', 'implicit', 'explicit', 'unknown') }) as fc.Arbitrary<ObservedStatement['transaction']>,
    governedSettingChanged: fc.boolean(), status: fc.constantFrom('ok', 'error', 'cancelled', 'denied', 'unknown') as fc.Arbitrary<ObservedStatement['status']>,
    commandTag: nullableText, rows: fc.option(count, { nil: null }), suspended: fc.boolean(), portalRows: fc.option(count, { nil: null }),
    sqlstate: nullableText, message: nullableText, startedAtUs: fc.integer({ min: 0, max: 4102444800000000 }), durationUs: fc.option(count, { nil: null }),
    textOrigin: fc.option(fc.record({ encoding: fc.option(text, { nil: undefined }), raw: fc.option(fc.base64String(), { nil: undefined }) }), { nil: null }),
    policy: policyArb as fc.Arbitrary<ObservedStatement['policy']>,
  }) as fc.Arbitrary<ObservedStatement>
}

/** canonicalMembers(own), or 'refused' when it throws CanonicalJsonError; likewise for the fast path. */
function serialized(f: () => Array<[string, string]>): Array<[string, string]> | 'refused' {
  try {
    return f()
  } catch (err) {
    if (err instanceof CanonicalJsonError) return 'refused'
    throw err
  }
}

t.test('statementOwnMemberTexts(own) is canonicalMembers(own) for generated statements', async (t) => {
  fc.assert(fc.property(statementArb(objectsArb, classesArb), (s) => {
    const own = statementOwnMembers(s)
    t.same(serialized(() => statementOwnMemberTexts(own)), serialized(() => canonicalMembers(own as unknown as Record<string, unknown>)))
  }), { numRuns: 3000 })
})

t.test('executions sharing one objects array (the cache key) with other facts each get their own text', async (t) => {
  // One array, as the classifier's cache hands it out, reused by a statement that differs from the last in one fact only.
  const objects = [{ type: 'table', schema: 'public', name: 'accounts' }]
  const facts = ['classes', 'command', 'functionOid', 'governedSettingChanged', 'preparedName', 'protocol', 'split', 'text', 'textOrigin', 'textTruncated'] as const
  let checked = 0
  fc.assert(fc.property(statementArb(fc.constant(objects), classesArb), statementArb(fc.constant(objects), classesArb), (a, b) => {
    for (const f of facts) {
      for (const s of [a, { ...a, [f]: b[f] }]) {
        const own = statementOwnMembers(s)
        const fast = serialized(() => statementOwnMemberTexts(own))
        const slow = serialized(() => canonicalMembers(own as unknown as Record<string, unknown>))
        if (JSON.stringify(fast) !== JSON.stringify(slow)) t.same(fast, slow, `after a statement differing in ${f}`)
        checked++
      }
    }
  }), { numRuns: 300 })
  t.equal(checked, 300 * 10 * 2, 'every fact varied alone')
})

t.test('a lone surrogate anywhere is refused, as canonicalMembers refuses it', async (t) => {
  const base = fc.sample(statementArb(objectsArb, classesArb), { numRuns: 1, seed: 7 })[0]!
  const lone = 'a\ud800'
  const cases: Array<Partial<ObservedStatement>> = [
    { text: lone }, { command: lone }, { message: lone }, { portal: lone }, { preparedName: lone },
    { parameters: [{ format: 'text', value: lone }] }, { objects: [{ type: 'table', schema: null, name: lone }] },
  ]
  for (const c of cases) {
    const own = statementOwnMembers({ ...base, ...c })
    t.throws(() => statementOwnMemberTexts(own), CanonicalJsonError, Object.keys(c)[0])
    t.throws(() => canonicalMembers(own as unknown as Record<string, unknown>), CanonicalJsonError)
  }
})
