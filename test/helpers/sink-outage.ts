/**
 * Shared by the sink end-to-end tests: waiting for a condition with a
 * deadline, running statements while a sink goes down and comes back, and
 * the listen/stop of the local receivers the tests control.
 */
import type net from 'node:net'
import type pg from 'pg'
import { readFileSync } from 'node:fs'
import { listLogFiles } from '../../src/ledger/log-files.js'
import type { AuditRecord } from '../../src/evidence/types.js'

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Poll `ok` until it holds; throw naming `what` after `timeoutMs`. */
export async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

/**
 * Run `total` statements on `c`, one after another; after `downAt` of them
 * call `down()` (the sink goes away), after `upAt` wait for `whileDown()` and
 * call `up()`. The proxy must keep relaying throughout.
 */
export async function statementsThroughOutage(c: pg.Client, o: {
  total: number
  downAt: number
  upAt: number
  down: () => Promise<void>
  up: () => Promise<void>
  whileDown?: () => Promise<void>
}): Promise<void> {
  let done = 0
  const work = (async () => {
    for (let i = 0; i < o.total; i++) {
      await c.query(`select ${i} as n`)
      done++
      await sleep(10)
    }
  })()
  await until(`${o.downAt} statements`, () => done >= o.downAt)
  await o.down()
  await until(`${o.upAt} statements`, () => done >= o.upAt)
  await o.whileDown?.()
  await o.up()
  await work
}

/** The whole log, rotated files first: every line and its parsed record (a line still being written is left out). */
export function readWholeLog(activePath: string): { lines: string[]; records: AuditRecord[] } {
  const lines: string[] = []
  for (const f of listLogFiles(activePath)) {
    const text = readFileSync(f.path, 'utf8')
    const parts = text.split('\n')
    parts.pop()
    lines.push(...parts.filter((l) => l !== ''))
  }
  return { lines, records: lines.map((l) => JSON.parse(l) as AuditRecord) }
}

/** End a client session and wait until its session.end record is in the log (it is written just after the client has gone). */
export async function endSession(c: pg.Client, auditPath: string): Promise<void> {
  const ends = () => readWholeLog(auditPath).records.filter((r) => r.type === 'session.end').length
  const before = ends()
  await c.end()
  await until('the session.end record', () => ends() > before, 10_000)
}

/** Listen on 127.0.0.1:`port` (0: any); resolves with the bound port. */
export async function listen(server: net.Server, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  return (server.address() as net.AddressInfo).port
}

/** Stop listening and drop every open connection (the receiver is gone: connections refused). */
export async function shutDown(server: net.Server, sockets: Set<net.Socket>): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()))
  for (const s of sockets) s.destroy()
  await closed
}
