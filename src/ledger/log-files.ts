/**
 * How an audit log is laid out on disk once it rotates.
 *
 * The active file keeps the configured name (`audit/audit.jsonl`). When it
 * rotates it is renamed to `<stem>.<first seq, 16 digits>.<ext>` in the same
 * directory (`audit/audit.0000000000000001.jsonl`), so sorting the names
 * sorts the files in chain order, and the chain continues in the new active
 * file (its first record's chain.prev is the rotated file's last hash).
 *
 * Readers (verify, the sink shippers) list the rotated files and then the
 * active one; a record is found by its chain.seq.
 */
import { readdirSync } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { basename, dirname, extname, join } from 'node:path'

const SEQ_DIGITS = 16

function split(activePath: string): { dir: string; stem: string; ext: string } {
  const ext = extname(activePath)
  return { dir: dirname(activePath), stem: basename(activePath, ext), ext }
}

/** The name a rotated file gets: its first record's seq, zero-padded so names sort in chain order. */
export function rotatedLogPath(activePath: string, firstSeq: number): string {
  const { dir, stem, ext } = split(activePath)
  return join(dir, `${stem}.${String(firstSeq).padStart(SEQ_DIGITS, '0')}${ext}`)
}

export interface LogFile {
  path: string
  /** First seq of a rotated file (from its name); null for the active file. */
  firstSeq: number | null
}

/**
 * The log's files in chain order: rotated files by first seq, then the active
 * file (if it exists). Names that merely look alike are ignored.
 */
export function listLogFiles(activePath: string): LogFile[] {
  const { dir, stem, ext } = split(activePath)
  const pattern = new RegExp(`^${escape(stem)}\\.(\\d{${SEQ_DIGITS}})${escape(ext)}$`)
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  const rotated: LogFile[] = []
  let active = false
  for (const name of names) {
    if (name === basename(activePath)) {
      active = true
      continue
    }
    const m = pattern.exec(name)
    if (m) rotated.push({ path: join(dir, name), firstSeq: Number(m[1]) })
  }
  rotated.sort((a, b) => a.firstSeq! - b.firstSeq!)
  if (active) rotated.push({ path: activePath, firstSeq: null })
  return rotated
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

const CHUNK = 64 * 1024

/** chain.seq of a file's first complete line; null when it has none (yet) or it cannot be read. */
export async function firstSeqOf(path: string): Promise<number | null> {
  let fh: FileHandle
  try {
    fh = await open(path, 'r')
  } catch {
    return null
  }
  try {
    const buf = Buffer.allocUnsafe(CHUNK)
    const parts: Buffer[] = []
    for (let pos = 0; ; ) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK, pos)
      if (bytesRead === 0) return null
      pos += bytesRead
      const nl = buf.subarray(0, bytesRead).indexOf(10)
      parts.push(Buffer.from(buf.subarray(0, nl < 0 ? bytesRead : nl)))
      if (nl < 0) continue
      const seq = (JSON.parse(Buffer.concat(parts).toString('utf8')) as { chain?: { seq?: unknown } }).chain?.seq
      return typeof seq === 'number' ? seq : null
    }
  } catch {
    return null
  } finally {
    await fh.close()
  }
}
