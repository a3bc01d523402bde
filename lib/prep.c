/*
 * Snapshot-prep: e2fsck on the VM's disk, then in-process patching with
 * libext2fs.
 *
 * This file and process.c are the only ones of lib/ allowed to start
 * programs. It starts e2fsck, resize2fs (growing a copy overlay) and
 * ssh-keygen, each with a clean descriptor set, LC_ALL=C (its output is
 * parsed), no shell, output captured into a bounded buffer, and a bounded
 * wait after which the helper (never a VMM) is killed.
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <et/com_err.h>
#include <ext2fs/ext2_err.h>
#include <ext2fs/ext2fs.h>

#include "prep.h"

#define COMPONENT "prep"
#define OUTPUT_MAX (64 * 1024)
#define FSCK_TIMEOUT_MS (10 * 60 * 1000)
#define KEYGEN_TIMEOUT_MS (60 * 1000)
#define SYMLINK_HOPS_MAX 40
#define DEPTH_MAX 256
#define HOST_KEY_MAX (64 * 1024)

extern char **environ;

static const char *test_e2fsck;

void prep_test_set_e2fsck(const char *path)
{
    test_e2fsck = path;
}

const char *prep_ext2_strerror(long code)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    pthread_once(&once, initialize_ext2_error_table);
    return error_message(code);
}

/* --- running helper programs -------------------------------------------- */

struct run_output {
    char buf[OUTPUT_MAX];
    size_t len;
    bool truncated; /* the head was dropped: buf holds the tail */
};

/* Finds `name` in PATH and then the sbin directories, which a caller's
 * PATH often lacks although e2fsprogs lives there. */
static int find_program(const char *name, char *path, size_t size)
{
    static const char *const extra[] = { "/usr/sbin", "/sbin", "/usr/bin",
                                         "/bin" };
    const char *env = getenv("PATH");
    char dirs[4096];
    char *save = NULL;

    if (strchr(name, '/') != NULL) {
        snprintf(path, size, "%s", name);
        return access(path, X_OK) == 0 ? 0 :
            error_set_os(VMM_ENOTFOUND, errno, "program %s", name);
    }
    snprintf(dirs, sizeof(dirs), "%s", env != NULL ? env : "");
    for (char *d = strtok_r(dirs, ":", &save); d != NULL;
         d = strtok_r(NULL, ":", &save)) {
        if (d[0] != '/')
            continue;
        snprintf(path, size, "%s/%s", d, name);
        if (access(path, X_OK) == 0)
            return 0;
    }
    for (size_t i = 0; i < ARRAY_SIZE(extra); i++) {
        snprintf(path, size, "%s/%s", extra[i], name);
        if (access(path, X_OK) == 0)
            return 0;
    }
    return error_set(VMM_ENOTFOUND, "program %s is not installed (looked "
                     "in PATH, /usr/sbin and /sbin)", name);
}

/* The caller's environment with the locale forced to C. */
static char **make_env(void)
{
    size_t n = 0, k = 0;
    char **env;

    while (environ != NULL && environ[n] != NULL)
        n++;
    env = calloc(n + 2, sizeof(*env));
    if (env == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], "LC_", 3) == 0 ||
            strncmp(environ[i], "LANG=", 5) == 0 ||
            strncmp(environ[i], "LANGUAGE=", 9) == 0)
            continue;
        env[k++] = environ[i];
    }
    env[k] = (char *)"LC_ALL=C";
    return env;
}

static void output_add(struct run_output *o, const char *data, size_t len)
{
    if (len >= sizeof(o->buf) - 1) {
        data += len - (sizeof(o->buf) - 1);
        len = sizeof(o->buf) - 1;
        o->len = 0;
        o->truncated = true;
    }
    if (o->len + len > sizeof(o->buf) - 1) {
        size_t drop = o->len + len - (sizeof(o->buf) - 1);

        memmove(o->buf, o->buf + drop, o->len - drop);
        o->len -= drop;
        o->truncated = true;
    }
    memcpy(o->buf + o->len, data, len);
    o->len += len;
    o->buf[o->len] = '\0';
}

/*
 * Starts path with stdin from /dev/null, stdout and stderr into out_fd,
 * default signal dispositions, an empty signal mask and no other
 * descriptor. posix_spawn, not fork: glibc's does not copy the calling
 * program's page tables, which a large embedding program would pay for
 * at every start.
 */
static int spawn_program(const char *path, char *const argv[], char **env,
                         int out_fd, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    int err;

    sigemptyset(&none);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
                                    POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);

    err = posix_spawn(pid, path, &fa, &attr, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    return err;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Runs argv[0] (looked up with find_program) and waits at most timeout_ms.
 * *status_out gets the exit status, or 128 + signal when one ended it.
 */
static int run_program(char *const argv[], int timeout_ms,
                       struct run_output *out, int *status_out)
{
    char path[4096], chunk[4096];
    int64_t deadline = now_ms() + timeout_ms;
    int fds[2] = { -1, -1 };
    char **env = NULL;
    int status = 0, pidfd = -1, r;
    pid_t pid;

    out->len = 0;
    out->buf[0] = '\0';
    out->truncated = false;
    r = find_program(argv[0], path, sizeof(path));
    if (r < 0)
        return r;
    env = make_env();
    if (env == NULL)
        return error_set(VMM_ENOMEM, "preparing to run %s", argv[0]);
    if (pipe2(fds, O_CLOEXEC) < 0) {
        r = error_set_os(VMM_EIO, errno, "pipe for %s", argv[0]);
        goto out;
    }

    r = spawn_program(path, argv, env, fds[1], &pid);
    if (r != 0) {
        r = error_set_os(VMM_EIO, r, "starting %s", path);
        goto out;
    }
    close(fds[1]);
    fds[1] = -1;

    for (;;) {
        struct pollfd p = { .fd = fds[0], .events = POLLIN };
        int64_t left = deadline - now_ms();
        ssize_t n;

        if (left <= 0)
            break;
        n = poll(&p, 1, (int)(left > 1000 ? 1000 : left));
        if (n < 0 && errno != EINTR)
            break;
        if (n <= 0)
            continue;
        n = read(fds[0], chunk, sizeof(chunk));
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            break;
        output_add(out, chunk, (size_t)n);
    }

    /*
     * The output is closed; the program should be exiting. Its pidfd wakes
     * us the moment it has (a fixed sleep here cost every start 5 ms);
     * without pidfds, a short back-off.
     */
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    for (useconds_t nap = 50;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        int64_t left = deadline - now_ms();

        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            r = error_set_os(VMM_EPROCESS, errno, "waiting for %s", path);
            goto out;
        }
        if (left <= 0) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            r = error_set(VMM_ETIMEDOUT, "%s did not finish within %d s; "
                          "killed it", path, timeout_ms / 1000);
            goto out;
        }
        if (pidfd >= 0) {
            struct pollfd p = { .fd = pidfd, .events = POLLIN };

            poll(&p, 1, (int)(left > 1000 ? 1000 : left));
        } else {
            usleep(nap);
            nap = nap < 5000 ? nap * 2 : 5000;
        }
    }
    if (WIFEXITED(status))
        *status_out = WEXITSTATUS(status);
    else
        *status_out = 128 + WTERMSIG(status);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127 && out->len == 0) {
        r = error_set(VMM_EPROCESS, "could not execute %s", path);
        goto out;
    }
    r = 0;

