/**
 * The stdout sink: records shipped from the audit log to standard output
 * (a container's log pipeline), with a persisted cursor like every shipped
 * sink, so a restart resumes where the last write left off and a crash
 * never skips a record. A batch counts as delivered once Node has handed it
 * to the stdout file descriptor (the write callback); a pipe that is not read
 * only grows the sink's lag, never the proxy's memory.
 *
 * (`audit.stdout: true` is different: it mirrors each record to stdout as it
 * is written, for a proxy without a file log.)
 */
import type { Writable } from 'node:stream'
import type { StdoutSinkConfig } from '../config/types.js'
import { rendererFor, type RecordRenderer } from './format.js'
import { errorText, SinkError, type FollowedRecord, type SinkTransport } from './types.js'

export class StdoutTransport implements SinkTransport {
  readonly describe = 'stdout'
  private readonly render: RecordRenderer

  constructor(c: StdoutSinkConfig, private readonly out: Writable = process.stdout) {
    this.render = rendererFor(c.format)
  }

  send(batch: readonly FollowedRecord[], signal: AbortSignal): Promise<void> {
    let text = ''
    for (const r of batch) text += this.render(r) + '\n'
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(new SinkError('aborted'))
      this.out.write(text, (err) => (err ? reject(new SinkError(`stdout: ${errorText(err)}`, { cause: err })) : resolve()))
    })
  }

  async close(): Promise<void> {}
}
