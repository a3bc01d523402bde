/*
 * Benchmarks of snapshot-prep and the copy overlay on the Debian root
 * filesystem image that scripts/build-guest-images.sh makes:
 *
 *  1. the standard patch set written in-process (one libext2fs open)
 *     against the same files written by e2tools, one process per file
 *     (target: at least 5x faster);
 *  2. a copy overlay of the image against `cp --sparse=always` of it
 *     (target: within 1.2x).
 *
 * Prints each figure and the ratios. Exits 77 (skip) with the reason when
 * the image is missing.
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
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

#ifndef BENCH_IMAGE_DIR
#define BENCH_IMAGE_DIR "/var/cache/libvmm/images"
#endif

extern char **environ;

static char work[256];

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
                              const struct prep_patch *patches, size_t count)
{
    char target[4096], host[512], mode[16], uid[16], gid[16];
    int failures = 0;

    for (size_t i = 0; i < count; i++) {
        const struct prep_patch *p = &patches[i];

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
    struct prep_patch *patches = NULL;
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
    free(patches);
    free(storage);
    unlink(image);
    return 0;
}

static int bench_copy(const char *base)
{
    double ours[3], theirs[3], synced[3], a, b, c;
    char dir[512], cp_target[512], cmd[1024];
    struct stat st;
    struct overlay_spec spec = {
        .vm_name = "bench-copy", .driver = OVERLAY_COPY, .base_image = base,
    };

    snprintf(dir, sizeof(dir), "%s/vm", work);
    snprintf(cp_target, sizeof(cp_target), "%s/cp.img", work);
    spec.dir = dir;
    mkdir(dir, 0700);
    /* Warm the page cache for both sides alike. */
    snprintf(cmd, sizeof(cmd), "cat %s > /dev/null", base);
    run_quiet(cmd);

    for (int r = 0; r < 3; r++) {
        char *argv[] = { "cp", "--sparse=always", (char *)base, cp_target,
                         NULL };
        double t0 = now_s();

        if (overlay_create(NULL, &spec) < 0) {
            fprintf(stderr, "%s\n", vmm_error_last()->message);
            return 1;
        }
        ours[r] = now_s() - t0;
        t0 = now_s();
        if (run(argv) != 0)
            return 1;
        theirs[r] = now_s() - t0;
        unlink(cp_target);
        {
            char *sync_argv[] = { "sync", cp_target, NULL };

            /* The overlay is durable before it takes its name; so is
             * this baseline. */
            t0 = now_s();
            if (run(argv) != 0 || run(sync_argv) != 0)
                return 1;
            synced[r] = now_s() - t0;
        }
        if (r == 0 && stat(cp_target, &st) == 0) {
            struct stat mine;
            char disk[600];

            snprintf(disk, sizeof(disk), "%s/disk.img", dir);
            if (stat(disk, &mine) == 0)
                printf("copy overlay: allocated %lld MiB (cp --sparse: "
                       "%lld MiB) of %lld MiB\n",
                       (long long)mine.st_blocks / 2048,
                       (long long)st.st_blocks / 2048,
                       (long long)mine.st_size >> 20);
        }
        overlay_destroy(NULL, &spec);
        unlink(cp_target);
    }
    a = median(ours, 3);
    b = median(theirs, 3);
    c = median(synced, 3);
    printf("copy overlay of %s:\n", base);
    printf("  overlay_create (copy, fsync'ed): %8.1f ms (median of 3)\n",
           a * 1e3);
    printf("  cp --sparse=always:              %8.1f ms\n", b * 1e3);
    printf("  cp --sparse=always + sync FILE:  %8.1f ms\n", c * 1e3);
    printf("  ratio to cp: %.2fx (target <= 1.2x: %s)\n", a / b,
           a / b <= 1.2 ? "met" : "MISSED");
    printf("  ratio to cp + sync: %.2fx (target <= 1.2x: %s)\n", a / c,
           a / c <= 1.2 ? "met" : "MISSED");
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
    snprintf(cmd, sizeof(cmd), "rm -rf %s", work);
    run_quiet(cmd);
    return r;
}
