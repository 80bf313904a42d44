/*
 * The conformance plugin in C: `Room` and `Member` exactly as
 * plugins/conformance/README.md specifies them, with the same private state
 * (MessagePack maps with string keys) as the Rust, JavaScript and Python
 * versions, so a server can swap between them.
 */
#include <stdlib.h>
#include <string.h>

#include "wyrm.h"

/* Lines of history the room keeps. */
#define HISTORY 20

/* ---- Room: the service ---------------------------------------------- */

typedef struct line {
    char *name;
    size_t name_len;
    char *text;
    size_t text_len;
} line;

typedef struct room {
    line *lines; /* oldest first */
    size_t count;
    size_t cap;
    uint64_t posts;
} room;

static void line_free(line *l) {
    free(l->name);
    free(l->text);
}

static void room_drop(void *self) {
    room *r = self;
    for (size_t i = 0; i < r->count; i++) {
        line_free(&r->lines[i]);
    }
    free(r->lines);
}

/* Appends a copy of (name, text); false when out of memory. */
static bool room_push(room *r, wyrm_str name, wyrm_str text) {
    if (r->count == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : HISTORY + 1;
        line *lines = realloc(r->lines, cap * sizeof *lines);
        if (!lines) {
            return false;
        }
        r->lines = lines;
        r->cap = cap;
    }
    line l = {wyrm_str_dup(name), name.len, wyrm_str_dup(text), text.len};
    if (!l.name || !l.text) {
        line_free(&l);
        return false;
    }
    r->lines[r->count++] = l;
    return true;
}

/* [[name, text], ...] */
static void write_lines(wyrm_writer *w, const room *r) {
    wyrm_write_array(w, (uint32_t)r->count);
    for (size_t i = 0; i < r->count; i++) {
        wyrm_write_array(w, 2);
        wyrm_write_strn(w, r->lines[i].name, r->lines[i].name_len);
        wyrm_write_strn(w, r->lines[i].text, r->lines[i].text_len);
    }
}

static int room_save(const void *self, wyrm_writer *w) {
    const room *r = self;
    wyrm_write_map(w, 2);
    wyrm_write_str(w, "lines");
    write_lines(w, r);
    wyrm_write_str(w, "posts");
    wyrm_write_uint(w, r->posts);
    return WYRM_OK;
}

static int room_load(void *self, wyrm_reader *rd, const char *from_version, const char **error) {
    (void)from_version;
    room *r = self;
    uint32_t n;
    if (!wyrm_read_map(rd, &n)) {
        return WYRM_ERR;
    }
    for (uint32_t i = 0; i < n; i++) {
        wyrm_str key;
        if (!wyrm_read_str(rd, &key)) {
            return WYRM_ERR;
        }
        if (wyrm_str_eq(key, "posts")) {
            if (!wyrm_read_uint(rd, &r->posts)) {
                return WYRM_ERR;
            }
        } else if (wyrm_str_eq(key, "lines")) {
            uint32_t count;
            if (!wyrm_read_array(rd, &count)) {
                return WYRM_ERR;
            }
            for (uint32_t k = 0; k < count; k++) {
                uint32_t pair;
                wyrm_str name, text;
                if (!wyrm_read_array(rd, &pair)) {
                    return WYRM_ERR;
                }
                if (pair != 2) {
                    *error = "a line is not [name, text]";
                    return WYRM_ERR;
                }
                if (!wyrm_read_str(rd, &name) || !wyrm_read_str(rd, &text)) {
                    return WYRM_ERR;
                }
                if (!room_push(r, name, text)) {
                    *error = "out of memory";
                    return WYRM_ERR;
                }
            }
        } else if (!wyrm_skip(rd)) { /* unknown fields are ignored */
            return WYRM_ERR;
        }
    }
    return WYRM_OK;
}

/* join [member, name]: send the member the history. */
static int room_join(wyrm_ctx *ctx, void *self, wyrm_reader *args) {
    room *r = self;
    uint64_t member;
    wyrm_str name;
    if (wyrm_args(ctx, args, "us", &member, &name)) {
        return WYRM_ERR;
    }
    wyrm_writer w = {0};
    wyrm_write_array(&w, 2);
    write_lines(&w, r);
    wyrm_write_uint(&w, r->posts);
    return wyrm_call_client_of(ctx, member, "on_history", &w, NULL);
}

