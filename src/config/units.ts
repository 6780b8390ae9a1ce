/**
 * Pure parsers for config scalars: durations, byte sizes and listen
 * addresses. Each returns the value or a problem text (no key, no prefix);
 * the config reader turns problems into ConfigErrors.
 */
import { isIP } from 'node:net'
import type { ListenAddress } from './types.js'

export type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string }

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value })
const bad = <T>(problem: string): Parsed<T> => ({ ok: false, problem })

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/**
 * A duration in milliseconds: a number (ms) or a string such as `500ms`,
 * `10s`, `1.5s`, `5m`, `1h` (a bare number string is milliseconds).
 */
export function parseDuration(v: number | string): Parsed<number> {
  let ms: number
  if (typeof v === 'number') {
    ms = v
  } else {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(v)
    if (!m) return bad('must be a duration such as 500ms, 10s, 5m or 1h, or a number of milliseconds')
    ms = Number(m[1]) * DURATION_UNITS[m[2] ?? 'ms']!
  }
  if (!Number.isFinite(ms) || ms < 0) return bad('must be a non-negative duration')
  return ok(Math.round(ms))
}

/** `1.5s`, `500ms`, `2m`: a readable form of a millisecond count for messages. */
export function formatDuration(ms: number): string {
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}m`
  if (ms >= 1000 && ms % 1000 === 0) return `${ms / 1000}s`
  return `${ms}ms`
}

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
}

/**
 * A byte size: a number (bytes) or a string such as `512KiB`, `64MiB`,
 * `1GiB` (binary) or `1MB` (decimal); unit letters are case-insensitive.
 */
export function parseSize(v: number | string): Parsed<number> {
  let n: number
  if (typeof v === 'number') {
    n = v
  } else {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)?\s*$/.exec(v)
    const unit = m ? SIZE_UNITS[(m[2] ?? 'b').toLowerCase()] : undefined
    if (!m || unit === undefined) {
      return bad('must be a size such as 4096, 512KiB, 64MiB, 1GiB or 1MB')
    }
    n = Number(m[1]) * unit
  }
  if (!Number.isFinite(n) || n < 0 || !Number.isInteger(n)) return bad('must be a whole number of bytes')
  return ok(n)
}

/** `64MiB`, `512KiB`, `100 bytes`: a readable form of a byte count for messages. */
export function formatSize(n: number): string {
  if (n >= 1024 ** 3 && n % 1024 ** 3 === 0) return `${n / 1024 ** 3}GiB`
  if (n >= 1024 ** 2 && n % 1024 ** 2 === 0) return `${n / 1024 ** 2}MiB`
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024}KiB`
  return n === 1 ? '1 byte' : `${n} bytes`
}

/**
 * `host:port`, `[::1]:6432`. The port must be 1..65535, or 0 ("any free
 * port", for tests) when allowZero is set.
 */
export function parseListen(v: string, allowZero: boolean): Parsed<ListenAddress> {
  const form = 'must be "host:port", e.g. "127.0.0.1:6432" or "[::1]:6432"'
  let host: string
  let portText: string
  if (v.startsWith('[')) {
    const m = /^\[([^\]]+)\]:(.*)$/.exec(v)
    if (!m) return bad(form)
    host = m[1]!
    portText = m[2]!
    if (isIP(host) !== 6) return bad('the address in brackets must be an IPv6 address')
  } else {
    const i = v.lastIndexOf(':')
    if (i <= 0) return bad(form)
    host = v.slice(0, i)
    portText = v.slice(i + 1)
    if (host.includes(':')) return bad('an IPv6 address must be written in brackets, e.g. "[::1]:6432"')
    if (!/^[A-Za-z0-9._-]+$/.test(host)) return bad(`${form}; the host is not a valid address or name`)
  }
  if (!/^\d{1,5}$/.test(portText)) return bad(`${form}; the port must be a number`)
  const port = Number(portText)
  const min = allowZero ? 0 : 1
  if (port < min || port > 65535) {
    return bad(`the port must be ${min}..65535${allowZero ? ' (0 = any free port)' : ''}`)
  }
  return ok({ host, port })
}

/** True for addresses that never leave the machine (127.0.0.0/8, ::1, localhost, unix sockets). */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase()
  if (h === 'localhost' || h.endsWith('.localhost') || h === '::1' || h === '[::1]') return true
  if (h.startsWith('/')) return true
  return isIP(h) === 4 && h.startsWith('127.')
}
