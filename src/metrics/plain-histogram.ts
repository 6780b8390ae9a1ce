import type { Registry } from 'prom-client'

/** One exported sample, in the shape prom-client's Registry formats (what its own Histogram.get() returns). */
interface Sample {
  labels: Record<string, string | number>
  value: number
  metricName: string
}

/**
 * A histogram without labels, observed on the hot path (once per statement)
 * without allocating: prom-client's Histogram.observe makes a closure, a
 * label object and a hash per call. Counts live in a typed array and are
 * turned into prom-client's metric shape only when /metrics is scraped, so
 * the exposition is the same as a prom-client Histogram's. A non-finite
 * value is not counted (prom-client throws, which on this path would end
 * the session as if the audit log had refused its record).
 */
export class PlainHistogram {
  readonly type = 'histogram'
  /** Per bucket (not cumulative); the last one is +Inf. */
  private readonly counts: Float64Array
  private sum = 0
  private count = 0

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: readonly number[],
    registers: Registry[],
  ) {
    this.counts = new Float64Array(bounds.length + 1)
    for (const r of registers) r.registerMetric(this as never)
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) return
    const b = this.bounds
    let i = 0
    while (i < b.length && value > b[i]!) i++
    this.counts[i]!++
    this.sum += value
    this.count++
  }

  /** What prom-client's Registry reads at scrape time. */
  get(): { name: string; help: string; type: string; values: Sample[]; aggregator: string } {
    const values: Sample[] = []
    const bucket = `${this.name}_bucket`
    let acc = 0
    for (let i = 0; i < this.bounds.length; i++) {
      acc += this.counts[i]!
      values.push({ labels: { le: this.bounds[i]! }, value: acc, metricName: bucket })
    }
    values.push(
      { labels: { le: '+Inf' }, value: this.count, metricName: bucket },
      { labels: {}, value: this.sum, metricName: `${this.name}_sum` },
      { labels: {}, value: this.count, metricName: `${this.name}_count` },
    )
    return { name: this.name, help: this.help, type: this.type, values, aggregator: 'sum' }
  }

  reset(): void {
    this.counts.fill(0)
    this.sum = 0
    this.count = 0
  }
}
