/** Starts bench/lib/passthrough-server.mjs, the bare TLS pass-through target (the floor under pgwitness). */
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from '../../test/harness/net.js'
import { startService, waitForPort, type Tracked } from './procs.js'

export interface Passthrough {
  port: number
  pid: number
  proc: Tracked
}

const SERVER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'passthrough-server.mjs')

export async function startPassthrough(o: { upstreamPort: number; cert: string; key: string }): Promise<Passthrough> {
  const port = await freePort()
  const proc = startService('passthrough', process.execPath, [SERVER, String(port), String(o.upstreamPort), o.cert, o.key])
  await waitForPort(port, 10_000, () => proc.child.exitCode === null && proc.child.signalCode === null)
  return { port, pid: proc.pid, proc }
}
