/**
 * What the frontend decoders (whole-message and streaming) share: the limits
 * they enforce and the ProtocolViolations they raise, worded as PostgreSQL's.
 */
import { ProtocolViolation } from './errors.js'

/**
 * Longest accepted statement/portal name, in bytes (excluding the NUL).
 * Longer names are treated as malformed by every decoder here, streaming or
 * not (PostgreSQL itself has no such limit, but no sane client comes close).
 */
export const MAX_NAME_BYTES = 65536

export const EMPTY: Buffer = Buffer.alloc(0)

// Error messages, worded as PostgreSQL's.
export const MSG_BAD_STRING = 'invalid string in message'
export const MSG_INSUFFICIENT = 'insufficient data left in message'
export const MSG_FORMAT = 'invalid message format'

export function violation(message: string, what: string, detail?: string): ProtocolViolation {
  return new ProtocolViolation(message, detail === undefined ? `${what} message.` : `${what} message: ${detail}.`)
}

export function nameTooLong(what: string): ProtocolViolation {
  return violation(MSG_FORMAT, what, `name longer than ${MAX_NAME_BYTES} bytes`)
}

export function unsupportedFormat(code: number, what: string): ProtocolViolation {
  return violation(`unsupported format code: ${code}`, what)
}

export function badParamLength(len: number, what: string): ProtocolViolation {
  return violation(MSG_INSUFFICIENT, what, `invalid parameter length ${len}`)
}

export function formatCountMismatch(nFormats: number, nParams: number, what: string): ProtocolViolation {
  return what === 'Bind'
    ? violation(`bind message has ${nFormats} parameter formats but ${nParams} parameters`, what)
    : violation(`function call message contains ${nFormats} argument formats but ${nParams} arguments`, what)
}

export function checkMax(maxValueBytes: number): void {
  if (!Number.isSafeInteger(maxValueBytes) || maxValueBytes < 0) {
    throw new RangeError(`maxValueBytes must be a non-negative integer, got ${maxValueBytes}`)
  }
}
