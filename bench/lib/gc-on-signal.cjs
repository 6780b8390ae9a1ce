// Preloaded into the proxy for memory figures only (bench/figures.ts,
// bench/idle-memory-breakdown.ts: node --expose-gc --require THIS): SIGUSR2
// runs a full garbage collection, so RSS is read without the garbage of the
// TLS handshakes and token checks — as bench/tls-idle-memory.ts reads the
// bare Node.js TLS floor. The proxy itself does not handle SIGUSR2.
process.on('SIGUSR2', () => {
  if (typeof global.gc === 'function') global.gc()
})
