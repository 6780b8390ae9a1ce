/*
 * The report's per-record floors in native code, one core, to set beside
 * bench/report-floors.ts's JavaScript ones (issue 14: is 300,000 verified
 * records/s reachable with the canonical check in native code?). Reads the
 * log with read() into one 8 MiB buffer and, per line:
 *   - lines:  finds the line's end (memchr)
 *   - walk:   one table lookup per byte (the least a byte scanner does;
 *             the JavaScript floor of the same loop is in report-floors.ts)
 *   - sha256: OpenSSL SHA-256 of the line (what chain.hash needs)
 *   - both:   walk + sha256
 * Measurement only: nothing of pgwitness runs in C.
 *
 *   gcc -O2 -o /tmp/report-floors-native bench/report-floors-native.c -lcrypto
 *   /tmp/report-floors-native LOG.jsonl
 */
#include <fcntl.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { LINES, WALK, SHA, BOTH };
static const char *NAMES[] = { "lines", "walk", "sha256", "walk + sha256" };

static uint8_t CLASS[256];
static volatile uint64_t sink;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void line(int mode, const uint8_t *p, size_t n) {
  if (mode == WALK || mode == BOTH) {
    uint64_t acc = 0;
    for (size_t i = 0; i < n; i++) acc += CLASS[p[i]];
    sink += acc;
  }
  if (mode == SHA || mode == BOTH) {
    uint8_t md[SHA256_DIGEST_LENGTH];
    SHA256(p, n, md);
    sink += md[0];
  }
}

static void pass(const char *file, int mode) {
  int fd = open(file, O_RDONLY);
  if (fd < 0) { perror(file); exit(1); }
  size_t cap = 8 << 20, have = 0;
  uint8_t *buf = malloc(cap);
  uint64_t lines = 0, bytes = 0;
  double t0 = now();
  for (;;) {
    ssize_t r = read(fd, buf + have, cap - have);
    if (r < 0) { perror("read"); exit(1); }
    if (r == 0) break;
    have += (size_t)r;
    size_t off = 0;
    for (;;) {
      uint8_t *nl = memchr(buf + off, '\n', have - off);
      if (nl == NULL) break;
      size_t n = (size_t)(nl - (buf + off));
      line(mode, buf + off, n);
      lines++;
      bytes += n + 1;
      off += n + 1;
    }
    memmove(buf, buf + off, have - off);
    have -= off;
  }
  double s = now() - t0;
  close(fd);
  free(buf);
  printf("%-14s %9.0f lines/s  %6.3f us per line  (%llu lines, %.0f bytes per line)\n", NAMES[mode], lines / s, s * 1e6 / lines,
         (unsigned long long)lines, (double)bytes / lines);
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: %s LOG.jsonl\n", argv[0]); return 2; }
  for (int i = 0; i < 256; i++) CLASS[i] = (uint8_t)(i < 0x20 ? 1 : i == '"' ? 2 : i == '\\' ? 3 : i >= 0x80 ? 4 : 0);
  pass(argv[1], LINES); // warms the page cache
  for (int mode = LINES; mode <= BOTH; mode++) pass(argv[1], mode);
  return 0;
}
