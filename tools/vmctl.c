/*
 * vmctl: create, start, stop and delete Firecracker microVMs from the
 * command line. This file holds the global options, argument walking,
 * error printing and the library context; the commands live in
 * vmctl-*.c.
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmctl.h"

static const char global_help[] =
    "Usage: vmctl [OPTIONS] COMMAND [ARGS...]\n"
    "\n"
    "Create, start, stop and delete Firecracker microVMs.\n"
    "\n"
    "Options:\n"
    "  --state-dir DIR      where VM records live (env LIBVMM_STATE_DIR;\n"
    "                       default /var/lib/libvmm)\n"
    "  --firecracker PATH   the firecracker binary (env LIBVMM_FIRECRACKER;\n"
    "                       default: firecracker in PATH)\n"
    "  -v, --verbose        print the library's log on stderr (twice: debug)\n"
    "  -h, --help           show this help\n"
    "  --version            show the library's version\n"
    "\n"
    "Commands:\n"
    "  create NAME --kernel FILE --rootfs FILE [...]   record and build a VM\n"
    "  start NAME [--timeout SECONDS]                  boot a stopped VM\n"
    "  stop NAME [--timeout SECONDS]                   graceful, then forced\n"
    "  kill NAME                                       end the VMM at once\n"
    "  delete NAME [--force]                           remove a VM entirely\n"
    "  show NAME [--json]                              one VM's settings\n"
    "  list [--json]                                   every VM\n"
    "  set NAME [--vcpus N] [--memory MIB]             change a stopped VM\n"
    "  ssh NAME [-- COMMAND...]                        log in to the guest\n"
    "  logs NAME [--follow]                            the VMM's log\n"
    "\n"
    "'vmctl COMMAND --help' describes a command.\n"
    "Exit status: 0 success, 1 failure, 2 bad command line,\n"
    "3 (ssh) the VM is not running.\n";

struct command {
    const char *name;
    int (*run)(struct vmctl *v, int argc, char **argv);
};

static const struct command commands[] = {
    {"create", cmd_create}, {"start", cmd_start}, {"stop", cmd_stop},
    {"kill", cmd_kill},     {"delete", cmd_delete}, {"show", cmd_show},
    {"list", cmd_list},     {"set", cmd_set},     {"ssh", cmd_ssh},
    {"logs", cmd_logs},
};

/*
 * Messages may carry names and file contents; control characters are
 * shown escaped so that one error stays one readable line. A newline in
 * a library message (a log tail) continues on an indented line.
 */
static void put_text(FILE *f, const char *s, bool lines)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '\n' && lines && s[1] != '\0')
            fputs("\n    ", f);
        else if (c == '\n' && lines)
            continue;
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
}

/* A name or word: every control character escaped, newlines included. */
static void put_escaped(FILE *f, const char *s)
{
    put_text(f, s, false);
}

static void put_prefix(struct vmctl *v, const char *name)
{
    vmctl_progress_end(v);
    fputs("vmctl: ", stderr);
    if (v->command != NULL)
        fprintf(stderr, "%s", v->command);
    if (name != NULL) {
        if (v->command != NULL)
            fputc(' ', stderr);
        if (name[0] == '\0')
            fputs("''", stderr);
        else
            put_escaped(stderr, name);
    }
    if (v->command != NULL || name != NULL)
        fputs(": ", stderr);
}

int vmctl_usage_error(struct vmctl *v, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    put_prefix(v, NULL);
    put_escaped(stderr, buf);
    if (v->command != NULL)
        fprintf(stderr, " (see 'vmctl %s --help')\n", v->command);
    else
        fputs(" (see 'vmctl --help')\n", stderr);
    return VMCTL_EXIT_USAGE;
}

