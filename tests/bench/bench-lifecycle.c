/*
 * Benchmark: what vmm_start, vmm_stop and vmm_kill cost, through the
 * public API, against the API emulator's fast mode (FC_EMULATOR).
 *
 * VMs are made with VMM_VM_NO_NET, so the figures are the control plane
 * alone (no tap, no netlink), on a small ext4 base made with mkfs.ext4 -d.
 * Each VM starts twice: a first boot (then vmm_kill) and a restart (then
 * vmm_stop, graceful).
 *
 * For each call: wall time, and the CPU of this process (getrusage
 * RUSAGE_SELF, user + sys). What children use is not the library's and is
 * shown apart: e2fsck (RUSAGE_CHILDREN, reaped inside the call) and the
 * emulator (its /proc/PID/schedstat when vmm_start returns). vmm_start is
 * split by wrapping internal entry points at link time (-Wl,--wrap):
 * prep_run (into e2fsck and patch), process_spawn (fork to API socket
 * answering) and record_write (the fsync'ed state record). API requests
 * per start are the lines the emulator appends to FCEMU_TRACE.
 *
 * Baseline: Firecracker's specification, 8 CPU ms from process start to
 * API socket ready. Target: the library adds under 2 CPU ms per start.
 * Prints figures and ratios; fails only when a call fails.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stdbool.h>

#include "bench-util.h"
#include "prep.h"
#include "process.h"
#include "store.h"

#define VMS 31 /* the first is a warm-up */
#define FC_CPU_BASELINE_MS 8.0
#define CPU_TARGET_MS 2.0

struct stage {
    double wall, cpu, child_cpu;
    int calls;
};

static struct {
    struct stage fsck, patch, spawn, record;
    bool in_spawn;
} st;

static struct bench_setup b;

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

static void stage_begin(double m[3])
{
    m[0] = bench_now_ms();
    m[1] = bench_cpu_ms(RUSAGE_SELF);
    m[2] = bench_cpu_ms(RUSAGE_CHILDREN);
}

static void stage_end(struct stage *s, const double m[3])
{
    s->wall += bench_now_ms() - m[0];
    s->cpu += bench_cpu_ms(RUSAGE_SELF) - m[1];
    s->child_cpu += bench_cpu_ms(RUSAGE_CHILDREN) - m[2];
    s->calls++;
}

/* prep_run is "fsck, then patch" (prep.h); the two halves timed apart. */
int __wrap_prep_run(const vmm_context *ctx, const char *vm_name,
                    const char *disk, const struct prep_patch *patches,
                    size_t count, struct prep_fsck_result *result)
{
    double m[3];
    int r;

    stage_begin(m);
    r = prep_fsck(ctx, vm_name, disk, result);
    stage_end(&st.fsck, m);
    if (r < 0)
        return r;
    stage_begin(m);
    r = prep_patch(ctx, vm_name, disk, patches, count);
    stage_end(&st.patch, m);
    return r;
}

int __wrap_process_spawn(const vmm_context *ctx,
                         const struct process_spawn_spec *spec,
                         struct vmm_process **out)
{
    double m[3];
    int r;

    stage_begin(m);
    st.in_spawn = true;
    r = __real_process_spawn(ctx, spec, out);
    st.in_spawn = false;
    stage_end(&st.spawn, m);
    return r;
}

/* Record writes outside process_spawn (its on_spawned write counts as
 * spawn time). */
int __wrap_record_write(const char *path, const struct vm_record *rec)
{
    double m[3];
    int r;

    if (st.in_spawn)
        return __real_record_write(path, rec);
    stage_begin(m);
    r = __real_record_write(path, rec);
    stage_end(&st.record, m);
    return r;
}

static void fail(const char *what, const char *vm)
{
    fprintf(stderr, "bench-lifecycle: %s %s: %s\n", what, vm,
            vmm_error_last()->message);
    bench_rm_tree(b.dir);
    exit(1);
}

