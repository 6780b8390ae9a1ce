import t from 'tap'
import { CLIENT_ENCODINGS, decodeClientText, normaliseEncodingName } from '../../src/protocol/client-encoding.js'
import { asStandardConforming } from '../../src/classify/nonstandard-strings.js'

t.test('encoding names are normalised as PostgreSQL does', async (t) => {
  const cases: Array<[string, string | null]> = [
    ['latin9', 'LATIN9'], ['ISO-8859-15', 'LATIN9'], ['unicode', 'UTF8'], ['utf-8', 'UTF8'], ['shift_jis_2004', 'SHIFT_JIS_2004'],
    ['win1252', 'WIN1252'], ['windows-1252', 'WIN1252'], ['Shift_JIS', 'SJIS'], ['mskanji', 'SJIS'], ['koi8', 'KOI8R'],
    ['euc_jis_2004', 'EUC_JIS_2004'], ['iso_8859_5', 'ISO_8859_5'], ['tcvn5712', 'WIN1258'], ['sql_ascii', 'SQL_ASCII'], ['klingon', null],
  ]
  for (const [name, want] of cases) t.equal(normaliseEncodingName(name), want, name)
  for (const name of CLIENT_ENCODINGS) t.equal(normaliseEncodingName(name), name, `${name} is its own name`)
})

t.test('decoding: ASCII, exact, invalid, inexact, prefixes', async (t) => {
  t.same(decodeClientText(Buffer.from('SELECT 1'), 'UTF8'), { text: 'SELECT 1', encoding: null, raw: null })
  t.same(decodeClientText(Buffer.from('SELECT 1'), 'latin9'), { text: 'SELECT 1', encoding: 'LATIN9', raw: null })
  t.same(decodeClientText(Buffer.from([0x27, 0xa4, 0x27]), 'LATIN9'), { text: "'€'", encoding: 'LATIN9', raw: null })
  t.same(decodeClientText(Buffer.from([0x80]), 'WIN1252'), { text: '€', encoding: 'WIN1252', raw: null })
  // 0x81 is no character in PostgreSQL's WIN1252: kept losslessly.
  t.same(decodeClientText(Buffer.from([0x81]), 'WIN1252'), { text: '\ufffd', encoding: 'WIN1252', raw: 'gQ==' })
  t.same(decodeClientText(Buffer.from([0xff, 0x41]), 'UTF8'), { text: '\ufffdA', encoding: null, raw: '/0E=' })
  // SJIS: 表 is 0x95 0x5C; its trail byte never reads as a backslash.
  t.equal(decodeClientText(Buffer.from([0x27, 0x95, 0x5c, 0x27]), 'SJIS').text, "'表'")
  // No exact decoder: the best guess, and the bytes.
  const tw = decodeClientText(Buffer.from([0xa4, 0xa4]), 'EUC_TW')
  t.equal(tw.raw, Buffer.from([0xa4, 0xa4]).toString('base64'))
  t.notMatch(tw.text, /[\x00-\x7f]/)
  // SHIFT_JIS_2004 converts 0x815F to a backslash: that must stay one (it can end a literal's escape).
  t.equal(decodeClientText(Buffer.from([0x81, 0x5f]), 'SHIFT_JIS_2004').text, '\\')
  // A prefix cut inside a character drops it; the same bytes whole are invalid.
  t.same(decodeClientText(Buffer.from([0x41, 0x95]), 'SJIS', true), { text: 'A', encoding: 'SJIS', raw: null })
  t.equal(decodeClientText(Buffer.from([0x41, 0x95]), 'SJIS').raw, 'QZU=')
  t.same(decodeClientText(Buffer.from([0x41, 0xe2, 0x82]), 'UTF8', true), { text: 'A', encoding: null, raw: null })
})

t.test('asStandardConforming keeps lengths and rewrites only ordinary literals', async (t) => {
  const cases: Array<[string, string | null]> = [
    ["SELECT 'a\\'b'", "SELECT 'a''b'"],
    ["SELECT 'a\\\\'", "SELECT 'a__'"],
    ["SELECT 'a\\nb'", "SELECT 'a_nb'"],
    ["SELECT E'a\\'b'", "SELECT E'a\\'b'"],
    ["SELECT $$a\\'$$", "SELECT $$a\\'$$"],
    ["SELECT B'0\\'", "SELECT B'0\\'"],
    ["-- 'a\\'\nSELECT 'x\\''", "-- 'a\\'\nSELECT 'x'''"],
    ["/* /* 'a\\' */ */ SELECT \"a\\\"", "/* /* 'a\\' */ */ SELECT \"a\\\""],
    ["SELECT 'a'\n'b\\'c'", "SELECT 'a'\n'b''c'"],
    ["SELECT N'é\\''", "SELECT N'é'''"],
    ["SELECT U&'\\0041'", null],
    ["SELECT U&\"a\\\"", "SELECT U&\"a\\\""],
    ["SELECT 'a\\u0000'", null],
  ]
  for (const [sql, want] of cases) {
    const got = asStandardConforming(sql)
    t.equal(got, want, sql)
    if (got !== null) t.equal(Buffer.byteLength(got), Buffer.byteLength(sql), `same length: ${sql}`)
  }
})
