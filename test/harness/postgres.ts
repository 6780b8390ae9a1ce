/**
 * Throwaway PostgreSQL clusters for tests.
 *
 * Every call to startPostgres() runs initdb into a fresh temporary directory,
 * starts the server on a random free loopback port with logging to a file
 * the tests can read, and returns a handle to query and stop it. Tests never
 * touch a PostgreSQL that happens to be running on the machine.
 *
 * initdb/postgres refuse to run as root, so when the test process is root
 * (CI) the server programs are run as the `postgres` OS user (or `nobody`)
 * via runuser/setpriv and the temporary directory is chowned to that user.
 */
import { execFile, execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { freePort } from './net.js'

export interface PgCluster {
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
// binaries

let cachedBinDir: string | undefined

/**
 * Directory with the PostgreSQL server binaries: $PGWITNESS_PG_BINDIR if set,
 * else `pg_config --bindir` if it contains initdb, else the highest
 * /usr/lib/postgresql/<ver>/bin containing initdb.
 */
export function findPgBinDir(): string {
  if (cachedBinDir !== undefined) return cachedBinDir
  const tried: string[] = []
  const has = (dir: string): boolean => existsSync(path.join(dir, 'initdb')) && existsSync(path.join(dir, 'pg_ctl'))
  const env = process.env['PGWITNESS_PG_BINDIR']
  if (env) {
    if (has(env)) return (cachedBinDir = env)
    tried.push(`$PGWITNESS_PG_BINDIR=${env}`)
  }
  try {
    const dir = execFileSync('pg_config', ['--bindir'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim()
    if (dir && has(dir)) return (cachedBinDir = dir)
    tried.push(`pg_config --bindir (${dir || 'empty'})`)
  } catch {
    tried.push('pg_config (not found or failed)')
  }
  const root = '/usr/lib/postgresql'
  let versions: string[] = []
  try {
    versions = readdirSync(root).filter((v) => /^\d+(\.\d+)?$/.test(v))
  } catch {
    /* no such dir */
  }
  versions.sort((a, b) => parseFloat(b) - parseFloat(a))
  for (const v of versions) {
    const dir = path.join(root, v, 'bin')
    if (has(dir)) return (cachedBinDir = dir)
  }
  tried.push(`${root}/*/bin`)
  throw new Error(
    `PostgreSQL server binaries (initdb, pg_ctl) not found; tried ${tried.join(', ')}. ` +
      `Install the Debian package "postgresql" or set PGWITNESS_PG_BINDIR.`,
  )
}

// ---------------------------------------------------------------------------
// running programs (as another user when root)

interface RunAs {
  user: string
  uid: number
  gid: number
}

let cachedRunAs: RunAs | null | undefined

/** null when not root (run programs as ourselves) */
function runAsUser(): RunAs | null {
  if (cachedRunAs !== undefined) return cachedRunAs
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return (cachedRunAs = null)
  for (const user of ['postgres', 'nobody']) {
    try {
      const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim())
      const gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim())
      if (Number.isInteger(uid) && Number.isInteger(gid) && uid !== 0) return (cachedRunAs = { user, uid, gid })
    } catch {
      /* user does not exist */
    }
  }
  throw new Error('running as root, but neither a "postgres" nor a "nobody" OS user exists to run PostgreSQL as')
}

let cachedWrapper: 'runuser' | 'setpriv' | undefined

function wrap(cmd: string, args: string[]): [string, string[]] {
  const ru = runAsUser()
  if (ru === null) return [cmd, args]
  if (cachedWrapper === undefined) {
    const inPath = (p: string): boolean =>
      ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(path.join(d, p)))
    cachedWrapper = inPath('runuser') ? 'runuser' : 'setpriv'
  }
  if (cachedWrapper === 'runuser') return ['runuser', ['-u', ru.user, '--', cmd, ...args]]
  return ['setpriv', [`--reuid=${ru.uid}`, `--regid=${ru.gid}`, '--init-groups', '--', cmd, ...args]]
}

/** Environment for server programs: no PG* variables leaking in, C locale. */
function serverEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('PG') || k.startsWith('LC_') || k === 'LANG' || k === 'LANGUAGE') continue
    env[k] = v
  }
  env['LANG'] = 'C'
  env['LC_ALL'] = 'C'
  return env
}

interface RunResult {
  code: number
  stdout: string
  stderr: string
}

const DEBUG = !!process.env['PGWITNESS_HARNESS_DEBUG']

function run(cmd: string, args: string[], cwd: string, timeoutMs = 60_000, asServerUser = true): Promise<RunResult> {
  const [c, a] = asServerUser ? wrap(cmd, args) : [cmd, args]
  const t0 = Date.now()
  return new Promise((resolve) => {
    execFile(c, a, { cwd, env: serverEnv(), timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: unknown }) | null
      let code = 0
      if (e) code = typeof e.code === 'number' ? e.code : 1
      if (DEBUG) console.error(`[pg-harness] ${path.basename(cmd)} ${args[0] ?? ''} exit=${code} ${Date.now() - t0}ms`)
      resolve({ code, stdout: String(stdout), stderr: String(stderr) + (e && typeof e.code !== 'number' ? `\n${e.message}` : '') })
    })
  })
}

// ---------------------------------------------------------------------------
// crash cleanup

interface Live {
  pid: number | undefined
  tmpDir: string
}
const live = new Set<Live>()
let exitHookInstalled = false

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('exit', () => {
    for (const l of live) {
      // Best effort: immediate shutdown of the postmaster; its watchdog
      // removes the directory once the server is gone.
      if (l.pid !== undefined) {
        try {
          process.kill(l.pid, 'SIGQUIT')
        } catch {
          /* already gone */
        }
      } else {
        // initdb template: no server, remove right away
        try {
          rmSync(l.tmpDir, { recursive: true, force: true })
        } catch {
          /* ignore */
        }
      }
    }
  })
}

/**
 * A detached shell that outlives us: when this process disappears without
 * calling stop() (SIGKILL, tap timeout, ...), it kills the postmaster and
 * removes the temp dir, so crashed tests do not leak servers.
 */
function spawnWatchdog(postmasterPid: number | undefined, tmpDir: string): number | undefined {
  const script = [
    'parent=$1; pg=$2; dir=$3',
    'while kill -0 "$parent" 2>/dev/null; do sleep 1; done',
    'if [ "$pg" != 0 ]; then',
    '  kill -QUIT "$pg" 2>/dev/null',
    '  i=0; while kill -0 "$pg" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done',
    '  kill -KILL "$pg" 2>/dev/null',
    'fi',
    'rm -rf "$dir"',
  ].join('\n')
  try {
    const child = spawn('/bin/sh', ['-c', script, 'pgwitness-pg-watchdog', String(process.pid), String(postmasterPid ?? 0), tmpDir], {
      detached: true,
      stdio: 'ignore',
    })
    child.on('error', () => {})
    child.unref()
    return child.pid
  } catch {
    return undefined
  }
}

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

function chownR(p: string, ru: RunAs | null): void {
  if (ru === null) return
  chownSync(p, ru.uid, ru.gid)
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

export async function startPostgres(opts: StartPostgresOptions = {}): Promise<PgCluster> {
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

  const cluster: PgCluster = {
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
