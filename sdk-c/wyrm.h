/*
 * wyrm.h: the C helper library for Wyrm plugins.
 *
 * A plugin declares its entity types (attributes, methods with who may
 * call them, hooks, and a private-state struct with save/load functions)
 * and names them with WYRM_PLUGIN. This library implements every export of
 * the `entities` interface over that: a private-state table keyed by entity
 * id (state created lazily on first touch), method dispatch, and the state
 * hook (export/import). It also carries a small MessagePack writer and
 * reader, and wrappers over the host imports that take plain C strings and
 * writers instead of the generated string and list types.
 *
 * `wyrm build` writes this file and wyrm.c beside the generated bindings
 * (`plugin.h`); a plugin only includes "wyrm.h". Anything not wrapped here
 * is reachable through the generated functions in "plugin.h".
 *
 * Conventions: functions that can fail return WYRM_OK (0) or WYRM_ERR (-1).
 * Those that take a `wyrm_ctx` record the error message in it, so a method
 * can simply `return WYRM_ERR;` to pass it on to its caller.
 */
#ifndef WYRM_H
#define WYRM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WYRM_OK 0
#define WYRM_ERR (-1)

/* ------------------------------------------------------------------------
 * MessagePack writer: appends to a growing buffer. An allocation failure
 * is remembered and reported when the writer is used (sent or saved).
 * ---------------------------------------------------------------------- */

typedef struct wyrm_writer {
    uint8_t *buf;
    size_t len;
    size_t cap;
    bool failed; /* out of memory while writing */
} wyrm_writer;

/* A writer that is ready to use; equivalent to `wyrm_writer w = {0};`. */
void wyrm_writer_init(wyrm_writer *w);
/* Frees the buffer; the writer may be used again afterwards. */
void wyrm_writer_free(wyrm_writer *w);

void wyrm_write_nil(wyrm_writer *w);
void wyrm_write_bool(wyrm_writer *w, bool v);
/* Integers use the smallest MessagePack encoding. */
void wyrm_write_int(wyrm_writer *w, int64_t v);
void wyrm_write_uint(wyrm_writer *w, uint64_t v);
/* Always a 64-bit float. */
void wyrm_write_double(wyrm_writer *w, double v);
/* A NUL-terminated UTF-8 string. */
void wyrm_write_str(wyrm_writer *w, const char *s);
/* A UTF-8 string of `len` bytes (may contain NUL). */
void wyrm_write_strn(wyrm_writer *w, const char *s, size_t len);
void wyrm_write_bin(wyrm_writer *w, const void *data, size_t len);
/* Headers: follow with `n` values (array) or `n` key/value pairs (map). */
void wyrm_write_array(wyrm_writer *w, uint32_t n);
void wyrm_write_map(wyrm_writer *w, uint32_t n);
/* Bytes that already are one encoded value (e.g. from wyrm_read_raw). */
void wyrm_write_raw(wyrm_writer *w, const void *data, size_t len);

/* ------------------------------------------------------------------------
 * MessagePack reader: reads values in order from a borrowed buffer. Every
 * read checks the data; the first failure is kept in `error` and every
 * later read fails too, so a sequence of reads can be checked once.
 * ---------------------------------------------------------------------- */

typedef struct wyrm_reader {
    const uint8_t *data;
    size_t len;
    size_t pos;
    const char *error; /* NULL while all is well; a static message */
} wyrm_reader;

/* A UTF-8 string or byte string borrowed from the data being read: valid
 * while that data is, and NOT NUL-terminated. */
typedef struct wyrm_str {
    const char *ptr;
    size_t len;
} wyrm_str;

typedef struct wyrm_bytes {
    const uint8_t *ptr;
    size_t len;
} wyrm_bytes;

typedef enum wyrm_kind {
    WYRM_NIL,
    WYRM_BOOL,
    WYRM_INT, /* any integer: read with wyrm_read_int or wyrm_read_uint */
    WYRM_FLOAT,
    WYRM_STR,
    WYRM_BIN,
    WYRM_ARRAY,
    WYRM_MAP,
    WYRM_EXT,
    WYRM_INVALID /* end of data, a reserved byte, or an earlier error */
} wyrm_kind;

