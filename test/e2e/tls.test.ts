/**
 * Issue 8 item 5: client-facing TLS. Only TLS 1.2 and 1.3 are accepted, and
 * for TLS 1.2 only forward-secret AEAD suites (ECDHE with AES-GCM or
 * ChaCha20-Poly1305): TLS 1.0/1.1 clients and clients offering only CBC or
 * RSA-key-exchange suites are refused during the handshake. Each refusal has
 * a positive control: the same client connects to a permissive TLS server
 * with the same certificate, so the refusal is the proxy's and not a client
 * that cannot speak the protocol at all. A password message sent before TLS
 * is never looked at.
 *
 * Upstream certificate hostname checks in verify-full (a certificate that
 * does not name the configured host is refused) are in upstream.test.ts.
 */
import { readFileSync } from 'node:fs'
import net from 'node:net'
import tls from 'node:tls'
import t from 'tap'
import { serialize } from 'pg-protocol/dist/serializer'
import { CLIENT_TLS12_CIPHERS } from '../../src/server.js'
import { readValidAuditLog, recordsOfType, waitForRecords } from '../helpers/audit.js'
import { startFixture } from '../helpers/proxy.js'
import { errorFields, RawClient, startupMessage } from '../helpers/raw-client.js'

const f = await startFixture({ pg: { settings: { log_connections: 'on' } } })
t.teardown(() => f.stop())
const upstreamConnections = () => f.pg.readLog().split('\n').filter((l) => l.includes('connection received:')).length

type Outcome = { ok: true; version: string; cipher: string } | { ok: false; error: string }

/** TLS to the proxy after its SSLRequest, with the given client options. */
async function viaProxy(o: tls.ConnectionOptions): Promise<Outcome> {
  const raw = net.connect(f.proxy.port, '127.0.0.1')
  raw.on('error', () => undefined)
  await new Promise<void>((r) => raw.once('connect', () => r()))
  raw.write(serialize.requestSsl())
  const answer = await new Promise<Buffer>((r) => raw.once('data', r))
  if (answer.toString() !== 'S') throw new Error('SSLRequest refused')
  return handshake(tls.connect({ socket: raw, rejectUnauthorized: false, ...o }))
}

function handshake(s: tls.TLSSocket): Promise<Outcome> {
  return new Promise((resolve) => {
    s.once('secureConnect', () => {
      const out: Outcome = { ok: true, version: s.getProtocol() ?? '?', cipher: s.getCipher().name }
      s.destroy()
      resolve(out)
    })
    s.once('error', (e: Error & { code?: string }) => {
      s.destroy()
      resolve({ ok: false, error: `${e.code ?? ''} ${e.message}` })
    })
  })
}

/** The positive control: a TLS server that accepts anything, with the proxy's own certificate. */
const lax = tls.createServer({
  cert: readFileSync(f.pki.serverCert), key: readFileSync(f.pki.serverKey),
  minVersion: 'TLSv1', ciphers: 'ALL:@SECLEVEL=0',
}, (s) => s.on('error', () => undefined).end())
lax.on('tlsClientError', () => undefined)
await new Promise<void>((r) => lax.listen(0, '127.0.0.1', r))
t.teardown(() => new Promise<void>((r) => lax.close(() => r())))
const viaLax = (o: tls.ConnectionOptions) =>
  handshake(tls.connect({ port: (lax.address() as net.AddressInfo).port, host: '127.0.0.1', rejectUnauthorized: false, ...o }))

