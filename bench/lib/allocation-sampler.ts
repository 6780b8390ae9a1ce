/**
 * Bytes allocated on the V8 heap per unit of work, by allocating function:
 * V8's sampling heap profiler, with the objects the garbage collector
 * already collected kept in the profile (by default it reports only what
 * is still alive, which misses exactly the short-lived garbage that costs).
 */
import { Session } from 'node:inspector/promises'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string }
  children: ProfileNode[]
}

export class AllocationSampler {
  private readonly session = new Session()

  constructor(private readonly intervalBytes = 256) {
    this.session.connect()
  }

  async start(): Promise<void> {
    // includeObjectsCollectedBy*: V8 11's flags (Node 20), not yet in @types/node's protocol types.
    await this.session.post('HeapProfiler.startSampling', {
      samplingInterval: this.intervalBytes,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    } as never)
  }

  /** Stop; the top `top` allocating functions as text lines, bytes divided by `units`. */
  async stop(units: number, top = 15): Promise<string> {
    const { profile } = (await this.session.post('HeapProfiler.stopSampling')) as unknown as {
      profile: { head: ProfileNode; samples: Array<{ nodeId: number; size: number }> }
    }
    this.session.disconnect()
    const bytesByNode = new Map<number, number>()
    for (const s of profile.samples) bytesByNode.set(s.nodeId, (bytesByNode.get(s.nodeId) ?? 0) + s.size)
    const byFunction = new Map<string, number>()
    let total = 0
    const walk = (n: ProfileNode): void => {
      const bytes = bytesByNode.get(n.id) ?? 0
      if (bytes > 0) {
        const f = n.callFrame
        const name = `${f.functionName || '(anonymous)'} ${f.url.split('/').slice(-2).join('/')}`
        byFunction.set(name, (byFunction.get(name) ?? 0) + bytes)
        total += bytes
      }
      for (const c of n.children) walk(c)
    }
    walk(profile.head)
    const rows = [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, top)
    return [`  ${Math.round(total / units)} in all`, ...rows.map(([name, b]) => `  ${String(Math.round(b / units)).padStart(6)}  ${name}`)].join('\n')
  }
}
