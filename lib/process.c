/*
 * The VMM ownership object: spawning firecracker so that nothing but this
 * module can end it, finding it ready, and ending it on request.
 *
 * Process tree of a spawn:
 *
 *   library --fork--> A: setsid(), stdio to /dev/null, closes every fd it
 *                        does not need, then waits until the library has
 *                        written "keeper A A" to the exit file (A goes,
 *                        starting nothing, if the library dies first),
 *                        forks K and _exits (the library reaps A);
 *   K, the keeper:       a child subreaper, never exec'd; forks F, then
 *                        waits for every child it has (F, and whatever F
 *                        leaves behind when it daemonizes), appends each
 *                        wait status to the exit file and sends it down
 *                        the status pipe, and appends "end" when none is
 *                        left;
 *   F:                   stdio to the VM's log, joins the network
 *                        namespace, closes every other fd, execs
 *                        firecracker.
 *
 * K is reparented to init as soon as A exits, so the library's program is
 * nobody's parent here: it can exit, crash or be killed without taking the
 * VMM along, and no VMM ever becomes its zombie. The status pipe is
 * close-on-exec; only K holds it after F's exec, so its end of file means
 * K is gone, and K is gone only when all its children are reaped.
 *
 * The exit file's first line names the start until "end" closes it: a
 * program killed at any moment of a start leaves the next one either that
 * record, whose keeper (found by session, name and the open exit file) it
 * can end with everything, or nothing that will ever run.
 *
 * Between fork and exec (or _exit) the children call only async-signal-safe
 * functions: the embedding program may be threaded.
 *
 * Firecracker is not given --log-path: it opens that file without
 * O_APPEND, and would overwrite what its stdout and stderr put in the same
 * file. Without it, Firecracker logs to stdout, which lands in the log.
 *
 * SPDX-License-Identifier: MIT
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "process.h"

#define COMPONENT "process"
/* The keeper's name (comm), which also vouches for the VMMs it keeps. */
#define KEEPER_NAME "libvmm-keeper"
/* How often a long wait for a VMM reports progress. */
#define PROGRESS_EVERY_NS (250u * 1000000u)
#define DEFAULT_API_TIMEOUT_MS 5000

/* Readiness polling: first retry after 50 us, doubling up to 2 ms. */
#define BACKOFF_FIRST_NS 50000L
#define BACKOFF_MAX_NS 2000000L

/* How long a SIGKILLed process may take to die (D state, huge memory). */
#define DEATH_WAIT_MS 10000
/* How long the keeper may take to reap and record a dead VMM. */
#define REAP_WAIT_MS 2000

/* The line that closes a start's exit record: its keeper has nothing
 * left to keep. */
#define END_LINE "end\n"

#define LOG_TAIL_LINES 8
#define LOG_TAIL_BYTES 600

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

extern char **environ;

/* --- small system helpers -------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = { (time_t)(ns / 1000000000u),
                           (long)(ns % 1000000000u) };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/*
 * Fields of /proc/PID/stat. The command name (field 2) may hold spaces and
 * parentheses, so parsing starts after the last ')'. -1 with errno ENOENT
 * (or ESRCH) when the process does not exist.
 */
struct proc_stat {
    char state;
    pid_t ppid;
    pid_t pgrp;
    pid_t session;
    uint64_t start_time;
};

/* A small text file (a /proc entry, an exit record) into buf, terminated;
 * false when it cannot be read or is empty. */
static bool read_text(const char *path, char *buf, size_t size)
{
    ssize_t n;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    n = read(fd, buf, size - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    return true;
}

/* Whether pid's name (comm) is the keeper's. */
static bool named_keeper(pid_t pid)
{
    char path[64], comm[32];

    snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
    return read_text(path, comm, sizeof(comm)) &&
           strcmp(comm, KEEPER_NAME "\n") == 0;
}

static int read_proc_stat(pid_t pid, struct proc_stat *st)
{
    char path[64], buf[1024];
    unsigned long long start;
    char *p, *end;
    ssize_t n;
    int fd, field;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        errno = ESRCH;
        return -1;
    }
    buf[n] = '\0';

    p = strrchr(buf, ')');
    if (p == NULL || p[1] != ' ')
        goto bad;
    p += 2;
    st->state = *p;
    st->ppid = (pid_t)strtol(p + 1, &end, 10);
    st->pgrp = (pid_t)strtol(end, &end, 10);
    st->session = (pid_t)strtol(end, &end, 10);
    /* Field 3 is the state; starttime is field 22. */
    for (field = 3; field < 22 && p != NULL; field++) {
        p = strchr(p, ' ');
        if (p != NULL)
            p++;
    }
    if (p == NULL)
        goto bad;
    start = strtoull(p, &end, 10);
    if (end == p)
        goto bad;
    st->start_time = start;
    return 0;

bad:
    errno = EPROTO;
    return -1;
}

static bool stat_is_dead(const struct proc_stat *st)
{
    return st->state == 'Z' || st->state == 'X' || st->state == 'x';
}

/* --- handles on processes -------------------------------------------- */

/*
 * A handle on one process, for signalling it and waiting for its end.
 *
 * Where the kernel has pidfds (Linux 5.3 and later) the handle holds one:
 * it pins the process, so a signal can never reach a stranger that reused
 * the pid. Where pidfd_open fails with ENOSYS (older kernels; valgrind
 * before 3.20, which does not emulate it) the handle is the pid and the
 * start time read when it was opened: /proc/PID/stat is read again before
 * every kill(2), and a process whose pid is gone, dead (Z, X) or carries
 * another start time counts as ended. That leaves a race the pidfd
 * closes: between that last read and kill(2), the process may die, be
 * reaped, and its pid go to a new process, which would then get the
 * signal. The kernel hands pids out in turn, so that takes the whole pid
 * space being used up within those microseconds; the library accepts it
 * where pidfds are missing, and uses pidfds everywhere else.
 */
struct proc_handle {
    pid_t pid;           /* 0: not open */
    uint64_t start_time; /* field 22 of /proc/PID/stat when opened */
    int pidfd;           /* -1 without pidfds */
};

#define PROC_HANDLE_INIT { .pid = 0, .start_time = 0, .pidfd = -1 }

static pthread_once_t pidfd_probe_once = PTHREAD_ONCE_INIT;
static bool pidfd_missing;      /* pidfd_open said ENOSYS */
static bool pidfd_test_off;     /* process_test_force_no_pidfd */
static bool pidfd_missing_told; /* the decision was logged */

