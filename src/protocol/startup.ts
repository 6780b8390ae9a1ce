/**
 * The untyped first packet a PostgreSQL client sends: StartupMessage,
 * SSLRequest, GSSENCRequest or CancelRequest. Pure functions over Buffers.
 *
 * Reference: PostgreSQL "Message Formats" (protocol 3.0 and 3.2) and
 * ProcessStartupPacket() in src/backend/tcop/backend_startup.c.
 */
import { ProtocolViolation, SilentProtocolViolation, SQLSTATE } from './errors.js'

/**
 * Largest accepted startup packet, counting its 4-byte length word:
 * PostgreSQL's MAX_STARTUP_PACKET_LENGTH (10000) excludes the length word.
 */
export const MAX_STARTUP_PACKET_BYTES = 10004

/** Protocol versions the proxy speaks to clients: 3.0 up to 3.PROTOCOL_LATEST_MINOR. */
export const PROTOCOL_MAJOR = 3
export const PROTOCOL_LATEST_MINOR = 2

/** Request codes (sent in place of the protocol version). */
export const CANCEL_REQUEST_CODE = 80877102 // 1234 << 16 | 5678
export const SSL_REQUEST_CODE = 80877103 // 1234 << 16 | 5679
export const GSSENC_REQUEST_CODE = 80877104 // 1234 << 16 | 5680

/** Cancel key length bounds (protocol 3.0 uses exactly 4; 3.2 allows up to 256). */
export const MIN_CANCEL_KEY_BYTES = 4
export const MAX_CANCEL_KEY_BYTES = 256

export type StartupPacket =
  | { kind: 'ssl-request' }
  | { kind: 'gssenc-request' }
  | { kind: 'cancel-request'; processId: number; secretKey: Buffer }
  | { kind: 'startup'; major: number; minor: number; parameters: Map<string, string> }

/**
 * Length-prefixed packet: returns the total number of bytes of the packet
 * (including the length word) once buf holds at least the 4-byte length word,
 * or null if fewer than 4 bytes are available. Throws
 * SilentProtocolViolation for a length < 8 or > MAX_STARTUP_PACKET_BYTES:
 * PostgreSQL closes without an answer (garbage, or a Terminate sent first).
 */
export function startupPacketLength(buf: Buffer): number | null {
  if (buf.length < 4) return null
  const len = buf.readInt32BE(0)
  if (len < 8 || len > MAX_STARTUP_PACKET_BYTES) {
    throw new SilentProtocolViolation('invalid length of startup packet', `Declared length ${len}.`)
  }
  return len
}

/**
 * What PostgreSQL answers (FATAL 0A000) to a protocol version it does not
 * speak, which includes an SSLRequest or GSSENCRequest code once that
 * negotiation is over (1234.5679 on an encrypted connection).
 */
export function unsupportedProtocol(code: number): ProtocolViolation {
  const major = code >>> 16
  const minor = code & 0xffff
  return new ProtocolViolation(
    `unsupported frontend protocol ${major}.${minor}: server supports ${PROTOCOL_MAJOR}.0 to ${PROTOCOL_MAJOR}.${PROTOCOL_LATEST_MINOR}`,
    undefined,
    SQLSTATE.featureNotSupported,
  )
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

function strictUtf8(buf: Buffer, start: number, end: number): string {
  try {
    return utf8.decode(buf.subarray(start, end))
  } catch {
    throw new ProtocolViolation('invalid startup packet: parameter is not valid UTF-8')
  }
}

/**
 * Decode one complete packet; buf is exactly the packet including its length
 * word. Throws ProtocolViolation, with PostgreSQL's SQLSTATE and answer, on
 * any malformation (SilentProtocolViolation where PostgreSQL closes without
 * an answer: an impossible length, a malformed CancelRequest), on a protocol
 * major version other than 3 (0A000), and when the `user` parameter is
 * missing or empty (28000). Like PostgreSQL, an SSLRequest or GSSENCRequest
 * longer than 8 bytes is accepted (the rest is ignored).
 * For a StartupMessage, `database` is set to the user name when absent or
 * empty (as PostgreSQL does). Parameters named `_pq_.*` (protocol options)
 * are kept in the map; all names and values are strictly validated UTF-8.
 * Duplicate names: the last occurrence wins.
 */
export function decodeStartupPacket(buf: Buffer): StartupPacket {
  if (buf.length < 8) {
    throw new SilentProtocolViolation('invalid length of startup packet', `Packet has ${buf.length} bytes.`)
  }
  const len = buf.readInt32BE(0)
  if (len !== buf.length || len > MAX_STARTUP_PACKET_BYTES) {
    throw new SilentProtocolViolation(
      'invalid length of startup packet',
      `Declared length ${len}, packet has ${buf.length} bytes.`,
    )
  }
  const code = buf.readUInt32BE(4)

  switch (code) {
    case SSL_REQUEST_CODE:
      return { kind: 'ssl-request' }
    case GSSENC_REQUEST_CODE:
      return { kind: 'gssenc-request' }
    case CANCEL_REQUEST_CODE: {
      const keyLen = len - 12
      if (keyLen < MIN_CANCEL_KEY_BYTES || keyLen > MAX_CANCEL_KEY_BYTES) {
        // A CancelRequest is never answered, a malformed one neither.
        throw new SilentProtocolViolation('invalid length of cancel request packet', `Packet has ${len} bytes.`)
      }
      return {
        kind: 'cancel-request',
        processId: buf.readInt32BE(8),
        // Copy: the key outlives the (small) packet buffer it came from.
        secretKey: Buffer.from(buf.subarray(12, len)),
      }
    }
  }

  const major = code >>> 16
  const minor = code & 0xffff
  if (major !== PROTOCOL_MAJOR) throw unsupportedProtocol(code)

  const parameters = new Map<string, string>()
  let off = 8
  for (;;) {
    if (off >= len) {
      throw new ProtocolViolation('invalid startup packet layout: expected terminator as last byte')
    }
    if (buf[off] === 0) {
      // Terminator: must be the very last byte.
      if (off !== len - 1) {
        throw new ProtocolViolation('invalid startup packet layout: expected terminator as last byte')
      }
      break
    }
    const nameEnd = buf.indexOf(0, off)
    if (nameEnd < 0 || nameEnd + 1 >= len) {
      // Missing terminator, or a name without a value.
      throw new ProtocolViolation('invalid startup packet layout: expected terminator as last byte')
    }
    const valEnd = buf.indexOf(0, nameEnd + 1)
    if (valEnd < 0) {
      throw new ProtocolViolation('invalid startup packet layout: expected terminator as last byte')
    }
    parameters.set(strictUtf8(buf, off, nameEnd), strictUtf8(buf, nameEnd + 1, valEnd))
    off = valEnd + 1
  }

  const user = parameters.get('user')
  if (user === undefined || user === '') {
    throw new ProtocolViolation('no PostgreSQL user name specified in startup packet', undefined, SQLSTATE.invalidAuthorization)
  }
  const database = parameters.get('database')
  if (database === undefined || database === '') parameters.set('database', user)

  return { kind: 'startup', major, minor, parameters }
}
