/* Runs a command in a container limited to 64 MiB of memory and prints what it printed.
 *
 *   cc -std=c99 memory_limit.c $(pkg-config --cflags --libs rootbox) -o memory_limit
 *   ./memory_limit busybox:demo          # the image from `make demo`, with ROOTBOX_ROOT=...
 *
 * The store and state directories are rootbox's defaults ($ROOTBOX_ROOT or
 * ~/.local/share/rootbox; $XDG_RUNTIME_DIR/rootbox), so images imported or pulled with the
 * `rootbox` command are there. On a host that delegates no cgroup v2 memory controller to the
 * user, the limit cannot be enforced: the run is refused with a message saying how to fix it. */
#include <rootbox.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    const char *image = argc > 1 ? argv[1] : "busybox:demo";
    const char *cmd[] = {"sh", "-c",
                         "echo \"hello from $(hostname), memory.max=$(cat /sys/fs/cgroup/memory.max)\"",
                         NULL};
    rootbox_runtime_t *rt = NULL;
    rootbox_output_t *out = NULL;
    rootbox_error_t *err = NULL;
    rootbox_container_options_t opts;
    int code;

    printf("libcontainer %s\n", rootbox_version());
    if (rootbox_runtime_new(NULL, &rt, &err) != ROOTBOX_OK)
        goto fail;

    memset(&opts, 0, sizeof opts);
    opts.struct_size = sizeof opts;
    opts.image = image;
    opts.command = cmd;
    opts.memory = "64m";
    opts.auto_remove = true;
    if (rootbox_container_run(rt, &opts, &out, &err) != ROOTBOX_OK)
        goto fail;

    fputs((const char *)rootbox_output_stdout(out, NULL), stdout);
    fputs((const char *)rootbox_output_stderr(out, NULL), stderr);
    code = rootbox_output_exit_code(out);
    printf("exit code %d%s\n", code, rootbox_output_oom_killed(out) ? " (OOM killed)" : "");
    rootbox_output_free(out);
    rootbox_runtime_free(rt);
    return code;

fail:
    fprintf(stderr, "memory_limit: %s: %s\n", rootbox_status_name(rootbox_error_status(err)),
            rootbox_error_message(err));
    code = rootbox_error_exit_code(err);
    rootbox_error_free(err);
    rootbox_runtime_free(rt);
    return code;
}