static int sys_pidfd_open(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int sys_pidfd_send_signal(int pidfd, int sig)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

static void probe_pidfd(void)
{
    int fd = sys_pidfd_open(getpid());

    if (fd >= 0)
        close(fd);
    else
        pidfd_missing = errno == ENOSYS;
}

void process_test_force_no_pidfd(bool force)
{
    pidfd_test_off = force;
}

/* Decided once per program; the first context to ask is told why. */
static bool use_pidfd(const vmm_context *ctx)
{
    pthread_once(&pidfd_probe_once, probe_pidfd);
    if (pidfd_missing &&
        !__atomic_exchange_n(&pidfd_missing_told, true, __ATOMIC_RELAXED))
        log_debug(ctx, COMPONENT, NULL, "pidfd_open is not available "
                  "(ENOSYS); VMM processes are checked by pid and start "
                  "time in /proc before each signal");
    return !pidfd_missing && !pidfd_test_off;
}

/*
 * Opens a handle on pid and reads its stat into *st. -1 with errno ESRCH
 * when the process is gone or dead; other errnos come from the system.
 */
static int proc_open(const vmm_context *ctx, pid_t pid, struct proc_handle *h,
                     struct proc_stat *st)
{
    struct pollfd pfd = { .fd = -1, .events = POLLIN };

    if (use_pidfd(ctx)) {
        pfd.fd = sys_pidfd_open(pid);
        if (pfd.fd < 0)
            return -1;
    }
    if (read_proc_stat(pid, st) < 0 || stat_is_dead(st) ||
        (pfd.fd >= 0 && poll(&pfd, 1, 0) != 0)) {
        /* With a pidfd, still running after the read means the stat was
         * the pinned process's, not that of a successor to its pid. */
        if (pfd.fd >= 0)
            close(pfd.fd);
        errno = ESRCH;
        return -1;
    }
    h->pid = pid;
    h->start_time = st->start_time;
    h->pidfd = pfd.fd;
    return 0;
}

static bool proc_is_open(const struct proc_handle *h)
{
    return h->pid > 0;
}

static void proc_close(struct proc_handle *h)
{
    if (h->pidfd >= 0)
        close(h->pidfd);
    *h = (struct proc_handle)PROC_HANDLE_INIT;
}

/*
 * Without a pidfd: 1 when the pid still holds the handle's process, alive;
 * 0 when that process has ended; -1 with errno when /proc cannot tell.
 */
static int proc_still_there(const struct proc_handle *h)
{
    struct proc_stat st;

    if (read_proc_stat(h->pid, &st) < 0)
        return errno == ENOENT || errno == ESRCH ? 0 : -1;
    return st.start_time == h->start_time && !stat_is_dead(&st);
}

/* Sends sig; -1 with errno ESRCH when the process has ended. */
static int proc_signal(const struct proc_handle *h, int sig)
{
    int r;

    if (h->pidfd >= 0)
        return sys_pidfd_send_signal(h->pidfd, sig);

    r = proc_still_there(h);
    if (r <= 0) {
        if (r == 0)
            errno = ESRCH;
        return -1;
    }
    /* The residual race described above lies between here and kill. */
    return kill(h->pid, sig);
}

/* True when the process has ended, waiting up to timeout_ms for it. */
static bool proc_ended(const struct proc_handle *h, int timeout_ms)
{
    uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000u;
    uint64_t delay = BACKOFF_FIRST_NS;
    struct pollfd pfd = { .fd = h->pidfd, .events = POLLIN };

    for (;;) {
        uint64_t now = now_ns();
        int r;

        if (h->pidfd >= 0) {
            r = poll(&pfd, 1, now >= end ? 0
                     : (int)((end - now + 999999) / 1000000));
            if (r > 0)
                return true;
            if (r == 0 || errno != EINTR)
                return false;
            continue;
        }
        if (proc_still_there(h) == 0)
            return true;
        if (now >= end)
            return false;
        sleep_ns(delay < end - now ? delay : end - now);
        delay = delay * 2 < BACKOFF_MAX_NS ? delay * 2 : BACKOFF_MAX_NS;
    }
}

struct vmm_process {
    const vmm_context *ctx; /* borrowed */
    char *vm_name;
    char *api_socket;
    struct proc_handle proc;
    struct api_client *api;
};

/* Connects to a Unix socket; -1 with errno on failure. */
static int connect_unix(const char *path)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    int fd, saved;

    strcpy(addr.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0)
        return fd;
    saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

/* Pid of the process that listens on the socket a connection reached. */
static pid_t listener_pid(int fd)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return -1;
    return cred.pid;
}

static int check_socket_path(const char *path)
{
    struct sockaddr_un addr;

    if (path == NULL || path[0] == '\0')
        return error_set(VMM_EINVAL, "no API socket path");
    if (strlen(path) >= sizeof(addr.sun_path))
        return error_set(VMM_EINVAL, "API socket path %s is %zu bytes "
                         "long; a Unix socket path holds at most %zu",
                         path, strlen(path), sizeof(addr.sun_path) - 1);
    return 0;
}

/*
 * Before a spawn: a socket nobody listens on is left by a dead VMM and is
 * removed; one with a listener belongs to a live process and is refused.
 */
