/**
 * Durable file operations shared by the audit log writer, the intent journal
 * and the sink cursors: a rename is only durable once its directory is
 * fsynced, and a file replaced in place must never be seen half-written.
 */
import { open, rename, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'

/** fsync a directory (makes renames and creations in it durable). */
export async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, 'r')
  try {
    await d.sync()
  } finally {
    await d.close()
  }
}

/**
 * Replace `path` with `data` atomically and durably: write a temp file next
 * to it, fsync, rename over, fsync the directory. `dirSyncOptional`: some
 * file systems refuse fsync on a directory; the rename is still atomic.
 */
export async function replaceFileDurably(path: string, data: string | Buffer, o: { mode: number; dirSyncOptional?: boolean }): Promise<void> {
  const tmp = `${path}.tmp`
  const fh = await open(tmp, 'w', o.mode)
  try {
    await fh.writeFile(data)
    await fh.sync()
  } finally {
    await fh.close()
  }
  try {
    await rename(tmp, path)
  } catch (err) {
    await unlink(tmp).catch(() => undefined)
    throw err
  }
  const synced = syncDir(dirname(path))
  await (o.dirSyncOptional ? synced.catch(() => undefined) : synced)
}
