/**
 * Sealing with shared members (a session's, serialized once) gives exactly
 * the line and hash of sealing the whole record: for any members, including
 * names in both parts, `chain` among them, and data that is not I-JSON.
 */
import fc from 'fast-check'
import t from 'tap'
import { AuditChain, recordPartsWith, recordParts, shareMembers } from '../../src/ledger/chain.js'
import type { AuditRecordBody } from '../../src/evidence/types.js'

const names = fc.oneof(fc.constantFrom('chain', 'id', 'identity', 'session', 'statement', 'time', 'type', 'approval', 'b', 'z', '10', '9', 'ünï'), fc.string({ maxLength: 6 }))
const values = fc.jsonValue({ maxDepth: 2 })
const members = fc.dictionary(names, values, { maxKeys: 8 })

t.test('recordPartsWith(shared, own) is recordParts({...shared, ...own})', async (t) => {
  fc.assert(fc.property(members, members, (shared, own) => {
    const s = shareMembers(shared)!
    const a = recordPartsWith(s, own)
    const b = recordParts({ ...shared, ...own })
    return a.before === b.before && a.after === b.after
  }), { numRuns: 3000 })
  t.pass('3000 random member sets')
})

t.test('seal(own, shared) writes the line and hash of seal({...shared, ...own}), sanitizing like it', async (t) => {
  const lone = '\ud800'
  const cases: Array<[Record<string, unknown>, Record<string, unknown>]> = [
    [{ identity: { subject: 'a' }, session: { id: 's' } }, { type: 'statement', id: '1', statement: { text: 'SELECT 1' } }],
    [{ identity: { subject: 'a' } }, { identity: { subject: 'own wins' }, type: 'x' }],
    [{ identity: { subject: 'a' } }, { type: 'x', bad: lone, n: Number.NaN }],
  ]
  for (const [shared, own] of cases) {
    const one = new AuditChain()
    const two = new AuditChain()
    const a = one.seal(own, shareMembers(shared))
    const b = two.seal({ ...shared, ...own } as unknown as AuditRecordBody)
    t.equal(a.line, b.line)
    t.equal(a.sanitized, b.sanitized)
    t.same(a.record, b.record)
  }
  t.equal(shareMembers({ claims: { x: lone } }), null, 'shared members that are not I-JSON are not shared (their records take the full path)')
})
