import { createHmac } from 'node:crypto'
import type { ParameterMode } from '../config/types.js'
import type { RecordedParameter, StatementInfo } from './types.js'
import { decodeClientText } from '../protocol/client-encoding.js'

/** A bind/function-call argument as decoded from the wire (value possibly capped). */
export interface WireParameter {
  isNull: boolean
  /** Full length on the wire; -1 for NULL. */
  length: number
  /** At most the configured cap of the value. */
  value: Buffer
  truncated: boolean
}

export interface ParameterPolicy {
  mode: ParameterMode
  hmacKey: string | null
}

/**
 * What of the bind parameters goes into a record: the values (text as text,
 * binary as base64), keyed hashes of them, or only their count. Text values
 * are decoded from the session's client encoding; when that is not exact,
 * the bytes as sent are kept too (`raw_base64`).
 */
export function recordParameters(
  params: readonly WireParameter[],
  formatOf: (i: number) => 0 | 1,
  policy: ParameterPolicy,
  clientEncoding = 'UTF8',
): StatementInfo['parameters'] {
  if (policy.mode === 'omit') return { count: params.length }
  const out: RecordedParameter[] = new Array(params.length)
  for (let i = 0; i < params.length; i++) {
    const p = params[i]!
    if (p.isNull) {
      out[i] = null
    } else if (policy.mode === 'hmac') {
      const h = createHmac('sha256', policy.hmacKey ?? '').update(p.value).digest('hex')
      out[i] = { format: 'hmac', hmac_sha256: h, length: p.length }
    } else if (formatOf(i) === 1) {
      out[i] = p.truncated
        ? { format: 'binary', base64: p.value.toString('base64'), truncated: true, length: p.length }
        : { format: 'binary', base64: p.value.toString('base64') }
    } else {
      const d = decodeClientText(p.value, clientEncoding, p.truncated)
      const value: RecordedParameter = p.truncated
        ? { format: 'text', value: d.text, truncated: true, length: p.length }
        : { format: 'text', value: d.text }
      if (d.raw !== null) value.raw_base64 = d.raw
      out[i] = value
    }
  }
  return out
}
