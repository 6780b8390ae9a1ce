/**
 * standard_conforming_strings = off: the proxy's split (libpg-query on the
 * text rewritten by asStandardConforming) must agree with what the server,
 * with the setting off, runs. Property-tested against a real server: texts
 * are built from fragments rich in quotes, backslashes, comments and dollar
 * quotes, and each is sent as one simple Query.
 */
import t from 'tap'
import fc from 'fast-check'
import { loadSqlParser, splitStatements } from '../../src/classify/split.js'
import { asStandardConforming } from '../../src/classify/nonstandard-strings.js'
import { startPostgres } from '../harness/postgres.js'
import { RawClient, serialize, startupMessage } from '../helpers/raw-client.js'

const FRAGMENTS = [
  "SELECT '", "SELECT 1", "SELECT E'", "SELECT N'", "SELECT B'", "SELECT X'", "SELECT U&'", 'SELECT $$', "SELECT $a$'",
  "'", "''", '\\', "\\'", '\\\\', '\\\\\'', ';', '; ', ' -- c\n', '--', '\n', ' ', '/*', '*/', '"', '""', '$$', '$a$',
  'a', 'e', "e'", '0', '1e', 'x', '41', 'u00e9', 'ud83d', 'ude00', 'U0001F600', ', ', "'\n'", "' \n '", 'é', '表',
]

async function serverResults(c: RawClient, sql: string): Promise<{ completes: number; error: string | null }> {
  c.write(serialize.query(sql))
  const msgs = await c.until('Z')
  const err = msgs.find((m) => m.type === 'E')
  return {
    completes: msgs.filter((m) => m.type === 'C').length,
    error: err ? (err.msg as { code?: string }).code ?? 'unknown' : null,
  }
}

/** Errors the server raises while lexing or parsing the whole text: then nothing of it runs. */
const PARSE_ERRORS = new Set(['42601', '0A000', '22025', '22021'])

t.test('a split under standard_conforming_strings = off matches the server', async (t) => {
  await loadSqlParser()
  const pg = await startPostgres({ auth: 'trust' })
  t.teardown(() => pg.stop())
  const c = await RawClient.connect(pg.port)
  t.teardown(() => c.destroy())
  c.write(startupMessage({ user: 'postgres', database: 'postgres', options: '-c standard_conforming_strings=off -c escape_string_warning=off' }))
  await c.until('Z')

  const known: Array<[string, number]> = [
    ["SELECT 'a\\'; SELECT 2; --'", 1],
    ["SELECT 'a\\\\'; SELECT 2", 2],
    ["SELECT E'a\\''; SELECT 2", 2],
    ["SELECT 'a\\\\'\n'b\\'; SELECT 3'", 1],
  ]
  for (const [sql, n] of known) {
    const r = await serverResults(c, sql)
    t.same(r, { completes: n, error: null }, sql)
    t.equal(splitStatements(sql, false).length, n, `split: ${sql}`)
  }

  let runs = 0
  await fc.assert(
    fc.asyncProperty(fc.array(fc.constantFrom(...FRAGMENTS), { minLength: 1, maxLength: 12 }), async (parts) => {
      const sql = parts.join('')
      runs++
      const r = await serverResults(c, sql)
      const rewritten = asStandardConforming(sql)
      if (rewritten !== null) t.equal(Buffer.byteLength(rewritten), Buffer.byteLength(sql), 'same length')
      const split = splitStatements(sql, false)
      const parsed = rewritten !== null && !(split.length === 1 && split[0]!.command === 'UNKNOWN')
      const statements = split[0]!.command === 'EMPTY QUERY' ? 0 : split.length
      if (r.error !== null && PARSE_ERRORS.has(r.error) && r.completes === 0) {
        // The server refused the text as a whole; the proxy must not see statements in it.
        return !parsed || statements === 0
      }
      if (!parsed) return false
      // Every statement ran (or ran until one failed at execution).
      return r.error === null ? r.completes === statements : r.completes < statements
    }),
    { numRuns: 400, seed: Number(process.env.PGW_SEED ?? Date.now() % 1e9) },
  )
  t.ok(runs >= 400)
})
