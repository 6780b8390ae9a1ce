/**
 * pgbouncer (Debian package) in session mode with client TLS and SCRAM,
 * the reference proxy. pgbouncer refuses to run as root, so as root it runs
 * as the `postgres` OS user (files chowned to it).
 */
import { execFileSync } from 'node:child_process'
import { chmodSync, chownSync, copyFileSync, mkdirSync, openSync, readFileSync, writeFileSync, existsSync } from 'node:fs'
import path from 'node:path'
import { freePort } from '../../test/harness/net.js'
import { runCapture, startService, waitForPort, type Tracked } from './procs.js'

export interface Pgbouncer {
  port: number
  pid: number
  proc: Tracked
  version: string
  logFile: string
  stop(): Promise<void>
}

export function findPgbouncer(): string | null {
  for (const p of ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer']) if (existsSync(p)) return p
  try {
    return execFileSync('sh', ['-c', 'command -v pgbouncer'], { encoding: 'utf8' }).trim() || null
  } catch {
    return null
  }
}

/** Install the Debian package if missing (root only). */
export async function ensurePgbouncer(): Promise<string> {
  const found = findPgbouncer()
  if (found) return found
  if (process.getuid?.() !== 0) throw new Error('pgbouncer is not installed (apt-get install pgbouncer) and we are not root')
  console.error('[bench] pgbouncer not found: installing the Debian package (apt-get update && apt-get install -y pgbouncer)')
  const r = await runCapture('apt-get', 'sh', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer'], {
    timeoutMs: 600_000,
  })
  if (r.code !== 0) throw new Error(`installing pgbouncer failed:\n${r.stdout}\n${r.stderr}`)
  const p = findPgbouncer()
  if (!p) throw new Error('pgbouncer still not found after apt-get install')
  return p
}

export function serviceUser(): { user: string; uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null
  for (const user of ['postgres', 'nobody']) {
    try {
      const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim())
      const gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }).trim())
      if (uid !== 0) return { user, uid, gid }
    } catch {
      /* no such user */
    }
  }
  throw new Error('running as root but neither a "postgres" nor a "nobody" user exists to run pgbouncer as')
}

export async function startPgbouncer(o: {
  binary: string
  dir: string
  upstreamPort: number
  database: string
  user: string
  password: string
  tlsCert: string
  tlsKey: string
  maxClients: number
}): Promise<Pgbouncer> {
  const ru = serviceUser()
  mkdirSync(o.dir, { recursive: true, mode: 0o700 })
  const own = (p: string, mode: number): void => {
    chmodSync(p, mode)
    if (ru) chownSync(p, ru.uid, ru.gid)
  }
  own(o.dir, 0o700)
  const cert = path.join(o.dir, 'server.crt')
  const key = path.join(o.dir, 'server.key')
  copyFileSync(o.tlsCert, cert)
  copyFileSync(o.tlsKey, key)
  own(cert, 0o644)
  own(key, 0o600)
  const userlist = path.join(o.dir, 'userlist.txt')
  const q = (s: string): string => `"${s.replace(/"/g, '""')}"`
  writeFileSync(userlist, `${q(o.user)} ${q(o.password)}\n`)
  own(userlist, 0o600)
  const logFile = path.join(o.dir, 'pgbouncer.log')
  writeFileSync(logFile, '')
  own(logFile, 0o644)

  const version = (await runCapture('pgbouncer', o.binary, ['--version'])).stdout.split('\n')[0]?.trim() ?? 'unknown'

  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const ini = path.join(o.dir, 'pgbouncer.ini')
    writeFileSync(
      ini,
      [
        '[databases]',
        `${o.database} = host=127.0.0.1 port=${o.upstreamPort} dbname=${o.database}`,
        '',
        '[pgbouncer]',
        'listen_addr = 127.0.0.1',
        `listen_port = ${port}`,
        'unix_socket_dir =',
        `logfile = ${logFile}`,
        `pidfile = ${path.join(o.dir, 'pgbouncer.pid')}`,
        'pool_mode = session',
        `max_client_conn = ${o.maxClients + 50}`,
        `default_pool_size = ${o.maxClients + 10}`,
        `max_db_connections = ${o.maxClients + 10}`,
        'auth_type = scram-sha-256',
        `auth_file = ${userlist}`,
        'client_tls_sslmode = require',
        `client_tls_cert_file = ${cert}`,
        `client_tls_key_file = ${key}`,
        'server_tls_sslmode = disable',
        'log_connections = 0',
        'log_disconnections = 0',
        'log_pooler_errors = 1',
        'stats_period = 60',
        '',
      ].join('\n'),
    )
    own(ini, 0o600)
    const errFd = openSync(path.join(o.dir, 'stderr.log'), 'a')
    const proc = startService('pgbouncer', o.binary, [ini], { asUser: ru, cwd: o.dir, stdoutFd: errFd, stderrFd: errFd })
    try {
      await waitForPort(port, 10_000, () => proc.child.exitCode === null && proc.child.signalCode === null)
    } catch (err) {
      await proc.stop(1000)
      const log = readFileSync(logFile, 'utf8') + readFileSync(path.join(o.dir, 'stderr.log'), 'utf8')
      if (attempt < 3 && /Address already in use/i.test(log)) continue
      throw new Error(`pgbouncer did not start: ${(err as Error).message}\n${log.split('\n').slice(-20).join('\n')}`)
    }
    return {
      port,
      pid: proc.pid,
      proc,
      version,
      logFile,
      stop: () => proc.stop(5000),
    }
  }
}
