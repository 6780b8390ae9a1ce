/**
 * The WebAssembly build of canonical-scan.c: the canonical-form check of
 * `pgwitness verify` (and of the report, which verifies first) at native
 * speed. The module is embedded (canonical-scan-module.ts, made by
 * scripts/build-wasm.sh from canonical-scan.c), so nothing is compiled or
 * fetched at run time and no toolchain is needed to install pgwitness.
 *
 * It only ever says "accepted" or "not accepted here"; the TypeScript
 * scanner decides every line it does not accept (see canonical-scan.c).
 */
import { CANONICAL_SCAN_WASM_BASE64 } from './canonical-scan-module.js'

/** Offsets into the line and the chain's seq of the last accepted line (see RESULT in canonical-scan.c). */
export interface WasmScanResult {
  chainAt: number
  hashAt: number
  prevAt: number
  seq: number
  typeStart: number
  typeEnd: number
}

// The WebAssembly global, typed here: the project's TypeScript libs (no DOM) do not declare it.
interface WasmMemory {
  readonly buffer: ArrayBuffer
  grow(pages: number): number
}
interface WasmModule {
  readonly __wasmModule?: never
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => WasmModule
  Instance: new (module: WasmModule) => { exports: unknown }
}
const WebAssemblyApi = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly

interface Exports {
  memory: WasmMemory
  line_buffer(): number
  result(): number
  facts(): number
  scan(len: number): number
  scan_facts(len: number): number
}

/** What each slot of `facts` holds after scanFacts: [start, end) of the member's value (0, 0 when absent). */
export const FACT_SLOT_NAMES = [
  null, 'time', 'session.id', 'identity.subject', 'identity.issuer', 'identity.method', 'identity.token_id',
  'upstream.role', 'upstream.database', 'statement.command', 'statement.classes', 'statement.objects', 'statement.text',
  'outcome.status', 'outcome.rows', 'outcome.duration_us',
] as const

/** Zero bytes after the line: the scanner's reads past its end stop on them. */
const PAD = 16
const PAGE = 65536

export class WasmLineScanner {
  private readonly exports: Exports
  private readonly base: number
  private bytes!: Buffer
  private results!: Uint32Array
  /** After scanFacts: for slot i (FACT_SLOT_NAMES), the value's [facts[2i], facts[2i+1]) from the line's start. */
  facts!: Uint32Array
  readonly last: WasmScanResult = { chainAt: 0, hashAt: 0, prevAt: 0, seq: 0, typeStart: 0, typeEnd: 0 }

  constructor(module: WasmModule) {
    this.exports = new WebAssemblyApi!.Instance(module).exports as unknown as Exports
    this.base = this.exports.line_buffer()
    this.attachViews()
  }

  /** Whether b[start, end) is accepted as a canonical chained record; if so, `last` says where its parts are (offsets from `start`). */
  scan(b: Buffer, start: number, end: number): boolean {
    return this.run(b, start, end, false)
  }

  /** scan(), also noting where the report's fields are (`facts`). */
  scanFacts(b: Buffer, start: number, end: number): boolean {
    return this.run(b, start, end, true)
  }

  private run(b: Buffer, start: number, end: number, facts: boolean): boolean {
    const len = end - start
    if (this.base + len + PAD > this.bytes.length) this.grow(this.base + len + PAD)
    const mem = this.bytes
    b.copy(mem, this.base, start, end)
    mem.fill(0, this.base + len, this.base + len + PAD)
    if ((facts ? this.exports.scan_facts(len) : this.exports.scan(len)) !== 1) return false
    const r = this.results
    const last = this.last
    last.chainAt = r[0]!
    last.hashAt = r[1]!
    last.prevAt = r[2]!
    last.seq = r[4]! * 2 ** 32 + r[3]!
    last.typeStart = r[5]!
    last.typeEnd = r[6]!
    return true
  }

  private grow(bytes: number): void {
    const memory = this.exports.memory
    memory.grow(Math.ceil((bytes - memory.buffer.byteLength) / PAGE))
    this.attachViews() // growing detaches the old ones
  }

  /** Views of the module's memory: the line buffer, the results, the facts. */
  private attachViews(): void {
    const buffer = this.exports.memory.buffer
    this.bytes = Buffer.from(buffer)
    this.results = new Uint32Array(buffer, this.exports.result(), 8)
    this.facts = new Uint32Array(buffer, this.exports.facts(), 2 * FACT_SLOT_NAMES.length)
  }
}

let compiled: WasmModule | null | undefined

/** A scanner on the WebAssembly build; null where WebAssembly is not available (the TypeScript scanner does the work alone). */
export function wasmLineScanner(): WasmLineScanner | null {
  if (compiled === undefined) {
    try {
      compiled = WebAssemblyApi === undefined ? null : new WebAssemblyApi.Module(Buffer.from(CANONICAL_SCAN_WASM_BASE64, 'base64'))
    } catch {
      compiled = null
    }
  }
  return compiled === null ? null : new WasmLineScanner(compiled)
}
