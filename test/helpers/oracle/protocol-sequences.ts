/**
 * fast-check model of extended-protocol traffic for the oracle: sequences of
 * batches (messages up to a Sync, or one simple Query such as BEGIN/COMMIT),
 * with named and unnamed statements and portals, reused names, refused
 * Parses (syntax errors, multi-statement, duplicate names) and Binds
 * (unknown statement, wrong parameter count, portal in use), runtime errors
 * mid-pipeline, row-limited Executes, Describe, Close and Flush.
 *
 * References the generator cannot know the server's answer to are resolved
 * when sending (sendBatch): an Execute runs the portal last bound in its
 * batch, never an unknown or closed one (the server would refuse it with no
 * statement to record, outside the contract the oracle checks).
 */
import fc from 'fast-check'
import { serialize, type Msg, type WireClient } from '../wire.js'

export interface StatementText {
  text: string
  /** Number of parameters the text takes. */
  params: 0 | 1
  /** What a parameter value should be. */
  value: 'int' | 'marker' | null
}

export const TEXTS: StatementText[] = [
  { text: 'SELECT 1', params: 0, value: null },
  { text: 'SELECT generate_series(1, 3)', params: 0, value: null },
  { text: 'SELECT $1::int AS n', params: 1, value: 'int' },
  { text: 'INSERT INTO marks VALUES ($1)', params: 1, value: 'marker' },
  { text: 'SELECT x / (x - 1) FROM generate_series(1, 2) x', params: 0, value: null },
  { text: 'selec 1', params: 0, value: null },
  { text: 'SELECT 1; SELECT 2', params: 0, value: null },
  { text: 'BEGIN', params: 0, value: null },
  { text: 'COMMIT', params: 0, value: null },
  { text: 'SELECT 4;', params: 0, value: null },
  { text: 'SELECT\n  5 AS five  ', params: 0, value: null },
  { text: 'UPDATE marks SET m = m WHERE false', params: 0, value: null },
  { text: '', params: 0, value: null },
]

const STATEMENT_NAMES = ['', 's1', 's2'] as const
const PORTAL_NAMES = ['', 'p1', 'p2'] as const

export type Op =
  | { op: 'parse'; name: string; text: number; describe: boolean }
  | { op: 'bind'; portal: string; statement: string; params: 'match' | 'none' | 'one'; describe: boolean }
  | { op: 'execute'; rows: number; times: number }
  | { op: 'close'; type: 'S' | 'P'; name: string }
  | { op: 'flush' }

export type Batch = { kind: 'extended'; ops: Op[] } | { kind: 'simple'; text: string }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('parse' as const), name: fc.constantFrom(...STATEMENT_NAMES), text: fc.nat({ max: TEXTS.length - 1 }), describe: fc.boolean() }) },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('bind' as const),
      portal: fc.constantFrom(...PORTAL_NAMES),
      statement: fc.constantFrom(...STATEMENT_NAMES, 'nope'),
      params: fc.constantFrom('match' as const, 'match' as const, 'match' as const, 'none' as const, 'one' as const),
      describe: fc.boolean(),
    }),
  },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('execute' as const), rows: fc.constantFrom(0, 0, 1, 2), times: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('close' as const), type: fc.constantFrom('S' as const, 'P' as const), name: fc.constantFrom(...STATEMENT_NAMES, ...PORTAL_NAMES) }) },
  { weight: 1, arbitrary: fc.constant({ op: 'flush' as const }) },
)

const batchArb: fc.Arbitrary<Batch> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('extended' as const), ops: fc.array(opArb, { minLength: 1, maxLength: 8 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('simple' as const), text: fc.constantFrom('BEGIN', 'COMMIT', 'ROLLBACK', 'SELECT 1') }) },
)

export const sequenceArb: fc.Arbitrary<Batch[]> = fc.array(batchArb, { minLength: 1, maxLength: 4 })

/** Client-side state of one connection across batches. */
export interface SendState {
  /** Text index last sent in a Parse under each name (accepted or not: the generator cannot know). */
  parsed: Map<string, number>
  nextMarker: () => string
  /** rows of each Execute the server completed (or suspended), in order. */
  executeRows: Array<number | null>
}

function rowsOfTag(tag: string): number | null {
  const m = /^(?:SELECT|INSERT \d+|UPDATE|DELETE|MERGE|FETCH|MOVE|COPY) (\d+)$/.exec(tag)
  return m ? Number(m[1]) : null
}

/** Send one batch in one write and read to its ReadyForQuery; records per-Execute rows in `state`. */
export async function sendBatch(w: WireClient, batch: Batch, state: SendState): Promise<void> {
  if (batch.kind === 'simple') {
    await w.query(batch.text)
    return
  }
  const out: Buffer[] = []
  let portal: string | null = null
  /** Per message sent, what its answer is: executes are the ones whose rows we count. */
  const executes: Array<'execute'> = []
  for (const op of batch.ops) {
    switch (op.op) {
      case 'parse':
        state.parsed.set(op.name, op.text)
        out.push(serialize.parse({ name: op.name, text: TEXTS[op.text]!.text }))
        if (op.describe) out.push(serialize.describe({ type: 'S', name: op.name }))
        break
      case 'bind': {
        const t = TEXTS[state.parsed.get(op.statement) ?? 0]!
        const n = op.params === 'match' ? t.params : op.params === 'one' ? 1 : 0
        const value = () => (t.value === 'marker' ? state.nextMarker() : '3')
        out.push(serialize.bind({ portal: op.portal, statement: op.statement, values: Array.from({ length: n }, value) }))
        if (op.describe) out.push(serialize.describe({ type: 'P', name: op.portal }))
        portal = op.portal
        break
      }
      case 'execute':
        if (portal === null) break
        for (let i = 0; i < op.times; i++) {
          out.push(serialize.execute({ portal, rows: op.rows }))
          executes.push('execute')
        }
        break
      case 'close':
        out.push(serialize.close({ type: op.type, name: op.name }))
        if (op.type === 'P' && op.name === portal) portal = null
        if (op.type === 'S') state.parsed.delete(op.name)
        break
      case 'flush':
        out.push(serialize.flush())
        break
    }
  }
  out.push(serialize.sync())
  w.send(...out)
  countExecuteRows(await w.untilReady(30_000), state)
}

/**
 * Per-Execute rows as the client saw them: DataRows before a PortalSuspended,
 * the tag's count at a CommandComplete. Executes of an empty statement
 * (EmptyQueryResponse) and failed ones are left out, as the oracle's pairs
 * leave them out.
 */
function countExecuteRows(msgs: Msg[], state: SendState): void {
  let dataRows = 0
  for (const m of msgs) {
    if (m.name === 'dataRow') dataRows++
    else if (m.name === 'portalSuspended') {
      state.executeRows.push(dataRows)
      dataRows = 0
    } else if (m.name === 'commandComplete') {
      state.executeRows.push(rowsOfTag(m.text ?? ''))
      dataRows = 0
    } else if (m.name === 'error' || m.name === 'emptyQuery') dataRows = 0
  }
}
