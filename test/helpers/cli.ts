/** Run the pgwitness CLI from source (no build needed) as a child process. */
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
