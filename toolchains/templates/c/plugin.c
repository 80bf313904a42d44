/*
 * {{name}}: game logic for Wyrm, in C. `wyrm build .` turns it into a
 * component; "wyrm.h" (the helper) is supplied by the build.
 */
#include <stdlib.h>
#include <string.h>

#include "wyrm.h"

/* The private state of a Player: it survives a hot swap, saved by
 * player_save as a MessagePack map with string keys. */
typedef struct player {
    uint64_t greetings;
} player;

/* hello [name: str]: the client says who it is; it hears back a greeting
 * and how many it has had. */
static int player_hello(wyrm_ctx *ctx, void *self, wyrm_reader *args) {
    player *p = self;
    wyrm_str name;
    if (wyrm_args(ctx, args, "s", &name)) {
        return WYRM_ERR;
    }
    if (name.len == 0) {
        return wyrm_error(ctx, "a name, please");
    }
    p->greetings++;
    wyrm_writer w = {0};
    wyrm_write_strn(&w, name.ptr, name.len);
    if (wyrm_set_attr(ctx, "name", &w)) {
        return WYRM_ERR;
    }
    /* "Hello, <name>!" */
    char *greeting = malloc(name.len + 8);
    if (!greeting) {
        return wyrm_error(ctx, "out of memory");
    }
    memcpy(greeting, "Hello, ", 7);
    memcpy(greeting + 7, name.ptr, name.len);
    greeting[7 + name.len] = '!';
    wyrm_write_array(&w, 2);
    wyrm_write_strn(&w, greeting, name.len + 8);
    free(greeting);
    wyrm_write_uint(&w, p->greetings);
    return wyrm_call_client(ctx, "on_hello", &w);
}

static int player_save(const void *self, wyrm_writer *w) {
    const player *p = self;
    wyrm_write_map(w, 1);
    wyrm_write_str(w, "greetings");
    wyrm_write_uint(w, p->greetings);
    return WYRM_OK;
}

static int player_load(void *self, wyrm_reader *r, const char *from_version, const char **error) {
    (void)from_version;
    (void)error;
    player *p = self;
    uint32_t n;
    if (!wyrm_read_map(r, &n)) {
        return WYRM_ERR;
    }
    for (uint32_t i = 0; i < n; i++) {
        wyrm_str key;
        if (!wyrm_read_str(r, &key)) {
            return WYRM_ERR;
        }
        /* Unknown fields are skipped, missing ones keep their fresh value. */
        bool ok = wyrm_str_eq(key, "greetings") ? wyrm_read_uint(r, &p->greetings) : wyrm_skip(r);
        if (!ok) {
            return WYRM_ERR;
        }
    }
    return WYRM_OK;
}

static const wyrm_attr PLAYER_ATTRS[] = {
    {"name", WYRM_ATTR_ALL_CLIENTS},
    {0},
};

static const wyrm_method PLAYER_METHODS[] = {
    {"hello", WYRM_OWN_CLIENT, player_hello},
    {0},
};

/* The entity every connecting client is bound to. */
static const wyrm_type PLAYER = {
    .name = "Player",
    .attrs = PLAYER_ATTRS,
    .methods = PLAYER_METHODS,
    .state_size = sizeof(player),
    .save = player_save,
    .load = player_load,
};

WYRM_PLUGIN("{{name}}", "0.1.0", &PLAYER);
