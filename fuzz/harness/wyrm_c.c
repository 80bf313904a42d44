/*
 * The C helper (sdk-c/wyrm.c) compiled natively, with AddressSanitizer and
 * UBSan where the compiler has them, and driven by the Rust fuzzer
 * (fuzz/src/targets/external.rs) over stdin/stdout:
 *
 *   in:  u32 LE length, then the input
 *   out: u8 verdict (0 accepted, 1 rejected, 2 property failed),
 *        u32 LE length, then a message
 *
 * A crash or a sanitizer report ends the process; the fuzzer saves the
 * input it was running.
 *
 * Modes (argv[1]):
 *   msgpack  one value read by wyrm_skip and by a walk of typed reads,
 *            which must agree; the walk re-encodes it, and that is stable
 *   args     byte 0 picks a method of type Fields (none, one, pair,
 *            mixed), the rest is its arguments, through the `call` export
 *   state    byte 0 picks type Fields or Any, the rest is the state,
 *            through `import-entities`, then exported and imported again
 *
 * The generated bindings' host imports and list helpers live in plugin.c,
 * which is written for wasm32; the few wyrm.c uses are defined here.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"
#include "wyrm.h"

/* ---- what plugin.c would provide ------------------------------------- */

/* As the generated code does: an empty string owns no memory (its free
 * frees only a non-empty one). */
void plugin_string_dup(plugin_string_t *ret, const char *s) {
    ret->len = strlen(s);
    ret->ptr = ret->len ? malloc(ret->len) : NULL;
    if (ret->len && !ret->ptr) {
        abort();
    }
    if (ret->len) {
        memcpy(ret->ptr, s, ret->len);
    }
}

void plugin_string_free(plugin_string_t *s) {
    if (s->len > 0) {
        free(s->ptr);
    }
    s->ptr = NULL;
    s->len = 0;
}

void exports_wyrm_game_entities_msgpack_free(exports_wyrm_game_entities_msgpack_t *p) {
    if (p->len > 0) {
        free(p->ptr);
    }
}

void exports_wyrm_game_entities_list_entity_id_free(exports_wyrm_game_entities_list_entity_id_t *p) {
    if (p->len > 0) {
        free(p->ptr);
    }
}

void exports_wyrm_game_entities_list_aoi_event_free(exports_wyrm_game_entities_list_aoi_event_t *p) {
    if (p->len > 0) {
        free(p->ptr);
    }
}

void exports_wyrm_game_entities_list_entity_state_free(
    exports_wyrm_game_entities_list_entity_state_t *p) {
    if (p->len > 0) {
        for (size_t i = 0; i < p->len; i++) {
            plugin_string_free(&p->ptr[i].type_name);
            if (p->ptr[i].data.len > 0) {
                free(p->ptr[i].data.ptr);
            }
        }
        free(p->ptr);
    }
}

static char last_log[512];

void wyrm_game_host_log(wyrm_game_host_log_level_t level, plugin_string_t *message) {
    (void)level;
    size_t n = message->len < sizeof last_log - 1 ? message->len : sizeof last_log - 1;
    memcpy(last_log, message->ptr, n);
    last_log[n] = '\0';
}

uint64_t wyrm_game_host_now_ms(void) { return 0; }

/* Nothing in these paths reaches the host: a call means the harness is
 * wrong, not the helper. */
#define NO_HOST(name)                                                          \
    do {                                                                       \
        fprintf(stderr, "wyrm_c harness: host import %s called\n", name);     \
        abort();                                                               \
    } while (0)