out:
    if (fds[0] >= 0)
        close(fds[0]);
    if (fds[1] >= 0)
        close(fds[1]);
    if (pidfd >= 0)
        close(pidfd);
    free(env);
    return r;
}

/* The last `max` bytes of the output, starting at a line boundary. */
static const char *output_tail(const struct run_output *o, size_t max)
{
    const char *p;

    if (o->len <= max)
        return o->buf;
    p = o->buf + o->len - max;
    while (*p != '\0' && *p != '\n')
        p++;
    return *p == '\n' ? p + 1 : p;
}

/* --- e2fsck ------------------------------------------------------------- */

static const struct {
    int bit;
    const char *meaning;
} fsck_failure_bits[] = {
    { 4, "errors left uncorrected" },
    { 8, "operational error" },
    { 16, "usage or syntax error" },
    { 32, "cancelled by user request" },
    { 128, "shared-library error" },
};

/* "4 (errors left uncorrected), 8 (operational error)" for a status. */
static void fsck_failure_text(int exit_status, char *what, size_t size)
{
    int unknown = exit_status & ~(1 | 2 | 4 | 8 | 16 | 32 | 128);
    size_t len = 0;

    what[0] = '\0';
    for (size_t i = 0; i < ARRAY_SIZE(fsck_failure_bits) && len < size; i++)
        if (exit_status & fsck_failure_bits[i].bit)
            len += (size_t)snprintf(what + len, size - len, "%s%d (%s)",
                                    len ? ", " : "",
                                    fsck_failure_bits[i].bit,
                                    fsck_failure_bits[i].meaning);
    if (unknown && len < size)
        snprintf(what + len, size - len, "%sunknown bits %#x",
                 len ? ", " : "", unknown);
}

int prep_fsck_status(int exit_status, const char *disk)
{
    char what[256];

    if (disk == NULL)
        disk = "(disk)";
    if (exit_status >= 0 && exit_status <= 3)
        return 0;
    if (exit_status < 0 || exit_status > 255)
        return error_set(VMM_EDISK, "e2fsck on %s: exit status %d is not "
                         "an e2fsck status", disk, exit_status);
    fsck_failure_text(exit_status, what, sizeof(what));
    return error_set(VMM_EDISK, "e2fsck on %s failed with exit status %d: "
                     "%s", disk, exit_status, what);
}

/*
 * Condenses what e2fsck fixed into one line: the problem text of each
 * answered question ("...  Fix? yes") or FIXED report, "; "-separated.
 */
static void fsck_summary(const char *output, char *sum, size_t size)
{
    char prev[256] = "";
    size_t len = 0;
    const char *line = output;

    sum[0] = '\0';
    while (*line != '\0' && len + 1 < size) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        char text[256];
        const char *mark = NULL;
        size_t keep;

        snprintf(text, sizeof(text), "%.*s", (int)n, line);
        if ((mark = strstr(text, "? yes")) != NULL) {
            /* Drop the question word ("Fix", "Clear", ...) before '?'. */
            const char *q = mark;

            while (q > text && q[-1] != ' ' && q[-1] != '\t')
                q--;
            mark = q;
        } else if ((mark = strstr(text, "FIXED.")) == NULL &&
                   strstr(text, "recovering journal") != NULL) {
            mark = text + strlen(text);
        }
        if (mark != NULL) {
            keep = (size_t)(mark - text);
            while (keep > 0 && (text[keep - 1] == ' ' ||
                                text[keep - 1] == '.' ||
                                text[keep - 1] == ':'))
                keep--;
            if (keep == 0) {
                snprintf(text, sizeof(text), "%s", prev);
                keep = strlen(text);
                while (keep > 0 && text[keep - 1] == '.')
                    keep--;
            }
            if (keep > 0)
                len += (size_t)snprintf(sum + len, size - len, "%s%.*s",
                                        len ? "; " : "", (int)keep, text);
            if (len >= size)
                len = size - 1;
        }
        if (n > 0)
            snprintf(prev, sizeof(prev), "%s", text);
        if (end == NULL)
            break;
        line = end + 1;
    }
}

static int open_fs(const char *disk, int flags, ext2_filsys *fs_out)
{
    errcode_t err;

    err = ext2fs_open2(disk, NULL, flags | EXT2_FLAG_64BITS, 0, 0,
                       unix_io_manager, fs_out);
    if (err == 0)
        return 0;
    if (err == ENOENT)
        return error_set(VMM_ENOTFOUND, "disk %s does not exist", disk);
    return error_set(VMM_EDISK, "opening the ext4 filesystem on %s: %s",
                     disk, prep_ext2_strerror(err));
}

static int refuse_if_needs_recovery(ext2_filsys fs, const char *disk)
{
    if (ext2fs_has_feature_journal_needs_recovery(fs->super))
        return error_set(VMM_EDISK, "%s still needs journal recovery; "
                         "refusing to write to it", disk);
    return 0;
}

/*
 * Runs e2fsck with mode ("-fy", "-fn") on disk: 0 with its exit status
 * and output in *out (the caller frees it), or an error naming the disk.
 */
static int run_e2fsck(const char *mode, const char *disk,
                      struct run_output **out, int *status)
{
    char *argv[] = { (char *)(test_e2fsck ? test_e2fsck : "e2fsck"),
                     (char *)mode, (char *)disk, NULL };
    int r;

    *out = malloc(sizeof(**out));
    if (*out == NULL)
        return error_set(VMM_ENOMEM, "e2fsck output buffer");
    r = run_program(argv, FSCK_TIMEOUT_MS, *out, status);
    if (r < 0)
        error_prefix("checking %s: ", disk);
    return r;
}

/* The error for an e2fsck run that failed: its status and output's tail. */
static int fsck_failed(const char *mode, const char *disk, int status,
                       const struct run_output *out)
{
    const char *tail = output_tail(out, 400);
    char what[256];

    fsck_failure_text(status, what, sizeof(what));
    return error_set(VMM_EDISK, "e2fsck %s %s failed with exit status %d "
                     "(%s): %s", mode, disk, status, what,
                     tail[0] ? tail : "(no output)");
}

int prep_fsck(const vmm_context *ctx, const char *vm_name, const char *disk,
              struct prep_fsck_result *result)
{
    struct run_output *out = NULL;
    ext2_filsys fs = NULL;
    char summary[512];
    int status = 0, r;

    if (disk == NULL || disk[0] == '\0')
        return error_set(VMM_EINVAL, "prep_fsck: no disk");
    r = run_e2fsck("-fy", disk, &out, &status);
    if (r < 0)
        goto done;
    if (result != NULL) {
        result->exit_status = status;
        result->repaired = (status & 3) != 0;
    }

    if (status > 3) {
        r = fsck_failed("-fy", disk, status, out);
        goto done;
    }
    if (status & 3) {
        fsck_summary(out->buf, summary, sizeof(summary));
        log_warning(ctx, COMPONENT, vm_name, "e2fsck repaired %s (exit %d): "
                    "%s", disk, status,
                    summary[0] ? summary : "see e2fsck's output");
    }

