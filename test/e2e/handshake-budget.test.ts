/**
 * Issue 15 item 1: unauthenticated sockets must not starve real sessions.
 * The proxy runs as its own process (pgwitness serve) with the default
 * budgets (limits.max_handshakes 200, max_handshakes_per_source 50). From
 * one address (127.0.0.1): 200 slow-TLS clients (SSLRequest, then a
 * ClientHello trickled a few bytes and stalled) and 2,000 idle TCP sockets
 * that reconnect whenever they are closed. Meanwhile a good client —
 * node-postgres with a token, from another address (127.0.0.2) — connects
 * and runs a statement within 1 s. Connections beyond the budgets are closed
 * at accept (pgwitness_handshakes_refused_total), the proxy's RSS stays
 * bounded, and once the flood is gone every budget is free again.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import pg from 'pg'
import t from 'tap'
import { freePort } from '../../src/dev/cluster.js'
import { spawnCli, waitForOutput } from '../helpers/cli.js'
import { parseExposition, sum } from '../helpers/metrics.js'
import { processProxyConfig, startFixture } from '../helpers/proxy.js'

const IDLE = 2000
const SLOW_TLS = 200
const HOSTILE = '127.0.0.1'
const GOOD = '127.0.0.2'

const f = await startFixture()
t.teardown(() => f.stop())

function openFilesLimit(): number {
  const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'))
  return Number(line?.split(/\s+/)[3] ?? 0)
}

const { configPath, port } = await processProxyConfig(f, { name: 'budget', auditLog: path.join(f.dir, 'budget', 'audit.jsonl') })
const metricsPort = await freePort()
writeFileSync(configPath, readFileSync(configPath, 'utf8') + `metrics: { listen: "127.0.0.1:${metricsPort}" }\n`)
const proc = spawnCli(['serve', '--config', configPath])
t.teardown(() => proc.kill('SIGKILL'))
await waitForOutput(proc, /pgwitness listening/)

const rssKiB = () => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'))![1])
const scrape = async () => parseExposition(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text())
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** A client socket from `from`; resolves once connected (or closed: a refusal may come first). */
function connectFrom(from: string): Promise<net.Socket> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: from })
    s.on('error', () => undefined)
    s.once('connect', () => resolve(s))
    s.once('close', () => resolve(s))
  })
}

/** The good client: node-postgres with a token, its TCP connection made from `from`. */
async function goodClient(from = GOOD): Promise<{ ms: number; n: number }> {
  const token = await f.token()
  const started = performance.now()
  const c = new pg.Client({
    host: '127.0.0.1', port, user: 'app', database: 'appdb', password: token, ssl: { rejectUnauthorized: false },
    stream: () => new BoundSocket(from),
  })
  c.on('error', () => undefined)
  await c.connect()
  const { rows } = await c.query('select 40 + 2 as n')
  const ms = performance.now() - started
  await c.end()
  return { ms, n: rows[0].n }
}

/** A net.Socket whose connect() binds the local address (node-postgres calls connect(port, host)). */
class BoundSocket extends net.Socket {
  constructor(private readonly from: string) {
    super()
  }

  override connect(...args: unknown[]): this {
    const [p, host] = args as [number, string]
    return super.connect({ port: p, host, localAddress: this.from })
  }
}

t.test(`${SLOW_TLS} slow-TLS clients and ${IDLE} idle sockets from one address do not keep a token client out`, async (t) => {
  t.ok(openFilesLimit() >= IDLE + SLOW_TLS + 500, `the open-files limit (${openFilesLimit()}) allows the flood's client ends in this process`)
  const warm = await goodClient()
  t.equal(warm.n, 42, 'the good client works before the flood')
  const rssBefore = rssKiB()

  // Slow TLS: SSLRequest, then the first bytes of a ClientHello record, then nothing.
  const slow = await Promise.all(Array.from({ length: SLOW_TLS }, async () => {
    const s = await connectFrom(HOSTILE)
    if (!s.destroyed) s.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]))
    s.once('data', () => !s.destroyed && s.write(Buffer.from([0x16, 0x03, 0x01, 0x02])))
    return s
  }))
  // Idle sockets that reconnect whenever the proxy closes them: the pressure lasts.
  let flooding = true
  let reconnects = 0
  const idle = new Set<net.Socket>()
  const keepIdle = (s: net.Socket) => {
    idle.add(s)
    s.once('close', () => {
      idle.delete(s)
      if (!flooding) return
      reconnects++
      void connectFrom(HOSTILE).then(keepIdle)
    })
  }
  for (let i = 0; i < IDLE; i += 200) {
    const batch = await Promise.all(Array.from({ length: Math.min(200, IDLE - i) }, () => connectFrom(HOSTILE)))
    batch.forEach(keepIdle)
  }
  await sleep(500)

  const during = await scrape()
  t.equal(sum(during, 'pgwitness_handshakes_in_progress'), 50, 'the hostile address holds max_handshakes_per_source (50) handshakes, no more')
  const refused = sum(during, 'pgwitness_handshakes_refused_total', { reason: 'max_handshakes_per_source' })
  t.ok(refused >= IDLE + SLOW_TLS - 50, `connections beyond the budget were closed at accept and counted (${refused})`)
  t.equal(sum(during, 'pgwitness_connections_active'), 50, 'only those 50 reached a session object')

  const times: number[] = []
  for (let i = 0; i < 5; i++) {
    const good = await goodClient()
    t.equal(good.n, 42)
    times.push(good.ms)
  }
  t.ok(Math.max(...times) < 1000, `the good client connected and ran a statement within 1 s each time, under the flood (${times.map((x) => x.toFixed(0)).join(', ')} ms; ${reconnects} reconnects so far)`)
  const rssDuring = rssKiB()
  t.ok(rssDuring - rssBefore < 64 * 1024, `proxy RSS bounded: ${(rssBefore / 1024).toFixed(0)} MiB before, ${(rssDuring / 1024).toFixed(0)} MiB under the flood`)
  t.comment(`proxy RSS ${(rssBefore / 1024).toFixed(1)} → ${(rssDuring / 1024).toFixed(1)} MiB; refused at accept ${refused}; reconnects ${reconnects}`)

  flooding = false
  for (const s of [...slow, ...idle]) s.destroy()
  const after = await (async () => {
    for (let i = 0; i < 100; i++) {
      const s = await scrape()
      if (sum(s, 'pgwitness_handshakes_in_progress') === 0 && sum(s, 'pgwitness_connections_active') === 0) return s
      await sleep(100)
    }
    return scrape()
  })()
  t.equal(sum(after, 'pgwitness_handshakes_in_progress'), 0, 'every handshake slot is free again')
  t.equal(sum(after, 'pgwitness_connections_active'), 0)
  // The hostile address may handshake again (its budget was released, not leaked).
  const again = await goodClient(HOSTILE)
  t.equal(again.n, 42)
})
