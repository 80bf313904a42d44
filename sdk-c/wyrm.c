/*
 * wyrm.c: the C helper library for Wyrm plugins (see wyrm.h).
 *
 * It implements the `entities` exports of the generated bindings
 * (plugin.h) with the same semantics as the Rust SDK's runtime: a state
 * table keyed by entity id, fresh state created on first touch, export of
 * untouched ids with empty data, import matched by type name and
 * all-or-nothing. Everything a client sends is checked: malformed
 * MessagePack gives an error, never a crash.
 */
#include "wyrm.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

/* ======================================================================
 * Writer
 * ==================================================================== */

void wyrm_writer_init(wyrm_writer *w) {
    w->buf = NULL;
    w->len = 0;
    w->cap = 0;
    w->failed = false;
}

void wyrm_writer_free(wyrm_writer *w) {
    free(w->buf);
    wyrm_writer_init(w);
}

/* Makes room for `n` more bytes; false (and `failed`) when it cannot. */
static bool reserve(wyrm_writer *w, size_t n) {
    if (w->failed) {
        return false;
    }
    if (n <= w->cap - w->len) {
        return true;
    }
    if (n > SIZE_MAX / 2 - w->len) {
        w->failed = true;
        return false;
    }
    size_t cap = w->cap ? w->cap * 2 : 64;
    while (cap < w->len + n) {
        cap *= 2;
    }
    uint8_t *buf = realloc(w->buf, cap);
    if (!buf) {
        w->failed = true;
        return false;
    }
    w->buf = buf;
    w->cap = cap;
    return true;
}

static void put(wyrm_writer *w, const void *data, size_t n) {
    if (n && reserve(w, n)) {
        memcpy(w->buf + w->len, data, n);
        w->len += n;
    }
}

static void put_byte(wyrm_writer *w, uint8_t b) { put(w, &b, 1); }

/* A marker byte followed by `v` in `size` big-endian bytes. */
static void put_be(wyrm_writer *w, uint8_t marker, uint64_t v, int size) {
    uint8_t b[9];
    b[0] = marker;
    for (int i = 0; i < size; i++) {
        b[size - i] = (uint8_t)(v >> (8 * i));
    }
    put(w, b, (size_t)size + 1);
}

void wyrm_write_nil(wyrm_writer *w) { put_byte(w, 0xc0); }

void wyrm_write_bool(wyrm_writer *w, bool v) { put_byte(w, v ? 0xc3 : 0xc2); }

void wyrm_write_uint(wyrm_writer *w, uint64_t v) {
    if (v < 0x80) {
        put_byte(w, (uint8_t)v);
    } else if (v <= UINT8_MAX) {
        put_be(w, 0xcc, v, 1);
    } else if (v <= UINT16_MAX) {
        put_be(w, 0xcd, v, 2);
    } else if (v <= UINT32_MAX) {
        put_be(w, 0xce, v, 4);
    } else {
        put_be(w, 0xcf, v, 8);
    }
}

void wyrm_write_int(wyrm_writer *w, int64_t v) {
    if (v >= 0) {
        wyrm_write_uint(w, (uint64_t)v);
    } else if (v >= -32) {
        put_byte(w, (uint8_t)(int8_t)v);
    } else if (v >= INT8_MIN) {
        put_be(w, 0xd0, (uint64_t)v, 1);
    } else if (v >= INT16_MIN) {
        put_be(w, 0xd1, (uint64_t)v, 2);
    } else if (v >= INT32_MIN) {
        put_be(w, 0xd2, (uint64_t)v, 4);
    } else {
        put_be(w, 0xd3, (uint64_t)v, 8);
    }
}

void wyrm_write_double(wyrm_writer *w, double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_be(w, 0xcb, bits, 8);
}

/* A header for a string, binary, array or map of `n` items. */
static void put_len(wyrm_writer *w, uint64_t n, uint8_t fix, uint64_t fix_max, uint8_t m8,
                    uint8_t m16, uint8_t m32) {
    if (fix && n <= fix_max) {
        put_byte(w, (uint8_t)(fix | n));
    } else if (m8 && n <= UINT8_MAX) {
        put_be(w, m8, n, 1);
    } else if (n <= UINT16_MAX) {
        put_be(w, m16, n, 2);
    } else if (n <= UINT32_MAX) {
        put_be(w, m32, n, 4);
    } else {
        w->failed = true; /* MessagePack cannot say it */
    }
}

void wyrm_write_strn(wyrm_writer *w, const char *s, size_t len) {
    put_len(w, len, 0xa0, 31, 0xd9, 0xda, 0xdb);
    put(w, s, len);
}

void wyrm_write_str(wyrm_writer *w, const char *s) { wyrm_write_strn(w, s, strlen(s)); }

void wyrm_write_bin(wyrm_writer *w, const void *data, size_t len) {
    put_len(w, len, 0, 0, 0xc4, 0xc5, 0xc6);
    put(w, data, len);
}

void wyrm_write_array(wyrm_writer *w, uint32_t n) { put_len(w, n, 0x90, 15, 0, 0xdc, 0xdd); }

void wyrm_write_map(wyrm_writer *w, uint32_t n) { put_len(w, n, 0x80, 15, 0, 0xde, 0xdf); }

void wyrm_write_raw(wyrm_writer *w, const void *data, size_t len) { put(w, data, len); }

/* ======================================================================
 * Reader
 * ==================================================================== */

void wyrm_reader_init(wyrm_reader *r, const void *data, size_t len) {
    r->data = data;
    r->len = data ? len : 0;
    r->pos = 0;
    r->error = NULL;
}

/* One decoded header: the kind, how many bytes the header takes, and its
 * content (a scalar, or the count/length of what follows). */
typedef struct head {
    wyrm_kind kind;
    size_t size;      /* header bytes */
    uint64_t payload; /* bytes after the header (str, bin, ext) */
    uint32_t count;   /* items (array) or pairs (map) */
    bool neg;         /* integer: negative, value in `i` */
    uint64_t u;       /* integer (non-negative) */
    int64_t i;        /* integer (negative) */
    double f;
    bool b;
} head;