int vmctl_fail(struct vmctl *v, const char *name, const char *fmt, ...)
{
    char buf[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    put_prefix(v, name);
    put_text(stderr, buf, true);
    fputc('\n', stderr);
    return VMCTL_EXIT_FAILURE;
}

int vmctl_fail_lib(struct vmctl *v, const char *name)
{
    const vmm_error *e = vmm_error_last();
    const char *msg = e->message;

    if (msg == NULL || msg[0] == '\0')
        msg = vmm_strerror(e->code);
    return vmctl_fail(v, name, "%s", msg);
}

/* --- argument walking ----------------------------------------------- */

static const struct vmctl_option *find_long(const struct vmctl_option *opts, const char *name,
                                            size_t len)
{
    for (; opts->name != NULL; opts++)
        if (strlen(opts->name) == len && strncmp(opts->name, name, len) == 0)
            return opts;
    return NULL;
}

static const struct vmctl_option *find_short(const struct vmctl_option *opts, char c)
{
    for (; opts->name != NULL; opts++)
        if (opts->short_name == c)
            return opts;
    return NULL;
}

/*
 * Return the next option's id with its value (or NULL), VMCTL_POSITIONAL
 * with the word in *value, VMCTL_HELP for -h/--help, VMCTL_END, or
 * VMCTL_BAD after printing a usage error. Options and positional words
 * may be mixed; "--" ends the options.
 */
int vmctl_next(struct vmctl *v, struct vmctl_args *it, const struct vmctl_option *opts,
               const char **value)
{
    const struct vmctl_option *o;
    const char *word, *eq;

    *value = NULL;
    if (it->bundle != NULL) {
        /* "-vv": flags without values may share one dash. */
        o = find_short(opts, *it->bundle);
        if (o == NULL || o->arg != VMCTL_ARG_NONE)
            return vmctl_usage_error(v, "unknown option '-%c'", *it->bundle), VMCTL_BAD;
        it->bundle = it->bundle[1] ? it->bundle + 1 : NULL;
        return o->id;
    }
    if (it->i >= it->argc)
        return VMCTL_END;
    word = it->argv[it->i++];

    if (it->options_done || word[0] != '-' || word[1] == '\0') {
        *value = word;
        return VMCTL_POSITIONAL;
    }
    if (strcmp(word, "--") == 0) {
        it->options_done = true;
        it->saw_dashdash = true;
        return vmctl_next(v, it, opts, value);
    }
    if (strcmp(word, "--help") == 0 || strcmp(word, "-h") == 0)
        return VMCTL_HELP;

    if (word[1] != '-') {
        /* Short options stand alone: "-v", "-i FILE", "-iFILE". */
        o = find_short(opts, word[1]);
        if (o == NULL)
            return vmctl_usage_error(v, "unknown option '%s'", word), VMCTL_BAD;
        if (o->arg == VMCTL_ARG_NONE) {
            if (word[2] != '\0')
                it->bundle = word + 2;
            return o->id;
        }
        if (word[2] != '\0') {
            *value = word + 2;
        } else if (it->i < it->argc && o->arg == VMCTL_ARG_REQUIRED) {
            *value = it->argv[it->i++];
        } else if (o->arg == VMCTL_ARG_REQUIRED) {
            return vmctl_usage_error(v, "option '-%c' needs a value", o->short_name),
                   VMCTL_BAD;
        }
        return o->id;
    }

    eq = strchr(word + 2, '=');
    o = find_long(opts, word + 2, eq ? (size_t)(eq - word - 2) : strlen(word + 2));
    if (o == NULL)
        return vmctl_usage_error(v, "unknown option '%.*s'",
                                 (int)(eq ? (size_t)(eq - word) : strlen(word)), word),
               VMCTL_BAD;
    if (o->arg == VMCTL_ARG_NONE) {
        if (eq != NULL)
            return vmctl_usage_error(v, "option '--%s' takes no value", o->name), VMCTL_BAD;
        return o->id;
    }
    if (eq != NULL) {
        *value = eq + 1;
    } else if (o->arg == VMCTL_ARG_REQUIRED) {
        if (it->i >= it->argc)
            return vmctl_usage_error(v, "option '--%s' needs a value", o->name), VMCTL_BAD;
        *value = it->argv[it->i++];
    } else if (it->i < it->argc && it->argv[it->i][0] != '-') {
        *value = it->argv[it->i++];
    }
    return o->id;
}

int vmctl_take_name(struct vmctl *v, const char *word, const char **name)
{
    if (*name != NULL)
        return vmctl_usage_error(v, "unexpected argument '%s'", word);
    *name = word;
    return 0;
}

int vmctl_need_name(struct vmctl *v, const char *name)
{
    if (name == NULL)
        return vmctl_usage_error(v, "no VM name given");
    return 0;
}

int vmctl_help(const char *text)
{
    fputs(text, stdout);
    return VMCTL_EXIT_OK;
}

int vmctl_parse(struct vmctl *v, int argc, char **argv, const struct vmctl_option *opts,
                const char **name, vmctl_option_fn *on_option, void *user)
{
    struct vmctl_args it = VMCTL_ARGS_INIT(argc, argv);
    const char *val, *none = "";
    int id, r = 0;

    /* Without a NAME to take, any word is one too many. */
    if (name == NULL)
        name = &none;
    while (r == 0 && (id = vmctl_next(v, &it, opts, &val)) != VMCTL_END) {
        if (id == VMCTL_BAD)
            return VMCTL_EXIT_USAGE;
        if (id == VMCTL_HELP)
            return -1;
        if (id == VMCTL_POSITIONAL)
            r = vmctl_take_name(v, val, name);
        else
            r = on_option(v, id, val, user);
    }
    if (r != 0 || name == &none)
        return r;
    return vmctl_need_name(v, *name);
}

static int set_flag(struct vmctl *v, int id, const char *value, void *flag)
{
    (void)v, (void)id, (void)value;
    *(bool *)flag = true;
    return 0;
}

int vmctl_parse_flag(struct vmctl *v, int argc, char **argv, const struct vmctl_option *opts,
                     const char **name, bool *flag)
{
    return vmctl_parse(v, argc, argv, opts, name, set_flag, flag);
}

/* --- numbers -------------------------------------------------------- */

/* Digits only: no sign, no blanks, no base prefixes, no overflow. */
static int parse_digits(const char *text, const char **end, uint64_t *out)
{
    uint64_t n = 0;
    const char *p = text;

    if (*p < '0' || *p > '9')
        return -EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');

        if (n > (UINT64_MAX - d) / 10)
            return -ERANGE;
        n = n * 10 + d;
    }
    *end = p;
    *out = n;
    return 0;
}

