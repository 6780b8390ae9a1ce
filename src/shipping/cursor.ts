/**
 * A sink's persisted cursor: the last record it has delivered, in
 * `<audit log dir>/.cursors/<sink name>.json`:
 *
 *   {"sink":"nats","seq":1234,"hash":"9f…","updated_at":"2026-…Z"}
 *
 * Written after every acknowledged batch, atomically (temp file, fsync,
 * rename, fsync of the folder), so after a crash it names a batch that was
 * delivered: the next start re-sends at most the batch in flight, never
 * skips one (at-least-once). The hash lets the follower check that the log
 * it resumes in is the one the cursor was written for.
 */
import { mkdirSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { EMPTY_HEAD, isHex64 } from '../ledger/chain.js'
import type { LogPosition } from './follower.js'
import { replaceFileDurably } from '../util/durable-file.js'

export class CursorError extends Error {
  override readonly name = 'CursorError'
}

/** The folder holding the cursors of the sinks of the log at `logPath`. */
export function cursorDir(logPath: string): string {
  return join(dirname(logPath), '.cursors')
}

export class CursorStore {
  readonly path: string

  constructor(readonly dir: string, readonly sink: string) {
    this.path = join(dir, `${sink}.json`)
  }

  /** The saved position; seq 0 (start of the log) when the sink has none yet. Throws CursorError for an unreadable cursor. */
  async load(): Promise<LogPosition> {
    let text: string
    try {
      text = await readFile(this.path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { ...EMPTY_HEAD }
      throw new CursorError(`cannot read the cursor ${this.path}: ${(err as Error).message}`)
    }
    let v: unknown
    try {
      v = JSON.parse(text)
    } catch (err) {
      throw new CursorError(`the cursor ${this.path} is not valid JSON (${(err as Error).message})`)
    }
    const c = v as { seq?: unknown; hash?: unknown } | null
    if (c === null || typeof c !== 'object' || typeof c.seq !== 'number' || !Number.isSafeInteger(c.seq) || c.seq < 0 || !isHex64(c.hash)) {
      throw new CursorError(`the cursor ${this.path} does not hold {seq, hash}`)
    }
    return { seq: c.seq, hash: c.hash }
  }

  /** Persist `pos` durably and atomically. */
  async save(pos: LogPosition): Promise<void> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 })
    const body = JSON.stringify({ sink: this.sink, seq: pos.seq, hash: pos.hash, updated_at: new Date().toISOString() }) + '\n'
    await replaceFileDurably(this.path, body, { mode: 0o600, dirSyncOptional: true })
  }
}