    /* What e2fsck could not replay must never be written over. */
    r = open_fs(disk, 0, &fs);
    if (r < 0)
        goto done;
    r = refuse_if_needs_recovery(fs, disk);
    ext2fs_close_free(&fs);

done:
    free(out);
    return r;
}

int prep_check_clean(const vmm_context *ctx, const char *vm_name,
                     const char *disk, bool *clean)
{
    struct run_output *out = NULL;
    int status = 0, r;

    *clean = false;
    r = run_e2fsck("-fn", disk, &out, &status);
    if (r == 0 && status >= 8) {
        r = fsck_failed("-fn", disk, status, out);
    } else if (r == 0) {
        /* -n answers "no" to every question; a summary counter that is
         * off is asked about without setting any exit bit. */
        *clean = status == 0 && strstr(out->buf, "? no") == NULL;
        log_debug(ctx, COMPONENT, vm_name, "e2fsck -fn %s: %s (exit %d)",
                  disk, *clean ? "clean" : "not clean", status);
    }
    free(out);
    return r;
}

int prep_grow_fs(const vmm_context *ctx, const char *vm_name,
                 const char *disk)
{
    char *argv[] = { (char *)"resize2fs", (char *)disk, NULL };
    struct run_output *out;
    int status = 0, r;

    r = prep_fsck(ctx, vm_name, disk, NULL);
    if (r < 0)
        return r;
    out = malloc(sizeof(*out));
    if (out == NULL)
        return error_set(VMM_ENOMEM, "resize2fs output buffer");
    r = run_program(argv, FSCK_TIMEOUT_MS, out, &status);
    if (r == 0 && status != 0)
        r = error_set(VMM_EDISK, "resize2fs %s failed with exit status "
                      "%d: %s", disk, status, output_tail(out, 400));
    if (r == 0)
        log_info(ctx, COMPONENT, vm_name, "grew the filesystem on %s to "
                 "the size of its file", disk);
    free(out);
    return r;
}

/* --- path resolution inside the guest ------------------------------------ */

struct walk {
    ext2_ino_t stack[DEPTH_MAX]; /* directories from the root down */
    int depth;
    char name[EXT2_NAME_LEN + 1]; /* last component */
    ext2_ino_t ino;               /* 0: it does not exist */
    bool parent_missing;          /* a directory on the way is missing */
    int hops;
};

struct patcher {
    ext2_filsys fs;
    const vmm_context *ctx;
    const char *vm_name;
    const char *disk;
    const char *path; /* the guest path being worked on, for errors */
};

static int fs_error(const struct patcher *p, errcode_t err, const char *what)
{
    return error_set(VMM_EDISK, "%s %s in %s: %s", what, p->path, p->disk,
                     prep_ext2_strerror(err));
}

static int read_link(const struct patcher *p, ext2_ino_t ino,
                     char *target, size_t size)
{
    struct ext2_inode inode;
    ext2_file_t file;
    unsigned int got = 0;
    size_t len;
    errcode_t err;

    err = ext2fs_read_inode(p->fs, ino, &inode);
    if (err)
        return fs_error(p, err, "reading the symlink on the way to");
    len = EXT2_I_SIZE(&inode);
    if (len == 0 || len >= size)
        return error_set(VMM_EDISK, "a symlink on the way to %s in %s has "
                         "a bad length %zu", p->path, p->disk, len);

    if (inode.i_flags & EXT4_INLINE_DATA_FL) {
        size_t n = size;

        err = ext2fs_inline_data_get(p->fs, ino, &inode, target, &n);
    } else if (ext2fs_is_fast_symlink(&inode)) {
        memcpy(target, inode.i_block, len);
    } else {
        err = ext2fs_file_open2(p->fs, ino, &inode, 0, &file);
        if (err == 0) {
            err = ext2fs_file_read(file, target, (unsigned int)len, &got);
            ext2fs_file_close(file);
            if (err == 0 && got != len)
                err = EXT2_ET_SHORT_READ;
        }
    }
    if (err)
        return fs_error(p, err, "reading the symlink on the way to");
    target[len] = '\0';
    return 0;
}

/*
 * Resolves `path` inside the guest, component by component. Symlinks met
 * on the way are followed (and the last one too when follow_last): an
 * absolute target restarts at the guest's root, and ".." above the root
 * is refused rather than clamped, since it means the link was written for
 * another root. On return w->stack[w->depth - 1] is the parent of w->name.
 */
static int walk_path(const struct patcher *p, const char *path,
                     bool follow_last, struct walk *w)
{
    char rest[4096], target[4096];
    char *cur;

    if (path == NULL || path[0] != '/')
        return error_set(VMM_EINVAL, "guest path \"%s\" is not absolute",
                         path ? path : "(null)");
    if (strlen(path) >= sizeof(rest))
        return error_set(VMM_EINVAL, "guest path %.64s... is too long",
                         path);
    snprintf(rest, sizeof(rest), "%s", path);
    w->stack[0] = EXT2_ROOT_INO;
    w->depth = 1;
    w->ino = EXT2_ROOT_INO;
    w->name[0] = '\0';
    w->parent_missing = false;
    w->hops = 0;
    cur = rest;

    for (;;) {
        struct ext2_inode inode;
        ext2_ino_t dir = w->stack[w->depth - 1];
        char *slash, *comp;
        bool last;
        errcode_t err;
        size_t n;

        while (*cur == '/')
            cur++;
        if (*cur == '\0') {
            /* "/" itself, or a trailing slash: the last directory. */
            if (w->name[0] == '\0') {
                w->ino = dir;
                if (w->depth > 1)
                    w->depth--;
            }
            return 0;
        }
        comp = cur;
        slash = strchr(cur, '/');
        if (slash != NULL) {
            *slash = '\0';
            cur = slash + 1;
        } else {
            cur += strlen(cur);
        }
        while (*cur == '/')
            cur++;
        last = *cur == '\0';
        n = strlen(comp);

        if (strcmp(comp, ".") == 0) {
            if (last) {
                w->ino = dir;
                w->name[0] = '\0';
                if (w->depth > 1)
                    w->depth--;
                return 0;
            }
            continue;
        }
        if (strcmp(comp, "..") == 0) {
            if (w->depth == 1)
                return error_set(VMM_EINVAL, "guest path %s leads above "
                                 "the guest's root (through \"..\" or a "
                                 "symlink); refusing it", p->path);
            w->depth--;
            if (last) {
                w->ino = w->stack[w->depth - 1];
                w->name[0] = '\0';
                if (w->depth > 1)
                    w->depth--;
                return 0;
            }
            continue;
        }
        if (n > EXT2_NAME_LEN)
            return error_set(VMM_EINVAL, "guest path %s: component %.32s... "
                             "is longer than %d bytes", p->path, comp,
                             EXT2_NAME_LEN);
        memcpy(w->name, comp, n + 1);

        err = ext2fs_lookup(p->fs, dir, comp, (int)n, NULL, &w->ino);
        if (err == EXT2_ET_FILE_NOT_FOUND) {
            w->ino = 0;
            if (!last)
                w->parent_missing = true;
            if (last || w->parent_missing) {
                /* Keep the remaining components for mkdir -p. */
                return 0;
            }
        } else if (err) {
            return fs_error(p, err, "looking up");
        }

        err = ext2fs_read_inode(p->fs, w->ino, &inode);
        if (err)
            return fs_error(p, err, "reading an inode of");

        if (LINUX_S_ISLNK(inode.i_mode) && (!last || follow_last)) {
            size_t tlen;

            if (++w->hops > SYMLINK_HOPS_MAX)
                return error_set(VMM_EINVAL, "guest path %s: too many "
                                 "levels of symlinks", p->path);
            if (read_link(p, w->ino, target, sizeof(target)) < 0)
                return VMM_EDISK;
            tlen = strlen(target);
            if (tlen + 1 + strlen(cur) + 1 > sizeof(rest))
                return error_set(VMM_EINVAL, "guest path %s: symlinks "
                                 "make it too long", p->path);
            /* rest becomes TARGET/REMAINDER. */
            memmove(rest + tlen + 1, cur, strlen(cur) + 1);
            memcpy(rest, target, tlen);
            rest[tlen] = '/';
            cur = rest;
            if (target[0] == '/')
                w->depth = 1;
            w->name[0] = '\0';
            continue;
        }
        if (last)
            return 0;
        if (!LINUX_S_ISDIR(inode.i_mode))
            return error_set(VMM_EINVAL, "guest path %s: %s is not a "
                             "directory", p->path, comp);
        if (w->depth >= DEPTH_MAX)
            return error_set(VMM_EINVAL, "guest path %s is nested too "
                             "deeply", p->path);
        w->stack[w->depth++] = w->ino;
    }
}

