/**
 * Typed access to the plain YAML value tree with exact key paths in errors.
 * Every string scalar goes through `${env:NAME}` / `${file:PATH}`
 * substitution; errors describe the raw text the operator wrote (or its
 * type), never a substituted value.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { ConfigError, describeFsError, fail, formatPath, type KeyPath, shown, suggest, typeName } from './errors.js'
import { ConfigProblems } from './problems.js'
import { parseDuration, parseListen, parseSize, formatDuration, formatSize } from './units.js'
import type { ListenAddress } from './types.js'

export type Mapping = Record<string, unknown>

/** Problem text for keys that belong to features this version does not have yet. */

const REF = /\$\$\{|\$\{(env|file):([^}]*)\}/g
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

export class Reader {
  constructor(
    readonly baseDir: string,
    readonly env: Readonly<Record<string, string | undefined>>,
  ) {}

  /** Substitutes references in a string; `$${` is a literal `${`. */
  subst(raw: string, path: KeyPath): string {
    return raw.replace(REF, (whole, kind: string | undefined, arg: string | undefined) => {
      if (kind === undefined) return '${'
      const ref = arg!.trim()
      if (kind === 'env') {
        if (!ENV_NAME.test(ref)) fail(path, `invalid environment variable name in ${shown(whole)}`)
        const value = this.env[ref]
        if (value === undefined) fail(path, `environment variable ${ref} is not set`)
        return value
      }
      if (ref === '') fail(path, 'empty file name in ${file:}')
      const file = resolve(this.baseDir, ref)
      let text: string
      try {
        text = readFileSync(file, 'utf8')
      } catch (err) {
        fail(path, `cannot read file ${file} (referenced as \${file:${ref}}): ${describeFsError(err)}`)
      }
      return text.replace(/\r?\n$/, '')
    })
  }

