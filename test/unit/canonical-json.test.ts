/**
 * src/ledger/canonical-json.ts against RFC 8785 (JSON Canonicalization
 * Scheme): the RFC's own examples and its Appendix B number table, and the
 * test data of the RFC author's reference implementations
 * (cyberphone/json-canonicalization testdata: arrays, french, structures,
 * unicode, values, weird — input text and expected output).
 */
import fc from 'fast-check'
import t from 'tap'
import { canonicalize, CanonicalJsonError, toIJson, deepFreeze } from '../../src/ledger/canonical-json.js'

/** A double from its IEEE 754 bits, as the RFC's table gives them. */
function fromBits(hex: string): number {
  const v = new DataView(new ArrayBuffer(8))
  v.setBigUint64(0, BigInt('0x' + hex))
  return v.getFloat64(0)
}

t.test('RFC 8785 §3.2.2 example: numbers, string escapes, literals', async (t) => {
  const input = String.raw`{
    "numbers": [333333333.33333329, 1E30, 4.50,
                2e-3, 0.000000000000000000000000001],
    "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
    "literals": [null, true, false]
  }`
  t.equal(
    canonicalize(JSON.parse(input)),
    String.raw`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`,
  )
})

t.test('RFC 8785 §3.2.3 example: member names sorted by UTF-16 code units', async (t) => {
  const input = String.raw`{
    "\u20ac": "Euro Sign",
    "\r": "Carriage Return",
    "\ufb33": "Hebrew Letter Dalet With Dagesh",
    "1": "One",
    "\ud83d\ude00": "Emoji: Grinning Face",
    "\u0080": "Control",
    "\u00f6": "Latin Small Letter O With Diaeresis"
  }`
  const out = canonicalize(JSON.parse(input))
  t.equal(
    out,
    '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",' +
      '"\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
  )
  // The emoji (a surrogate pair, D83D DE00) sorts before U+FB33 although its code point is higher.
  t.ok(out.indexOf('\ud83d\ude00') < out.indexOf('\ufb33'), 'UTF-16 order, not code point order')
})

// cyberphone/json-canonicalization testdata/input/*.json → testdata/output/*.json
const TESTDATA: Record<string, [input: string, expected: string]> = {
  arrays: ['[\n  56,\n  {\n    "d": true,\n    "10": null,\n    "1": [ ]\n  }\n]', '[56,{"1":[],"10":null,"d":true}]'],
  french: [
    '{\n  "peach": "This sorting order",\n  "péché": "is wrong according to French",\n  "pêche": "but canonicalization MUST",\n  "sin":   "ingnore locale"\n}\n',
    '{"peach":"This sorting order","péché":"is wrong according to French","pêche":"but canonicalization MUST","sin":"ingnore locale"}',
  ],
  structures: [
    '{\n  "1": {"f": {"f": "hi","F": 5} ,"\\n": 56.0},\n  "10": { },\n  "": "empty",\n  "a": { },\n  "111": [ { } ],\n  "A": { }\n}',
    '{"":"empty","1":{"\\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{}],"A":{},"a":{}}',
  ],
  unicode: ['{\n  "Unnormalized Unicode":"\\u1e0d\\u0307"\n}\n', '{"Unnormalized Unicode":"\u1e0d\u0307"}'],
  values: [
    '{\n  "numbers": [1E30, 4.50, 333333333.33333329, 2e-3, 0.000000000000000000000000001],\n  "escaping": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",\n  "literals": [null, true, false]\n}',
    '{"escaping":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/","literals":[null,true,false],"numbers":[1e+30,4.5,333333333.3333333,0.002,1e-27]}',
  ],
  weird: [
    '{\n  "\\u20ac": "Euro Sign",\n  "1": "One",\n  "\\u0080": "Control\\u007f",\n  "\\ud83d\\ude02": "Smiley",\n  "\\u00f6": "Latin Small Letter O With Diaeresis",\n  "\\ufb33": "Hebrew Letter Dalet With Dagesh",\n  "</script>": "Browser Challenge"\n}\n',
    '{"1":"One","</script>":"Browser Challenge","\u0080":"Control\u007f","ö":"Latin Small Letter O With Diaeresis","€":"Euro Sign","\ud83d\ude02":"Smiley","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
  ],
}