/* --- patch operations --------------------------------------------------- */

static int link_entry(const struct patcher *p, ext2_ino_t dir,
                      const char *name, ext2_ino_t ino, int type)
{
    errcode_t err = ext2fs_link(p->fs, dir, name, ino, type);

    if (err == EXT2_ET_DIR_NO_SPACE) {
        err = ext2fs_expand_dir(p->fs, dir);
        if (err == 0)
            err = ext2fs_link(p->fs, dir, name, ino, type);
    }
    return err ? fs_error(p, err, "adding a directory entry for") : 0;
}

static void stamp(struct ext2_inode *inode)
{
    uint32_t t = (uint32_t)time(NULL);

    inode->i_atime = inode->i_ctime = inode->i_mtime = t;
}

static int set_owner(const struct patcher *p, ext2_ino_t ino, mode_t mode,
                     uid_t uid, gid_t gid, bool set_mode)
{
    struct ext2_inode inode;
    errcode_t err;

    err = ext2fs_read_inode(p->fs, ino, &inode);
    if (err)
        return fs_error(p, err, "reading the inode of");
    if (set_mode)
        inode.i_mode = (inode.i_mode & LINUX_S_IFMT) | (mode & 07777);
    inode.i_uid = (uint16_t)uid;
    ext2fs_set_i_uid_high(inode, uid >> 16);
    inode.i_gid = (uint16_t)gid;
    ext2fs_set_i_gid_high(inode, gid >> 16);
    stamp(&inode);
    err = ext2fs_write_inode(p->fs, ino, &inode);
    return err ? fs_error(p, err, "writing the inode of") : 0;
}

/* mkdir -p of the directories the walk found missing, from w's parent. */
static int make_dirs(const struct patcher *p, const char *path,
                     struct walk *w, mode_t mode, uid_t uid, gid_t gid,
                     bool last_too)
{
    int r;

    for (int guard = 0; guard < DEPTH_MAX; guard++) {
        ext2_ino_t parent = w->stack[w->depth - 1];
        errcode_t err;

        if (w->ino != 0 || (!w->parent_missing && !last_too))
            return 0;
        err = ext2fs_mkdir(p->fs, parent, 0, w->name);
        if (err == EXT2_ET_DIR_NO_SPACE) {
            err = ext2fs_expand_dir(p->fs, parent);
            if (err == 0)
                err = ext2fs_mkdir(p->fs, parent, 0, w->name);
        }
        if (err)
            return fs_error(p, err, "making a directory on the way to");
        r = walk_path(p, path, true, w);
        if (r < 0)
            return r;
        if (w->ino != 0) {
            /* The final directory: the caller's owner and mode. */
            return last_too ? set_owner(p, w->ino, mode, uid, gid, true) : 0;
        }
        /* A new parent gets 0755 root:root via the fs umask; go deeper. */
    }
    return error_set(VMM_EINVAL, "guest path %s is nested too deeply",
                     p->path);
}

static int free_inode(const struct patcher *p, ext2_ino_t ino,
                      struct ext2_inode_large *inode, bool is_dir)
{
    struct ext2_inode *in = (struct ext2_inode *)inode;
    errcode_t err = 0;

    if (ext2fs_inode_has_valid_blocks2(p->fs, in) ||
        (in->i_flags & EXT4_INLINE_DATA_FL))
        err = ext2fs_punch(p->fs, ino, in, NULL, 0, ~0ULL);
    if (err == 0 && ext2fs_file_acl_block(p->fs, in) != 0)
        err = ext2fs_free_ext_attr(p->fs, ino, inode);
    if (err)
        return fs_error(p, err, "freeing the blocks of");
    in->i_links_count = 0;
    in->i_dtime = (uint32_t)time(NULL);
    err = ext2fs_write_inode_full(p->fs, ino, in, sizeof(*inode));
    if (err)
        return fs_error(p, err, "writing the freed inode of");
    ext2fs_inode_alloc_stats2(p->fs, ino, -1, is_dir);
    return 0;
}

static int dir_count_cb(ext2_ino_t dir, int entry, struct ext2_dir_entry *d,
                        int offset, int blocksize, char *buf, void *priv)
{
    int n = ext2fs_dirent_name_len(d);
    int *count = priv;

    if (!(n == 1 && d->name[0] == '.') &&
        !(n == 2 && d->name[0] == '.' && d->name[1] == '.')) {
        (*count)++;
        return DIRENT_ABORT;
    }
    return 0;
}

/* Removes the entry w->name from its parent and drops the inode's link. */
static int remove_entry(const struct patcher *p, struct walk *w)
{
    struct ext2_inode_large inode;
    ext2_ino_t parent = w->stack[w->depth - 1];
    struct ext2_inode *in = (struct ext2_inode *)&inode;
    bool is_dir;
    errcode_t err;

    memset(&inode, 0, sizeof(inode));
    err = ext2fs_read_inode_full(p->fs, w->ino, in, sizeof(inode));
    if (err)
        return fs_error(p, err, "reading the inode of");
    is_dir = LINUX_S_ISDIR(in->i_mode);
    if (is_dir) {
        int count = 0;

        err = ext2fs_dir_iterate2(p->fs, w->ino, 0, NULL, dir_count_cb,
                                  &count);
        if (err)
            return fs_error(p, err, "reading the directory");
        if (count > 0)
            return error_set(VMM_EINVAL, "guest directory %s is not "
                             "empty; refusing to remove it", p->path);
    }

    err = ext2fs_unlink(p->fs, parent, w->name, w->ino, 0);
    if (err)
        return fs_error(p, err, "removing the directory entry of");

    if (is_dir) {
        struct ext2_inode pin;

        in->i_links_count = 0;
        err = ext2fs_read_inode(p->fs, parent, &pin);
        if (err == 0 && pin.i_links_count > 1) {
            pin.i_links_count--;
            err = ext2fs_write_inode(p->fs, parent, &pin);
        }
        if (err)
            return fs_error(p, err, "updating the parent directory of");
    } else if (in->i_links_count > 1) {
        in->i_links_count--;
        err = ext2fs_write_inode_full(p->fs, w->ino, in, sizeof(inode));
        return err ? fs_error(p, err, "writing the inode of") : 0;
    }
    return free_inode(p, w->ino, &inode, is_dir);
}

