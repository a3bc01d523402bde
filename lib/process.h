/*
 * The VMM ownership object: one firecracker process, from spawn to reap.
 *
 * The process lives exactly as long as this module says. It is spawned in
 * its own session behind a small supervising child (the "keeper", forked
 * from the library, never exec'd) that waits for it and records its exit
 * status in a file, so the firecracker process is never the zombie of the
 * embedding program and outlives that program's exit, crash or kill -9.
 * Timeouts bound how long the library waits, never how long a VM lives:
 * only process_stop(), process_kill() (and so delete) end it.
 *
 * Identity is pid + start time (field 22 of /proc/PID/stat) + API socket:
 * attach refuses a pid whose start time differs or whose socket's listener
 * (SO_PEERCRED) is another process, so pid reuse never makes the library
 * signal or adopt a stranger. Signals go through a pidfd opened and then
 * verified against the start time; where pidfd_open is missing (ENOSYS:
 * Linux before 5.3, valgrind before 3.20), the start time is checked again
 * right before each kill(2) instead (see process.c for what that leaves).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef LIBVMM_PROCESS_H
#define LIBVMM_PROCESS_H

#include <sys/types.h>

#include "internal.h"

struct api_client;
struct vmm_process;

struct process_spawn_spec {
    const char *binary;       /* path, or a name looked up in PATH */
    const char *id;           /* --id: the VM name */
    const char *api_socket;   /* --api-sock */
    const char *log_path;     /* stdout/stderr (appended), created 0600 */
    const char *metrics_path; /* --metrics-path, or NULL */
    const char *exit_path;    /* the start's record, then wait statuses */
    int netns_fd;             /* joined before exec, or -1 */
    uint32_t ready_timeout_ms;/* bound on waiting for GET / to answer, > 0 */
    const char *vm_name;      /* for logs and progress */
    /* Called once firecracker is forked, before readiness is awaited, so
     * the caller can record the process a crash of its own would leave
     * behind. May be NULL. */
    void (*on_spawned)(pid_t pid, uint64_t start_time, void *user);
    void *user;
};

/*
 * Removes a stale socket (no listener), refuses a live one (VMM_EBUSY) and
 * a path too long for sun_path (VMM_EINVAL), spawns, and waits until
 * connect() succeeds and GET / answers, polling with back-off. A binary
 * that daemonizes (exits 0 before its socket appears) is still found, by
 * the socket's listener. On timeout or early exit: kills, reaps, removes
 * the socket, and fails (VMM_ETIMEDOUT / VMM_EPROCESS) with the exit
 * status and the tail of the log.
 *
 * --log-path is not passed: firecracker opens it without O_APPEND and
 * would overwrite its own captured stdout; it logs to stdout instead.
 * Errors: VMM_EINVAL (spec), VMM_EBUSY (live socket), VMM_EEXIST (the
 * socket path is another kind of file), VMM_ENOTFOUND (binary), VMM_EIO,
 * VMM_ENOMEM, VMM_ETIMEDOUT, VMM_EPROCESS. ctx (may be NULL) is borrowed
 * and must outlive *out. The environment is passed to firecracker as is.
 */
int process_spawn(const vmm_context *ctx, const struct process_spawn_spec *spec,
                  struct vmm_process **out);

/*
 * Attaches to a running VMM recorded earlier. VMM_ENOTFOUND when the
 * process is gone or the pid now belongs to another process: its start
 * time differs, another process serves the socket, or nothing serves it
 * and the process is not a libvmm keeper's child. Then nothing is
 * signalled.
 */
int process_attach(const vmm_context *ctx, const char *vm_name, pid_t pid,
                   uint64_t start_time, const char *api_socket,
                   struct vmm_process **out);

/*
 * Attaches to the process serving api_socket, identified by the socket's
 * peer credentials: for a VMM nobody recorded (its starter died before it
 * could). Only a process whose parent is a libvmm keeper is taken; any
 * other listener, like nothing listening, is VMM_ENOTFOUND.
 */
int process_attach_socket(const vmm_context *ctx, const char *vm_name,
                          const char *api_socket, struct vmm_process **out);

/*
 * Whether the start recorded in exit_path ("keeper PID SID", written
 * before anything of the start may run) still has its keeper: a live
 * process of that session, named as a keeper, holding that exit file. A
 * start in flight, or one whose program died; also a running VM's, whose
 * keeper lives as long as its VMM (callers ask when no VMM answers).
 */
bool process_start_in_flight(const char *exit_path);

/*
 * Ends such a start: SIGKILL to the keeper's children (a daemonized
 * firecracker is one) and to its process group, which holds the VMM
 * whether or not it has exec'd or bound its socket yet; waits until the
 * whole group is gone and appends "pid SID killed 9" to the record.
 * VMM_ENOTFOUND when no start is in flight (also one that ended on its
 * own meanwhile), VMM_EIO when /proc or a process handle fails us,
 * VMM_ETIMEDOUT when something outlives SIGKILL.
 */
int process_end_start(const vmm_context *ctx, const char *vm_name,
                      const char *exit_path);

pid_t process_pid(const struct vmm_process *p);
/* The client for the VMM's API socket; borrowed, valid until process_free. */
struct api_client *process_api(struct vmm_process *p);
uint64_t process_start_time(const struct vmm_process *p);
bool process_alive(struct vmm_process *p);

/*
 * Graceful stop: SendCtrlAltDel, wait up to timeout_ms for the process to
 * exit, then SIGKILL and wait until it is gone. Removes the API socket.
 */
int process_stop(struct vmm_process *p, uint32_t timeout_ms);

/* SIGKILL, and wait until the process is really gone. Removes the socket. */
int process_kill(struct vmm_process *p);

/*
 * How a VMM ended, from the last wait status in its exit file: "exited with
 * status 0 (success)", "killed by signal 9 (SIGKILL)", "exited with status
 * 152 (bad configuration)". Writes "unknown" when no record exists (the
 * VMM still runs, or its keeper was killed first).
 */
void process_describe_exit(const char *exit_path, char *buf, size_t size);

/*
 * Firecracker's meaning of an exit code (FcExitCode: 0, 1, 2, 148-157),
 * e.g. 152 "bad configuration"; NULL for other codes.
 */
const char *process_exit_code_meaning(int code);

/* The last `max_lines` lines of a log file into buf (NUL-terminated). */
void process_log_tail(const char *log_path, size_t max_lines, char *buf,
                      size_t size);

/* Releases the object; the process is never touched. */
void process_free(struct vmm_process *p);

/*
 * Tests only: with true, handles opened from now on do without pidfds, as
 * where pidfd_open fails with ENOSYS; false goes back to pidfds where the
 * system has them. Handles already open keep their kind. Not thread-safe:
 * call it before spawning or attaching.
 */
void process_test_force_no_pidfd(bool force);

#endif /* LIBVMM_PROCESS_H */
