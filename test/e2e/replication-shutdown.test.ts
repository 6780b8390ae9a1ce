/**
 * A proxy shutdown with a replication stream running (issue 15 part 3): the
 * stream counts as a statement in flight, gets limits.shutdown_grace, then
 * its client is told FATAL 57P01 and the session.end record (reason
 * proxy_shutdown) still carries what was streamed.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import path from 'node:path'
import { DEV_ISSUER } from '../../src/dev/tokens.js'
import { readValidAuditLog, recordsOfType } from '../helpers/audit.js'
import { startFixture } from '../helpers/proxy.js'

const f = await startFixture({
  limitsYaml: '  handshake_timeout: 10s\n  shutdown_grace: 1s',
  policyYaml: `policy:
  - name: archiver
    match: { issuer: ${DEV_ISSUER} }
    roles: [app]
    databases: [appdb]
    replication: physical`,
})
let stopped = false
t.teardown(async () => {
  // The test stops the proxy itself; the cluster is left to stop here.
  if (stopped) await f.pg.stop()
  else await f.stop()
})
await f.pg.query('ALTER ROLE app REPLICATION')

t.test('a streaming pg_receivewal is given the grace, then ended with 57P01', async (t) => {
  const env = { ...f.libpqEnv(await f.token()), PGAPPNAME: 'pgw-archiver' }
  const dir = mkdtempSync(path.join(f.dir, 'wal-'))
  const p = spawn(path.join(f.pg.binDir, 'pg_receivewal'), ['-D', dir, '--no-loop', '--status-interval', '1', '-n'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  const exited = new Promise<number | null>((resolve) => p.on('close', resolve))
  const deadline = Date.now() + 20_000
  while ((await f.pg.query("SELECT 1 FROM pg_stat_replication WHERE application_name LIKE 'pgw-archiver pgw:%' AND state = 'streaming'")).length === 0) {
    if (Date.now() > deadline) throw new Error(`the stream did not start: ${stderr}`)
    await new Promise((r) => setTimeout(r, 50))
  }
  await new Promise((r) => setTimeout(r, 1200)) // a status update or two

  const began = Date.now()
  stopped = true
  await f.proxy.stop()
  const tookMs = Date.now() - began
  t.ok(tookMs >= 900, `the stream had its grace (${tookMs} ms)`)
  t.not(await exited, 0, 'pg_receivewal lost its stream')
  t.match(stderr, /terminating connection|57P01|server closed the connection/, `its error: ${stderr.trim()}`)

  const recs = readValidAuditLog(f.auditPath)
  const start = recordsOfType(recs, 'session.start').find((r) => r.session.application_name === 'pgw-archiver')!
  const end = recordsOfType(recs, 'session.end').find((r) => r.session.id === start.session.id)!
  t.equal(end.reason, 'proxy_shutdown')
  t.ok(end.streamed!.from_server.messages > 0 && end.streamed!.from_client.messages > 0, `streamed counts kept (${JSON.stringify(end.streamed)})`)
  const startRepl = recordsOfType(recs, 'statement').find((r) => r.session.id === start.session.id && r.statement.command === 'START_REPLICATION')!
  t.equal(startRepl.outcome.status, 'unknown', 'the stream never completed')
})
