/**
 * The client-facing handshake, end to end: SSLRequest/TLS, GSSENCRequest,
 * protocol 3.2 negotiation, the handshake timeout, plaintext refusal,
 * buffer stuffing, malformed startup packets and invalid replication requests.
 * Every refused client must never cause a connection to PostgreSQL (checked
 * with log_connections), and every audit record written must be schema-valid.
 */
import { readFileSync } from 'node:fs'
import path from 'node:path'
import pino from 'pino'
import pg from 'pg'
import t from 'tap'
import { parseConfig } from '../../src/config/load.js'
import type { PgwitnessConfig } from '../../src/config/types.js'
import { ProxyServer } from '../../src/server.js'
import { readAuditLog, readValidAuditLog, recordsOfType, waitForRecords } from '../helpers/audit.js'
import { startFixture, type Fixture } from '../helpers/proxy.js'
import {
  errorFields,
  GSSENC_REQUEST,
  RawClient,
  serialize,
  SSL_REQUEST,
  startupMessage,
  type NegotiateProtocolVersion,
  type RawMessage,
} from '../helpers/raw-client.js'

const LOG_CONNECTIONS = { pg: { settings: { log_connections: 'on' } } }

/** Connections PostgreSQL has received so far (log_connections). */
function upstreamConnections(f: Fixture): number {
  return f.pg.readLog().split('\n').filter((l) => l.includes('connection received:')).length
}

let appSeq = 0
function appName(tag: string): string {
  return `hs-${tag}-${++appSeq}`
}

/** The auth.failure record for the attempt made with this application_name. */
async function authFailureFor(auditPath: string, application: string) {
  const recs = await waitForRecords(auditPath, (rs) =>
    recordsOfType(rs, 'auth.failure').some((r) => r.requested.application_name === application))
  return recordsOfType(recs, 'auth.failure').find((r) => r.requested.application_name === application)!
}

/** TLS, StartupMessage, password: returns every message up to the first ReadyForQuery or ErrorResponse. */
async function rawLogin(c: RawClient, token: string, params: Record<string, string>, minor = 0): Promise<RawMessage[]> {
  c.write(startupMessage(params, 3, minor))
  const out: RawMessage[] = []
  for (;;) {
    const m = await c.next()
    out.push(m)
    if (m.type === 'E' || m.type === 'Z') return out
    if (m.type === 'R' && m.msg.name === 'authenticationCleartextPassword') c.write(serialize.password(token))
  }
}

/** Run a simple query on a logged-in raw client; returns the DataRow fields. */
async function rawQuery(c: RawClient, sql: string): Promise<unknown[][]> {
  c.write(serialize.query(sql))
  const msgs = await c.until('Z')
  const err = msgs.find((m) => m.type === 'E')
  if (err) throw new Error(`query failed: ${errorFields(err).message}`)
  return msgs.filter((m) => m.type === 'D').map((m) => (m.msg as unknown as { fields: unknown[] }).fields)
}

