/*
 * finite: a varwatch filter plugin in C, proving the ABI of plugins/ABI.md
 * needs no Go and no parser library. It drops float updates whose new value
 * is NaN or infinite, and embedding updates with such an element, so one
 * broken sensor reading cannot poison a dashboard's scale. Everything else
 * passes. It takes no params and says so through varwatch_last_error.
 *
 * Build (scripts/build-plugins.sh does this):
 *   clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -o finite.wasm finite.c
 */

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;

#define EXPORT(name) __attribute__((export_name(name)))

enum { TYPE_FLOAT = 1, TYPE_EMBEDDING = 7 };
enum { PASS = 0, DROP = 1 };
/* A record's new value starts this many bytes after its size prefix: the
 * size (4), revision (8), time (8), kind, type and two reserved bytes. */
enum { NEW_VALUE_OFFSET = 24 };

static u8 *in_buf, *out_buf;
static u32 in_cap;
static const char *last_error = "";

static u32 load32(const u8 *p) { return p[0] | p[1] << 8 | p[2] << 16 | (u32)p[3] << 24; }
static u64 load64(const u8 *p) { return load32(p) | (u64)load32(p + 4) << 32; }
static void store32(u8 *p, u32 v) { p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24; }
static u64 pack(const void *p, u32 len) { return (u64)(u32)p << 32 | len; }

static int finite64(u64 bits) { return (bits & 0x7ff0000000000000ull) != 0x7ff0000000000000ull; }
static int finite32(u32 bits) { return (bits & 0x7f800000u) != 0x7f800000u; }

EXPORT("varwatch_abi_version") int abi_version(void) { return 1; }

/* The input buffer and, right after it, the output buffer: a batch of n
 * updates takes at least 4 + 24n bytes and its verdicts 4 + n, so an output
 * area as large as the input always fits. Memory grows at the end; an old
 * buffer is abandoned (the host grows its requests geometrically). */
EXPORT("varwatch_alloc") u8 *alloc(u32 size) {
  u32 pages = (2 * size + 65535) / 65536;
  long old = __builtin_wasm_memory_grow(0, pages);
  if (old < 0) return 0;
  in_buf = (u8 *)(old * 65536);
  out_buf = in_buf + size;
  in_cap = size;
  return in_buf;
}

EXPORT("varwatch_init") int init(const u8 *params, u32 len) {
  if (len < 4 || load32(params) != 0) {
    last_error = "finite takes no params";
    return 1;
  }
  return 0;
}

EXPORT("varwatch_last_error") u64 get_last_error(void) {
  u32 n = 0;
  while (last_error[n]) n++;
  return pack(last_error, n);
}

/* keep decides one record: p points at its size prefix, end past its end. */
static int keep(const u8 *p, const u8 *end) {
  const u8 *v = p + NEW_VALUE_OFFSET;
  if (v[0] == TYPE_FLOAT && end - v >= 9) return finite64(load64(v + 1));
  if (v[0] == TYPE_EMBEDDING && end - v >= 5) {
    u32 n = load32(v + 1);
    if (n > (u32)(end - v - 5) / 4) return 1; /* not ours to judge */
    for (u32 i = 0; i < n; i++)
      if (!finite32(load32(v + 5 + 4 * i))) return 0;
  }
  return 1;
}

EXPORT("varwatch_filter") u64 filter(const u8 *ptr, u32 len) {
  if (ptr != in_buf || len > in_cap || len < 4) {
    last_error = "input is not in the varwatch_alloc buffer";
    return 0;
  }
  u32 n = load32(ptr);
  const u8 *p = ptr + 4, *end = ptr + len;
  store32(out_buf, n);
  for (u32 i = 0; i < n; i++) {
    if (end - p < NEW_VALUE_OFFSET + 1 || load32(p) > (u32)(end - p - 4)) {
      last_error = "batch is truncated";
      return 0;
    }
    const u8 *next = p + 4 + load32(p);
    out_buf[4 + i] = keep(p, next) ? PASS : DROP;
    p = next;
  }
  return pack(out_buf, 4 + n);
}
