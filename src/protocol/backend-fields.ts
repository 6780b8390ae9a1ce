/**
 * The fields of an ErrorResponse/NoticeResponse body the proxy needs: the
 * severity, SQLSTATE and message. (Full decoding is pg-protocol's job; this
 * is the hot path's minimal read, without allocating a DatabaseError.)
 */
export interface ErrorFields {
  severity: string
  code: string
  message: string
}

export function decodeErrorFields(body: Buffer): ErrorFields {
  const out: ErrorFields = { severity: 'ERROR', code: 'XX000', message: '' }
  let off = 0
  while (off < body.length) {
    const field = body[off]!
    if (field === 0) break
    const end = body.indexOf(0, off + 1)
    if (end < 0) break
    const value = body.toString('utf8', off + 1, end)
    if (field === 0x56 /* V: non-localized severity */ || (field === 0x53 /* S */ && out.severity === 'ERROR')) out.severity = value
    else if (field === 0x43 /* C */) out.code = value
    else if (field === 0x4d /* M */) out.message = value
    off = end + 1
  }
  return out
}