t.test('handshake', async (t) => {
  const f = await startFixture(LOG_CONNECTIONS)
  t.teardown(() => f.stop())
  t.teardown(() => {
    // Every record the tests produced, including those of refused clients.
    readValidAuditLog(f.auditPath)
  })

  t.test('TLS via SSLRequest: a pg client with ssl works and session.start records the TLS version', async (t) => {
    const app = appName('tls')
    const c = await f.client({ applicationName: app })
    const r = await c.query('select 1 as one')
    t.same(r.rows, [{ one: 1 }])
    await c.end()
    const recs = await waitForRecords(f.auditPath, (rs) =>
      recordsOfType(rs, 'session.end').some((x) => x.session.application_name === app))
    readValidAuditLog(f.auditPath)
    const start = recordsOfType(recs, 'session.start').find((x) => x.session.application_name === app)!
    t.ok(start, 'session.start written')
    t.match(start.connection!.tls, { version: 'TLSv1.3' })
    t.type(start.connection!.tls?.cipher, 'string')
    t.ok(start.connection!.tls!.cipher.length > 0, 'cipher recorded')
    t.equal(start.connection!.tls?.client_cert_sha256, null, 'no client certificate')
    t.equal(start.connection!.client.address, '127.0.0.1')
  })

  t.test('GSSENCRequest gets N and the client continues with SSLRequest and a startup', async (t) => {
    const before = upstreamConnections(f)
    const c = await RawClient.connect(f.proxy.port)
    t.teardown(() => c.destroy())
    c.write(GSSENC_REQUEST)
    t.equal(await c.readByte(), 'N', 'GSS encryption declined')
    t.equal(c.pending, 0, 'nothing but the one byte')
    await c.startTls()
    const app = appName('gssenc')
    const msgs = await rawLogin(c, await f.token(), { user: 'app', database: 'appdb', application_name: app })
    t.equal(msgs[0]!.type, 'R', 'a protocol 3.0 startup without options gets no NegotiateProtocolVersion')
    t.equal(msgs[0]!.msg.name, 'authenticationCleartextPassword')
    t.ok(msgs.some((m) => m.msg.name === 'authenticationOk'), 'AuthenticationOk')
    t.equal(msgs.at(-1)!.type, 'Z', 'ReadyForQuery')
    t.same(await rawQuery(c, 'select 40 + 2'), [['42']])
    c.write(serialize.end())
    t.ok(await c.waitClosed(), 'closed after Terminate')
    const recs = await waitForRecords(f.auditPath, (rs) =>
      recordsOfType(rs, 'session.end').some((x) => x.session.application_name === app))
    const end = recordsOfType(recs, 'session.end').find((x) => x.session.application_name === app)!
    t.equal(end.statements, 1)
    t.equal(upstreamConnections(f), before + 1, 'exactly one upstream connection for the session')
  })

  t.test('a client that sends Terminate and waits for the close is recorded as client_closed', async (t) => {
    // Drivers differ: some send Terminate and close at once, others wait for
    // the server to close. Either way the client ended the session.
    const c = await RawClient.connect(f.proxy.port)
    t.teardown(() => c.destroy())
    await c.startTls()
    const app = appName('terminate')
    const msgs = await rawLogin(c, await f.token(), { user: 'app', database: 'appdb', application_name: app })
    t.equal(msgs.at(-1)!.type, 'Z')
    c.write(serialize.end())
    t.ok(await c.waitClosed(), 'the proxy closes the connection after Terminate')
    const recs = await waitForRecords(f.auditPath, (rs) =>
      recordsOfType(rs, 'session.end').some((x) => x.session.application_name === app))
    const end = recordsOfType(recs, 'session.end').find((x) => x.session.application_name === app)!
    t.equal(end.reason, 'client_closed', 'session.end reason after a client Terminate')
    t.equal(end.detail, null, 'no "upstream server closed" detail: the client ended the session')
  })

  t.test('protocol 3.2 with a _pq_ option gets NegotiateProtocolVersion, then works', async (t) => {
    const c = await RawClient.connect(f.proxy.port)
    t.teardown(() => c.destroy())
    await c.startTls()
    const app = appName('v32')
    const msgs = await rawLogin(c, await f.token(), { user: 'app', database: 'appdb', application_name: app, '_pq_.foo': 'bar' }, 2)
    const types = msgs.map((m) => m.type)
    t.equal(types[0], 'v', 'NegotiateProtocolVersion first')
    const npv = msgs[0]!.msg as NegotiateProtocolVersion
    t.equal(npv.newestMinor, 0, 'the proxy speaks 3.0')
    t.same(npv.options, ['_pq_.foo'], 'the unrecognized option is listed')
    t.equal(msgs[1]!.msg.name, 'authenticationCleartextPassword', 'then the password prompt')
    t.ok(msgs.some((m) => m.msg.name === 'authenticationOk'), 'AuthenticationOk')
    t.ok(msgs.some((m) => m.type === 'S'), 'ParameterStatus')
    const key = msgs.find((m) => m.type === 'K')
    t.ok(key, 'BackendKeyData')
    t.equal(key!.raw.length, 1 + 4 + 4 + 4, 'a 4-byte cancel key, as negotiated for 3.0')
    t.equal(msgs.at(-1)!.type, 'Z', 'ReadyForQuery')
    t.notOk(msgs.some((m) => m.type === 'E'), 'no error')
    t.same(await rawQuery(c, 'select x from generate_series(1, 3) x'), [['1'], ['2'], ['3']])
    c.write(serialize.end())
    t.ok(await c.waitClosed())
    const recs = await waitForRecords(f.auditPath, (rs) =>
      recordsOfType(rs, 'session.end').some((x) => x.session.application_name === app))
    const st = recordsOfType(recs, 'statement').filter((x) => x.session.application_name === app)
    t.same(st.map((s) => [s.statement.text, s.outcome.rows]), [['select x from generate_series(1, 3) x', 3]])
  })

  t.test('protocol 3.2 without options gets NegotiateProtocolVersion with an empty option list', async (t) => {
    const c = await RawClient.connect(f.proxy.port)
    t.teardown(() => c.destroy())
    await c.startTls()
    const msgs = await rawLogin(c, await f.token(), { user: 'app', database: 'appdb', application_name: appName('v32b') }, 2)
    t.equal(msgs[0]!.type, 'v')
    t.same(msgs[0]!.msg, { name: 'negotiateProtocolVersion', newestMinor: 0, options: [] })
    t.equal(msgs.at(-1)!.type, 'Z')
    t.same(await rawQuery(c, 'select 1'), [['1']])
  })

  t.test('plaintext clients are refused before any password is asked for', async (t) => {
    const before = upstreamConnections(f)
    const app = appName('plain')
    const token = await f.token()
    const err = await f.client({ ssl: false, token, applicationName: app }).then(
      () => null,
      (e: pg.DatabaseError) => e,
    )
    t.ok(err, 'connect failed')
    t.equal(err!.code, '28000')
    t.equal(err!.severity, 'FATAL')
    t.match(err!.message, /encrypt/i)
    t.notOk(err!.message.includes(token))
    const rec = await authFailureFor(f.auditPath, app)
    t.equal(rec.reason, 'tls_required')
    t.equal(rec.method, 'none')
    t.equal(rec.connection!.tls, null)
    t.same(rec.requested, { user: 'app', database: 'appdb', application_name: app })

    // Raw: the very first answer to a plaintext StartupMessage is the error, never a password prompt.
    const c = await RawClient.connect(f.proxy.port)
    t.teardown(() => c.destroy())
    const rawApp = appName('plain-raw')
    c.write(startupMessage({ user: 'app', database: 'appdb', application_name: rawApp }))
    const msgs = await c.readToClose()
    t.same(msgs.map((m) => m.type), ['E'], 'only an ErrorResponse, then close')
    t.equal(errorFields(msgs[0]!).code, '28000')
    // Its record is written after the close: wait for it, so the next test's count of auth.failure records is stable.
    t.equal((await authFailureFor(f.auditPath, rawApp)).reason, 'tls_required')
    t.equal(upstreamConnections(f), before, 'nothing reached PostgreSQL')
    readValidAuditLog(f.auditPath)
  })

  t.test('bytes sent after SSLRequest before the TLS handshake are refused (buffer stuffing)', async (t) => {
    const before = upstreamConnections(f)
    const failuresBefore = recordsOfType(readAuditLog(f.auditPath), 'auth.failure').length
    const c = await RawClient.connect(f.proxy.port)
    t.teardown(() => c.destroy())
    // One write: the SSLRequest and a plaintext StartupMessage behind it.
    c.write(Buffer.concat([SSL_REQUEST, startupMessage({ user: 'app', database: 'appdb' })]))
    const msgs = await c.readToClose()
    t.same(msgs.map((m) => m.type), ['E'], "no 'S': an ErrorResponse, then close")
    const e = errorFields(msgs[0]!)
    t.equal(e.code, '08P01')
    t.equal(e.severity, 'FATAL')
    t.ok(c.closed)
    t.equal(upstreamConnections(f), before, 'nothing reached PostgreSQL')
    // Still serving.
    const ok = await f.client({ applicationName: appName('after-stuffing') })
    t.same((await ok.query('select 1 as x')).rows, [{ x: 1 }])
    await ok.end()
    t.equal(recordsOfType(readValidAuditLog(f.auditPath), 'auth.failure').length, failuresBefore,
      'no auth.failure: the client never said who it is')
  })

  t.test('before a StartupMessage is complete the proxy answers as PostgreSQL does: silence, or its FATAL', async (t) => {
    // Each case is sent to PostgreSQL directly as well (first: the log_connections count starts after).
    // PostgreSQL closes without a word on an impossible length word (garbage, an HTTP request, a
    // Terminate sent first) and on any CancelRequest; it answers a bad StartupMessage with a FATAL.
    const int32 = (n: number) => {
      const b = Buffer.alloc(4)
      b.writeInt32BE(n)
      return b
    }
    const withLength = (body: Buffer) => Buffer.concat([int32(4 + body.length), body])
    const version = (major: number, minor: number) => int32((major << 16) | minor)
    const TERMINATE = Buffer.from([0x58, 0, 0, 0, 4])
    // [name, bytes, the client ends its side after sending, expected answer]
    const cases: [string, Buffer, boolean, string][] = [
      ['length 4 (< 8)', Buffer.concat([int32(4), Buffer.alloc(4)]), false, 'silent'],
      ['length 7 (< 8)', Buffer.concat([int32(7), Buffer.alloc(4)]), false, 'silent'],
      ['length 0', Buffer.alloc(8), false, 'silent'],
      ['negative length', Buffer.concat([int32(-1), Buffer.alloc(4)]), false, 'silent'],
      ['length 10005 (> 10004)', Buffer.concat([int32(10005), version(3, 0)]), false, 'silent'],
      ['length 100000, body sent', Buffer.concat([int32(100000), version(3, 0), Buffer.alloc(20000, 0x61)]), false, 'silent'],
      ['length 10004, incomplete, then the client ends', Buffer.concat([int32(10004), version(3, 0)]), true, 'silent'],
      ['HTTP request (garbage)', Buffer.from('GET / HTTP/1.1\r\nHost: example\r\n\r\n'), false, 'silent'],
      ['TLS ClientHello without SSLRequest (garbage)', Buffer.from('16030100c8010000c40303', 'hex'), false, 'silent'],
      ['Terminate before anything else', TERMINATE, false, 'silent'],
      ['Terminate, then the client ends', TERMINATE, true, 'silent'],
      ['two bytes, then the client ends', Buffer.from([0, 0]), true, 'silent'],
      ['CancelRequest without a key', withLength(int32(80877102)), false, 'silent'],
      ['CancelRequest with a pid but no key', withLength(Buffer.concat([int32(80877102), int32(1)])), false, 'silent'],
      ['protocol 1234.5678 (the CancelRequest code) with parameters', startupMessage({ user: 'app' }, 1234, 5678), false, 'silent'],
      ['random garbage with a plausible length', Buffer.concat([int32(24), Buffer.from('\x7f\x01\x02\x03garbage!garbage!', 'latin1')]), false, 'E:0A000'],
      ['protocol 4.0', withLength(Buffer.concat([version(4, 0), Buffer.from('user\0app\0\0')])), false, 'E:0A000'],
      ['missing user', startupMessage({ database: 'appdb' }), false, 'E:28000'],
      ['empty user', startupMessage({ user: '', database: 'appdb' }), false, 'E:28000'],
      ['no terminator', withLength(Buffer.concat([version(3, 0), Buffer.from('user\0app\0')])), false, 'E:08P01'],
      ['name without value', withLength(Buffer.concat([version(3, 0), Buffer.from('user\0app\0database\0')])), false, 'E:08P01'],
      ['bytes after the terminator', withLength(Buffer.concat([version(3, 0), Buffer.from('user\0app\0\0junk')])), false, 'E:08P01'],
    ]
    const answer = async (port: number, bytes: Buffer, clientEnds: boolean): Promise<string> => {
      const c = await RawClient.connect(port)
      try {
        c.write(bytes)
        if (clientEnds) c.raw.end()
        const msgs = await c.readToClose(5000)
        if (msgs.length === 0) return c.pending === 0 ? 'silent' : `${c.pending} unframed bytes`
        return msgs.map((m) => (m.type === 'E' ? `E:${errorFields(m).code}` : m.type)).join(',')
      } catch (err) {
        return (err as Error).message
      } finally {
        c.destroy()
      }
    }
    for (const [name, bytes, clientEnds, expected] of cases) {
      t.equal(await answer(f.pg.port, bytes, clientEnds), expected, `PostgreSQL: ${name}: ${expected}`)
    }
    // Not compared: protocol 2.0 (PostgreSQL answers in the old protocol's format), invalid UTF-8 in a
    // parameter (PostgreSQL accepts it; the proxy refuses it, 08P01).
    const protocol2 = withLength(Buffer.concat([version(2, 0), Buffer.from('user\0app\0\0')]))
    const invalidUtf8 = withLength(Buffer.concat([version(3, 0), Buffer.from('user\0'), Buffer.from([0xc3, 0x28]), Buffer.from('\0\0')]))

    const before = upstreamConnections(f)
    // An established session stays usable throughout.
    const held = await f.client({ applicationName: appName('held') })
    const afterHeld = upstreamConnections(f)
    t.equal(afterHeld, before + 1)
    for (const [name, bytes, clientEnds, expected] of cases) {
      t.equal(await answer(f.proxy.port, bytes, clientEnds), expected, `proxy: ${name}: ${expected}`)
    }
    t.equal(await answer(f.proxy.port, protocol2, false), 'E:0A000', 'proxy: protocol 2.0: 0A000')
    t.equal(await answer(f.proxy.port, invalidUtf8, false), 'E:08P01', 'proxy: invalid UTF-8: 08P01')
    // An SSLRequest with a body is answered like any SSLRequest (PostgreSQL does too, with N: it has no TLS here).
    {
      const c = await RawClient.connect(f.proxy.port)
      c.write(withLength(Buffer.concat([int32(80877103), Buffer.alloc(4)])))
      t.equal(await c.readByte(), 'S', 'SSLRequest with a body: S')
      c.destroy()
    }
    // Also: a connection that opens and closes without a byte (a TCP health probe).
    const probe = await RawClient.connect(f.proxy.port)
    probe.destroy()

    t.same((await held.query('select 2 as two')).rows, [{ two: 2 }], 'the established session still works')
    const fresh = await f.client({ applicationName: appName('after-malformed') })
    t.same((await fresh.query('select 3 as three')).rows, [{ three: 3 }], 'a new client works')
    await fresh.end()
    await held.end()
    t.equal(upstreamConnections(f), afterHeld + 1, 'the malformed attempts never reached PostgreSQL')
    readValidAuditLog(f.auditPath)
  })

  t.test('inside TLS, before a StartupMessage: garbage or a Terminate closes silently; a repeated SSLRequest or GSSENCRequest gets FATAL 0A000', async (t) => {
    const tlsAnswer = async (bytes: Buffer): Promise<string> => {
      const c = await RawClient.connect(f.proxy.port)
      try {
        await c.startTls()
        c.write(bytes)
        const msgs = await c.readToClose(5000)
        if (msgs.length === 0) return c.pending === 0 ? 'silent' : `${c.pending} unframed bytes`
        return msgs.map((m) => (m.type === 'E' ? `E:${errorFields(m).code}` : m.type)).join(',')
      } finally {
        c.destroy()
      }
    }
    t.equal(await tlsAnswer(Buffer.from([0x58, 0, 0, 0, 4])), 'silent', 'Terminate')
    t.equal(await tlsAnswer(Buffer.from('GET / HTTP/1.1\r\n\r\n')), 'silent', 'garbage')
    t.equal(await tlsAnswer(SSL_REQUEST), 'E:0A000', 'SSLRequest again (PostgreSQL: unsupported frontend protocol 1234.5679)')
    t.equal(await tlsAnswer(GSSENC_REQUEST), 'E:0A000', 'GSSENCRequest after TLS')
    // Plaintext: GSSENCRequest declined once; a second one is an unsupported protocol version, as in PostgreSQL.
    const c = await RawClient.connect(f.proxy.port)
    t.teardown(() => c.destroy())
    c.write(GSSENC_REQUEST)
    t.equal(await c.readByte(), 'N')
    c.write(GSSENC_REQUEST)
    const msgs = await c.readToClose()
    t.same(msgs.map((m) => (m.type === 'E' ? `E:${errorFields(m).code}` : m.type)), ['E:0A000'], 'a second GSSENCRequest: FATAL 0A000')
  })

  t.test('a replication connection is asked for its token like any other; an invalid replication value is refused', async (t) => {
    const before = upstreamConnections(f)
    for (const mode of ['database', 'true']) {
      const c = await RawClient.connect(f.proxy.port)
      t.teardown(() => c.destroy())
      await c.startTls()
      c.write(startupMessage({ user: 'app', database: 'appdb', replication: mode, application_name: appName(`repl-${mode}`) }))
      t.equal(await c.readByte(), 'R', `replication=${mode}: the proxy asks for the token (policy decides: test/e2e/replication.test.ts)`)
    }
    const c = await RawClient.connect(f.proxy.port)
    t.teardown(() => c.destroy())
    await c.startTls()
    const app = appName('repl-bogus')
    c.write(startupMessage({ user: 'app', database: 'appdb', replication: 'bogus', application_name: app }))
    const msgs = await c.readToClose()
    t.same(msgs.map((m) => m.type), ['E'], 'replication=bogus: refused before any password prompt')
    const e = errorFields(msgs[0]!)
    t.equal(e.severity, 'FATAL')
    t.equal(e.code, '22023', 'as PostgreSQL: invalid_parameter_value')
    t.match(e.message, /invalid value for parameter "replication": "bogus"/)
    const rec = await authFailureFor(f.auditPath, app)
    t.equal(rec.reason, 'startup_rejected')
    t.same(rec.requested, { user: 'app', database: 'appdb', application_name: app })
    t.equal(upstreamConnections(f), before, 'nothing reached PostgreSQL')
    readValidAuditLog(f.auditPath)
  })

  t.test('a client cannot set the proxy-reserved pgwitness.* settings', async (t) => {
    const before = upstreamConnections(f)
    for (const params of [{ 'pgwitness.session_id': 'forged' }, { options: '-c pgwitness.session_id=forged' }] as Record<string, string>[]) {
      const c = await RawClient.connect(f.proxy.port)
      t.teardown(() => c.destroy())
      await c.startTls()
      const app = appName('reserved')
      const msgs = await rawLogin(c, await f.token(), { user: 'app', database: 'appdb', application_name: app, ...params })
      const last = msgs.at(-1)!
      t.equal(last.type, 'E', `${JSON.stringify(params)} refused`)
      t.equal(errorFields(last).code, '42501')
      t.notOk(msgs.some((m) => m.msg.name === 'authenticationOk'))
      const rec = await authFailureFor(f.auditPath, app)
      t.equal(rec.reason, 'startup_rejected')
    }
    t.equal(upstreamConnections(f), before, 'nothing reached PostgreSQL')
  })

  t.test('tls.allow_plaintext_loopback lets a plaintext loopback client in', async (t) => {
    // A second proxy in front of the same cluster, from the fixture's own
    // config file with the key added under tls: (a cluster per config would
    // make this file slow).
    const yaml = readFileSync(path.join(f.dir, 'pgwitness.yaml'), 'utf8')
    const withKey = yaml.replace(/^tls:\n((?:  .*\n)+)/m, 'tls:\n$1  allow_plaintext_loopback: true\n')
    t.not(withKey, yaml, 'the key was added')
    const parsed = parseConfig(withKey, { baseDir: f.dir, source: null })
    t.equal(parsed.tls.allowPlaintextLoopback, true)
    const auditPath = path.join(f.dir, 'audit', 'loopback.jsonl')
    const proxy = await ProxyServer.start({ ...parsed, audit: { ...parsed.audit, log: auditPath } }, pino({ level: 'silent' }))
    t.teardown(() => proxy.stop())
    const connect = async (ssl: boolean, application_name: string) => {
      const c = new pg.Client({
        host: '127.0.0.1', port: proxy.port, user: 'app', database: 'appdb', application_name,
        password: await f.token(), ssl: ssl ? { rejectUnauthorized: false } : false,
      })
      c.on('error', () => undefined)
      await c.connect()
      return c
    }
    const app = appName('loopback')
    const c = await connect(false, app)
    t.same((await c.query('select 1 as one')).rows, [{ one: 1 }])
    await c.end()
    const tlsApp = appName('loopback-tls')
    const c2 = await connect(true, tlsApp)
    t.same((await c2.query('select 2 as two')).rows, [{ two: 2 }], 'TLS still works too')
    await c2.end()
    const recs = await waitForRecords(auditPath, (rs) =>
      recordsOfType(rs, 'session.end').filter((x) => [app, tlsApp].includes(x.session.application_name ?? '')).length === 2)
    readValidAuditLog(auditPath)
    const start = recordsOfType(recs, 'session.start').find((x) => x.session.application_name === app)!
    t.equal(start.connection!.tls, null, 'recorded as plaintext')
    t.equal(start.connection!.client.address, '127.0.0.1')
    t.equal(recordsOfType(recs, 'session.start').find((x) => x.session.application_name === tlsApp)!.connection!.tls?.version, 'TLSv1.3')
    t.equal(recordsOfType(recs, 'auth.failure').length, 0)
  })

  t.test('handshake timeout', async (t) => {
    // Second proxies in front of the same cluster with a short limits.handshake_timeout
    // (cheaper than a second fixture with its own cluster).
    const startProxy = async (handshakeTimeoutMs: number, auditPath: string) => {
      const config: PgwitnessConfig = {
        ...f.config,
        limits: { ...f.config.limits, handshakeTimeoutMs },
        audit: { ...f.config.audit, log: auditPath },
      }
      const proxy = await ProxyServer.start(config, pino({ level: 'silent' }))
      t.teardown(() => proxy.stop())
      return proxy
    }
    const auditPath = path.join(f.dir, 'audit', 'timeout.jsonl')
    const proxy = await startProxy(300, auditPath)
    // (b) needs the TLS handshake and the StartupMessage to get through before
    // the timer fires; on a loaded machine 300 ms is too tight for that.
    const slowAuditPath = path.join(f.dir, 'audit', 'timeout-1s.jsonl')
    const slowProxy = await startProxy(1000, slowAuditPath)
    const before = upstreamConnections(f)

    // (a) connects and sends nothing: closed after ~300 ms without a word (as PostgreSQL's
    // authentication_timeout before a startup packet), no auth.failure.
    {
      const t0 = Date.now()
      const c = await RawClient.connect(proxy.port)
      t.teardown(() => c.destroy())
      t.ok(await c.waitClosed(2000), 'a silent client is disconnected')
      t.equal(c.pending, 0, 'without an ErrorResponse')
      const elapsed = Date.now() - t0
      t.ok(elapsed >= 250, `not before the timeout (${elapsed} ms)`)
      t.ok(elapsed < 1500, `within ~1 s (${elapsed} ms)`)
    }
    // (a') SSLRequest, then no TLS handshake: also disconnected.
    {
      const t0 = Date.now()
      const c = await RawClient.connect(proxy.port)
      t.teardown(() => c.destroy())
      c.write(SSL_REQUEST)
      t.equal(await c.readByte(), 'S')
      t.ok(await c.waitClosed(2000), 'a client stalling before its TLS handshake is disconnected')
      t.equal(c.pending, 0, 'without a word')
      t.ok(Date.now() - t0 < 1500, `within ~1 s (${Date.now() - t0} ms)`)
    }
    // (b) StartupMessage, then stalls at the password prompt: FATAL, close, auth.failure handshake_timeout.
    const app = appName('stall')
    {
      // The timer runs from the TCP accept.
      const t0 = Date.now()
      const c = await RawClient.connect(slowProxy.port)
      t.teardown(() => c.destroy())
      await c.startTls()
      c.write(startupMessage({ user: 'app', database: 'appdb', application_name: app }))
      const first = await c.next()
      t.equal(first.msg.name, 'authenticationCleartextPassword', 'asked for the token')
      const rest = await c.readToClose(3000)
      const elapsed = Date.now() - t0
      t.same(rest.map((m) => m.type), ['E'], 'an ErrorResponse, then close')
      const e = errorFields(rest[0]!)
      t.equal(e.severity, 'FATAL')
      t.match(e.message, /within 1000 ms/)
      t.ok(c.closed, 'closed')
      t.ok(elapsed >= 950 && elapsed < 2500, `after the timeout (${elapsed} ms)`)
    }
    t.equal(recordsOfType(readValidAuditLog(auditPath), 'auth.failure').length, 0,
      'no auth.failure for clients that never sent a StartupMessage')
    const rec = await authFailureFor(slowAuditPath, app)
    t.equal(rec.reason, 'handshake_timeout')
    t.same(rec.requested, { user: 'app', database: 'appdb', application_name: app })
    t.match(rec.connection!.tls, { version: 'TLSv1.3' })
    t.equal(recordsOfType(readValidAuditLog(slowAuditPath), 'auth.failure').length, 1)

    // Positive control for the log_connections check: a complete client
    // (through the fixture's proxy; under load a full login can take longer
    // than 300 ms) is seen by PostgreSQL.
    const c = await f.client({ applicationName: appName('after-timeouts') })
    t.same((await c.query('select 1 as one')).rows, [{ one: 1 }])
    await c.end()
    t.equal(upstreamConnections(f), before + 1, 'only the complete client reached PostgreSQL')
    await proxy.stop()
    await slowProxy.stop()
    readValidAuditLog(auditPath)
    readValidAuditLog(slowAuditPath)
  })
})
