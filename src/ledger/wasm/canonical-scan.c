/*
 * The fast path of src/ledger/canonical-scan.ts in C, compiled to
 * WebAssembly (scripts/build-wasm.sh; the module is embedded in
 * canonical-scan-module.ts and run by canonical-scan-wasm.ts). It decides,
 * in one pass over the bytes, whether a line is the RFC 8785 canonical JSON
 * of a chained record, exactly as the TypeScript scanner does: ~1.4 µs per
 * 1.7 kB line with the copy into its memory, and steady, where the TypeScript scanner's time moves between
 * runs (bench/report-floors.ts prints both).
 *
 * It answers only "accepted" (1) or "not accepted here" (0). Anything it is
 * not sure of — a member name with escapes or non-ASCII characters (their
 * order is by UTF-16 code units), a number that is not a plain integer of up
 * to 15 digits — is not accepted here, and the caller asks the TypeScript
 * scanner, which decides. So it may refuse what the TypeScript scanner
 * accepts, and must never accept what it refuses:
 * test/unit/canonical-scan-wasm.test.ts checks that on generated and
 * mutated records.
 *
 * Freestanding: no libc. The line is copied to line_buffer() by the caller,
 * followed by at least 8 zero bytes (reads past the end stop there).
 */

#include <wasm_simd128.h>

typedef unsigned char u8;
typedef unsigned int u32;

#define MAX_DEPTH 200
#define Q 0x22
#define BS 0x5c

static const u8 *B;
static u32 END;

/* Results of the last accepted line, read by the caller through result(). */
static u32 RESULT[8];
enum { R_CHAIN_AT, R_HASH_AT, R_PREV_AT, R_SEQ_LOW, R_SEQ_HIGH, R_TYPE_START, R_TYPE_END };

extern u8 __heap_base;

/* Where the caller puts the line: the start of the free memory. */
__attribute__((export_name("line_buffer"))) u32 line_buffer(void) { return (u32)&__heap_base; }
__attribute__((export_name("result"))) u32 result(void) { return (u32)RESULT; }

/* Bytes inside a string: 0 plain ASCII, 1 '"', 2 '\', 3 a control, 4 part of a non-ASCII character. */
static u8 string_byte(u8 c) {
  if (c < 0x20) return 3;
  if (c == Q) return 1;
  if (c == BS) return 2;
  if (c >= 0x80) return 4;
  return 0;
}

static int is_digit(u8 c) { return c >= 0x30 && c <= 0x39; }
static int is_hex(u8 c) { return is_digit(c) || (c >= 0x61 && c <= 0x66); }

static long scan_value(long p, int depth);

/*
 * One UTF-8 character starting at p (its first byte >= 0x80), valid as
 * Node's isUtf8 has it: no overlong forms, no surrogates, nothing above
 * U+10FFFF. Returns the offset after it, or -1.
 */