t.test('RFC 8785 reference test data (input → output)', async (t) => {
  for (const [name, [input, expected]] of Object.entries(TESTDATA)) {
    t.equal(canonicalize(JSON.parse(input)), expected, name)
    // Canonical output is a fixed point.
    t.equal(canonicalize(JSON.parse(expected)), expected, `${name}: canonical output is canonical`)
  }
  // values.json as UTF-8 bytes (the RFC's hex dump of the §3.2.2 sample starts 7b 22 65 73 63 61 70 69 6e 67 22 3a 22 e2 82 ac).
  const bytes = Buffer.from(canonicalize(JSON.parse(TESTDATA.values![0])), 'utf8')
  t.equal(bytes.subarray(0, 16).toString('hex'), '7b226573636170696e67223a22e282ac')
})

// RFC 8785 Appendix B: IEEE 754 bit patterns and their serialization.
const APPENDIX_B: Array<[bits: string, expected: string]> = [
  ['0000000000000000', '0'],
  ['8000000000000000', '0'], // minus zero
  ['0000000000000001', '5e-324'],
  ['8000000000000001', '-5e-324'],
  ['7fefffffffffffff', '1.7976931348623157e+308'],
  ['ffefffffffffffff', '-1.7976931348623157e+308'],
  ['4340000000000000', '9007199254740992'],
  ['c340000000000000', '-9007199254740992'],
  ['4430000000000000', '295147905179352830000'],
  ['44b52d02c7e14af5', '9.999999999999997e+22'],
  ['44b52d02c7e14af6', '1e+23'],
  ['44b52d02c7e14af7', '1.0000000000000001e+23'],
  ['444b1ae4d6e2ef4e', '999999999999999700000'],
  ['444b1ae4d6e2ef4f', '999999999999999900000'],
  ['444b1ae4d6e2ef50', '1e+21'],
  ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7'],
  ['3eb0c6f7a0b5ed8d', '0.000001'],
  ['41b3de4355555553', '333333333.3333332'],
  ['41b3de4355555554', '333333333.33333325'],
  ['41b3de4355555555', '333333333.3333333'],
  ['41b3de4355555556', '333333333.3333334'],
  ['41b3de4355555557', '333333333.33333343'],
  ['becbf647612f3696', '-0.0000033333333333333333'],
  ['43143ff3c1cb0959', '1424953923781206.2'], // round to even
]

t.test('RFC 8785 Appendix B number serialization', async (t) => {
  for (const [bits, expected] of APPENDIX_B) {
    t.equal(canonicalize(fromBits(bits)), expected, `${bits} → ${expected}`)
    t.equal(canonicalize([fromBits(bits)]), `[${expected}]`, `${bits} inside an array`)
  }
  // NaN and Infinity (7fffffffffffffff, 7ff0000000000000) are not JSON numbers.
  for (const bits of ['7fffffffffffffff', '7ff0000000000000', 'fff0000000000000']) {
    t.throws(() => canonicalize(fromBits(bits)), CanonicalJsonError, `${bits} is refused`)
    t.throws(() => canonicalize({ a: fromBits(bits) }), CanonicalJsonError, `${bits} in an object is refused`)
  }
})

t.test('number forms from JSON text', async (t) => {
  const cases: Array<[string, string]> = [
    ['1e21', '1e+21'],
    ['1e20', '100000000000000000000'],
    ['-0', '0'],
    ['-0.0', '0'],
    ['333333333.33333329', '333333333.3333333'],
    ['1E30', '1e+30'],
    ['4.50', '4.5'],
    ['2e-3', '0.002'],
    ['0.000001', '0.000001'],
    ['1e-7', '1e-7'],
    ['0.0000001', '1e-7'],
    ['1.5e-7', '1.5e-7'],
    ['56.0', '56'],
    ['-1', '-1'],
    ['123456789012345680000', '123456789012345680000'],
    ['0.1', '0.1'],
    ['1e-27', '1e-27'],
  ]
  for (const [text, expected] of cases) t.equal(canonicalize(JSON.parse(text)), expected, `${text} → ${expected}`)
})

