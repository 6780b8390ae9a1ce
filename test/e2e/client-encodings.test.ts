/**
 * Client encodings through the proxy: every client encoding PostgreSQL 15
 * accepts, round-tripped through a real server. The bytes of a sample text in
 * each encoding come from the server itself (convert_to); they are sent as a
 * Query and as a Parse + Bind with a text parameter, with that client_encoding
 * set, and the records must hold the UTF-8 text the server ran. Plus the
 * attacks a UTF-8-only proxy misses: SJIS trail bytes that look like a
 * backslash, and standard_conforming_strings = off.
 */
import t from 'tap'
import { CLIENT_ENCODINGS } from '../../src/protocol/client-encoding.js'
import type { StatementRecord } from '../../src/evidence/types.js'
import { readValidAuditLog, recordsOfType, waitForRecords } from '../helpers/audit.js'
import { startFixture } from '../helpers/proxy.js'
import { WireClient } from '../helpers/wire.js'

/** Encodings without an exact decoder: their records must carry the bytes as sent. */
const INEXACT = new Set(['EUC_TW', 'EUC_JIS_2004', 'SHIFT_JIS_2004', 'JOHAB', 'UHC'])

/** Words in many scripts: each encoding's sample is the ones it can represent. */
const WORDS = ['café', '€', 'Ωμέγα', 'Привет', 'Київ', 'שלום', 'مرحبا', 'ไทย', 'Tiếng', 'Łódź', 'Ağır', 'Šiška', 'õun', 'Ŵ', 'ß', '日本語', 'ｶﾅ', '中文', '繁體', '한국어', '½', 'ä']

function message(type: string, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts)
  const head = Buffer.alloc(5)
  head.write(type, 0, 'latin1')
  head.writeInt32BE(body.length + 4, 1)
  return Buffer.concat([head, body])
}
const z = Buffer.from([0])
const ascii = (s: string) => Buffer.from(s, 'latin1')
const queryBytes = (text: Buffer) => message('Q', text, z)
const int16 = (n: number) => Buffer.from([n >> 8, n & 0xff])
const int32 = (n: number) => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b }
/** Parse (unnamed) + Bind of one text parameter + Execute + Sync, with the text and the value as raw bytes. */
function extendedBytes(text: Buffer, value: Buffer): Buffer {
  return Buffer.concat([
    message('P', z, text, z, int16(0)),
    message('B', z, z, int16(0), int16(1), int32(value.length), value, int16(0)),
    message('E', z, int32(0)),
    message('S'),
  ])
}

