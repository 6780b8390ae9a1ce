/**
 * CSV tables written as the log streams (RFC 4180: quoted when needed,
 * CRLF-free lines ending in \n). Rows are buffered and written in large
 * synchronous chunks so a multi-million-row table costs little.
 */
import { closeSync, openSync, writeSync } from 'node:fs'

const FLUSH_BYTES = 1 << 20

export type Cell = string | number | boolean | null | undefined

/** Characters that make a cell need quotes. */
const NEEDS_QUOTES = /[",\n\r]/

export function csvCell(v: Cell): string {
  if (v === null || v === undefined) return ''
  // Numbers and booleans never need quotes or a formula guard (the fast path: most cells).
  if (typeof v !== 'string') return String(v)
  if (v.length === 0) return v
  // A leading = + - @ would be read as a formula by spreadsheet programs: quote and prefix it.
  const c = v.charCodeAt(0)
  if (c === 0x3d || c === 0x2b || c === 0x2d || c === 0x40 || c === 0x09 || c === 0x0d) return `"'${v.replaceAll('"', '""')}"`
  return NEEDS_QUOTES.test(v) ? `"${v.replaceAll('"', '""')}"` : v
}

export class CsvWriter {
  private readonly fd: number
  private pending: string[] = []
  private pendingBytes = 0
  rows = 0

  constructor(readonly path: string, header: readonly string[]) {
    this.fd = openSync(path, 'w', 0o644)
    this.line(header)
  }

  row(cells: readonly Cell[]): void {
    this.rows++
    this.line(cells)
  }

  private line(cells: readonly Cell[]): void {
    let s = csvCell(cells[0])
    for (let i = 1; i < cells.length; i++) s += ',' + csvCell(cells[i])
    s += '\n'
    this.pending.push(s)
    this.pendingBytes += s.length
    if (this.pendingBytes >= FLUSH_BYTES) this.flush()
  }

  private flush(): void {
    if (this.pending.length === 0) return
    writeSync(this.fd, this.pending.join(''))
    this.pending = []
    this.pendingBytes = 0
  }

  close(): void {
    this.flush()
    closeSync(this.fd)
  }
}
