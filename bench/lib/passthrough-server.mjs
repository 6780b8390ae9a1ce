// The floor under any Node.js proxy on this machine: a bare TLS pass-through.
// It answers PostgreSQL's SSLRequest with 'S', terminates TLS, and writes every
// chunk unchanged to the upstream socket and back; nothing else (no framing,
// no parsing, no audit). Plain JavaScript on purpose: it runs under bare
// `node`, as the proxy does, so its CPU per transaction is comparable.
//   node bench/lib/passthrough-server.mjs LISTEN_PORT UPSTREAM_PORT CERT KEY
import net from 'node:net'
import tls from 'node:tls'
import { readFileSync } from 'node:fs'

const [listenPort, upstreamPort, certFile, keyFile] = process.argv.slice(2)
const secureContext = tls.createSecureContext({ cert: readFileSync(certFile), key: readFileSync(keyFile) })
const SSL_REQUEST = 80877103

function pipe(client, first) {
  const upstream = net.connect(Number(upstreamPort), '127.0.0.1')
  upstream.setNoDelay(true)
  if (first.length > 0) upstream.write(first)
  client.on('data', (chunk) => upstream.write(chunk))
  upstream.on('data', (chunk) => client.write(chunk))
  const close = () => { client.destroy(); upstream.destroy() }
  client.on('close', close).on('error', close)
  upstream.on('close', close).on('error', close)
}

net.createServer((socket) => {
  socket.setNoDelay(true)
  socket.once('data', (first) => {
    if (first.length >= 8 && first.readInt32BE(4) === SSL_REQUEST) {
      socket.write('S')
      const secure = new tls.TLSSocket(socket, { isServer: true, secureContext })
      secure.once('secure', () => pipe(secure, Buffer.alloc(0)))
      secure.on('error', () => socket.destroy())
    } else {
      pipe(socket, first)
    }
  })
  socket.on('error', () => socket.destroy())
}).listen(Number(listenPort), '127.0.0.1')
