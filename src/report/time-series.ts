/**
 * Counts over time for the charts, in bounded memory: buckets start one
 * minute wide and double in width (neighbours merged) whenever the period
 * seen would need more than MAX_BUCKETS. Up to MAX_TRACKED series are
 * counted (later ones under "(other)", so many identities cannot grow it
 * without bound); the chart shows the SHOWN - 1 busiest and "(other)".
 */
const MAX_BUCKETS = 120
const MAX_TRACKED = 1_000
const SHOWN = 12
export const OTHER_SERIES = '(other)'

export interface SeriesJson {
  /** Epoch ms of the first bucket's start; null when nothing was counted. */
  start: number | null
  bucketMs: number
  series: Array<{ name: string; total: number; counts: number[] }>
}

export class TimeSeries {
  private start: number | null = null
  private bucketMs = 60_000
  private readonly series = new Map<string, number[]>()

  add(name: string, ms: number): void {
    if (this.start === null) this.start = ms - (ms % this.bucketMs)
    if (ms < this.start) this.extendBack(ms)
    let i = Math.floor((ms - this.start) / this.bucketMs)
    while (i >= MAX_BUCKETS) {
      this.widen()
      i = Math.floor((ms - this.start) / this.bucketMs)
    }
    let counts = this.series.get(name)
    if (counts === undefined) {
      const named = this.series.size - (this.series.has(OTHER_SERIES) ? 1 : 0)
      if (named >= MAX_TRACKED && name !== OTHER_SERIES) return this.add(OTHER_SERIES, ms)
      counts = []
      this.series.set(name, counts)
    }
    counts[i] = (counts[i] ?? 0) + 1
  }

  /** Records are in chain order, which is almost time order: a slightly earlier time shifts the start back. */
  private extendBack(ms: number): void {
    const newStart = ms - (ms % this.bucketMs)
    const shift = Math.ceil((this.start! - newStart) / this.bucketMs)
    for (const [k, c] of this.series) this.series.set(k, [...new Array<number>(shift).fill(0), ...c])
    this.start = this.start! - shift * this.bucketMs
    const longest = Math.max(0, ...[...this.series.values()].map((c) => c.length))
    if (longest > MAX_BUCKETS) this.widen()
  }

  private widen(): void {
    // Align the start to the doubled width so merged buckets stay aligned.
    const wide = this.bucketMs * 2
    const offset = (this.start! % wide) === 0 ? 0 : 1
    for (const [k, c] of this.series) {
      const merged: number[] = []
      for (let i = 0; i < c.length; i++) {
        const j = Math.floor((i + offset) / 2)
        merged[j] = (merged[j] ?? 0) + (c[i] ?? 0)
      }
      this.series.set(k, merged)
    }
    this.start = this.start! - offset * this.bucketMs
    this.bucketMs = wide
  }

  toJSON(): SeriesJson {
    const length = Math.max(0, ...[...this.series.values()].map((c) => c.length))
    const all = [...this.series].map(([name, c]) => {
      const counts = Array.from({ length }, (_, i) => c[i] ?? 0)
      return { name, total: counts.reduce((a, b) => a + b, 0), counts }
    })
    const named = all.filter((x) => x.name !== OTHER_SERIES).sort((a, b) => b.total - a.total || a.name.localeCompare(b.name))
    const other = all.find((x) => x.name === OTHER_SERIES) ?? null
    if (named.length + (other ? 1 : 0) <= SHOWN) return { start: this.start, bucketMs: this.bucketMs, series: other ? [...named, other] : named }
    const rest = named.slice(SHOWN - 1)
    if (other) rest.push(other)
    const merged = { name: OTHER_SERIES, total: 0, counts: new Array<number>(length).fill(0) }
    for (const x of rest) {
      merged.total += x.total
      for (let i = 0; i < length; i++) merged.counts[i]! += x.counts[i]!
    }
    return { start: this.start, bucketMs: this.bucketMs, series: [...named.slice(0, SHOWN - 1), merged] }
  }
}
