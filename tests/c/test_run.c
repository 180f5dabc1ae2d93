/* Run to completion: exit codes, captured stdout/stderr (binary-safe), environment, working
 * directory, --rm and the container that stays without it. */
#include "testlib.h"

#include <signal.h>

int main(void) {
    rootbox_runtime_t *rt = test_runtime();
    rootbox_error_t *err = NULL;
    rootbox_output_t *out = NULL;
    rootbox_container_t *c = NULL;
    size_t len = 0;

    const char *sh[] = {"sh", "-c", "echo hello; echo oops >&2; exit 7", NULL};
    rootbox_container_options_t o = test_options(sh);
    o.auto_remove = true;
    OK(rootbox_container_run(rt, &o, &out, &err), err);
    CHECK(rootbox_output_exit_code(out) == 7);
    CHECK(!rootbox_output_oom_killed(out));
    CHECK(strcmp((const char *)rootbox_output_stdout(out, &len), "hello\n") == 0 && len == 6);
    CHECK(strcmp((const char *)rootbox_output_stderr(out, &len), "oops\n") == 0 && len == 5);
    CHECK(strlen(rootbox_output_container_id(out)) == 64);
    /* --rm: gone afterwards. */
    FAILS(rootbox_container_get(rt, rootbox_output_container_id(out), &c, &err), err,
          ROOTBOX_ERROR_NOT_FOUND, "does not exist");
    rootbox_output_free(out);

    /* Binary output (a NUL inside), environment, working directory; the container stays. */
    const char *bin[] = {"sh", "-c", "printf '%s\\0%s' \"$GREETING\" \"$(pwd)\"", NULL};
    const char *env[] = {"GREETING=hi", NULL};
    o = test_options(bin);
    o.env = env;
    o.workdir = "/etc";
    o.name = "ctest-run-kept";
    OK(rootbox_container_run(rt, &o, &out, &err), err);
    CHECK(rootbox_output_exit_code(out) == 0);
    const unsigned char *b = rootbox_output_stdout(out, &len);
    CHECK(len == 7 && memcmp(b, "hi\0/etc", 7) == 0);
    OK(rootbox_container_get(rt, "ctest-run-kept", &c, &err), err);
    CHECK(strcmp(rootbox_container_id(c), rootbox_output_container_id(out)) == 0);
    rootbox_container_state_t st;
    OK(rootbox_container_state(c, &st, &err), err);
    CHECK(st == ROOTBOX_STATE_STOPPED);
    OK(rootbox_container_delete(c, false, &err), err);
    rootbox_container_free(c);
    rootbox_output_free(out);

    /* Killed by a signal: 128 + N (with --init, so that the shell is not the namespace's
     * PID 1, which a signal from inside cannot kill). */
    const char *killself[] = {"sh", "-c", "kill -9 $$", NULL};
    o = test_options(killself);
    o.auto_remove = true;
    o.init = true;
    OK(rootbox_container_run(rt, &o, &out, &err), err);
    CHECK(rootbox_output_exit_code(out) == 128 + SIGKILL);
    rootbox_output_free(out);

    /* A command that does not exist is an error (Docker's 127), not an exit code. */
    const char *missing[] = {"/no/such/command", NULL};
    o = test_options(missing);
    o.auto_remove = true;
    out = NULL;
    rootbox_status_t s = rootbox_container_run(rt, &o, &out, &err);
    CHECK(s == ROOTBOX_ERROR_LAUNCH);
    CHECK(rootbox_error_exit_code(err) == 127);
    CHECK(strstr(rootbox_error_message(err), "/no/such/command") != NULL);
    CHECK(out == NULL);
    rootbox_error_free(err);

    rootbox_runtime_free(rt);
    printf("test_run: ok\n");
    return 0;
}