bool wyrm_game_host_create_entity(plugin_string_t *a, wyrm_game_host_msgpack_t *b,
                                  wyrm_game_host_locality_t c, wyrm_game_host_entity_id_t *d,
                                  plugin_string_t *e) {
    (void)a, (void)b, (void)c, (void)d, (void)e;
    NO_HOST("create_entity");
}
bool wyrm_game_host_create_space(plugin_string_t *a, plugin_string_t *b,
                                 wyrm_game_host_msgpack_t *c, wyrm_game_host_locality_t d,
                                 wyrm_game_host_entity_id_t *e, plugin_string_t *f) {
    (void)a, (void)b, (void)c, (void)d, (void)e, (void)f;
    NO_HOST("create_space");
}
void wyrm_game_host_ask_entity_type(wyrm_game_host_entity_id_t a, wyrm_game_host_reply_to_t *b) {
    (void)a, (void)b;
    NO_HOST("ask_entity_type");
}
void wyrm_game_host_ask_attr(wyrm_game_host_entity_id_t a, wyrm_game_host_attr_path_t *b,
                             wyrm_game_host_reply_to_t *c) {
    (void)a, (void)b, (void)c;
    NO_HOST("ask_attr");
}
bool wyrm_game_host_destroy_entity(wyrm_game_host_entity_id_t a, plugin_string_t *b) {
    (void)a, (void)b;
    NO_HOST("destroy_entity");
}
bool wyrm_game_host_entity_type(wyrm_game_host_entity_id_t a, plugin_string_t *b) {
    (void)a, (void)b;
    NO_HOST("entity_type");
}
bool wyrm_game_host_service(plugin_string_t *a, wyrm_game_host_entity_id_t *b) {
    (void)a, (void)b;
    NO_HOST("service");
}
void wyrm_game_host_call_entity(wyrm_game_host_entity_id_t a, plugin_string_t *b,
                                wyrm_game_host_msgpack_t *c) {
    (void)a, (void)b, (void)c;
    NO_HOST("call_entity");
}
bool wyrm_game_host_call_client(wyrm_game_host_entity_id_t a, plugin_string_t *b,
                                wyrm_game_host_msgpack_t *c) {
    (void)a, (void)b, (void)c;
    NO_HOST("call_client");
}
void wyrm_game_host_broadcast(plugin_string_t *a, wyrm_game_host_msgpack_t *b) {
    (void)a, (void)b;
    NO_HOST("broadcast");
}
void wyrm_game_host_call_aoi_clients(wyrm_game_host_entity_id_t a, plugin_string_t *b,
                                     wyrm_game_host_msgpack_t *c) {
    (void)a, (void)b, (void)c;
    NO_HOST("call_aoi_clients");
}
bool wyrm_game_host_attr_get(wyrm_game_host_entity_id_t a, wyrm_game_host_attr_path_t *b,
                             wyrm_game_host_option_msgpack_t *c, plugin_string_t *d) {
    (void)a, (void)b, (void)c, (void)d;
    NO_HOST("attr_get");
}
bool wyrm_game_host_attr_set(wyrm_game_host_entity_id_t a, wyrm_game_host_attr_path_t *b,
                             wyrm_game_host_msgpack_t *c, plugin_string_t *d) {
    (void)a, (void)b, (void)c, (void)d;
    NO_HOST("attr_set");
}
bool wyrm_game_host_attr_delete(wyrm_game_host_entity_id_t a, wyrm_game_host_attr_path_t *b,
                                plugin_string_t *c) {
    (void)a, (void)b, (void)c;
    NO_HOST("attr_delete");
}
bool wyrm_game_host_set_timer(wyrm_game_host_entity_id_t a, uint32_t b, bool c, plugin_string_t *d,
                              wyrm_game_host_msgpack_t *e, uint64_t *f, plugin_string_t *g) {
    (void)a, (void)b, (void)c, (void)d, (void)e, (void)f, (void)g;
    NO_HOST("set_timer");
}
bool wyrm_game_host_cancel_timer(uint64_t a) {
    (void)a;
    NO_HOST("cancel_timer");
}

/* ---- a value walked with the typed reads, written back ---------------- */

/* Deeper than this the walk stops and copies the rest whole: the walk
 * recurses, the helper's own reader never does. */
#define WALK_DEPTH 200

