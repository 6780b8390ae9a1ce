/**
 * Generators for the canonical-form scanners' property tests: record bodies
 * whose content reaches every branch (escapes, controls, non-ASCII of every
 * length, numbers of every form), and byte edits that turn canonical lines
 * into near-misses.
 */
import fc from 'fast-check'

const ch = fc.constantFrom('a', 'Z', '0', '9', ' ', '"', '\\', '/', '\n', '\t', '\u0000', '\u001f', '\u007f', '\u0080', 'é', '€', '\u2028', '\ufb33', '\ud83d\ude00')

/** A record body of random members (never `chain`, which sealing adds). */
export const randomBody = fc.dictionary(fc.string({ unit: ch, maxLength: 5 }).filter((k) => k !== 'chain'), fc.jsonValue({ maxDepth: 3, stringUnit: ch }), { maxKeys: 8 })

/** Bytes that make near-misses: JSON punctuation, digits, escapes, and the first bytes of good and bad UTF-8. */
const MUTANT_BYTES = [0x20, 0x22, 0x2c, 0x2d, 0x2e, 0x30, 0x31, 0x3a, 0x41, 0x5c, 0x61, 0x65, 0x75, 0x7b, 0x7d, 0x5b, 0x5d, 0x0a, 0x00, 0x7f, 0x80, 0xc0, 0xc3, 0xe0, 0xed, 0xf0, 0xf4, 0xf5, 0xff, 0xbf]

export const byteEdits = fc.array(fc.record({ at: fc.nat(), op: fc.constantFrom('set', 'insert', 'delete'), byte: fc.constantFrom(...MUTANT_BYTES) }), { minLength: 1, maxLength: 3 })

/** `line` with the edits applied, as one line (any newline an edit made is dropped). */
export function editedLine(line: string, edits: ReadonlyArray<{ at: number; op: 'set' | 'insert' | 'delete'; byte: number }>): Buffer {
  const bytes = [...Buffer.from(line, 'utf8')]
  for (const e of edits) {
    const at = e.at % (bytes.length + 1)
    if (e.op === 'set' && at < bytes.length) bytes[at] = e.byte
    else if (e.op === 'insert') bytes.splice(at, 0, e.byte)
    else bytes.splice(at, 1)
  }
  return Buffer.from(bytes.filter((x) => x !== 0x0a))
}
