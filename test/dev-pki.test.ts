import t from 'tap'
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import { createDevPki, ensureDevPki, issueClientCert, type DevPki } from '../src/dev/pki.js'

const cert = (file: string): X509Certificate => new X509Certificate(readFileSync(file))
const sans = (c: X509Certificate): string[] => (c.subjectAltName ?? '').split(', ')

interface TlsResult {
  serverAuthorized: boolean
  serverError: string | null
  peerCn: string | undefined
  peerSan: string | undefined
  clientError: string | null
}

/** TLS server with requestCert + CA; connect presenting the given client cert. */
async function tlsHandshake(
  pki: DevPki,
  client: { cert: string; key: string } | null,
  opts: { rejectUnauthorized?: boolean; servername?: string } = {},
): Promise<TlsResult> {
  let resolveServer: (v: { authorized: boolean; error: string | null; cn?: string; san?: string }) => void
  const serverSide = new Promise<{ authorized: boolean; error: string | null; cn?: string; san?: string }>(
    (r) => (resolveServer = r),
  )
  const server = tls.createServer(
    {
      cert: readFileSync(pki.serverCert),
      key: readFileSync(pki.serverKey),
      ca: readFileSync(pki.caCert),
      requestCert: true,
      rejectUnauthorized: opts.rejectUnauthorized ?? true,
    },
    (sock) => {
      const peer = sock.getPeerCertificate()
      resolveServer({
        authorized: sock.authorized,
        error: sock.authorizationError ? String(sock.authorizationError) : null,
        cn: peer?.subject?.CN as string | undefined,
        san: peer?.subjectaltname,
      })
      sock.end('hello')
    },
  )
  server.on('tlsClientError', (err) => resolveServer({ authorized: false, error: err.message }))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const { port } = server.address() as AddressInfo
  try {
    const clientError = await new Promise<string | null>((resolve) => {
      const sock = tls.connect({
        host: '127.0.0.1',
        port,
        servername: opts.servername ?? 'localhost',
        ca: readFileSync(pki.caCert),
        ...(client ? { cert: readFileSync(client.cert), key: readFileSync(client.key) } : {}),
      })
      sock.on('error', (err) => resolve(err.message))
      sock.on('data', () => {})
      sock.on('end', () => resolve(null))
    })
    const s = await Promise.race([
      serverSide,
      new Promise<{ authorized: boolean; error: string | null }>((r) =>
        setTimeout(() => r({ authorized: false, error: 'no server-side result' }), 2000),
      ),
    ])
    return {
      serverAuthorized: s.authorized,
      serverError: s.error,
      peerCn: (s as { cn?: string }).cn,
      peerSan: (s as { san?: string }).san,
      clientError,
    }
  } finally {
    await new Promise<void>((r) => server.close(() => r()))
  }
}