static bool walk(wyrm_reader *r, wyrm_writer *w, int depth) {
    if (depth > WALK_DEPTH) {
        wyrm_bytes raw;
        if (!wyrm_read_raw(r, &raw)) {
            return false;
        }
        wyrm_write_raw(w, raw.ptr, raw.len);
        return true;
    }
    switch (wyrm_peek(r)) {
    case WYRM_NIL:
        if (!wyrm_read_nil(r)) {
            return false;
        }
        wyrm_write_nil(w);
        return true;
    case WYRM_BOOL: {
        bool b;
        if (!wyrm_read_bool(r, &b)) {
            return false;
        }
        wyrm_write_bool(w, b);
        return true;
    }
    case WYRM_INT: {
        /* Errors stick to a reader: try unsigned on a copy first. */
        wyrm_reader probe = *r;
        uint64_t u;
        if (wyrm_read_uint(&probe, &u)) {
            *r = probe;
            wyrm_write_uint(w, u);
            return true;
        }
        int64_t i;
        if (!wyrm_read_int(r, &i)) {
            return false;
        }
        wyrm_write_int(w, i);
        return true;
    }
    case WYRM_FLOAT: {
        double d;
        if (!wyrm_read_double(r, &d)) {
            return false;
        }
        wyrm_write_double(w, d);
        return true;
    }
    case WYRM_STR: {
        wyrm_str s;
        if (!wyrm_read_str(r, &s)) {
            return false;
        }
        wyrm_write_strn(w, s.ptr, s.len);
        return true;
    }
    case WYRM_BIN: {
        wyrm_bytes b;
        if (!wyrm_read_bin(r, &b)) {
            return false;
        }
        wyrm_write_bin(w, b.ptr, b.len);
        return true;
    }
    case WYRM_EXT: {
        /* No typed read for extensions: they pass as raw bytes. */
        wyrm_bytes raw;
        if (!wyrm_read_raw(r, &raw)) {
            return false;
        }
        wyrm_write_raw(w, raw.ptr, raw.len);
        return true;
    }
    case WYRM_ARRAY: {
        uint32_t n;
        if (!wyrm_read_array(r, &n)) {
            return false;
        }
        wyrm_write_array(w, n);
        for (uint32_t k = 0; k < n; k++) {
            if (!walk(r, w, depth + 1)) {
                return false;
            }
        }
        return true;
    }
    case WYRM_MAP: {
        uint32_t n;
        if (!wyrm_read_map(r, &n)) {
            return false;
        }
        wyrm_write_map(w, n);
        for (uint32_t k = 0; k < 2 * (uint64_t)n; k++) {
            if (!walk(r, w, depth + 1)) {
                return false;
            }
        }
        return true;
    }
    case WYRM_INVALID:
    default:
        /* Let a typed read record why. */
        wyrm_read_nil(r);
        return false;
    }
}

/* ---- replies ---------------------------------------------------------- */

enum { ACCEPTED = 0, REJECTED = 1, FAILED = 2 };

static void reply(int verdict, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) {
        n = 0;
    }
    if ((size_t)n >= sizeof msg) {
        n = sizeof msg - 1;
    }
    uint8_t head[5] = {(uint8_t)verdict, (uint8_t)n, (uint8_t)(n >> 8), 0, 0};
    fwrite(head, 1, sizeof head, stdout);
    fwrite(msg, 1, (size_t)n, stdout);
    fflush(stdout);
}

/* ---- msgpack ---------------------------------------------------------- */

/* Checks one value; returns the verdict and, when accepted, its walk's
 * re-encoding in *out (free with wyrm_writer_free). */