int vmctl_parse_u32(struct vmctl *v, const char *flag, const char *text, uint32_t min,
                    uint32_t max, uint32_t *out)
{
    const char *end;
    uint64_t n;
    int r = parse_digits(text, &end, &n);

    if (r == -EINVAL || (r == 0 && *end != '\0'))
        return vmctl_usage_error(v, "%s: '%s' is not a whole number", flag, text);
    if (r == -ERANGE || n > max)
        return vmctl_usage_error(v, "%s: %s is too large (at most %u)", flag, text, max);
    if (n < min)
        return vmctl_usage_error(v, "%s: %s is too small (at least %u)", flag, text, min);
    *out = (uint32_t)n;
    return 0;
}

/* A byte count with an optional K, M, G or T suffix (powers of 1024). */
int vmctl_parse_size(struct vmctl *v, const char *flag, const char *text, uint64_t *out)
{
    const char *end;
    uint64_t n;
    unsigned shift = 0;
    int r = parse_digits(text, &end, &n);

    if (r == -EINVAL)
        return vmctl_usage_error(v, "%s: '%s' is not a size (like 2G, 512M, 4096)", flag,
                                 text);
    if (r == 0) {
        switch (*end) {
        case '\0':
            break;
        case 'K': case 'k': shift = 10; end++; break;
        case 'M': case 'm': shift = 20; end++; break;
        case 'G': case 'g': shift = 30; end++; break;
        case 'T': case 't': shift = 40; end++; break;
        default:
            end = NULL;
        }
        if (end == NULL || *end != '\0')
            return vmctl_usage_error(v, "%s: '%s' is not a size (like 2G, 512M, 4096)",
                                     flag, text);
    }
    if (r == -ERANGE || (shift && n > (UINT64_MAX >> shift)))
        return vmctl_usage_error(v, "%s: %s is too large", flag, text);
    if (n == 0)
        return vmctl_usage_error(v, "%s: the size must not be 0", flag);
    *out = n << shift;
    return 0;
}

