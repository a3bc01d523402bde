/*
 * Benchmarks of snapshot-prep and the copy overlay on the Debian root
 * filesystem image that scripts/build-guest-images.sh makes:
 *
 *  1. the standard patch set written in-process (one libext2fs open)
 *     against the same files written by e2tools, one process per file
 *     (target: at least 5x faster);
 *  2. a copy overlay of the image against `cp --sparse=always` of it
 *     (target: within 1.2x), measured both ways: as the library does it
 *     (fsync before the disk takes its name) and with fsync turned into a
 *     no-op (this program wraps fsync at link time), against cp alone and
 *     cp followed by `sync FILE`;
 *  3. create latency split by stage, as a VM's first boot sees it: copy
 *     overlay, then e2fsck, then the patch set, against a shell-style
 *     pipeline of `cp --sparse=always`, `e2fsck -fy` and one e2tools
 *     process per file (target for fsck + patch: at least 2x faster);
 *     and a restart, on a disk a guest left dirty (not cleanly unmounted,
 *     stale free counts: e2fsck repairs it), where the library's fsck +
 *     patch must never be slower than the pipeline's.
 *
 * Prints each figure and the ratios. Exits 77 (skip) with the reason when
 * the image is missing.
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "overlay.h"
#include "prep.h"

#define ROUNDS 5
#define COPY_ROUNDS 3

#ifndef BENCH_IMAGE_DIR
#define BENCH_IMAGE_DIR "/var/cache/libvmm/images"
#endif

extern char **environ;

static char work[256];

/* The standard patch set of a networked VM, built once. */
static struct prep_patch *patches;
static size_t n_patches;
static const char *net_style_name;

/* Set: fsync in the library returns at once (the "no fsync" variant). */
static bool skip_fsync;

int __real_fsync(int fd);
int __wrap_fsync(int fd);

