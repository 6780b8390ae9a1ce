import t from 'tap'
import fc from 'fast-check'
import { uuidv7 } from '../../src/util/ids.js'

const FORMAT = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

/** The 48-bit millisecond time an id carries. */
const msOf = (id: string) => parseInt(id.slice(0, 8) + id.slice(9, 13), 16)
/** The 12-bit counter in rand_a. */
const counterOf = (id: string) => parseInt(id.slice(15, 18), 16)

t.test('ids are RFC 9562 version 7, carry the time, and increase strictly in the order they are made', (t) => {
  // The generator's state lives across runs, as it does in the proxy: so does the oracle's.
  let now = Date.now() + 10_000_000
  let last = ''
  let lastMs = 0
  fc.assert(
    fc.property(fc.array(fc.integer({ min: -5, max: 5 }), { minLength: 1, maxLength: 60 }), (steps) => {
      for (const step of steps) {
        now += step
        const id = uuidv7(now)
        if (!FORMAT.test(id)) throw new Error(`not a UUIDv7: ${id}`)
        if (id <= last) throw new Error(`${id} does not sort after ${last}`)
        const ms = msOf(id)
        // A clock that went back keeps the last millisecond (and counts on); otherwise the id carries the clock.
        const expected = Math.max(now, lastMs)
        if (ms !== expected) throw new Error(`${id} carries ${ms}, not ${expected}`)
        if (ms === lastMs && counterOf(id) !== counterOf(last) + 1) throw new Error(`${id}: counter does not follow ${last}`)
        last = id
        lastMs = ms
      }
    }),
    { numRuns: 200 },
  )
  t.end()
})

t.test('the counter borrows the next millisecond when 4096 ids share one', (t) => {
  const now = Date.now() + 50_000_000
  const ids = Array.from({ length: 4097 }, () => uuidv7(now))
  t.equal(msOf(ids[0]!), now)
  t.equal(counterOf(ids[4095]!), 4095)
  t.equal(msOf(ids[4096]!), now + 1, 'the 4097th id moves on a millisecond')
  t.equal(counterOf(ids[4096]!), 0)
  t.equal(new Set(ids).size, ids.length, 'all distinct')
  t.end()
})

t.test('the random bits differ between ids', (t) => {
  const a = uuidv7()
  const b = uuidv7()
  t.not(a.slice(19), b.slice(19))
  t.end()
})
