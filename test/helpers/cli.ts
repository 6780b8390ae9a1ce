/** Child processes in tests: the pgwitness CLI from source (no build needed), and other programs (psql, pgbench…). */
import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const CLI = path.join(ROOT, 'src', 'cli.ts')

export function spawnCli(args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
}

export function runCli(args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawnCli(args, env)
    let stdout = ''
    let stderr = ''
    p.stdout!.on('data', (d) => (stdout += d))
    p.stderr!.on('data', (d) => (stderr += d))
    p.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

/** Resolve when the child's stderr has printed a line matching re. */
export function waitForOutput(p: ChildProcess, re: RegExp, timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = ''
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re}; output so far:\n${seen}`)), timeoutMs)
    const on = (d: Buffer) => {
      seen += d.toString()
      const m = re.exec(seen)
      if (m) {
        clearTimeout(timer)
        resolve(m[0])
      }
    }
    p.stderr!.on('data', on)
    p.stdout!.on('data', on)
    p.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`exited with ${code} before ${re}; output:\n${seen}`))
    })
  })
}

export interface ProgramRun {
  code: number | null
  stdout: string
  stderr: string
}

/** Run a program to its end with `input` on its stdin (null: no stdin); its output as text. */
export function runProgram(cmd: string, args: string[], env: NodeJS.ProcessEnv, input: string | null = ''): Promise<ProgramRun> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env, stdio: [input === null ? 'ignore' : 'pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    p.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    p.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    p.on('error', reject)
    p.on('close', (code) => resolve({ code, stdout, stderr }))
    if (input !== null) {
      p.stdin!.on('error', () => undefined)
      p.stdin!.end(input)
    }
  })
}
