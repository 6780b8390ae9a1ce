/**
 * A throwaway NATS server with JetStream (`nats-server -js`, Debian package
 * nats-server) on a free loopback port with its own store folder. The test
 * can kill it (SIGKILL, like a crash) and start it again on the same port
 * with the same store, and read back what a stream holds.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { connect, type StoredMsg } from 'nats'
import { freePort } from '../harness/net.js'

const CANDIDATES = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server']

/** The nats-server binary, or null when it is not installed. */
export function natsServerBinary(): string | null {
  for (const c of CANDIDATES) if (existsSync(c)) return c
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const p = path.join(dir, 'nats-server')
    if (dir && existsSync(p)) return p
  }
  return null
}

export interface NatsServer {
  readonly port: number
  readonly url: string
  readonly storeDir: string
  readonly running: boolean
  /** Kill the server (SIGKILL by default: a crash) and wait for it to exit. */
  stop(signal?: NodeJS.Signals): Promise<void>
  /** Start it again: same port, same store. */
  start(): Promise<void>
  /** Stop and remove the store. */
  dispose(): Promise<void>
}

export async function startNatsServer(): Promise<NatsServer> {
  const bin = natsServerBinary()
  if (bin === null) throw new Error('nats-server is not installed (Debian package nats-server; .ci/run installs it)')
  const port = await freePort()
  const storeDir = mkdtempSync(path.join(os.tmpdir(), 'pgw-nats-'))
  let child: ChildProcess | null = null
  let output = ''

  const start = async (): Promise<void> => {
    output = ''
    const c = spawn(bin, ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', storeDir], { stdio: ['ignore', 'pipe', 'pipe'] })
    child = c
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        c.kill('SIGKILL')
        reject(new Error(`nats-server did not become ready within 20 s:\n${output}`))
      }, 20_000)
      const onData = (d: Buffer) => {
        output += d.toString('utf8')
        if (output.includes('Server is ready')) {
          clearTimeout(timer)
          resolve()
        }
      }
      c.stdout!.on('data', onData)
      c.stderr!.on('data', onData)
      c.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`nats-server exited (${code}) before it was ready:\n${output}`))
      })
    })
  }

  const server: NatsServer = {
    port,
    url: `nats://127.0.0.1:${port}`,
    storeDir,
    get running() {
      return child !== null && child.exitCode === null && child.signalCode === null
    },
    async stop(signal: NodeJS.Signals = 'SIGKILL') {
      const c = child
      child = null
      if (c === null || c.exitCode !== null || c.signalCode !== null) return
      const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()))
      c.kill(signal)
      await exited
    },
    start,
    async dispose() {
      await server.stop()
      rmSync(storeDir, { recursive: true, force: true })
    },
  }
  await start()
  return server
}

/** Every message a stream holds, in order (fetched one by one with the stream API). */
export async function streamMessages(url: string, stream: string): Promise<StoredMsg[]> {
  const nc = await connect({ servers: url, timeout: 5000 })
  try {
    const jsm = await nc.jetstreamManager()
    const info = await jsm.streams.info(stream)
    const out: StoredMsg[] = []
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
      try {
        out.push(await jsm.streams.getMessage(stream, { seq }))
      } catch (err) {
        // A deleted message leaves a hole in the stream's sequence.
        if (!/no message found/i.test((err as Error).message)) throw err
      }
    }
    return out
  } finally {
    await nc.close()
  }
}

/** How many messages a stream holds (0 when it does not exist yet). */
export async function streamCount(url: string, stream: string): Promise<number> {
  const nc = await connect({ servers: url, timeout: 5000 })
  try {
    const jsm = await nc.jetstreamManager()
    try {
      return (await jsm.streams.info(stream)).state.messages
    } catch {
      return 0
    }
  } finally {
    await nc.close()
  }
}