static int check_value(const uint8_t *data, size_t len, wyrm_writer *out, char *why,
                       size_t why_len) {
    wyrm_reader skip;
    wyrm_reader_init(&skip, data, len);
    bool skipped = wyrm_skip(&skip);

    wyrm_reader raw;
    wyrm_reader_init(&raw, data, len);
    wyrm_bytes rb;
    bool rawed = wyrm_read_raw(&raw, &rb);

    wyrm_reader r;
    wyrm_reader_init(&r, data, len);
    wyrm_writer_init(out);
    bool walked = walk(&r, out, 0);

    /* wyrm_skip and wyrm_read_raw check a value's structure, not that its
     * strings are UTF-8, which wyrm_read_str does: that is the one way they
     * may take what the typed reads refuse. */
    if (skipped && rawed && !walked && r.error && strcmp(r.error, "string is not valid UTF-8") == 0) {
        snprintf(why, why_len, "%s", r.error);
        return REJECTED;
    }
    if (skipped != walked || rawed != skipped) {
        snprintf(why, why_len, "wyrm_skip %s, wyrm_read_raw %s, the typed reads %s the value",
                 skipped ? "took" : "refused", rawed ? "took" : "refused",
                 walked ? "took" : "refused");
        return FAILED;
    }
    if (!walked) {
        snprintf(why, why_len, "%s", r.error ? r.error : "(no error recorded)");
        if (!r.error || !skip.error) {
            snprintf(why, why_len, "a read failed without recording why");
            return FAILED;
        }
        return REJECTED;
    }
    if (skip.pos != r.pos || rb.len != r.pos || rb.ptr != data) {
        snprintf(why, why_len, "wyrm_skip took %zu bytes, wyrm_read_raw %zu, the typed reads %zu",
                 skip.pos, rb.len, r.pos);
        return FAILED;
    }
    if (r.pos != len) {
        snprintf(why, why_len, "%zu byte(s) after the value", len - r.pos);
        return REJECTED;
    }
    if (out->failed) {
        snprintf(why, why_len, "out of memory writing");
        return FAILED;
    }
    /* The walk's encoding walks to itself. */
    wyrm_reader again;
    wyrm_reader_init(&again, out->buf, out->len);
    wyrm_writer twice;
    wyrm_writer_init(&twice);
    bool ok = walk(&again, &twice, 0) && again.pos == out->len && twice.len == out->len &&
              (out->len == 0 || memcmp(twice.buf, out->buf, out->len) == 0);
    wyrm_writer_free(&twice);
    if (!ok) {
        snprintf(why, why_len, "the value's re-encoding does not re-encode to itself");
        return FAILED;
    }
    return ACCEPTED;
}

static void run_msgpack(const uint8_t *data, size_t len) {
    char why[512] = "";
    wyrm_writer w;
    int v = check_value(data, len, &w, why, sizeof why);
    wyrm_writer_free(&w);
    reply(v, "%s", why);
}

/* ---- a plugin --------------------------------------------------------- */

typedef struct fields {
    uint64_t n;
    char *name;
    size_t name_len;
    double pos[2];
    bool has_pos;
    uint32_t tags;
} fields;

static void fields_drop(void *self) {
    fields *f = self;
    free(f->name);
    f->name = NULL;
}

static int fields_save(const void *self, wyrm_writer *w) {
    const fields *f = self;
    wyrm_write_map(w, 3 + (f->has_pos ? 1 : 0));
    wyrm_write_str(w, "n");
    wyrm_write_uint(w, f->n);
    wyrm_write_str(w, "name");
    wyrm_write_strn(w, f->name ? f->name : "", f->name_len);
    wyrm_write_str(w, "tags");
    wyrm_write_uint(w, f->tags);
    if (f->has_pos) {
        wyrm_write_str(w, "pos");
        wyrm_write_array(w, 2);
        wyrm_write_double(w, f->pos[0]);
        wyrm_write_double(w, f->pos[1]);
    }
    return WYRM_OK;
}