int __wrap_fsync(int fd)
{
    return skip_fsync ? 0 : __real_fsync(fd);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs argv without a shell; returns the exit status. */
static int run(char *const argv[])
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int st, r;

    /* e2rm complains about paths that are not there; keep the report
     * readable. */
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (r != 0)
        return -1;
    if (waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int run_quiet(const char *cmd)
{
    int st = system(cmd);

    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return v[n / 2];
}

/* The same patch set through e2tools, one process per path. */
static int patch_with_e2tools(const char *image,
                              const struct prep_patch *set, size_t count)
{
    char target[4096], host[512], mode[16], uid[16], gid[16];
    int failures = 0;

    for (size_t i = 0; i < count; i++) {
        const struct prep_patch *p = &set[i];

        snprintf(target, sizeof(target), "%s:%s", image, p->path);
        snprintf(mode, sizeof(mode), "%o", (unsigned)p->mode);
        snprintf(uid, sizeof(uid), "%u", (unsigned)p->uid);
        snprintf(gid, sizeof(gid), "%u", (unsigned)p->gid);
        if (p->op == PREP_MKDIR) {
            char *argv[] = { "e2mkdir", "-P", mode, "-O", uid, "-G", gid,
                             target, NULL };

            failures += run(argv) != 0;
        } else if (p->op == PREP_WRITE_FILE) {
            char *argv[] = { "e2cp", "-P", mode, "-O", uid, "-G", gid, host,
                             target, NULL };

            /* Host copies of the contents were made before timing. */
            snprintf(host, sizeof(host), "%s/content.%zu", work, i);
            failures += run(argv) != 0;
        } else if (p->op == PREP_REMOVE) {
            char *argv[] = { "e2rm", target, NULL };

            run(argv); /* a missing path is not an error for us either */
        }
    }
    return failures;
}

static int bench_patch(const char *base)
{
    struct prep_guest_config cfg = {
        .hostname = "bench1", .guest_ip = "172.16.0.2",
        .gateway_ip = "172.16.0.1", .prefix_len = 30,
        .mac = "06:00:ac:10:00:02",
        .authorized_keys = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBench "
                           "bench@host\n",
    };
    double ours[ROUNDS], theirs[ROUNDS], a, b;
    char image[512], keys[512], known[512], cmd[4096];
    char *storage = NULL;
    size_t count = 0;

    snprintf(image, sizeof(image), "%s/patch.img", work);
    snprintf(keys, sizeof(keys), "%s/keys", work);
    snprintf(known, sizeof(known), "%s/known_hosts", work);
    snprintf(cmd, sizeof(cmd), "cp --sparse=always %s %s && "
             "e2fsck -fy %s >/dev/null 2>&1; mkdir -p %s", base, image,
             image, keys);
    if (run_quiet(cmd) > 3) {
        fprintf(stderr, "preparing %s failed\n", image);
        return 1;
    }
    if (prep_make_host_keys(NULL, "bench1", keys, "172.16.0.2", known) < 0 ||
        prep_detect_net_style(image, &cfg.net_style) < 0) {
        fprintf(stderr, "%s\n", vmm_error_last()->message);
        return 1;
    }
    cfg.host_keys_dir = keys;
    if (prep_standard_patches(&cfg, &patches, &count, &storage) < 0) {
        fprintf(stderr, "%s\n", vmm_error_last()->message);
        return 1;
    }
    for (size_t i = 0; i < count; i++) {
        FILE *f;

        if (patches[i].op != PREP_WRITE_FILE)
            continue;
        snprintf(cmd, sizeof(cmd), "%s/content.%zu", work, i);
        f = fopen(cmd, "w");
        if (f == NULL)
            return 1;
        fwrite(patches[i].data, 1, patches[i].size, f);
        fclose(f);
    }

    for (int r = 0; r < ROUNDS; r++) {
        double t0 = now_s();

        if (prep_patch(NULL, "bench1", image, patches, count) < 0) {
            fprintf(stderr, "%s\n", vmm_error_last()->message);
            return 1;
        }
        ours[r] = now_s() - t0;
        t0 = now_s();
        if (patch_with_e2tools(image, patches, count) != 0) {
            fprintf(stderr, "e2tools failed on some paths of %s\n", image);
            return 1;
        }
        theirs[r] = now_s() - t0;
    }
    a = median(ours, ROUNDS);
    b = median(theirs, ROUNDS);
    printf("standard patch set (%zu paths, %s style) on %s:\n", count,
           cfg.net_style == PREP_NET_NETWORKD ? "networkd" :
           cfg.net_style == PREP_NET_IFUPDOWN ? "ifupdown" : "no network",
           base);
    printf("  in-process prep_patch: %8.1f ms (median of %d)\n", a * 1e3,
           ROUNDS);
    printf("  e2tools, one process per path: %8.1f ms\n", b * 1e3);
    printf("  speed-up: %.1fx (target >= 5x: %s)\n", b / a,
           b / a >= 5 ? "met" : "MISSED");
    snprintf(cmd, sizeof(cmd), "e2fsck -fn %s >/dev/null 2>&1", image);
    if (run_quiet(cmd) != 0)
        printf("  warning: %s is not clean after the runs\n", image);
    /* Kept for bench_create; storage lives until the program ends. */
    n_patches = count;
    net_style_name = cfg.net_style == PREP_NET_NETWORKD ? "networkd" :
                     cfg.net_style == PREP_NET_IFUPDOWN ? "ifupdown" : "none";
    (void)storage;
    unlink(image);
    return 0;
}

/* Flushes what earlier steps left dirty, so it is not billed to the next
 * timed step. */
static void settle(void)
{
    sync();
}

static int overlay_once(const struct overlay_spec *spec, bool fsync_on,
                        double *secs)
{
    double t0;
    int r;

    settle();
    skip_fsync = !fsync_on;
    t0 = now_s();
    r = overlay_create(NULL, spec);
    *secs = now_s() - t0;
    skip_fsync = false;
    if (r < 0)
        fprintf(stderr, "%s\n", vmm_error_last()->message);
    return r;
}

static int cp_once(const char *base, const char *target, bool sync_after,
                   double *secs)
{
    char *argv[] = { "cp", "--sparse=always", (char *)base, (char *)target,
                     NULL };
    char *sync_argv[] = { "sync", (char *)target, NULL };
    double t0;

    settle();
    t0 = now_s();
    if (run(argv) != 0 || (sync_after && run(sync_argv) != 0))
        return -1;
    *secs = now_s() - t0;
    return 0;
}

static int bench_copy(const char *base)
{
    double ours[COPY_ROUNDS], nosync[COPY_ROUNDS], theirs[COPY_ROUNDS],
           synced[COPY_ROUNDS], flush[COPY_ROUNDS], a, a0, b, c, f;
    char dir[512], cp_target[512], disk[600], cmd[1024];
    struct stat st, mine;
    struct overlay_spec spec = {
        .vm_name = "bench-copy", .driver = OVERLAY_COPY, .base_image = base,
    };

    snprintf(dir, sizeof(dir), "%s/vm", work);
    snprintf(disk, sizeof(disk), "%s/disk.img", dir);
    snprintf(cp_target, sizeof(cp_target), "%s/cp.img", work);
    spec.dir = dir;
    mkdir(dir, 0700);
    /* Warm the page cache for both sides alike. */
    snprintf(cmd, sizeof(cmd), "cat %s > /dev/null", base);
    run_quiet(cmd);

    for (int r = 0; r < COPY_ROUNDS; r++) {
        double t0;

        /* As vmm_create makes it: the data is flushed at the first start. */
        spec.defer_flush = true;
        if (overlay_once(&spec, true, &ours[r]) < 0)
            return 1;
        if (r == 0 && stat(disk, &mine) < 0)
            return 1;
        t0 = now_s();
        if (overlay_flush(NULL, &spec) < 0)
            return 1;
        flush[r] = now_s() - t0;
        overlay_destroy(NULL, &spec);
        /* Flushed before it takes its name. */
        spec.defer_flush = false;
        if (overlay_once(&spec, true, &nosync[r]) < 0)
            return 1;
        overlay_destroy(NULL, &spec);
        if (cp_once(base, cp_target, false, &theirs[r]) < 0)
            return 1;
        if (r == 0 && stat(cp_target, &st) < 0)
            return 1;
        unlink(cp_target);
        if (cp_once(base, cp_target, true, &synced[r]) < 0)
            return 1;
        unlink(cp_target);
    }
    a = median(ours, COPY_ROUNDS);
    a0 = median(nosync, COPY_ROUNDS);
    f = median(flush, COPY_ROUNDS);
    b = median(theirs, COPY_ROUNDS);
    c = median(synced, COPY_ROUNDS);
    printf("copy overlay of %s (medians of %d, page cache warm, dirty "
           "data flushed before each step):\n", base, COPY_ROUNDS);
    printf("  allocated: overlay %lld MiB, cp --sparse=always %lld MiB, of "
           "%lld MiB\n", (long long)mine.st_blocks / 2048,
           (long long)st.st_blocks / 2048, (long long)mine.st_size >> 20);
    printf("  overlay_create as vmm_create runs it: %8.1f ms\n", a * 1e3);
    printf("    then its flush at the first start:  %8.1f ms\n", f * 1e3);
    printf("  overlay_create flushing at once:      %8.1f ms\n", a0 * 1e3);
    printf("  cp --sparse=always:                   %8.1f ms\n", b * 1e3);
    printf("  cp --sparse=always + sync FILE:       %8.1f ms\n", c * 1e3);
    printf("  ratio, create to cp alone:          %.2fx (target <= 1.2x: "
           "%s)\n", a / b, a / b <= 1.2 ? "met" : "MISSED");
    printf("  ratio, flushed copy to cp + sync:   %.2fx\n", a0 / c);
    rmdir(dir);
    return 0;
}

/* Copies src to dst outside any timing. */
static int clone_image(const char *src, const char *dst)
{
    char *argv[] = { "cp", "--sparse=always", (char *)src, (char *)dst,
                     NULL };

    return run(argv) == 0 ? 0 : -1;
}

static int fsck_quiet(const char *image)
{
    char *argv[] = { "e2fsck", "-fy", (char *)image, NULL };
    int st = run(argv);

    return st >= 0 && st <= 3 ? 0 : -1;
}

/*
 * A disk as a killed guest leaves it: new files written, the superblock
 * marked not clean, free counts stale. e2fsck -fy repairs it (status 1).
 */
static int make_dirty(const char *image)
{
    char cmd[2048];

    snprintf(cmd, sizeof(cmd),
             "debugfs -w -R 'write /etc/hostname /var/tmp-guest-wrote' %s "
             ">/dev/null 2>&1 && "
             "debugfs -w -f - %s >/dev/null 2>&1 <<'EOF'\n"
             "ssv state 0\nssv free_blocks_count 1000\n"
             "ssv free_inodes_count 1000\nEOF", image, image);
    return run_quiet(cmd) == 0 ? 0 : -1;
}

struct create_times {
    double copy, flush, fsck, patch;
};

/* fsync of a file, as `sync FILE` does. */
static int flush_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), r;

    if (fd < 0)
        return -1;
    r = fsync(fd);
    close(fd);
    return r;
}

