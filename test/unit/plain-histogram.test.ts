/**
 * PlainHistogram (the allocation-free histogram behind the per-statement and
 * per-write metrics) is exposed exactly as prom-client's own Histogram is,
 * for any observations: text exposition and JSON alike.
 */
import t from 'tap'
import fc from 'fast-check'
import { Histogram, Registry } from 'prom-client'
import { PlainHistogram } from '../../src/metrics/plain-histogram.js'
import { STATEMENT_BUCKETS } from '../../src/metrics/registry.js'

const value = fc.oneof(
  fc.constantFrom(...STATEMENT_BUCKETS, 0, 1e-7, 31, 1e9),
  fc.double({ min: 0, max: 60, noNaN: true }),
)

t.test('same exposition as prom-client Histogram', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.array(value, { maxLength: 200 }), async (values) => {
      const theirs = new Registry()
      const ours = new Registry()
      const h = new Histogram({ name: 'x_seconds', help: 'a histogram', buckets: STATEMENT_BUCKETS, registers: [theirs] })
      const p = new PlainHistogram('x_seconds', 'a histogram', STATEMENT_BUCKETS, [ours])
      for (const v of values) {
        h.observe(v)
        p.observe(v)
      }
      const [a, b] = [await theirs.metrics(), await ours.metrics()]
      if (a !== b) throw new Error(`text differs:\n${a}\n---\n${b}`)
      // JSON: the same samples (prom-client adds `exemplar: null` to buckets; no exemplars are kept here).
      const samples = async (r: Registry) => JSON.stringify((await r.getMetricsAsJSON()).map((m) => ({
        ...m, values: m.values.map((v) => ({ metricName: (v as { metricName?: string }).metricName, labels: v.labels, value: v.value })),
      })))
      const [ja, jb] = [await samples(theirs), await samples(ours)]
      if (ja !== jb) throw new Error(`JSON differs:\n${ja}\n---\n${jb}`)
    }),
    { numRuns: 300 },
  )
  t.pass('300 sets of observations exposed alike')
})

t.test('merged into another registry (as /metrics does) and reset', async (t) => {
  const own = new Registry()
  const p = new PlainHistogram('y_seconds', 'another', [0.1, 1], [own])
  p.observe(0.05)
  p.observe(0.5)
  p.observe(5)
  const merged = Registry.merge([own, new Registry()])
  const text = await merged.metrics()
  t.match(text, /^y_seconds_bucket\{le="0.1"\} 1$/m)
  t.match(text, /^y_seconds_bucket\{le="1"\} 2$/m)
  t.match(text, /^y_seconds_bucket\{le="\+Inf"\} 3$/m)
  t.match(text, /^y_seconds_sum 5.55$/m)
  t.match(text, /^y_seconds_count 3$/m)
  p.reset()
  t.match(await merged.metrics(), /^y_seconds_count 0$/m)
})
