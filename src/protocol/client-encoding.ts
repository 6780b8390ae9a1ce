/**
 * PostgreSQL client encodings: their names, and the decoding of client bytes
 * (statement texts, text parameters) into the UTF-8 text the server itself
 * parses once it has converted them (the harness and production servers are
 * UTF8; SQL_ASCII means no conversion, so the bytes must be UTF-8).
 *
 * Exactness: a decoded text is PostgreSQL 15's own conversion, or it comes
 * with the original bytes (`raw`, base64) so the record stays lossless and
 * says so. Node's decoders (full ICU) do not decode like PostgreSQL for every
 * encoding, so (checked exhaustively against a PostgreSQL 15 server, see
 * test/harness/gen-client-encoding-tables.ts):
 * - single-byte encodings use PostgreSQL's own tables (Node decodes
 *   windows-1252 as latin1, has no iso-8859-16, maps iso-8859-9 to
 *   windows-1254, and accepts bytes PostgreSQL rejects);
 * - EUC_JP, EUC_CN (gbk), EUC_KR, SJIS, BIG5, GBK, GB18030 use a TextDecoder
 *   with PostgreSQL's differences (client-encoding-tables.ts) applied;
 * - EUC_TW, EUC_JIS_2004, SHIFT_JIS_2004, JOHAB, UHC (ICU's euc-kr lacks the
 *   UHC extension) and MULE_INTERNAL have no exact decoder: characters are
 *   split exactly as PostgreSQL splits them, decoded best-effort (U+FFFD where
 *   nothing fits), and the raw bytes are always kept.
 * Character boundaries are always PostgreSQL's (pg_wchar.c's mblen), and a
 * multibyte character never decodes to an ASCII character unless PostgreSQL
 * converts it to one, so the text splits into statements as on the server.
 */
import { isAscii } from 'node:buffer'
import { MULTIBYTE_DIFFERENCES, SINGLE_BYTE_HIGH } from './client-encoding-tables.js'

/** Every client encoding PostgreSQL 15 accepts, as `SHOW client_encoding` prints it. */
export const CLIENT_ENCODINGS: readonly string[] = [
  'SQL_ASCII', 'EUC_JP', 'EUC_CN', 'EUC_KR', 'EUC_TW', 'EUC_JIS_2004', 'UTF8', 'MULE_INTERNAL',
  'LATIN1', 'LATIN2', 'LATIN3', 'LATIN4', 'LATIN5', 'LATIN6', 'LATIN7', 'LATIN8', 'LATIN9', 'LATIN10',
  'WIN1256', 'WIN1258', 'WIN866', 'WIN874', 'KOI8R', 'WIN1251', 'WIN1252',
  'ISO_8859_5', 'ISO_8859_6', 'ISO_8859_7', 'ISO_8859_8', 'WIN1250', 'WIN1253', 'WIN1254', 'WIN1255', 'WIN1257', 'KOI8U',
  'SJIS', 'BIG5', 'GBK', 'UHC', 'GB18030', 'JOHAB', 'SHIFT_JIS_2004',
]

/** PostgreSQL's aliases (src/common/encnames.c), keyed as it compares them: lower case, alphanumerics only. */
const ALIASES: Readonly<Record<string, string>> = {
  abc: 'WIN1258', alt: 'WIN866', iso88591: 'LATIN1', iso88592: 'LATIN2', iso88593: 'LATIN3', iso88594: 'LATIN4',
  iso88599: 'LATIN5', iso885910: 'LATIN6', iso885913: 'LATIN7', iso885914: 'LATIN8', iso885915: 'LATIN9', iso885916: 'LATIN10',
  koi8: 'KOI8R', mskanji: 'SJIS', shiftjis: 'SJIS', tcvn: 'WIN1258', tcvn5712: 'WIN1258', unicode: 'UTF8', vscii: 'WIN1258',
  win: 'WIN1251', win932: 'SJIS', win936: 'GBK', win949: 'UHC', win950: 'BIG5',
  windows1250: 'WIN1250', windows1251: 'WIN1251', windows1252: 'WIN1252', windows1253: 'WIN1253', windows1254: 'WIN1254',
  windows1255: 'WIN1255', windows1256: 'WIN1256', windows1257: 'WIN1257', windows1258: 'WIN1258', windows866: 'WIN866',
  windows874: 'WIN874', windows932: 'SJIS', windows936: 'GBK', windows949: 'UHC', windows950: 'BIG5',
}
const BY_KEY = new Map<string, string>(Object.entries(ALIASES))
for (const name of CLIENT_ENCODINGS) BY_KEY.set(encodingKey(name), name)

function encodingKey(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]/g, '')
}

/** An encoding name as PostgreSQL normalises it (`latin9` → LATIN9, `unicode` → UTF8), or null if it knows no such encoding. */
export function normaliseEncodingName(name: string): string | null {
  return BY_KEY.get(encodingKey(name)) ?? null
}

/** Client text decoded into what the server parses. */
export interface DecodedClientText {
  /** The readable UTF-8 text (U+FFFD where the bytes could not be decoded). */
  text: string
  /** The client encoding it was decoded from; null when UTF8. */
  encoding: string | null
  /** Base64 of the bytes as sent, when `text` is not an exact rendering of them; null otherwise. */
  raw: string | null
}

