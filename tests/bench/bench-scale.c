/*
 * Benchmark: many VMs created and started at once, against the API
 * emulator's fast mode (FC_EMULATOR).
 *
 * For N in 10, 20, 30, 40, 50: N threads of one process, each with its own
 * handle, sharing one context, create their VMs together, then start them
 * together, then kill them together. VMs have VMM_VM_NO_NET, so this is the
 * control plane alone (no tap, no netlink), and a copy overlay of a small
 * ext4 base (mkfs.ext4 -d), so copying disks does not dominate.
 *
 * Prints, for each N: wall time of each phase, failures (target 0), time
 * per VM (flat from 10 to 50 is the aim) and starts per second (target at
 * least 150, Firecracker's published per-host creation rate). For the
 * start phase it also prints where the time goes, summed over threads:
 * e2fsck, patch, VMM spawn to API answering, state records (wrapped at
 * link time as in bench-lifecycle), and CPU: this process's, e2fsck's and
 * the emulators'. Never fails on timing.
 *
 * SPDX-License-Identifier: MIT
 */
#include <pthread.h>
#include <stdbool.h>

#include "bench-util.h"
#include "prep.h"
#include "process.h"
#include "store.h"

#define MAX_VMS 50
#define TARGET_STARTS_PER_S 150.0

static const int sizes[] = { 10, 20, 30, 40, 50 };

struct stage {
    double fsck, patch, spawn, record;
};

static __thread struct stage tl;
static __thread bool in_spawn;

int __real_process_spawn(const vmm_context *ctx,
                         const struct process_spawn_spec *spec,
                         struct vmm_process **out);
int __real_record_write(const char *path, const struct vm_record *rec);
int __wrap_prep_run(const vmm_context *ctx, const char *vm_name,
                    const char *disk, const struct prep_patch *patches,
                    size_t count, struct prep_fsck_result *result);
int __wrap_process_spawn(const vmm_context *ctx,
                         const struct process_spawn_spec *spec,
                         struct vmm_process **out);
int __wrap_record_write(const char *path, const struct vm_record *rec);

/* prep_run is "fsck, then patch" (prep.h); the halves timed apart. */
int __wrap_prep_run(const vmm_context *ctx, const char *vm_name,
                    const char *disk, const struct prep_patch *patches,
                    size_t count, struct prep_fsck_result *result)
{
    double t0 = bench_now_ms();
    int r = prep_fsck(ctx, vm_name, disk, result);

    tl.fsck += bench_now_ms() - t0;
    if (r < 0)
        return r;
    t0 = bench_now_ms();
    r = prep_patch(ctx, vm_name, disk, patches, count);
    tl.patch += bench_now_ms() - t0;
    return r;
}

int __wrap_process_spawn(const vmm_context *ctx,
                         const struct process_spawn_spec *spec,
                         struct vmm_process **out)
{
    double t0 = bench_now_ms();
    int r;

    in_spawn = true;
    r = __real_process_spawn(ctx, spec, out);
    in_spawn = false;
    tl.spawn += bench_now_ms() - t0;
    return r;
}

int __wrap_record_write(const char *path, const struct vm_record *rec)
{
    double t0 = bench_now_ms();
    int r = __real_record_write(path, rec);

    if (!in_spawn)
        tl.record += bench_now_ms() - t0;
    return r;
}

enum phase { CREATE, START, KILL, DELETE, PHASES };

struct worker {
    pthread_t thread;
    vmm_context *ctx;
    const vmm_vm_spec *spec;
    pthread_barrier_t *barrier;
    char name[32];
    vmm_vm *vm;
    double took[PHASES];
    bool failed[PHASES];
    char error[256];
    struct stage start_split;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    for (int ph = 0; ph < PHASES; ph++) {
        double t0;
        int r = 0;

        pthread_barrier_wait(w->barrier);
        t0 = bench_now_ms();
        memset(&tl, 0, sizeof(tl));
        if (ph == CREATE)
            r = vmm_create(&w->vm, w->ctx, w->name, w->spec);
        else if (w->vm == NULL)
            r = -1;
        else if (ph == START)
            r = vmm_start(w->vm, NULL);
        else if (ph == KILL)
            r = vmm_kill(w->vm);
        else
            r = vmm_delete(w->vm, VMM_DELETE_FORCE);
        w->took[ph] = bench_now_ms() - t0;
        w->failed[ph] = r < 0;
        if (r < 0 && w->error[0] == '\0' && w->vm != NULL)
            snprintf(w->error, sizeof(w->error), "%s: %s", w->name,
                     vmm_error_last()->message);
        else if (r < 0 && w->error[0] == '\0')
            snprintf(w->error, sizeof(w->error), "%s: %s", w->name,
                     vmm_error_last()->message);
        if (ph == START)
            w->start_split = tl;
        /* The coordinator reads figures between phases. */
        pthread_barrier_wait(w->barrier);
    }
    vmm_vm_free(w->vm);
    return NULL;
}

static const char *const phase_names[] = { "create", "start", "kill",
                                           "delete" };