t.test('dev PKI', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgwitness-pki-test-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))

  const pki = await ensureDevPki(path.join(dir, 'pki'))
  for (const f of [pki.caCert, pki.caKey, pki.serverCert, pki.serverKey, pki.clientCert, pki.clientKey]) {
    t.ok(path.isAbsolute(f), `${path.basename(f)} is absolute`)
  }
  for (const k of [pki.caKey, pki.serverKey, pki.clientKey]) {
    t.equal(statSync(k).mode & 0o777, 0o600, `${path.basename(k)} is mode 0600`)
    t.match(readFileSync(k, 'utf8'), /-----BEGIN PRIVATE KEY-----/, 'PKCS#8 PEM')
  }

  const ca = cert(pki.caCert)
  const server = cert(pki.serverCert)
  const client = cert(pki.clientCert)

  t.test('CA', async (t) => {
    t.equal(ca.ca, true, 'CA:TRUE')
    t.equal(ca.subject, 'CN=pgwitness dev CA')
    t.equal(ca.publicKey.asymmetricKeyType, 'ec')
    t.equal(ca.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1', 'P-256')
    t.ok(ca.verify(ca.publicKey), 'self-signed')
  })

  t.test('server certificate', async (t) => {
    t.equal(server.ca, false)
    t.equal(server.subject, 'CN=localhost')
    t.ok(server.checkIssued(ca), 'issued by the CA')
    t.ok(server.verify(ca.publicKey), 'signed by the CA key')
    t.ok(sans(server).includes('DNS:localhost'), 'SAN localhost')
    t.ok(sans(server).includes('IP Address:127.0.0.1'), 'SAN 127.0.0.1')
    t.ok(sans(server).some((s) => /^IP Address:(::1|0:0:0:0:0:0:0:1)$/i.test(s)), 'SAN ::1')
    t.equal(server.checkHost('localhost'), 'localhost')
    t.equal(server.checkIP('127.0.0.1'), '127.0.0.1')
    t.same(server.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'EKU serverAuth')
    const days = (Date.parse(server.validTo) - Date.now()) / 86_400_000
    t.ok(days > 820 && days <= 826, `valid ~825 days (${days.toFixed(1)})`)
  })

  t.test('client certificate', async (t) => {
    t.equal(client.subject, 'CN=dev-client')
    t.ok(client.checkIssued(ca) && client.verify(ca.publicKey), 'issued by the CA')
    t.same(sans(client), ['URI:spiffe://dev.pgwitness.local/ns/default/sa/dev-client'], 'URI SAN = SPIFFE id')
    t.same(client.keyUsage, ['1.3.6.1.5.5.7.3.2'], 'EKU clientAuth')
  })

  t.test('mutual TLS handshake', async (t) => {
    const r = await tlsHandshake(pki, { cert: pki.clientCert, key: pki.clientKey })
    t.equal(r.clientError, null, 'client verified the server (localhost)')
    t.equal(r.serverAuthorized, true, 'server accepted the client cert')
    t.equal(r.peerCn, 'dev-client')
    t.equal(r.peerSan, 'URI:spiffe://dev.pgwitness.local/ns/default/sa/dev-client')

    const byIp = await tlsHandshake(pki, { cert: pki.clientCert, key: pki.clientKey }, { servername: '' })
    t.equal(byIp.clientError, null, 'server cert also valid for 127.0.0.1')

    const none = await tlsHandshake(pki, null, { rejectUnauthorized: false })
    t.equal(none.serverAuthorized, false, 'no client cert -> not authorized')
  })

  t.test('ensureDevPki reuses valid files, recreates otherwise', async (t) => {
    const before = readFileSync(pki.caCert, 'utf8')
    const again = await ensureDevPki(pki.dir)
    t.same(again, pki)
    t.equal(readFileSync(pki.caCert, 'utf8'), before, 'reused')

    const other = await ensureDevPki(pki.dir, { clientSpiffeId: 'spiffe://example.org/other' })
    t.not(readFileSync(other.caCert, 'utf8'), before, 'recreated when options differ')
    t.ok(sans(cert(other.clientCert)).includes('URI:spiffe://example.org/other'))

    const cur = readFileSync(other.serverCert, 'utf8')
    writeFileSync(other.serverKey, 'garbage')
    await ensureDevPki(pki.dir, { clientSpiffeId: 'spiffe://example.org/other' })
    t.not(readFileSync(other.serverCert, 'utf8'), cur, 'recreated when a key is broken')
    t.ok(cert(other.serverCert).checkPrivateKey((await import('node:crypto')).createPrivateKey(readFileSync(other.serverKey))))
  })

  t.test('createDevPki overwrites, custom names', async (t) => {
    const d = path.join(dir, 'custom')
    const a = await createDevPki(d, { serverNames: ['pgwitness.test', 'db.local'], clientCn: 'svc', days: 10 })
    const first = readFileSync(a.caCert, 'utf8')
    const s = cert(a.serverCert)
    t.equal(s.subject, 'CN=pgwitness.test')
    t.ok(sans(s).includes('DNS:db.local') && sans(s).includes('IP Address:127.0.0.1'))
    t.equal(cert(a.clientCert).subject, 'CN=svc')
    const b = await createDevPki(d)
    t.not(readFileSync(b.caCert, 'utf8'), first, 'new CA')
  })
})

