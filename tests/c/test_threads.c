/* 8 threads launch containers at the same moment through one runtime; each gets its own
 * output and exit code. */
#define _POSIX_C_SOURCE 200809L
#include "testlib.h"

#include <pthread.h>
#include <time.h>

#define THREADS 8

static rootbox_runtime_t *rt;
static pthread_barrier_t barrier;

struct job {
    int n;
    int exit_code;
    char out[64];
    char failure[512];
};

static void *launch(void *arg) {
    struct job *j = arg;
    rootbox_error_t *err = NULL;
    rootbox_output_t *out = NULL;
    char env0[32];
    snprintf(env0, sizeof env0, "N=%d", j->n);
    const char *env[] = {env0, NULL};
    const char *cmd[] = {"sh", "-c", "echo thread-$N; exit $N", NULL};
    rootbox_container_options_t o = test_options(cmd);
    o.env = env;
    o.auto_remove = true;
    pthread_barrier_wait(&barrier);
    if (rootbox_container_run(rt, &o, &out, &err) != ROOTBOX_OK) {
        snprintf(j->failure, sizeof j->failure, "%s", rootbox_error_message(err));
        rootbox_error_free(err);
        return NULL;
    }
    j->exit_code = rootbox_output_exit_code(out);
    snprintf(j->out, sizeof j->out, "%s", out_text(out));
    rootbox_output_free(out);
    return NULL;
}

int main(void) {
    pthread_t t[THREADS];
    struct job jobs[THREADS];
    struct timespec a, b;
    rt = test_runtime();
    CHECK(pthread_barrier_init(&barrier, NULL, THREADS) == 0);
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < THREADS; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].n = i + 1;
        jobs[i].exit_code = -1;
        CHECK(pthread_create(&t[i], NULL, launch, &jobs[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    for (int i = 0; i < THREADS; i++) {
        char want[32];
        snprintf(want, sizeof want, "thread-%d\n", i + 1);
        if (jobs[i].failure[0])
            FAIL("thread %d: %s", i + 1, jobs[i].failure);
        if (strcmp(jobs[i].out, want) != 0 || jobs[i].exit_code != i + 1)
            FAIL("thread %d: output %s exit %d", i + 1, jobs[i].out, jobs[i].exit_code);
    }
    pthread_barrier_destroy(&barrier);
    rootbox_runtime_free(rt);
    printf("test_threads: ok (%d containers at once in %.0f ms)\n", THREADS,
           (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6);
    return 0;
}
