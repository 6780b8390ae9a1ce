// Preloaded into the proxy for memory figures only (bench/figures.ts
// --memory-gc, bench/tls-idle-memory.ts: node --expose-gc --require THIS):
// SIGUSR2 runs a garbage collection, then writes process.memoryUsage() to
// stderr as one JSON line (which part of RSS is the JS heap). The proxy
// itself does not handle SIGUSR2.
//   PGW_BENCH_GC=full         a full (major) GC: the heap's garbage is gone,
//                             but the young generation keeps the size it grew to;
//   PGW_BENCH_GC=last-resort  V8's collection of all available garbage, which
//                             also gives back grown semi-spaces and pooled pages:
//                             what is left is what the process retains.
const flavor = process.env.PGW_BENCH_GC === 'last-resort' ? 'last-resort' : 'regular'
process.on('SIGUSR2', () => {
  if (typeof global.gc === 'function') global.gc({ type: 'major', execution: 'sync', flavor })
  process.stderr.write(JSON.stringify({ gcMemoryUsage: process.memoryUsage() }) + '\n')
})
