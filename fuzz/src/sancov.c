/*
 * Support for the fuzzer that cannot be written in Rust.
 *
 * 1. SanitizerCoverage callbacks. `scripts/fuzz` builds with
 *    `-Cpasses=sancov-module` and inline 8-bit counters plus comparison
 *    tracing (flags rustc accepts on stable). Every instrumented module
 *    registers its counters here when the process starts, and every integer
 *    comparison reports its operands. Without those flags (a plain
 *    `cargo test`) nothing calls these and the fuzzer runs without coverage.
 *    This file is compiled by `cc`, so it is never instrumented: an
 *    instrumented comparison callback would call itself.
 *
 * 2. The crash dump: a SIGABRT handler that writes the input being run to a
 *    file before the process dies. Rust reports a stack overflow, a failed
 *    allocation or a panic while panicking by aborting, and none of those
 *    can be caught in-process.
 */
#define _XOPEN_SOURCE 700 /* sigaction with SA_ONSTACK */
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- counters ---------------------------------------------------------- */

typedef struct region {
    uint8_t *start;
    size_t len;
} region;

static region *regions;
static size_t region_count, region_cap;

/* Called by each instrumented module's constructor, before main. */
void __sanitizer_cov_8bit_counters_init(uint8_t *start, uint8_t *stop) {
    if (!start || stop <= start) {
        return;
    }
    if (region_count == region_cap) {
        size_t cap = region_cap ? region_cap * 2 : 256;
        region *grown = realloc(regions, cap * sizeof *grown);
        if (!grown) {
            return; /* that module's coverage is lost; nothing else is */
        }
        regions = grown;
        region_cap = cap;
    }
    regions[region_count].start = start;
    regions[region_count].len = (size_t)(stop - start);
    region_count++;
}

size_t wyrm_fuzz_region_count(void) { return region_count; }

uint8_t *wyrm_fuzz_region(size_t i, size_t *len) {
    if (i >= region_count) {
        *len = 0;
        return NULL;
    }
    *len = regions[i].len;
    return regions[i].start;
}

/* Hit counts in the same bucket are the same feature, as libFuzzer counts
 * them: 1, 2, 3, 4-7, 8-15, 16-31, 32-127, 128+. */
static unsigned bucket(uint8_t c) {
    if (c <= 3) return c - 1u;
    if (c < 8) return 3;
    if (c < 16) return 4;
    if (c < 32) return 5;
    if (c < 128) return 6;
    return 7;
}

/* Reads one region's counters (starting at global index `base`): sets the
 * bit of each (counter, bucket) feature in `seen` (each counter's bucket 0
 * when `edges_only`), counts those that were not set, and says whether any
 * counter was hit. Here rather than in Rust
 * because this loop runs over every counter after every input, and in
 * Rust it would be instrumented: every comparison in it would call the
 * comparison callbacks. */
size_t wyrm_fuzz_collect(const uint8_t *start, size_t len, size_t base, uint64_t *seen,
                         int edges_only, int *hit) {
    size_t fresh = 0;
    size_t i = 0;
    *hit = 0;
    while (i < len) {
        if (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, start + i, 8);
            if (w == 0) {
                i += 8;
                continue;
            }
        }
        size_t end = i + 8 <= len ? i + 8 : len;
        for (; i < end; i++) {
            uint8_t c = start[i];
            if (c) {
                size_t f = (base + i) * 8 + (edges_only ? 0 : bucket(c));
                uint64_t bit = 1ull << (f % 64);
                *hit = 1;
                if (!(seen[f / 64] & bit)) {
                    seen[f / 64] |= bit;
                    fresh++;
                }
            }
        }
    }
    return fresh;
}

/* ---- comparisons ------------------------------------------------------- */

/* Operands of recent comparisons, one slot per (call site, value) hash, so
 * a hot comparison does not evict every other. The fuzzer reads them to
 * replace a value the input holds with the one it was compared against
 * (how a fuzzer gets past `magic == "WYRM"` without guessing it). */
#define CMP_SLOTS 4096
static uint64_t cmp_a[CMP_SLOTS], cmp_b[CMP_SLOTS];
static uint8_t cmp_width[CMP_SLOTS];
static int tracing; /* only while a target runs: not the fuzzer's own code */