t.test('every client encoding round-trips into the record', async (t) => {
  const f = await startFixture()
  t.teardown(() => f.stop())
  await f.pg.query(`create function pgw_to(t text, enc text) returns bytea language plpgsql as $$
    declare b bytea;
    begin
      b := convert_to(t, enc);
      -- Only what the server reads back as the same text (GBK writes the euro sign as 0x80 but refuses to read it).
      return case when convert_from(b, enc) = t then b end;
    exception when others then return null; end $$`, [], 'appdb')
  const c = await WireClient.connect({ port: f.proxy.port, token: await f.token() })
  t.teardown(() => c.destroy())

  const expected: Array<{ enc: string; text: string; sent: Buffer; param: string; paramSent: Buffer }> = []
  for (const enc of CLIENT_ENCODINGS) {
    const set = await c.query(`SET client_encoding TO '${enc}'`)
    if (enc === 'MULE_INTERNAL') {
      // A UTF8 server has no conversion to MULE_INTERNAL: PostgreSQL refuses it, so no client can use it.
      t.ok(set.some((m) => m.name === 'error'), 'MULE_INTERNAL is refused by a UTF8 server', { messages: set })
      continue
    }
    t.notOk(set.some((m) => m.name === 'error'), `client_encoding ${enc} accepted`)
    const rows = await f.pg.query('select w, pgw_to(w, $1) b from unnest($2::text[]) w', [enc, WORDS], 'appdb')
    const usable = rows.filter((r: { b: Buffer | null }) => r.b !== null)
    t.ok(usable.some((r: { w: string }) => /[^\x00-\x7f]/.test(r.w)), `${enc}: a non-ASCII sample`)
    const sample = usable.map((r: { w: string }) => r.w).join(' ')
    const sampleBytes = Buffer.concat(usable.flatMap((r: { b: Buffer }, i: number) => (i === 0 ? [r.b] : [ascii(' '), r.b])))
    const alias = `v_${enc.toLowerCase()}`
    const text = `SELECT '${sample}' AS ${alias}`
    const sent = Buffer.concat([ascii("SELECT '"), sampleBytes, ascii(`' AS ${alias}`)])
    const simple = await (c.send(queryBytes(sent)), c.untilReady())
    t.notOk(simple.some((m) => m.name === 'error'), `${enc}: the server ran the query`)
    const ptext = `SELECT $1::text AS ${alias}_p`
    const ext = await (c.send(extendedBytes(ascii(ptext), sampleBytes)), c.untilReady())
    t.notOk(ext.some((m) => m.name === 'error'), `${enc}: the server ran the extended query`)
    expected.push({ enc, text, sent, param: sample, paramSent: sampleBytes })
  }
  await c.query("SET client_encoding TO 'UTF8'")
  await c.end()

  const recs = await waitForRecords(f.auditPath, (rs) => rs.some((r) => r.type === 'session.end'))
  readValidAuditLog(f.auditPath)
  const statements = recordsOfType(recs, 'statement')
  for (const e of expected) {
    const alias = `v_${e.enc.toLowerCase()}`
    const simple = statements.find((s) => s.statement.protocol === 'simple' && s.statement.text?.endsWith(`AS ${alias}`))
    const ext = statements.find((s) => s.statement.protocol === 'extended' && s.statement.text?.endsWith(`AS ${alias}_p`))
    t.ok(simple && ext, `${e.enc}: both statements recorded`)
    if (!simple || !ext) continue
    t.equal(simple.statement.text_encoding, e.enc === 'UTF8' ? undefined : e.enc, `${e.enc}: text_encoding`)
    t.equal(ext.statement.text_encoding, e.enc === 'UTF8' ? undefined : e.enc, `${e.enc}: text_encoding (extended)`)
    const param = (ext.statement.parameters as Array<{ value: string; raw_base64?: string }>)[0]!
    if (INEXACT.has(e.enc)) {
      t.equal(simple.statement.text_raw_base64, e.sent.toString('base64'), `${e.enc}: no exact decoder, the bytes as sent are kept`)
      t.equal(param.raw_base64, e.paramSent.toString('base64'), `${e.enc}: the parameter's bytes as sent are kept`)
      t.match(simple.statement.text, /^SELECT '[^']*' AS /, `${e.enc}: the text splits as the server's`)
    } else {
      t.equal(simple.statement.text, e.text, `${e.enc}: the text as the server ran it`)
      t.equal(simple.statement.text_raw_base64, undefined, `${e.enc}: exact, no raw bytes`)
      t.same(param, { format: 'text', value: e.param }, `${e.enc}: the parameter as the server read it`)
    }
  }
})

t.test('the server decides how a text splits: SJIS, latin9, standard_conforming_strings = off', async (t) => {
  const f = await startFixture()
  t.teardown(() => f.stop())
  const c = await WireClient.connect({ port: f.proxy.port, token: await f.token() })
  t.teardown(() => c.destroy())
  const run = async (bytes: Buffer) => (c.send(queryBytes(bytes)), c.untilReady())

  // latin9: 0xA4 is the euro sign (as two Queries: the setting is in force for the second).
  await c.query('SET client_encoding TO latin9')
  t.notOk((await run(Buffer.from([...ascii("SELECT '"), 0xa4, ...ascii("' AS euro")]))).some((m) => m.name === 'error'))

  // SJIS: 0x95 0x5C is one character (表) whose trail byte is a backslash in ASCII.
  await c.query('SET client_encoding TO SJIS')
  const sjis = (rest: string) => Buffer.from([...ascii("SELECT E'"), 0x95, 0x5c, ...ascii(`'; ${rest}; -- '`)])
  const harmless = await run(sjis("SET work_mem = '7MB'"))
  t.equal(harmless.filter((m) => m.name === 'commandComplete').length, 2, 'the server ran two statements')
  await run(sjis("SET application_name = 'evil'"))
  await c.query('SET client_encoding TO UTF8')
  const wm = await c.query('SHOW work_mem')
  t.equal(wm.find((m) => m.name === 'dataRow')?.fields?.[0], '7MB', 'the SET hidden after the SJIS literal ran')

  // standard_conforming_strings = off: the backslash escapes the quote, so this is one SELECT.
  await c.query('SET standard_conforming_strings = off')
  const one = await c.query("SELECT 'a\\'; SET work_mem = ''8MB''; --' AS scs")
  t.equal(one.filter((m) => m.name === 'commandComplete').length, 1, 'the server ran one statement')
  await c.query('SET standard_conforming_strings = on')
  await c.end()

  const recs = await waitForRecords(f.auditPath, (rs) => rs.some((r) => r.type === 'session.end'))
  readValidAuditLog(f.auditPath)
  const st = recordsOfType(recs, 'statement') as StatementRecord[]
  const euro = st.find((s) => s.statement.text?.endsWith('AS euro'))
  t.equal(euro?.statement.text, "SELECT '€' AS euro", 'latin9 text decoded')
  t.equal(euro?.statement.text_encoding, 'LATIN9')

  const firstSjis = st.findIndex((s) => s.statement.text === "SELECT E'表';")
  t.ok(firstSjis >= 0, 'the SJIS literal recorded as the server read it')
  t.same(st.slice(firstSjis, firstSjis + 2).map((s) => [s.statement.command, s.statement.text, s.outcome.status]), [
    ['SELECT', "SELECT E'表';", 'ok'],
    ['SET', " SET work_mem = '7MB'; -- '", 'ok'],
  ], 'both statements of the SJIS query recorded, the second a SET')
  const evil = st.findIndex((s, i) => i > firstSjis + 1 && s.statement.text === "SELECT E'表';")
  const evilSet = st[evil + 1]
  // (Refused while governed settings are refused, recorded either way; what matters is that the SET is seen.)
  t.equal(evilSet?.statement.command, 'SET', 'the hidden SET application_name is recorded as a SET')
  t.equal(evilSet?.statement.text, " SET application_name = 'evil'; -- '")
  t.equal(evilSet?.statement.text_encoding, 'SJIS')

  const scs = st.filter((s) => s.statement.text?.includes('AS scs'))
  t.same(scs.map((s) => [s.statement.command, s.statement.text]), [['SELECT', "SELECT 'a\\'; SET work_mem = ''8MB''; --' AS scs"]],
    'one SELECT, as the server ran it')
  t.notOk(st.some((s) => s.statement.text?.startsWith("SET work_mem = ''8MB''")), 'no phantom SET')
})

t.test('a setting changed by a statement in flight applies to the texts pipelined behind it', async (t) => {
  const f = await startFixture()
  t.teardown(() => f.stop())
  const c = await WireClient.connect({ port: f.proxy.port, token: await f.token() })
  t.teardown(() => c.destroy())
  const readies = async (n: number) => {
    const all = []
    for (let i = 0; i < n; i++) all.push(...(await c.untilReady()))
    return all
  }
  const euro = Buffer.from([...ascii("SELECT '"), 0xa4, ...ascii("' AS pipelined_euro")])
  const sjis = Buffer.from([...ascii("SELECT E'"), 0x95, 0x5c, ...ascii("' AS pipelined_sjis; SET work_mem = '9MB'; -- '")])
  const scs = ascii("SELECT 'b\\'; SET work_mem = ''10MB''; --' AS pipelined_scs")

  // Each setting and the text it governs in one write: the proxy decodes the text before
  // the server has answered (and reported) the SET.
  c.send(queryBytes(ascii('SET client_encoding TO latin9')), queryBytes(euro))
  t.notOk((await readies(2)).some((m) => m.name === 'error'))
  c.send(queryBytes(ascii('SET client_encoding TO SJIS')), queryBytes(sjis), queryBytes(ascii('SET client_encoding TO UTF8')))
  const sj = await readies(3)
  t.equal(sj.filter((m) => m.name === 'commandComplete').length, 4, 'the server ran the SJIS text as two statements')
  // Extended protocol too: a Parse in the batch after the one that changed the setting.
  c.send(queryBytes(ascii('SET client_encoding TO latin9')), extendedBytes(ascii('SELECT $1::text AS pipelined_param'), Buffer.from([0xa4])),
    message('P', z, euro, z, int16(0)), message('B', z, z, int16(0), int16(0), int16(0)), message('E', z, int32(0)), message('S'),
    queryBytes(ascii('SET client_encoding TO UTF8')))
  t.notOk((await readies(4)).some((m) => m.name === 'error'))
  c.send(queryBytes(ascii('SET standard_conforming_strings = off')), queryBytes(scs), queryBytes(ascii('SET standard_conforming_strings = on')))
  const sc = await readies(3)
  t.equal(sc.filter((m) => m.name === 'commandComplete').length, 3, 'the server ran the scs text as one statement')
  await c.end()

  const recs = await waitForRecords(f.auditPath, (rs) => rs.some((r) => r.type === 'session.end'))
  readValidAuditLog(f.auditPath)
  const st = recordsOfType(recs, 'statement') as StatementRecord[]
  const texts = st.map((s) => [s.statement.protocol, s.statement.command, s.statement.text, s.statement.split ?? 'parser'])
  t.same(texts.filter((x) => String(x[2]).includes('pipelined')), [
    ['simple', 'SELECT', "SELECT '€' AS pipelined_euro", 'parser'],
    ['simple', 'SELECT', "SELECT E'表' AS pipelined_sjis;", 'parser'],
    ['extended', 'SELECT', 'SELECT $1::text AS pipelined_param', 'parser'],
    ['extended', 'SELECT', "SELECT '€' AS pipelined_euro", 'parser'],
    ['simple', 'SELECT', "SELECT 'b\\'; SET work_mem = ''10MB''; --' AS pipelined_scs", 'parser'],
  ], 'each text as the server read it')
  const i = st.findIndex((s) => s.statement.text === "SELECT E'表' AS pipelined_sjis;")
  t.same([st[i + 1]?.statement.command, st[i + 1]?.statement.text, st[i + 1]?.statement.text_encoding], ['SET', " SET work_mem = '9MB'; -- '", 'SJIS'],
    'the SET after the SJIS literal is its own record')
  const param = st.find((s) => s.statement.text === 'SELECT $1::text AS pipelined_param')
  const params = param?.statement.parameters
  t.same(Array.isArray(params) ? params[0] : params, { format: 'text', value: '€' }, 'parameter bytes as the server read them')
})