static int clear_stale_socket(const vmm_context *ctx, const char *vm,
                              const char *path)
{
    struct stat st;
    int fd;

    if (lstat(path, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        return error_set_os(VMM_EIO, errno, "API socket %s", path);
    }
    if (!S_ISSOCK(st.st_mode))
        return error_set(VMM_EEXIST, "API socket path %s exists and is not "
                         "a socket", path);

    fd = connect_unix(path);
    if (fd >= 0) {
        pid_t owner = listener_pid(fd);

        close(fd);
        return error_set(VMM_EBUSY, "API socket %s is in use by a live "
                         "process (pid %d)", path, (int)owner);
    }
    if (errno != ECONNREFUSED)
        return error_set_os(VMM_EIO, errno, "probing API socket %s", path);
    if (unlink(path) < 0 && errno != ENOENT)
        return error_set_os(VMM_EIO, errno, "removing stale API socket %s",
                            path);
    log_info(ctx, COMPONENT, vm, "removed stale API socket %s (no process "
             "listened on it)", path);
    return 0;
}

/* The executable to run: a path as given, or a name searched in PATH. */
static char *find_binary(const char *binary)
{
    const char *dirs, *p, *colon;
    char *candidate;

    if (strchr(binary, '/') != NULL) {
        if (access(binary, X_OK) < 0) {
            error_set_os(errno == ENOENT ? VMM_ENOTFOUND : VMM_EIO, errno,
                         "firecracker binary %s", binary);
            return NULL;
        }
        return xstrdup(binary);
    }
    dirs = getenv("PATH");
    if (dirs == NULL)
        dirs = "/usr/local/bin:/usr/bin:/bin";
    for (p = dirs; ; p = colon + 1) {
        size_t len;

        colon = strchr(p, ':');
        len = colon ? (size_t)(colon - p) : strlen(p);
        candidate = xasprintf("%.*s/%s", (int)(len ? len : 1),
                              len ? p : ".", binary);
        if (candidate == NULL)
            return NULL;
        if (access(candidate, X_OK) == 0)
            return candidate;
        free(candidate);
        if (colon == NULL)
            break;
    }
    error_set(VMM_ENOTFOUND, "firecracker binary \"%s\" not found in PATH",
              binary);
    return NULL;
}

/* --- exit codes and records ------------------------------------------ */

const char *process_exit_code_meaning(int code)
{
    /* Firecracker's FcExitCode. */
    switch (code) {
    case 0: return "success";
    case 1: return "generic error";
    case 2: return "unexpected error";
    case 148: return "bad syscall: stopped by the seccomp filter";
    case 149: return "SIGBUS intercepted";
    case 150: return "SIGSEGV intercepted";
    case 151: return "SIGXFSZ intercepted";
    case 152: return "bad configuration";
    case 153: return "command line arguments parsing error";
    case 154: return "SIGXCPU intercepted";
    case 155: return "SIGPIPE intercepted";
    case 156: return "SIGHUP intercepted";
    case 157: return "SIGILL intercepted";
    default: return NULL;
    }
}

static void describe(bool killed, int value, char *buf, size_t size)
{
    const char *meaning;
    const char *abbrev;

    if (killed) {
        abbrev = sigabbrev_np(value);
        snprintf(buf, size, "killed by signal %d (SIG%s)", value,
                 abbrev ? abbrev : "?");
        return;
    }
    meaning = process_exit_code_meaning(value);
    if (meaning != NULL)
        snprintf(buf, size, "exited with status %d (%s)", value, meaning);
    else
        snprintf(buf, size, "exited with status %d", value);
}

void process_describe_exit(const char *exit_path, char *buf, size_t size)
{
    char text[1024], how[16];
    bool found = false, killed = false;
    int pid, value, last = 0;

    if (buf == NULL || size == 0)
        return;
    snprintf(buf, size, "unknown");
    if (exit_path == NULL || !read_text(exit_path, text, sizeof(text)))
        return;
    /* The last "pid N exited|killed V" line, below the start's record. */
    for (char *line = text; line != NULL && *line != '\0';) {
        char *next = strchr(line, '\n');

        if (sscanf(line, "pid %d %15s %d", &pid, how, &value) == 3 &&
            (strcmp(how, "killed") == 0 || strcmp(how, "exited") == 0)) {
            found = true;
            killed = strcmp(how, "killed") == 0;
            last = value;
        }
        line = next ? next + 1 : NULL;
    }
    if (found)
        describe(killed, last, buf, size);
}

void process_log_tail(const char *log_path, size_t max_lines, char *buf,
                      size_t size)
{
    char chunk[4096];
    struct stat st;
    off_t from;
    ssize_t n;
    size_t lines = 0;
    char *start;
    int fd;

    if (buf == NULL || size == 0)
        return;
    buf[0] = '\0';
    if (log_path == NULL || max_lines == 0)
        return;
    fd = open(log_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    if (fstat(fd, &st) < 0) {
        close(fd);
        return;
    }
    from = st.st_size > (off_t)sizeof(chunk) - 1
               ? st.st_size - (off_t)sizeof(chunk) + 1 : 0;
    n = pread(fd, chunk, sizeof(chunk) - 1, from);
    close(fd);
    if (n <= 0)
        return;
    while (n > 0 && (chunk[n - 1] == '\n' || chunk[n - 1] == '\r'))
        n--;
    chunk[n] = '\0';

    /* Walk back over max_lines line breaks. */
    start = chunk;
    for (ssize_t i = n - 1; i >= 0; i--) {
        if (chunk[i] == '\n' && ++lines == max_lines) {
            start = chunk + i + 1;
            break;
        }
    }
    /* Keep the end of the text when buf is smaller: the last words count. */
    if (strlen(start) >= size)
        start += strlen(start) - (size - 1);
    snprintf(buf, size, "%s", start);
}

/* --- the children ---------------------------------------------------- */

/* What the keeper and the VMM child tell the library, 12 bytes each. */
enum record_kind {
    REC_KEEPER = 1,  /* pid: the keeper */
    REC_VMM,         /* pid: the firecracker child */
    REC_FORK_ERROR,  /* value: errno of a failed fork */
    REC_SETNS_ERROR, /* value: errno of joining the network namespace */
    REC_EXEC_ERROR,  /* value: errno of execve */
    REC_EXITED,      /* pid exited with status value */
    REC_KILLED,      /* pid was killed by signal value */
};

struct record {
    int32_t kind;
    int32_t pid;
    int32_t value;
};

/* Everything the children need, prepared before fork. */
struct launch {
    char *path;
    char *argv[10];
    int log_fd;
    int exit_fd;
    int pipe_w;
    int netns_fd;
    int go[2]; /* the spawner's end, the session leader's end */
};

static void send_record(int fd, int kind, pid_t pid, int value)
{
    struct record rec = { kind, (int32_t)pid, value };
    ssize_t r;

    /* Under PIPE_BUF, so the write is atomic; EPIPE just means nobody
     * listens any more. */
    do {
        r = write(fd, &rec, sizeof(rec));
    } while (r < 0 && errno == EINTR);
}

/* Decimal digits of v at p, returning the end; async-signal-safe. */
static char *put_decimal(char *p, long v)
{
    char digits[24];
    int n = 0;

    if (v < 0) {
        *p++ = '-';
        v = -v;
    }
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    while (n > 0)
        *p++ = digits[--n];
    return p;
}

static char *put_text(char *p, const char *s)
{
    while (*s != '\0')
        *p++ = *s++;
    return p;
}

/* Appends line (len bytes) to the exit file; async-signal-safe. */
static void append_exit_file(int fd, const char *line, size_t len)
{
    struct stat st;

    if (fstat(fd, &st) == 0 && pwrite(fd, line, len, st.st_size) > 0)
        fdatasync(fd);
}

/*
 * Appends "pid N exited|killed V\n" to the exit file, below the start's
 * record, which stays: a daemonizing firecracker's parent ends long before
 * the start does. The last such line says how the VMM ended; "end", which
 * the keeper appends when nothing is left to keep, closes the record.
 */
static void write_exit_file(int fd, pid_t pid, bool killed, int value)
{
    char line[64];
    char *p = line;

    p = put_text(p, "pid ");
    p = put_decimal(p, pid);
    p = put_text(p, killed ? " killed " : " exited ");
    p = put_decimal(p, value);
    *p++ = '\n';
    append_exit_file(fd, line, (size_t)(p - line));
}

/*
 * Marks the exit file as a start in flight, "keeper PID SID", its first
 * line: a program that dies while its VMM comes up leaves the next one a
 * way to find and end both, for as long as their keeper lives. The
 * spawning program writes it, naming the session leader A, before A may
 * go on; the keeper A forks is then found as the keeper of A's session
 * (find_keeper).
 */
static bool write_keeper_record(int fd, pid_t pid, pid_t sid)
{
    char line[64];
    char *p = line;

    p = put_text(p, "keeper ");
    p = put_decimal(p, pid);
    p = put_text(p, " ");
    p = put_decimal(p, sid);
    *p++ = '\n';
    return ftruncate(fd, 0) == 0 &&
           pwrite(fd, line, (size_t)(p - line), 0) == p - line;
}

static void reset_signals(void)
{
    struct sigaction dfl = { .sa_handler = SIG_DFL };
    sigset_t none;

    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &dfl, NULL); /* fails harmlessly for KILL, STOP */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Closes every fd from 3 up except those in keep (sorted here). */
static void close_all_except(int *keep, int n)
{
    unsigned int lo = 3;
    struct rlimit rl;

    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
            int t = keep[j];

            keep[j] = keep[j - 1];
            keep[j - 1] = t;
        }
    for (int i = 0; i < n; i++) {
        if (keep[i] < (int)lo)
            continue;
        if ((unsigned int)keep[i] > lo &&
            syscall(SYS_close_range, lo, (unsigned int)keep[i] - 1, 0) < 0)
            for (unsigned int fd = lo; fd < (unsigned int)keep[i]; fd++)
                close((int)fd);
        lo = (unsigned int)keep[i] + 1;
    }
    if (syscall(SYS_close_range, lo, ~0U, 0) < 0 &&
        getrlimit(RLIMIT_NOFILE, &rl) == 0)
        for (rlim_t fd = lo; fd < rl.rlim_cur && fd < (1u << 20); fd++)
            close((int)fd);
}

static _Noreturn void run_vmm(const struct launch *l)
{
    if (l->netns_fd >= 0 && setns(l->netns_fd, CLONE_NEWNET) < 0) {
        send_record(l->pipe_w, REC_SETNS_ERROR, getpid(), errno);
        _exit(127);
    }
    if (dup2(l->log_fd, STDOUT_FILENO) < 0 ||
        dup2(l->log_fd, STDERR_FILENO) < 0) {
        send_record(l->pipe_w, REC_EXEC_ERROR, getpid(), errno);
        _exit(127);
    }
    /* The keeper ignores SIGPIPE; firecracker starts with defaults. */
    signal(SIGPIPE, SIG_DFL);
    /* Everything but stdio closes at exec, the status pipe included. */
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
            for (rlim_t fd = 3; fd < rl.rlim_cur && fd < (1u << 20); fd++)
                fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    }
    execve(l->path, l->argv, environ);
    send_record(l->pipe_w, REC_EXEC_ERROR, getpid(), errno);
    _exit(127);
}