t.test('protocol versions: TLS 1.0 and 1.1 are refused, 1.2 and 1.3 accepted', async (t) => {
  for (const version of ['TLSv1', 'TLSv1.1'] as const) {
    const old: tls.ConnectionOptions = { minVersion: version, maxVersion: version, ciphers: 'ALL:@SECLEVEL=0' }
    const control = await viaLax(old)
    t.match(control, { ok: true, version }, `control: this client does speak ${version} (${JSON.stringify(control)})`)
    const r = await viaProxy(old)
    t.equal(r.ok, false, `${version} refused by the proxy`)
    t.match(!r.ok && r.error, /PROTOCOL_VERSION|protocol version|UNSUPPORTED_PROTOCOL|no protocols available/i, `with a protocol version alert: ${!r.ok && r.error}`)
  }
  t.match(await viaProxy({ minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' }), { ok: true, version: 'TLSv1.2', cipher: /^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/ }, 'TLS 1.2: an ECDHE AEAD suite')
  t.match(await viaProxy({}), { ok: true, version: 'TLSv1.3' }, 'TLS 1.3 by default')
})

t.test('TLS 1.2 cipher suites: only forward-secret AEAD ones', async (t) => {
  for (const c of CLIENT_TLS12_CIPHERS.split(':')) {
    t.match(c, /^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/, `${c}: ECDHE key exchange, AEAD cipher`)
  }
  const weak: Array<[string, string]> = [
    ['ECDHE-ECDSA-AES128-SHA', 'CBC with SHA-1'],
    ['ECDHE-ECDSA-AES256-SHA384', 'CBC with SHA-384'],
    ['ECDHE-ECDSA-AES128-SHA256', 'CBC with SHA-256'],
  ]
  for (const [cipher, what] of weak) {
    const o: tls.ConnectionOptions = { maxVersion: 'TLSv1.2', ciphers: `${cipher}:@SECLEVEL=0` }
    t.match(await viaLax(o), { ok: true, cipher }, `control: ${cipher} works against a permissive server`)
    const r = await viaProxy(o)
    t.equal(r.ok, false, `${cipher} (${what}) refused`)
    t.match(!r.ok && r.error, /HANDSHAKE_FAILURE|handshake failure|no shared cipher/i, `handshake failure: ${!r.ok && r.error}`)
  }
  for (const cipher of CLIENT_TLS12_CIPHERS.split(':').filter((c) => c.includes('ECDSA'))) {
    t.match(await viaProxy({ maxVersion: 'TLSv1.2', ciphers: cipher }), { ok: true, version: 'TLSv1.2', cipher }, `${cipher} accepted (the dev certificate is ECDSA)`)
  }
})

t.test('the negotiated version and suite are recorded', async (t) => {
  const c = await RawClient.connect(f.proxy.port)
  t.teardown(() => c.destroy())
  c.write(serialize.requestSsl())
  t.equal(await c.readByte(), 'S')
  c.raw.removeAllListeners('data')
  const s = tls.connect({ socket: c.raw, rejectUnauthorized: false, maxVersion: 'TLSv1.2' })
  await new Promise<void>((r) => s.once('secureConnect', () => r()))
  const app = 'tls-recorded'
  s.write(startupMessage({ user: 'app', database: 'appdb', application_name: app }))
  await new Promise((r) => s.once('data', r))
  s.end(serialize.password(await f.token()))
  const recs = await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'session.end').some((r) => r.session.application_name === app))
  const start = recordsOfType(recs, 'session.start').find((r) => r.session.application_name === app)!
  t.match(start.connection!.tls, { version: 'TLSv1.2', cipher: /^ECDHE-ECDSA-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$|^TLS_ECDHE_ECDSA_WITH_/ })
})

t.test('a password message before TLS is never looked at', async (t) => {
  const before = upstreamConnections()
  const token = await f.token()
  const app = 'tls-pipelined-password'
  // A plaintext StartupMessage with a valid token pipelined behind it, in one write.
  const c = await RawClient.connect(f.proxy.port)
  t.teardown(() => c.destroy())
  c.write(Buffer.concat([startupMessage({ user: 'app', database: 'appdb', application_name: app }), serialize.password(token)]))
  const msgs = await c.readToClose()
  t.same(msgs.map((m) => m.type), ['E'], 'one ErrorResponse, then the close')
  t.match(errorFields(msgs[0]!), { severity: 'FATAL', code: '28000', message: /encrypted connection/ })
  const recs = await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'auth.failure').some((r) => r.requested.application_name === app))
  const rec = recordsOfType(recs, 'auth.failure').find((r) => r.requested.application_name === app)!
  t.match(rec, { reason: 'tls_required', method: 'none', identity: null }, 'refused for the plaintext; the token was not even verified')

  // A password message as the very first bytes (no StartupMessage): its type byte and length
  // read as a startup packet length of ~1.9 GB, refused at once with PostgreSQL's silence
  // (the server logs "invalid length of startup packet" as COMMERROR and sends nothing).
  const c2 = await RawClient.connect(f.proxy.port)
  t.teardown(() => c2.destroy())
  c2.write(serialize.password(token))
  const msgs2 = await c2.readToClose()
  t.same(msgs2.map((m) => m.type), [], 'closed without a reply, as PostgreSQL does')

  // An SSLRequest with a password message stuffed behind it, before the handshake.
  const c3 = await RawClient.connect(f.proxy.port)
  t.teardown(() => c3.destroy())
  c3.write(Buffer.concat([serialize.requestSsl(), serialize.password(token)]))
  const msgs3 = await c3.readToClose()
  t.same(msgs3.map((m) => m.type), ['E'], "no 'S': refused before any TLS")
  t.match(errorFields(msgs3[0]!), { code: '08P01', message: /unencrypted data after SSL request/ })

  t.equal(upstreamConnections(), before, 'nothing reached PostgreSQL')
  t.notOk(readFileSync(f.auditPath, 'utf8').includes(token.split('.')[2]!), 'the token appears nowhere in the audit log')
  readValidAuditLog(f.auditPath)
})
