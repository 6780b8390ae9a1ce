/**
 * Running PostgreSQL's server programs for throwaway clusters: as the
 * `postgres` (or `nobody`) OS user when we are root — initdb and postgres
 * refuse to run as root — and with crash cleanup so that a killed process
 * never leaks a server or its temporary directory.
 */
import { execFile, execFileSync, spawn } from 'node:child_process'
import { chownSync, existsSync, readdirSync, rmSync } from 'node:fs'
import path from 'node:path'

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

export interface RunAs {
  user: string
  uid: number
  gid: number
}

let cachedRunAs: RunAs | null | undefined

/** null when not root (run programs as ourselves) */
export function runAsUser(): RunAs | null {
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

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

const DEBUG = !!process.env['PGWITNESS_HARNESS_DEBUG']

export function run(cmd: string, args: string[], cwd: string, timeoutMs = 60_000, asServerUser = true): Promise<RunResult> {
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

export interface Live {
  pid: number | undefined
  tmpDir: string
}
export const live = new Set<Live>()
let exitHookInstalled = false

export function installExitHook(): void {
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
export function spawnWatchdog(postmasterPid: number | undefined, tmpDir: string): number | undefined {
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

export function chownR(p: string, ru: RunAs | null): void {
  if (ru === null) return
  chownSync(p, ru.uid, ru.gid)
}
