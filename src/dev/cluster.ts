/**
 * Throwaway PostgreSQL clusters: initdb (once per process, into a template
 * that is then copied), a random free loopback port, the server log in a
 * file, and stop() that removes everything. Used by the dev default when no
 * local PostgreSQL admits the dev login, by the test harness and by the
 * benchmarks; never for a real deployment.
 */
import { randomBytes } from 'node:crypto'
import { chmodSync, copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { chownR, findPgBinDir, installExitHook, live, run, runAsUser, spawnWatchdog, type Live } from './server-process.js'

export { findPgBinDir } from './server-process.js'

export interface PostgresCluster {
  host: string // '127.0.0.1'
  port: number // random free port
  dataDir: string
  logFile: string // server log path (tests read it)
  /** directory holding the server's Unix socket (inside the temp dir) */
  socketDir: string
  superuser: string // 'postgres'
  superuserPassword: string
  binDir: string
  readLog(): string // current contents of logFile
  /** run SQL as superuser over TCP with `pg` (node-postgres) Client, returns rows
   *  (TLS without verification when the cluster was started with `ssl`) */
  query(sql: string, params?: unknown[], database?: string): Promise<any[]>
  /** create a LOGIN role with a password (and optional database owned by it) */
  createRole(
    name: string,
    password: string | null,
    opts?: { superuser?: boolean; database?: string },
  ): Promise<void>
  stop(): Promise<void> // fast shutdown, remove temp dirs
}

export interface StartPostgresOptions {
  auth?: 'scram-sha-256' | 'md5' | 'trust' // default scram-sha-256 for host connections
  /** extra postgresql.conf lines, e.g. { log_statement: 'all', log_line_prefix: "'%m [%p] %c '" }.
   *  Values are written verbatim if already quoted or a plain token, otherwise single-quoted. */
  settings?: Record<string, string>
  /** pg_hba lines; if given, used INSTEAD of the default */
  hba?: string[]
  /** PEM file paths; turns ssl=on (files are copied into the cluster dir with the right owner/mode) */
  ssl?: { cert: string; key: string; ca?: string }
}

const HOST = '127.0.0.1'
const SUPERUSER = 'postgres'
const START_TIMEOUT_S = 30
const START_ATTEMPTS = 5
// ---------------------------------------------------------------------------
// config helpers

function confValue(v: string): string {
  if (/^'.*'$/s.test(v) || /^[A-Za-z0-9_.+\-]+$/.test(v)) return v
  return `'${v.replace(/'/g, "''")}'`
}

function quoteConf(v: string): string {
  return `'${v.replace(/'/g, "''")}'`
}

function tail(text: string, lines = 40): string {
  return text.split('\n').slice(-lines).join('\n')
}


// ---------------------------------------------------------------------------
// initdb template (one per process and bin dir)

/** Superuser password of every cluster started by this process. */
const superuserPassword = randomBytes(18).toString('base64url')

interface Template {
  dir: string
  dataDir: string
}
const templates = new Map<string, Promise<Template>>()

function getTemplate(binDir: string): Promise<Template> {
  let t = templates.get(binDir)
  if (!t) {
    t = createTemplate(binDir)
    templates.set(binDir, t)
    t.catch(() => templates.delete(binDir))
  }
  return t
}

async function createTemplate(binDir: string): Promise<Template> {
  const ru = runAsUser()
  const dir = await mkdtemp(path.join(tmpBase(), 'pgwitness-pg-template-'))
  const dataDir = path.join(dir, 'data')
  const pwFile = path.join(dir, 'pwfile')
  try {
    chmodSync(dir, 0o700)
    chownR(dir, ru)
    writeFileSync(pwFile, superuserPassword + '\n', { mode: 0o600 })
    chownR(pwFile, ru)
    const init = await run(
      path.join(binDir, 'initdb'),
      [
        '-D', dataDir,
        '-U', SUPERUSER,
        `--pwfile=${pwFile}`,
        // pg_hba.conf is rewritten for every cluster; these only matter for the template
        '--auth-local=trust',
        '--auth-host=scram-sha-256',
        '-E', 'UTF8',
        '--locale=C',
        '--no-sync',
        '--no-instructions',
      ],
      dir,
    )
    rmSync(pwFile, { force: true })
    if (init.code !== 0) throw new Error(`initdb failed (exit ${init.code}):\n${init.stdout}\n${init.stderr}`)
  } catch (err) {
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
  const entry: Live = { pid: undefined, tmpDir: dir }
  live.add(entry)
  installExitHook()
  spawnWatchdog(undefined, dir)
  return { dir, dataDir }
}

function tmpBase(): string {
  return process.env['PGWITNESS_PG_TMPDIR'] ?? os.tmpdir()
}

// ---------------------------------------------------------------------------

export async function startPostgresCluster(opts: StartPostgresOptions = {}): Promise<PostgresCluster> {
  const auth = opts.auth ?? 'scram-sha-256'
  const binDir = findPgBinDir()
  const ru = runAsUser()
  const bin = (name: string): string => path.join(binDir, name)

  const tmpDir = await mkdtemp(path.join(tmpBase(), 'pgwitness-pg-'))
  const dataDir = path.join(tmpDir, 'data')
  const logFile = path.join(tmpDir, 'postgres.log')
  const password = superuserPassword
  const entry: Live = { pid: undefined, tmpDir }
  let watchdogPid: number | undefined
  let port = 0

  const fail = (msg: string): never => {
    let log = ''
    try {
      log = readFileSync(logFile, 'utf8')
    } catch {
      /* none */
    }
    try {
      rmSync(tmpDir, { recursive: true, force: true })
    } catch {
      /* ignore */
    }
    throw new Error(`${msg}${log ? `\n--- tail of ${logFile} ---\n${tail(log)}` : ''}`)
  }

  try {
    chmodSync(tmpDir, 0o700)
    chownR(tmpDir, ru)
    // Pre-create the log file so it is readable by the test process whoever it is.
    writeFileSync(logFile, '', { mode: 0o644 })
    chownR(logFile, ru)

    // initdb once per process into a template, then copy it (cp -a keeps
    // owner and modes): ~0.2 s instead of ~1 s per cluster.
    const template = await getTemplate(binDir)
    const cp = await run('cp', ['-a', template.dataDir, dataDir], tmpDir, 60_000, false)
    if (cp.code !== 0) fail(`copying the initdb template failed: ${cp.stderr}`)

    // pg_hba.conf
    const hba = opts.hba ?? [
      'local all all trust',
      `host all all 127.0.0.1/32 ${auth}`,
      `host all all ::1/128 ${auth}`,
      // `all` does not cover walsenders: replication connections need their own lines.
      `host replication all 127.0.0.1/32 ${auth}`,
      `host replication all ::1/128 ${auth}`,
    ]
    await writeFile(path.join(dataDir, 'pg_hba.conf'), hba.join('\n') + '\n')

    // ssl material, copied so that owner/mode satisfy the server
    const sslLines: string[] = []
    if (opts.ssl) {
      const cp = (src: string, name: string, mode: number): string => {
        const dst = path.join(dataDir, name)
        copyFileSync(src, dst)
        chmodSync(dst, mode)
        chownR(dst, ru)
        return dst
      }
      sslLines.push('ssl = on')
      sslLines.push(`ssl_cert_file = ${quoteConf(cp(opts.ssl.cert, 'server.crt', 0o644))}`)
      sslLines.push(`ssl_key_file = ${quoteConf(cp(opts.ssl.key, 'server.key', 0o600))}`)
      if (opts.ssl.ca) sslLines.push(`ssl_ca_file = ${quoteConf(cp(opts.ssl.ca, 'root.crt', 0o644))}`)
    }

    const confPath = path.join(dataDir, 'postgresql.conf')
    const baseConf = await readFile(confPath, 'utf8')
    const writeConf = async (port: number): Promise<void> => {
      const lines = [
        '',
        '# --- pgwitness test harness ---',
        `port = ${port}`,
        `listen_addresses = ${quoteConf(HOST)}`,
        `unix_socket_directories = ${quoteConf(tmpDir)}`,
        'fsync = off',
        'synchronous_commit = off',
        'full_page_writes = off',
        'logging_collector = off',
        `log_line_prefix = ${quoteConf('%m [%p] %c ')}`,
        `password_encryption = ${quoteConf(auth === 'md5' ? 'md5' : 'scram-sha-256')}`,
        'max_connections = 200',
        ...sslLines,
        ...Object.entries(opts.settings ?? {}).map(([k, v]) => `${k} = ${confValue(v)}`),
        '',
      ]
      await writeFile(confPath, baseConf + lines.join('\n'))
    }

    let started = false
    let lastErr = ''
    for (let attempt = 1; attempt <= START_ATTEMPTS && !started; attempt++) {
      port = await freePort()
      await writeConf(port)
      const logBefore = readFileSync(logFile, 'utf8').length
      const r = await run(
        bin('pg_ctl'),
        ['start', '-D', dataDir, '-l', logFile, '-w', '-t', String(START_TIMEOUT_S), '-s'],
        tmpDir,
        (START_TIMEOUT_S + 10) * 1000,
      )
      if (r.code === 0) {
        started = true
        break
      }
      const newLog = readFileSync(logFile, 'utf8').slice(logBefore)
      lastErr = `pg_ctl start failed (exit ${r.code}): ${r.stdout}${r.stderr}`
      // Port taken between freePort() and bind: try another one. Anything else is fatal.
      if (!/could not bind|Address already in use|could not create any TCP\/IP sockets/i.test(newLog)) {
        await run(bin('pg_ctl'), ['stop', '-D', dataDir, '-m', 'immediate', '-s'], tmpDir).catch(() => undefined)
        break
      }
    }
    if (!started) fail(`could not start PostgreSQL in ${dataDir} within ${START_TIMEOUT_S}s: ${lastErr}`)

    try {
      entry.pid = Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0])
    } catch {
      /* leave undefined */
    }
    live.add(entry)
    installExitHook()
    if (entry.pid) watchdogPid = spawnWatchdog(entry.pid, tmpDir)
  } catch (err) {
    if (entry.pid === undefined) {
      try {
        rmSync(tmpDir, { recursive: true, force: true })
      } catch {
        /* ignore */
      }
    }
    throw err
  }

  const connect = async (database: string): Promise<pg.Client> => {
    const client = new pg.Client({
      host: HOST,
      port,
      user: SUPERUSER,
      password,
      database,
      connectionTimeoutMillis: 10_000,
      // With ssl on, use TLS for the admin channel too (hba may be hostssl-only);
      // the harness does not verify its own server.
      ...(opts.ssl ? { ssl: { rejectUnauthorized: false } } : {}),
    })
    client.on('error', () => {})
    await client.connect()
    return client
  }

  const query = async (sql: string, params?: unknown[], database = 'postgres'): Promise<any[]> => {
    const client = await connect(database)
    try {
      const res = await client.query(sql, params as any[] | undefined)
      // multi-statement simple queries return an array of results
      if (Array.isArray(res)) return (res as pg.QueryResult[]).flatMap((r) => r.rows)
      return res.rows
    } finally {
      await client.end().catch(() => undefined)
    }
  }

  const createRole = async (
    name: string,
    rolePassword: string | null,
    o: { superuser?: boolean; database?: string } = {},
  ): Promise<void> => {
    const id = pg.escapeIdentifier(name)
    const pw = rolePassword === null ? 'NULL' : pg.escapeLiteral(rolePassword)
    await query(`CREATE ROLE ${id} LOGIN${o.superuser ? ' SUPERUSER' : ''} PASSWORD ${pw}`)
    if (o.database) await query(`CREATE DATABASE ${pg.escapeIdentifier(o.database)} OWNER ${id}`)
  }

  let stopping: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      const r = await run(bin('pg_ctl'), ['stop', '-D', dataDir, '-m', 'fast', '-w', '-t', '30', '-s'], tmpDir, 40_000)
      if (r.code !== 0 && entry.pid) {
        try {
          process.kill(entry.pid, 'SIGQUIT')
        } catch {
          /* gone */
        }
        for (let i = 0; i < 50; i++) {
          try {
            process.kill(entry.pid, 0)
          } catch {
            break
          }
          await new Promise((res) => setTimeout(res, 100))
        }
      }
      live.delete(entry)
      rmSync(tmpDir, { recursive: true, force: true })
      if (watchdogPid) {
        try {
          process.kill(-watchdogPid, 'SIGKILL')
        } catch {
          /* gone */
        }
      }
    })()
    return stopping
  }

  const cluster: PostgresCluster = {
    host: HOST,
    port,
    dataDir,
    logFile,
    socketDir: tmpDir,
    superuser: SUPERUSER,
    superuserPassword: password,
    binDir,
    readLog: () => {
      try {
        return readFileSync(logFile, 'utf8')
      } catch {
        return ''
      }
    },
    query,
    createRole,
    stop,
  }

  // initdb stored the superuser password with the bootstrap default
  // (scram-sha-256); re-hash it so md5 clusters really exercise md5.
  if (auth === 'md5') {
    try {
      await query(`ALTER ROLE ${SUPERUSER} PASSWORD ${pg.escapeLiteral(password)}`)
    } catch (err) {
      await stop().catch(() => undefined)
      throw err
    }
  }
  return cluster
}

/** A currently free TCP port (the caller retries if another process takes it first). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.once('error', reject)
    srv.listen({ port: 0, host, exclusive: true }, () => {
      const { port } = srv.address() as net.AddressInfo
      srv.close((err) => (err ? reject(err) : resolve(port)))
    })
  })
}