/* Per-call figures of one kind of call, one row per VM. */
struct series {
    double wall[VMS], cpu[VMS], fsck_wall[VMS], fsck_child[VMS],
           fsck_cpu[VMS], patch_wall[VMS], patch_cpu[VMS], spawn_wall[VMS],
           spawn_cpu[VMS], rec_wall[VMS], rec_cpu[VMS], rec_calls[VMS],
           emu_cpu[VMS], requests[VMS];
    int n;
};

static double med(double *v, int n)
{
    double copy[VMS];

    memcpy(copy, v, sizeof(double) * (size_t)n);
    return bench_quantile(copy, n, 0.5);
}

static void start_one(vmm_vm *vm, const char *trace, struct series *s,
                      bool keep)
{
    long lines = bench_count_lines(trace);
    double m[3], emu;
    int i = s->n;

    memset(&st, 0, sizeof(st));
    stage_begin(m);
    if (vmm_start(vm, NULL) < 0)
        fail("starting", vmm_vm_name(vm));
    s->wall[i] = bench_now_ms() - m[0];
    s->cpu[i] = bench_cpu_ms(RUSAGE_SELF) - m[1];
    emu = bench_proc_cpu_ms(vmm_vm_pid(vm));
    if (!keep)
        return;
    s->fsck_wall[i] = st.fsck.wall;
    s->fsck_cpu[i] = st.fsck.cpu;
    s->fsck_child[i] = st.fsck.child_cpu;
    s->patch_wall[i] = st.patch.wall;
    s->patch_cpu[i] = st.patch.cpu;
    s->spawn_wall[i] = st.spawn.wall;
    s->spawn_cpu[i] = st.spawn.cpu;
    s->rec_wall[i] = st.record.wall;
    s->rec_cpu[i] = st.record.cpu;
    s->rec_calls[i] = st.record.calls;
    s->emu_cpu[i] = emu;
    s->requests[i] = (double)(bench_count_lines(trace) - lines);
    s->n++;
}

static void end_one(vmm_vm *vm, bool graceful, struct series *s, bool keep)
{
    double t0 = bench_now_ms(), c0 = bench_cpu_ms(RUSAGE_SELF);

    if ((graceful ? vmm_stop(vm, 0) : vmm_kill(vm)) < 0)
        fail(graceful ? "stopping" : "killing", vmm_vm_name(vm));
    if (!keep)
        return;
    s->wall[s->n] = bench_now_ms() - t0;
    s->cpu[s->n] = bench_cpu_ms(RUSAGE_SELF) - c0;
    s->n++;
}