static int ours_once(const char *base, const char *dir, bool copy,
                     const char *disk, struct create_times *t)
{
    struct overlay_spec spec = {
        .vm_name = "bench-create", .driver = OVERLAY_COPY,
        .base_image = base, .dir = dir,
    };
    double t0;

    settle();
    t0 = now_s();
    if (copy && overlay_create(NULL, &spec) < 0)
        goto fail;
    t->copy = now_s() - t0;
    /* On a first boot the library patches a copy of a base image it has
     * checked clean once (bench_create times that check) with no e2fsck,
     * as vmm_start does; a restart always runs e2fsck. */
    t0 = now_s();
    if (!copy && prep_fsck(NULL, "bench-create", disk, NULL) < 0)
        goto fail;
    t->fsck = now_s() - t0;
    t0 = now_s();
    if (prep_patch(NULL, "bench-create", disk, patches, n_patches) < 0)
        goto fail;
    t->patch = now_s() - t0;
    return 0;

fail:
    fprintf(stderr, "%s\n", vmm_error_last()->message);
    return -1;
}

static int theirs_once(const char *base, const char *image, bool copy,
                       struct create_times *t)
{
    char *cp_argv[] = { "cp", "--sparse=always", (char *)base, (char *)image,
                        NULL };
    double t0;

