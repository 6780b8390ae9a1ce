/**
 * The server's ParameterStatus values as [name, value] pairs, shared between
 * connections: every upstream connection reports the same dozen or so
 * (server_version, DateStyle, TimeZone, …), and a session keeps its list for
 * as long as it lives, so one frozen pair per distinct name and value saves
 * about 1 KiB per idle connection. Values that vary per connection
 * (application_name) fill the table only up to its bound; past it pairs are
 * made, not shared.
 */
export type ParameterPair = readonly [name: string, value: string]

const MAX_SHARED = 512
const shared = new Map<string, ParameterPair>()

export function parameterPair(name: string, value: string): ParameterPair {
  // The name's length first: no two different pairs make one key.
  const key = name.length + ':' + name + value
  let pair = shared.get(key)
  if (pair === undefined) {
    pair = Object.freeze([name, value] as const)
    if (shared.size < MAX_SHARED) shared.set(key, pair)
  }
  return pair
}
