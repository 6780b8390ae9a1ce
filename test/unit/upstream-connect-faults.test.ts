/**
 * Upstream connects that go wrong in ways that must end cleanly, against
 * fake servers (connect.ts):
 *
 * - A physical walsender's session id is derived from the second its
 *   backend started (physicalSessionId); when the connect spans a second
 *   boundary that second is ambiguous and the proxy connects again, at most
 *   three times. That ambiguity used to be detected after the startup
 *   exchange had let go of the socket: the connect never settled, and at
 *   connect_timeout the timer destroyed a socket nobody listened to — an
 *   unhandled 'error' that crashed the proxy (seen in CI under
 *   test/e2e/replication-shutdown.test.ts on a loaded machine).
 * - A cancel request's timeout covered only the TCP connect, so an upstream
 *   stalling the TLS handshake held the cancel (and the client's cancel
 *   connection) for good.
 */
import net from 'node:net'
import t from 'tap'
import { connectUpstream, sendUpstreamCancel, UpstreamError } from '../../src/upstream/connect.js'

function msg(type: string, body: Buffer): Buffer {
  const h = Buffer.alloc(5)
  h.write(type, 0, 'latin1')
  h.writeInt32BE(body.length + 4, 1)
  return Buffer.concat([h, body])
}
const authOk = msg('R', Buffer.from([0, 0, 0, 0]))
const keyData = msg('K', Buffer.from([0, 0, 0x30, 0x39, 0, 0, 0, 7]))
const ready = msg('Z', Buffer.from('I'))

// A fake server answers a replication login just after the next second starts, every time: each attempt is ambiguous.
t.test('an ambiguous walsender start second: connected again, then refused; never a hang or a crash', async (t) => {
  let logins = 0
  const server = net.createServer((sock) => {
    sock.on('error', () => undefined)
    sock.once('data', () => {
      logins++
      // Just past the next second boundary: the connect began in the second before.
      setTimeout(() => sock.write(Buffer.concat([authOk, keyData, ready])), 1000 - (Date.now() % 1000) + 20)
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => server.close())
  const port = (server.address() as net.AddressInfo).port
  const t0 = Date.now()
  const err = await connectUpstream(
    { host: '127.0.0.1', port, tls: { mode: 'disable', ca: null, servername: null }, roles: {}, connectTimeoutMs: 4000 },
    { role: 'app', database: 'appdb', password: null, parameters: { replication: 'true' } },
  ).then(() => null, (e: unknown) => e)
  t.ok(err instanceof UpstreamError, `refused with an UpstreamError (${String(err)})`)
  t.match((err as Error).message, /start second could not be determined/)
  t.equal(logins, 3, 'three attempts')
  t.ok(Date.now() - t0 < 3 * 1100 + 1000, 'each attempt ended when its answer came, not at connect_timeout')
})

t.test('a cancel request to an upstream that stalls its TLS handshake ends at connect_timeout', async (t) => {
  const held: net.Socket[] = []
  const stalling = net.createServer((sock) => {
    held.push(sock)
    sock.on('error', () => undefined)
    sock.once('data', () => sock.write('S')) // yes to SSLRequest, then the ClientHello is never answered
  })
  await new Promise<void>((r) => stalling.listen(0, '127.0.0.1', r))
  t.teardown(() => {
    for (const s of held) s.destroy()
    stalling.close()
  })
  const port = (stalling.address() as net.AddressInfo).port
  const t0 = Date.now()
  const outcome = await Promise.race([
    sendUpstreamCancel({ host: '127.0.0.1', port, tls: { mode: 'require', ca: null, servername: null }, roles: {}, connectTimeoutMs: 500 }, 4711, 42)
      .then(() => 'done', (e: Error) => `failed: ${e.message}`),
    new Promise<string>((r) => setTimeout(() => r('still waiting after 5 s'), 5000).unref()),
  ])
  t.not(outcome, 'still waiting after 5 s', `the cancel ended (${outcome})`)
  t.ok(Date.now() - t0 < 2500, 'at about connect_timeout')
})
