/**
 * The approval a client presents in its startup `options`
 * (`-c pgwitness.approval=<jwt>`, `-cpgwitness.approval=<jwt>` or
 * `--pgwitness.approval=<jwt>`, as PGOPTIONS, node-postgres `options` and
 * JDBC `options=` send it). It is taken out of the options before anything
 * else looks at them: it is the proxy's to consume, never forwarded upstream
 * and never logged.
 */
import { ApprovalError } from '../identity/approval.js'

const SETTING = 'pgwitness.approval'

/** One whitespace-separated argument of `options`, as PostgreSQL's pg_split_opts reads it. */
interface Arg {
  /** With backslash escapes resolved. */
  text: string
  start: number
  end: number
}

/**
 * The startup parameters without the approval, and the approval (null when
 * none was presented). Throws ApprovalError when the option is given more
 * than once or without a value.
 */
export function takeApproval(parameters: ReadonlyMap<string, string>): { parameters: Map<string, string>; approval: string | null } {
  const out = new Map(parameters)
  const options = parameters.get('options')
  if (options === undefined) return { parameters: out, approval: null }
  const args = splitOptions(options)
  const found: Array<{ value: string | null; start: number; end: number }> = []
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    let setting: string | null = null
    const start = a.start
    if (a.text === '-c' && i + 1 < args.length) {
      setting = args[i + 1]!.text
      i++
    } else if (a.text.startsWith('-c')) {
      setting = a.text.slice(2)
    } else if (a.text.startsWith('--')) {
      setting = a.text.slice(2)
    }
    if (setting === null) continue
    const eq = setting.indexOf('=')
    const name = (eq < 0 ? setting : setting.slice(0, eq)).toLowerCase()
    if (name !== SETTING) continue
    found.push({ value: eq < 0 ? null : setting.slice(eq + 1), start, end: args[i]!.end })
  }
  if (found.length === 0) return { parameters: out, approval: null }
  if (found.length > 1) throw new ApprovalError('approval_invalid', `${SETTING} was given more than once in the startup options`)
  const { value, start, end } = found[0]!
  if (value === null || value.length === 0) throw new ApprovalError('approval_invalid', `${SETTING} was given without a value in the startup options`)
  // Cut its bytes out of the original text: the other options reach the server exactly as the client wrote them.
  const rest = (options.slice(0, start) + options.slice(end)).trim()
  if (rest.length === 0) out.delete('options')
  else out.set('options', rest)
  return { parameters: out, approval: value }
}

/** As PostgreSQL splits `options`: on whitespace, a backslash taking the next character literally. */
function splitOptions(s: string): Arg[] {
  const args: Arg[] = []
  let i = 0
  while (i < s.length) {
    while (i < s.length && isSpace(s[i]!)) i++
    if (i >= s.length) break
    const start = i
    let text = ''
    while (i < s.length && !isSpace(s[i]!)) {
      if (s[i] === '\\' && i + 1 < s.length) i++
      text += s[i]
      i++
    }
    args.push({ text, start, end: i })
  }
  return args
}

function isSpace(c: string): boolean {
  return c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v'
}