static void print_start(const char *title, struct series *s)
{
    int n = s->n;
    double wall = med(s->wall, n), cpu = med(s->cpu, n);
    double fw = med(s->fsck_wall, n), fc = med(s->fsck_cpu, n);
    double pw = med(s->patch_wall, n), pc = med(s->patch_cpu, n);
    double sw = med(s->spawn_wall, n), sc = med(s->spawn_cpu, n);
    double rw = med(s->rec_wall, n), rc = med(s->rec_cpu, n);
    double plane = 0;
    double planes[VMS];

    for (int i = 0; i < n; i++)
        planes[i] = s->cpu[i] - s->fsck_cpu[i] - s->patch_cpu[i];
    plane = med(planes, n);
    printf("%s, %d VMs (medians per start):\n", title, n);
    printf("  wall vmm_start -> InstanceStart accepted: %7.2f ms "
           "(p90 %.2f)\n", wall, bench_quantile(s->wall, n, 0.9));
    printf("    e2fsck (fork, run, wait):    %7.2f ms wall\n", fw);
    printf("    patch (libext2fs):           %7.2f ms wall\n", pw);
    printf("    VMM spawn -> API answering:  %7.2f ms wall\n", sw);
    printf("    state records (%.0f, fsync):   %7.2f ms wall\n",
           med(s->rec_calls, n), rw);
    printf("    the rest (locks, API calls): %7.2f ms wall\n",
           wall - fw - pw - sw - rw);
    printf("  library CPU (RUSAGE_SELF):      %7.3f ms; ratio to "
           "Firecracker's %.0f ms: %.2f\n", cpu, FC_CPU_BASELINE_MS,
           cpu / FC_CPU_BASELINE_MS);
    printf("    in e2fsck's fork/wait %.3f, patch %.3f, spawn %.3f, "
           "records %.3f ms\n", fc, pc, sc, rc);
    printf("    control plane without prep:  %7.3f ms; target %.1f ms, "
           "ratio %.2f (%s)\n", plane, CPU_TARGET_MS, plane / CPU_TARGET_MS,
           plane <= CPU_TARGET_MS ? "met" : "MISSED");
    printf("    with prep (all of it):       %7.3f ms; target %.1f ms, "
           "ratio %.2f (%s)\n", cpu, CPU_TARGET_MS, cpu / CPU_TARGET_MS,
           cpu <= CPU_TARGET_MS ? "met" : "MISSED");
    printf("  children, not the library's: e2fsck %.3f CPU ms; emulator "
           "%.3f CPU ms up to InstanceStart\n", med(s->fsck_child, n),
           med(s->emu_cpu, n));
    printf("  API requests per start (FCEMU_TRACE lines): %.0f\n",
           med(s->requests, n));
}

static void print_end(const char *what, struct series *s)
{
    printf("%s, %d VMs: wall median %.2f ms (p90 %.2f); library CPU "
           "median %.3f ms\n", what, s->n, med(s->wall, s->n),
           bench_quantile(s->wall, s->n, 0.9), med(s->cpu, s->n));
}

int main(void)
{
    static struct series first, again, kills, stops;
    char trace[128], name[32];
    vmm_vm *vms[VMS];
    double create[VMS], del[VMS], t0;
    vmm_context *ctx;
    vmm_vm_spec *spec = &b.spec;

    if (bench_setup(&b, "bench-lifecycle", "bl", 32) < 0)
        return 1;
    ctx = b.ctx;
    snprintf(trace, sizeof(trace), "%s/trace", b.dir);
    setenv("FCEMU_TRACE", trace, 1);

    for (int i = 0; i < VMS; i++) {
        snprintf(name, sizeof(name), "b%02d", i);
        t0 = bench_now_ms();
        if (vmm_create(&vms[i], ctx, name, spec) < 0)
            fail("creating", name);
        create[i] = bench_now_ms() - t0;
    }
    for (int i = 0; i < VMS; i++) {
        start_one(vms[i], trace, &first, i > 0);
        end_one(vms[i], false, &kills, i > 0);
    }
    for (int i = 0; i < VMS; i++) {
        start_one(vms[i], trace, &again, i > 0);
        end_one(vms[i], true, &stops, i > 0);
    }
    for (int i = 0; i < VMS; i++) {
        t0 = bench_now_ms();
        if (vmm_delete(vms[i], 0) < 0)
            fail("deleting", vmm_vm_name(vms[i]));
        del[i] = bench_now_ms() - t0;
        vmm_vm_free(vms[i]);
    }

    printf("control plane against the emulator's fast mode, VMM_VM_NO_NET, "
           "copy overlay of a 32 MiB ext4 base\n");
    printf("vmm_create: median %.2f ms wall (copy, ssh-keygen, records)\n",
           bench_quantile(create + 1, VMS - 1, 0.5));
    print_start("first boot", &first);
    print_start("restart", &again);
    print_end("vmm_kill", &kills);
    print_end("vmm_stop (SendCtrlAltDel; the emulator exits at once)",
              &stops);
    printf("vmm_delete: median %.2f ms wall\n",
           bench_quantile(del + 1, VMS - 1, 0.5));

    bench_teardown(&b);
    return 0;
}
