/**
 * Helpers for the hostile-input, fault and load tests (issue 8): a TCP
 * forwarder in front of PostgreSQL that records what the proxy sends it (and
 * can slow it down), a second proxy in front of it sharing the fixture's
 * cluster, polling with a deadline, and counters of what this process holds
 * open (sockets, timers, file descriptors).
 */
import { readdirSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import pino from 'pino'
import type { PgwitnessConfig } from '../../src/config/types.js'
import { ProxyServer } from '../../src/server.js'
import { parseExposition, sum } from './metrics.js'
import type { Fixture } from './proxy.js'

export interface ForwardedConnection {
  id: number
  /** Every byte the proxy sent towards PostgreSQL on this connection. */
  toServer: Buffer[]
  toServerBytes: number
  toClientBytes: number
  closed: boolean
  /** Delay for this connection only (overrides the forwarder's delayMs when set). */
  delayMs: number | null
  /** Everything sent towards the server, as one buffer. */
  sent(): Buffer
}

export interface TcpForwarder {
  port: number
  connections: ForwardedConnection[]
  /** Delay (ms) added before each chunk from the server is passed on; 0 = none. */
  delayMs: number
  /** Connections not closed yet. */
  readonly open: number
  close(): Promise<void>
}

/** A TCP forwarder to 127.0.0.1:targetPort recording each connection's traffic. */
export async function startForwarder(targetPort: number): Promise<TcpForwarder> {
  const sockets = new Set<net.Socket>()
  const connections: ForwardedConnection[] = []
  const fwd: TcpForwarder = {
    port: 0,
    connections,
    delayMs: 0,
    get open() {
      return connections.filter((c) => !c.closed).length
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
  const server = net.createServer((client) => {
    const conn: ForwardedConnection = {
      id: connections.length,
      toServer: [],
      toServerBytes: 0,
      toClientBytes: 0,
      closed: false,
      delayMs: null,
      sent: () => Buffer.concat(conn.toServer),
    }
    connections.push(conn)
    const upstream = net.connect(targetPort, '127.0.0.1')
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('error', () => undefined)
      s.on('close', () => {
        sockets.delete(s)
        client.destroy()
        upstream.destroy()
        conn.closed = true
      })
    }
    client.on('data', (b: Buffer) => {
      conn.toServer.push(Buffer.from(b))
      conn.toServerBytes += b.length
      upstream.write(b)
    })
    // Server to client, in order, each chunk after delayMs.
    let chain = Promise.resolve()
    upstream.on('data', (b: Buffer) => {
      const delay = conn.delayMs ?? fwd.delayMs
      if (delay === 0) {
        conn.toClientBytes += b.length
        client.write(b)
        return
      }
      upstream.pause()
      chain = chain.then(() => new Promise<void>((r) => setTimeout(r, delay))).then(() => {
        conn.toClientBytes += b.length
        client.write(b)
        upstream.resume()
      })
    })
    client.on('end', () => upstream.end())
    upstream.on('end', () => client.end())
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  fwd.port = (server.address() as net.AddressInfo).port
  return fwd
}

/**
 * A second proxy sharing the fixture's cluster, PKI and issuer, with config
 * changes (e.g. upstream port → a forwarder, other limits) and its own audit log.
 */
export async function secondProxy(f: Fixture, name: string, change: (c: PgwitnessConfig) => PgwitnessConfig): Promise<{ proxy: ProxyServer; auditPath: string }> {
  const auditPath = path.join(f.dir, 'audit', `${name}.jsonl`)
  const config = change({ ...f.config, audit: { ...f.config.audit, log: auditPath } })
  const proxy = await ProxyServer.start(config, pino({ level: process.env.PGW_TEST_LOG ?? 'silent' }, pino.destination(2)))
  return { proxy, auditPath }
}

/** Polls probe() until ok(value), at most timeoutMs; returns the value or throws naming `what` and the last value. */
export async function until<T>(what: string, probe: () => T | Promise<T>, ok: (v: T) => boolean, timeoutMs = 15_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await probe()
    if (ok(v)) return v
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(v)})`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}

/** pgwitness_connections_active of a proxy (its own registry, no HTTP listener needed). */
export async function activeConnections(proxy: ProxyServer): Promise<number> {
  return sum(parseExposition(await proxy.metrics.exposition()), 'pgwitness_connections_active')
}

export interface OpenResources {
  /** TCP sockets and servers (libuv TCPSocketWrap / TCPServerWrap) keeping this process alive. */
  tcp: number
  /** Referenced timers. */
  timers: number
  /** Open file descriptors of this process. */
  fds: number
}

export function openResources(): OpenResources {
  const info = process.getActiveResourcesInfo()
  return {
    tcp: info.filter((r) => r.startsWith('TCP')).length,
    timers: info.filter((r) => r === 'Timeout').length,
    fds: readdirSync('/proc/self/fd').length,
  }
}

/** Backends of the fixture cluster other than the asking one, optionally of one role. */
export async function backends(f: Fixture, role?: string): Promise<Array<{ pid: number; state: string | null; wait_event: string | null; application_name: string }>> {
  return f.pg.query(
    `select pid, state, wait_event, application_name from pg_stat_activity
      where pid <> pg_backend_pid() and backend_type = 'client backend'${role ? ' and usename = $1' : ''}`,
    role ? [role] : [],
  )
}
