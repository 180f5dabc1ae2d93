/* Registries through the C API, against docker-registry servers run.sh started on 127.0.0.1:
 * push the test image, pull it into a fresh store with a second runtime and run a container
 * from it; pull by the pushed digest; credentials and CA certificates given in the options (a
 * TLS registry with htpasswd auth), used for the call and never written to the user's auth
 * file, which is read when the options give none; the errors (unknown image or tag,
 * unreachable registry, bad reference, refused credentials, untrusted certificate, NULL
 * arguments) as a status and a message naming the thing, outputs untouched.
 * Environment (run.sh): RB_REGISTRY (plain HTTP), RB_TLS_REGISTRY, RB_TLS_CERTS (its CA),
 * RB_REG_USER, RB_REG_PASSWORD, RB_CLOSED_PORT; HOME and XDG_RUNTIME_DIR private to the test. */
#define _POSIX_C_SOURCE 200809L
#include "testlib.h"

#include <sys/stat.h>
#include <unistd.h>

static char *fmt(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 1;
    char *s = malloc(n);
    CHECK(s != NULL);
    snprintf(s, n, "%s%s", a, b);
    return s;
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    char *buf = calloc(1, 65536);
    CHECK(f != NULL && buf != NULL);
    CHECK(fread(buf, 1, 65535, f) < 65535);
    fclose(f);
    return buf;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    CHECK(fputs(text, f) >= 0);
    CHECK(fclose(f) == 0);
}

