/**
 * A local syslog receiver over TCP or TLS that parses octet-counted frames
 * (RFC 6587 3.4.1: `LEN SP MSG`) and keeps every message. The test can stop
 * it (listener closed, connections destroyed) and start it again on the
 * same port.
 */
import net from 'node:net'
import tls from 'node:tls'
import { listen, shutDown } from './sink-outage.js'

export interface SyslogReceiver {
  readonly port: number
  /** Every MSG received, in arrival order (duplicates kept). */
  readonly messages: string[]
  /** Framing errors seen (should stay empty). */
  readonly errors: string[]
  stop(): Promise<void>
  start(): Promise<void>
}

export async function startSyslogReceiver(o: { tls?: { cert: string; key: string }; port?: number } = {}): Promise<SyslogReceiver> {
  const messages: string[] = []
  const errors: string[] = []
  const sockets = new Set<net.Socket>()
  let server: net.Server | null = null
  let port = o.port ?? 0

  const onConnection = (s: net.Socket) => {
    sockets.add(s)
    let buf = Buffer.alloc(0)
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      for (;;) {
        const sp = buf.indexOf(0x20)
        if (sp < 0) break
        const lenText = buf.subarray(0, sp).toString('ascii')
        if (!/^[1-9]\d{0,8}$/.test(lenText)) {
          errors.push(`bad frame length ${JSON.stringify(lenText.slice(0, 20))}`)
          s.destroy()
          return
        }
        const len = Number(lenText)
        if (buf.length < sp + 1 + len) break
        messages.push(buf.subarray(sp + 1, sp + 1 + len).toString('utf8'))
        buf = buf.subarray(sp + 1 + len)
      }
    })
    s.on('error', () => undefined)
    s.on('close', () => sockets.delete(s))
  }

  const start = async () => {
    const srv = o.tls ? tls.createServer({ cert: o.tls.cert, key: o.tls.key }, onConnection) : net.createServer(onConnection)
    port = await listen(srv, port)
    server = srv
  }

  const receiver: SyslogReceiver = {
    get port() {
      return port
    },
    messages,
    errors,
    async stop() {
      const srv = server
      server = null
      if (srv !== null) await shutDown(srv, sockets)
    },
    start,
  }
  await start()
  return receiver
}
