import { randomBytes, randomFillSync } from 'node:crypto'

/**
 * UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then random bits. Within one
 * millisecond a 12-bit counter in rand_a keeps ids from this process strictly
 * increasing, so audit record ids sort in the order they were written.
 */
let lastMs = 0
let counter = 0
const pool = Buffer.allocUnsafe(16 * 256)
let poolOffset = pool.length

/** ASCII codes of the hex digit pairs of every byte value: HEX_PAIRS[2b], HEX_PAIRS[2b + 1]. */
const HEX_PAIRS = Buffer.from(Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0')).join(''), 'latin1')
/** The id is spelled into this buffer and read out as one flat string: one allocation per id. */
const spelled = Buffer.from('00000000-0000-0000-0000-000000000000', 'latin1')
/** Where each of the 16 bytes goes in the spelled form (the dashes stay). */
const BYTE_AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34]

function spell(i: number, byte: number): void {
  const at = BYTE_AT[i]!
  spelled[at] = HEX_PAIRS[2 * byte]!
  spelled[at + 1] = HEX_PAIRS[2 * byte + 1]!
}

export function uuidv7(nowMs: number = Date.now()): string {
  let ms = nowMs
  if (ms <= lastMs) {
    counter++
    if (counter > 0xfff) {
      // Counter exhausted within one millisecond: borrow the next millisecond.
      lastMs++
      counter = 0
    }
    ms = lastMs
  } else {
    lastMs = ms
    counter = 0
  }
  if (poolOffset + 10 > pool.length) {
    randomFillSync(pool)
    poolOffset = 0
  }
  const r = poolOffset
  poolOffset += 10
  spell(0, Math.floor(ms / 2 ** 40) & 0xff)
  spell(1, Math.floor(ms / 2 ** 32) & 0xff)
  spell(2, (ms >>> 24) & 0xff)
  spell(3, (ms >>> 16) & 0xff)
  spell(4, (ms >>> 8) & 0xff)
  spell(5, ms & 0xff)
  spell(6, 0x70 | ((counter >>> 8) & 0x0f))
  spell(7, counter & 0xff)
  spell(8, 0x80 | (pool[r]! & 0x3f))
  for (let i = 1; i < 8; i++) spell(8 + i, pool[r + i]!)
  return spelled.toString('latin1', 0, 36)
}

/** A random 32-bit cancel key / identifier. */
export function randomUint32(): number {
  return randomBytes(4).readUInt32BE(0)
}