/* The library records paths; a relative one would change meaning with
 * the working directory of whoever starts the VM next. */
char *vmctl_absolute(const char *path)
{
    char cwd[PATH_MAX];
    char *abs;

    if (path[0] == '/' || path[0] == '\0')
        return strdup(path);
    if (getcwd(cwd, sizeof(cwd)) == NULL)
        return NULL;
    if (asprintf(&abs, "%s/%s", strcmp(cwd, "/") ? cwd : "", path) < 0)
        return NULL;
    return abs;
}

char *vmctl_read_file(const char *path, size_t max)
{
    FILE *f = fopen(path, "re");
    char *buf;
    size_t n;

    if (f == NULL)
        return NULL;
    buf = malloc(max + 1);
    if (buf == NULL) {
        fclose(f);
        errno = ENOMEM;
        return NULL;
    }
    n = fread(buf, 1, max + 1, f);
    if (ferror(f) || n > max) {
        int err = ferror(f) ? errno : EFBIG;

        fclose(f);
        free(buf);
        errno = err;
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* --- the library context ------------------------------------------- */

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void on_log(int32_t level, const char *component, const char *vm_name,
                   const char *message, void *user)
{
    static const char *const levels[] = {"", "error", "warning", "info", "debug"};
    struct vmctl *v = user;

    vmctl_progress_end(v);
    fprintf(stderr, "vmctl: [%s] %s", level >= 1 && level <= 4 ? levels[level] : "?",
            component);
    if (vm_name != NULL) {
        fputc(' ', stderr);
        put_escaped(stderr, vm_name);
    }
    fputs(": ", stderr);
    put_text(stderr, message, true);
    fputc('\n', stderr);
}

/* Redraws at most ten times a second, or when the percentage moves. */
static void on_progress(const char *vm_name, const char *stage, uint64_t done, uint64_t total,
                        void *user)
{
    struct vmctl *v = user;
    uint64_t now = now_ms();
    unsigned pct = total ? (unsigned)(done >= total ? 100 : done * 100 / total) : 0;

    if (!v->stderr_tty)
        return;
    if (v->progress_shown && pct == v->progress_last_pct && now - v->progress_last_ms < 100)
        return;
    v->progress_last_ms = now;
    v->progress_last_pct = pct;
    fputs("\r\033[K", stderr);
    put_escaped(stderr, vm_name);
    fputs(": ", stderr);
    put_escaped(stderr, stage);
    if (total != 0)
        fprintf(stderr, " %3u%% (%llu/%llu)", pct, (unsigned long long)done,
                (unsigned long long)total);
    else
        fprintf(stderr, " %llu", (unsigned long long)done);
    fflush(stderr);
    v->progress_shown = true;
}

void vmctl_progress_end(struct vmctl *v)
{
    if (!v->progress_shown)
        return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    v->progress_shown = false;
}

int vmctl_context(struct vmctl *v)
{
    vmm_context_options opts = VMM_CONTEXT_OPTIONS_INIT;

    if (v->ctx != NULL)
        return 0;
    opts.state_dir = v->state_dir;
    opts.firecracker = v->firecracker;
    opts.progress_fn = on_progress;
    opts.progress_user = v;
    if (v->verbose > 0) {
        opts.log_fn = on_log;
        opts.log_user = v;
        opts.log_level = v->verbose > 1 ? VMM_LOG_DEBUG : VMM_LOG_INFO;
    }
    if (vmm_context_new(&v->ctx, &opts) < 0)
        return vmctl_fail_lib(v, NULL);
    return 0;
}

int vmctl_open(struct vmctl *v, const char *name, vmm_vm **out)
{
    int r = vmctl_context(v);

    if (r != 0)
        return r;
    if (vmm_open(out, v->ctx, name) < 0)
        return vmctl_fail_lib(v, name);
    return 0;
}

const char *vmctl_state_name(int32_t state)
{
    switch (state) {
    case VMM_VM_STOPPED:
        return "stopped";
    case VMM_VM_RUNNING:
        return "running";
    case VMM_VM_PAUSED:
        return "paused";
    default:
        return "unknown";
    }
}

/* --- main ----------------------------------------------------------- */

enum { OPT_STATE_DIR = 1, OPT_FIRECRACKER, OPT_VERBOSE, OPT_VERSION };

static const struct vmctl_option global_opts[] = {
    {"state-dir", 0, VMCTL_ARG_REQUIRED, OPT_STATE_DIR},
    {"firecracker", 0, VMCTL_ARG_REQUIRED, OPT_FIRECRACKER},
    {"verbose", 'v', VMCTL_ARG_NONE, OPT_VERBOSE},
    {"version", 0, VMCTL_ARG_NONE, OPT_VERSION},
    {NULL, 0, 0, 0},
};

/* A path given as a path becomes absolute; a bare name is looked up in
 * PATH by the library when it runs the VMM. */
static const char *firecracker_path(const char *text, char **owned)
{
    if (strchr(text, '/') == NULL)
        return text;
    *owned = vmctl_absolute(text);
    return *owned;
}

int main(int argc, char **argv)
{
    struct vmctl v = {0};
    struct vmctl_args it = VMCTL_ARGS_INIT(argc, argv);
    const char *state_dir = getenv("LIBVMM_STATE_DIR");
    const char *firecracker = getenv("LIBVMM_FIRECRACKER");
    char *state_abs = NULL, *fc_abs = NULL;
    const struct command *cmd = NULL;
    const char *word = NULL;
    int id, status;

    /* A line in one write: vmctl runs side by side in scripts, and lines
     * put out a byte at a time would interleave on a shared stderr. */
    setvbuf(stderr, NULL, _IOLBF, BUFSIZ);
    v.stderr_tty = isatty(STDERR_FILENO) == 1;

    /* Global options end at the first word: the command. */
    while ((id = vmctl_next(&v, &it, global_opts, &word)) != VMCTL_END) {
        if (id == VMCTL_BAD)
            return VMCTL_EXIT_USAGE;
        if (id == VMCTL_HELP) {
            fputs(global_help, stdout);
            return VMCTL_EXIT_OK;
        }
        if (id == VMCTL_POSITIONAL)
            break;
        if (id == OPT_STATE_DIR)
            state_dir = word;
        else if (id == OPT_FIRECRACKER)
            firecracker = word;
        else if (id == OPT_VERBOSE)
            v.verbose++;
        else if (id == OPT_VERSION) {
            printf("vmctl (libvmm %s)\n", VMM_VERSION_STRING);
            return VMCTL_EXIT_OK;
        }
    }
    if (id == VMCTL_END || word == NULL) {
        fputs("vmctl: no command given (see 'vmctl --help')\n", stderr);
        return VMCTL_EXIT_USAGE;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, word) == 0)
            cmd = &commands[i];
    if (cmd == NULL) {
        fputs("vmctl: unknown command '", stderr);
        put_escaped(stderr, word);
        fputs("' (see 'vmctl --help')\n", stderr);
        return VMCTL_EXIT_USAGE;
    }
    v.command = cmd->name;

    if (state_dir != NULL && state_dir[0] == '\0')
        state_dir = NULL;
    if (firecracker != NULL && firecracker[0] == '\0')
        firecracker = NULL;
    if (state_dir != NULL) {
        state_abs = vmctl_absolute(state_dir);
        if (state_abs == NULL)
            return vmctl_fail(&v, NULL, "%s: %s", state_dir, strerror(errno));
        v.state_dir = state_abs;
    }
    if (firecracker != NULL) {
        v.firecracker = firecracker_path(firecracker, &fc_abs);
        if (v.firecracker == NULL)
            return vmctl_fail(&v, NULL, "%s: %s", firecracker, strerror(errno));
    }

    status = cmd->run(&v, argc - (it.i - 1), argv + (it.i - 1));

    vmctl_progress_end(&v);
    vmm_context_free(v.ctx);
    free(state_abs);
    free(fc_abs);
    if (fflush(stdout) != 0 && status == VMCTL_EXIT_OK) {
        fprintf(stderr, "vmctl: %s: writing the output: %s\n", v.command, strerror(errno));
        status = VMCTL_EXIT_FAILURE;
    }
    return status;
}
