/**
 * Password redaction for recorded statement text.
 *
 * `CREATE|ALTER ROLE|USER|GROUP … [ENCRYPTED] PASSWORD '…'` (any string form:
 * '…' with doubled quotes, E'…', U&'…', $$…$$, $tag$…$tag$, continued
 * literals) has its literal replaced by `<REDACTED>`; everything else is kept
 * byte for byte. The parse tree says whether a password is present; the
 * scanner (libpg-query's scanSync, byte offsets) finds the literal's exact
 * span. Also redacted, because they carry credentials the same way:
 * - `password` options of CREATE/ALTER USER MAPPING and SERVER;
 * - connection strings containing "password" (CREATE/ALTER SUBSCRIPTION …
 *   CONNECTION, or any other string literal that contains "password");
 * - string literals that themselves contain a CREATE/ALTER ROLE|USER|GROUP …
 *   PASSWORD statement (dynamic SQL in DO blocks, dblink_exec, …): the whole
 *   literal is replaced.
 * Text that does not parse but looks like it carries a password: every string
 * literal after the first PASSWORD word, and the token right after each
 * PASSWORD word (an unquoted password is a syntax error that would otherwise
 * be logged verbatim), are replaced; if even the scanner rejects the text
 * (e.g. an unterminated quote), the whole text is replaced by
 * `<REDACTED: unparseable statement containing a password>`.
 *
 * `\password` in psql is client-side: the server only ever sees
 * `ALTER USER … PASSWORD 'SCRAM-SHA-256$…'`, which is redacted like any other.
 */
import { scanSync } from 'libpg-query'

export const REDACTED = '<REDACTED>'
export const REDACTED_UNPARSEABLE = '<REDACTED: unparseable statement containing a password>'

type Node = Record<string, unknown>

interface Token {
  start: number
  end: number
  text: string
  tokenName: string
}

/**
 * Cheap pre-check for the hot path: false means redactStatement would return
 * the text unchanged, so the caller can skip it. (True often means "a column
 * named password"; redactStatement then returns quickly from the parse tree.)
 */
export function mayContainPassword(text: string): boolean {
  // u&" : a Unicode-escaped identifier could spell an option name "password".
  return /password|u&"/i.test(text)
}

/** Unparseable text that still looks like it carries a password. */
const LOOKS_LIKE_PASSWORD = /\b(?:role|user|group|mapping|server|subscription)\b[\s\S]*?password/i
/** A statement that sets a password, as text (inside a string literal: dynamic SQL). */
const EMBEDDED_PASSWORD = /\b(?:create|alter)\s+(?:role|user|group)\b[\s\S]*?\bpassword\b/i
/** A connection string with a password in it. */
const CONNINFO_PASSWORD = /password/i

/** Statement types whose options can carry a `password` DefElem. */
const PASSWORD_OPTION_TYPES = new Set([
  'CreateRoleStmt', 'AlterRoleStmt', 'CreateUserMappingStmt', 'AlterUserMappingStmt', 'CreateForeignServerStmt',
  'AlterForeignServerStmt', 'CreateFdwStmt', 'AlterFdwStmt', 'CreateForeignTableStmt',
])

/**
 * The statement text with password literals replaced by `<REDACTED>`.
 * `node` is the statement's parse tree from splitStatements (null when the
 * text did not parse). Never throws.
 */
export function redactStatement(text: string, node: Record<string, unknown> | null): string {
  if (!mayContainPassword(text)) return text
  try {
    return node === null || typeof node !== 'object' ? redactUnparsed(text) : redactParsed(text, node)
  } catch {
    // Nothing here should throw; if it does, fail closed.
    return REDACTED_UNPARSEABLE
  }
}

function firstKey(o: Node): string | undefined {
  for (const k in o) return k
  return undefined
}

/** How many `password` options with a value the statement has. */
function passwordOptions(body: Node): number {
  let n = 0
  const lists = [body.options, (body.base as Node | undefined)?.options]
  for (const list of lists) {
    if (!Array.isArray(list)) continue
    for (const d of list) {
      const e = (d as Node | null)?.DefElem as Node | undefined
      if (e && typeof e.defname === 'string' && e.defname.toLowerCase() === 'password' && e.arg != null) n++
    }
  }
  return n
}