void wyrm_reader_init(wyrm_reader *r, const void *data, size_t len);
/* The kind of the next value, without reading it. */
wyrm_kind wyrm_peek(const wyrm_reader *r);
bool wyrm_read_nil(wyrm_reader *r);
bool wyrm_read_bool(wyrm_reader *r, bool *out);
/* Any integer that fits; a float is not an integer. */
bool wyrm_read_int(wyrm_reader *r, int64_t *out);
bool wyrm_read_uint(wyrm_reader *r, uint64_t *out);
/* A float (32 or 64 bits) or an integer. */
bool wyrm_read_double(wyrm_reader *r, double *out);
/* A string, checked to be valid UTF-8. */
bool wyrm_read_str(wyrm_reader *r, wyrm_str *out);
bool wyrm_read_bin(wyrm_reader *r, wyrm_bytes *out);
bool wyrm_read_array(wyrm_reader *r, uint32_t *n);
bool wyrm_read_map(wyrm_reader *r, uint32_t *n);
/* Skips one whole value (checking it is well formed). */
bool wyrm_skip(wyrm_reader *r);
/* One whole value, checked to be well formed, as its encoded bytes. */
bool wyrm_read_raw(wyrm_reader *r, wyrm_bytes *out);
/* Whether all the data has been read. */
bool wyrm_reader_done(const wyrm_reader *r);

/* Small string helpers. */
bool wyrm_str_eq(wyrm_str s, const char *cstr);
/* Unicode characters (code points) in valid UTF-8. */
size_t wyrm_utf8_chars(wyrm_str s);
/* A malloc'd NUL-terminated copy (NULL when out of memory). */
char *wyrm_str_dup(wyrm_str s);

/* ------------------------------------------------------------------------
 * Entities: the context of a call, and how a type is declared.
 * ---------------------------------------------------------------------- */

typedef uint64_t wyrm_id;

typedef enum wyrm_caller_kind {
    WYRM_CALLER_SERVER,       /* the host, a timer, or another entity */
    WYRM_CALLER_OWN_CLIENT,   /* the client bound to this entity */
    WYRM_CALLER_OTHER_CLIENT, /* a client bound to another entity */
} wyrm_caller_kind;

struct wyrm_type;

/* What a method or hook runs with. */
typedef struct wyrm_ctx {
    wyrm_id id;                   /* the entity being run */
    const struct wyrm_type *type; /* its type */
    wyrm_caller_kind caller;      /* who called */
    bool has_caller_entity;       /* whether caller_entity is set */
    wyrm_id caller_entity;        /* the calling entity (or client's entity) */
    wyrm_str method;              /* the method being run (empty in hooks) */
    char *error;                  /* set by wyrm_error and failed helpers */
} wyrm_ctx;

/* Records an error (printf-style) and returns WYRM_ERR. The message goes
 * back to the caller: a client gets it as an error frame. */
