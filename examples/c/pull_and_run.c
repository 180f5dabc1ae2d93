/* Pulls an image from a registry and runs a command in a container made from it.
 *
 *   cc -std=c99 pull_and_run.c $(pkg-config --cflags --libs rootbox) -o pull_and_run
 *   ./pull_and_run localhost:5000/team/app:1 echo hello
 *
 * Credentials are the ones `rootbox login` stored; set REGISTRY_USER and REGISTRY_PASSWORD to
 * use others for this pull only (they are never written anywhere). The store and state
 * directories are rootbox's defaults ($ROOTBOX_ROOT or ~/.local/share/rootbox;
 * $XDG_RUNTIME_DIR/rootbox), shared with the `rootbox` command. */
#include <rootbox.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    rootbox_runtime_t *rt = NULL;
    rootbox_image_t *image = NULL;
    rootbox_output_t *out = NULL;
    rootbox_error_t *err = NULL;
    rootbox_pull_options_t pull;
    rootbox_container_options_t opts;
    int code;

    if (argc < 2) {
        fprintf(stderr, "usage: %s REFERENCE [COMMAND [ARG...]]\n", argv[0]);
        return 2;
    }
    if (rootbox_runtime_new(NULL, &rt, &err) != ROOTBOX_OK)
        goto fail;

    memset(&pull, 0, sizeof pull);
    pull.struct_size = sizeof pull; /* options structs can grow: always set struct_size */
    pull.username = getenv("REGISTRY_USER");
    pull.password = getenv("REGISTRY_PASSWORD");
    if (rootbox_image_pull(rt, argv[1], &pull, &image, &err) != ROOTBOX_OK)
        goto fail;
    printf("pulled %s as %s\n", argv[1], rootbox_image_id(image));
    rootbox_image_free(image);

    memset(&opts, 0, sizeof opts);
    opts.struct_size = sizeof opts;
    opts.image = argv[1];
    opts.command = argc > 2 ? (const char *const *)&argv[2] : NULL; /* NULL: the image's CMD */
    opts.network = "none";
    opts.auto_remove = true;
    if (rootbox_container_run(rt, &opts, &out, &err) != ROOTBOX_OK)
        goto fail;
    fputs((const char *)rootbox_output_stdout(out, NULL), stdout);
    fputs((const char *)rootbox_output_stderr(out, NULL), stderr);
    code = rootbox_output_exit_code(out);
    rootbox_output_free(out);
    rootbox_runtime_free(rt);
    return code;

fail:
    fprintf(stderr, "pull_and_run: %s: %s\n", rootbox_status_name(rootbox_error_status(err)),
            rootbox_error_message(err));
    code = rootbox_error_exit_code(err);
    rootbox_error_free(err);
    rootbox_runtime_free(rt);
    return code;
}