function redactParsed(text: string, node: Node): string {
  const type = firstKey(node)
  if (type === undefined) return text
  const body = (node[type] ?? {}) as Node
  const options = PASSWORD_OPTION_TYPES.has(type)
  const expected = options ? passwordOptions(body) : 0
  const conninfo = typeof body.conninfo === 'string' && CONNINFO_PASSWORD.test(body.conninfo)
  const embedded = EMBEDDED_PASSWORD.test(text)
  if (!options && !conninfo && !embedded) return text

  const tokens = scan(text)
  if (tokens === null) return REDACTED_UNPARSEABLE
  const spans = new Set<number>()
  if (options) {
    // Every literal right after a PASSWORD word (whatever the tree says), checked against the tree's count.
    let found = 0
    for (let i = 0; i < tokens.length; i++) {
      if (!isPasswordWord(tokens[i]!)) continue
      const j = nextSignificant(tokens, i + 1)
      if (j >= 0 && isStringLiteral(tokens[j]!)) {
        spans.add(j)
        found++
      }
    }
    if (found < expected) {
      // The tree has a password the token walk did not pair up: hide every literal after the first PASSWORD.
      const first = tokens.findIndex(isPasswordWord)
      if (first < 0) return REDACTED_UNPARSEABLE
      for (let j = first + 1; j < tokens.length; j++) if (isStringLiteral(tokens[j]!)) spans.add(j)
      if (spans.size === 0) return REDACTED_UNPARSEABLE
    }
  }
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!
    if (!isStringLiteral(t)) continue
    if ((conninfo && CONNINFO_PASSWORD.test(t.text)) || (embedded && EMBEDDED_PASSWORD.test(t.text))) spans.add(i)
  }
  return splice(text, tokens, spans)
}

function redactUnparsed(text: string): string {
  if (!LOOKS_LIKE_PASSWORD.test(text) && !EMBEDDED_PASSWORD.test(text)) return text
  const tokens = scan(text)
  if (tokens === null) return REDACTED_UNPARSEABLE
  const spans = new Set<number>()
  let seenPassword = false
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!
    if (isPasswordWord(t)) {
      seenPassword = true
      const j = nextSignificant(tokens, i + 1)
      if (j >= 0 && !isPunctuation(tokens[j]!) && !isPasswordWord(tokens[j]!)) spans.add(j)
      continue
    }
    if (!isStringLiteral(t)) continue
    if (seenPassword || CONNINFO_PASSWORD.test(t.text)) spans.add(i)
  }
  return splice(text, tokens, spans)
}

/**
 * Control characters libpg-query's scanner does not escape in its JSON output
 * (it then fails to parse). Each is one byte, so replacing them by spaces
 * keeps every byte offset; they only occur inside literals, comments and
 * quoted identifiers in valid SQL, where a space does not move token bounds.
 */
const UNESCAPED_CONTROL = /[\u0001-\u0008\u000b\u000c\u000e-\u001f]/g

function scan(text: string): Token[] | null {
  try {
    const r = scanSync(text.replace(UNESCAPED_CONTROL, ' ')) as unknown as { tokens?: Token[] }
    return Array.isArray(r.tokens) ? r.tokens : []
  } catch {
    return null
  }
}

function isComment(t: Token): boolean {
  return t.tokenName === 'SQL_COMMENT' || t.tokenName === 'C_COMMENT'
}

function nextSignificant(tokens: Token[], from: number): number {
  for (let j = from; j < tokens.length; j++) if (!isComment(tokens[j]!)) return j
  return -1
}

/** The PASSWORD keyword, or an identifier spelling password (option names: password, "password"). */
function isPasswordWord(t: Token): boolean {
  const s = t.text
  if (s.length === 8) return s.toLowerCase() === 'password'
  if (s.length === 10 && s[0] === '"') return s.slice(1, 9).toLowerCase() === 'password' && s[9] === '"'
  return false
}

/** A string constant in any of its forms ('…', E'…', U&'…', B'…', X'…', N'…', $$…$$, $tag$…$tag$). */
function isStringLiteral(t: Token): boolean {
  const s = t.text
  const c = s.charCodeAt(0)
  if (c === 39 /* ' */) return true
  if (c === 36 /* $ */) return s.length > 1 && !(s.charCodeAt(1) >= 48 && s.charCodeAt(1) <= 57) // not $1
  return /^(?:[eEbBxXnN]'|[uU]&')/.test(s)
}

function isPunctuation(t: Token): boolean {
  return t.text.length === 1 && /[(),;=.[\]:]/.test(t.text)
}

/** Replaces the tokens at `spans` with <REDACTED>; token offsets are UTF-8 byte offsets. */
function splice(text: string, tokens: Token[], spans: Set<number>): string {
  if (spans.size === 0) return text
  const order = [...spans].sort((a, b) => a - b)
  const ascii = Buffer.byteLength(text, 'utf8') === text.length
  if (ascii) {
    let out = ''
    let at = 0
    for (const i of order) {
      const t = tokens[i]!
      out += text.slice(at, t.start) + REDACTED
      at = t.end
    }
    return out + text.slice(at)
  }
  const bytes = Buffer.from(text, 'utf8')
  const parts: string[] = []
  let at = 0
  for (const i of order) {
    const t = tokens[i]!
    parts.push(bytes.subarray(at, t.start).toString('utf8'), REDACTED)
    at = t.end
  }
  parts.push(bytes.subarray(at).toString('utf8'))
  return parts.join('')
}
