import t from 'tap'
import fc from 'fast-check'
import { loadSqlParser, splitStatements } from '../../src/classify/split.js'
import { mayContainPassword, redactStatement, REDACTED_UNPARSEABLE } from '../../src/classify/redact.js'

t.before(() => loadSqlParser())

/** Each statement of `sql` as the proxy records it (splitStatements redacts). */
function redact(sql: string): string[] {
  return splitStatements(sql).map((s) => s.text)
}

function one(sql: string): string {
  const r = redact(sql)
  if (r.length !== 1) throw new Error(`expected one statement: ${sql}`)
  return r[0]!
}

t.test('password literals of CREATE/ALTER ROLE|USER|GROUP, every string form', async (t) => {
  const cases: Array<[string, string]> = [
    ["CREATE USER alice PASSWORD 'hunter2'", 'CREATE USER alice PASSWORD <REDACTED>'],
    ["create role alice with login password 'hunter2' valid until 'infinity'",
      "create role alice with login password <REDACTED> valid until 'infinity'"],
    ["CREATE ROLE r ENCRYPTED PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy'",
      'CREATE ROLE r ENCRYPTED PASSWORD <REDACTED>'],
    ["ALTER ROLE r PASSWORD 'it''s a secret'", 'ALTER ROLE r PASSWORD <REDACTED>'],
    ["ALTER USER r WITH PASSWORD E'esc\\'aped\\n'", 'ALTER USER r WITH PASSWORD <REDACTED>'],
    ['ALTER ROLE r PASSWORD $$dollar$$', 'ALTER ROLE r PASSWORD <REDACTED>'],
    ['ALTER ROLE r PASSWORD $pw$tagged $$ dollar$pw$ LOGIN', 'ALTER ROLE r PASSWORD <REDACTED> LOGIN'],
    ["ALTER ROLE r PASSWORD U&'d\\0061ta'", 'ALTER ROLE r PASSWORD <REDACTED>'],
    ["ALTER ROLE r PASSWORD 'first'\n'continued'", 'ALTER ROLE r PASSWORD <REDACTED>'],
    ["alter user r encrypted /* note */ PassWord\n  -- comment\n  'x' login",
      'alter user r encrypted /* note */ PassWord\n  -- comment\n  <REDACTED> login'],
    ["CREATE GROUP g PASSWORD 'grp'", 'CREATE GROUP g PASSWORD <REDACTED>'],
    ["ALTER GROUP g RENAME TO h", 'ALTER GROUP g RENAME TO h'],
    ["CREATE ROLE r WITH PASSWORD 'a' PASSWORD 'b'", 'CREATE ROLE r WITH PASSWORD <REDACTED> PASSWORD <REDACTED>'],
  ]
  for (const [sql, want] of cases) t.equal(one(sql), want, sql)
})

t.test('everything else is kept byte for byte, including non-ASCII around the literal', async (t) => {
  const sql = "CREATE ROLE \"rôle_ü\" /* ☃ */ LOGIN PASSWORD 'pässwörd€😀' VALID UNTIL '2030-01-01' -- 日本語"
  t.equal(one(sql), "CREATE ROLE \"rôle_ü\" /* ☃ */ LOGIN PASSWORD <REDACTED> VALID UNTIL '2030-01-01' -- 日本語")
  t.equal(one("ALTER ROLE \"😀\" PASSWORD '😀😀'"), 'ALTER ROLE "😀" PASSWORD <REDACTED>')
})

t.test('PASSWORD NULL and statements without a password are untouched', async (t) => {
  const same = [
    'ALTER ROLE r PASSWORD NULL',
    "ALTER ROLE r SET password_encryption = 'scram-sha-256'",
    'CREATE ROLE r LOGIN',
    "SELECT id, password FROM users WHERE name = 'bob'",
    "UPDATE users SET password_hash = 'abc' WHERE id = 1",
    'CREATE TABLE creds (username text, password text)',
    "select 'é', '€'",
    "COMMENT ON ROLE r IS 'no secrets here'",
  ]
  for (const sql of same) t.equal(one(sql), sql, sql)
})

t.test('other credential carriers', async (t) => {
  t.equal(
    one("CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'bob', password 'pw1')"),
    "CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'bob', password <REDACTED>)",
  )
  t.equal(
    one("ALTER USER MAPPING FOR bob SERVER s OPTIONS (SET /* c */ password 'pw2', ADD \"password_required\" 'false')"),
    "ALTER USER MAPPING FOR bob SERVER s OPTIONS (SET /* c */ password <REDACTED>, ADD \"password_required\" 'false')",
  )
  t.equal(
    one("CREATE USER MAPPING FOR bob SERVER s OPTIONS (\"password\" 'pw3')"),
    "CREATE USER MAPPING FOR bob SERVER s OPTIONS (\"password\" <REDACTED>)",
  )
  t.equal(
    one("CREATE SUBSCRIPTION sub CONNECTION 'host=db user=rep password=pw4' PUBLICATION p"),
    'CREATE SUBSCRIPTION sub CONNECTION <REDACTED> PUBLICATION p',
  )
  t.equal(
    one("ALTER SUBSCRIPTION sub CONNECTION 'host=db password=pw5'"),
    'ALTER SUBSCRIPTION sub CONNECTION <REDACTED>',
  )
  t.equal(one("CREATE SUBSCRIPTION sub CONNECTION 'host=db' PUBLICATION p"),
    "CREATE SUBSCRIPTION sub CONNECTION 'host=db' PUBLICATION p")
})

