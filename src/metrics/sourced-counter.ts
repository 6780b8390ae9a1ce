import { Counter, type LabelValues, type Registry } from 'prom-client'

/**
 * A counter fed at scrape time from monotonic numbers kept elsewhere: each
 * collect adds what grew since the last one. A series appears (at 0) the
 * first time its source reports it.
 */
export function sourcedCounter<L extends string>(o: {
  name: string
  help: string
  labelNames: readonly L[]
  registers: Registry[]
  read(emit: (labels: LabelValues<L>, value: number) => void): void
}): Counter<L> {
  const reported = new Map<string, number>()
  const counter: Counter<L> = new Counter<L>({
    name: o.name,
    help: o.help,
    labelNames: o.labelNames,
    registers: o.registers,
    collect: () => {
      o.read((labels, value) => {
        const key = o.labelNames.map((n) => String(labels[n] ?? '')).join('\0')
        const before = reported.get(key)
        if (before === undefined || value > before) {
          // A source that went backwards (never expected) is not reported as a decrease.
          counter.inc(labels, before === undefined ? value : value - before)
          reported.set(key, value)
        }
      })
    },
  })
  return counter
}
