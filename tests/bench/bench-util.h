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

#endif /* LIBVMM_BENCH_UTIL_H */