/* Reads the map as a plugin would: known keys typed, others skipped. */
static int fields_load(void *self, wyrm_reader *r, const char *from_version, const char **error) {
    (void)from_version;
    fields *f = self;
    uint32_t n;
    if (!wyrm_read_map(r, &n)) {
        return WYRM_ERR;
    }
    for (uint32_t i = 0; i < n; i++) {
        wyrm_str key;
        if (!wyrm_read_str(r, &key)) {
            return WYRM_ERR;
        }
        if (wyrm_str_eq(key, "n")) {
            if (!wyrm_read_uint(r, &f->n)) {
                return WYRM_ERR;
            }
        } else if (wyrm_str_eq(key, "name")) {
            wyrm_str s;
            if (!wyrm_read_str(r, &s)) {
                return WYRM_ERR;
            }
            free(f->name);
            f->name = wyrm_str_dup(s);
            f->name_len = f->name ? s.len : 0;
            if (!f->name) {
                *error = "out of memory";
                return WYRM_ERR;
            }
        } else if (wyrm_str_eq(key, "tags")) {
            /* A count (what this version saves) or a list of strings. */
            if (wyrm_peek(r) == WYRM_ARRAY) {
                uint32_t count;
                if (!wyrm_read_array(r, &count)) {
                    return WYRM_ERR;
                }
                for (uint32_t k = 0; k < count; k++) {
                    wyrm_str t;
                    if (!wyrm_read_str(r, &t)) {
                        return WYRM_ERR;
                    }
                }
                f->tags = count;
            } else {
                uint64_t count;
                if (!wyrm_read_uint(r, &count)) {
                    return WYRM_ERR;
                }
                f->tags = count > UINT32_MAX ? UINT32_MAX : (uint32_t)count;
            }
        } else if (wyrm_str_eq(key, "pos") && wyrm_peek(r) == WYRM_ARRAY) {
            uint32_t two;
            if (!wyrm_read_array(r, &two)) {
                return WYRM_ERR;
            }
            if (two != 2) {
                *error = "pos is not [x, y]";
                return WYRM_ERR;
            }
            if (!wyrm_read_double(r, &f->pos[0]) || !wyrm_read_double(r, &f->pos[1])) {
                return WYRM_ERR;
            }
            f->has_pos = true;
        } else if (!wyrm_skip(r)) {
            return WYRM_ERR;
        }
    }
    return WYRM_OK;
}

static bool broken;
static char broken_why[512];

static int m_none(wyrm_ctx *ctx, void *self, wyrm_reader *args) {
    (void)self;
    return wyrm_args(ctx, args, "");
}

static int m_one(wyrm_ctx *ctx, void *self, wyrm_reader *args) {
    (void)self;
    wyrm_bytes v;
    if (wyrm_args(ctx, args, "v", &v) != WYRM_OK) {
        return WYRM_ERR;
    }
    /* What wyrm_args took as one value is one value. */
    char why[256] = "";
    wyrm_writer w;
    int verdict = check_value(v.ptr, v.len, &w, why, sizeof why);
    wyrm_writer_free(&w);
    if (verdict == FAILED || (verdict == REJECTED && strcmp(why, "string is not valid UTF-8") != 0)) {
        broken = true;
        snprintf(broken_why, sizeof broken_why, "wyrm_args 'v' took a value the reader refuses: %s",
                 why);
    }
    return WYRM_OK;
}

static int m_pair(wyrm_ctx *ctx, void *self, wyrm_reader *args) {
    fields *f = self;
    wyrm_str s;
    int64_t n;
    if (wyrm_args(ctx, args, "si", &s, &n) != WYRM_OK) {
        return WYRM_ERR;
    }
    char *copy = wyrm_str_dup(s);
    if (!copy) {
        return wyrm_error(ctx, "out of memory");
    }
    free(f->name);
    f->name = copy;
    f->name_len = s.len;
    f->n = (uint64_t)n;
    return WYRM_OK;
}

static int m_mixed(wyrm_ctx *ctx, void *self, wyrm_reader *args) {
    fields *f = self;
    bool b;
    double d;
    wyrm_bytes tags, shape;
    uint32_t w;
    if (wyrm_args(ctx, args, "bdvwv", &b, &d, &tags, &w, &shape) != WYRM_OK) {
        return WYRM_ERR;
    }
    (void)b, (void)tags, (void)shape;
    f->tags = w;
    f->pos[0] = d;
    return WYRM_OK;
}

static const wyrm_method FIELDS_METHODS[] = {
    {"none", WYRM_OWN_CLIENT, m_none},
    {"one", WYRM_OWN_CLIENT, m_one},
    {"pair", WYRM_OWN_CLIENT, m_pair},
    {"mixed", WYRM_OWN_CLIENT, m_mixed},
    {0},
};

static const wyrm_type FIELDS = {
    .name = "Fields",
    .methods = FIELDS_METHODS,
    .state_size = sizeof(fields),
    .drop = fields_drop,
    .save = fields_save,
    .load = fields_load,
};

