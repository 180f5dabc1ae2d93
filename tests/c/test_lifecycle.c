/* Images (import, get, inspect, list, tag, remove) and the lifecycle of a container made from
 * an image and from an OCI bundle: create, start, exec, commit, inspect, stats, kill, wait,
 * stop, delete. */
#define _POSIX_C_SOURCE 200809L
#include "testlib.h"

#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static rootbox_container_state_t state_of(const rootbox_container_t *c) {
    rootbox_error_t *err = NULL;
    rootbox_container_state_t s = ROOTBOX_STATE_CREATING;
    OK(rootbox_container_state(c, &s, &err), err);
    return s;
}

static void images(rootbox_runtime_t *rt) {
    rootbox_error_t *err = NULL;
    rootbox_image_t *img = NULL;
    char *json = NULL;
    OK(rootbox_image_get(rt, IMAGE, &img, &err), err);
    const char *id = rootbox_image_id(img);
    CHECK(id != NULL && strncmp(id, "sha256:", 7) == 0 && strlen(id) == 71);
    OK(rootbox_image_inspect(img, &json, &err), err);
    CHECK(strstr(json, "busybox:ctest") != NULL);
    CHECK(strstr(json, id) != NULL);
    rootbox_string_free(json);
    rootbox_image_free(img);

    OK(rootbox_image_tag(rt, IMAGE, "busybox:other", &err), err);
    OK(rootbox_image_list(rt, &json, &err), err);
    CHECK(strstr(json, "\"other\"") != NULL && strstr(json, "\"ctest\"") != NULL);
    rootbox_string_free(json);
    OK(rootbox_image_remove(rt, "busybox:other", false, &err), err);
    img = NULL;
    FAILS(rootbox_image_get(rt, "busybox:other", &img, &err), err,
          ROOTBOX_ERROR_IMAGE_NOT_FOUND, "busybox:other");
    CHECK(img == NULL);
    OK(rootbox_image_get(rt, IMAGE, &img, &err), err);
    rootbox_image_free(img);
}