static long scan_utf8(long p) {
  const u8 *b = B;
  u8 c = b[p];
  long n;
  u32 min;
  u32 cp;
  if (c >= 0xc2 && c <= 0xdf) { n = 1; cp = c & 0x1f; min = 0x80; }
  else if (c >= 0xe0 && c <= 0xef) { n = 2; cp = c & 0x0f; min = 0x800; }
  else if (c >= 0xf0 && c <= 0xf4) { n = 3; cp = c & 0x07; min = 0x10000; }
  else return -1;
  if ((u32)(p + n) >= END) return -1;
  for (long i = 1; i <= n; i++) {
    u8 k = b[p + i];
    if ((k & 0xc0) != 0x80) return -1;
    cp = (cp << 6) | (k & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return -1;
  return p + n + 1;
}

/* A string as JCS writes it. `plain`, when given, says whether it had no escapes and no non-ASCII characters. */
static long scan_string(long p, int *plain) {
  const u8 *b = B;
  u32 end = END;
  if (b[p] != Q) return -1;
  p++;
  int simple = 1;
  for (;;) {
    /* Sixteen bytes at a time to the next byte that is not plain ASCII: most of a record is string content. */
    while ((u32)(p + 16) <= end) {
      v128_t v = wasm_v128_load(b + p);
      v128_t special = wasm_v128_or(wasm_i8x16_eq(v, wasm_i8x16_splat(Q)), wasm_i8x16_eq(v, wasm_i8x16_splat(BS)));
      /* Signed: below 0x20 (a control) or negative (0x80 and up, part of a non-ASCII character). */
      special = wasm_v128_or(special, wasm_i8x16_lt(v, wasm_i8x16_splat(0x20)));
      if (wasm_v128_any_true(special)) {
        p += __builtin_ctz(wasm_i8x16_bitmask(special));
        break;
      }
      p += 16;
    }
    while ((u32)p < end && string_byte(b[p]) == 0) p++;
    if ((u32)p >= end) return -1;
    u8 k = string_byte(b[p]);
    if (k == 1) break;
    if (k == 3) return -1;
    simple = 0;
    if (k == 4) {
      p = scan_utf8(p);
      if (p < 0) return -1;
      continue;
    }
    /* JCS escapes: \" \\ \b \f \n \r \t, and \u00xx (lowercase) for the other controls. */
    u8 e = b[p + 1];
    if (e == Q || e == BS || e == 0x62 || e == 0x66 || e == 0x6e || e == 0x72 || e == 0x74) {
      p += 2;
      continue;
    }
    if (e != 0x75 || (u32)(p + 5) >= end || b[p + 2] != 0x30 || b[p + 3] != 0x30) return -1;
    u8 h = b[p + 4];
    u8 l = b[p + 5];
    int lv = is_digit(l) ? l - 0x30 : (l >= 0x61 && l <= 0x66) ? l - 0x61 + 10 : -1;
    if (lv < 0 || (h != 0x30 && h != 0x31)) return -1;
    int v = (h - 0x30) * 16 + lv;
    if (v == 0x08 || v == 0x09 || v == 0x0a || v == 0x0c || v == 0x0d) return -1;
    p += 6;
  }
  if (plain) *plain = simple;
  return p + 1;
}

/* A plain integer of up to 15 digits, canonical (no leading zero, no -0); anything else is not accepted here. */
static long scan_number(long s) {
  const u8 *b = B;
  long p = s;
  if (b[p] == 0x2d) p++;
  long digits = p;
  while ((u32)p < END && is_digit(b[p])) p++;
  long n = p - digits;
  if (n == 0 || n > 15) return -1;
  u8 c = b[p];
  if (c == 0x2e || c == 0x65 || c == 0x45 || c == 0x2b || c == 0x2d) return -1;
  if (b[digits] == 0x30 && !(n == 1 && digits == s)) return -1;
  return p;
}

static int literal_at(const char *lit, long p) {
  long i = 0;
  for (; lit[i]; i++) {
    if ((u32)(p + i) >= END || B[p + i] != (u8)lit[i]) return 0;
  }
  return 1;
}

static int hex64_at(long p) {
  if ((u32)(p + 64) > END) return 0;
  for (long i = p; i < p + 64; i++) if (!is_hex(B[i])) return 0;
  return 1;
}

/* The top-level chain object, in the one layout canonicalization gives it. */
static long scan_chain(long p) {
  const u8 *b = B;
  long at = p;
  if (!literal_at("{\"hash\":\"", p)) return -1;
  p += 9;
  if (!hex64_at(p)) return -1;
  long hash = p;
  p += 64;
  if (!literal_at("\",\"prev\":\"", p)) return -1;
  p += 10;
  if (!hex64_at(p)) return -1;
  long prev = p;
  p += 64;
  if (!literal_at("\",\"seq\":", p)) return -1;
  p += 8;
  long ds = p;
  unsigned long long seq = 0;
  while ((u32)p < END && is_digit(b[p])) {
    seq = seq * 10 + (b[p] - 0x30);
    p++;
  }
  if (p == ds || p - ds > 15 || b[ds] == 0x30 || b[p] != 0x7d) return -1;
  RESULT[R_CHAIN_AT] = (u32)at;
  RESULT[R_HASH_AT] = (u32)hash;
  RESULT[R_PREV_AT] = (u32)prev;
  RESULT[R_SEQ_LOW] = (u32)(seq & 0xffffffffu);
  RESULT[R_SEQ_HIGH] = (u32)(seq >> 32);
  return p + 1;
}

/* Strictly ascending plain ASCII member names (byte order is UTF-16 code unit order for them). */
static int ascending(long as, long ae, long bs, long be) {
  long n = ae - as < be - bs ? ae - as : be - bs;
  for (long i = 0; i < n; i++) {
    u8 x = B[as + i];
    u8 y = B[bs + i];
    if (x != y) return x < y;
  }
  return ae - as < be - bs;
}

static int found_chain;

/*
 * Fields for the report (scan_facts): where the values of a few members
 * are, [start, end) from the line's start (strings with their quotes),
 * found in the same pass; 0, 0 where a record has no such member. Slots:
 * see FACT_SLOT_NAMES in canonical-scan-wasm.ts.
 */
#define FACT_SLOTS 16
static u32 FACTS[2 * FACT_SLOTS];
static int want_facts;

__attribute__((export_name("facts"))) u32 facts(void) { return (u32)FACTS; }

static int name_is(long ks, long klen, const char *lit) {
  long i = 0;
  for (; lit[i]; i++) if (i >= klen || B[ks + i] != (u8)lit[i]) return 0;
  return i == klen;
}

/* The top-level members whose own members are wanted: 0 session, 1 identity, 2 upstream, 3 statement, 4 outcome. */
static int fact_parent(long ks, long klen) {
  if (name_is(ks, klen, "session")) return 0;
  if (name_is(ks, klen, "identity")) return 1;
  if (name_is(ks, klen, "upstream")) return 2;
  if (name_is(ks, klen, "statement")) return 3;
  if (name_is(ks, klen, "outcome")) return 4;
  return -1;
}

static int fact_slot(int parent, long ks, long klen) {
  switch (parent) {
    case -1: return name_is(ks, klen, "time") ? 1 : -1;
    case 0: return name_is(ks, klen, "id") ? 2 : -1;
    case 1:
      if (name_is(ks, klen, "subject")) return 3;
      if (name_is(ks, klen, "issuer")) return 4;
      if (name_is(ks, klen, "method")) return 5;
      return name_is(ks, klen, "token_id") ? 6 : -1;
    case 2:
      if (name_is(ks, klen, "role")) return 7;
      return name_is(ks, klen, "database") ? 8 : -1;
    case 3:
      if (name_is(ks, klen, "command")) return 9;
      if (name_is(ks, klen, "classes")) return 10;
      if (name_is(ks, klen, "objects")) return 11;
      return name_is(ks, klen, "text") ? 12 : -1;
    case 4:
      if (name_is(ks, klen, "status")) return 13;
      if (name_is(ks, klen, "rows")) return 14;
      return name_is(ks, klen, "duration_us") ? 15 : -1;
  }
  return -1;
}

/* `parent`: which wanted top-level member this object is the value of (-1: none). */
static long scan_object(long p, int depth, int top, int parent) {
  const u8 *b = B;
  if (b[p] != 0x7b) return -1;
  p++;
  if (b[p] == 0x7d) return p + 1;
  long prev_start = -1;
  long prev_end = -1;
  for (;;) {
    if (b[p] != Q) return -1;
    long ks = p + 1;
    int plain = 0;
    p = scan_string(p, &plain);
    /* A name with escapes or non-ASCII characters: ordered by UTF-16 code units, left to the TypeScript scanner. */
    if (p < 0 || !plain) return -1;
    long ke = p - 1;
    if (prev_start >= 0 && !ascending(prev_start, prev_end, ks, ke)) return -1;
    prev_start = ks;
    prev_end = ke;
    if (b[p] != 0x3a) return -1;
    p++;
    long klen = ke - ks;
    if (top && klen == 4 && b[ks] == 't' && b[ks + 1] == 'y' && b[ks + 2] == 'p' && b[ks + 3] == 'e' && b[p] == Q) {
      long vs = p;
      p = scan_string(p, 0);
      if (p > 0) {
        RESULT[R_TYPE_START] = (u32)vs;
        RESULT[R_TYPE_END] = (u32)p;
      }
    } else if (top && klen == 5 && b[ks] == 'c' && b[ks + 1] == 'h' && b[ks + 2] == 'a' && b[ks + 3] == 'i' && b[ks + 4] == 'n') {
      p = scan_chain(p);
      if (p > 0) found_chain = 1;
    } else if (want_facts && (top || parent >= 0)) {
      int child = top ? fact_parent(ks, klen) : -1;
      int slot = child >= 0 ? -1 : fact_slot(top ? -1 : parent, ks, klen);
      long vs = p;
      p = child >= 0 && b[p] == 0x7b ? scan_object(p, depth + 1, 0, child) : scan_value(p, depth + 1);
      if (slot >= 0 && p > 0) {
        FACTS[2 * slot] = (u32)vs;
        FACTS[2 * slot + 1] = (u32)p;
      }
    } else {
      p = scan_value(p, depth + 1);
    }
    if (p < 0) return -1;
    u8 d = b[p++];
    if (d == 0x2c) continue;
    return d == 0x7d ? p : -1;
  }
}

static long scan_array(long p, int depth) {
  const u8 *b = B;
  p++;
  if (b[p] == 0x5d) return p + 1;
  for (;;) {
    p = scan_value(p, depth + 1);
    if (p < 0) return -1;
    u8 c = b[p++];
    if (c == 0x2c) continue;
    return c == 0x5d ? p : -1;
  }
}

static long scan_value(long p, int depth) {
  if (depth > MAX_DEPTH) return -1;
  const u8 *b = B;
  u8 c = b[p];
  switch (c) {
    case Q:
      return scan_string(p, 0);
    case 0x7b:
      return scan_object(p, depth, 0, -1);
    case 0x5b:
      return scan_array(p, depth);
    case 't':
      return (u32)(p + 3) < END && b[p + 1] == 'r' && b[p + 2] == 'u' && b[p + 3] == 'e' ? p + 4 : -1;
    case 'f':
      return (u32)(p + 4) < END && b[p + 1] == 'a' && b[p + 2] == 'l' && b[p + 3] == 's' && b[p + 4] == 'e' ? p + 5 : -1;
    case 'n':
      return (u32)(p + 3) < END && b[p + 1] == 'u' && b[p + 2] == 'l' && b[p + 3] == 'l' ? p + 4 : -1;
    default:
      return c == 0x2d || is_digit(c) ? scan_number(p) : -1;
  }
}

/*
 * Scan the line of `len` bytes at line_buffer(). 1: it is canonical JSON of
 * an object with a well-formed top-level chain; result() then holds the
 * chain's offsets, its seq and the top-level type's value. 0: not accepted
 * here (the TypeScript scanner decides).
 */
__attribute__((export_name("scan"))) int scan(u32 len) {
  B = &__heap_base;
  END = len;
  found_chain = 0;
  RESULT[R_TYPE_START] = 0;
  RESULT[R_TYPE_END] = 0;
  long p = scan_object(0, 0, 1, -1);
  return p == (long)len && found_chain;
}

/* scan(), also noting where the report's fields are (facts()). */
__attribute__((export_name("scan_facts"))) int scan_facts(u32 len) {
  for (int i = 0; i < 2 * FACT_SLOTS; i++) FACTS[i] = 0;
  want_facts = 1;
  int accepted = scan(len);
  want_facts = 0;
  return accepted;
}
