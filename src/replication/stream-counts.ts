import type { StreamedCounts } from '../evidence/types.js'

/**
 * CopyData relayed each way (a replication stream: WAL, decoded changes,
 * backup data one way; standby status updates and feedback the other).
 * Counted from message headers only: nothing per message is decoded or kept.
 */
export class StreamCounter {
  private fromClientMessages = 0
  private fromClientBytes = 0
  private fromServerMessages = 0
  private fromServerBytes = 0

  client(bodyLength: number): void {
    this.fromClientMessages++
    this.fromClientBytes += bodyLength
  }

  server(bodyLength: number): void {
    this.fromServerMessages++
    this.fromServerBytes += bodyLength
  }

  get counts(): StreamedCounts {
    return {
      from_client: { messages: this.fromClientMessages, bytes: this.fromClientBytes },
      from_server: { messages: this.fromServerMessages, bytes: this.fromServerBytes },
    }
  }
}