static _Noreturn void run_keeper(const struct launch *l)
{
    struct sigaction ign = { .sa_handler = SIG_IGN };
    siginfo_t si;
    pid_t vmm;

    /* Named for what it is (A's name passes on, but a keeper made
     * otherwise would not have it): ps would otherwise show the embedding
     * program's command line for as long as the VM runs. The exit file
     * keeps naming A's session, whose keeper this is: rewriting it would
     * leave a moment in which it names nothing. */
    prctl(PR_SET_NAME, KEEPER_NAME);
    /* Orphans of a daemonizing firecracker come to us, not to init. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    sigaction(SIGPIPE, &ign, NULL);
    send_record(l->pipe_w, REC_KEEPER, getpid(), 0);

    vmm = fork();
    if (vmm < 0) {
        send_record(l->pipe_w, REC_FORK_ERROR, getpid(), errno);
        _exit(1);
    }
    if (vmm == 0)
        run_vmm(l);
    send_record(l->pipe_w, REC_VMM, vmm, 0);
    close(l->log_fd);
    if (l->netns_fd >= 0)
        close(l->netns_fd);

    for (;;) {
        bool killed;

        /* Record before reaping: once the pid is gone, the record is there. */
        memset(&si, 0, sizeof(si));
        if (waitid(P_ALL, 0, &si, WEXITED | WNOWAIT) < 0) {
            if (errno == EINTR)
                continue;
            break; /* ECHILD: nothing left to keep */
        }
        killed = si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED;
        write_exit_file(l->exit_fd, si.si_pid, killed, si.si_status);
        send_record(l->pipe_w, killed ? REC_KILLED : REC_EXITED, si.si_pid,
                    si.si_status);
        while (waitpid(si.si_pid, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    append_exit_file(l->exit_fd, END_LINE, strlen(END_LINE));
    _exit(0);
}

/* One byte from fd, through interruptions; false at end of file. */
static bool read_byte(int fd)
{
    char c;
    ssize_t n;

    do {
        n = read(fd, &c, 1);
    } while (n < 0 && errno == EINTR);
    return n == 1;
}

/*
 * Child A: a new session, clean stdio and fds, then the keeper. Nothing
 * starts until the spawner has recorded A's session as a start in flight:
 * a spawner killed before that leaves A reading end of file, and A goes
 * without a trace.
 */
static _Noreturn void run_session_leader(struct launch *l)
{
    int *fds[] = { &l->log_fd, &l->exit_fd, &l->pipe_w, &l->netns_fd,
                   &l->go[1] };
    int keep[ARRAY_SIZE(fds)];
    int n = 0, nul;
    pid_t keeper;

    setsid();
    prctl(PR_SET_NAME, KEEPER_NAME);
    reset_signals();

    /* Move what we keep above stdio, then point stdio at /dev/null so
     * neither K nor F holds the embedding program's terminal or pipes. */
    for (size_t i = 0; i < ARRAY_SIZE(fds); i++) {
        if (*fds[i] >= 0 && *fds[i] <= STDERR_FILENO)
            *fds[i] = fcntl(*fds[i], F_DUPFD_CLOEXEC, 3);
        if (*fds[i] >= 0)
            keep[n++] = *fds[i];
    }
    nul = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nul >= 0) {
        dup2(nul, STDIN_FILENO);
        dup2(nul, STDOUT_FILENO);
        dup2(nul, STDERR_FILENO);
    }
    /* Every other descriptor is closed first: a leader of a concurrent
     * spawn must not hold this spawner's end, or neither would ever see
     * its spawner's death. */
    close_all_except(keep, n);
    if (send(l->go[1], "r", 1, MSG_NOSIGNAL) != 1 || !read_byte(l->go[1]))
        _exit(0);
    close(l->go[1]);

    keeper = fork();
    if (keeper < 0) {
        send_record(l->pipe_w, REC_FORK_ERROR, getpid(), errno);
        _exit(1);
    }
    if (keeper > 0)
        _exit(0);
    run_keeper(l);
}

/* --- readiness ------------------------------------------------------- */

/* What the library has learnt about a spawn so far. */
struct spawn_state {
    const vmm_context *ctx;
    const struct process_spawn_spec *spec;
    int pipe_r; /* -1 after end of file: the keeper is gone */
    pid_t keeper;
    pid_t vmm;  /* firecracker as forked */
    struct proc_handle vmm_proc;
    int child_error_kind; /* REC_*_ERROR, or 0 */
    int child_error;
    bool vmm_ended;
    bool last_killed; /* the most recent exit record */
    int last_value;
    pid_t last_pid;
    bool have_last;
};

/*
 * Opens a handle on the firecracker the keeper forked and tells the caller
 * its identity. Only a child of the keeper will do: without pidfds, a pid
 * that ended and was reused before we looked is not taken for the VMM.
 */
static void open_vmm(struct spawn_state *s, pid_t pid)
{
    struct proc_stat st;

    if (proc_is_open(&s->vmm_proc) ||
        proc_open(s->ctx, pid, &s->vmm_proc, &st) < 0)
        return;
    if (st.ppid != s->keeper) {
        proc_close(&s->vmm_proc);
        return;
    }
    if (s->spec->on_spawned != NULL)
        s->spec->on_spawned(pid, st.start_time, s->spec->user);
}

static void read_records(struct spawn_state *s)
{
    struct record rec;
    ssize_t n;

    while (s->pipe_r >= 0) {
        n = read(s->pipe_r, &rec, sizeof(rec));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return; /* EAGAIN: nothing more for now */
        if (n == 0) {
            close(s->pipe_r);
            s->pipe_r = -1;
            return;
        }
        if (n != (ssize_t)sizeof(rec))
            continue; /* cannot happen: records are written whole */
        switch (rec.kind) {
        case REC_KEEPER:
            s->keeper = rec.pid;
            break;
        case REC_VMM:
            s->vmm = rec.pid;
            open_vmm(s, rec.pid);
            break;
        case REC_FORK_ERROR:
        case REC_SETNS_ERROR:
        case REC_EXEC_ERROR:
            s->child_error_kind = rec.kind;
            s->child_error = rec.value;
            break;
        case REC_EXITED:
        case REC_KILLED:
            s->have_last = true;
            s->last_pid = rec.pid;
            s->last_killed = rec.kind == REC_KILLED;
            s->last_value = rec.value;
            if (rec.pid == s->vmm)
                s->vmm_ended = true;
            break;
        }
    }
}

/* Is pid the firecracker we spawned, or a process it left to the keeper? */
static bool is_ours(const struct spawn_state *s, pid_t pid)
{
    struct proc_stat st;

    if (pid <= 0)
        return false;
    if (pid == s->vmm && !s->vmm_ended)
        return true;
    return s->keeper > 0 && read_proc_stat(pid, &st) == 0 &&
           st.ppid == s->keeper && !stat_is_dead(&st);
}

/* Waits until the keeper has exited (so everything it kept is reaped). */
static void wait_keeper_gone(struct spawn_state *s, int timeout_ms)
{
    uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000u;

    while (s->pipe_r >= 0) {
        struct pollfd pfd = { .fd = s->pipe_r, .events = POLLIN };
        uint64_t now = now_ns();

        if (now >= end)
            return;
        if (poll(&pfd, 1, (int)((end - now) / 1000000u) + 1) < 0 &&
            errno != EINTR)
            return;
        read_records(s);
    }
}

/* SIGKILLs every process the keeper keeps, each through a handle. */
/*
 * Sends sig to every child of parent: what a daemonizing firecracker left
 * behind comes to the keeper, a subreaper. Each is checked again through
 * its handle, as pids can be reused.
 */
static void kill_children(const vmm_context *ctx, pid_t parent, int sig)
{
    struct dirent *de;
    DIR *dir;

    dir = opendir("/proc");
    if (dir == NULL)
        return;
    while ((de = readdir(dir)) != NULL) {
        struct proc_handle h = PROC_HANDLE_INIT;
        struct proc_stat st;
        pid_t pid = (pid_t)strtol(de->d_name, NULL, 10);

        if (pid <= 0 || read_proc_stat(pid, &st) < 0 || st.ppid != parent)
            continue;
        if (proc_open(ctx, pid, &h, &st) == 0 && st.ppid == parent)
            proc_signal(&h, sig);
        proc_close(&h);
    }
    closedir(dir);
}

static void kill_kept(struct spawn_state *s)
{
    if (proc_is_open(&s->vmm_proc) && !s->vmm_ended)
        proc_signal(&s->vmm_proc, SIGKILL);
    if (s->keeper > 0 && s->pipe_r >= 0)
        kill_children(s->ctx, s->keeper, SIGKILL);
}

/*
 * The spawn failed: end what was started, wait until it is gone, remove
 * the socket, and record `code` with how the VMM ended and its log.
 */
static int abort_spawn(struct spawn_state *s, int code, const char *why)
{
    const struct process_spawn_spec *spec = s->spec;
    char how[96], tail[LOG_TAIL_BYTES];

    read_records(s);
    kill_kept(s);
    wait_keeper_gone(s, DEATH_WAIT_MS);
    if (s->pipe_r >= 0) {
        /* Something will not die; say so rather than wait forever. */
        kill_kept(s);
        wait_keeper_gone(s, REAP_WAIT_MS);
    }
    unlink(spec->api_socket);

    if (s->have_last)
        describe(s->last_killed, s->last_value, how, sizeof(how));
    else
        snprintf(how, sizeof(how), "%s", s->pipe_r >= 0 ? "did not exit"
                 : "ended in an unknown way");
    process_log_tail(spec->log_path, LOG_TAIL_LINES, tail, sizeof(tail));
    return error_set(code, "%s: firecracker (pid %d) %s; process %s; log "
                     "%s%s%s",
                     spec->vm_name ? spec->vm_name : spec->id, (int)s->vmm,
                     why, how, spec->log_path, tail[0] ? ":\n" : " is empty",
                     tail);
}

static int child_error(struct spawn_state *s, char *binary)
{
    char why[PATH_MAX + 96];
    const char *what;

    switch (s->child_error_kind) {
    case REC_FORK_ERROR: what = "could not fork"; break;
    case REC_SETNS_ERROR: what = "could not join the network namespace"; break;
    default: what = "could not execute";
    }
    snprintf(why, sizeof(why), "%s %s: %s", what, binary,
             strerror(s->child_error));
    return abort_spawn(s, VMM_EPROCESS, why);
}

/*
 * Waits for the API socket's listener to be our firecracker. The socket's
 * appearance wakes us through inotify; between polls we back off from
 * 50 us to 2 ms, so a socket that answers is seen within that bound even
 * where inotify is unavailable.
 */
static int wait_listener(struct spawn_state *s, uint64_t deadline,
                         const char *binary, pid_t *listener)
{
    const char *sock = s->spec->api_socket;
    const char *vm = s->spec->vm_name ? s->spec->vm_name : s->spec->id;
    uint64_t delay = BACKOFF_FIRST_NS;
    uint64_t next_progress = now_ns() + PROGRESS_EVERY_NS;
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char *slash;
    int ino, wd;
    int r = 0;

    snprintf(dir, sizeof(dir), "%s", sock);
    slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    ino = inotify_take();
    wd = ino >= 0 ? inotify_add_watch(ino, dir, IN_CREATE | IN_MOVED_TO) : -1;

    for (;;) {
        struct pollfd pfd[2] = {
            { .fd = s->pipe_r, .events = POLLIN },
            { .fd = ino, .events = POLLIN },
        };
        struct timespec ts;
        uint64_t now;
        int fd;

        read_records(s);
        if (s->child_error_kind != 0) {
            r = child_error(s, (char *)binary);
            break;
        }
        fd = connect_unix(sock);
        if (fd >= 0) {
            pid_t pid = listener_pid(fd);

            close(fd);
            if (is_ours(s, pid)) {
                *listener = pid;
                break;
            }
        } else if (errno != ENOENT && errno != ECONNREFUSED) {
            r = abort_spawn(s, VMM_EIO, "API socket cannot be reached");
            break;
        }
        /* An exit 0 may be a daemonizing parent: the keeper then keeps
         * its child, and we wait on. Any other exit is final. */
        if (s->vmm_ended && (s->pipe_r < 0 || s->last_killed ||
                             s->last_value != 0 || s->last_pid != s->vmm)) {
            r = abort_spawn(s, VMM_EPROCESS, "ended before its API socket "
                            "answered");
            break;
        }
        if (s->pipe_r < 0) {
            r = abort_spawn(s, VMM_EPROCESS, "and its keeper ended before "
                            "the API socket answered");
            break;
        }

        now = now_ns();
        /* The wait in ms against its bound, a few times a second: the
         * first look is free, a fast VMM reports nothing. */
        if (now >= next_progress) {
            uint64_t total = s->spec->ready_timeout_ms;

            progress_emit(s->ctx, vm, "wait", total - (deadline - now) /
                          1000000u, total);
            next_progress = now + PROGRESS_EVERY_NS;
        }
        if (now >= deadline) {
            char why[96];

            snprintf(why, sizeof(why), "did not answer on %s within %u ms",
                     sock, s->spec->ready_timeout_ms);
            r = abort_spawn(s, VMM_ETIMEDOUT, why);
            break;
        }
        if (delay > deadline - now)
            delay = deadline - now;
        ts.tv_sec = (time_t)(delay / 1000000000u);
        ts.tv_nsec = (long)(delay % 1000000000u);
        if (ppoll(pfd, wd >= 0 ? 2 : 1, &ts, NULL) > 0 &&
            (pfd[1].revents & POLLIN)) {
            char events[4096];

            while (read(ino, events, sizeof(events)) > 0) {
            }
            delay = BACKOFF_FIRST_NS; /* something appeared: look now */
        } else {
            delay = delay * 2 < BACKOFF_MAX_NS ? delay * 2 : BACKOFF_MAX_NS;
        }
    }
    inotify_give_back(ino, wd);
    return r;
}

static int process_new(const vmm_context *ctx, const char *vm_name,
                       const char *api_socket, struct vmm_process **out)
{
    struct vmm_process *p = calloc(1, sizeof(*p));
    int r;

    if (p == NULL)
        return error_set(VMM_ENOMEM, "allocating a process object");
    p->ctx = ctx;
    p->proc = (struct proc_handle)PROC_HANDLE_INIT;
    p->vm_name = xstrdup(vm_name ? vm_name : "");
    p->api_socket = xstrdup(api_socket);
    if (p->vm_name == NULL || p->api_socket == NULL) {
        process_free(p);
        return VMM_ENOMEM;
    }
    r = api_client_new(&p->api, api_socket, ctx && ctx->api_timeout_ms
                       ? ctx->api_timeout_ms : DEFAULT_API_TIMEOUT_MS);
    if (r < 0) {
        process_free(p);
        return r;
    }
    *out = p;
    return 0;
}

static uint32_t api_timeout(const struct vmm_process *p)
{
    return p->ctx && p->ctx->api_timeout_ms ? p->ctx->api_timeout_ms
                                            : DEFAULT_API_TIMEOUT_MS;
}

static int check_spec(const struct process_spawn_spec *spec)
{
    if (spec == NULL)
        return error_set(VMM_EINVAL, "process_spawn: spec is NULL");
    if (spec->binary == NULL || spec->binary[0] == '\0')
        return error_set(VMM_EINVAL, "process_spawn: no firecracker binary");
    if (spec->id == NULL || spec->id[0] == '\0')
        return error_set(VMM_EINVAL, "process_spawn: no VM id");
    if (spec->log_path == NULL || spec->exit_path == NULL)
        return error_set(VMM_EINVAL, "process_spawn %s: log_path and "
                         "exit_path are required", spec->id);
    if (spec->ready_timeout_ms == 0)
        return error_set(VMM_EINVAL, "process_spawn %s: ready_timeout_ms "
                         "is 0", spec->id);
    return check_socket_path(spec->api_socket);
}

int process_spawn(const vmm_context *ctx, const struct process_spawn_spec *spec,
                  struct vmm_process **out)
{
    struct spawn_state s = { .pipe_r = -1, .vmm_proc = PROC_HANDLE_INIT };
    struct launch l = { .log_fd = -1, .exit_fd = -1, .pipe_w = -1,
                        .go = { -1, -1 } };
    struct vmm_process *p = NULL;
    uint64_t deadline = now_ns() + 0;
    const char *vm;
    int pipefd[2] = { -1, -1 };
    pid_t a, listener = -1;
    int argc = 0, status, r;

    if (out == NULL)
        return error_set(VMM_EINVAL, "process_spawn: out is NULL");
    r = check_spec(spec);
    if (r < 0)
        return r;
    deadline += (uint64_t)spec->ready_timeout_ms * 1000000u;
    vm = spec->vm_name ? spec->vm_name : spec->id;
    s.ctx = ctx;
    s.spec = spec;

    r = clear_stale_socket(ctx, vm, spec->api_socket);
    if (r < 0)
        return r;
    l.path = find_binary(spec->binary);
    if (l.path == NULL)
        return error_code();
    /* Made now so that nothing but the request stands between the socket
     * answering and GET /. */
    r = process_new(ctx, vm, spec->api_socket, &p);
    if (r < 0)
        goto out;
    l.argv[argc++] = l.path;
    l.argv[argc++] = (char *)"--api-sock";
    l.argv[argc++] = (char *)spec->api_socket;
    l.argv[argc++] = (char *)"--id";
    l.argv[argc++] = (char *)spec->id;
    if (spec->metrics_path != NULL) {
        l.argv[argc++] = (char *)"--metrics-path";
        l.argv[argc++] = (char *)spec->metrics_path;
    }
    l.argv[argc] = NULL;
    l.netns_fd = spec->netns_fd;

    l.log_fd = open(spec->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC |
                    O_NOCTTY, 0600);
    if (l.log_fd < 0) {
        r = error_set_os(VMM_EIO, errno, "opening VMM log %s", spec->log_path);
        goto out;
    }
    l.exit_fd = open(spec->exit_path, O_WRONLY | O_CREAT | O_TRUNC |
                     O_CLOEXEC | O_NOCTTY, 0600);
    if (l.exit_fd < 0) {
        r = error_set_os(VMM_EIO, errno, "opening VMM exit record %s",
                         spec->exit_path);
        goto out;
    }
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        r = error_set_os(VMM_EIO, errno, "creating a status pipe for %s", vm);
        goto out;
    }
    l.pipe_w = pipefd[1];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, l.go) < 0) {
        r = error_set_os(VMM_EIO, errno, "creating a start pipe for %s", vm);
        goto out;
    }

    a = fork();
    if (a < 0) {
        r = error_set_os(VMM_EIO, errno, "forking firecracker for %s", vm);
        goto out;
    }
    if (a == 0)
        run_session_leader(&l);

    /* A, in its own session, waits until that session is on record. */
    close(l.go[1]);
    l.go[1] = -1;
    if (!read_byte(l.go[0])) {
        while (waitpid(a, &status, 0) < 0 && errno == EINTR) {
        }
        r = error_set(VMM_EPROCESS, "the session leader of the VMM of %s "
                      "ended before the start was recorded", vm);
        goto out;
    }
    if (!write_keeper_record(l.exit_fd, a, a)) {
        /* Unrecorded, nothing may run: A sees end of file and goes. */
        r = error_set_os(VMM_EIO, errno ? errno : EIO, "recording the start "
                         "of %s in %s", vm, spec->exit_path);
        close(l.go[0]);
        l.go[0] = -1;
        while (waitpid(a, &status, 0) < 0 && errno == EINTR) {
        }
        goto out;
    }
    /* Should A be gone, it started nothing, and a record whose session no
     * live keeper holds names no start; the wait below reports the end. */
    send(l.go[0], "g", 1, MSG_NOSIGNAL);
    close(l.go[0]);
    l.go[0] = -1;

    close(pipefd[1]);
    pipefd[1] = -1;
    s.pipe_r = pipefd[0];
    pipefd[0] = -1;
    fcntl(s.pipe_r, F_SETFL, O_NONBLOCK);
    /* A lives for one fork; reaping it now leaves no zombie of ours. An
     * embedding program ignoring SIGCHLD makes this ECHILD, harmlessly. */
    while (waitpid(a, &status, 0) < 0 && errno == EINTR) {
    }

    r = wait_listener(&s, deadline, l.path, &listener);
    if (r < 0)
        goto out;

    {
        struct proc_stat st;

        /* Checked again once the handle holds the process. */
        if (proc_open(ctx, listener, &p->proc, &st) < 0 ||
            !is_ours(&s, listener)) {
            r = abort_spawn(&s, VMM_EPROCESS, "ended while it was "
                            "identified");
            goto out;
        }
    }

    {
        struct api_instance_info info;
        uint64_t now = now_ns();
        uint32_t left = now >= deadline ? 1
                        : (uint32_t)((deadline - now + 999999) / 1000000u);

        api_client_set_timeout(p->api, left < api_timeout(p) ? left
                               : api_timeout(p));
        r = api_get_instance_info(p->api, &info);
        api_client_set_timeout(p->api, api_timeout(p));
        if (r < 0) {
            char why[768];

            snprintf(why, sizeof(why), "accepted connections but GET / "
                     "failed (%s)", vmm_error_last()->message);
            r = abort_spawn(&s, r == VMM_ETIMEDOUT ? VMM_ETIMEDOUT
                            : VMM_EPROCESS, why);
            goto out;
        }
    }
    *out = p;
    p = NULL;
    r = 0;