/* Any one value, kept as its bytes. */
typedef struct any {
    uint8_t *bytes;
    size_t len;
} any;

static void any_drop(void *self) {
    any *a = self;
    free(a->bytes);
    a->bytes = NULL;
}

static int any_save(const void *self, wyrm_writer *w) {
    const any *a = self;
    if (a->len) {
        wyrm_write_raw(w, a->bytes, a->len);
    } else {
        wyrm_write_nil(w);
    }
    return WYRM_OK;
}

static int any_load(void *self, wyrm_reader *r, const char *from_version, const char **error) {
    (void)from_version;
    any *a = self;
    wyrm_bytes raw;
    if (!wyrm_read_raw(r, &raw)) {
        return WYRM_ERR;
    }
    a->bytes = malloc(raw.len ? raw.len : 1);
    if (!a->bytes) {
        *error = "out of memory";
        return WYRM_ERR;
    }
    memcpy(a->bytes, raw.ptr, raw.len);
    a->len = raw.len;
    return WYRM_OK;
}

static const wyrm_type ANY = {
    .name = "Any",
    .state_size = sizeof(any),
    .drop = any_drop,
    .save = any_save,
    .load = any_load,
};

WYRM_PLUGIN("fuzz", "1.0.0", &FIELDS, &ANY);

/* ---- the exports, called as the bindings would ----------------------- */

static plugin_string_t owned_string(const char *s) {
    plugin_string_t out;
    plugin_string_dup(&out, s);
    return out;
}

static uint8_t *owned_copy(const uint8_t *data, size_t len) {
    uint8_t *p = malloc(len ? len : 1);
    if (p && len) {
        memcpy(p, data, len);
    }
    return p;
}

static const char *const METHOD_NAMES[] = {"none", "one", "pair", "mixed"};

static bool starts_with(const plugin_string_t *s, const char *prefix) {
    size_t n = strlen(prefix);
    return s->len >= n && memcmp(s->ptr, prefix, n) == 0;
}

static void run_args(const uint8_t *data, size_t len) {
    if (len == 0) {
        reply(REJECTED, "empty input");
        return;
    }
    const char *method = METHOD_NAMES[data[0] % 4];
    exports_wyrm_game_entities_entity_ref_t entity = {.id = 1, .kind = 0};
    plugin_string_t m = owned_string(method);
    /* Owned by the callee, which frees a non-empty list (as the bindings
     * hand them over: an empty one points at nothing). */
    exports_wyrm_game_entities_msgpack_t args = {len > 1 ? owned_copy(data + 1, len - 1) : NULL,
                                                 len - 1};
    exports_wyrm_game_entities_caller_t caller;
    memset(&caller, 0, sizeof caller);
    caller.kind = WYRM_CALLER_OWN_CLIENT;
    plugin_string_t err = {0};
    broken = false;
    bool ok = exports_wyrm_game_entities_call(&entity, &m, &args, &caller, &err);
    if (broken) {
        plugin_string_free(&err);
        reply(FAILED, "Fields.%s: %s", method, broken_why);
        return;
    }
    if (ok) {
        reply(ACCEPTED, "");
        return;
    }
    /* Every helper takes no bytes, nil and an empty array as no arguments. */
    if (data[0] % 4 == 0 && (len == 1 || (len == 2 && (data[1] == 0xc0 || data[1] == 0x90)))) {
        reply(FAILED, "a method without parameters refused no arguments: %.*s", (int)err.len,
              (const char *)err.ptr);
        plugin_string_free(&err);
        return;
    }
    char prefix[64];
    snprintf(prefix, sizeof prefix, "bad arguments for Fields.%s: ", method);
    bool typed = starts_with(&err, prefix);
    reply(typed ? REJECTED : FAILED, "%s%.*s", typed ? "" : "an error not about the arguments: ",
          (int)err.len, (const char *)err.ptr);
    plugin_string_free(&err);
}

