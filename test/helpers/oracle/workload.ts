/**
 * Client-side helpers for oracle workloads: a wire client per session with a
 * unique application_name (how the oracle finds the session's records),
 * Query messages from raw bytes (for client encodings), and what the client
 * saw per Query (the server's results, which the log does not count).
 */
import { frame, WireClient, type Msg } from '../wire.js'
import type { Fixture } from '../proxy.js'
import type { Test } from 'tap'
import type { MatchedPair } from './match.js'

let seq = 0

/** A unique application_name for one oracle session. */
export function appName(tag: string): string {
  return `oracle-${tag}-${process.pid}-${++seq}`
}

export async function connect(f: Fixture, app: string, o: { resettable?: boolean } = {}): Promise<WireClient> {
  return WireClient.connect({ port: f.proxy.port, token: await f.token(), applicationName: app, resettable: o.resettable ?? false })
}

/** A Query message whose text is exactly these bytes (e.g. in a non-UTF-8 client encoding). */
export function queryBytes(...parts: Array<string | number[]>): Buffer {
  const bytes = parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p)))
  return frame('Q', Buffer.concat([...bytes, Buffer.from([0])]))
}

/** The server's results for one statement each: CommandComplete, EmptyQueryResponse, ErrorResponse. */
export function resultCount(msgs: Msg[]): number {
  return msgs.filter((m) => m.name === 'commandComplete' || m.name === 'emptyQuery' || m.name === 'error').length
}

/**
 * For each Query the client sent (in order, by its logged text), the number
 * of statement records matched to it equals the number of results the
 * client received. One assertion; Queries the matcher did not reach (it
 * stops at the first mismatch) show as "unmatched".
 */
export function assertQueryResults(t: Test, pairs: MatchedPair[], sent: Array<{ text: string; results: number }>): void {
  let from = 0
  const recorded = sent.map((q) => {
    const at = pairs.findIndex((p, i) => i >= from && p.server.kind !== 'execute' && p.server.text === q.text)
    if (at < 0) return `${q.text} → unmatched`
    from = at + 1
    return `${q.text} → ${pairs[at]!.records.length}`
  })
  t.same(recorded, sent.map((q) => `${q.text} → ${q.results}`), 'one statement record per result the server sent for each Query')
}
