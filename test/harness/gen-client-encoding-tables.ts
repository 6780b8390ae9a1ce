/**
 * Generates src/protocol/client-encoding-tables.ts from a throwaway PostgreSQL 15
 * server's own convert_from(): every byte of the single-byte encodings, every
 * one- and two-byte sequence (and EUC_JP's three-byte, GB18030's four-byte ones)
 * of the multibyte encodings decoded with a TextDecoder, kept where the two differ.
 * Run: npx tsx test/harness/gen-client-encoding-tables.ts
 */
import { startPostgresCluster } from '../../src/dev/cluster.js'
import { writeFileSync } from 'node:fs'
const c = await startPostgresCluster()
const SINGLE = ['LATIN1','LATIN2','LATIN3','LATIN4','LATIN5','LATIN6','LATIN7','LATIN8','LATIN9','LATIN10','WIN1256','WIN1258','WIN866','WIN874','KOI8R','WIN1251','WIN1252','ISO_8859_5','ISO_8859_6','ISO_8859_7','ISO_8859_8','WIN1250','WIN1253','WIN1254','WIN1255','WIN1257','KOI8U']
const MULTI: Record<string, { label: string; mblen: (b: number[]) => number; pua: boolean }> = {
  EUC_JP: { label: 'euc-jp', mblen: (b) => (b[0] === 0x8e ? 2 : b[0] === 0x8f ? 3 : 2), pua: true },
  EUC_CN: { label: 'gbk', mblen: () => 2, pua: true },
  EUC_KR: { label: 'euc-kr', mblen: () => 2, pua: true },
  SJIS: { label: 'shift_jis', mblen: (b) => (b[0] >= 0xa1 && b[0] <= 0xdf ? 1 : 2), pua: true },
  BIG5: { label: 'big5', mblen: () => 2, pua: true },
  GBK: { label: 'gbk', mblen: () => 2, pua: true },
  GB18030: { label: 'gb18030', mblen: (b) => (b[1]! >= 0x30 && b[1]! <= 0x39 ? 4 : 2), pua: false },
}
try {
  await c.query(`create function pgw_try(b bytea, enc text) returns text language plpgsql as $$
    begin return convert_from(b, enc); exception when others then return null; end $$`)
  const single: Record<string, string> = {}
  for (const e of SINGLE) {
    const rows = await c.query(`select pgw_try(set_byte('\\x00'::bytea,0,i), $1) t from generate_series(128,255) i order by i`, [e])
    single[e] = rows.map((r: any) => r.t ?? '\uffff').join('')
    if ([...single[e]].length !== 128) throw new Error(e)
  }
  const multi: Record<string, { overrides: Array<[string, string]>; rejects: Array<[number, number]> }> = {}
  for (const [e, spec] of Object.entries(MULTI)) {
    const rows = await c.query(`select encode(b,'hex') h, pgw_try(b, $1) t from (
       select set_byte('\\x00'::bytea,0,i) b from generate_series(128,255) i
       union all select set_byte(set_byte('\\x0000'::bytea,0,i),1,j) from generate_series(128,255) i, generate_series(1,255) j
       union all select set_byte(set_byte(set_byte('\\x000000'::bytea,0,143),1,i),2,j) from generate_series(128,255) i, generate_series(128,255) j where $1 = 'EUC_JP'
       union all select set_byte(set_byte(set_byte(set_byte('\\x00000000'::bytea,0,i),1,j),2,k),3,l) from generate_series(129,254) i, generate_series(48,57) j, generate_series(129,254) k, generate_series(48,57) l where $1 = 'GB18030'
       ) s`, [e])
    const dec = new TextDecoder(spec.label, { fatal: true })
    const overrides: Array<[string, string]> = []
    const bad: number[] = []
    for (const r of rows as Array<{ h: string; t: string | null }>) {
      const b = [...Buffer.from(r.h, 'hex')]
      if (b.length !== spec.mblen(b)) continue
      let d: string | null
      try { d = dec.decode(Buffer.from(b)) } catch { d = null }
      if (d !== null && ([...d].length !== 1 || (spec.pua && /[\ue000-\uf8ff]/.test(d)))) d = null
      if (r.t === d) continue
      if (r.t === null) bad.push(parseInt(r.h, 16))
      else overrides.push([r.h, r.t])
    }
    bad.sort((a, b) => a - b)
    const rejects: Array<[number, number]> = []
    for (const k of bad) {
      const last = rejects[rejects.length - 1]
      if (last && last[1] + 1 === k) last[1] = k
      else rejects.push([k, k])
    }
    multi[e] = { overrides, rejects }
    console.log(e, rows.length, 'overrides', overrides.length, 'reject ranges', rejects.length, bad.length)
  }
  const hex = (n: number) => n.toString(16)
  let out = `/**
 * PostgreSQL 15's own conversions to UTF8, where Node's decoders differ
 * (see client-encoding.ts). GENERATED from a PostgreSQL 15 server's
 * convert_from() by test/harness/gen-client-encoding-tables.ts
 * (npx tsx test/harness/gen-client-encoding-tables.ts); do not edit by hand.
 */

/** Single-byte encodings: the characters of bytes 0x80..0xFF; U+FFFF marks a byte PostgreSQL rejects. */
export const SINGLE_BYTE_HIGH: Readonly<Record<string, string>> = {
`
  for (const [e, s] of Object.entries(single)) out += `  ${e}: ${JSON.stringify(s).replace(/[\u0080-\uffff]/g, (ch) => '\\u' + ch.charCodeAt(0).toString(16).padStart(4, '0'))},\n`
  out += `}

/**
 * Multibyte encodings decoded with a TextDecoder: the characters (bytes as
 * hex) PostgreSQL converts differently, and the ranges of characters (bytes
 * as a big-endian number, hex) PostgreSQL rejects that the decoder accepts.
 */
export const MULTIBYTE_DIFFERENCES: Readonly<Record<string, { overrides: string; rejects: string }>> = {
`
  for (const [e, m] of Object.entries(multi)) {
    const ov = m.overrides.map(([h, t]) => `${h}=${[...t].map((ch) => ch.codePointAt(0)!.toString(16)).join('+')}`).join(' ')
    const rj = m.rejects.map(([a, b]) => (a === b ? hex(a) : `${hex(a)}-${hex(b)}`)).join(' ')
    out += `  ${e}: {\n    overrides: ${JSON.stringify(ov)},\n    rejects: ${JSON.stringify(rj)},\n  },\n`
  }
  out += '}\n'
  writeFileSync(process.argv[2] ?? new URL('../../src/protocol/client-encoding-tables.ts', import.meta.url).pathname, out)
} finally { await c.stop() }