static char *base64(const char *in) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(in), i, o = 0;
    char *out = malloc(4 * (n / 3 + 1) + 1);
    CHECK(out != NULL);
    for (i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned char)in[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)in[i + 2];
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tbl[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

/* Runs `echo` in a container of `image` through `rt` and checks what it printed. */
static void run_echo(rootbox_runtime_t *rt, const char *image, const char *word) {
    rootbox_error_t *err = NULL;
    rootbox_output_t *out = NULL;
    const char *cmd[] = {"echo", word, NULL};
    rootbox_container_options_t o = test_options(cmd);
    o.image = image;
    o.auto_remove = true;
    OK(rootbox_container_run(rt, &o, &out, &err), err);
    if (rootbox_output_exit_code(out) != 0 || strncmp(out_text(out), word, strlen(word)) != 0
        || strcmp(out_text(out) + strlen(word), "\n") != 0)
        FAIL("run %s: exit %d, stdout %s, stderr %s", image, rootbox_output_exit_code(out),
             out_text(out), err_text(out));
    rootbox_output_free(out);
}

int main(void) {
    const char *reg = need_env("RB_REGISTRY");
    const char *tls = need_env("RB_TLS_REGISTRY");
    const char *certs = need_env("RB_TLS_CERTS");
    const char *user = need_env("RB_REG_USER");
    const char *password = need_env("RB_REG_PASSWORD");
    const char *closed = need_env("RB_CLOSED_PORT");
    const char *work = need_env("RB_WORK");
    const char *home = need_env("HOME");
    const char *xdg = need_env("XDG_RUNTIME_DIR");
    rootbox_runtime_t *rt = test_runtime();
    rootbox_runtime_t *rt2 = NULL;
    rootbox_error_t *err = NULL;
    rootbox_image_t *img = NULL, *local = NULL;
    char *digest = NULL, *digest2 = NULL, *json = NULL;

    /* Push the local test image; the digest is the manifest's. */
    char *ref = fmt(reg, "/ctest/busybox:1");
    OK(rootbox_image_push(rt, IMAGE, ref, NULL, &digest, &err), err);
    CHECK(digest != NULL && strncmp(digest, "sha256:", 7) == 0 && strlen(digest) == 71);
    /* Again: every blob is there already; same manifest. A NULL digest pointer is allowed. */
    OK(rootbox_image_push(rt, IMAGE, ref, NULL, &digest2, &err), err);
    CHECK(strcmp(digest, digest2) == 0);
    OK(rootbox_image_push(rt, IMAGE, ref, NULL, NULL, &err), err);
    rootbox_string_free(digest2);
    digest2 = NULL;

    /* A second runtime over a fresh store: the image is not there, then pulled, then runs. */
    rootbox_runtime_options_t ro;
    memset(&ro, 0, sizeof ro);
    ro.struct_size = sizeof ro;
    char *store2 = fmt(work, "/store2"), *state2 = fmt(work, "/state2");
    ro.store_dir = store2;
    ro.state_dir = state2;
    OK(rootbox_runtime_new(&ro, &rt2, &err), err);
    FAILS(rootbox_image_get(rt2, ref, &img, &err), err, ROOTBOX_ERROR_IMAGE_NOT_FOUND, ref);
    OK(rootbox_image_pull(rt2, ref, NULL, &img, &err), err);
    CHECK(img != NULL);
    OK(rootbox_image_get(rt, IMAGE, &local, &err), err);
    if (strcmp(rootbox_image_id(img), rootbox_image_id(local)) != 0)
        FAIL("pulled image %s is not the pushed %s", rootbox_image_id(img), rootbox_image_id(local));
    rootbox_image_free(img);
    img = NULL;
    OK(rootbox_image_list(rt2, &json, &err), err);
    CHECK(strstr(json, "ctest/busybox") != NULL);
    rootbox_string_free(json);
    json = NULL;
    run_echo(rt2, ref, "pulled-through-the-c-api");

    /* By digest, with options (jobs, platform of this machine by default). */
    char *at = fmt(reg, "/ctest/busybox@");
    char *by_digest = fmt(at, digest);
    rootbox_pull_options_t po;
    memset(&po, 0, sizeof po);
    po.struct_size = sizeof po;
    po.jobs = 1;
    OK(rootbox_image_pull(rt2, by_digest, &po, &img, &err), err);
    CHECK(strcmp(rootbox_image_id(img), rootbox_image_id(local)) == 0);
    rootbox_image_free(img);
    img = NULL;

    /* Errors: each a status and a message naming the thing; outputs untouched. */
    char *nosuch = fmt(reg, "/ctest/nosuch:1");
    FAILS(rootbox_image_pull(rt2, nosuch, NULL, &img, &err), err, ROOTBOX_ERROR_IMAGE_NOT_FOUND,
          "ctest/nosuch:1");
    char *notag = fmt(reg, "/ctest/busybox:nosuchtag");
    FAILS(rootbox_image_pull(rt2, notag, NULL, &img, &err), err, ROOTBOX_ERROR_IMAGE_NOT_FOUND,
          "nosuchtag");
    char *closed_reg = fmt("127.0.0.1:", closed);
    char *unreachable = fmt(closed_reg, "/ctest/busybox:1");
    FAILS(rootbox_image_pull(rt2, unreachable, NULL, &img, &err), err, ROOTBOX_ERROR_REGISTRY,
          closed_reg);
    CHECK(rootbox_image_pull(rt2, unreachable, NULL, &img, &err) == ROOTBOX_ERROR_REGISTRY);
    CHECK(strstr(rootbox_error_message(err), "cannot reach the registry") != NULL);
    rootbox_error_free(err);
    err = NULL;
    FAILS(rootbox_image_push(rt, IMAGE, unreachable, NULL, &digest2, &err), err,
          ROOTBOX_ERROR_REGISTRY, closed_reg);
    FAILS(rootbox_image_pull(rt2, "Bad Reference!", NULL, &img, &err), err,
          ROOTBOX_ERROR_INVALID_ARGUMENT, "Bad Reference!");
    FAILS(rootbox_image_push(rt, IMAGE, "Bad Reference!", NULL, &digest2, &err), err,
          ROOTBOX_ERROR_INVALID_ARGUMENT, "Bad Reference!");
    FAILS(rootbox_image_push(rt, "nosuch/image:1", ref, NULL, &digest2, &err), err,
          ROOTBOX_ERROR_IMAGE_NOT_FOUND, "nosuch/image:1");
    char *with_digest = fmt(reg, "/ctest/busybox@sha256:"
                                 "0000000000000000000000000000000000000000000000000000000000000000");
    FAILS(rootbox_image_push(rt, IMAGE, with_digest, NULL, &digest2, &err), err,
          ROOTBOX_ERROR_INVALID_CONFIG, "give a tag, not a digest");
    FAILS(rootbox_image_push(rt, rootbox_image_id(local), NULL, NULL, &digest2, &err), err,
          ROOTBOX_ERROR_INVALID_CONFIG, "give a destination");
    po.platform = "linux";
    FAILS(rootbox_image_pull(rt2, ref, &po, &img, &err), err, ROOTBOX_ERROR_INVALID_CONFIG,
          "\"linux\"");
    po.platform = NULL;

    /* NULL arguments and bad options structs. */
    FAILS(rootbox_image_pull(NULL, ref, NULL, &img, &err), err, ROOTBOX_ERROR_INVALID_ARGUMENT,
          "runtime is NULL");
    FAILS(rootbox_image_pull(rt2, NULL, NULL, &img, &err), err, ROOTBOX_ERROR_INVALID_ARGUMENT,
          "reference is NULL");
    FAILS(rootbox_image_push(NULL, IMAGE, ref, NULL, &digest2, &err), err,
          ROOTBOX_ERROR_INVALID_ARGUMENT, "runtime is NULL");
    FAILS(rootbox_image_push(rt, NULL, ref, NULL, &digest2, &err), err,
          ROOTBOX_ERROR_INVALID_ARGUMENT, "source is NULL");
    rootbox_pull_options_t zero;
    memset(&zero, 0, sizeof zero);
    FAILS(rootbox_image_pull(rt2, ref, &zero, &img, &err), err, ROOTBOX_ERROR_INVALID_ARGUMENT,
          "options.struct_size");
    po.password = password;
    FAILS(rootbox_image_pull(rt2, ref, &po, &img, &err), err, ROOTBOX_ERROR_INVALID_ARGUMENT,
          "options.username is NULL");
    po.username = "";
    FAILS(rootbox_image_pull(rt2, ref, &po, &img, &err), err, ROOTBOX_ERROR_INVALID_ARGUMENT,
          "options.username is empty");
    rootbox_push_options_t pu;
    memset(&pu, 0, sizeof pu);
    pu.struct_size = sizeof pu;
    pu.password = password;
    FAILS(rootbox_image_push(rt, IMAGE, ref, &pu, &digest2, &err), err,
          ROOTBOX_ERROR_INVALID_ARGUMENT, "options.username is NULL");
    /* The error object is optional. */
    CHECK(rootbox_image_pull(rt2, nosuch, NULL, &img, NULL) == ROOTBOX_ERROR_IMAGE_NOT_FOUND);
    CHECK(img == NULL && digest2 == NULL);

    /* A TLS registry with htpasswd auth: credentials and CA certificates from the options. */
    char *auth_xdg = fmt(xdg, "/containers/auth.json");
    char *auth_home = fmt(home, "/.config/containers/auth.json");
    char *auth_docker = fmt(home, "/.docker/config.json");
    CHECK(!exists(auth_xdg) && !exists(auth_home) && !exists(auth_docker));
    char *tref = fmt(tls, "/ctest/busybox:tls");
    memset(&pu, 0, sizeof pu);
    pu.struct_size = sizeof pu;
    pu.cert_dir = certs;
    FAILS(rootbox_image_push(rt, IMAGE, tref, &pu, &digest2, &err), err, ROOTBOX_ERROR_REGISTRY,
          "unauthorized");
    pu.username = user;
    pu.password = password;
    OK(rootbox_image_push(rt, IMAGE, tref, &pu, &digest2, &err), err);
    CHECK(strcmp(digest, digest2) == 0);
    rootbox_string_free(digest2);
    digest2 = NULL;

    memset(&po, 0, sizeof po);
    po.struct_size = sizeof po;
    po.cert_dir = certs;
    FAILS(rootbox_image_pull(rt2, tref, &po, &img, &err), err, ROOTBOX_ERROR_REGISTRY,
          "unauthorized");
    po.username = user;
    po.password = "wrong-password";
    FAILS(rootbox_image_pull(rt2, tref, &po, &img, &err), err, ROOTBOX_ERROR_REGISTRY,
          "unauthorized");
    po.password = password;
    po.cert_dir = NULL;
    FAILS(rootbox_image_pull(rt2, tref, &po, &img, &err), err, ROOTBOX_ERROR_REGISTRY,
          "TLS error");
    po.insecure = true; /* no verification: works without the CA */
    OK(rootbox_image_pull(rt2, tref, &po, &img, &err), err);
    rootbox_image_free(img);
    img = NULL;
    po.insecure = false;
    po.cert_dir = certs;
    OK(rootbox_image_pull(rt2, tref, &po, &img, &err), err);
    CHECK(strcmp(rootbox_image_id(img), rootbox_image_id(local)) == 0);
    rootbox_image_free(img);
    img = NULL;
    /* Used, never stored. */
    if (exists(auth_xdg) || exists(auth_home) || exists(auth_docker))
        FAIL("credentials given in the options were written to an auth file");

    /* Without credentials in the options, the user's auth file is read (where `rootbox login`
     * writes it), and $ROOTBOX_CERT_DIR stands for cert_dir as on the command line. */
    char *containers = fmt(xdg, "/containers");
    CHECK(mkdir(containers, 0700) == 0);
    char *up = fmt(fmt(user, ":"), password);
    char *b64 = base64(up);
    char auth_json[1024];
    snprintf(auth_json, sizeof auth_json, "{\"auths\": {\"%s\": {\"auth\": \"%s\"}}}\n", tls, b64);
    write_file(auth_xdg, auth_json);
    CHECK(setenv("ROOTBOX_CERT_DIR", certs, 1) == 0);
    OK(rootbox_image_pull(rt2, tref, NULL, &img, &err), err);
    rootbox_image_free(img);
    img = NULL;
    CHECK(unsetenv("ROOTBOX_CERT_DIR") == 0);
    FAILS(rootbox_image_pull(rt2, tref, NULL, &img, &err), err, ROOTBOX_ERROR_REGISTRY,
          "TLS error");
    /* Options' credentials win over the stored ones, and leave the file as it was. */
    memset(&po, 0, sizeof po);
    po.struct_size = sizeof po;
    po.cert_dir = certs;
    po.username = user;
    po.password = "wrong-password";
    FAILS(rootbox_image_pull(rt2, tref, &po, &img, &err), err, ROOTBOX_ERROR_REGISTRY,
          "unauthorized");
    po.username = "someone-else";
    po.password = "other-password";
    FAILS(rootbox_image_pull(rt2, tref, &po, &img, &err), err, ROOTBOX_ERROR_REGISTRY,
          "unauthorized");
    char *now = read_file(auth_xdg);
    CHECK(strcmp(now, auth_json) == 0);
    CHECK(!exists(auth_home) && !exists(auth_docker));
    /* An explicit auth file instead of the default places. */
    CHECK(unlink(auth_xdg) == 0);
    char *other = fmt(work, "/other-auth.json");
    write_file(other, auth_json);
    memset(&po, 0, sizeof po);
    po.struct_size = sizeof po;
    po.cert_dir = certs;
    FAILS(rootbox_image_pull(rt2, tref, &po, &img, &err), err, ROOTBOX_ERROR_REGISTRY,
          "unauthorized");
    po.authfile = other;
    OK(rootbox_image_pull(rt2, tref, &po, &img, &err), err);
    run_echo(rt2, tref, "pulled-with-stored-credentials");
    rootbox_image_free(img);

    rootbox_image_free(local);
    rootbox_string_free(digest);
    rootbox_runtime_free(rt2);
    rootbox_runtime_free(rt);
    printf("test_registry: ok\n");
    return 0;
}
