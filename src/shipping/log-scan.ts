/**
 * Small read-only looks at the audit log's files for the follower: which
 * files there are (with their inodes, to recognise a file across a rename),
 * and where the log's chain ends (where a file's chain starts: log-files.ts).
 */
import { open, stat, type FileHandle } from 'node:fs/promises'
import { readLogTail } from '../ledger/chain.js'
import { listLogFiles, type LogFile } from '../ledger/log-files.js'

/**
 * The log's files in chain order (log-files.ts) with their inode numbers;
 * files gone meanwhile are left out.
 *
 * The active name is the only one that moves (rotation renames the file,
 * then a new one takes the name), so its inode is read before the
 * directory: a rotation in between shows up as that inode under a rotated
 * name, and the stale active entry is dropped (the next listing has the new
 * file); a rotation after the directory was read leaves the active entry
 * naming the file that follows the last rotated one listed, which is still
 * the chain's order (opening it by name then finds another inode and the
 * follower lists again). Reading the inode after the directory, as this did
 * before, could pair the listing with a newer active file and leave out the
 * rotated files between: the follower went on past their records.
 */
export async function logFilesWithInodes(activePath: string): Promise<Array<LogFile & { ino: number }>> {
  let activeIno: number | null = null
  try {
    activeIno = (await stat(activePath)).ino
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const out: Array<LogFile & { ino: number }> = []
  let activeListed = false
  for (const f of listLogFiles(activePath)) {
    if (f.path === activePath) {
      activeListed = true
      continue
    }
    try {
      out.push({ ...f, ino: (await stat(f.path)).ino })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
  }
  if (activeListed && activeIno !== null && !out.some((f) => f.ino === activeIno)) out.push({ path: activePath, firstSeq: null, ino: activeIno })
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