t.test('issueClientCert', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgwitness-pki-test-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const pki = await createDevPki(dir)
  const ca = cert(pki.caCert)

  const alice = await issueClientCert(pki, 'alice', { spiffeId: 'spiffe://dev.pgwitness.local/ns/prod/sa/alice' })
  t.equal(alice.cert, path.join(pki.dir, 'alice.crt'))
  t.equal(statSync(alice.key).mode & 0o777, 0o600)
  const ac = cert(alice.cert)
  t.equal(ac.subject, 'CN=alice')
  t.ok(ac.checkIssued(ca) && ac.verify(ca.publicKey))
  t.same(sans(ac), ['URI:spiffe://dev.pgwitness.local/ns/prod/sa/alice'])
  t.same(ac.keyUsage, ['1.3.6.1.5.5.7.3.2'])
  const ok = await tlsHandshake(pki, alice)
  t.equal(ok.serverAuthorized, true, 'accepted by mTLS server')
  t.equal(ok.peerCn, 'alice')

  const nosan = await issueClientCert(pki, 'nosan', { cn: 'Plain Client' })
  t.equal(cert(nosan.cert).subject, 'CN=Plain Client')
  t.equal(cert(nosan.cert).subjectAltName, undefined, 'no SAN without spiffeId')

  const srv = await issueClientCert(pki, 'wrong-eku', { eku: 'serverAuth', spiffeId: 'spiffe://x/y' })
  t.same(cert(srv.cert).keyUsage, ['1.3.6.1.5.5.7.3.1'])
  const wrongEku = await tlsHandshake(pki, srv, { rejectUnauthorized: false })
  t.equal(wrongEku.serverAuthorized, false, 'serverAuth-only cert is not a valid client cert')

  const expired = await issueClientCert(pki, 'expired', { spiffeId: 'spiffe://x/expired', days: -1 })
  const ec = cert(expired.cert)
  t.ok(Date.parse(ec.validTo) < Date.now(), 'notAfter in the past')
  t.ok(Date.parse(ec.validFrom) < Date.parse(ec.validTo), 'notBefore before notAfter')
  t.ok(ec.verify(ca.publicKey))
  const exp = await tlsHandshake(pki, expired, { rejectUnauthorized: false })
  t.equal(exp.serverAuthorized, false)
  t.equal(exp.serverError, 'CERT_HAS_EXPIRED')

  const future = new Date(Date.now() + 7 * 86_400_000)
  const nyv = await issueClientCert(pki, 'not-yet-valid', {
    notBefore: future,
    notAfter: new Date(future.getTime() + 86_400_000),
  })
  t.ok(Date.parse(cert(nyv.cert).validFrom) > Date.now(), 'notBefore in the future')
  const nyvR = await tlsHandshake(pki, nyv, { rejectUnauthorized: false })
  t.equal(nyvR.serverError, 'CERT_NOT_YET_VALID')

  const short = await issueClientCert(pki, 'short', { days: 2 })
  const left = (Date.parse(cert(short.cert).validTo) - Date.now()) / 86_400_000
  t.ok(left > 1.9 && left <= 2.01, 'days honoured')

  // a cert from another CA is rejected
  const otherDir = path.join(dir, 'other')
  const other = await createDevPki(otherDir)
  const foreign = await tlsHandshake(pki, { cert: other.clientCert, key: other.clientKey }, { rejectUnauthorized: false })
  t.equal(foreign.serverAuthorized, false, 'client cert from another CA not authorized')

  await t.rejects(issueClientCert(pki, '../evil', {}), /invalid certificate name/)
  await t.rejects(issueClientCert(pki, 'x', { spiffeId: 'spiffe://a/b,DNS:evil' }), /unsupported characters/)
})