t.test('password-setting SQL inside string literals (dynamic SQL) is hidden', async (t) => {
  t.equal(
    one("DO $$ BEGIN EXECUTE 'ALTER ROLE app PASSWORD ''pw6'''; END $$"),
    'DO <REDACTED>',
  )
  t.equal(
    one("SELECT dblink_exec('dbname=x', 'CREATE USER u PASSWORD ''pw7''')"),
    "SELECT dblink_exec('dbname=x', <REDACTED>)",
  )
  t.equal(one("DO $$ BEGIN RAISE NOTICE 'password reset'; END $$"), "DO $$ BEGIN RAISE NOTICE 'password reset'; END $$")
})

t.test('multi-statement strings: each statement is redacted on its own', async (t) => {
  t.same(redact("CREATE ROLE a PASSWORD 'pa'; SELECT 'pa' AS not_a_password; ALTER ROLE b PASSWORD $$pb$$"), [
    'CREATE ROLE a PASSWORD <REDACTED>;',
    " SELECT 'pa' AS not_a_password;",
    ' ALTER ROLE b PASSWORD <REDACTED>',
  ])
})

t.test('unparseable text that carries a password', async (t) => {
  // A string that does not parse is one UNKNOWN statement (node null).
  t.equal(one("ALTER ROLE r PASSWORD 'pw8' LOGIN oops"), 'ALTER ROLE r PASSWORD <REDACTED> LOGIN oops')
  t.equal(one('ALTER ROLE r PASSWORD sekrit9'), 'ALTER ROLE r PASSWORD <REDACTED>', 'unquoted password')
  t.equal(one("ALTER ROLE r UNENCRYPTED PASSWORD 'pw10'"), 'ALTER ROLE r UNENCRYPTED PASSWORD <REDACTED>')
  t.equal(
    one("select 1; create role b password 'pw11' valid until 'x' junk"),
    'select 1; create role b password <REDACTED> valid until <REDACTED> junk',
    'every literal after PASSWORD',
  )
  t.equal(one("CREATE ROLE r PASSWORD 'unterminated"), REDACTED_UNPARSEABLE, 'the scanner fails too')
  t.equal(one('CREATE USER u PASSWORD $$never closed'), REDACTED_UNPARSEABLE)
  t.equal(one("selec 'password'"), "selec 'password'", 'no role/user: not a password statement')
  t.equal(redactStatement("CREATE ROLE r PASSWORD 'pw12'", null), 'CREATE ROLE r PASSWORD <REDACTED>', 'no tree given')
})

t.test('any password, any quoting: the literal never survives', async (t) => {
  // ASCII incl. control characters, and composite Unicode graphemes.
  const password = fc.oneof(
    fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 40 }),
    fc.string({ unit: 'grapheme-composite', minLength: 1, maxLength: 20 }),
  )
  fc.assert(
    fc.property(password, fc.boolean(), (pw, dollar) => {
      if (pw.includes('\u0000')) return true // PostgreSQL rejects NUL in SQL text
      const literal = dollar && !pw.includes('$') ? `$$${pw}$$` : `'${pw.replace(/'/g, "''")}'`
      const sql = `ALTER ROLE "ünïcode" WITH LOGIN PASSWORD ${literal} VALID UNTIL 'infinity'`
      const out = one(sql)
      return out === `ALTER ROLE "ünïcode" WITH LOGIN PASSWORD <REDACTED> VALID UNTIL 'infinity'`
    }),
    { numRuns: 300 },
  )
  t.pass('redacted exactly')
})

t.test('mayContainPassword: the cheap pre-check has no false negatives', async (t) => {
  t.equal(mayContainPassword('select 1'), false)
  t.equal(mayContainPassword("insert into t values ('x')"), false)
  t.equal(mayContainPassword("ALTER ROLE r PASSWORD 'x'"), true)
  t.equal(mayContainPassword("alter role r PassWord 'x'"), true)
  t.equal(mayContainPassword("create subscription s connection 'password=x' publication p"), true)
  t.equal(mayContainPassword('select password from users'), true, 'a column name: redactStatement then leaves it')
  // Whenever the pre-check says no, redaction would not change the text.
  for (const sql of ['select 1', "CREATE ROLE r LOGIN", "alter role r valid until 'x'", 'selec 1']) {
    t.equal(mayContainPassword(sql), false, sql)
    t.equal(one(sql), sql)
  }
})

t.test('never throws, and fails closed, on odd trees', async (t) => {
  const text = "ALTER ROLE r PASSWORD 'pw13'"
  const odd = [{}, { AlterRoleStmt: null }, { AlterRoleStmt: { options: 'x' } }, { CreateRoleStmt: { options: [null, 1] } }]
  for (const node of odd) {
    const out = redactStatement(text, node as Record<string, unknown>)
    t.notOk(out.includes('pw13') && Object.keys(node).length > 0, JSON.stringify(node))
  }
  // The tree has a password the text does not show next to PASSWORD: every literal after PASSWORD is hidden.
  const tree = splitStatements("ALTER ROLE r PASSWORD 'pw14'")[0]!.node
  t.equal(redactStatement("ALTER ROLE r PASSWORD NULL VALID UNTIL 'pw15'", tree), 'ALTER ROLE r PASSWORD NULL VALID UNTIL <REDACTED>')
  t.equal(redactStatement('ALTER ROLE r LOGIN', tree), 'ALTER ROLE r LOGIN', 'no password word: nothing to hide')
})
