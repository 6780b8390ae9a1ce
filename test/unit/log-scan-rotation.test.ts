/**
 * The follower's view of the log's files while the writer rotates: a file
 * renamed between reading the directory and looking up the active file's
 * inode must not vanish from the listing (the follower would then go on
 * from the file before it straight to the new active file and skip every
 * record of the renamed one — seen once in CI as a sink missing records).
 */
import { mkdtempSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { rotatedLogPath } from '../../src/ledger/log-files.js'
import { logFilesWithInodes } from '../../src/shipping/log-scan.js'

t.test('no file is missing from a listing taken while the writer rotates', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgw-log-scan-'))
  const active = path.join(dir, 'audit.jsonl')
  /** Every file the writer made, by inode: the seq its first record has. */
  const firstSeqByIno = new Map<number, number>()
  let nextFirst = 1
  const startActive = () => {
    writeFileSync(active, `{"chain":{"seq":${nextFirst}}}\n`)
    firstSeqByIno.set(statSync(active).ino, nextFirst)
  }
  startActive()
  // The writer: rotate (rename, then a new active file, as FileAuditSink does) whenever the event loop lets
  // it, at most twice per listing so the directory does not outgrow the test.
  let rotating = true
  let rotationsThisListing = 0
  const writer = (async () => {
    while (rotating) {
      if (rotationsThisListing < 2) {
        rotationsThisListing++
        renameSync(active, rotatedLogPath(active, nextFirst))
        nextFirst += 10
        startActive()
      }
      await new Promise((r) => setImmediate(r))
    }
  })()
  let listings = 0
  try {
    for (let i = 0; i < 200; i++) {
      rotationsThisListing = 0
      const files = await logFilesWithInodes(active)
      const firsts = files.map((f) => f.firstSeq ?? firstSeqByIno.get(f.ino)!)
      // Files come in chain order, and consecutive ones are consecutive files of the writer (10 seqs apart).
      for (let k = 1; k < firsts.length; k++) {
        if (firsts[k]! - firsts[k - 1]! !== 10) {
          t.fail(`listing ${i} skips from the file starting at ${firsts[k - 1]} to the one starting at ${firsts[k]}: ${JSON.stringify(files.map((f) => path.basename(f.path)))}`)
          return
        }
      }
      listings++
    }
  } finally {
    rotating = false
    await writer
    rmSync(dir, { recursive: true, force: true })
  }
  t.equal(listings, 200, 'every listing was whole')
})