    settle();
    t0 = now_s();
    if (copy && run(cp_argv) != 0)
        return -1;
    t->copy = now_s() - t0;
    /* cp leaves its data dirty; e2fsck's own flush at the end would wait
     * for all of it. Timed apart, so the fsck stages compare alike. */
    t0 = now_s();
    if (flush_file(image) < 0)
        return -1;
    t->flush = now_s() - t0;
    t0 = now_s();
    if (fsck_quiet(image) < 0)
        return -1;
    t->fsck = now_s() - t0;
    t0 = now_s();
    if (patch_with_e2tools(image, patches, n_patches) != 0)
        return -1;
    t->patch = now_s() - t0;
    return 0;
}

static double med_of(struct create_times *t, int n, int which)
{
    double v[ROUNDS];

    for (int i = 0; i < n; i++)
        v[i] = which == 0 ? t[i].copy : which == 1 ? t[i].fsck :
               which == 2 ? t[i].patch : t[i].flush;
    return median(v, n);
}

static void print_create(const char *title, struct create_times *o,
                         struct create_times *p, int n, bool first)
{
    double oc = med_of(o, n, 0), of = med_of(o, n, 1), op = med_of(o, n, 2);
    double pc = med_of(p, n, 0), pf = med_of(p, n, 1), pp = med_of(p, n, 2);
    double pl = med_of(p, n, 3);
    double ratio = (pf + pp) / (of + op);

    printf("%s (medians of %d):\n", title, n);
    printf("  %-22s %10s %10s %14s\n", "", "library", "pipeline",
           "pipeline/lib");
    if (first) {
        printf("  %-22s %8.1f ms %7.1f ms %13.2fx\n", "copy (cp --sparse)",
               oc * 1e3, pc * 1e3, pc / oc);
        printf("  %-22s %11s %7.1f ms   (the library's copy is flushed "
               "within its copy stage)\n", "fsync of cp's copy", "-",
               pl * 1e3);
    }
    if (first)
        printf("  %-22s %11s %7.1f ms   (the copy of a base checked clean "
               "needs none)\n", "e2fsck -fy", "-", pf * 1e3);
    else
        printf("  %-22s %8.1f ms %7.1f ms %13.2fx\n", "e2fsck -fy", of * 1e3,
               pf * 1e3, pf / of);
    printf("  %-22s %8.1f ms %7.1f ms %13.2fx\n", "patch (one e2tool each)",
           op * 1e3, pp * 1e3, pp / op);
    printf("  %-22s %8.1f ms %7.1f ms %13.2fx  (target %s: %s)\n",
           "prep = fsck + patch", (of + op) * 1e3, (pf + pp) * 1e3, ratio,
           first ? ">= 2x" : ">= 1x",
           ratio >= (first ? 2.0 : 1.0) ? "met" : "MISSED");
    if (first)
        printf("  %-22s %8.1f ms %7.1f ms %13.2fx\n", "create, all stages",
               (oc + of + op) * 1e3, (pc + pl + pf + pp) * 1e3,
               (pc + pl + pf + pp) / (oc + of + op));
}

