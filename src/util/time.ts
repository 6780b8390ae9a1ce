/**
 * Wall-clock time with microsecond resolution. Date has only milliseconds;
 * the audit contract asks for RFC 3339 with microseconds, so we anchor a
 * monotonic high-resolution clock to the wall clock once at start-up.
 */
const anchorWallUs = BigInt(Date.now()) * 1000n
const anchorHr = process.hrtime.bigint()

/** Microseconds since the Unix epoch. */
export function nowMicros(): number {
  return Number(anchorWallUs + (process.hrtime.bigint() - anchorHr) / 1000n)
}

/** RFC 3339 UTC with exactly six fractional digits, e.g. 2026-11-26T05:38:42.123456Z. */
export function formatMicros(us: number): string {
  const sec = Math.floor(us / 1_000_000)
  // Records are stamped many times per second, alternating between "now" and a
  // statement's start: format each second once, in one of two slots.
  let prefix: string
  if (sec === slotSec[0]) prefix = slotPrefix[0]!
  else if (sec === slotSec[1]) prefix = slotPrefix[1]!
  else {
    prefix = new Date(sec * 1000).toISOString().slice(0, 20) // 2026-11-26T05:38:42.
    const slot = slotSec[0]! <= slotSec[1]! ? 0 : 1 // the earlier second makes room
    slotSec[slot] = sec
    slotPrefix[slot] = prefix
  }
  const frac = us - sec * 1_000_000
  return prefix + (frac < 100_000 ? String(frac).padStart(6, '0') : String(frac)) + 'Z'
}

const slotSec = [-1, -1]
const slotPrefix = ['', '']

export function rfc3339Micros(): string {
  return formatMicros(nowMicros())
}

/** Seconds since the epoch (JWT NumericDate) to RFC 3339 with microseconds. */
export function formatEpochSeconds(s: number): string {
  return formatMicros(Math.round(s * 1_000_000))
}
