/** canonicalString's fast path (no escape, no surrogate) says exactly what JSON.stringify says, and lone surrogates are still refused. */
import fc from 'fast-check'
import t from 'tap'
import { canonicalString, CanonicalJsonError } from '../../src/ledger/canonical-json.js'

const tricky = fc.constantFrom('"', '\\', '\u0000', '\u001f', '\u007f', '\u2028', '\u2029', '\ud800', '\udfff', '\ud83d\ude00', 'é', '€', '/', ' ', 'a')
const strings = fc.oneof(fc.string(), fc.string({ unit: 'grapheme' }), fc.array(tricky).map((a) => a.join('')), fc.string({ unit: 'binary' }))

t.test('canonicalString is JSON.stringify for well-formed strings and refuses lone surrogates', async (t) => {
  fc.assert(fc.property(strings, (s) => {
    if (!(s as unknown as { isWellFormed(): boolean }).isWellFormed()) {
      try {
        canonicalString(s)
        return false
      } catch (err) {
        return err instanceof CanonicalJsonError
      }
    }
    return canonicalString(s) === JSON.stringify(s)
  }), { numRuns: 20000 })
  t.equal(canonicalString('SELECT "a" FROM t'), '"SELECT \\"a\\" FROM t"')
  t.equal(canonicalString('a\u2028b'), '"a\u2028b"', 'U+2028 is not escaped (JSON.stringify does not)')
  t.throws(() => canonicalString('x\udc00'), CanonicalJsonError)
})