out:
    process_free(p);
    proc_close(&s.vmm_proc);
    if (s.pipe_r >= 0)
        close(s.pipe_r);
    for (int i = 0; i < 2; i++) {
        if (pipefd[i] >= 0)
            close(pipefd[i]);
        if (l.go[i] >= 0)
            close(l.go[i]);
    }
    if (l.log_fd >= 0)
        close(l.log_fd);
    if (l.exit_fd >= 0)
        close(l.exit_fd);
    free(l.path);
    return r;
}

/* --- attach, signals, the end ---------------------------------------- */

/* Whether pid's parent is a libvmm keeper (see run_keeper). */
static bool kept_by_keeper(pid_t pid)
{
    struct proc_stat st;

    return read_proc_stat(pid, &st) == 0 && st.ppid > 1 &&
           named_keeper(st.ppid);
}

int process_attach(const vmm_context *ctx, const char *vm_name, pid_t pid,
                   uint64_t start_time, const char *api_socket,
                   struct vmm_process **out)
{
    const char *vm = vm_name ? vm_name : "VM";
    struct proc_handle h = PROC_HANDLE_INIT;
    struct vmm_process *p = NULL;
    struct proc_stat st;
    int fd, r;

    if (out == NULL)
        return error_set(VMM_EINVAL, "process_attach: out is NULL");
    if (pid <= 0)
        return error_set(VMM_EINVAL, "%s: pid %d is not a process id", vm,
                         (int)pid);
    r = check_socket_path(api_socket);
    if (r < 0)
        return r;

