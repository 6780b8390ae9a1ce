/**
 * Cost of one pgbench-shaped statement record: building it (statementRecord),
 * building + sealing it (AuditChain.seal: canonical JSON, SHA-256), and the
 * way a session does it (own members sealed with the session's shared ones),
 * the same with the own members serialized from known names (what a session
 * does now: statement-members.ts), and that plus the file writer's batch
 * join (where each line is flattened).
 *   npx tsx bench/record-cost.ts
 */
import { AuditChain, shareMembers } from '../src/ledger/chain.js'
import { sharedSessionMembers, statementOwnMembers, statementRecord } from '../src/evidence/records.js'
import { statementOwnMemberTexts } from '../src/ledger/statement-members.js'
import type { ObservedStatement } from '../src/session/statement-tracker.js'
import { benchSessionContext as ctx } from './lib/session-context.js'
const s: ObservedStatement = { key: 0, protocol: 'extended', text: 'SELECT abalance FROM pgbench_accounts WHERE aid = $1;', textTruncated: false, parameters: [{ format: 'text', value: '12345' }], preparedName: 'P0_1', portal: '', functionOid: null, command: 'SELECT', classes: ['READ'], objects: [{ type: 'table', schema: 'public', name: 'pgbench_accounts' }], node: null, split: 'parser', governedSettingChanged: false, textOrigin: null, policy: null, seq: 1, inTransaction: false, transaction: { number: 1, kind: 'autocommit' }, status: 'ok', suspended: false, portalRows: null, commandTag: 'SELECT 1', rows: 1, sqlstate: null, message: null, startedAtUs: Date.now() * 1000, durationUs: 120 }
const chain = new AuditChain()
const N = 200000
for (let round = 0; round < 3; round++) {
  let t0 = process.hrtime.bigint()
  for (let i = 0; i < N; i++) statementRecord(ctx, { ...s, seq: i })
  const build = Number(process.hrtime.bigint() - t0) / N / 1000
  t0 = process.hrtime.bigint()
  let len = 0
  for (let i = 0; i < N; i++) len += chain.seal(statementRecord(ctx, { ...s, seq: i })).line.length
  const all = Number(process.hrtime.bigint() - t0) / N / 1000
  // What a session does: its shared members serialized once, each statement's own members sealed with them.
  const shared = shareMembers(sharedSessionMembers(ctx) as Record<string, unknown>)!
  t0 = process.hrtime.bigint()
  for (let i = 0; i < N; i++) len += chain.seal(statementOwnMembers({ ...s, seq: i }), shared).line.length
  const own = Number(process.hrtime.bigint() - t0) / N / 1000
  // The same with the own members serialized from known names (the session's path since statement-members.ts).
  t0 = process.hrtime.bigint()
  for (let i = 0; i < N; i++) len += chain.seal(statementOwnMembers({ ...s, seq: i }), shared, statementOwnMemberTexts).line.length
  const serialized = Number(process.hrtime.bigint() - t0) / N / 1000
  // The same, and the file writer's batch join (lines + newline, joined, encoded): where a line's text is flattened.
  t0 = process.hrtime.bigint()
  let batch: string[] = []
  for (let i = 0; i < N; i++) {
    batch.push(chain.seal(statementOwnMembers({ ...s, seq: i }), shared, statementOwnMemberTexts).line + '\n')
    if (batch.length === 4) {
      Buffer.from(batch.join(''), 'utf8')
      batch = []
    }
  }
  const joined = Number(process.hrtime.bigint() - t0) / N / 1000
  console.log(`build ${build.toFixed(2)} µs, build+seal ${all.toFixed(2)} µs, own members+seal with shared ${own.toFixed(2)} µs, serialized from known names ${serialized.toFixed(2)} µs, and batch join ${joined.toFixed(2)} µs, line ${len / N / 3} bytes`)
}