int wyrm_error(wyrm_ctx *ctx, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* A method: `args` is positioned at the MessagePack array of arguments;
 * read them with wyrm_args (or the reader functions). */
typedef int (*wyrm_method_fn)(wyrm_ctx *ctx, void *self, wyrm_reader *args);

/* Who may call a method (the host enforces it before the plugin runs). */
typedef enum wyrm_exposure {
    WYRM_SERVER,      /* only the server: other entities, timers, replies */
    WYRM_OWN_CLIENT,  /* ... and the client that owns the entity */
    WYRM_ALL_CLIENTS, /* ... and any client that knows the entity */
} wyrm_exposure;

/* Attribute flags, to combine with `|`. */
#define WYRM_ATTR_PERSISTENT 1u
#define WYRM_ATTR_OWN_CLIENT 2u
#define WYRM_ATTR_ALL_CLIENTS 4u

typedef struct wyrm_attr {
    const char *name;
    unsigned flags;
} wyrm_attr;

typedef struct wyrm_method {
    const char *name;
    wyrm_exposure exposure;
    wyrm_method_fn fn;
} wyrm_method;

typedef struct wyrm_aoi {
    float radius;
    float hysteresis;
    bool events; /* deliver aoi_enter / aoi_leave hooks */
} wyrm_aoi;

/* An entity type. `attrs` and `methods` end with a zeroed entry ({0}).
 * Every function pointer may be NULL. */
typedef struct wyrm_type {
    const char *name;
    const wyrm_attr *attrs;
    const wyrm_method *methods;
    const wyrm_aoi *aoi; /* NULL: the type sees nothing */

    /* Private state: `state_size` bytes, zeroed, then `init` (fresh state).
     * `drop` frees what the state owns (not the state itself). */
    size_t state_size;
    void (*init)(void *self);
    void (*drop)(void *self);
    /* The state hook: `save` writes the state as a MessagePack map with
     * string keys; `load` reads such a map into a fresh state, using
     * defaults for missing keys and skipping unknown ones. Return WYRM_OK,
     * or WYRM_ERR with a message in `*error` (a static string). */
    int (*save)(const void *self, wyrm_writer *w);
    int (*load)(void *self, wyrm_reader *r, const char *from_version, const char **error);

    /* Hooks. An error from `created` fails the creation; errors from the
     * others are logged. */
    int (*created)(wyrm_ctx *ctx, void *self);
    int (*destroyed)(wyrm_ctx *ctx, void *self);
    int (*client_connected)(wyrm_ctx *ctx, void *self);
    int (*client_disconnected)(wyrm_ctx *ctx, void *self);
    int (*tick)(wyrm_ctx *ctx, void *self, uint32_t dt_ms);
    int (*aoi_enter)(wyrm_ctx *ctx, void *self, wyrm_id other);
    int (*aoi_leave)(wyrm_ctx *ctx, void *self, wyrm_id other);
} wyrm_type;

typedef struct wyrm_plugin {
    const char *name;
    const char *version;
    const wyrm_type *const *types; /* a type's index is its `kind` */
    size_t type_count;
} wyrm_plugin;

/* Names the plugin and its types; use once, at file scope:
 *   WYRM_PLUGIN("my-game", "1.0.0", &ROOM, &MEMBER);  */
#define WYRM_PLUGIN(name_, version_, ...)                                      \
    static const wyrm_type *const wyrm_plugin_types_[] = {__VA_ARGS__};        \
    const wyrm_plugin wyrm_plugin_def = {                                      \
        (name_), (version_), wyrm_plugin_types_,                               \
        sizeof(wyrm_plugin_types_) / sizeof(wyrm_plugin_types_[0])}

extern const wyrm_plugin wyrm_plugin_def;

/* Reads a method's arguments: checks `args` is an array of exactly
 * strlen(fmt) values and reads one per format letter:
 *   'b' bool*        'i' int64_t*      'u' uint64_t*   'w' uint32_t*
 *   'd' double*      's' wyrm_str*     'y' wyrm_bytes* (binary)
 *   'v' wyrm_bytes* (any one value, as its encoded bytes)   '_' skipped
 * On a mismatch it records "bad arguments for Type.method: ..." in ctx and
 * returns WYRM_ERR. Strings and bytes borrow from the call's arguments. */
int wyrm_args(wyrm_ctx *ctx, wyrm_reader *args, const char *fmt, ...);

/* ------------------------------------------------------------------------
 * Host calls. Those taking a writer send its bytes (one MessagePack value,
 * usually an array of arguments) and then free it; a NULL writer sends an
 * empty argument array. Messages are delivered after the current call.
 * ---------------------------------------------------------------------- */

/* call-entity: `method` on entity `id`, as the server. */
int wyrm_call(wyrm_ctx *ctx, wyrm_id id, const char *method, wyrm_writer *args);
/* call-client: on this entity's client, or on entity `id`'s. No client
 * bound is not an error; `*delivered` (may be NULL) tells whether one was. */
int wyrm_call_client(wyrm_ctx *ctx, const char *method, wyrm_writer *args);
int wyrm_call_client_of(wyrm_ctx *ctx, wyrm_id id, const char *method,
                        wyrm_writer *args, bool *delivered);
/* broadcast to every connected client. */
int wyrm_broadcast(wyrm_ctx *ctx, const char *method, wyrm_writer *args);
/* call-aoi-clients: every client that sees this entity. */
int wyrm_call_aoi_clients(wyrm_ctx *ctx, const char *method, wyrm_writer *args);

/* Attributes of this entity, by top-level name. `wyrm_get_attr` gives a
 * malloc'd copy of the value (free with wyrm_buf_free); `out->len` is 0
 * when nothing is there. */
typedef struct wyrm_buf {
    uint8_t *ptr;
    size_t len;
} wyrm_buf;
void wyrm_buf_free(wyrm_buf *b);
int wyrm_set_attr(wyrm_ctx *ctx, const char *name, wyrm_writer *value);
int wyrm_get_attr(wyrm_ctx *ctx, const char *name, wyrm_buf *out);
int wyrm_delete_attr(wyrm_ctx *ctx, const char *name);

/* Asks for the value of attribute `name` of entity `id`, wherever it lives
 * (`wyrm_get_attr` reads this entity only): `method` is called on this
 * entity with `[error, value, context]` (value nil when nothing is there).
 * `context` is a writer holding one value, or NULL for nil. */
int wyrm_ask_attr(wyrm_ctx *ctx, wyrm_id id, const char *name, const char *method,
                  wyrm_writer *context);

/* Where a new entity lives (the WIT `locality`). */
typedef enum wyrm_locality {
    WYRM_HERE,     /* this entity's game: readable and changeable in place */
    WYRM_ANYWHERE, /* the game the server chooses by load: reach it by messages */
} wyrm_locality;

/* Entities. `attrs` is a writer holding a map of attributes, or NULL.
 * `wyrm_create_entity` creates it here; `wyrm_create_entity_at` where `at`
 * says. */
int wyrm_create_entity(wyrm_ctx *ctx, const char *type_name, wyrm_writer *attrs, wyrm_id *out);
int wyrm_create_entity_at(wyrm_ctx *ctx, const char *type_name, wyrm_writer *attrs,
                          wyrm_locality at, wyrm_id *out);
/* The same, making the entity a space of `kind`. */
int wyrm_create_space(wyrm_ctx *ctx, const char *type_name, const char *kind, wyrm_writer *attrs,
                      wyrm_id *out);
int wyrm_create_space_at(wyrm_ctx *ctx, const char *type_name, const char *kind,
                         wyrm_writer *attrs, wyrm_locality at, wyrm_id *out);
int wyrm_destroy_entity(wyrm_ctx *ctx, wyrm_id id);
/* Asks for the type name of entity `id`, wherever it lives: `method` is
 * called on this entity with `[error, type_name, context]` (type_name nil
 * when no such entity is alive). `context`: a writer holding one value, or
 * NULL for nil. */
int wyrm_ask_entity_type(wyrm_ctx *ctx, wyrm_id id, const char *method, wyrm_writer *context);
/* The service entity of `type_name`; false when there is none. */
bool wyrm_service(const char *type_name, wyrm_id *out);

/* Timers: `method` with `args` on this entity after `delay_ms` (then every
 * `delay_ms` if `repeat`). `timer` (may be NULL) receives its id. */
int wyrm_set_timer(wyrm_ctx *ctx, uint32_t delay_ms, bool repeat, const char *method,
                   wyrm_writer *args, uint64_t *timer);
bool wyrm_cancel_timer(uint64_t timer);

typedef enum wyrm_log_level {
    WYRM_TRACE,
    WYRM_DEBUG,
    WYRM_INFO,
    WYRM_WARN,
    WYRM_LOG_ERROR,
} wyrm_log_level;

/* A log line attributed to the plugin (printf-style). */
void wyrm_log(wyrm_log_level level, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Milliseconds since the Unix epoch. */
uint64_t wyrm_now_ms(void);

#ifdef __cplusplus
}
#endif

#endif /* WYRM_H */
