/*
 * vmctl: ssh into a guest, vmctl's own key pair, and the VMM's log.
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmctl.h"

extern char **environ;

/* Seconds ssh waits for the guest to answer. */
#define SSH_CONNECT_TIMEOUT "10"
/* How often logs --follow looks for new data, and for the VMM's end. */
#define FOLLOW_POLL_MS 200

static const char ssh_help[] =
    "Usage: vmctl ssh NAME [-i KEY] [[--] COMMAND [ARGS...]]\n"
    "\n"
    "Log in to the guest as root with the system's ssh client, or run\n"
    "COMMAND there. The guest's host key is checked strictly against the\n"
    "VM's own known-hosts file. For a VM in a network namespace, vmctl\n"
    "enters that namespace first. A VM that is not running is reported as\n"
    "such (exit status 3) rather than tried.\n"
    "\n"
    "A single COMMAND word is handed to the guest's shell as it is, so\n"
    "'ls /root | wc -l' works; with ARGS, every word arrives intact, as\n"
    "its own argument: vmctl ssh vm1 -- sh -c 'echo hi > /tmp/f'.\n"
    "\n"
    "  -i, --identity KEY    private key to use (default: vmctl's own,\n"
    "                        STATE_DIR/ssh/id_ed25519)\n";

static const char logs_help[] =
    "Usage: vmctl logs NAME [--follow]\n"
    "\n"
    "Print the VMM's log: Firecracker's output and the guest's console.\n"
    "\n"
    "  -f, --follow          keep printing what is appended until\n"
    "                        interrupted or until the VMM exits\n";

/* --- vmctl's key pair ------------------------------------------------- */