static int bench_create(const char *base)
{
    struct create_times o[ROUNDS], p[ROUNDS];
    char dir[512], disk[600], image[512], dirty[512];
    int n = 3;

    snprintf(dir, sizeof(dir), "%s/vm", work);
    snprintf(disk, sizeof(disk), "%s/disk.img", dir);
    snprintf(image, sizeof(image), "%s/pipeline.img", work);
    snprintf(dirty, sizeof(dirty), "%s/dirty.img", work);
    mkdir(dir, 0700);

    /* First boot: a fresh copy of the base, checked, then patched. */
    for (int r = 0; r < n; r++) {
        struct overlay_spec spec = {
            .vm_name = "bench-create", .driver = OVERLAY_COPY,
            .base_image = base, .dir = dir,
        };

        if (ours_once(base, dir, true, disk, &o[r]) < 0 ||
            theirs_once(base, image, true, &p[r]) < 0) {
            fprintf(stderr, "create pipeline failed\n");
            return 1;
        }
        overlay_destroy(NULL, &spec);
        unlink(image);
    }
    printf("create latency on %s, copy driver, %zu paths (%s):\n", base,
           n_patches, net_style_name);
    {
        double t0 = now_s();
        bool clean;

        if (prep_check_clean(NULL, "bench-create", base, &clean) < 0 ||
            !clean) {
            fprintf(stderr, "the base image does not check clean\n");
            return 1;
        }
        printf("  once per base image: e2fsck -fn of the base, %.1f ms "
               "(its verdict is kept; later copies need no e2fsck before "
               "their first patch)\n", (now_s() - t0) * 1e3);
    }
    print_create("first boot: copy, then (pipeline only) e2fsck, then patch",
                 o, p, n, true);

    /* Restart: the patched disk after a guest ran on it; both sides get
     * identical dirty copies. */
    if (clone_image(base, dirty) < 0 || fsck_quiet(dirty) < 0 ||
        prep_patch(NULL, "bench-create", dirty, patches, n_patches) < 0 ||
        make_dirty(dirty) < 0) {
        fprintf(stderr, "making a dirty disk failed\n");
        return 1;
    }
    for (int r = 0; r < n; r++) {
        if (clone_image(dirty, disk) < 0 || clone_image(dirty, image) < 0 ||
            ours_once(base, dir, false, disk, &o[r]) < 0 ||
            theirs_once(base, image, false, &p[r]) < 0) {
            fprintf(stderr, "restart pipeline failed\n");
            return 1;
        }
        unlink(disk);
        unlink(image);
    }
    print_create("restart: dirty disk (e2fsck repairs it), then patch", o,
                 p, n, false);
    unlink(dirty);
    rmdir(dir);
    return 0;
}

int main(void)
{
    const char *dir = getenv("LIBVMM_IMAGE_DIR");
    const char *tmp = getenv("TMPDIR");
    char base[512], cmd[600];
    int r;

    snprintf(base, sizeof(base), "%s/rootfs.ext4",
             dir && dir[0] ? dir : BENCH_IMAGE_DIR);
    if (access(base, R_OK) != 0) {
        printf("skipped: no guest image %s (%s); make it with "
               "scripts/build-guest-images.sh\n", base, strerror(errno));
        return 77;
    }
    snprintf(work, sizeof(work), "%s/libvmm-bench-XXXXXX",
             tmp && tmp[0] ? tmp : "/var/tmp");
    if (mkdtemp(work) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    r = bench_patch(base);
    if (r == 0)
        r = bench_copy(base);
    if (r == 0)
        r = bench_create(base);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", work);
    run_quiet(cmd);
    return r;
}
