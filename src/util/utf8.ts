/**
 * Decode bytes [start, end) of UTF-8 that may have been cut inside a
 * character (a capped text or parameter): the incomplete trailing character
 * is dropped instead of becoming U+FFFD, so the result is a true prefix.
 */
export function decodeUtf8Prefix(buf: Buffer, start = 0, end = buf.length): string {
  let i = end - 1
  let continuation = 0
  while (i >= start && continuation < 3 && (buf[i]! & 0xc0) === 0x80) {
    i--
    continuation++
  }
  if (i >= start) {
    const lead = buf[i]!
    const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1
    if (need > continuation + 1) end = i
  }
  return buf.toString('utf8', start, end)
}
