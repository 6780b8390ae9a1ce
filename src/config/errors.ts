/**
 * Config errors. Every problem in a config file is reported as one
 * ConfigError naming the exact key (`identity.jwt[0].algorithms[1]`) and what
 * is wrong with it. Messages never contain a value that came from an
 * `${env:...}` or `${file:...}` reference.
 */

export class ConfigError extends Error {
  /** Dotted key path with list indices; '' or the file path for file-level errors. */
  readonly key: string
  /** What is wrong, without the `config: <key>: ` prefix. */
  readonly problem: string

  constructor(key: string, problem: string) {
    super(key === '' ? `config: ${problem}` : `config: ${key}: ${problem}`)
    this.name = 'ConfigError'
    this.key = key
    this.problem = problem
  }
}

/** One step in a key path: a mapping key or a list index. */
export type Segment = string | number
export type KeyPath = readonly Segment[]

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_-]*$/

/** ['identity', 'jwt', 0, 'algorithms', 1] => `identity.jwt[0].algorithms[1]`. */
export function formatPath(path: KeyPath): string {
  let out = ''
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`
    else if (PLAIN_KEY.test(seg)) out += out === '' ? seg : `.${seg}`
    else out += `[${JSON.stringify(seg)}]`
  }
  return out
}

export function fail(path: KeyPath, problem: string): never {
  throw new ConfigError(formatPath(path), problem)
}

/** Describes a YAML value's type for messages, never its content. */
export function typeName(v: unknown): string {
  if (v === null || v === undefined) return 'nothing'
  if (Array.isArray(v)) return 'a list'
  if (typeof v === 'object') return 'a mapping'
  if (typeof v === 'string') return 'a string'
  if (typeof v === 'number') return 'a number'
  if (typeof v === 'boolean') return v ? 'true' : 'false'
  return typeof v
}

/**
 * Shows a raw (pre-substitution) YAML scalar in a message. Raw text is what the
 * operator wrote in the file, so it never contains a resolved secret; a value
 * that consisted of a reference is shown as the reference.
 */
export function shown(raw: unknown): string {
  if (typeof raw === 'string') {
    const s = raw.length > 80 ? raw.slice(0, 77) + '...' : raw
    return JSON.stringify(s)
  }
  if (typeof raw === 'number' || typeof raw === 'boolean') return String(raw)
  return typeName(raw)
}

/** A short, secret-free description of a file system error. */
export function describeFsError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | null)?.code
  switch (code) {
    case 'ENOENT':
      return 'no such file'
    case 'EACCES':
    case 'EPERM':
      return 'permission denied'
    case 'EISDIR':
      return 'is a directory, not a file'
    case 'ENOTDIR':
      return 'a parent of this path is not a directory'
    default:
      return code ?? (err instanceof Error ? err.message : String(err))
  }
}

/** Levenshtein distance, for "did you mean" suggestions. */
function distance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!
    prev[0] = i
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1))
      diag = tmp
    }
  }
  return prev[b.length]!
}

const normalize = (s: string): string => s.toLowerCase().replace(/[-_]/g, '')

/** The closest known key to a misspelt one, or null if none is close. */
export function suggest(key: string, known: readonly string[]): string | null {
  let best: string | null = null
  let bestD = Infinity
  for (const k of known) {
    const d = normalize(k) === normalize(key) ? 0 : distance(key.toLowerCase(), k)
    if (d < bestD) {
      bestD = d
      best = k
    }
  }
  const limit = Math.max(1, Math.min(3, Math.floor(key.length / 3)))
  return bestD <= limit ? best : null
}