static int mkdirs(const char *path, mode_t mode)
{
    char buf[4096];
    size_t len = strlen(path);

    if (len >= sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

static int run_keygen(struct vmctl *v, const char *name, const char *path)
{
    char *const argv[] = {"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vmctl",
                          "-f", (char *)path, NULL};
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int status, r;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    r = posix_spawnp(&pid, "ssh-keygen", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (r != 0)
        return vmctl_fail(v, name, "running ssh-keygen: %s (install it, or give --ssh-key)",
                          strerror(r));
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return vmctl_fail(v, name, "waiting for ssh-keygen: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return vmctl_fail(v, name, "ssh-keygen failed making %s", path);
    return 0;
}

/*
 * Make STATE_DIR/ssh/id_ed25519{,.pub} unless they exist. A lock keeps
 * concurrent creates from racing; the pair is made under a temporary name
 * and renamed into place, public half first, so the private key's
 * presence means the pair is whole.
 */
int vmctl_default_key(struct vmctl *v, const char *name, char **pub_path)
{
    const char *state = vmm_context_state_dir(v->ctx);
    char *dir = NULL, *lock = NULL, *key = NULL, *pub = NULL, *tmp = NULL, *tmp_pub = NULL;
    struct stat st;
    int fd = -1, r;

    if (asprintf(&dir, "%s/ssh", state) < 0 || asprintf(&lock, "%s/lock", dir) < 0 ||
        asprintf(&key, "%s/id_ed25519", dir) < 0 || asprintf(&pub, "%s.pub", key) < 0 ||
        asprintf(&tmp, "%s.tmp.%d", key, (int)getpid()) < 0 ||
        asprintf(&tmp_pub, "%s.pub", tmp) < 0) {
        r = vmctl_fail(v, name, "out of memory");
        goto out;
    }
    if (mkdirs(dir, 0700) < 0) {
        r = vmctl_fail(v, name, "%s: %s", dir, strerror(errno));
        goto out;
    }
    fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX) < 0) {
        r = vmctl_fail(v, name, "%s: %s", lock, strerror(errno));
        goto out;
    }
    if (stat(key, &st) == 0 && stat(pub, &st) == 0) {
        r = 0;
        goto out;
    }

    unlink(tmp);
    unlink(tmp_pub);
    if ((r = run_keygen(v, name, tmp)) != 0)
        goto out;
    if (rename(tmp_pub, pub) < 0 || rename(tmp, key) < 0) {
        r = vmctl_fail(v, name, "installing %s: %s", key, strerror(errno));
        unlink(tmp);
        unlink(tmp_pub);
        goto out;
    }
    r = 0;

out:
    if (fd >= 0)
        close(fd);
    if (r == 0) {
        *pub_path = pub;
        pub = NULL;
    }
    free(dir);
    free(lock);
    free(key);
    free(pub);
    free(tmp);
    free(tmp_pub);
    return r;
}

/* --- ssh ------------------------------------------------------------- */

enum { SSH_IDENTITY = 1 };

static const struct vmctl_option ssh_opts[] = {
    {"identity", 'i', VMCTL_ARG_REQUIRED, SSH_IDENTITY},
    {NULL, 0, 0, 0},
};

/* ssh splits option values at blanks unless they are quoted. */
static char *ssh_option(const char *key, const char *value)
{
    char *s;

    if (strpbrk(value, " \t\"") != NULL) {
        if (asprintf(&s, "%s=\"%s\"", key, value) < 0)
            return NULL;
    } else if (asprintf(&s, "%s=%s", key, value) < 0) {
        return NULL;
    }
    return s;
}

static int enter_netns(struct vmctl *v, const char *name, const char *netns)
{
    char path[4096];
    int fd;

    snprintf(path, sizeof(path), "/run/netns/%s", netns);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vmctl_fail(v, name, "network namespace %s: %s", path, strerror(errno));
    if (setns(fd, CLONE_NEWNET) < 0) {
        int err = errno;

        close(fd);
        return vmctl_fail(v, name, "entering network namespace %s: %s", netns,
                          strerror(err));
    }
    close(fd);
    return 0;
}

/*
 * ssh joins the words of a remote command with spaces and gives the line
 * to the guest's shell; single-quoting each word keeps it one argument.
 */
static char *shell_quote(const char *word)
{
    size_t len = 2;
    char *out, *p;

    for (const char *c = word; *c != '\0'; c++)
        len += *c == '\'' ? 4 : 1;
    out = malloc(len + 1);
    if (out == NULL)
        return NULL;
    p = out;
    *p++ = '\'';
    for (const char *c = word; *c != '\0'; c++) {
        if (*c == '\'') {
            memcpy(p, "'\\''", 4);
            p += 4;
        } else {
            *p++ = *c;
        }
    }
    *p++ = '\'';
    *p = '\0';
    return out;
}

int cmd_ssh(struct vmctl *v, int argc, char **argv)
{
    struct vmctl_args it = VMCTL_ARGS_INIT(argc, argv);
    const char *name = NULL, *identity = NULL, *val;
    char *own_key = NULL, *known = NULL, *target = NULL;
    char **cmd = NULL, **args = NULL, **quoted = NULL;
    int ncmd = 0, n = 0, id, r;
    vmm_vm *vm = NULL;
    struct stat st;

    while ((id = vmctl_next(v, &it, ssh_opts, &val)) != VMCTL_END) {
        if (id == VMCTL_BAD)
            return VMCTL_EXIT_USAGE;
        if (id == VMCTL_HELP)
            return vmctl_help(ssh_help);
        if (id == SSH_IDENTITY) {
            identity = val;
        } else if (name == NULL) {
            name = val;
        } else {
            /* The remote command: everything from here on, verbatim. */
            cmd = argv + it.i - 1;
            ncmd = argc - (it.i - 1);
            break;
        }
    }
    if ((r = vmctl_need_name(v, name)) != 0 || (r = vmctl_open(v, name, &vm)) != 0)
        return r;

    if (vmm_vm_state(vm) != VMM_VM_RUNNING) {
        const char *last = vmm_vm_last_exit(vm);

        if (vmm_vm_state(vm) == VMM_VM_PAUSED)
            vmctl_fail(v, name, "vm %s is paused", name);
        else if (last != NULL)
            vmctl_fail(v, name, "vm %s is not running (last exit: %s)", name, last);
        else
            vmctl_fail(v, name, "vm %s is not running", name);
        r = VMCTL_EXIT_NOT_RUNNING;
        goto out;
    }
    if (vmm_vm_guest_ip(vm) == NULL) {
        r = vmctl_fail(v, name, "vm %s has no network (it was created with --no-net)", name);
        goto out;
    }
    if (identity == NULL) {
        if (asprintf(&own_key, "%s/ssh/id_ed25519", vmm_context_state_dir(v->ctx)) < 0) {
            r = vmctl_fail(v, name, "out of memory");
            goto out;
        }
        if (stat(own_key, &st) == 0)
            identity = own_key;
    }
    known = ssh_option("UserKnownHostsFile", vmm_vm_known_hosts(vm));
    if (known == NULL || asprintf(&target, "root@%s", vmm_vm_guest_ip(vm)) < 0) {
        r = vmctl_fail(v, name, "out of memory");
        goto out;
    }
    args = calloc((size_t)ncmd + 24, sizeof(*args));
    if (args == NULL) {
        r = vmctl_fail(v, name, "out of memory");
        goto out;
    }
    args[n++] = "ssh";
    if (identity != NULL) {
        args[n++] = "-i";
        args[n++] = (char *)identity;
        args[n++] = "-o";
        args[n++] = "IdentitiesOnly=yes";
    }
    args[n++] = "-o";
    args[n++] = known;
    args[n++] = "-o";
    args[n++] = "GlobalKnownHostsFile=/dev/null";
    args[n++] = "-o";
    args[n++] = "StrictHostKeyChecking=yes";
    args[n++] = "-o";
    args[n++] = "BatchMode=yes";
    args[n++] = "-o";
    args[n++] = "ConnectTimeout=" SSH_CONNECT_TIMEOUT;
    args[n++] = "--";
    args[n++] = target;
    if (ncmd > 1 && (quoted = calloc((size_t)ncmd, sizeof(*quoted))) == NULL) {
        r = vmctl_fail(v, name, "out of memory");
        goto out;
    }
    for (int i = 0; i < ncmd; i++) {
        if (quoted != NULL && (quoted[i] = shell_quote(cmd[i])) == NULL) {
            r = vmctl_fail(v, name, "out of memory");
            goto out;
        }
        args[n++] = quoted != NULL ? quoted[i] : cmd[i];
    }
    args[n] = NULL;

    if (vmm_vm_netns(vm) != NULL && (r = enter_netns(v, name, vmm_vm_netns(vm))) != 0)
        goto out;
    fflush(stdout);
    execvp("ssh", args);
    r = vmctl_fail(v, name, "running ssh: %s", strerror(errno));

out:
    vmm_vm_free(vm);
    for (int i = 0; quoted != NULL && i < ncmd; i++)
        free(quoted[i]);
    free(quoted);
    free(args);
    free(own_key);
    free(known);
    free(target);
    return r;
}

/* --- logs ------------------------------------------------------------ */

enum { LOGS_FOLLOW = 1 };

static const struct vmctl_option logs_opts[] = {
    {"follow", 'f', VMCTL_ARG_NONE, LOGS_FOLLOW},
    {NULL, 0, 0, 0},
};

/* Copy what fd holds from its offset to stdout; -1 on a failed read. */
static int copy_out(int fd)
{
    char buf[65536];
    ssize_t got;

    while ((got = read(fd, buf, sizeof(buf))) != 0) {
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (fwrite(buf, 1, (size_t)got, stdout) != (size_t)got)
            return -1;
    }
    fflush(stdout);
    return 0;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/*
 * Follow the log until the VMM ends. A restart may recreate or truncate
 * the file: a new inode is reopened, a shorter file reread from the top.
 */
static int follow(struct vmctl *v, const char *name, vmm_vm *vm, const char *path, int fd)
{
    struct stat now, cur;

    for (;;) {
        bool running;

        if (copy_out(fd) < 0)
            return vmctl_fail(v, name, "%s: %s", path, strerror(errno));
        if (vmm_vm_refresh(vm) < 0)
            return vmctl_fail_lib(v, name);
        running = vmm_vm_state(vm) != VMM_VM_STOPPED;

        if (fstat(fd, &cur) == 0 && stat(path, &now) == 0) {
            if (now.st_ino != cur.st_ino || now.st_dev != cur.st_dev) {
                int nfd = open(path, O_RDONLY | O_CLOEXEC);

                if (nfd >= 0) {
                    copy_out(fd);
                    close(fd);
                    fd = nfd;
                    continue;
                }
            } else if (lseek(fd, 0, SEEK_CUR) > cur.st_size) {
                lseek(fd, 0, SEEK_SET);
                continue;
            }
        }
        if (!running) {
            copy_out(fd);
            close(fd);
            return VMCTL_EXIT_OK;
        }
        sleep_ms(FOLLOW_POLL_MS);
    }
}

int cmd_logs(struct vmctl *v, int argc, char **argv)
{
    const char *name = NULL;
    char *path = NULL;
    bool follow_on = false;
    vmm_vm *vm = NULL;
    int fd, r = vmctl_parse_flag(v, argc, argv, logs_opts, &name, &follow_on);

    if (r < 0)
        return vmctl_help(logs_help);
    if (r != 0 || (r = vmctl_open(v, name, &vm)) != 0)
        return r;

    /* A copy: refresh, which follow calls, ends the borrowed string. */
    if (vmm_vm_log_path(vm) == NULL) {
        r = vmctl_fail(v, name, "vm %s has no log", name);
        goto out;
    }
    path = strdup(vmm_vm_log_path(vm));
    if (path == NULL) {
        r = vmctl_fail(v, name, "out of memory");
        goto out;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            r = vmctl_fail(v, name, "no log yet at %s (the VM has not been started)", path);
        else
            r = vmctl_fail(v, name, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (follow_on) {
        r = follow(v, name, vm, path, fd);
        goto out;
    }
    r = copy_out(fd) < 0 ? vmctl_fail(v, name, "%s: %s", path, strerror(errno))
                         : VMCTL_EXIT_OK;
    close(fd);

out:
    vmm_vm_free(vm);
    free(path);
    return r;
}
