/** Server ParameterStatus pairs are shared between connections, and never wrong for those that are not. */
import fc from 'fast-check'
import t from 'tap'
import { parameterPair } from '../../src/upstream/parameter-pairs.js'

t.test('the same name and value give the same frozen pair', async (t) => {
  const a = parameterPair('DateStyle', 'ISO, MDY')
  const b = parameterPair('DateStyle', 'ISO, MDY')
  t.equal(a, b, 'one pair shared')
  t.ok(Object.isFrozen(a), 'frozen: no connection can change another one\'s')
  t.same([...a], ['DateStyle', 'ISO, MDY'])
  t.not(parameterPair('DateStyle', 'German, DMY'), a, 'another value, another pair')
  // The separator cannot make two different pairs one.
  t.not(parameterPair('a\u0000b', 'c'), parameterPair('a', 'b\u0000c'))
})

t.test('any name and value come back as given, past the shared table\'s bound too', async (t) => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.string(), fc.string()), { minLength: 1, maxLength: 1500 }), (pairs) => {
      for (const [name, value] of pairs) {
        const p = parameterPair(name, value)
        if (p[0] !== name || p[1] !== value || p.length !== 2) return false
      }
      return true
    }),
    { numRuns: 20 },
  )
})