    if (proc_open(ctx, pid, &h, &st) < 0) {
        if (errno == ESRCH || errno == ENOENT)
            return error_set(VMM_ENOTFOUND, "%s: VMM pid %d has exited", vm,
                             (int)pid);
        return error_set_os(VMM_EIO, errno, "%s: opening a handle on pid %d",
                            vm, (int)pid);
    }
    /* Peer credentials read while the handle's process still runs (checked
     * last) describe that same process. */
    if (st.start_time != start_time) {
        r = error_set(VMM_ENOTFOUND, "%s: pid %d now belongs to another "
                      "process (started at tick %llu, the VMM at %llu)", vm,
                      (int)pid, (unsigned long long)st.start_time,
                      (unsigned long long)start_time);
        goto fail;
    }

    fd = connect_unix(api_socket);
    if (fd >= 0) {
        pid_t owner = listener_pid(fd);

        close(fd);
        if (owner != pid) {
            r = error_set(VMM_ENOTFOUND, "%s: API socket %s is served by "
                          "pid %d, not by VMM pid %d", vm, api_socket,
                          (int)owner, (int)pid);
            goto fail;
        }
    } else if (!kept_by_keeper(pid)) {
        /* Without its socket, only a keeper's child can be our VMM: a
         * record naming any other process must not get it signalled. */
        r = error_set(VMM_ENOTFOUND, "%s: pid %d serves no API socket at %s "
                      "and is not kept by libvmm", vm, (int)pid, api_socket);
        goto fail;
    } else {
        log_warning(ctx, COMPONENT, vm_name, "API socket %s of VMM pid %d "
                    "does not answer (%s)", api_socket, (int)pid,
                    strerror(errno));
    }
    if (proc_ended(&h, 0)) {
        r = error_set(VMM_ENOTFOUND, "%s: VMM pid %d has exited", vm,
                      (int)pid);
        goto fail;
    }

