/**
 * A statement's record that the audit log refuses ends the session as
 * audit_unavailable (FATAL 58030), as a statement refused before it runs
 * does: not as bad data from the server, whose answer was being read when
 * the record was made.
 */
import t from 'tap'
import { rmSync } from 'node:fs'
import { startFixture, type Fixture } from '../helpers/proxy.js'
import { waitForRecords } from '../helpers/audit.js'
import type { AuditRecord } from '../../src/evidence/types.js'

// audit/audit.jsonl next to the config: the fixture's auditPath.
const f: Fixture = await startFixture({
  auditYaml: `audit:
  log: audit/audit.jsonl
  durability: batched
  fsync_interval: 20ms`,
})
t.teardown(async () => {
  await f.stop()
  rmSync(f.dir, { recursive: true, force: true })
})

/** The proxy's audit log file writer (FileAuditSink), to make it refuse one record. */
function auditFile(): { write(sealed: unknown): void } {
  const file = (f.proxy as unknown as { auditLog: { write(sealed: unknown): void } | null }).auditLog
  if (file === null) throw new Error('the fixture has no audit log file')
  return file
}

t.test('a statement record the audit log refuses ends the session as audit_unavailable (58030)', async (t) => {
  const c = await f.client()
  const errors: Array<Error & { code?: string }> = []
  c.on('error', (e) => errors.push(e))
  const sessionId = (await c.query<{ id: string }>(`SELECT current_setting('pgwitness.session_id') AS id`)).rows[0]!.id

  const file = auditFile()
  const write = file.write
  let refused = 0
  file.write = () => {
    // Only the next record is refused; the session's end is written again.
    file.write = write
    refused++
    throw new Error('test: the audit log refuses this record')
  }
  await c.query('SELECT 2 AS answered').catch(() => undefined)
  const deadline = Date.now() + 10_000
  while (errors.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  t.equal(refused, 1, 'the statement\'s record was refused')
  t.equal(errors[0]?.code, '58030', 'the client is told the session ends for want of an audit log (io_error), not 08P01')
  t.match(errors[0]?.message ?? '', /audit log refused a record \(test: the audit log refuses this record\)/)

  const ofSession = (r: AuditRecord) => r.type === 'session.end' && (r as { session: { id: string } }).session.id === sessionId
  // The log has a gap where the refused record was sealed: its lines are read as JSON, not verified.
  const recs = await waitForRecords(f.auditPath, (rs) => rs.some(ofSession))
  const end = recs.find(ofSession) as unknown as { reason: string; detail: string }
  t.equal(end.reason, 'audit_unavailable', 'session.end says why')
  t.match(end.detail, /audit log refused a record/)
})
