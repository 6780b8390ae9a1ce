import { normaliseEncodingName } from '../protocol/client-encoding.js'
import type { TextOrigin } from '../classify/split.js'

/**
 * The session settings that decide how the server reads the client's text:
 * `client_encoding` (the bytes' encoding) and `standard_conforming_strings`
 * (whether a backslash escapes in '...'). Both come from the server's own
 * ParameterStatus messages: at connect, then whenever a statement changes
 * them, so no way of changing them (SET, set_config, a function, RESET) is missed.
 */
export class ClientTextSettings {
  /** As `SHOW client_encoding` prints it. */
  encoding = 'UTF8'
  standardConformingStrings = true

  constructor(initial?: Iterable<readonly [string, string]>) {
    if (initial) for (const [name, value] of initial) this.parameterStatus(name, value)
  }

  /** A ParameterStatus from the server. */
  parameterStatus(name: string, value: string): void {
    if (name === 'client_encoding') this.encoding = normaliseEncodingName(value) ?? value
    else if (name === 'standard_conforming_strings') this.standardConformingStrings = value !== 'off'
  }

  /** Names the settings in effect, to tell later whether a text was read under the current ones. */
  get key(): string {
    return this.standardConformingStrings ? this.encoding : `${this.encoding}/nonstandard`
  }

  /** The origin of a text decoded now (see TextOrigin). */
  origin(encoding: string | null, raw: string | null): TextOrigin {
    return { encoding, raw, standardConformingStrings: this.standardConformingStrings }
  }
}
