import t from 'tap'
import { ASCII_TRAIL_ENCODINGS, otherReadings } from '../../src/session/pipelined-readings.js'

const utf8On = { encoding: 'UTF8', standardConformingStrings: true }

t.test('ASCII without a backslash reads the same under every setting', async (t) => {
  t.same(otherReadings(Buffer.from("SELECT 'x'; DROP TABLE t"), utf8On), [])
})

t.test('a backslash: the other value of standard_conforming_strings, same encoding', async (t) => {
  t.same(otherReadings(Buffer.from("SELECT 'a\\'"), utf8On), [{ encoding: 'UTF8', standardConformingStrings: false }])
})

t.test('non-ASCII under a server-safe encoding: every encoding whose characters may end in an ASCII byte', async (t) => {
  const r = otherReadings(Buffer.from("SELECT 'é'"), utf8On)
  t.same(r.map((x) => x.encoding), ASCII_TRAIL_ENCODINGS)
  t.ok(r.every((x) => x.standardConformingStrings), 'no backslash: the setting stays')
})

t.test('non-ASCII under SJIS: a server-safe reading and the other client-only encodings, both settings with a backslash', async (t) => {
  const r = otherReadings(Buffer.from([0x53, 0x95, 0x5c]), { encoding: 'SJIS', standardConformingStrings: true })
  const encodings = new Set(r.map((x) => x.encoding))
  t.ok(encodings.has('LATIN1'))
  t.ok(encodings.has('SJIS'), 'SJIS with the other standard_conforming_strings')
  t.equal(r.length, (ASCII_TRAIL_ENCODINGS.length + 1) * 2 - 1, 'every combination but the current one')
  t.notOk(r.some((x) => x.encoding === 'SJIS' && x.standardConformingStrings), 'not the current reading')
})