  /** A mapping with only the given keys. */
  mapping(v: unknown, path: KeyPath, keys: readonly string[]): Mapping {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      fail(path, `must be a mapping (got ${typeName(v)})`)
    }
    const m = v as Mapping
    // Every stray key of the mapping is reported, not only the first.
    const problems = new ConfigProblems()
    for (const k of Object.keys(m)) {
      if (keys.includes(k)) continue
      const s = suggest(k, keys)
      const problem = `unknown key${s ? ` (did you mean ${JSON.stringify(s)}?)` : ''}`
      problems.add(new ConfigError(formatPath([...path, k]), problem))
    }
    problems.throwIfAny()
    return m
  }

  /** A mapping whose keys are free-form names (roles, claims); returns its entries. */
  entries(v: unknown, path: KeyPath): [string, unknown][] {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      fail(path, `must be a mapping (got ${typeName(v)})`)
    }
    return Object.entries(v as Mapping)
  }

  list(v: unknown, path: KeyPath, nonEmpty = false): unknown[] {
    if (!Array.isArray(v)) fail(path, `must be a list (got ${typeName(v)})`)
    if (nonEmpty && v.length === 0) fail(path, 'must not be empty')
    return v
  }

  string(v: unknown, path: KeyPath, nonEmpty = true): string {
    if (typeof v !== 'string') {
      const hint = typeof v === 'number' || typeof v === 'boolean' ? '; put it in quotes' : ''
      fail(path, `must be a string (got ${typeName(v)}${hint})`)
    }
    const s = this.subst(v, path)
    if (nonEmpty && s === '') fail(path, 'must not be empty')
    return s
  }

  /** null/undefined => null. */
  optString(v: unknown, path: KeyPath): string | null {
    return v === null || v === undefined ? null : this.string(v, path)
  }

  stringList(v: unknown, path: KeyPath, nonEmpty: boolean): string[] {
    return this.list(v, path, nonEmpty).map((x, i) => this.string(x, [...path, i]))
  }

  bool(v: unknown, path: KeyPath, dflt: boolean): boolean {
    if (v === null || v === undefined) return dflt
    if (typeof v === 'boolean') return v
    if (typeof v === 'string') {
      const s = this.subst(v, path)
      if (s === 'true') return true
      if (s === 'false') return false
    }
    fail(path, `must be true or false (got ${shown(v)})`)
  }

  /** An integer in [min, max]; numeric strings (e.g. from `${env:...}`) are accepted. */
  int(v: unknown, path: KeyPath, dflt: number, min: number, max: number): number {
    if (v === null || v === undefined) return dflt
    let n: number = NaN
    if (typeof v === 'number') n = v
    else if (typeof v === 'string') {
      const s = this.subst(v, path).trim()
      if (/^-?\d+$/.test(s)) n = Number(s)
    }
    if (!Number.isInteger(n)) fail(path, `must be a whole number (got ${shown(v)})`)
    if (n < min || n > max) fail(path, `must be ${min}..${max} (got ${n})`)
    return n
  }

  oneOf<T extends string>(v: unknown, path: KeyPath, allowed: readonly T[], dflt: T): T {
    if (v === null || v === undefined) return dflt
    const s = typeof v === 'string' ? this.subst(v, path) : undefined
    if (s !== undefined && (allowed as readonly string[]).includes(s)) return s as T
    fail(path, `must be one of ${allowed.join(', ')} (got ${shown(v)})`)
  }

  /** Milliseconds in [minMs, maxMs]. */
  duration(v: unknown, path: KeyPath, dflt: number, minMs: number, maxMs: number): number {
    if (v === null || v === undefined) return dflt
    if (typeof v !== 'number' && typeof v !== 'string') {
      fail(path, `must be a duration such as 500ms, 10s, 5m or 1h (got ${typeName(v)})`)
    }
    const r = parseDuration(typeof v === 'string' ? this.subst(v, path) : v)
    if (!r.ok) fail(path, `${r.problem} (got ${shown(v)})`)
    if (r.value < minMs || r.value > maxMs) {
      fail(path, `must be between ${formatDuration(minMs)} and ${formatDuration(maxMs)} (got ${shown(v)})`)
    }
    return r.value
  }

  /** Bytes in [min, max]. */
  size(v: unknown, path: KeyPath, dflt: number, min: number, max: number): number {
    if (v === null || v === undefined) return dflt
    if (typeof v !== 'number' && typeof v !== 'string') {
      fail(path, `must be a size such as 4096, 512KiB or 64MiB (got ${typeName(v)})`)
    }
    const r = parseSize(typeof v === 'string' ? this.subst(v, path) : v)
    if (!r.ok) fail(path, `${r.problem} (got ${shown(v)})`)
    if (r.value < min || r.value > max) {
      fail(path, `must be between ${formatSize(min)} and ${formatSize(max)} (got ${shown(v)})`)
    }
    return r.value
  }

  listen(v: unknown, path: KeyPath, allowZero: boolean): ListenAddress {
    const s = this.string(v, path)
    const r = parseListen(s.trim(), allowZero)
    if (!r.ok) fail(path, `${r.problem} (got ${shown(v)})`)
    return r.value
  }

  /** A path string resolved against baseDir. */
  path(v: unknown, path: KeyPath): string {
    return resolve(this.baseDir, this.string(v, path))
  }

  /** Reads a file the config names (already resolved); errors name the key. */
  readText(file: string, path: KeyPath, what = 'file'): string {
    try {
      return readFileSync(file, 'utf8')
    } catch (err) {
      fail(path, `cannot read ${what} ${file}: ${describeFsError(err)}`)
    }
  }

  /** Reads a PEM file and checks that it holds at least one block of the expected kind. */
  readPem(file: string, path: KeyPath, kind: 'CERTIFICATE' | 'PRIVATE KEY'): string {
    const pem = this.readText(file, path)
    const re = kind === 'CERTIFICATE' ? /-----BEGIN (X509 |TRUSTED )?CERTIFICATE-----/ : /-----BEGIN ([A-Z]+ )?PRIVATE KEY-----/
    if (!re.test(pem)) {
      const noun = kind === 'CERTIFICATE' ? 'PEM certificate' : 'PEM private key'
      fail(path, `${file} does not contain a ${noun} ("-----BEGIN ${kind}-----")`)
    }
    if (kind === 'PRIVATE KEY' && /-----BEGIN ENCRYPTED PRIVATE KEY-----/.test(pem)) {
      fail(path, `${file} holds an encrypted private key; pgwitness needs an unencrypted key`)
    }
    return pem
  }
}

/** True when the key is present with a non-null value. */
export function given(m: Mapping, key: string): boolean {
  return m[key] !== undefined && m[key] !== null
}
