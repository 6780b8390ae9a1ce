/**
 * Test-only reader of the Prometheus text exposition format (version 0.0.4):
 * samples with their labels, and sums over label subsets.
 */

export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

/** Every sample line of an exposition (comments and blank lines skipped). */
export function parseExposition(text: string): Sample[] {
  const out: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    let i = 0
    while (i < line.length && line[i] !== '{' && line[i] !== ' ') i++
    const name = line.slice(0, i)
    const labels: Record<string, string> = {}
    if (line[i] === '{') {
      i++
      while (line[i] !== '}') {
        const eq = line.indexOf('=', i)
        const key = line.slice(i, eq)
        if (line[eq + 1] !== '"') throw new Error(`bad label in: ${line}`)
        let j = eq + 2
        let value = ''
        for (; line[j] !== '"'; j++) {
          if (j >= line.length) throw new Error(`unterminated label value in: ${line}`)
          if (line[j] === '\\') {
            j++
            value += line[j] === 'n' ? '\n' : line[j]
          } else {
            value += line[j]
          }
        }
        labels[key] = value
        i = j + 1
        if (line[i] === ',') i++
      }
      i++
    }
    const rest = line.slice(i).trim().split(/\s+/)
    const v = rest[0]!
    out.push({ name, labels, value: v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : Number(v) })
  }
  return out
}

/** Samples of `name` whose labels include `labels`. */
export function samples(all: Sample[], name: string, labels: Record<string, string> = {}): Sample[] {
  return all.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
}

/** Sum of the samples of `name` whose labels include `labels` (0 when none). */
export function sum(all: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples(all, name, labels).reduce((a, s) => a + s.value, 0)
}

/** The series of `name` keyed by the values of `keys` joined with "/", zero-valued ones left out. */
export function table(all: Sample[], name: string, keys: string[]): Record<string, number> {
  const t: Record<string, number> = {}
  for (const s of samples(all, name)) {
    if (s.value === 0) continue
    const k = keys.map((key) => s.labels[key] ?? '').join('/')
    t[k] = (t[k] ?? 0) + s.value
  }
  return t
}
