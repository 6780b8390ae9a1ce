/** formatMicros against a plain Date-based reference, over interleaved instants (its per-second cache has two slots). */
import fc from 'fast-check'
import t from 'tap'
import { formatEpochSeconds, formatMicros } from '../../src/util/time.js'

function reference(us: number): string {
  const ms = Math.floor(us / 1000)
  return new Date(ms).toISOString().slice(0, 23) + String(us - ms * 1000).padStart(3, '0') + 'Z'
}

t.test('formatMicros is RFC 3339 UTC with six fractional digits, whatever order instants come in', async (t) => {
  const base = 1_795_000_000_000_000
  const instant = fc.oneof(
    fc.integer({ min: 0, max: 4_102_444_800_000_000 }), // 1970 .. 2100
    fc.integer({ min: base, max: base + 3_000_000 }), // a few seconds: the cache's slots in play
  )
  fc.assert(fc.property(fc.array(instant, { minLength: 1, maxLength: 50 }), (xs) => {
    for (const us of xs) if (formatMicros(us) !== reference(us)) return false
    return true
  }), { numRuns: 2000 })
  t.equal(formatMicros(base), '2026-11-18T11:06:40.000000Z')
  t.equal(formatMicros(base + 999_999), '2026-11-18T11:06:40.999999Z')
  t.equal(formatMicros(base + 1_000_001), '2026-11-18T11:06:41.000001Z')
  t.equal(formatEpochSeconds(1_795_000_000.5), '2026-11-18T11:06:40.500000Z')
})