/**
 * Decode client bytes sent under `encoding` (any spelling PostgreSQL
 * accepts). `prefix`: the bytes are only the first part of a longer text (a
 * capped text or parameter), so a character cut at the end is dropped rather
 * than counted as invalid. Pure: the same call on the same bytes gives the
 * same result (a message can be re-decoded under another encoding).
 */
export function decodeClientText(bytes: Buffer, encoding: string, prefix = false): DecodedClientText {
  const name = encoding === 'UTF8' ? encoding : normaliseEncodingName(encoding) ?? encoding
  const reported = name === 'UTF8' ? null : name
  // Every client encoding is an ASCII superset: the hot path (pgbench, most drivers) ends here.
  if (isAscii(bytes)) return { text: bytes.toString('latin1'), encoding: reported, raw: null }
  const d = decoderOf(name)
  const r = d.decode(bytes, prefix)
  return { text: r.text, encoding: reported, raw: r.exact ? null : bytes.toString('base64') }
}

interface Decoder {
  decode(bytes: Buffer, prefix: boolean): { text: string; exact: boolean }
}

const decoders = new Map<string, Decoder>()

function decoderOf(name: string): Decoder {
  let d = decoders.get(name)
  if (d === undefined) {
    d = makeDecoder(name)
    decoders.set(name, d)
  }
  return d
}

