/* Helpers of the C API tests: a runtime over the test's own directories, the test image, and
 * checks that stop the test with a message naming the failed call. */
#ifndef ROOTBOX_TESTLIB_H
#define ROOTBOX_TESTLIB_H

#include <rootbox.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMAGE "busybox:ctest"

#define FAIL(...)                                                                  \
    do {                                                                           \
        fprintf(stderr, "%s:%d: FAILED: ", __FILE__, __LINE__);                    \
        fprintf(stderr, __VA_ARGS__);                                              \
        fputc('\n', stderr);                                                       \
        exit(1);                                                                   \
    } while (0)

#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond))                                                               \
            FAIL("%s", #cond);                                                     \
    } while (0)

/* A call that must succeed; `err` must be a rootbox_error_t * variable set to NULL. */
#define OK(call, err)                                                              \
    do {                                                                           \
        rootbox_status_t s_ = (call);                                              \
        if (s_ != ROOTBOX_OK)                                                      \
            FAIL("%s: %s: %s", #call, rootbox_status_name((int)s_),               \
                 rootbox_error_message(err));                                      \
        if ((err) != NULL)                                                         \
            FAIL("%s: succeeded but set an error", #call);                         \
    } while (0)

/* A call that must fail with `want`; its error's message must contain `needle`. */
#define FAILS(call, err, want, needle)                                             \
    do {                                                                           \
        rootbox_status_t s_ = (call);                                              \
        if (s_ != (want))                                                          \
            FAIL("%s: got %s (%s), want %s", #call, rootbox_status_name((int)s_), \
                 rootbox_error_message(err), rootbox_status_name((int)(want)));    \
        if ((err) == NULL)                                                         \
            FAIL("%s: failed without an error object", #call);                     \
        if (rootbox_error_status(err) != (want))                                   \
            FAIL("%s: error object says %s", #call,                                \
                 rootbox_status_name((int)rootbox_error_status(err)));             \
        if (strstr(rootbox_error_message(err), (needle)) == NULL)                  \
            FAIL("%s: message %s does not contain %s", #call,                     \
                 rootbox_error_message(err), (needle));                            \
        rootbox_error_free(err);                                                   \
        (err) = NULL;                                                              \
    } while (0)

static inline const char *need_env(const char *name) {
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        FAIL("environment %s is not set (run through tests/c/run.sh)", name);
    return v;
}

/* A runtime over $RB_STATE / $RB_STORE with the test image imported from $RB_TARBALL. */
static inline rootbox_runtime_t *test_runtime(void) {
    rootbox_error_t *err = NULL;
    rootbox_runtime_t *rt = NULL;
    rootbox_runtime_options_t o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.state_dir = need_env("RB_STATE");
    o.store_dir = need_env("RB_STORE");
    OK(rootbox_runtime_new(&o, &rt, &err), err);
    CHECK(rt != NULL);
    OK(rootbox_image_import(rt, need_env("RB_TARBALL"), IMAGE, NULL, &err), err);
    return rt;
}

/* Options for the test image with `argv` as command and no network (fast, no helper). */
static inline rootbox_container_options_t test_options(const char *const *argv) {
    rootbox_container_options_t o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.image = IMAGE;
    o.command = argv;
    o.network = "none";
    return o;
}

static inline const char *out_text(const rootbox_output_t *out) {
    return (const char *)rootbox_output_stdout(out, NULL);
}

static inline const char *err_text(const rootbox_output_t *out) {
    return (const char *)rootbox_output_stderr(out, NULL);
}

#endif
