/**
 * Oracle, generated traffic (issue 12 part 8): at least 1,000 fast-check
 * sequences of extended-protocol batches (see helpers/oracle/protocol-
 * sequences.ts), several per connection, on a few connections at a time;
 * then per session: server log and statement records one to one, per-Execute
 * rows as the client saw them, transaction fields, and the marker rows the
 * server kept against the recorded transaction outcomes.
 *
 * The seed is random and printed; ORACLE_SEED=<n> reproduces a run.
 */
import t from 'tap'
import fc from 'fast-check'
import { assertEffects, assertOneToOne, assertTransactions, oracleFixture, settledSessions } from '../helpers/oracle/run.js'
import { appName, connect } from '../helpers/oracle/workload.js'
import { sendBatch, sequenceArb, type SendState } from '../helpers/oracle/protocol-sequences.js'

const SEQUENCES = 1000
const PER_CONNECTION = 25
const PARALLEL = 4

const f = await oracleFixture()
t.teardown(() => f.stop())

const seed = process.env['ORACLE_SEED'] !== undefined ? Number(process.env['ORACLE_SEED']) : Date.now() % 2 ** 31
t.comment(`oracle-protocol seed ${seed} (reproduce with ORACLE_SEED=${seed})`)

t.test(`${SEQUENCES} generated extended-protocol sequences`, async (t) => {
  const sequences = fc.sample(sequenceArb, { numRuns: SEQUENCES, seed })
  const chunks: (typeof sequences)[] = []
  for (let i = 0; i < sequences.length; i += PER_CONNECTION) chunks.push(sequences.slice(i, i + PER_CONNECTION))
  let marker = 0
  const rowsByApp = new Map<string, Array<number | null>>()
  const runChunk = async (chunk: (typeof sequences)[number][]): Promise<void> => {
    const app = appName('fuzz')
    const state: SendState = { parsed: new Map(), nextMarker: () => `mk-fz-${++marker}`, executeRows: [] }
    rowsByApp.set(app, state.executeRows)
    const w = await connect(f, app)
    for (const sequence of chunk) for (const batch of sequence) await sendBatch(w, batch, state)
    await w.end()
  }
  let next = 0
  await Promise.all(Array.from({ length: PARALLEL }, async () => {
    while (next < chunks.length) await runChunk(chunks[next++]!)
  }))
  t.equal(next, chunks.length, `${SEQUENCES} sequences sent`)

  const sessions = await settledSessions(f, [...rowsByApp.keys()], 60_000)
  const pairs = assertOneToOne(t, sessions)
  for (const [app, clientRows] of rowsByApp) {
    const recorded = (pairs.get(app) ?? [])
      .filter((p) => p.server.kind === 'execute' && p.server.end === 'ok')
      .map((p) => p.records[0]!.rows)
    // Compare only as far as the matcher got (it stops at a session's first mismatch).
    t.same(recorded, clientRows.slice(0, recorded.length), `${app}: outcome.rows of each Execute as the client counted them`)
  }
  assertTransactions(t, sessions)
  await assertEffects(t, f, sessions, 'mk-fz-')
})
