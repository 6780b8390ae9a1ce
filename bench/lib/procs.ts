/**
 * Child processes the benchmark starts, their cleanup, and CPU accounting
 * from /proc.
 *
 * Long-lived services (pgbouncer, pgwitness) are started through
 * `setpriv --pdeathsig` so that they die with the runner even if the runner
 * itself is SIGKILLed; setpriv execs, so the child's pid is the service's pid
 * (needed to read its /proc/<pid>/stat).
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import net from 'node:net'

export const CLK_TCK = (() => {
  try {
    const v = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())
    return Number.isFinite(v) && v > 0 ? v : 100
  } catch {
    return 100
  }
})()

export interface Tracked {
  name: string
  child: ChildProcess
  pid: number
  /** resolves on exit (never rejects) */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** SIGTERM, then SIGKILL after graceMs */
  stop(graceMs?: number): Promise<void>
}

const tracked = new Set<Tracked>()

export const HAVE_SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].some((p) => existsSync(p))

/**
 * Start a long-lived child. `asUser` runs it as another OS user (root only).
 * stdout/stderr go to the given file descriptors (or are ignored).
 */
export function startService(
  name: string,
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; asUser?: { uid: number; gid: number } | null; stdoutFd?: number; stderrFd?: number } = {},
): Tracked {
  let c = cmd
  let a = args
  if (HAVE_SETPRIV) {
    const pre = ['--pdeathsig', 'KILL']
    if (opts.asUser) pre.push(`--reuid=${opts.asUser.uid}`, `--regid=${opts.asUser.gid}`, '--clear-groups')
    c = 'setpriv'
    a = [...pre, '--', cmd, ...args]
  } else if (opts.asUser) {
    throw new Error(`${name}: cannot run as another user without setpriv`)
  }
  const so: SpawnOptions = {
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    stdio: ['ignore', opts.stdoutFd ?? 'ignore', opts.stderrFd ?? 'ignore'],
  }
  const child = spawn(c, a, so)
  if (child.pid === undefined) throw new Error(`${name}: spawn failed`)
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }))
    child.once('error', () => resolve({ code: -1, signal: null }))
  })
  const t: Tracked = {
    name,
    child,
    pid: child.pid,
    exited,
    async stop(graceMs = 5000) {
      if (child.exitCode !== null || child.signalCode !== null) return
      try {
        child.kill('SIGTERM')
      } catch {
        /* gone */
      }
      const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs).unref())
      if ((await Promise.race([exited, timer])) === 'timeout') {
        try {
          child.kill('SIGKILL')
        } catch {
          /* gone */
        }
        await exited
      }
    },
  }
  tracked.add(t)
  void exited.then(() => tracked.delete(t))
  return t
}

/** Stop every tracked child (services and a pgbench in flight). */
export async function stopAll(): Promise<void> {
  await Promise.all([...tracked].map((t) => t.stop(3000).catch(() => undefined)))
}

/** Synchronous last resort (process 'exit' handler). */
export function killAllSync(): void {
  for (const t of tracked) {
    try {
      t.child.kill('SIGKILL')
    } catch {
      /* gone */
    }
  }
}

/** Run a short command to completion, capturing output; tracked while it runs. */
export function runCapture(
  name: string,
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number; onSpawn?: (pid: number) => void } = {},
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  if (child.pid !== undefined) opts.onSpawn?.(child.pid)
  let stdout = ''
  let stderr = ''
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal }))
    child.once('error', (err) => {
      stderr += String(err)
      resolve({ code: -1, signal: null })
    })
  })
  const t: Tracked = {
    name,
    child,
    pid: child.pid ?? -1,
    exited,
    async stop() {
      try {
        child.kill('SIGKILL')
      } catch {
        /* gone */
      }
      await exited
    },
  }
  tracked.add(t)
  let timer: NodeJS.Timeout | undefined
  if (opts.timeoutMs) timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs)
  return exited.then((r) => {
    tracked.delete(t)
    if (timer) clearTimeout(timer)
    return { ...r, stdout, stderr }
  })
}

// ---------------------------------------------------------------------------
// /proc accounting

interface StatFields {
  ppid: number
  utime: number
  stime: number
  cutime: number
  cstime: number
}

function readStat(pid: number | 'self'): StatFields | null {
  let s: string
  try {
    s = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return null
  }
  // comm may contain spaces and parentheses: split after the last ')'
  const rest = s.slice(s.lastIndexOf(')') + 2).split(' ')
  // rest[0] = state (field 3); field n is rest[n - 3]
  return {
    ppid: Number(rest[1]),
    utime: Number(rest[11]),
    stime: Number(rest[12]),
    cutime: Number(rest[13]),
    cstime: Number(rest[14]),
  }
}