static void from_image(rootbox_runtime_t *rt) {
    rootbox_error_t *err = NULL;
    rootbox_container_t *c = NULL, *again = NULL;
    rootbox_output_t *out = NULL;
    char *json = NULL;
    int code = -1;
    const char *cmd[] = {"sleep", "60", NULL};
    rootbox_container_options_t o = test_options(cmd);
    o.name = "ctest-life";

    OK(rootbox_container_create(rt, &o, &c, &err), err);
    CHECK(strcmp(rootbox_container_name(c), "ctest-life") == 0);
    CHECK(strlen(rootbox_container_id(c)) == 64);
    CHECK(state_of(c) == ROOTBOX_STATE_CREATED);
    OK(rootbox_container_start(c, &err), err);
    CHECK(state_of(c) == ROOTBOX_STATE_RUNNING);

    /* Looked up by name: the same container. */
    OK(rootbox_container_get(rt, "ctest-life", &again, &err), err);
    CHECK(strcmp(rootbox_container_id(again), rootbox_container_id(c)) == 0);
    rootbox_container_free(again);

    /* exec: output, exit code, environment, working directory. */
    const char *echo[] = {"echo", "inside", NULL};
    OK(rootbox_container_exec(c, echo, NULL, &out, &err), err);
    CHECK(rootbox_output_exit_code(out) == 0);
    CHECK(strcmp(out_text(out), "inside\n") == 0);
    CHECK(rootbox_output_container_id(out) == NULL);
    rootbox_output_free(out);
    const char *sh[] = {"sh", "-c", "echo $FOO; pwd; echo err >&2; exit 3", NULL};
    const char *env[] = {"FOO=bar", NULL};
    rootbox_exec_options_t xo;
    memset(&xo, 0, sizeof xo);
    xo.struct_size = sizeof xo;
    xo.env = env;
    xo.workdir = "/tmp";
    OK(rootbox_container_exec(c, sh, &xo, &out, &err), err);
    CHECK(rootbox_output_exit_code(out) == 3);
    CHECK(strcmp(out_text(out), "bar\n/tmp\n") == 0);
    CHECK(strcmp(err_text(out), "err\n") == 0);
    rootbox_output_free(out);
    /* The exec'd process is in the container's pid namespace: pid 1 is its sleep. */
    const char *ps[] = {"cat", "/proc/1/cmdline", NULL};
    OK(rootbox_container_exec(c, ps, NULL, &out, &err), err);
    CHECK(strncmp(out_text(out), "sleep", 5) == 0);
    rootbox_output_free(out);

    /* commit: a file written in the container is in the new image. */
    const char *write[] = {"sh", "-c", "echo committed > /hello", NULL};
    OK(rootbox_container_exec(c, write, NULL, &out, &err), err);
    CHECK(rootbox_output_exit_code(out) == 0);
    rootbox_output_free(out);
    const char *changes[] = {"ENV COMMITTED=yes", NULL};
    rootbox_commit_options_t co;
    memset(&co, 0, sizeof co);
    co.struct_size = sizeof co;
    co.reference = "ctest:committed";
    co.message = "from the C API test";
    co.changes = changes;
    rootbox_image_t *committed = NULL;
    OK(rootbox_container_commit(c, &co, &committed, &err), err);
    CHECK(strncmp(rootbox_image_id(committed), "sha256:", 7) == 0);
    rootbox_image_free(committed);
    const char *cat[] = {"sh", "-c", "cat /hello; echo $COMMITTED", NULL};
    rootbox_container_options_t ro = test_options(cat);
    ro.image = "ctest:committed";
    ro.auto_remove = true;
    OK(rootbox_container_run(rt, &ro, &out, &err), err);
    CHECK(strcmp(out_text(out), "committed\nyes\n") == 0);
    rootbox_output_free(out);
    co.changes = NULL;
    co.reference = "Bad Ref!";
    FAILS(rootbox_container_commit(c, &co, NULL, &err), err, ROOTBOX_ERROR_INVALID_ARGUMENT,
          "Bad Ref!");

    OK(rootbox_container_inspect(c, &json, &err), err);
    CHECK(strstr(json, rootbox_container_id(c)) != NULL);
    CHECK(strstr(json, "\"Status\": \"running\"") != NULL);
    CHECK(strstr(json, "ctest-life") != NULL);
    rootbox_string_free(json);

    /* stats: figures where the host delegates a cgroup v2, else an error saying why not. */
    rootbox_status_t s = rootbox_container_stats(c, &json, &err);
    if (s == ROOTBOX_OK) {
        CHECK(strstr(json, "memory_current") != NULL);
        rootbox_string_free(json);
    } else {
        CHECK(s == ROOTBOX_ERROR_CGROUP);
        CHECK(strstr(rootbox_error_message(err), "no cgroup") != NULL);
        rootbox_error_free(err);
        err = NULL;
    }

    FAILS(rootbox_container_delete(c, false, &err), err, ROOTBOX_ERROR_WRONG_STATE,
          "stop it first");
    OK(rootbox_container_kill(c, SIGKILL, &err), err);
    OK(rootbox_container_wait(c, &code, &err), err);
    CHECK(code == 128 + SIGKILL);
    CHECK(state_of(c) == ROOTBOX_STATE_STOPPED);
    FAILS(rootbox_container_kill(c, SIGTERM, &err), err, ROOTBOX_ERROR_WRONG_STATE, "running");

    /* A stopped container starts again; stop: SIGTERM is ignored by a PID 1 without a handler,
     * so SIGKILL follows after the 1 s timeout. */
    OK(rootbox_container_start(c, &err), err);
    CHECK(state_of(c) == ROOTBOX_STATE_RUNNING);
    time_t t0 = time(NULL);
    OK(rootbox_container_stop(c, 1, &err), err);
    CHECK(time(NULL) - t0 < 8);
    CHECK(state_of(c) == ROOTBOX_STATE_STOPPED);
    OK(rootbox_container_wait(c, &code, &err), err);
    CHECK(code == 128 + SIGKILL);

    OK(rootbox_container_delete(c, false, &err), err);
    rootbox_container_state_t st = ROOTBOX_STATE_RUNNING;
    FAILS(rootbox_container_state(c, &st, &err), err, ROOTBOX_ERROR_NOT_FOUND, "does not exist");
    CHECK(st == ROOTBOX_STATE_RUNNING); /* untouched on failure */
    again = NULL;
    FAILS(rootbox_container_get(rt, "ctest-life", &again, &err), err, ROOTBOX_ERROR_NOT_FOUND,
          "ctest-life");
    CHECK(again == NULL);
    rootbox_container_free(c);

    /* delete with force kills a running container. */
    o.name = NULL;
    OK(rootbox_container_create(rt, &o, &c, &err), err);
    OK(rootbox_container_start(c, &err), err);
    OK(rootbox_container_delete(c, true, &err), err);
    FAILS(rootbox_container_start(c, &err), err, ROOTBOX_ERROR_NOT_FOUND, "does not exist");
    rootbox_container_free(c);
}

