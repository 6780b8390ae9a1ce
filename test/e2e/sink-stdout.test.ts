/**
 * The stdout sink shipped from the audit log (`audit.sinks: [{ type: stdout }]`
 * with a file log): every record of the log reaches stdout as its log line
 * (or as OCSF), in order; a restarted proxy resumes from its cursor, so the
 * second run prints only what the first did not.
 */
import { readFileSync } from 'node:fs'
import path from 'node:path'
import pg from 'pg'
import t from 'tap'
import { spawnCli, waitForOutput } from '../helpers/cli.js'
import { processProxyConfig, startFixture } from '../helpers/proxy.js'

t.test('stdout sink: every log record on stdout once, resumed from the cursor after a restart', async (t) => {
  const f = await startFixture()
  t.teardown(() => f.stop())
  const logPath = path.join(f.dir, 'stdout-sink', 'audit.jsonl')
  const { configPath, port } = await processProxyConfig(f, { name: 'stdout-sink', auditLog: logPath, auditExtra: '  sinks: [{ type: stdout }]\n' })

  /** One run of the proxy: a session with `n` statements, then SIGTERM; returns what it printed on stdout. */
  const run = async (n: number): Promise<string[]> => {
    const p = spawnCli(['serve', '--config', configPath])
    t.teardown(() => p.kill('SIGKILL'))
    let out = ''
    p.stdout!.on('data', (d: Buffer) => (out += d.toString()))
    await waitForOutput(p, /pgwitness listening/)
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'app', database: 'appdb', password: await f.token(), ssl: { rejectUnauthorized: false } })
    await c.connect()
    for (let i = 0; i < n; i++) await c.query('select $1::int as i', [i])
    await c.end()
    p.kill('SIGTERM')
    await new Promise((r) => p.once('exit', r))
    return out.split('\n').filter((l) => l.startsWith('{'))
  }

  const first = await run(5)
  const logAfterFirst = readFileSync(logPath, 'utf8').trim().split('\n')
  t.same(first, logAfterFirst, `the first run printed the ${logAfterFirst.length} log lines, in order, unchanged`)
  const second = await run(3)
  const log = readFileSync(logPath, 'utf8').trim().split('\n')
  t.same(second, log.slice(logAfterFirst.length), 'the second run printed only the records after its cursor')
  t.ok(second.length >= 6, `${second.length} new records`)
})