/* import-entities of one state; an error message in *err on failure. */
static bool import_one(uint32_t kind, const uint8_t *data, size_t len, plugin_string_t *err) {
    plugin_string_t version = owned_string("1.0.0");
    exports_wyrm_game_entities_list_entity_state_t states;
    states.len = 1;
    states.ptr = calloc(1, sizeof *states.ptr);
    if (!states.ptr) {
        abort();
    }
    states.ptr[0].entity.id = 7;
    states.ptr[0].entity.kind = kind;
    states.ptr[0].type_name = owned_string(kind == 0 ? "Fields" : "Any");
    states.ptr[0].data.ptr = len ? owned_copy(data, len) : NULL;
    states.ptr[0].data.len = len;
    return exports_wyrm_game_entities_import_entities(&version, &states, err);
}

/* export-entities of entity 7; its data copied into *out. */
static bool export_one(wyrm_writer *out, plugin_string_t *err) {
    exports_wyrm_game_entities_list_entity_id_t ids;
    ids.len = 1;
    ids.ptr = malloc(sizeof *ids.ptr);
    if (!ids.ptr) {
        abort();
    }
    ids.ptr[0] = 7;
    exports_wyrm_game_entities_list_entity_state_t got = {0};
    if (!exports_wyrm_game_entities_export_entities(&ids, &got, err)) {
        return false;
    }
    bool one = got.len == 1;
    wyrm_writer_init(out);
    if (one) {
        wyrm_write_raw(out, got.ptr[0].data.ptr, got.ptr[0].data.len);
    }
    exports_wyrm_game_entities_list_entity_state_free(&got);
    return one;
}

static void run_state(const uint8_t *data, size_t len) {
    if (len == 0) {
        reply(REJECTED, "empty input");
        return;
    }
    uint32_t kind = data[0] % 2;
    plugin_string_t err = {0};
    if (!import_one(kind, data + 1, len - 1, &err)) {
        bool typed = starts_with(&err, "cannot import ");
        reply(typed ? REJECTED : FAILED, "%s%.*s", typed ? "" : "an untyped import error: ",
              (int)err.len, (const char *)err.ptr);
        plugin_string_free(&err);
        return;
    }
    wyrm_writer first, second;
    if (!export_one(&first, &err)) {
        reply(FAILED, "an imported state does not export: %.*s", (int)err.len,
              (const char *)err.ptr);
        plugin_string_free(&err);
        return;
    }
    if (!import_one(kind, first.buf, first.len, &err)) {
        reply(FAILED, "an exported state does not import again: %.*s", (int)err.len,
              (const char *)err.ptr);
        plugin_string_free(&err);
        wyrm_writer_free(&first);
        return;
    }
    if (!export_one(&second, &err)) {
        reply(FAILED, "a re-imported state does not export");
        plugin_string_free(&err);
        wyrm_writer_free(&first);
        return;
    }
    bool same = first.len == second.len && (first.len == 0 || memcmp(first.buf, second.buf, first.len) == 0);
    wyrm_writer_free(&first);
    wyrm_writer_free(&second);
    reply(same ? ACCEPTED : FAILED, "%s", same ? "" : "export, import, export is not stable");
}

/* ---- main ------------------------------------------------------------- */

static bool read_exact(uint8_t *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        size_t k = fread(buf + got, 1, n - got, stdin);
        if (k == 0) {
            return false;
        }
        got += k;
    }
    return true;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s msgpack|args|state\n", argv[0]);
        return 2;
    }
    void (*run)(const uint8_t *, size_t) = NULL;
    if (strcmp(argv[1], "msgpack") == 0) {
        run = run_msgpack;
    } else if (strcmp(argv[1], "args") == 0) {
        run = run_args;
    } else if (strcmp(argv[1], "state") == 0) {
        run = run_state;
    } else {
        fprintf(stderr, "unknown mode %s\n", argv[1]);
        return 2;
    }
    for (;;) {
        uint8_t head[4];
        if (!read_exact(head, 4)) {
            return 0;
        }
        size_t len = (size_t)head[0] | (size_t)head[1] << 8 | (size_t)head[2] << 16 |
                     (size_t)head[3] << 24;
        uint8_t *data = malloc(len ? len : 1);
        if (!data || !read_exact(data, len)) {
            return 3;
        }
        run(data, len);
        free(data);
    }
}
