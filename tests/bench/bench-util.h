/*
 * Helpers shared by the benchmarks: clocks, CPU counters, medians, a
 * scratch directory and a small ext4 base image made with mkfs.ext4 -d.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef LIBVMM_BENCH_UTIL_H
#define LIBVMM_BENCH_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libvmm/libvmm.h>

static inline double bench_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* User + system CPU of `who` (RUSAGE_SELF, RUSAGE_CHILDREN, RUSAGE_THREAD)
 * in ms. Children count only once reaped. */
static inline double bench_cpu_ms(int who)
{
    struct rusage ru;

    getrusage(who, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

/* CPU a live process has used so far, in ms, from /proc/PID/schedstat
 * (nanoseconds on CPU); -1 when it cannot be read. */
static inline double bench_proc_cpu_ms(int pid)
{
    char path[64];
    unsigned long long ns;
    FILE *f;
    int n;

    snprintf(path, sizeof(path), "/proc/%d/schedstat", pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    n = fscanf(f, "%llu", &ns);
    fclose(f);
    return n == 1 ? (double)ns / 1e6 : -1;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* The q-quantile (0.5: median) of v[0..n); sorts v. */
static inline double bench_quantile(double *v, int n, double q)
{
    int i;

    if (n <= 0)
        return 0;
    qsort(v, (size_t)n, sizeof(*v), bench_cmp_double);
    i = (int)(q * (n - 1) + 0.5);
    return v[i];
}

static inline double bench_mean(const double *v, int n)
{
    double s = 0;

    for (int i = 0; i < n; i++)
        s += v[i];
    return n > 0 ? s / n : 0;
}

static inline int bench_rm_entry(const char *path, const struct stat *st,
                                 int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static inline void bench_rm_tree(const char *dir)
{
    if (dir[0] != '\0')
        nftw(dir, bench_rm_entry, 32, FTW_DEPTH | FTW_PHYS);
}

/* Runs a shell command line; its exit status, or -1. */
static inline int bench_sh(const char *cmd)
{
    int st = system(cmd);

    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Lines in a file (0 when it is missing). */
static inline long bench_count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    long n = 0;
    int c;

    if (f == NULL)
        return 0;
    while ((c = getc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

/*
 * Makes, under dir: an empty stand-in kernel (the emulator only opens it)
 * and a small ext4 base image (mkfs.ext4 -d, `mib` MiB) laid out like a
 * Debian guest's /etc, so copying a disk does not dominate what is
 * measured. Writes their paths; 0 or -1 with a message on stderr.
 */
static inline int bench_small_guest(const char *dir, int mib, char *kernel,
                                    size_t ksize, char *image, size_t isize)
{
    char cmd[2048];
    int fd;

    snprintf(kernel, ksize, "%s/vmlinux", dir);
    snprintf(image, isize, "%s/base.ext4", dir);
    fd = open(kernel, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    /* The emulator boots nothing, but the library refuses an empty one. */
    if (fd < 0 || write(fd, "not a kernel\n", 13) != 13) {
        fprintf(stderr, "creating %s: %s\n", kernel, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    snprintf(cmd, sizeof(cmd),
             "set -e; t='%s/tree'; mkdir -p \"$t/etc/network\" "
             "\"$t/etc/ssh\" \"$t/root\" \"$t/usr/bin\" \"$t/var/log\"; "
             "echo debian > \"$t/etc/hostname\"; "
             "printf '127.0.0.1 localhost\\n' > \"$t/etc/hosts\"; "
             "printf 'auto lo\\niface lo inet loopback\\n' "
             "> \"$t/etc/network/interfaces\"; "
             "for i in $(seq 1 200); do head -c 8192 /dev/urandom "
             "> \"$t/usr/bin/tool$i\"; done; "
             "mkfs.ext4 -q -F -d \"$t\" '%s' %dM >/dev/null 2>&1; "
             "rm -rf \"$t\"", dir, image, mib);
    if (bench_sh(cmd) != 0) {
        fprintf(stderr, "making the base image %s with mkfs.ext4 -d "
                "failed\n", image);
        return -1;
    }
    return 0;
}

/* What the control-plane benchmarks run their VMs with. */
struct bench_setup {
    char dir[64], kernel[128], image[128], state[128];
    vmm_context *ctx;
    vmm_vm_spec spec;
};

/*
 * A scratch directory (/tmp/libvmm-TAG-*) with a small guest of `mib`
 * MiB, a context whose state lives there and whose firecracker is the
 * emulator ($FC_EMULATOR), and a spec for copy-overlay VMs without
 * network. 0, or -1 with a message on stderr and nothing left behind;
 * bench_teardown undoes it.
 */
static inline int bench_setup(struct bench_setup *b, const char *prog,
                              const char *tag, int mib)
{
    vmm_context_options o = VMM_CONTEXT_OPTIONS_INIT;
    const char *emulator = getenv("FC_EMULATOR");

    if (emulator == NULL) {
        fprintf(stderr, "%s: FC_EMULATOR is not set\n", prog);
        return -1;
    }
    snprintf(b->dir, sizeof(b->dir), "/tmp/libvmm-%s-XXXXXX", tag);
    if (mkdtemp(b->dir) == NULL) {
        fprintf(stderr, "%s: mkdtemp: %s\n", prog, strerror(errno));
        return -1;
    }
    snprintf(b->state, sizeof(b->state), "%s/s", b->dir);
    o.state_dir = b->state;
    o.firecracker = emulator;
    if (bench_small_guest(b->dir, mib, b->kernel, sizeof(b->kernel),
                          b->image, sizeof(b->image)) < 0 ||
        vmm_context_new(&b->ctx, &o) < 0) {
        if (vmm_error_last()->code != 0)
            fprintf(stderr, "%s: %s\n", prog, vmm_error_last()->message);
        bench_rm_tree(b->dir);
        return -1;
    }
    b->spec = (vmm_vm_spec)VMM_VM_SPEC_INIT;
    b->spec.flags = VMM_VM_NO_NET;
    b->spec.kernel = b->kernel;
    b->spec.base_image = b->image;
    b->spec.overlay = VMM_OVERLAY_COPY;
    b->spec.memory_mib = 128;
    return 0;
}

static inline void bench_teardown(struct bench_setup *b)
{
    vmm_context_free(b->ctx);
    bench_rm_tree(b->dir);
}

#endif /* LIBVMM_BENCH_UTIL_H */