/* An OCI bundle: config.json written here (rootless: the caller is root in a user namespace),
 * rootfs from $RB_ROOTFS. */
static void from_bundle(rootbox_runtime_t *rt) {
    rootbox_error_t *err = NULL;
    rootbox_container_t *c = NULL;
    int code = -1;
    char bundle[4096], link[4200], config[4096];
    snprintf(bundle, sizeof bundle, "%s/bundle", need_env("RB_WORK"));
    snprintf(link, sizeof link, "%s/rootfs", bundle);
    CHECK(mkdir(bundle, 0700) == 0 || access(bundle, F_OK) == 0);
    unlink(link);
    CHECK(symlink(need_env("RB_ROOTFS"), link) == 0);
    snprintf(config, sizeof config,
             "{\"ociVersion\": \"1.0.2\","
             " \"process\": {\"args\": [\"sh\", \"-c\", \"test -f /bin/busybox && exit 5\"],"
             "  \"cwd\": \"/\", \"user\": {\"uid\": 0, \"gid\": 0},"
             "  \"env\": [\"PATH=/bin:/usr/bin:/sbin:/usr/sbin\"]},"
             " \"root\": {\"path\": \"rootfs\"},"
             " \"mounts\": [{\"destination\": \"/proc\", \"type\": \"proc\", \"source\": \"proc\"}],"
             " \"linux\": {\"namespaces\": [{\"type\": \"user\"}, {\"type\": \"mount\"},"
             "  {\"type\": \"pid\"}, {\"type\": \"ipc\"}, {\"type\": \"uts\"}],"
             "  \"uidMappings\": [{\"containerID\": 0, \"hostID\": %u, \"size\": 1}],"
             "  \"gidMappings\": [{\"containerID\": 0, \"hostID\": %u, \"size\": 1}]}}",
             (unsigned)getuid(), (unsigned)getgid());
    OK(rootbox_container_create_oci(rt, bundle, config, "ctest-bundle", &c, &err), err);
    if (state_of(c) != ROOTBOX_STATE_CREATED) {
        char *j = NULL;
        rootbox_container_inspect(c, &j, NULL);
        FAIL("bundle container not created: %s", j ? j : "?");
    }
    OK(rootbox_container_start(c, &err), err);
    OK(rootbox_container_wait(c, &code, &err), err);
    CHECK(code == 5);
    OK(rootbox_container_delete(c, false, &err), err);
    rootbox_container_free(c);

    /* Malformed JSON, a config without a process: errors naming the problem. */
    c = NULL;
    FAILS(rootbox_container_create_oci(rt, bundle, "{\"ociVersion\": ", NULL, &c, &err), err,
          ROOTBOX_ERROR_INVALID_CONFIG, "invalid OCI config");
    FAILS(rootbox_container_create_oci(rt, bundle,
                                       "{\"ociVersion\": \"1.0.2\", \"root\": {\"path\": \"rootfs\"}}",
                                       NULL, &c, &err),
          err, ROOTBOX_ERROR_INVALID_CONFIG, "process");
    FAILS(rootbox_container_create_oci(rt, "/nonexistent-bundle", NULL, NULL, &c, &err), err,
          ROOTBOX_ERROR_INVALID_CONFIG, "/nonexistent-bundle");
    CHECK(c == NULL);
}

int main(void) {
    rootbox_runtime_t *rt = test_runtime();
    images(rt);
    from_image(rt);
    from_bundle(rt);
    rootbox_runtime_free(rt);
    printf("test_lifecycle: ok\n");
    return 0;
}
