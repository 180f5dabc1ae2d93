/* secprobe: a tiny static program the security tests copy into a container's rootfs.
 *
 *   secprobe syscall NAME   try one system call the default seccomp profile refuses;
 *                           prints "NAME ok" or "NAME errno=N" (N = errno)
 *   secprobe ids            prints "uid euid gid egid"
 *   secprobe open PATH MODE try open(PATH, r|w); prints "ok" or "errno=N"
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>

static int report(const char *name, long r) {
    if (r < 0) {
        printf("%s errno=%d\n", name, errno);
        return 0;
    }
    printf("%s ok\n", name);
    return 0;
}

static int try_syscall(const char *name) {
    long r;
    if (!strcmp(name, "keyctl")) {
        /* KEYCTL_GET_KEYRING_ID (0) of the session keyring (-3), create=1 */
        r = syscall(SYS_keyctl, 0, -3, 1);
    } else if (!strcmp(name, "add_key")) {
        r = syscall(SYS_add_key, "user", "rootbox-probe", "x", 1, -3 /* session */);
    } else if (!strcmp(name, "bpf")) {
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.map_type = BPF_MAP_TYPE_ARRAY;
        attr.key_size = 4;
        attr.value_size = 4;
        attr.max_entries = 1;
        r = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
    } else if (!strcmp(name, "userfaultfd")) {
        r = syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */);
    } else if (!strcmp(name, "perf_event_open")) {
        struct perf_event_attr pe;
        memset(&pe, 0, sizeof pe);
        pe.type = PERF_TYPE_SOFTWARE;
        pe.size = sizeof pe;
        pe.config = PERF_COUNT_SW_TASK_CLOCK;
        pe.exclude_kernel = 1;
        pe.exclude_hv = 1;
        r = syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0);
    } else if (!strcmp(name, "unshare_user")) {
        r = syscall(SYS_unshare, 0x10000000 /* CLONE_NEWUSER */);
    } else {
        fprintf(stderr, "secprobe: unknown system call %s\n", name);
        return 2;
    }
    return report(name, r);
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "syscall"))
        return try_syscall(argv[2]);
    if (argc == 2 && !strcmp(argv[1], "ids")) {
        printf("%d %d %d %d\n", (int)getuid(), (int)geteuid(), (int)getgid(), (int)getegid());
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "open")) {
        int fd = open(argv[2], (argv[3][0] == 'w' ? O_WRONLY : O_RDONLY) | O_CLOEXEC);
        if (fd < 0) {
            printf("errno=%d\n", errno);
            return 1;
        }
        printf("ok\n");
        return 0;
    }
    fprintf(stderr, "usage: secprobe syscall NAME | ids | open PATH r|w\n");
    return 2;
}