static int new_inode(const struct patcher *p, ext2_ino_t parent,
                     mode_t type_mode, uid_t uid, gid_t gid, ext2_ino_t *out)
{
    struct ext2_inode inode;
    ext2_ino_t ino;
    errcode_t err;

    err = ext2fs_new_inode(p->fs, parent, (int)type_mode, NULL, &ino);
    if (err)
        return fs_error(p, err, "allocating an inode for");
    memset(&inode, 0, sizeof(inode));
    inode.i_mode = (uint16_t)type_mode;
    inode.i_uid = (uint16_t)uid;
    ext2fs_set_i_uid_high(inode, uid >> 16);
    inode.i_gid = (uint16_t)gid;
    ext2fs_set_i_gid_high(inode, gid >> 16);
    inode.i_links_count = 1;
    stamp(&inode);
    if (ext2fs_has_feature_extents(p->fs->super)) {
        ext2_extent_handle_t h;

        /* Opening an extent handle on a blank inode writes the header. */
        err = ext2fs_extent_open2(p->fs, ino, &inode, &h);
        if (err)
            return fs_error(p, err, "initialising the extent tree of");
        ext2fs_extent_free(h);
    }
    err = ext2fs_write_new_inode(p->fs, ino, &inode);
    if (err)
        return fs_error(p, err, "writing a new inode for");
    ext2fs_inode_alloc_stats2(p->fs, ino, +1, 0);
    *out = ino;
    return 0;
}

static int write_data(const struct patcher *p, ext2_ino_t ino,
                      const void *data, size_t size)
{
    const char *at = data;
    ext2_file_t file;
    errcode_t err, err2;

    err = ext2fs_file_open(p->fs, ino, EXT2_FILE_WRITE, &file);
    if (err)
        return fs_error(p, err, "opening");
    while (err == 0 && size > 0) {
        unsigned int chunk = size > (1u << 20) ? 1u << 20 : (unsigned)size;
        unsigned int done = 0;

        err = ext2fs_file_write(file, at, chunk, &done);
        if (err == 0 && done == 0)
            err = EXT2_ET_SHORT_WRITE;
        at += done;
        size -= done;
    }
    err2 = ext2fs_file_close(file);
    if (err == 0)
        err = err2;
    return err ? fs_error(p, err, "writing") : 0;
}

static int op_write(const struct patcher *p, const struct prep_patch *op)
{
    struct ext2_inode_large inode;
    struct ext2_inode *in = (struct ext2_inode *)&inode;
    struct walk w;
    ext2_ino_t ino = 0;
    errcode_t err;
    int r;

    r = walk_path(p, op->path, true, &w);
    if (r == 0 && w.parent_missing)
        r = make_dirs(p, op->path, &w, 0755, 0, 0, false);
    if (r < 0)
        return r;
    if (w.name[0] == '\0')
        return error_set(VMM_EINVAL, "guest path %s is a directory; "
                         "refusing to replace a directory with a file",
                         op->path);

    if (w.ino != 0) {
        memset(&inode, 0, sizeof(inode));
        err = ext2fs_read_inode_full(p->fs, w.ino, in, sizeof(inode));
        if (err)
            return fs_error(p, err, "reading the inode of");
        if (LINUX_S_ISDIR(in->i_mode))
            return error_set(VMM_EINVAL, "guest path %s is a directory; "
                             "refusing to replace a directory with a file",
                             op->path);
        if (!LINUX_S_ISREG(in->i_mode)) {
            /* A device, fifo or socket: replace the entry. */
            r = remove_entry(p, &w);
            if (r < 0)
                return r;
            w.ino = 0;
        }
    }

    if (w.ino == 0) {
        r = new_inode(p, w.stack[w.depth - 1],
                      LINUX_S_IFREG | (op->mode & 07777), op->uid, op->gid,
                      &ino);
        if (r == 0)
            r = link_entry(p, w.stack[w.depth - 1], w.name, ino,
                           EXT2_FT_REG_FILE);
        if (r < 0)
            return r;
    } else {
        ino = w.ino;
        if (ext2fs_inode_has_valid_blocks2(p->fs, in) ||
            (in->i_flags & EXT4_INLINE_DATA_FL)) {
            err = ext2fs_punch(p->fs, ino, in, NULL, 0, ~0ULL);
            if (err)
                return fs_error(p, err, "truncating");
        }
        err = ext2fs_inode_size_set(p->fs, in, 0);
        if (err == 0)
            err = ext2fs_write_inode_full(p->fs, ino, in, sizeof(inode));
        if (err)
            return fs_error(p, err, "truncating");
    }

    r = write_data(p, ino, op->data, op->size);
    if (r == 0)
        r = set_owner(p, ino, op->mode, op->uid, op->gid, true);
    return r;
}

static int op_mkdir(const struct patcher *p, const struct prep_patch *op)
{
    struct ext2_inode inode;
    struct walk w;
    errcode_t err;
    int r;

    r = walk_path(p, op->path, true, &w);
    if (r < 0)
        return r;
    if (w.ino == 0)
        return make_dirs(p, op->path, &w, op->mode, op->uid, op->gid, true);
    err = ext2fs_read_inode(p->fs, w.ino, &inode);
    if (err)
        return fs_error(p, err, "reading the inode of");
    if (!LINUX_S_ISDIR(inode.i_mode))
        return error_set(VMM_EINVAL, "guest path %s exists and is not a "
                         "directory", op->path);
    return set_owner(p, w.ino, op->mode, op->uid, op->gid, true);
}

