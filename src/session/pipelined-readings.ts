/**
 * The other ways the server may read a text that arrives while earlier
 * statements are still unanswered. Any of those statements may change
 * `client_encoding` or `standard_conforming_strings` (SET, set_config, a
 * function, RESET), and the server reads the waiting text under the new
 * setting; the proxy learns of the change only from a ParameterStatus that
 * comes later. Records re-read such texts once the change is known
 * (StatementTracker.readNextBatch), but statement rules must decide before
 * the text is forwarded, so they judge every reading that could split or
 * classify it differently (statement-policy.ts, judgePipelinedText).
 *
 * Which readings differ: a backslash reads differently under the two values
 * of standard_conforming_strings. Non-ASCII bytes read differently only in
 * the encodings where a multibyte character may end in an ASCII byte (a quote,
 * a backslash): PostgreSQL's client-only encodings. In every other encoding
 * multibyte characters are made of high bytes only, so the statement
 * structure is the same as under any of them (LATIN1 stands for them all).
 */
import { isAscii } from 'node:buffer'

/** Client encodings whose multibyte characters may end in an ASCII byte (pg_wchar.h: PG_VALID_FE_ENCODING but not BE). */
export const ASCII_TRAIL_ENCODINGS: readonly string[] = ['SJIS', 'SHIFT_JIS_2004', 'BIG5', 'GBK', 'UHC', 'GB18030', 'JOHAB']

export interface TextReading {
  encoding: string
  standardConformingStrings: boolean
}

/** The readings of `bytes` other than `current` that may give another statement structure; empty for ASCII without a backslash. */
export function otherReadings(bytes: Buffer, current: TextReading): TextReading[] {
  const nonAscii = !isAscii(bytes)
  const backslash = bytes.indexOf(0x5c) >= 0
  if (!nonAscii && !backslash) return []
  const encodings = [current.encoding]
  if (nonAscii) {
    // One server-safe reading stands for all of them; the current one does if it is server-safe.
    if (ASCII_TRAIL_ENCODINGS.includes(current.encoding)) encodings.push('LATIN1')
    for (const e of ASCII_TRAIL_ENCODINGS) if (e !== current.encoding) encodings.push(e)
  }
  const scsValues = backslash ? [current.standardConformingStrings, !current.standardConformingStrings] : [current.standardConformingStrings]
  const out: TextReading[] = []
  for (const encoding of encodings) {
    for (const standardConformingStrings of scsValues) {
      if (encoding === current.encoding && standardConformingStrings === current.standardConformingStrings) continue
      out.push({ encoding, standardConformingStrings })
    }
  }
  return out
}