/** user-mode CPU seconds used so far by one live process (all its threads). */
export function processUserCpu(pid: number): number {
  const st = readStat(pid)
  return st ? st.utime / CLK_TCK : NaN
}

/** CPU seconds (user+system) used so far by one live process (all its threads). */
export function processCpu(pid: number): number {
  const st = readStat(pid)
  return st ? (st.utime + st.stime) / CLK_TCK : NaN
}

/**
 * CPU seconds of a process tree rooted at a daemon that reaps its children
 * (the postmaster): its own time + reaped children (cutime/cstime) + every
 * live child's own time. Monotone across a benchmark run as long as the
 * root lives, so the delta between two samples is what the tree used.
 */
export function treeCpu(rootPid: number): number {
  const root = readStat(rootPid)
  if (!root) return NaN
  let ticks = root.utime + root.stime + root.cutime + root.cstime
  for (const ent of readdirSync('/proc')) {
    if (!/^\d+$/.test(ent)) continue
    const pid = Number(ent)
    if (pid === rootPid) continue
    const st = readStat(pid)
    if (st && st.ppid === rootPid) ticks += st.utime + st.stime
  }
  return ticks / CLK_TCK
}

/** CPU seconds of this process's reaped children (pgbench runs are reaped here). */
export function reapedChildrenCpu(): number {
  const st = readStat('self')
  return st ? (st.cutime + st.cstime) / CLK_TCK : NaN
}

export function selfCpu(): number {
  const st = readStat('self')
  return st ? (st.utime + st.stime) / CLK_TCK : NaN
}

/** Whole-machine CPU counters from /proc/stat (seconds, summed over cores). */
export interface MachineCpu {
  /** user + nice + system + irq + softirq */
  busy: number
  /** irq + softirq (with IRQ time accounting this is charged to no process) */
  irq: number
  idle: number
  iowait: number
  steal: number
  total: number
}

export function machineCpu(): MachineCpu {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!
  const v = line.trim().split(/\s+/).slice(1).map(Number)
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = v
  const total = user + nice + system + idle + iowait + irq + softirq + steal
  return {
    busy: (user + nice + system + irq + softirq) / CLK_TCK,
    irq: (irq + softirq) / CLK_TCK,
    idle: idle / CLK_TCK,
    iowait: iowait / CLK_TCK,
    steal: steal / CLK_TCK,
    total: total / CLK_TCK,
  }
}

/** VmRSS and VmHWM (peak) in KiB. */
export function memoryKiB(pid: number): { rss: number; hwm: number } | null {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8')
    const get = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? NaN)
    return { rss: get('VmRSS'), hwm: get('VmHWM') }
  } catch {
    return null
  }
}

// ---------------------------------------------------------------------------

export async function waitForPort(port: number, timeoutMs: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port })
      s.once('connect', () => {
        s.destroy()
        resolve(true)
      })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    if (!alive()) throw new Error(`process for port ${port} exited before listening`)
    if (Date.now() > deadline) throw new Error(`nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/**
 * What a bench script started and must stop, whatever way it ends: its
 * PostgreSQL cluster and work directory (set as they are created), every
 * process from startProcess, on SIGINT/SIGTERM/SIGHUP, a thrown error or exit.
 */
export interface BenchResources {
  cluster: { stop(): Promise<void> } | null
  workDir: string | null
}

export function benchCleanup(keep: boolean, log: (msg: string) => void): { resources: BenchResources; cleanup(): Promise<void>; interrupted(): boolean } {
  const resources: BenchResources = { cluster: null, workDir: null }
  let cleaning: Promise<void> | null = null
  const cleanup = (): Promise<void> => {
    cleaning ??= (async () => {
      await stopAll()
      if (resources.cluster) await resources.cluster.stop().catch((e: Error) => log(`stopping PostgreSQL: ${e.message}`))
      if (resources.workDir && !keep) rmSync(resources.workDir, { recursive: true, force: true })
      else if (resources.workDir) log(`kept work dir ${resources.workDir}`)
    })()
    return cleaning
  }
  let interrupted = false
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (interrupted) return
      interrupted = true
      log(`${sig}: stopping everything this run started`)
      void cleanup().finally(() => process.exit(130))
    })
  }
  process.on('exit', () => killAllSync())
  return { resources, cleanup, interrupted: () => interrupted }
}

/** Run a bench script's main, clean up whatever happens, and exit with its code. */
export async function runBenchMain(main: () => Promise<number>, cleanup: () => Promise<void>, log: (msg: string) => void): Promise<never> {
  let code = 1
  try {
    code = await main()
  } catch (err) {
    log(`FAILED: ${(err as Error).stack ?? String(err)}`)
    code = 1
  } finally {
    await cleanup()
  }
  process.exit(code)
}