t.test('strings: only the mandatory escapes, lowercase hex; lone surrogates refused', async (t) => {
  t.equal(canonicalize('\u0000\u0001\u0008\u0009\u000a\u000b\u000c\u000d\u001f "\\/\u007f\u2028'), '"\\u0000\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f \\"\\\\/\u007f\u2028"')
  t.equal(canonicalize('\ud83d\ude00'), '"\ud83d\ude00"', 'a surrogate pair is one character, written as is')
  t.throws(() => canonicalize('\ud800'), CanonicalJsonError, 'lone high surrogate')
  t.throws(() => canonicalize('a\udc00b'), CanonicalJsonError, 'lone low surrogate')
  t.throws(() => canonicalize({ '\udfff': 1 }), CanonicalJsonError, 'lone surrogate in a member name')
  t.throws(() => canonicalize(10n), CanonicalJsonError, 'bigint')
  t.throws(() => canonicalize(undefined), CanonicalJsonError, 'undefined at the top')
})

t.test('values without a JSON representation are treated as JSON.stringify treats them', async (t) => {
  const v = { b: undefined, a: [undefined, () => 1, 1], d: new Date(0), c: { toJSON: () => 'x' } }
  t.equal(canonicalize(v), '{"a":[null,null,1],"c":"x","d":"1970-01-01T00:00:00.000Z"}')
  t.equal(canonicalize(v), canonicalize(JSON.parse(JSON.stringify(v))))
})

t.test('toIJson makes outside data canonicalizable', async (t) => {
  const v = toIJson({ s: 'a\ud800b', n: [NaN, Infinity, 1], k: { '\udc00': 1 }, u: undefined })
  t.same(v, { s: 'a\ufffdb', n: [null, null, 1], k: { '\ufffd': 1 } })
  t.equal(canonicalize(v), '{"k":{"\ufffd":1},"n":[null,null,1],"s":"a\ufffdb"}')
})

const interestingChar = fc.constantFrom('a', 'B', '1', '9', '0', ' ', '"', '\\', '/', '\n', '\u0000', '\u001f', '\u007f', '\u0080', 'é', '€', '\u2028', '\ufb33', '\ud83d\ude00', '\ud83d\ude02')
const jsonValue = fc.jsonValue({ maxDepth: 4, stringUnit: interestingChar })

t.test('property: canonical output is a fixed point and agrees with JSON.stringify round trips', async (t) => {
  fc.assert(
    fc.property(jsonValue, (v) => {
      const c = canonicalize(v)
      if (canonicalize(JSON.parse(c)) !== c) throw new Error('not a fixed point')
      if (canonicalize(JSON.parse(JSON.stringify(v))) !== c) throw new Error('differs from the JSON.stringify round trip')
      return true
    }),
    { numRuns: 2000 },
  )
  t.pass('2000 random JSON values')
})

t.test('property: member names come out in UTF-16 code unit order', async (t) => {
  fc.assert(
    fc.property(fc.dictionary(fc.string({ unit: interestingChar, maxLength: 4 }), fc.integer()), (d) => {
      const c = canonicalize(d)
      // Re-read the names in the order they appear in the text (a streaming read: JSON.parse would reorder integer-like names).
      const names = [...c.matchAll(/(?<=[{,])"((?:[^"\\]|\\.)*)":/g)].map((m) => JSON.parse(`"${m[1]}"`) as string)
      const sorted = [...names].sort()
      return names.length === Object.keys(d).length && names.every((n, i) => n === sorted[i])
    }),
    { numRuns: 2000 },
  )
  t.pass('2000 random objects')
})

t.test('frozen values serialize as their values; deepFreeze freezes deeply; mutable ones are read afresh', async (t) => {
  const identity = deepFreeze({ subject: 'spiffe://x/a', claims: { groups: ['dba', 'ops'], n: 1.5 } })
  const first = canonicalize({ identity, n: 1 })
  t.equal(canonicalize({ identity, n: 1 }), first, 'same text again')
  t.equal(canonicalize(identity), '{"claims":{"groups":["dba","ops"],"n":1.5},"subject":"spiffe://x/a"}')
  t.ok(Object.isFrozen(identity.claims.groups), 'deepFreeze freezes nested values too')
  const open = { a: 1 }
  t.equal(canonicalize(open), '{"a":1}')
  open.a = 2
  t.equal(canonicalize(open), '{"a":2}', 'a mutable object is serialized afresh')
  t.throws(() => canonicalize(deepFreeze({ s: 'bad \ud800' })), CanonicalJsonError, 'a frozen value outside I-JSON is still refused')
})