void wyrm_fuzz_set_tracing(int on) { __atomic_store_n(&tracing, on, __ATOMIC_RELAXED); }

static void note(uint64_t a, uint64_t b, uint8_t width, uintptr_t pc) {
    if (a == b || !__atomic_load_n(&tracing, __ATOMIC_RELAXED)) {
        return;
    }
    uint64_t h = ((uint64_t)pc ^ (a * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
    size_t i = (size_t)(h >> 52) & (CMP_SLOTS - 1);
    __atomic_store_n(&cmp_a[i], a, __ATOMIC_RELAXED);
    __atomic_store_n(&cmp_b[i], b, __ATOMIC_RELAXED);
    __atomic_store_n(&cmp_width[i], width, __ATOMIC_RELAXED);
}

#define PC ((uintptr_t)__builtin_return_address(0))
void __sanitizer_cov_trace_cmp1(uint8_t a, uint8_t b) { note(a, b, 1, PC); }
void __sanitizer_cov_trace_cmp2(uint16_t a, uint16_t b) { note(a, b, 2, PC); }
void __sanitizer_cov_trace_cmp4(uint32_t a, uint32_t b) { note(a, b, 4, PC); }
void __sanitizer_cov_trace_cmp8(uint64_t a, uint64_t b) { note(a, b, 8, PC); }
/* The constant is the first operand. */
void __sanitizer_cov_trace_const_cmp1(uint8_t c, uint8_t v) { note(v, c, 1, PC); }
void __sanitizer_cov_trace_const_cmp2(uint16_t c, uint16_t v) { note(v, c, 2, PC); }
void __sanitizer_cov_trace_const_cmp4(uint32_t c, uint32_t v) { note(v, c, 4, PC); }
void __sanitizer_cov_trace_const_cmp8(uint64_t c, uint64_t v) { note(v, c, 8, PC); }

/* cases[0]: how many cases; cases[1]: the value's width in bits. */
void __sanitizer_cov_trace_switch(uint64_t v, uint64_t *cases) {
    uint64_t n = cases[0];
    if (n == 0) {
        return;
    }
    static uint64_t turn;
    uint64_t k = __atomic_fetch_add(&turn, 1, __ATOMIC_RELAXED) % n;
    uint8_t width = (uint8_t)(cases[1] / 8);
    note(v, cases[2 + k], width ? width : 8, PC ^ (uintptr_t)k);
}

/* Comparison slot `i`: its width in bytes (0 when empty) and operands. */
unsigned wyrm_fuzz_cmp(size_t i, uint64_t *a, uint64_t *b) {
    i &= CMP_SLOTS - 1;
    *a = __atomic_load_n(&cmp_a[i], __ATOMIC_RELAXED);
    *b = __atomic_load_n(&cmp_b[i], __ATOMIC_RELAXED);
    return __atomic_load_n(&cmp_width[i], __ATOMIC_RELAXED);
}

size_t wyrm_fuzz_cmp_slots(void) { return CMP_SLOTS; }

/* ---- crash dump -------------------------------------------------------- */

/* Per thread: tests run targets on several threads at once, and abort()
 * raises SIGABRT on the thread that called it. */
static __thread const uint8_t *current;
static __thread size_t current_len;
static __thread char dump_path[1024];

void wyrm_fuzz_set_current(const uint8_t *data, size_t len) {
    current = data;
    current_len = len;
}

static void say(const char *s) {
    ssize_t ignored = write(2, s, strlen(s));
    (void)ignored;
}

static void on_abort(int sig) {
    if (current && dump_path[0]) {
        int fd = open(dump_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            size_t done = 0;
            while (done < current_len) {
                ssize_t n = write(fd, current + done, current_len - done);
                if (n <= 0) {
                    break;
                }
                done += (size_t)n;
            }
            close(fd);
            say("\nwyrm-fuzz: the process aborted while running an input; it is saved in ");
            say(dump_path);
            say("\n");
        }
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Where this thread's crash dump goes (an empty path: none). */
int wyrm_fuzz_arm_dump(const char *path) {
    size_t n = strlen(path);
    if (n >= sizeof dump_path) {
        return -1;
    }
    memcpy(dump_path, path, n + 1);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_abort;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_ONSTACK; /* a stack overflow leaves no stack to run on */
    return sigaction(SIGABRT, &sa, NULL);
}