static uint64_t be(const uint8_t *p, int size) {
    uint64_t v = 0;
    for (int i = 0; i < size; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* Decodes the header at the reader's position without moving it. Fails on
 * an earlier error, the end of the data, a reserved byte, or a header whose
 * payload runs past the end. */
static bool decode_head(const wyrm_reader *r, head *h) {
    if (r->error || r->pos >= r->len) {
        return false;
    }
    const uint8_t *p = r->data + r->pos;
    size_t avail = r->len - r->pos;
    uint8_t m = p[0];
    memset(h, 0, sizeof *h);
    h->size = 1;
    int extra = 0; /* big-endian bytes after the marker */
    if (m <= 0x7f) {
        h->kind = WYRM_INT;
        h->u = m;
        return true;
    }
    if (m >= 0xe0) {
        h->kind = WYRM_INT;
        h->neg = true;
        h->i = (int8_t)m;
        return true;
    }
    if (m <= 0x8f || (m >= 0x90 && m <= 0x9f)) {
        h->kind = m <= 0x8f ? WYRM_MAP : WYRM_ARRAY;
        h->count = m & 0x0f;
        return true;
    }
    if (m <= 0xbf) {
        h->kind = WYRM_STR;
        h->payload = m & 0x1f;
    } else {
        switch (m) {
        case 0xc0: h->kind = WYRM_NIL; return true;
        case 0xc2: case 0xc3: h->kind = WYRM_BOOL; h->b = m == 0xc3; return true;
        case 0xc4: case 0xc5: case 0xc6: h->kind = WYRM_BIN; extra = 1 << (m - 0xc4); break;
        case 0xc7: case 0xc8: case 0xc9: h->kind = WYRM_EXT; extra = 1 << (m - 0xc7); break;
        case 0xca: h->kind = WYRM_FLOAT; extra = 4; break;
        case 0xcb: h->kind = WYRM_FLOAT; extra = 8; break;
        case 0xcc: case 0xcd: case 0xce: case 0xcf: h->kind = WYRM_INT; extra = 1 << (m - 0xcc); break;
        case 0xd0: case 0xd1: case 0xd2: case 0xd3:
            h->kind = WYRM_INT; h->neg = true; extra = 1 << (m - 0xd0); break;
        case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
            h->kind = WYRM_EXT; h->size = 2; h->payload = 1u << (m - 0xd4); break;
        case 0xd9: case 0xda: case 0xdb: h->kind = WYRM_STR; extra = 1 << (m - 0xd9); break;
        case 0xdc: case 0xdd: h->kind = WYRM_ARRAY; extra = m == 0xdc ? 2 : 4; break;
        case 0xde: case 0xdf: h->kind = WYRM_MAP; extra = m == 0xde ? 2 : 4; break;
        default: return false; /* 0xc1 is never used */
        }
    }
    if (extra) {
        if (avail < 1 + (size_t)extra) {
            return false;
        }
        uint64_t v = be(p + 1, extra);
        h->size = 1 + (size_t)extra;
        switch (h->kind) {
        case WYRM_INT:
            if (h->neg) {
                /* Sign-extend the `extra`-byte two's complement value. */
                if (extra == 8) {
                    h->i = (int64_t)v;
                } else {
                    uint64_t sign = 1ull << (8 * extra - 1);
                    h->i = (int64_t)(v ^ sign) - (int64_t)sign;
                }
                if (h->i >= 0) { /* a signed format holding a non-negative value */
                    h->neg = false;
                    h->u = (uint64_t)h->i;
                }
            } else {
                h->u = v;
            }
            break;
        case WYRM_FLOAT:
            if (extra == 4) {
                uint32_t bits = (uint32_t)v;
                float f;
                memcpy(&f, &bits, sizeof f);
                h->f = f;
            } else {
                memcpy(&h->f, &v, sizeof h->f);
            }
            break;
        case WYRM_ARRAY:
        case WYRM_MAP:
            h->count = (uint32_t)v;
            break;
        case WYRM_EXT:
            h->payload = v;
            h->size += 1; /* the ext type byte */
            break;
        default: /* str, bin */
            h->payload = v;
            break;
        }
    }
    if (h->size > avail || h->payload > avail - h->size) {
        return false;
    }
    return true;
}

/* Records the first error; always returns false. */
static bool fail(wyrm_reader *r, const char *why) {
    if (!r->error) {
        r->error = why;
    }
    return false;
}

/* Reads a header that must be of kind `want`, moving past header and
 * payload. */
static bool take(wyrm_reader *r, wyrm_kind want, head *h, const char *expected) {
    if (r->error) {
        return false;
    }
    if (!decode_head(r, h)) {
        return fail(r, r->pos >= r->len ? "unexpected end of MessagePack data"
                                         : "malformed MessagePack data");
    }
    if (h->kind != want) {
        return fail(r, expected);
    }
    r->pos += h->size + (size_t)h->payload;
    return true;
}

wyrm_kind wyrm_peek(const wyrm_reader *r) {
    head h;
    return decode_head(r, &h) ? h.kind : WYRM_INVALID;
}

bool wyrm_read_nil(wyrm_reader *r) {
    head h;
    return take(r, WYRM_NIL, &h, "expected nil");
}

bool wyrm_read_bool(wyrm_reader *r, bool *out) {
    head h;
    if (!take(r, WYRM_BOOL, &h, "expected a boolean")) {
        return false;
    }
    *out = h.b;
    return true;
}

bool wyrm_read_int(wyrm_reader *r, int64_t *out) {
    head h;
    size_t start = r->pos;
    if (!take(r, WYRM_INT, &h, "expected an integer")) {
        return false;
    }
    if (!h.neg && h.u > (uint64_t)INT64_MAX) {
        r->pos = start;
        return fail(r, "integer out of range");
    }
    *out = h.neg ? h.i : (int64_t)h.u;
    return true;
}

bool wyrm_read_uint(wyrm_reader *r, uint64_t *out) {
    head h;
    size_t start = r->pos;
    if (!take(r, WYRM_INT, &h, "expected an integer")) {
        return false;
    }
    if (h.neg) {
        r->pos = start;
        return fail(r, "expected a non-negative integer");
    }
    *out = h.u;
    return true;
}

bool wyrm_read_double(wyrm_reader *r, double *out) {
    head h;
    if (wyrm_peek(r) == WYRM_INT) {
        if (!take(r, WYRM_INT, &h, "expected a number")) {
            return false;
        }
        *out = h.neg ? (double)h.i : (double)h.u;
        return true;
    }
    if (!take(r, WYRM_FLOAT, &h, "expected a number")) {
        return false;
    }
    *out = h.f;
    return true;
}

/* Whether `s` is valid UTF-8 (as Rust's str: no overlong forms, no
 * surrogates, nothing above U+10FFFF). */
static bool valid_utf8(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1, cp = c & 0x1f, min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2, cp = c & 0x0f, min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (len - i - 1 < n) {
            return false;
        }
        for (size_t k = 1; k <= n; k++) {
            uint8_t cc = s[i + k];
            if ((cc & 0xc0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (cc & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        i += n + 1;
    }
    return true;
}

bool wyrm_read_str(wyrm_reader *r, wyrm_str *out) {
    head h;
    size_t start = r->pos;
    if (!take(r, WYRM_STR, &h, "expected a string")) {
        return false;
    }
    const uint8_t *p = r->data + start + h.size;
    if (!valid_utf8(p, (size_t)h.payload)) {
        r->pos = start;
        return fail(r, "string is not valid UTF-8");
    }
    out->ptr = (const char *)p;
    out->len = (size_t)h.payload;
    return true;
}

bool wyrm_read_bin(wyrm_reader *r, wyrm_bytes *out) {
    head h;
    size_t start = r->pos;
    if (!take(r, WYRM_BIN, &h, "expected binary data")) {
        return false;
    }
    out->ptr = r->data + start + h.size;
    out->len = (size_t)h.payload;
    return true;
}

bool wyrm_read_array(wyrm_reader *r, uint32_t *n) {
    head h;
    if (!take(r, WYRM_ARRAY, &h, "expected an array")) {
        return false;
    }
    *n = h.count;
    return true;
}

bool wyrm_read_map(wyrm_reader *r, uint32_t *n) {
    head h;
    if (!take(r, WYRM_MAP, &h, "expected a map")) {
        return false;
    }
    *n = h.count;
    return true;
}

bool wyrm_skip(wyrm_reader *r) {
    /* Iterative, so a deeply nested value cannot overflow the stack: count
     * the values still to skip. Each value takes at least one byte, so the
     * loop ends within the data's length. */
    uint64_t left = 1;
    size_t start = r->pos;
    while (left > 0) {
        head h;
        if (r->error) {
            return false;
        }
        if (!decode_head(r, &h)) {
            r->pos = start;
            return fail(r, r->pos >= r->len ? "unexpected end of MessagePack data"
                                             : "malformed MessagePack data");
        }
        r->pos += h.size + (size_t)h.payload;
        left--;
        if (h.kind == WYRM_ARRAY) {
            left += h.count;
        } else if (h.kind == WYRM_MAP) {
            left += 2 * (uint64_t)h.count;
        }
        /* Items still expected cannot outnumber the bytes left. */
        if (left > r->len - r->pos) {
            r->pos = start;
            return fail(r, "unexpected end of MessagePack data");
        }
    }
    return true;
}

bool wyrm_read_raw(wyrm_reader *r, wyrm_bytes *out) {
    size_t start = r->pos;
    if (!wyrm_skip(r)) {
        return false;
    }
    out->ptr = r->data + start;
    out->len = r->pos - start;
    return true;
}

bool wyrm_reader_done(const wyrm_reader *r) { return !r->error && r->pos == r->len; }

bool wyrm_str_eq(wyrm_str s, const char *cstr) {
    size_t n = strlen(cstr);
    return s.len == n && (n == 0 || memcmp(s.ptr, cstr, n) == 0);
}

size_t wyrm_utf8_chars(wyrm_str s) {
    size_t n = 0;
    for (size_t i = 0; i < s.len; i++) {
        if (((uint8_t)s.ptr[i] & 0xc0) != 0x80) {
            n++;
        }
    }
    return n;
}

char *wyrm_str_dup(wyrm_str s) {
    char *c = malloc(s.len + 1);
    if (c) {
        if (s.len) {
            memcpy(c, s.ptr, s.len);
        }
        c[s.len] = '\0';
    }
    return c;
}

/* ======================================================================
 * Errors and logging
 * ==================================================================== */

/* A malloc'd printf-style message (NULL when out of memory). */
static char *vformat(const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        return NULL;
    }
    char *s = malloc((size_t)n + 1);
    if (s) {
        vsnprintf(s, (size_t)n + 1, fmt, ap);
    }
    return s;
}

static void set_error(wyrm_ctx *ctx, char *msg) {
    free(ctx->error);
    ctx->error = msg;
}

int wyrm_error(wyrm_ctx *ctx, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_error(ctx, vformat(fmt, ap));
    va_end(ap);
    return WYRM_ERR;
}

/* Borrows a C string as the generated string type (no copy). */
static plugin_string_t borrow(const char *s) {
    plugin_string_t out = {(uint8_t *)s, strlen(s)};
    return out;
}

/* Records an error string the host returned (and frees it). */
static int host_error(wyrm_ctx *ctx, const char *what, plugin_string_t *err) {
    wyrm_error(ctx, "%s: %.*s", what, (int)err->len, (const char *)err->ptr);
    plugin_string_free(err);
    return WYRM_ERR;
}

void wyrm_log(wyrm_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *msg = vformat(fmt, ap);
    va_end(ap);
    if (!msg) {
        return;
    }
    plugin_string_t s = borrow(msg);
    wyrm_game_host_log((wyrm_game_host_log_level_t)level, &s);
    free(msg);
}

uint64_t wyrm_now_ms(void) { return wyrm_game_host_now_ms(); }

/* ======================================================================
 * Host calls
 * ==================================================================== */

static const uint8_t EMPTY_ARRAY = 0x90;

/* The bytes to send for `w` (an empty array for NULL), or false with an
 * error in ctx when the writer ran out of memory. */
static bool args_of(wyrm_ctx *ctx, wyrm_writer *w, wyrm_game_types_msgpack_t *out) {
    if (!w) {
        out->ptr = (uint8_t *)&EMPTY_ARRAY;
        out->len = 1;
        return true;
    }
    if (w->failed) {
        wyrm_writer_free(w);
        wyrm_error(ctx, "cannot encode value: out of memory");
        return false;
    }
    if (w->len == 0) { /* nothing written: send an empty array */
        out->ptr = (uint8_t *)&EMPTY_ARRAY;
        out->len = 1;
        return true;
    }
    out->ptr = w->buf;
    out->len = w->len;
    return true;
}

static void done(wyrm_writer *w) {
    if (w) {
        wyrm_writer_free(w);
    }
}

static const uint8_t NIL = 0xc0;

/* A reply-to {this entity, `method`, context} for the `ask-*` imports: the
 * context is `w`'s one value, or nil for NULL or an empty writer. False with
 * an error in ctx when the writer ran out of memory. `method` is borrowed. */
static bool reply_to(wyrm_ctx *ctx, const char *method, wyrm_writer *w,
                     wyrm_game_storage_reply_to_t *out) {
    if (w && w->failed) {
        wyrm_writer_free(w);
        wyrm_error(ctx, "cannot encode value: out of memory");
        return false;
    }
    out->entity = ctx->id;
    out->method = borrow(method);
    if (!w || w->len == 0) {
        out->context.ptr = (uint8_t *)&NIL;
        out->context.len = 1;
    } else {
        out->context.ptr = w->buf;
        out->context.len = w->len;
    }
    return true;
}

int wyrm_call(wyrm_ctx *ctx, wyrm_id id, const char *method, wyrm_writer *args) {
    wyrm_game_types_msgpack_t a;
    if (!args_of(ctx, args, &a)) {
        return WYRM_ERR;
    }
    plugin_string_t m = borrow(method);
    wyrm_game_host_call_entity(id, &m, &a);
    done(args);
    return WYRM_OK;
}

int wyrm_call_client_of(wyrm_ctx *ctx, wyrm_id id, const char *method, wyrm_writer *args,
                        bool *delivered) {
    wyrm_game_types_msgpack_t a;
    if (!args_of(ctx, args, &a)) {
        return WYRM_ERR;
    }
    plugin_string_t m = borrow(method);
    bool ok = wyrm_game_host_call_client(id, &m, &a);
    if (delivered) {
        *delivered = ok;
    }
    done(args);
    return WYRM_OK;
}

int wyrm_call_client(wyrm_ctx *ctx, const char *method, wyrm_writer *args) {
    return wyrm_call_client_of(ctx, ctx->id, method, args, NULL);
}

int wyrm_broadcast(wyrm_ctx *ctx, const char *method, wyrm_writer *args) {
    wyrm_game_types_msgpack_t a;
    if (!args_of(ctx, args, &a)) {
        return WYRM_ERR;
    }
    plugin_string_t m = borrow(method);
    wyrm_game_host_broadcast(&m, &a);
    done(args);
    return WYRM_OK;
}

int wyrm_call_aoi_clients(wyrm_ctx *ctx, const char *method, wyrm_writer *args) {
    wyrm_game_types_msgpack_t a;
    if (!args_of(ctx, args, &a)) {
        return WYRM_ERR;
    }
    plugin_string_t m = borrow(method);
    wyrm_game_host_call_aoi_clients(ctx->id, &m, &a);
    done(args);
    return WYRM_OK;
}

void wyrm_buf_free(wyrm_buf *b) {
    free(b->ptr);
    b->ptr = NULL;
    b->len = 0;
}

/* A one-step path: the top-level attribute `name`. */
static wyrm_game_host_attr_path_t top_level(wyrm_game_types_path_segment_t *seg, const char *name) {
    seg->tag = WYRM_GAME_TYPES_PATH_SEGMENT_KEY;
    seg->val.key = borrow(name);
    wyrm_game_host_attr_path_t path = {seg, 1};
    return path;
}

int wyrm_set_attr(wyrm_ctx *ctx, const char *name, wyrm_writer *value) {
    wyrm_game_types_msgpack_t v;
    if (!value || value->len == 0) {
        done(value);
        return wyrm_error(ctx, "attribute %s: no value to set", name);
    }
    if (!args_of(ctx, value, &v)) {
        return WYRM_ERR;
    }
    wyrm_game_types_path_segment_t seg;
    wyrm_game_host_attr_path_t path = top_level(&seg, name);
    plugin_string_t err;
    bool ok = wyrm_game_host_attr_set(ctx->id, &path, &v, &err);
    done(value);
    if (!ok) {
        return host_error(ctx, name, &err);
    }
    return WYRM_OK;
}

int wyrm_get_attr(wyrm_ctx *ctx, const char *name, wyrm_buf *out) {
    out->ptr = NULL;
    out->len = 0;
    wyrm_game_types_path_segment_t seg;
    wyrm_game_host_attr_path_t path = top_level(&seg, name);
    wyrm_game_host_option_msgpack_t ret;
    plugin_string_t err;
    if (!wyrm_game_host_attr_get(ctx->id, &path, &ret, &err)) {
        return host_error(ctx, name, &err);
    }
    if (ret.is_some) {
        if (ret.val.len == 0) { /* not a value; nothing to free either */
            return WYRM_OK;
        }
        out->ptr = ret.val.ptr; /* malloc'd by cabi_realloc: ours to free */
        out->len = ret.val.len;
    }
    return WYRM_OK;
}

int wyrm_delete_attr(wyrm_ctx *ctx, const char *name) {
    wyrm_game_types_path_segment_t seg;
    wyrm_game_host_attr_path_t path = top_level(&seg, name);
    plugin_string_t err;
    if (!wyrm_game_host_attr_delete(ctx->id, &path, &err)) {
        return host_error(ctx, name, &err);
    }
    return WYRM_OK;
}

int wyrm_ask_attr(wyrm_ctx *ctx, wyrm_id id, const char *name, const char *method,
                  wyrm_writer *context) {
    wyrm_game_storage_reply_to_t reply;
    if (!reply_to(ctx, method, context, &reply)) {
        return WYRM_ERR;
    }
    wyrm_game_types_path_segment_t seg;
    wyrm_game_host_attr_path_t path = top_level(&seg, name);
    wyrm_game_host_ask_attr(id, &path, &reply);
    done(context);
    return WYRM_OK;
}

/* Initial attributes: `attrs`' map, or nothing (an empty list) for NULL or
 * an empty writer. */
static bool attrs_of(wyrm_ctx *ctx, wyrm_writer *attrs, wyrm_game_types_msgpack_t *out) {
    out->ptr = NULL;
    out->len = 0;
    return !(attrs && attrs->len) || args_of(ctx, attrs, out);
}

int wyrm_create_entity_at(wyrm_ctx *ctx, const char *type_name, wyrm_writer *attrs,
                          wyrm_locality at, wyrm_id *out) {
    wyrm_game_types_msgpack_t a;
    if (!attrs_of(ctx, attrs, &a)) {
        return WYRM_ERR;
    }
    plugin_string_t t = borrow(type_name);
    plugin_string_t err;
    wyrm_id id = 0;
    bool ok = wyrm_game_host_create_entity(&t, &a, (wyrm_game_types_locality_t)at, &id, &err);
    done(attrs);
    if (!ok) {
        return host_error(ctx, "cannot create entity", &err);
    }
    if (out) {
        *out = id;
    }
    return WYRM_OK;
}

int wyrm_create_entity(wyrm_ctx *ctx, const char *type_name, wyrm_writer *attrs, wyrm_id *out) {
    return wyrm_create_entity_at(ctx, type_name, attrs, WYRM_HERE, out);
}

int wyrm_create_space_at(wyrm_ctx *ctx, const char *type_name, const char *kind,
                         wyrm_writer *attrs, wyrm_locality at, wyrm_id *out) {
    wyrm_game_types_msgpack_t a;
    if (!attrs_of(ctx, attrs, &a)) {
        return WYRM_ERR;
    }
    plugin_string_t t = borrow(type_name);
    plugin_string_t k = borrow(kind);
    plugin_string_t err;
    wyrm_id id = 0;
    bool ok =
        wyrm_game_host_create_space(&t, &k, &a, (wyrm_game_types_locality_t)at, &id, &err);
    done(attrs);
    if (!ok) {
        return host_error(ctx, "cannot create space", &err);
    }
    if (out) {
        *out = id;
    }
    return WYRM_OK;
}

int wyrm_create_space(wyrm_ctx *ctx, const char *type_name, const char *kind, wyrm_writer *attrs,
                      wyrm_id *out) {
    return wyrm_create_space_at(ctx, type_name, kind, attrs, WYRM_HERE, out);
}

int wyrm_destroy_entity(wyrm_ctx *ctx, wyrm_id id) {
    plugin_string_t err;
    if (!wyrm_game_host_destroy_entity(id, &err)) {
        return host_error(ctx, "cannot destroy entity", &err);
    }
    return WYRM_OK;
}

int wyrm_ask_entity_type(wyrm_ctx *ctx, wyrm_id id, const char *method, wyrm_writer *context) {
    wyrm_game_storage_reply_to_t reply;
    if (!reply_to(ctx, method, context, &reply)) {
        return WYRM_ERR;
    }
    wyrm_game_host_ask_entity_type(id, &reply);
    done(context);
    return WYRM_OK;
}

bool wyrm_service(const char *type_name, wyrm_id *out) {
    plugin_string_t t = borrow(type_name);
    wyrm_id id = 0;
    if (!wyrm_game_host_service(&t, &id)) {
        return false;
    }
    if (out) {
        *out = id;
    }
    return true;
}

int wyrm_set_timer(wyrm_ctx *ctx, uint32_t delay_ms, bool repeat, const char *method,
                   wyrm_writer *args, uint64_t *timer) {
    wyrm_game_types_msgpack_t a;
    if (!args_of(ctx, args, &a)) {
        return WYRM_ERR;
    }
    plugin_string_t m = borrow(method);
    plugin_string_t err;
    uint64_t t = 0;
    bool ok = wyrm_game_host_set_timer(ctx->id, delay_ms, repeat, &m, &a, &t, &err);
    done(args);
    if (!ok) {
        return host_error(ctx, "cannot set timer", &err);
    }
    if (timer) {
        *timer = t;
    }
    return WYRM_OK;
}

bool wyrm_cancel_timer(uint64_t timer) { return wyrm_game_host_cancel_timer(timer); }

/* ======================================================================
 * Arguments
 * ==================================================================== */

int wyrm_args(wyrm_ctx *ctx, wyrm_reader *args, const char *fmt, ...) {
    const char *tname = ctx->type ? ctx->type->name : "?";
    int mlen = (int)ctx->method.len; /* a declared method: short, valid UTF-8 */
    size_t want = strlen(fmt);
    uint32_t got;
    /* No arguments may also come as nothing or nil, as the Rust and Python
     * helpers take them. */
    if (want == 0 && !args->error) {
        if (args->pos == args->len) {
            return WYRM_OK;
        }
        if (args->len - args->pos == 1 && args->data[args->pos] == 0xc0) {
            args->pos++;
            return WYRM_OK;
        }
    }
    if (!wyrm_read_array(args, &got)) {
        return wyrm_error(ctx, "bad arguments for %s.%.*s: expected a MessagePack array of %zu argument(s)",
                          tname, mlen, ctx->method.ptr, want);
    }
    if (got != want) {
        return wyrm_error(ctx, "bad arguments for %s.%.*s: expected %zu argument(s), got %u", tname,
                          mlen, ctx->method.ptr, want, (unsigned)got);
    }
    va_list ap;
    va_start(ap, fmt);
    size_t i = 0;
    bool ok = true;
    for (; ok && fmt[i]; i++) {
        switch (fmt[i]) {
        case 'b': ok = wyrm_read_bool(args, va_arg(ap, bool *)); break;
        case 'i': ok = wyrm_read_int(args, va_arg(ap, int64_t *)); break;
        case 'u': ok = wyrm_read_uint(args, va_arg(ap, uint64_t *)); break;
        case 'w': {
            uint32_t *out = va_arg(ap, uint32_t *);
            uint64_t v;
            ok = wyrm_read_uint(args, &v) && (v <= UINT32_MAX || fail(args, "integer out of range"));
            if (ok) {
                *out = (uint32_t)v;
            }
            break;
        }
        case 'd': ok = wyrm_read_double(args, va_arg(ap, double *)); break;
        case 's': ok = wyrm_read_str(args, va_arg(ap, wyrm_str *)); break;
        case 'y': ok = wyrm_read_bin(args, va_arg(ap, wyrm_bytes *)); break;
        case 'v': ok = wyrm_read_raw(args, va_arg(ap, wyrm_bytes *)); break;
        case '_': ok = wyrm_skip(args); break;
        default: ok = fail(args, "unknown wyrm_args format letter (a bug in the plugin)"); break;
        }
    }
    va_end(ap);
    if (!ok) {
        return wyrm_error(ctx, "bad arguments for %s.%.*s: argument %zu: %s", tname, mlen,
                          ctx->method.ptr, i, args->error ? args->error : "invalid");
    }
    return WYRM_OK;
}

/* ======================================================================
 * The state table: entity id -> (kind, state), open addressing with linear
 * probing and backward-shift deletion (no tombstones).
 * ==================================================================== */

typedef struct slot {
    wyrm_id id;
    uint32_t kind;
    void *state; /* NULL: empty slot */
} slot;

static slot *table;
static size_t table_cap; /* a power of two, or 0 */
static size_t table_len;

static size_t home(wyrm_id id) {
    /* Ids are host-assigned counters, not attacker-chosen: a multiply
     * (Fibonacci hashing) spreads them well enough. */
    return (size_t)((id * 0x9e3779b97f4a7c15ull) >> 32) & (table_cap - 1);
}

static slot *find(wyrm_id id) {
    if (!table_cap) {
        return NULL;
    }
    for (size_t i = home(id);; i = (i + 1) & (table_cap - 1)) {
        if (!table[i].state) {
            return NULL;
        }
        if (table[i].id == id) {
            return &table[i];
        }
    }
}

static bool grow(void) {
    size_t cap = table_cap ? table_cap * 2 : 64;
    slot *old = table;
    size_t old_cap = table_cap;
    slot *fresh = calloc(cap, sizeof *fresh);
    if (!fresh) {
        return false;
    }
    table = fresh;
    table_cap = cap;
    for (size_t k = 0; k < old_cap; k++) {
        if (old[k].state) {
            size_t i = home(old[k].id);
            while (table[i].state) {
                i = (i + 1) & (cap - 1);
            }
            table[i] = old[k];
        }
    }
    free(old);
    return true;
}

/* Puts a state in for `id` (which must not be there). */
static slot *insert(wyrm_id id, uint32_t kind, void *state) {
    if ((table_len + 1) * 4 > table_cap * 3 && !grow()) {
        return NULL;
    }
    size_t i = home(id);
    while (table[i].state) {
        i = (i + 1) & (table_cap - 1);
    }
    table[i].id = id;
    table[i].kind = kind;
    table[i].state = state;
    table_len++;
    return &table[i];
}

static void remove_slot(slot *s) {
    size_t i = (size_t)(s - table);
    table[i].state = NULL;
    table_len--;
    /* Shift later entries of the probe run back into the hole. */
    for (size_t j = (i + 1) & (table_cap - 1); table[j].state; j = (j + 1) & (table_cap - 1)) {
        size_t h = home(table[j].id);
        /* Move j to i unless h lies cyclically in (i, j]. */
        bool stays = (i <= j) ? (i < h && h <= j) : (i < h || h <= j);
        if (!stays) {
            table[i] = table[j];
            table[j].state = NULL;
            i = j;
        }
    }
}

/* ======================================================================
 * Entity states
 * ==================================================================== */

#define PLUGIN (&wyrm_plugin_def)

static const wyrm_type *type_at(uint32_t kind) {
    return kind < PLUGIN->type_count ? PLUGIN->types[kind] : NULL;
}

static bool kind_of(const char *name, size_t len, uint32_t *kind) {
    for (size_t k = 0; k < PLUGIN->type_count && k <= UINT32_MAX; k++) {
        const char *n = PLUGIN->types[k]->name;
        if (strlen(n) == len && memcmp(n, name, len) == 0) {
            *kind = (uint32_t)k;
            return true;
        }
    }
    return false;
}

static void *new_state(const wyrm_type *t) {
    void *s = calloc(1, t->state_size ? t->state_size : 1);
    if (s && t->init) {
        t->init(s);
    }
    return s;
}

static void drop_state(const wyrm_type *t, void *s) {
    if (s && t->drop) {
        t->drop(s);
    }
    free(s);
}

static void ctx_init(wyrm_ctx *ctx, wyrm_id id, const wyrm_type *t) {
    memset(ctx, 0, sizeof *ctx);
    ctx->id = id;
    ctx->type = t;
    ctx->caller = WYRM_CALLER_SERVER;
    ctx->method.ptr = "";
}

/* The entity's slot, created with fresh state when the table does not know
 * the id (a new entity, or one whose state was lost). NULL with an error in
 * ctx when the kind is unknown or memory runs out. */
static slot *touch(wyrm_ctx *ctx, exports_wyrm_game_entities_entity_ref_t *e) {
    slot *s = find(e->id);
    if (s) {
        ctx->type = type_at(s->kind);
        return s;
    }
    const wyrm_type *t = type_at(e->kind);
    if (!t) {
        wyrm_error(ctx, "unknown entity kind %u: plugin %s declares %zu type(s)",
                   (unsigned)e->kind, PLUGIN->name, PLUGIN->type_count);
        return NULL;
    }
    void *state = new_state(t);
    s = state ? insert(e->id, e->kind, state) : NULL;
    if (!s) {
        drop_state(t, state);
        wyrm_error(ctx, "out of memory for the state of %s %llu", t->name,
                   (unsigned long long)e->id);
        return NULL;
    }
    ctx->type = t;
    return s;
}

/* Hands ctx's error to the generated code as an owned string. */
static void give_error(wyrm_ctx *ctx, plugin_string_t *err) {
    if (!ctx->error) {
        plugin_string_dup(err, "error");
        return;
    }
    if (!ctx->error[0]) { /* an empty message stays empty */
        set_error(ctx, NULL);
        err->ptr = NULL;
        err->len = 0;
        return;
    }
    err->ptr = (uint8_t *)ctx->error; /* freed by the bindings' post-return */
    err->len = strlen(ctx->error);
    ctx->error = NULL;
}

typedef enum hook_kind {
    HOOK_CREATED,
    HOOK_DESTROYED,
    HOOK_CLIENT_CONNECTED,
    HOOK_CLIENT_DISCONNECTED,
    HOOK_TICK,
    HOOK_AOI_ENTER,
    HOOK_AOI_LEAVE,
} hook_kind;

static const char *const HOOK_NAMES[] = {
    "Created", "Destroyed", "ClientConnected", "ClientDisconnected", "Tick", "AoiEnter", "AoiLeave",
};

/* Runs a hook on the entity (creating fresh state first if needed).
 * Returns WYRM_OK, or WYRM_ERR with the message in ctx. */
static int run_hook(wyrm_ctx *ctx, exports_wyrm_game_entities_entity_ref_t *e, hook_kind hook,
                    uint64_t arg) {
    ctx_init(ctx, e->id, NULL);
    slot *s = touch(ctx, e);
    if (!s) {
        return WYRM_ERR;
    }
    const wyrm_type *t = ctx->type;
    switch (hook) {
    case HOOK_CREATED: return t->created ? t->created(ctx, s->state) : WYRM_OK;
    case HOOK_DESTROYED: return t->destroyed ? t->destroyed(ctx, s->state) : WYRM_OK;
    case HOOK_CLIENT_CONNECTED:
        return t->client_connected ? t->client_connected(ctx, s->state) : WYRM_OK;
    case HOOK_CLIENT_DISCONNECTED:
        return t->client_disconnected ? t->client_disconnected(ctx, s->state) : WYRM_OK;
    case HOOK_TICK: return t->tick ? t->tick(ctx, s->state, (uint32_t)arg) : WYRM_OK;
    case HOOK_AOI_ENTER: return t->aoi_enter ? t->aoi_enter(ctx, s->state, arg) : WYRM_OK;
    case HOOK_AOI_LEAVE: return t->aoi_leave ? t->aoi_leave(ctx, s->state, arg) : WYRM_OK;
    }
    return WYRM_OK;
}

/* Runs a hook whose errors have nowhere to go but the log. */
static void run_logged(exports_wyrm_game_entities_entity_ref_t *e, hook_kind hook, uint64_t arg) {
    wyrm_ctx ctx;
    if (run_hook(&ctx, e, hook, arg) != WYRM_OK) {
        wyrm_log(WYRM_WARN, "%s: %s hook of entity %llu failed: %s", PLUGIN->name, HOOK_NAMES[hook],
                 (unsigned long long)e->id, ctx.error ? ctx.error : "error");
    }
    set_error(&ctx, NULL);
}

/* ======================================================================
 * The `entities` exports
 * ==================================================================== */

void exports_wyrm_game_entities_init(exports_wyrm_game_entities_plugin_info_t *ret) {
    /* Everything returned is owned by the bindings, which free it after the
     * host has read it: copy every string. */
    plugin_string_dup(&ret->name, PLUGIN->name);
    plugin_string_dup(&ret->version, PLUGIN->version);
    size_t n = PLUGIN->type_count;
    wyrm_game_types_entity_type_t *types = n ? calloc(n, sizeof *types) : NULL;
    if (n && !types) {
        abort(); /* cannot describe the plugin: nothing sensible to return */
    }
    for (size_t k = 0; k < n; k++) {
        const wyrm_type *t = PLUGIN->types[k];
        wyrm_game_types_entity_type_t *out = &types[k];
        plugin_string_dup(&out->name, t->name);
        size_t na = 0, nm = 0;
        while (t->attrs && t->attrs[na].name) {
            na++;
        }
        while (t->methods && t->methods[nm].name) {
            nm++;
        }
        out->attrs.len = na;
        out->attrs.ptr = na ? calloc(na, sizeof *out->attrs.ptr) : NULL;
        out->methods.len = nm;
        out->methods.ptr = nm ? calloc(nm, sizeof *out->methods.ptr) : NULL;
        if ((na && !out->attrs.ptr) || (nm && !out->methods.ptr)) {
            abort();
        }
        for (size_t a = 0; a < na; a++) {
            plugin_string_dup(&out->attrs.ptr[a].name, t->attrs[a].name);
            out->attrs.ptr[a].flags = (wyrm_game_types_attr_flags_t)(t->attrs[a].flags & 7u);
        }
        for (size_t m = 0; m < nm; m++) {
            plugin_string_dup(&out->methods.ptr[m].name, t->methods[m].name);
            out->methods.ptr[m].exposure = (wyrm_game_types_exposure_t)t->methods[m].exposure;
        }
        out->aoi.is_some = t->aoi != NULL;
        if (t->aoi) {
            out->aoi.val.radius = t->aoi->radius;
            out->aoi.val.hysteresis = t->aoi->hysteresis;
            out->aoi.val.events = t->aoi->events;
        }
    }
    ret->entity_types.ptr = types;
    ret->entity_types.len = n;
}

bool exports_wyrm_game_entities_created(exports_wyrm_game_entities_entity_ref_t *entity,
                                        plugin_string_t *err) {
    wyrm_ctx ctx;
    if (run_hook(&ctx, entity, HOOK_CREATED, 0) != WYRM_OK) {
        give_error(&ctx, err);
        return false;
    }
    set_error(&ctx, NULL);
    return true;
}

/* Drops the entity's state, if the table has it (no hook runs). */
static void forget(wyrm_id id) {
    slot *s = find(id);
    if (s) {
        const wyrm_type *t = type_at(s->kind);
        void *state = s->state;
        remove_slot(s);
        if (t) {
            drop_state(t, state);
        }
    }
}

void exports_wyrm_game_entities_destroyed(exports_wyrm_game_entities_entity_ref_t *entity) {
    run_logged(entity, HOOK_DESTROYED, 0);
    forget(entity->id);
}

void exports_wyrm_game_entities_client_connected(exports_wyrm_game_entities_entity_ref_t *entity) {
    run_logged(entity, HOOK_CLIENT_CONNECTED, 0);
}

void exports_wyrm_game_entities_client_disconnected(
    exports_wyrm_game_entities_entity_ref_t *entity) {
    run_logged(entity, HOOK_CLIENT_DISCONNECTED, 0);
}

void exports_wyrm_game_entities_tick(exports_wyrm_game_entities_entity_ref_t *space, uint32_t dt_ms) {
    run_logged(space, HOOK_TICK, dt_ms);
}

void exports_wyrm_game_entities_aoi_events(exports_wyrm_game_entities_list_aoi_event_t *events) {
    for (size_t i = 0; i < events->len; i++) {
        exports_wyrm_game_entities_aoi_event_t *ev = &events->ptr[i];
        run_logged(&ev->watcher, ev->entered ? HOOK_AOI_ENTER : HOOK_AOI_LEAVE, ev->other);
    }
    exports_wyrm_game_entities_list_aoi_event_free(events);
}

bool exports_wyrm_game_entities_call(exports_wyrm_game_entities_entity_ref_t *entity,
                                     plugin_string_t *method,
                                     exports_wyrm_game_entities_msgpack_t *args,
                                     exports_wyrm_game_entities_caller_t *caller,
                                     plugin_string_t *err) {
    wyrm_ctx ctx;
    ctx_init(&ctx, entity->id, NULL);
    ctx.caller = (wyrm_caller_kind)caller->kind;
    ctx.has_caller_entity = caller->entity.is_some;
    ctx.caller_entity = caller->entity.is_some ? caller->entity.val : 0;
    ctx.method.ptr = method->len ? (const char *)method->ptr : "";
    ctx.method.len = method->len;
    int rc = WYRM_ERR;
    slot *s = touch(&ctx, entity);
    if (s) {
        const wyrm_type *t = ctx.type;
        const wyrm_method *m = NULL;
        for (size_t i = 0; t->methods && t->methods[i].name; i++) {
            if (wyrm_str_eq(ctx.method, t->methods[i].name)) {
                m = &t->methods[i];
                break;
            }
        }
        if (!m || !m->fn) {
            wyrm_error(&ctx, "unknown method %s.%.*s", t->name, (int)method->len, ctx.method.ptr);
        } else {
            wyrm_reader r;
            wyrm_reader_init(&r, args->ptr, args->len);
            rc = m->fn(&ctx, s->state, &r);
            if (rc != WYRM_OK && !ctx.error) {
                wyrm_error(&ctx, "%s.%s failed", t->name, m->name);
            }
        }
    }
    /* The arguments were handed to us: free them after the method, whose
     * strings borrowed from them. */
    exports_wyrm_game_entities_msgpack_free(args);
    if (rc != WYRM_OK) {
        give_error(&ctx, err);
        plugin_string_free(method);
        return false;
    }
    plugin_string_free(method);
    set_error(&ctx, NULL);
    return true;
}

bool exports_wyrm_game_entities_export_entities(exports_wyrm_game_entities_list_entity_id_t *ids,
                                                exports_wyrm_game_entities_list_entity_state_t *ret,
                                                plugin_string_t *err) {
    size_t n = ids->len;
    exports_wyrm_game_entities_entity_state_t *out = n ? calloc(n, sizeof *out) : NULL;
    size_t count = 0;
    wyrm_ctx ctx;
    ctx_init(&ctx, 0, NULL);
    if (n && !out) {
        wyrm_error(&ctx, "out of memory exporting %zu entities", n);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        wyrm_id id = ids->ptr[i];
        slot *s = find(id);
        exports_wyrm_game_entities_entity_state_t *e = &out[count];
        if (s) {
            const wyrm_type *t = type_at(s->kind);
            if (!t) {
                wyrm_error(&ctx, "unknown entity kind %u: plugin %s declares %zu type(s)",
                           (unsigned)s->kind, PLUGIN->name, PLUGIN->type_count);
                goto fail;
            }
            wyrm_writer w;
            wyrm_writer_init(&w);
            if (t->save) {
                if (t->save(s->state, &w) != WYRM_OK || w.failed) {
                    wyrm_writer_free(&w);
                    wyrm_error(&ctx, "cannot export %s %llu: %s", t->name, (unsigned long long)id,
                               w.failed ? "out of memory" : "its save function failed");
                    goto fail;
                }
            } else {
                wyrm_write_map(&w, 0); /* no state to speak of */
            }
            e->entity.id = id;
            e->entity.kind = s->kind;
            plugin_string_dup(&e->type_name, t->name);
            e->data.ptr = w.buf; /* handed over: freed by post-return */
            e->data.len = w.len;
            if (w.len == 0) {
                free(w.buf);
                e->data.ptr = NULL;
            }
            count++;
        } else {
            /* Never touched since this instance started: export "start
             * fresh", its type from the host; skip ids the host does not
             * know or that are not ours. */
            plugin_string_t name;
            if (!wyrm_game_host_entity_type(id, &name)) {
                continue;
            }
            uint32_t kind;
            bool ours = kind_of((const char *)name.ptr, name.len, &kind);
            if (!ours) {
                plugin_string_free(&name);
                continue;
            }
            e->entity.id = id;
            e->entity.kind = kind;
            e->type_name = name; /* owned: freed by post-return */
            e->data.ptr = NULL;
            e->data.len = 0;
            count++;
        }
    }
    exports_wyrm_game_entities_list_entity_id_free(ids);
    ret->ptr = out;
    ret->len = count;
    if (count == 0) {
        free(out);
        ret->ptr = NULL;
    }
    return true;

fail:
    exports_wyrm_game_entities_list_entity_id_free(ids);
    if (out) {
        exports_wyrm_game_entities_list_entity_state_t done_ = {out, count};
        exports_wyrm_game_entities_list_entity_state_free(&done_);
        if (count == 0) {
            free(out);
        }
    }
    give_error(&ctx, err);
    return false;
}

/* The entities moved to another game (their state exported first): drop
 * their state here; no hook runs. */
void exports_wyrm_game_entities_forget_entities(exports_wyrm_game_entities_list_entity_id_t *ids) {
    for (size_t i = 0; i < ids->len; i++) {
        forget(ids->ptr[i]);
    }
    exports_wyrm_game_entities_list_entity_id_free(ids);
}

bool exports_wyrm_game_entities_import_entities(plugin_string_t *from_version,
                                                exports_wyrm_game_entities_list_entity_state_t *states,
                                                plugin_string_t *err) {
    size_t n = states->len;
    wyrm_ctx ctx;
    ctx_init(&ctx, 0, NULL);
    char *version = malloc(from_version->len + 1);
    void **rebuilt = n ? calloc(n, sizeof *rebuilt) : NULL;
    uint32_t *kinds = n ? calloc(n, sizeof *kinds) : NULL;
    size_t built = 0;
    bool ok = false;
    if (!version || (n && (!rebuilt || !kinds))) {
        wyrm_error(&ctx, "out of memory importing %zu entities", n);
        goto end;
    }
    if (from_version->len) {
        memcpy(version, from_version->ptr, from_version->len);
    }
    version[from_version->len] = '\0';

    /* First rebuild every state; take them over only if all succeed. */
    for (; built < n; built++) {
        exports_wyrm_game_entities_entity_state_t *s = &states->ptr[built];
        int tlen = (int)s->type_name.len;
        const char *tname = (const char *)s->type_name.ptr;
        uint32_t kind;
        if (!kind_of(tname, s->type_name.len, &kind)) {
            wyrm_error(&ctx, "cannot import entity %llu: plugin %s %s has no entity type %.*s",
                       (unsigned long long)s->entity.id, PLUGIN->name, PLUGIN->version, tlen,
                       tname);
            goto end;
        }
        const wyrm_type *t = PLUGIN->types[kind];
        void *state = new_state(t);
        if (!state) {
            wyrm_error(&ctx, "out of memory importing %s %llu", t->name,
                       (unsigned long long)s->entity.id);
            goto end;
        }
        if (s->data.len) {
            const char *why = NULL;
            wyrm_reader r;
            wyrm_reader_init(&r, s->data.ptr, s->data.len);
            if (!t->load) {
                why = wyrm_skip(&r) ? NULL : r.error;
            } else if (t->load(state, &r, version, &why) != WYRM_OK || r.error) {
                why = r.error ? r.error : why ? why : "its load function failed";
            }
            if (!why && !wyrm_reader_done(&r)) {
                why = "trailing bytes after the state";
            }
            if (why) {
                drop_state(t, state);
                wyrm_error(&ctx, "cannot import %s %llu from version %s: cannot decode state: %s",
                           t->name, (unsigned long long)s->entity.id, version, why);
                goto end;
            }
        }
        rebuilt[built] = state;
        kinds[built] = kind;
    }

    /* All rebuilt: take them over, replacing any state already here. */
    for (size_t i = 0; i < n; i++) {
        wyrm_id id = states->ptr[i].entity.id;
        slot *old = find(id);
        if (old) {
            const wyrm_type *ot = type_at(old->kind);
            void *os = old->state;
            old->kind = kinds[i];
            old->state = rebuilt[i];
            if (ot) {
                drop_state(ot, os);
            }
        } else if (!insert(id, kinds[i], rebuilt[i])) {
            /* Out of memory part way: cannot be all-or-nothing any more;
             * drop what is left and report it. */
            for (size_t k = i; k < n; k++) {
                drop_state(PLUGIN->types[kinds[k]], rebuilt[k]);
            }
            built = 0;
            wyrm_error(&ctx, "out of memory importing %zu entities", n);
            goto end;
        }
        rebuilt[i] = NULL;
    }
    built = 0;
    ok = true;

end:
    for (size_t i = 0; i < built; i++) {
        if (rebuilt[i]) {
            drop_state(PLUGIN->types[kinds[i]], rebuilt[i]);
        }
    }
    free(rebuilt);
    free(kinds);
    free(version);
    plugin_string_free(from_version);
    exports_wyrm_game_entities_list_entity_state_free(states);
    if (!ok) {
        give_error(&ctx, err);
        return false;
    }
    return true;
}