/* One round of n VMs; returns failures. */
static int round_of(vmm_context *ctx, const vmm_vm_spec *spec, int n,
                    double *start_rate, double *per_vm)
{
    static struct worker w[MAX_VMS];
    pthread_barrier_t barrier;
    double wall[PHASES], self0 = 0, child0 = 0, self_cpu = 0, child_cpu = 0;
    double emu_cpu = 0;
    struct stage sum = { 0 };
    double start_sum = 0;
    int failures = 0;

    pthread_barrier_init(&barrier, NULL, (unsigned)n + 1);
    for (int i = 0; i < n; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].ctx = ctx;
        w[i].spec = spec;
        w[i].barrier = &barrier;
        snprintf(w[i].name, sizeof(w[i].name), "n%d-%02d", n, i);
        if (pthread_create(&w[i].thread, NULL, worker_main, &w[i]) != 0) {
            fprintf(stderr, "bench-scale: pthread_create failed\n");
            exit(1);
        }
    }
    for (int ph = 0; ph < PHASES; ph++) {
        double t0;

        if (ph == START) {
            self0 = bench_cpu_ms(RUSAGE_SELF);
            child0 = bench_cpu_ms(RUSAGE_CHILDREN);
        }
        pthread_barrier_wait(&barrier); /* go */
        t0 = bench_now_ms();
        pthread_barrier_wait(&barrier); /* all done */
        wall[ph] = bench_now_ms() - t0;
        if (ph == START) {
            self_cpu = bench_cpu_ms(RUSAGE_SELF) - self0;
            child_cpu = bench_cpu_ms(RUSAGE_CHILDREN) - child0;
            for (int i = 0; i < n; i++) {
                double c = w[i].vm ? bench_proc_cpu_ms(vmm_vm_pid(w[i].vm))
                                   : -1;

                emu_cpu += c > 0 ? c : 0;
            }
        }
    }
    for (int i = 0; i < n; i++)
        pthread_join(w[i].thread, NULL);
    pthread_barrier_destroy(&barrier);

    printf("%d VMs at once:\n", n);
    for (int ph = 0; ph < PHASES; ph++) {
        double took[MAX_VMS];
        int failed = 0;

        for (int i = 0; i < n; i++) {
            took[i] = w[i].took[ph];
            failed += w[i].failed[ph];
        }
        failures += failed;
        printf("  %-6s all %7.1f ms; per VM %6.2f ms of wall; each call "
               "median %6.1f ms, max %6.1f ms; failures %d\n",
               phase_names[ph], wall[ph], wall[ph] / n,
               bench_quantile(took, n, 0.5), bench_quantile(took, n, 1.0),
               failed);
    }
    for (int i = 0; i < n; i++) {
        if (w[i].error[0] != '\0')
            printf("  first failure: %s\n", w[i].error);
        if (w[i].error[0] != '\0')
            break;
    }
    for (int i = 0; i < n; i++) {
        sum.fsck += w[i].start_split.fsck;
        sum.patch += w[i].start_split.patch;
        sum.spawn += w[i].start_split.spawn;
        sum.record += w[i].start_split.record;
        start_sum += w[i].took[START];
    }
    printf("  start phase: %.0f starts/s (target %.0f: %s); of the summed "
           "start time: e2fsck %.0f%%, patch %.0f%%, spawn -> API "
           "answering %.0f%%, state records %.0f%%, rest %.0f%%\n",
           n / (wall[START] / 1e3), TARGET_STARTS_PER_S,
           n / (wall[START] / 1e3) >= TARGET_STARTS_PER_S ? "met" : "MISSED",
           100 * sum.fsck / start_sum, 100 * sum.patch / start_sum,
           100 * sum.spawn / start_sum, 100 * sum.record / start_sum,
           100 * (start_sum - sum.fsck - sum.patch - sum.spawn - sum.record)
               / start_sum);
    printf("  start phase CPU per VM: library %.2f ms, e2fsck %.2f ms, "
           "emulator %.2f ms\n", self_cpu / n, child_cpu / n, emu_cpu / n);
    *start_rate = n / (wall[START] / 1e3);
    *per_vm = (wall[CREATE] + wall[START]) / n;
    return failures;
}

int main(void)
{
    static struct bench_setup b;
    double rate[5], per_vm[5];
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int failures = 0;

    if (bench_setup(&b, "bench-scale", "bs", 32) < 0)
        return 1;
    printf("concurrent VMs, one thread and handle each, one context; "
           "VMM_VM_NO_NET (control plane only), copy overlay of a 32 MiB "
           "ext4 base; %ld CPUs\n", cpus);
    for (int i = 0; i < 5; i++)
        failures += round_of(b.ctx, &b.spec, sizes[i], &rate[i],
                            &per_vm[i]);
    printf("summary: failures %d (target 0); create+start wall per VM "
           "%.1f ms at 10 VMs, %.1f ms at 50 (ratio %.2f; 1.00 is flat); "
           "starts/s %.0f at 10, %.0f at 50 (target %.0f)\n", failures,
           per_vm[0], per_vm[4], per_vm[4] / per_vm[0], rate[0], rate[4],
           TARGET_STARTS_PER_S);

    bench_teardown(&b);
    return failures == 0 ? 0 : 1;
}