static int op_symlink(const struct patcher *p, const struct prep_patch *op)
{
    char target[4096];
    struct ext2_inode inode;
    ext2_ino_t parent, ino;
    struct walk w;
    errcode_t err;
    int r;

    if (op->size == 0 || op->size >= sizeof(target) ||
        memchr(op->data, '\0', op->size) != NULL)
        return error_set(VMM_EINVAL, "symlink %s: the target is empty, "
                         "too long or holds a NUL byte", op->path);
    memcpy(target, op->data, op->size);
    target[op->size] = '\0';

    r = walk_path(p, op->path, false, &w);
    if (r == 0 && w.parent_missing)
        r = make_dirs(p, op->path, &w, 0755, 0, 0, false);
    if (r < 0)
        return r;
    if (w.name[0] == '\0')
        return error_set(VMM_EINVAL, "guest path %s is a directory; "
                         "refusing to replace it with a symlink", op->path);
    if (w.ino != 0) {
        err = ext2fs_read_inode(p->fs, w.ino, &inode);
        if (err)
            return fs_error(p, err, "reading the inode of");
        if (LINUX_S_ISDIR(inode.i_mode))
            return error_set(VMM_EINVAL, "guest path %s is a directory; "
                             "refusing to replace it with a symlink",
                             op->path);
        r = remove_entry(p, &w);
        if (r < 0)
            return r;
    }

    parent = w.stack[w.depth - 1];
    err = ext2fs_symlink(p->fs, parent, 0, w.name, target);
    if (err == EXT2_ET_DIR_NO_SPACE) {
        err = ext2fs_expand_dir(p->fs, parent);
        if (err == 0)
            err = ext2fs_symlink(p->fs, parent, 0, w.name, target);
    }
    if (err)
        return fs_error(p, err, "making the symlink");
    err = ext2fs_lookup(p->fs, parent, w.name, (int)strlen(w.name), NULL,
                        &ino);
    if (err)
        return fs_error(p, err, "looking up the new symlink");
    return set_owner(p, ino, 0, op->uid, op->gid, false);
}

static int op_remove(const struct patcher *p, const struct prep_patch *op)
{
    struct walk w;
    int r;

    r = walk_path(p, op->path, false, &w);
    if (r < 0)
        return r;
    if (w.ino == 0)
        return 0;
    if (w.name[0] == '\0')
        return error_set(VMM_EINVAL, "refusing to remove guest path %s",
                         op->path);
    return remove_entry(p, &w);
}

static int check_op(const struct prep_patch *op, size_t i)
{
    if (op->path == NULL || op->path[0] != '/')
        return error_set(VMM_EINVAL, "patch %zu: path \"%s\" is not an "
                         "absolute guest path", i,
                         op->path ? op->path : "(null)");
    if (op->op != PREP_WRITE_FILE && op->op != PREP_MKDIR &&
        op->op != PREP_SYMLINK && op->op != PREP_REMOVE)
        return error_set(VMM_EINVAL, "patch %zu (%s): unknown operation %d",
                         i, op->path, (int)op->op);
    if ((op->op == PREP_WRITE_FILE || op->op == PREP_SYMLINK) &&
        op->data == NULL && op->size != 0)
        return error_set(VMM_EINVAL, "patch %zu (%s): size %zu but no data",
                         i, op->path, op->size);
    if (op->op == PREP_SYMLINK && op->size == 0)
        return error_set(VMM_EINVAL, "patch %zu (%s): a symlink needs a "
                         "target", i, op->path);
    return 0;
}

int prep_patch(const vmm_context *ctx, const char *vm_name, const char *disk,
               const struct prep_patch *patches, size_t count)
{
    struct patcher p = { .ctx = ctx, .vm_name = vm_name, .disk = disk };
    errcode_t err;
    int r = 0;

    if (disk == NULL || (patches == NULL && count != 0))
        return error_set(VMM_EINVAL, "prep_patch: disk or patches is NULL");
    for (size_t i = 0; i < count; i++) {
        r = check_op(&patches[i], i);
        if (r < 0)
            return r;
    }

    r = open_fs(disk, EXT2_FLAG_RW, &p.fs);
    if (r < 0)
        return r;
    r = refuse_if_needs_recovery(p.fs, disk);
    if (r < 0)
        goto fail;
    err = ext2fs_read_bitmaps(p.fs);
    if (err) {
        r = error_set(VMM_EDISK, "reading the allocation bitmaps of %s: %s "
                      "(run e2fsck first)", disk, prep_ext2_strerror(err));
        goto fail;
    }
    /* New directories made on the way are 0755. */
    p.fs->umask = 022;

    for (size_t i = 0; i < count; i++) {
        const struct prep_patch *op = &patches[i];

        p.path = op->path;
        switch (op->op) {
        case PREP_WRITE_FILE:
            r = op_write(&p, op);
            break;
        case PREP_MKDIR:
            r = op_mkdir(&p, op);
            break;
        case PREP_SYMLINK:
            r = op_symlink(&p, op);
            break;
        case PREP_REMOVE:
            r = op_remove(&p, op);
            break;
        }
        if (r < 0) {
            error_prefix("patching %s: ", disk);
            break;
        }
    }

    /*
     * Inodes and directory blocks already went to the disk; flushing the
     * bitmaps and counters with them keeps the filesystem consistent even
     * when a later patch failed (that one is reported, the disk stays
     * clean for the next e2fsck).
     *
     * Written, not synced: the VMM reads the same pages, and a host that
     * crashes before they reach the device leaves a disk the next start
     * runs e2fsck -fy on and patches again (only an untouched copy skips
     * it, and patching ends that). Syncing cost each start three fsyncs.
     */
    err = ext2fs_close2(p.fs, EXT2_FLAG_FLUSH_NO_SYNC);
    if (err)
        ext2fs_free(p.fs); /* a failed flush leaves the closing to us */
    p.fs = NULL;
    if (err && r == 0)
        r = error_set(VMM_EDISK, "writing the filesystem of %s: %s", disk,
                      prep_ext2_strerror(err));
    if (r == 0 && count > 0)
        log_debug(ctx, COMPONENT, vm_name, "patched %zu paths into %s",
                  count, disk);
    return r;

fail:
    ext2fs_close_free(&p.fs);
    return r;
}

int prep_run(const vmm_context *ctx, const char *vm_name, const char *disk,
             const struct prep_patch *patches, size_t count,
             struct prep_fsck_result *result)
{
    int r = prep_fsck(ctx, vm_name, disk, result);

    if (r < 0)
        return r;
    return prep_patch(ctx, vm_name, disk, patches, count);
}

/* --- network style -------------------------------------------------------- */

static bool guest_exists(const struct patcher *p, const char *path,
                         bool want_dir)
{
    struct ext2_inode inode;
    struct walk w;

    if (walk_path(p, path, true, &w) < 0 || w.ino == 0)
        return false;
    if (ext2fs_read_inode(p->fs, w.ino, &inode) != 0)
        return false;
    return want_dir ? LINUX_S_ISDIR(inode.i_mode) : true;
}

int prep_detect_net_style(const char *disk, enum prep_net_style *out)
{
    static const char *const networkd_links[] = {
        "/etc/systemd/system/multi-user.target.wants/"
            "systemd-networkd.service",
        "/etc/systemd/system/sockets.target.wants/systemd-networkd.socket",
        "/etc/systemd/system/network-online.target.wants/"
            "systemd-networkd-wait-online.service",
    };
    struct patcher p = { .disk = disk };
    enum prep_net_style style = PREP_NET_NONE;
    int r;

    if (disk == NULL || out == NULL)
        return error_set(VMM_EINVAL, "prep_detect_net_style: disk or out "
                         "is NULL");
    r = open_fs(disk, 0, &p.fs);
    if (r < 0)
        return r;
    /* Enablement lives in /etc; a networkd unit merely installed in /lib
     * does not run. Not following the links: a dangling one still says
     * the administrator enabled it. */
    for (size_t i = 0; i < ARRAY_SIZE(networkd_links); i++) {
        struct walk w;

        p.path = networkd_links[i];
        if (walk_path(&p, networkd_links[i], false, &w) == 0 && w.ino != 0 &&
            guest_exists(&p, "/etc/systemd/network", true)) {
            style = PREP_NET_NETWORKD;
            break;
        }
    }
    p.path = "/etc/network/interfaces";
    if (style == PREP_NET_NONE &&
        (guest_exists(&p, "/etc/network/interfaces", false) ||
         guest_exists(&p, "/etc/network/interfaces.d", true)))
        style = PREP_NET_IFUPDOWN;
    ext2fs_close_free(&p.fs);
    error_reset();
    *out = style;
    return 0;
}