    r = process_new(ctx, vm_name, api_socket, &p);
    if (r < 0)
        goto fail;
    p->proc = h;
    *out = p;
    return 0;

fail:
    proc_close(&h);
    return r;
}

int process_attach_socket(const vmm_context *ctx, const char *vm_name,
                          const char *api_socket, struct vmm_process **out)
{
    const char *vm = vm_name ? vm_name : "VM";
    struct proc_stat st;
    pid_t pid;
    int fd, r;

    if (out == NULL)
        return error_set(VMM_EINVAL, "process_attach_socket: out is NULL");
    r = check_socket_path(api_socket);
    if (r < 0)
        return r;
    fd = connect_unix(api_socket);
    if (fd < 0)
        return error_set_os(VMM_ENOTFOUND, errno, "%s: nothing serves %s",
                            vm, api_socket);
    pid = listener_pid(fd);
    close(fd);
    if (pid <= 0 || read_proc_stat(pid, &st) < 0 || stat_is_dead(&st))
        return error_set(VMM_ENOTFOUND, "%s: the process serving %s is gone",
                         vm, api_socket);
    /* Anyone may listen on a path; no record vouches for this one, so its
     * keeper must. */
    if (!kept_by_keeper(pid))
        return error_set(VMM_ENOTFOUND, "%s: pid %d serves %s but is not "
                         "kept by libvmm", vm, (int)pid, api_socket);
    /* process_attach checks pid, start time and listener again. */
    return process_attach(ctx, vm_name, pid, st.start_time, api_socket, out);
}

/* An exit record of a start in flight, "keeper PID SID", and the
 * identity of the exit file that holds it. */
struct start_record {
    pid_t pid, sid;
    dev_t dev;
    ino_t ino;
};

/* The record of a start whose keeper has not closed it ("end"). */
static bool read_start_record(const char *exit_path, struct start_record *sr)
{
    char text[1024];
    struct stat st;
    int p, s;

    if (stat(exit_path, &st) < 0 || !read_text(exit_path, text, sizeof(text)) ||
        sscanf(text, "keeper %d %d", &p, &s) != 2 || p <= 1 || s <= 1 ||
        strstr(text, "\n" END_LINE) != NULL)
        return false;
    *sr = (struct start_record){ .pid = p, .sid = s, .dev = st.st_dev,
                                 .ino = st.st_ino };
    return true;
}

/* Whether pid has the file dev:ino open. */
static bool holds_file(pid_t pid, dev_t dev, ino_t ino)
{
    char path[64];
    struct dirent *de;
    bool held = false;
    DIR *dir;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    dir = opendir(path);
    if (dir == NULL)
        return false;
    while (!held && (de = readdir(dir)) != NULL) {
        struct stat st;

        held = de->d_name[0] != '.' &&
               fstatat(dirfd(dir), de->d_name, &st, 0) == 0 &&
               st.st_dev == dev && st.st_ino == ino;
    }
    closedir(dir);
    return held;
}

/*
 * Whether pid is, alive, the session leader or the keeper of the recorded
 * start: named as a keeper, in the recorded session, and holding the exit
 * file it was made for. A record outlives what it names (a host restart,
 * a start ended here); a keeper of another VM that came to have the same
 * session id holds another exit file.
 */
static bool is_keeper(pid_t pid, const struct start_record *sr)
{
    struct proc_stat st;

    return read_proc_stat(pid, &st) == 0 && !stat_is_dead(&st) &&
           st.session == sr->sid && sr->sid != getsid(0) &&
           named_keeper(pid) && holds_file(pid, sr->dev, sr->ino);
}

/*
 * Finds the keeper of the recorded start: the session leader while it
 * lives, then the keeper it forked. 1 with *keeper, 0 when none lives, or
 * an error when /proc cannot be read.
 */
static int find_keeper(const struct start_record *sr, pid_t *keeper)
{
    struct dirent *de;
    DIR *dir;

    *keeper = 0;
    if (is_keeper(sr->pid, sr)) {
        *keeper = sr->pid;
        return 1;
    }
    if (sr->sid == getsid(0))
        return 0;
    dir = opendir("/proc");
    if (dir == NULL)
        return error_set_os(VMM_EIO, errno, "reading /proc");
    while (*keeper == 0 && (de = readdir(dir)) != NULL) {
        pid_t q = (pid_t)strtol(de->d_name, NULL, 10);

        if (q > 0 && is_keeper(q, sr))
            *keeper = q;
    }
    closedir(dir);
    return *keeper != 0;
}

bool process_start_in_flight(const char *exit_path)
{
    struct start_record sr;
    pid_t keeper;

    return read_start_record(exit_path, &sr) &&
           find_keeper(&sr, &keeper) > 0;
}

/* Whether any process of group pgrp is still alive (zombies are not). */
static bool group_alive(pid_t pgrp)
{
    DIR *dir = opendir("/proc");
    struct dirent *de;
    bool alive = false;

    if (dir == NULL)
        return kill(-pgrp, 0) == 0;
    while (!alive && (de = readdir(dir)) != NULL) {
        struct proc_stat st;
        pid_t pid = (pid_t)strtol(de->d_name, NULL, 10);

        alive = pid > 0 && read_proc_stat(pid, &st) == 0 &&
                st.pgrp == pgrp && !stat_is_dead(&st);
    }
    closedir(dir);
    return alive;
}

