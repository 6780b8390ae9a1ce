/**
 * Small read-only looks at the audit log's files for the follower: which
 * files there are (with their inodes, to recognise a file across a rename),
 * and where the log's chain ends (where a file's chain starts: log-files.ts).
 */
import { open, stat, type FileHandle } from 'node:fs/promises'
import { readLogTail } from '../ledger/chain.js'
import { listLogFiles, type LogFile } from '../ledger/log-files.js'

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