/* --- the standard patch set ---------------------------------------------- */

#define STD_MAX 24

struct std_builder {
    struct prep_patch patches[STD_MAX];
    char *owned[STD_MAX][2]; /* path, data: malloc'ed until packed */
    size_t count;
    int error;
};

static void std_add(struct std_builder *b, enum prep_op op, const char *path,
                    char *data, size_t size, mode_t mode)
{
    struct prep_patch *pp;
    char *copy;

    if (b->error || b->count >= STD_MAX) {
        if (!b->error)
            b->error = error_set(VMM_EINVAL, "too many standard patches");
        free(data);
        return;
    }
    copy = xstrdup(path);
    if (copy == NULL || (data == NULL && op != PREP_MKDIR &&
                         op != PREP_REMOVE)) {
        free(copy);
        free(data);
        b->error = VMM_ENOMEM;
        return;
    }
    pp = &b->patches[b->count];
    pp->op = op;
    pp->path = copy;
    pp->data = data;
    pp->size = data != NULL && size == 0 ? strlen(data) : size;
    pp->mode = mode;
    b->owned[b->count][0] = copy;
    b->owned[b->count][1] = data;
    b->count++;
}

static char *read_small_file(const char *path, size_t *size_out)
{
    char *buf;
    ssize_t n;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        error_set_os(errno == ENOENT ? VMM_ENOTFOUND : VMM_EIO, errno,
                     "reading %s", path);
        return NULL;
    }
    buf = malloc(HOST_KEY_MAX + 1);
    if (buf == NULL) {
        close(fd);
        error_set(VMM_ENOMEM, "reading %s", path);
        return NULL;
    }
    n = read(fd, buf, HOST_KEY_MAX + 1);
    close(fd);
    if (n < 0 || n > HOST_KEY_MAX) {
        error_set_os(VMM_EIO, n < 0 ? errno : EFBIG, "reading %s", path);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *size_out = (size_t)n;
    return buf;
}

static int valid_text(const char *what, const char *s, bool one_line)
{
    if (s == NULL || s[0] == '\0')
        return error_set(VMM_EINVAL, "guest config: %s is missing", what);
    if (one_line && strpbrk(s, "\n\r \t") != NULL)
        return error_set(VMM_EINVAL, "guest config: %s \"%s\" holds "
                         "whitespace", what, s);
    return 0;
}

static void prefix_netmask(uint32_t prefix, char *buf, size_t size)
{
    uint32_t m = prefix == 0 ? 0 : 0xffffffffu << (32 - prefix);

    snprintf(buf, size, "%u.%u.%u.%u", m >> 24, (m >> 16) & 255,
             (m >> 8) & 255, m & 255);
}

static void std_network(struct std_builder *b,
                        const struct prep_guest_config *cfg)
{
    char mask[16];

    if (cfg->guest_ip == NULL || cfg->net_style == PREP_NET_NONE)
        return;
    if (cfg->net_style == PREP_NET_IFUPDOWN) {
        prefix_netmask(cfg->prefix_len, mask, sizeof(mask));
        std_add(b, PREP_WRITE_FILE, "/etc/network/interfaces",
                xasprintf("# Written by libvmm at each start.\n"
                          "auto lo\n"
                          "iface lo inet loopback\n\n"
                          "auto eth0\n"
                          "iface eth0 inet static\n"
                          "    address %s\n"
                          "    netmask %s\n"
                          "%s%s%s",
                          cfg->guest_ip, mask,
                          cfg->gateway_ip ? "    gateway " : "",
                          cfg->gateway_ip ? cfg->gateway_ip : "",
                          cfg->gateway_ip ? "\n" : ""),
                0, 0644);
        return;
    }
    std_add(b, PREP_MKDIR, "/etc/systemd/network", NULL, 0, 0755);
    std_add(b, PREP_WRITE_FILE, "/etc/systemd/network/10-eth0.network",
            xasprintf("# Written by libvmm at each start.\n"
                      "[Match]\n"
                      "%s%s\n\n"
                      "[Network]\n"
                      "Address=%s/%u\n"
                      "%s%s%s",
                      cfg->mac ? "MACAddress=" : "Name=",
                      cfg->mac ? cfg->mac : "eth0",
                      cfg->guest_ip, cfg->prefix_len,
                      cfg->gateway_ip ? "Gateway=" : "",
                      cfg->gateway_ip ? cfg->gateway_ip : "",
                      cfg->gateway_ip ? "\n" : ""),
            0, 0644);
}

static void std_host_keys(struct std_builder *b, const char *dir)
{
    static const char *const stale[] = { "rsa", "ecdsa", "dsa" };
    char path[4096];
    size_t size = 0;
    char *data;

    if (dir == NULL)
        return;
    std_add(b, PREP_MKDIR, "/etc/ssh", NULL, 0, 0755);
    snprintf(path, sizeof(path), "%s/ssh_host_ed25519_key", dir);
    data = read_small_file(path, &size);
    if (data == NULL) {
        b->error = error_code();
        return;
    }
    std_add(b, PREP_WRITE_FILE, "/etc/ssh/ssh_host_ed25519_key", data, size,
            0600);
    snprintf(path, sizeof(path), "%s/ssh_host_ed25519_key.pub", dir);
    data = read_small_file(path, &size);
    if (data == NULL) {
        b->error = b->error ? b->error : error_code();
        return;
    }
    std_add(b, PREP_WRITE_FILE, "/etc/ssh/ssh_host_ed25519_key.pub", data,
            size, 0644);
    /* Keys baked into the image would be shared by every clone. */
    for (size_t i = 0; i < ARRAY_SIZE(stale); i++) {
        char key[64];

        snprintf(key, sizeof(key), "/etc/ssh/ssh_host_%s_key", stale[i]);
        std_add(b, PREP_REMOVE, key, NULL, 0, 0);
        snprintf(key, sizeof(key), "/etc/ssh/ssh_host_%s_key.pub", stale[i]);
        std_add(b, PREP_REMOVE, key, NULL, 0, 0);
    }
}