/* post [member, name, text]: keep the line and tell everyone. */
static int room_post(wyrm_ctx *ctx, void *self, wyrm_reader *args) {
    room *r = self;
    uint64_t member;
    wyrm_str name, text;
    if (wyrm_args(ctx, args, "uss", &member, &name, &text)) {
        return WYRM_ERR;
    }
    if (!room_push(r, name, text)) {
        return wyrm_error(ctx, "out of memory");
    }
    r->posts++;
    if (r->count > HISTORY) {
        line_free(&r->lines[0]);
        memmove(r->lines, r->lines + 1, (r->count - 1) * sizeof *r->lines);
        r->count--;
    }
    wyrm_writer w = {0};
    wyrm_write_array(&w, 3);
    wyrm_write_strn(&w, name.ptr, name.len);
    wyrm_write_strn(&w, text.ptr, text.len);
    wyrm_write_uint(&w, r->posts);
    return wyrm_broadcast(ctx, "on_said", &w);
}

static const wyrm_attr ROOM_ATTRS[] = {
    {"topic", WYRM_ATTR_PERSISTENT},
    {0},
};

static const wyrm_method ROOM_METHODS[] = {
    {"join", WYRM_SERVER, room_join},
    {"post", WYRM_SERVER, room_post},
    {0},
};

static const wyrm_type ROOM = {
    .name = "Room",
    .attrs = ROOM_ATTRS,
    .methods = ROOM_METHODS,
    .state_size = sizeof(room),
    .drop = room_drop,
    .save = room_save,
    .load = room_load,
};

/* ---- Member: every client's entity ---------------------------------- */

typedef struct member {
    uint64_t said;
} member;

static int member_save(const void *self, wyrm_writer *w) {
    const member *m = self;
    wyrm_write_map(w, 1);
    wyrm_write_str(w, "said");
    wyrm_write_uint(w, m->said);
    return WYRM_OK;
}

static int member_load(void *self, wyrm_reader *rd, const char *from_version, const char **error) {
    (void)from_version;
    (void)error;
    member *m = self;
    uint32_t n;
    if (!wyrm_read_map(rd, &n)) {
        return WYRM_ERR;
    }
    for (uint32_t i = 0; i < n; i++) {
        wyrm_str key;
        if (!wyrm_read_str(rd, &key)) {
            return WYRM_ERR;
        }
        bool ok = wyrm_str_eq(key, "said") ? wyrm_read_uint(rd, &m->said) : wyrm_skip(rd);
        if (!ok) {
            return WYRM_ERR;
        }
    }
    return WYRM_OK;
}

/* Whether `s` has between `min` and `max` characters. */
static bool chars_between(wyrm_str s, size_t min, size_t max) {
    size_t n = wyrm_utf8_chars(s);
    return n >= min && n <= max;
}

static int member_hello(wyrm_ctx *ctx, void *self, wyrm_reader *args) {
    (void)self;
    wyrm_str name;
    if (wyrm_args(ctx, args, "s", &name)) {
        return WYRM_ERR;
    }
    if (!chars_between(name, 1, 20)) {
        return wyrm_error(ctx, "bad name");
    }
    wyrm_writer w = {0};
    wyrm_write_strn(&w, name.ptr, name.len);
    if (wyrm_set_attr(ctx, "name", &w)) {
        return WYRM_ERR;
    }
    wyrm_id room_id;
    if (!wyrm_service("Room", &room_id)) {
        return wyrm_error(ctx, "no room");
    }
    wyrm_write_array(&w, 2);
    wyrm_write_uint(&w, ctx->id);
    wyrm_write_strn(&w, name.ptr, name.len);
    return wyrm_call(ctx, room_id, "join", &w);
}

