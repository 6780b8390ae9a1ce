/**
 * Where the proxy's CPU goes, by component, from a Linux `perf` profile of
 * the proxy process (perf attributes CPU correctly; Node's --cpu-prof samples
 * wall time and puts time the process was preempted on whatever ran last).
 *
 *   npx tsx bench/run.ts --no-build --scenario select-only/prepared/c8 --rounds 1 --duration 20 \
 *     --targets pgwitness-on --proxy-node-args="--perf-basic-prof" &
 *   sleep 14; perf record -a -g -F 1999 -o /tmp/perf.data -- sleep 8
 *   perf script -i /tmp/perf.data --comm node -F comm,pid,tid,ip,sym,dso > /tmp/perf.txt
 *   npx tsx bench/profile-components.ts /tmp/perf.txt --us-per-tx 187
 *
 * --us-per-tx: the proxy CPU per transaction bench/run.ts measured for the
 * same target (the table's "proxy CPU s/1k tx" × 1000); shares are turned
 * into µs per transaction with it.
 *
 * Each sample goes to one component: by its leaf frame for kernel code
 * (sockets, TLS records, epoll; file writes and thread-pool hand-offs by the
 * frames above it), OpenSSL, SHA-256 and the garbage collector;
 * otherwise to the nearest pgwitness source file up the stack; what has no
 * pgwitness frame (the event loop, Node's streams) is "Node event loop and streams".
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

const { values, positionals } = parseArgs({ allowPositionals: true, options: { 'us-per-tx': { type: 'string' } } })
if (!positionals[0]) {
  console.error('usage: npx tsx bench/profile-components.ts PERF_SCRIPT_OUTPUT [--us-per-tx N]')
  process.exit(2)
}

const BY_FILE: Array<[RegExp, string]> = [
  [/\/protocol\/(message-stream|frontend|backend-messages|bind-stream|startup)\.js/, 'framing and decoding'],
  [/\/protocol\/client-encoding/, 'framing and decoding'],
  [/\/session\/(statement-tracker|tracked-statement|tracker-entries|protocol-state|transactions|query-results|frontend-observer|statement-policy|client-text-settings|pipelined-readings)\.js/, 'statement tracking'],
  [/\/classify\//, 'statement tracking'],
  [/\/evidence\/|\/session\/statement-records\.js/, 'record building'],
  [/\/ledger\/(canonical-json|chain|statement-members)\.js/, 'canonical JSON and chain'],
  [/\/ledger\/(file-log|intent-journal|log)\.js|node:internal\/fs/, 'audit file writes'],
  [/\/metrics\/|prom-client/, 'metrics'],
  [/\/session\/(relay|socket-reader|governed-session)\.js/, 'relay (JS)'],
]

const GC = /Scaveng|MarkCompact|ConcurrentMarking|MarkingVisitor|Sweeper|Heap::|GCTracer|MemoryAllocator|IncrementalMarking|EvacuateNewSpace|PointersUpdating/

function classify(frames: Array<{ sym: string; dso: string }>): string {
  const leaf = frames[0]
  if (!leaf) return 'unknown'
  if (/sha256_block/.test(leaf.sym)) return 'SHA-256'
  if (GC.test(leaf.sym)) return 'garbage collector'
  if (leaf.dso.includes('kernel') || leaf.sym.startsWith('[k]')) {
    // Kernel time under an audit file write is the write's; everything else is sockets, epoll and scheduling.
    if (frames.some((f) => /\/ledger\/(file-log|intent-journal)\.js|node:internal\/fs|uv__fs_|uv_fs_/.test(f.sym))) return 'audit file writes'
    // Handing work to libuv's thread pool and being woken when it is done (futexes, the async eventfd).
    if (frames.some((f) => /uv__work|uv_async|uv__async|futex|pthread_cond/.test(f.sym))) return 'thread-pool hand-offs'
    return 'TLS and sockets'
  }
  if (/libssl|libcrypto/.test(leaf.dso) || /ssl3_|tls1_|aesni|gcm_|EVP_|ChaCha|poly1305|^SSL_|BIO_/.test(leaf.sym)) return 'TLS and sockets'
  for (const f of frames) {
    if (/TLSWrap|StreamBase::Write|LibuvStreamWrap::DoTryWrite/.test(f.sym)) return 'TLS and sockets'
    for (const [re, name] of BY_FILE) if (re.test(f.sym)) return name
  }
  return 'Node event loop and streams'
}

const counts = new Map<string, number>()
let total = 0
let frames: Array<{ sym: string; dso: string }> = []
const flush = () => {
  if (frames.length === 0) return
  const c = classify(frames)
  counts.set(c, (counts.get(c) ?? 0) + 1)
  total++
  frames = []
}
for (const line of readFileSync(positionals[0], 'utf8').split('\n')) {
  if (line.trim() === '') {
    flush()
    continue
  }
  if (!/^\s/.test(line)) continue // the sample's header line (comm pid/tid)
  // "\t    7f12... symbol+0x1f (dso)"
  const m = /^\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)$/.exec(line)
  if (m) frames.push({ sym: m[1]!, dso: m[2]! })
}
flush()

const usPerTx = values['us-per-tx'] ? Number(values['us-per-tx']) : null
console.log(`| component | share of proxy CPU |${usPerTx ? ' µs per transaction |' : ''}`)
console.log(`|---|---:|${usPerTx ? '---:|' : ''}`)
for (const [name, n] of [...counts].sort((a, b) => b[1] - a[1])) {
  const share = n / total
  console.log(`| ${name} | ${(share * 100).toFixed(1)}% |${usPerTx ? ` ${(share * usPerTx).toFixed(0)} |` : ''}`)
}
console.log(`\n${total} samples`)