/* Waits, with back-off, up to timeout_ms for group pgrp to be gone. */
static bool group_gone(pid_t pgrp, int timeout_ms)
{
    uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000u;
    uint64_t delay = BACKOFF_FIRST_NS;

    while (kill(-pgrp, 0) == 0 && group_alive(pgrp)) {
        if (now_ns() >= end)
            return false;
        sleep_ns(delay);
        delay = delay * 2 < BACKOFF_MAX_NS ? delay * 2 : BACKOFF_MAX_NS;
    }
    return true;
}

/*
 * Closes the record of an ended start: "pid SID killed 9", unless its
 * keeper recorded the VMM's own end before it was killed, then "end".
 */
static void record_start_ended(const char *exit_path, pid_t sid)
{
    char text[1024];
    bool ended;
    int fd;

    ended = read_text(exit_path, text, sizeof(text)) &&
            strstr(text, "\npid ") != NULL;
    fd = open(exit_path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return;
    if (!ended)
        dprintf(fd, "pid %d killed %d\n", (int)sid, SIGKILL);
    dprintf(fd, "%s", END_LINE);
    close(fd);
}

int process_end_start(const vmm_context *ctx, const char *vm_name,
                      const char *exit_path)
{
    const char *vm = vm_name ? vm_name : "VM";
    struct proc_handle h = PROC_HANDLE_INIT;
    struct start_record sr;
    struct proc_stat st;
    pid_t keeper = 0;
    int r = 0;

    if (!read_start_record(exit_path, &sr))
        return error_set(VMM_ENOTFOUND, "%s: no start in flight", vm);
    /* Held open and checked again: the session leader may just have
     * handed over to the keeper, which is then the one to hold. */
    for (int tries = 0; !proc_is_open(&h) && tries < 3; tries++) {
        r = find_keeper(&sr, &keeper);
        if (r <= 0)
            break;
        if (proc_open(ctx, keeper, &h, &st) < 0 && errno != ESRCH) {
            r = error_set_os(VMM_EIO, errno, "holding keeper pid %d",
                             (int)keeper);
            break;
        }
        if (proc_is_open(&h) && !is_keeper(keeper, &sr))
            proc_close(&h);
    }
    if (!proc_is_open(&h)) {
        if (r < 0 && r != VMM_ENOTFOUND) {
            error_prefix("%s: ending a start in flight: ", vm);
            return r;
        }
        return error_set(VMM_ENOTFOUND, "%s: no start in flight", vm);
    }

    /*
     * The session is one process group (setsid made it) with the keeper
     * and the VMM, exec'd or not: one signal ends them. A firecracker
     * that daemonized left it, but is the keeper's child (a subreaper's).
     */
    kill_children(ctx, keeper, SIGKILL);
    if (kill(-sr.sid, SIGKILL) < 0 && errno != ESRCH) {
        r = error_set_os(VMM_EIO, errno, "%s: killing the keeper's group %d",
                         vm, (int)sr.sid);
        proc_close(&h);
        return r;
    }
    proc_ended(&h, DEATH_WAIT_MS);
    proc_close(&h);
    /* The VMM may outlast its keeper by a moment; ended means ended. */
    if (!group_gone(sr.sid, DEATH_WAIT_MS))
        return error_set(VMM_ETIMEDOUT, "%s: processes of the keeper's group "
                         "%d still run %d ms after SIGKILL", vm, (int)sr.sid,
                         DEATH_WAIT_MS);
    record_start_ended(exit_path, sr.sid);
    log_info(ctx, COMPONENT, vm_name, "ended the keeper (pid %d) and VMM of "
             "a start left by a program that died", (int)keeper);
    return 0;
}

pid_t process_pid(const struct vmm_process *p)
{
    return p ? p->proc.pid : -1;
}

uint64_t process_start_time(const struct vmm_process *p)
{
    return p ? p->proc.start_time : 0;
}

struct api_client *process_api(struct vmm_process *p)
{
    return p ? p->api : NULL;
}

bool process_alive(struct vmm_process *p)
{
    return p != NULL && proc_is_open(&p->proc) && !proc_ended(&p->proc, 0);
}

/*
 * After death, waits (bounded) until the keeper or init has reaped the
 * pid, so its exit record is written, then removes the API socket.
 */
static void finish_death(struct vmm_process *p)
{
    uint64_t end = now_ns() + (uint64_t)REAP_WAIT_MS * 1000000u;
    uint64_t delay = BACKOFF_FIRST_NS;
    struct proc_stat st;

    while (read_proc_stat(p->proc.pid, &st) == 0 &&
           st.start_time == p->proc.start_time && now_ns() < end) {
        sleep_ns(delay);
        delay = delay * 2 < BACKOFF_MAX_NS ? delay * 2 : BACKOFF_MAX_NS;
    }
    if (unlink(p->api_socket) < 0 && errno != ENOENT)
        log_warning(p->ctx, COMPONENT, p->vm_name, "removing API socket "
                    "%s: %s", p->api_socket, strerror(errno));
}

static int kill_and_wait(struct vmm_process *p)
{
    if (proc_signal(&p->proc, SIGKILL) < 0 && errno != ESRCH)
        return error_set_os(VMM_EIO, errno, "%s: sending SIGKILL to VMM "
                            "pid %d", p->vm_name, (int)p->proc.pid);
    if (!proc_ended(&p->proc, DEATH_WAIT_MS))
        return error_set(VMM_ETIMEDOUT, "%s: VMM pid %d still exists %d ms "
                         "after SIGKILL", p->vm_name, (int)p->proc.pid,
                         DEATH_WAIT_MS);
    return 0;
}

int process_kill(struct vmm_process *p)
{
    int r;

    if (p == NULL)
        return error_set(VMM_EINVAL, "process_kill: NULL process");
    if (!process_alive(p)) {
        finish_death(p);
        return 0;
    }
    r = kill_and_wait(p);
    if (r < 0)
        return r;
    log_info(p->ctx, COMPONENT, p->vm_name, "VMM pid %d ended by SIGKILL",
             (int)p->proc.pid);
    finish_death(p);
    return 0;
}

int process_stop(struct vmm_process *p, uint32_t timeout_ms)
{
    int r;

    if (p == NULL)
        return error_set(VMM_EINVAL, "process_stop: NULL process");
    if (!process_alive(p)) {
        finish_death(p);
        return 0;
    }

    api_client_set_timeout(p->api, timeout_ms && timeout_ms < api_timeout(p)
                           ? timeout_ms : api_timeout(p));
    r = api_action(p->api, API_ACTION_SEND_CTRL_ALT_DEL);
    api_client_set_timeout(p->api, api_timeout(p));
    if (r < 0)
        log_info(p->ctx, COMPONENT, p->vm_name, "SendCtrlAltDel to VMM pid "
                 "%d failed (%s); using SIGKILL", (int)p->proc.pid,
                 vmm_error_last()->message);
    error_reset();

    if (r == 0 && proc_ended(&p->proc, (int)(timeout_ms < INT_MAX
                                              ? timeout_ms : INT_MAX))) {
        log_info(p->ctx, COMPONENT, p->vm_name, "VMM pid %d exited after "
                 "SendCtrlAltDel", (int)p->proc.pid);
        finish_death(p);
        return 0;
    }
    r = kill_and_wait(p);
    if (r < 0)
        return r;
    log_info(p->ctx, COMPONENT, p->vm_name, "VMM pid %d ended by SIGKILL "
             "%s", (int)p->proc.pid, timeout_ms ? "after SendCtrlAltDel went "
             "unanswered" : "(no grace period)");
    finish_death(p);
    return 0;
}

void process_free(struct vmm_process *p)
{
    if (p == NULL)
        return;
    proc_close(&p->proc);
    api_client_free(p->api);
    free(p->vm_name);
    free(p->api_socket);
    free(p);
}
