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

function random10(): Buffer {
  if (poolOffset + 10 > pool.length) {
    randomFillSync(pool)
    poolOffset = 0
  }
  const out = pool.subarray(poolOffset, poolOffset + 10)
  poolOffset += 10
  return out
}

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))

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
  const r = random10()
  const b = new Array<string>(16)
  b[0] = HEX[Math.floor(ms / 2 ** 40) & 0xff]!
  b[1] = HEX[Math.floor(ms / 2 ** 32) & 0xff]!
  b[2] = HEX[(ms >>> 24) & 0xff]!
  b[3] = HEX[(ms >>> 16) & 0xff]!
  b[4] = HEX[(ms >>> 8) & 0xff]!
  b[5] = HEX[ms & 0xff]!
  b[6] = HEX[0x70 | ((counter >>> 8) & 0x0f)]!
  b[7] = HEX[counter & 0xff]!
  b[8] = HEX[0x80 | (r[0]! & 0x3f)]!
  for (let i = 1; i < 8; i++) b[8 + i] = HEX[r[i]!]!
  return (
    b[0]! + b[1]! + b[2]! + b[3]! + '-' + b[4]! + b[5]! + '-' + b[6]! + b[7]! + '-' +
    b[8]! + b[9]! + '-' + b[10]! + b[11]! + b[12]! + b[13]! + b[14]! + b[15]!
  )
}

/** A random 32-bit cancel key / identifier. */
export function randomUint32(): number {
  return randomBytes(4).readUInt32BE(0)
}
