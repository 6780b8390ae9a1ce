/**
 * Small read-only looks at the audit log's files for the follower: which
 * files there are (with their inodes, to recognise a file across a rename),
 * where a file's chain starts, and where the log's chain ends.
 */
import { open, stat, type FileHandle } from 'node:fs/promises'
import { readLogTail } from '../chain.js'
import { listLogFiles, type LogFile } from '../log-files.js'

const CHUNK = 64 * 1024

/** The log's files in chain order (log-files.ts) with their inode numbers; files gone meanwhile are left out. */
export async function logFilesWithInodes(activePath: string): Promise<Array<LogFile & { ino: number }>> {
  const out: Array<LogFile & { ino: number }> = []
  for (const f of listLogFiles(activePath)) {
    try {
      out.push({ ...f, ino: (await stat(f.path)).ino })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
  }
  return out
}

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

/** Seq of the last complete record of the active file; null when it cannot be read. */
export async function probeLogHead(activePath: string): Promise<number | null> {
  let fh: FileHandle | undefined
  try {
    fh = await open(activePath, 'r')
    return (await readLogTail(fh, activePath)).head.seq
  } catch {
    return null
  } finally {
    await fh?.close()
  }
}