function makeDecoder(name: string): Decoder {
  if (name === 'UTF8' || name === 'SQL_ASCII') return UTF8_DECODER
  const table = SINGLE_BYTE_HIGH[name]
  if (table !== undefined) return singleByteDecoder(table)
  const mblen = MBLEN[name]
  if (mblen === undefined) return UNKNOWN_DECODER
  const diff = MULTIBYTE_DIFFERENCES[name]
  if (diff !== undefined) return new MultibyteDecoder(mblen, exactCharDecoder(LABEL[name]!, diff, name !== 'GB18030'), true)
  return new MultibyteDecoder(mblen, approximateCharDecoder(LABEL[name] ?? null, APPROXIMATE_OVERRIDES[name] ?? {}), false)
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
const lenientUtf8 = new TextDecoder('utf-8', { ignoreBOM: true })

const UTF8_DECODER: Decoder = {
  decode(bytes, prefix) {
    const end = prefix ? utf8PrefixEnd(bytes) : bytes.length
    try {
      return { text: strictUtf8.decode(bytes.subarray(0, end)), exact: true }
    } catch {
      return { text: lenientUtf8.decode(bytes.subarray(0, end)), exact: false }
    }
  },
}

/** An encoding this module does not know (PostgreSQL reports only the ones above): UTF-8 at best, never exact. */
const UNKNOWN_DECODER: Decoder = {
  decode(bytes) {
    return { text: lenientUtf8.decode(bytes), exact: false }
  },
}

/** Where a UTF-8 prefix ends once a character cut at its end is dropped. */
function utf8PrefixEnd(buf: Buffer): number {
  let i = buf.length - 1
  let continuation = 0
  while (i >= 0 && continuation < 3 && (buf[i]! & 0xc0) === 0x80) {
    i--
    continuation++
  }
  if (i < 0) return buf.length
  const lead = buf[i]!
  const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1
  return need > continuation + 1 ? i : buf.length
}

const utf16 = new TextDecoder('utf-16le')

function singleByteDecoder(high: string): Decoder {
  const codes = new Uint16Array(256)
  for (let b = 0; b < 128; b++) codes[b] = b
  for (let b = 128; b < 256; b++) codes[b] = high.charCodeAt(b - 128)
  return {
    decode(bytes) {
      const out = new Uint16Array(bytes.length)
      let exact = true
      for (let i = 0; i < bytes.length; i++) {
        const c = codes[bytes[i]!]!
        if (c === 0xffff) {
          exact = false
          out[i] = 0xfffd
        } else out[i] = c
      }
      return { text: utf16.decode(out), exact }
    },
  }
}

/** Length of the character starting at bytes[i] (high bit set), as PostgreSQL's pg_wchar.c counts it. */
type MbLen = (bytes: Buffer, i: number) => number

const eucLen: MbLen = (b, i) => (b[i] === 0x8e ? 2 : b[i] === 0x8f ? 3 : 2)
const sjisLen: MbLen = (b, i) => (b[i]! >= 0xa1 && b[i]! <= 0xdf ? 1 : 2)
const twoBytes: MbLen = () => 2
const MBLEN: Readonly<Record<string, MbLen>> = {
  EUC_JP: eucLen, EUC_JIS_2004: eucLen, EUC_KR: eucLen, JOHAB: eucLen,
  EUC_CN: twoBytes, BIG5: twoBytes, GBK: twoBytes, UHC: twoBytes,
  EUC_TW: (b, i) => (b[i] === 0x8e ? 4 : b[i] === 0x8f ? 3 : 2),
  SJIS: sjisLen, SHIFT_JIS_2004: sjisLen,
  GB18030: (b, i) => (i + 1 < b.length && b[i + 1]! >= 0x30 && b[i + 1]! <= 0x39 ? 4 : 2),
  MULE_INTERNAL: (b, i) => {
    const c = b[i]!
    return c >= 0x81 && c <= 0x8d ? 2 : c >= 0x90 && c <= 0x99 ? 3 : c === 0x9a || c === 0x9b ? 3 : c === 0x9c || c === 0x9d ? 4 : 1
  },
}

/** The TextDecoder label used for each multibyte encoding (exact ones with the differences applied). */
const LABEL: Readonly<Record<string, string>> = {
  EUC_JP: 'euc-jp', EUC_CN: 'gbk', EUC_KR: 'euc-kr', SJIS: 'shift_jis', BIG5: 'big5', GBK: 'gbk', GB18030: 'gb18030',
  EUC_JIS_2004: 'euc-jp', SHIFT_JIS_2004: 'shift_jis', UHC: 'euc-kr',
}

/** Characters of approximate encodings that PostgreSQL converts to ASCII: they matter for splitting statements. */
const APPROXIMATE_OVERRIDES: Readonly<Record<string, Readonly<Record<number, string>>>> = {
  SHIFT_JIS_2004: { 0x815f: '\\', 0x81b0: '~' },
}

/** One multibyte character (key: its bytes as a big-endian number) → its text, or null if PostgreSQL rejects it. */
type CharDecoder = (bytes: Buffer, key: number) => string | null

const CACHE_LIMIT = 65536

/**
 * Splits the bytes into characters as PostgreSQL does, decoding each
 * non-ASCII one (cached by its bytes) and copying ASCII runs as they are.
 */
class MultibyteDecoder implements Decoder {
  private readonly cache = new Map<number, string | null>()

  constructor(
    private readonly mblen: MbLen,
    private readonly char: CharDecoder,
    private readonly exactDecoder: boolean,
  ) {}

  decode(bytes: Buffer, prefix: boolean): { text: string; exact: boolean } {
    const parts: string[] = []
    let exact = this.exactDecoder
    let run = 0
    let i = 0
    const n = bytes.length
    while (i < n) {
      if (bytes[i]! < 0x80) {
        i++
        continue
      }
      if (run < i) parts.push(bytes.toString('latin1', run, i))
      const len = this.mblen(bytes, i)
      if (i + len > n) {
        // A character cut short: the end of a capped prefix, or invalid (the server rejects it).
        if (!prefix) {
          parts.push('\ufffd')
          exact = false
        }
        run = i = n
        break
      }
      let key = 0
      for (let k = i; k < i + len; k++) key = key * 256 + bytes[k]!
      let ch = this.cache.get(key)
      if (ch === undefined) {
        ch = this.char(bytes.subarray(i, i + len), key)
        if (this.cache.size >= CACHE_LIMIT) this.cache.clear()
        this.cache.set(key, ch)
      }
      if (ch === null) {
        parts.push('\ufffd')
        exact = false
      } else parts.push(ch)
      i += len
      run = i
    }
    if (run < n) parts.push(bytes.toString('latin1', run, n))
    return { text: parts.join(''), exact }
  }
}

function exactCharDecoder(label: string, diff: { overrides: string; rejects: string }, rejectPrivateUse: boolean): CharDecoder {
  const dec = new TextDecoder(label, { fatal: true })
  const overrides = new Map<number, string>()
  for (const entry of diff.overrides.split(' ').filter(Boolean)) {
    const [k, v] = entry.split('=') as [string, string]
    overrides.set(parseInt(k, 16), String.fromCodePoint(...v.split('+').map((h) => parseInt(h, 16))))
  }
  const rejects = diff.rejects.split(' ').filter(Boolean).map((r) => {
    const [lo, hi] = r.split('-') as [string, string | undefined]
    return [parseInt(lo, 16), parseInt(hi ?? lo, 16)] as const
  })
  return (bytes, key) => {
    const o = overrides.get(key)
    if (o !== undefined) return o
    for (const [lo, hi] of rejects) if (key >= lo && key <= hi) return null
    let text: string
    try {
      text = dec.decode(bytes)
    } catch {
      return null
    }
    // One character, as PostgreSQL converts it; its user-defined areas (private use) it rejects.
    const cp = text.codePointAt(0)
    if (cp === undefined || text.length !== (cp > 0xffff ? 2 : 1) || cp < 0x80) return null
    if (rejectPrivateUse && cp >= 0xe000 && cp <= 0xf8ff) return null
    return text
  }
}

function approximateCharDecoder(label: string | null, overrides: Readonly<Record<number, string>>): CharDecoder {
  const dec = label === null ? null : new TextDecoder(label)
  return (bytes, key) => {
    const o = overrides[key]
    if (o !== undefined) return o
    const text = dec?.decode(bytes) ?? '\ufffd'
    // Never let a best-effort guess put an ASCII character (a quote, a backslash) where PostgreSQL has
    // none; C1 controls are ICU passing undecodable bytes through.
    return /[\x00-\x9f\ufffd]/.test(text) || text.length === 0 ? '\ufffd' : text
  }
}