static int member_say(wyrm_ctx *ctx, void *self, wyrm_reader *args) {
    member *m = self;
    wyrm_str text;
    if (wyrm_args(ctx, args, "s", &text)) {
        return WYRM_ERR;
    }
    wyrm_buf stored;
    if (wyrm_get_attr(ctx, "name", &stored)) {
        return WYRM_ERR;
    }
    if (stored.len == 0) {
        return wyrm_error(ctx, "say hello first");
    }
    wyrm_reader rd;
    wyrm_str name;
    wyrm_reader_init(&rd, stored.ptr, stored.len);
    if (!wyrm_read_str(&rd, &name)) {
        int rc = wyrm_error(ctx, "attribute name: cannot decode value: %s", rd.error);
        wyrm_buf_free(&stored);
        return rc;
    }
    int rc;
    if (!chars_between(text, 1, 200)) {
        rc = wyrm_error(ctx, "bad text");
    } else {
        m->said++;
        wyrm_writer w = {0};
        wyrm_write_uint(&w, m->said);
        rc = wyrm_set_attr(ctx, "said", &w);
        wyrm_id room_id;
        if (rc == WYRM_OK && !wyrm_service("Room", &room_id)) {
            rc = wyrm_error(ctx, "no room");
        }
        if (rc == WYRM_OK) {
            wyrm_write_array(&w, 3);
            wyrm_write_uint(&w, ctx->id);
            wyrm_write_strn(&w, name.ptr, name.len);
            wyrm_write_strn(&w, text.ptr, text.len);
            rc = wyrm_call(ctx, room_id, "post", &w);
        }
    }
    wyrm_buf_free(&stored); /* `name` borrowed from it */
    return rc;
}

/* echo [value]: the value decoded (checked to be one well-formed
 * MessagePack value) and sent back as it came. */
static int member_echo(wyrm_ctx *ctx, void *self, wyrm_reader *args) {
    (void)self;
    wyrm_bytes value;
    if (wyrm_args(ctx, args, "v", &value)) {
        return WYRM_ERR;
    }
    wyrm_writer w = {0};
    wyrm_write_array(&w, 1);
    wyrm_write_raw(&w, value.ptr, value.len);
    return wyrm_call_client(ctx, "on_echo", &w);
}

static int member_remind(wyrm_ctx *ctx, void *self, wyrm_reader *args) {
    (void)self;
    uint32_t delay_ms;
    wyrm_str text;
    if (wyrm_args(ctx, args, "ws", &delay_ms, &text)) {
        return WYRM_ERR;
    }
    wyrm_writer w = {0};
    wyrm_write_array(&w, 1);
    wyrm_write_strn(&w, text.ptr, text.len);
    return wyrm_set_timer(ctx, delay_ms, false, "reminded", &w, NULL);
}

static int member_reminded(wyrm_ctx *ctx, void *self, wyrm_reader *args) {
    member *m = self;
    wyrm_str text;
    if (wyrm_args(ctx, args, "s", &text)) {
        return WYRM_ERR;
    }
    wyrm_writer w = {0};
    wyrm_write_array(&w, 2);
    wyrm_write_strn(&w, text.ptr, text.len);
    wyrm_write_uint(&w, m->said);
    return wyrm_call_client(ctx, "on_reminder", &w);
}

static int member_fail(wyrm_ctx *ctx, void *self, wyrm_reader *args) {
    (void)self;
    wyrm_str message;
    if (wyrm_args(ctx, args, "s", &message)) {
        return WYRM_ERR;
    }
    return wyrm_error(ctx, "%.*s", (int)message.len, message.ptr);
}

/* kind_of [id]: ask for its type name; the answer comes to `told`. */
static int member_kind_of(wyrm_ctx *ctx, void *self, wyrm_reader *args) {
    (void)self;
    uint64_t id;
    if (wyrm_args(ctx, args, "u", &id)) {
        return WYRM_ERR;
    }
    wyrm_writer w = {0};
    wyrm_write_str(&w, "kind");
    return wyrm_ask_entity_type(ctx, id, "told", &w);
}