/* Moves every string into one block so the caller frees two pointers. */
static int std_pack(struct std_builder *b, struct prep_patch **patches_out,
                    size_t *count_out, char **storage_out)
{
    struct prep_patch *patches;
    size_t total = 1, at = 0;
    char *storage;

    for (size_t i = 0; i < b->count; i++)
        total += strlen(b->patches[i].path) + 1 + b->patches[i].size + 1;
    patches = calloc(b->count ? b->count : 1, sizeof(*patches));
    storage = malloc(total);
    if (patches == NULL || storage == NULL) {
        free(patches);
        free(storage);
        return error_set(VMM_ENOMEM, "building the standard patch set");
    }
    for (size_t i = 0; i < b->count; i++) {
        size_t n = strlen(b->patches[i].path) + 1;

        patches[i] = b->patches[i];
        memcpy(storage + at, b->patches[i].path, n);
        patches[i].path = storage + at;
        at += n;
        if (b->patches[i].data != NULL) {
            memcpy(storage + at, b->patches[i].data, b->patches[i].size);
            storage[at + b->patches[i].size] = '\0';
            patches[i].data = storage + at;
            at += b->patches[i].size + 1;
        }
    }
    *patches_out = patches;
    *count_out = b->count;
    *storage_out = storage;
    return 0;
}

int prep_standard_patches(const struct prep_guest_config *cfg,
                          struct prep_patch **patches_out, size_t *count_out,
                          char **storage_out)
{
    struct std_builder b;
    int r;

    if (cfg == NULL || patches_out == NULL || count_out == NULL ||
        storage_out == NULL)
        return error_set(VMM_EINVAL, "prep_standard_patches: NULL argument");
    r = valid_text("hostname", cfg->hostname, true);
    if (r == 0 && cfg->guest_ip != NULL) {
        r = valid_text("guest_ip", cfg->guest_ip, true);
        if (r == 0 && cfg->gateway_ip != NULL)
            r = valid_text("gateway_ip", cfg->gateway_ip, true);
        if (r == 0 && cfg->mac != NULL)
            r = valid_text("mac", cfg->mac, true);
        if (r == 0 && (cfg->prefix_len < 1 || cfg->prefix_len > 32))
            r = error_set(VMM_EINVAL, "guest config: prefix length %u is "
                          "not from 1 to 32", cfg->prefix_len);
    }
    if (r < 0)
        return r;

    memset(&b, 0, sizeof(b));
    std_add(&b, PREP_WRITE_FILE, "/etc/hostname",
            xasprintf("%s\n", cfg->hostname), 0, 0644);
    std_add(&b, PREP_WRITE_FILE, "/etc/hosts",
            xasprintf("127.0.0.1\tlocalhost\n"
                      "127.0.1.1\t%s\n"
                      "::1\t\tlocalhost ip6-localhost ip6-loopback\n"
                      "ff02::1\t\tip6-allnodes\n"
                      "ff02::2\t\tip6-allrouters\n", cfg->hostname),
            0, 0644);
    std_network(&b, cfg);
    if (cfg->authorized_keys != NULL) {
        std_add(&b, PREP_MKDIR, "/root/.ssh", NULL, 0, 0700);
        std_add(&b, PREP_WRITE_FILE, "/root/.ssh/authorized_keys",
                xstrdup(cfg->authorized_keys), 0, 0600);
    }
    std_host_keys(&b, cfg->host_keys_dir);

    r = b.error;
    if (r == 0)
        r = std_pack(&b, patches_out, count_out, storage_out);
    for (size_t i = 0; i < b.count; i++) {
        free(b.owned[i][0]);
        free(b.owned[i][1]);
    }
    return r;
}

/* --- ssh host keys -------------------------------------------------------- */

static int write_atomic(const char *path, const char *data, size_t size,
                        mode_t mode)
{
    char *tmp, *dir, *slash;
    int fd, r = 0;

    tmp = xasprintf("%s.tmp.XXXXXX", path);
    dir = xstrdup(path);
    if (tmp == NULL || dir == NULL) {
        r = VMM_ENOMEM;
        goto out;
    }
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        r = error_set_os(VMM_EIO, errno, "creating %s", tmp);
        goto out;
    }
    if (fchmod(fd, mode) < 0 || write(fd, data, size) != (ssize_t)size ||
        fsync(fd) < 0) {
        r = error_set_os(VMM_EIO, errno ? errno : EIO, "writing %s", tmp);
        close(fd);
        unlink(tmp);
        goto out;
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        r = error_set_os(VMM_EIO, errno, "renaming %s to %s", tmp, path);
        unlink(tmp);
        goto out;
    }
    slash = strrchr(dir, '/');
    if (slash != NULL) {
        *slash = '\0';
        fd = open(slash == dir ? "/" : dir, O_RDONLY | O_DIRECTORY |
                  O_CLOEXEC);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
        }
    }

out:
    free(tmp);
    free(dir);
    return r;
}

int prep_make_host_keys(const vmm_context *ctx, const char *vm_name,
                        const char *dir, const char *host,
                        const char *known_hosts_path)
{
    char key[4096], pub[4096 + 8];
    struct run_output *out = NULL;
    char *text = NULL, *line = NULL, *sp;
    size_t size = 0;
    int status = 0, r;

    if (vm_name == NULL || dir == NULL || host == NULL ||
        known_hosts_path == NULL)
        return error_set(VMM_EINVAL, "prep_make_host_keys: NULL argument");
    if (strpbrk(host, " \t\n") != NULL || host[0] == '\0')
        return error_set(VMM_EINVAL, "known-hosts host \"%s\" is empty or "
                         "holds whitespace", host);
    snprintf(key, sizeof(key), "%s/ssh_host_ed25519_key", dir);
    snprintf(pub, sizeof(pub), "%s.pub", key);

    /* A VM keeps its identity across starts: only a missing key is made. */
    if (access(key, F_OK) != 0 || access(pub, F_OK) != 0) {
        char *argv[] = { (char *)"ssh-keygen", (char *)"-q", (char *)"-t",
                         (char *)"ed25519", (char *)"-N", (char *)"",
                         (char *)"-C", (char *)vm_name, (char *)"-f", key,
                         NULL };

        unlink(key);
        unlink(pub);
        out = malloc(sizeof(*out));
        if (out == NULL)
            return error_set(VMM_ENOMEM, "ssh-keygen output buffer");
        r = run_program(argv, KEYGEN_TIMEOUT_MS, out, &status);
        if (r == 0 && status != 0)
            r = error_set(VMM_EPROCESS, "ssh-keygen for %s failed with "
                          "exit status %d: %s", key, status,
                          output_tail(out, 300));
        free(out);
        if (r < 0) {
            unlink(key);
            unlink(pub);
            return r;
        }
        log_info(ctx, COMPONENT, vm_name, "made ssh host key %s", key);
    }

    text = read_small_file(pub, &size);
    if (text == NULL)
        return error_code();
    /* "ssh-ed25519 AAAA... comment": keep type and key. */
    sp = strchr(text, ' ');
    if (strncmp(text, "ssh-ed25519 ", 12) != 0 || sp == NULL) {
        r = error_set(VMM_EIO, "%s is not an ed25519 public key", pub);
        goto out;
    }
    sp = strpbrk(sp + 1, " \n");
    if (sp != NULL)
        *sp = '\0';
    line = xasprintf("%s %s\n", host, text);
    if (line == NULL) {
        r = VMM_ENOMEM;
        goto out;
    }
    r = write_atomic(known_hosts_path, line, strlen(line), 0644);

out:
    free(text);
    free(line);
    return r;
}