/* peek [id, attr]: ask for its attribute `attr`, with `attr` as context. */
static int member_peek(wyrm_ctx *ctx, void *self, wyrm_reader *args) {
    (void)self;
    uint64_t id;
    wyrm_str attr;
    if (wyrm_args(ctx, args, "us", &id, &attr)) {
        return WYRM_ERR;
    }
    char *name = wyrm_str_dup(attr);
    if (!name) {
        return wyrm_error(ctx, "out of memory");
    }
    wyrm_writer w = {0};
    wyrm_write_strn(&w, attr.ptr, attr.len);
    int rc = wyrm_ask_attr(ctx, id, name, "told", &w);
    free(name);
    return rc;
}

/* told [error, value, context]: the answer of kind_of, peek and spawn,
 * passed on to the client exactly as it came. */
static int member_told(wyrm_ctx *ctx, void *self, wyrm_reader *args) {
    (void)self;
    wyrm_bytes error, value, context;
    if (wyrm_args(ctx, args, "vvv", &error, &value, &context)) {
        return WYRM_ERR;
    }
    wyrm_writer w = {0};
    wyrm_write_array(&w, 3);
    wyrm_write_raw(&w, context.ptr, context.len);
    wyrm_write_raw(&w, error.ptr, error.len);
    wyrm_write_raw(&w, value.ptr, value.len);
    return wyrm_call_client(ctx, "on_told", &w);
}

/* spawn [name]: a Member anywhere named `name`; tell the client its id, ask
 * for its name (answered to `told` before it goes), then destroy it. */
static int member_spawn(wyrm_ctx *ctx, void *self, wyrm_reader *args) {
    (void)self;
    wyrm_str name;
    if (wyrm_args(ctx, args, "s", &name)) {
        return WYRM_ERR;
    }
    wyrm_writer w = {0};
    wyrm_write_map(&w, 1);
    wyrm_write_str(&w, "name");
    wyrm_write_strn(&w, name.ptr, name.len);
    wyrm_id id;
    if (wyrm_create_entity_at(ctx, "Member", &w, WYRM_ANYWHERE, &id)) {
        return WYRM_ERR;
    }
    wyrm_write_array(&w, 1);
    wyrm_write_uint(&w, id);
    if (wyrm_call_client(ctx, "on_spawned", &w)) {
        return WYRM_ERR;
    }
    wyrm_write_str(&w, "spawned");
    if (wyrm_ask_attr(ctx, id, "name", "told", &w)) {
        return WYRM_ERR;
    }
    return wyrm_destroy_entity(ctx, id);
}

static int member_client_disconnected(wyrm_ctx *ctx, void *self) {
    (void)self;
    if (wyrm_destroy_entity(ctx, ctx->id)) {
        wyrm_log(WYRM_WARN, "cannot destroy member: %s", ctx->error);
    }
    return WYRM_OK;
}

static const wyrm_attr MEMBER_ATTRS[] = {
    {"name", WYRM_ATTR_ALL_CLIENTS},
    {"said", WYRM_ATTR_OWN_CLIENT},
    {0},
};

static const wyrm_method MEMBER_METHODS[] = {
    {"hello", WYRM_OWN_CLIENT, member_hello},
    {"say", WYRM_OWN_CLIENT, member_say},
    {"echo", WYRM_OWN_CLIENT, member_echo},
    {"remind", WYRM_OWN_CLIENT, member_remind},
    {"reminded", WYRM_SERVER, member_reminded},
    {"fail", WYRM_OWN_CLIENT, member_fail},
    {"kind_of", WYRM_OWN_CLIENT, member_kind_of},
    {"peek", WYRM_OWN_CLIENT, member_peek},
    {"told", WYRM_SERVER, member_told},
    {"spawn", WYRM_OWN_CLIENT, member_spawn},
    {0},
};

static const wyrm_type MEMBER = {
    .name = "Member",
    .attrs = MEMBER_ATTRS,
    .methods = MEMBER_METHODS,
    .state_size = sizeof(member),
    .save = member_save,
    .load = member_load,
    .client_disconnected = member_client_disconnected,
};

WYRM_PLUGIN("conformance-c", "1.0.0-c", &ROOM, &MEMBER);
