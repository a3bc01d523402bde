/*
 * vmctl: shared declarations of the command-line tool's files.
 *
 * vmctl only parses arguments and prints results; every decision about a
 * VM is the library's.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef VMCTL_H
#define VMCTL_H

#include <stdbool.h>
#include <stdint.h>

#include <libvmm/libvmm.h>
#include <libvmm/vm.h>

/* Exit statuses. */
#define VMCTL_EXIT_OK 0
#define VMCTL_EXIT_FAILURE 1     /* the library or the system refused */
#define VMCTL_EXIT_USAGE 2       /* the command line is wrong */
#define VMCTL_EXIT_NOT_RUNNING 3 /* ssh: the VM does not run */

/* What every command sees: the global options and the library context. */
struct vmctl {
    const char *state_dir;   /* absolute, or NULL for the default */
    const char *firecracker; /* NULL for the default */
    int verbose;             /* -v count */
    const char *command;     /* for messages: "create", "list", ... */
    vmm_context *ctx;        /* made by vmctl_context() on first use */
    bool stderr_tty;
    bool progress_shown; /* a progress line is on the terminal */
    uint64_t progress_last_ms;
    unsigned progress_last_pct;
};

/* How an option takes its value. */
enum vmctl_arg {
    VMCTL_ARG_NONE,     /* --flag */
    VMCTL_ARG_REQUIRED, /* --opt VALUE or --opt=VALUE */
    VMCTL_ARG_OPTIONAL, /* --opt, --opt=VALUE, or --opt VALUE when VALUE
                           does not start with '-' */
};

struct vmctl_option {
    const char *name; /* long name without "--" */
    char short_name;  /* 0 for none */
    enum vmctl_arg arg;
    int id; /* > 0 */
};

/* Walks a command's arguments; see vmctl_next(). */
struct vmctl_args {
    int argc;
    char **argv;
    int i;
    bool options_done; /* after "--", or when a caller stops options */
    bool saw_dashdash;
    const char *bundle; /* the rest of "-vv" still to be read */
};

/* Walks argv[1..argc-1]: argv[0] is the program or command name. */
#define VMCTL_ARGS_INIT(argc, argv) {.argc = (argc), .argv = (argv), .i = 1}

#define VMCTL_POSITIONAL 0
#define VMCTL_END (-1)
#define VMCTL_BAD (-2)
#define VMCTL_HELP (-3)

int vmctl_next(struct vmctl *v, struct vmctl_args *it, const struct vmctl_option *opts,
               const char **value);

/* Keeps the one positional NAME in *name; a second one is a usage error. */
int vmctl_take_name(struct vmctl *v, const char *word, const char **name);
/* A usage error unless a NAME was given. */
int vmctl_need_name(struct vmctl *v, const char *name);
/* Prints a command's help on stdout; returns VMCTL_EXIT_OK. */
int vmctl_help(const char *text);

/* Takes one option of a command: 0, or an exit status after a usage
 * error. */
typedef int vmctl_option_fn(struct vmctl *v, int id, const char *value, void *user);

/*
 * Walks the arguments of a command that takes NAME (name != NULL; then
 * required) or no word at all (name == NULL), handing each of opts met to
 * on_option. Returns 0, an exit status after a usage error, or -1 for
 * --help (nothing printed).
 */
int vmctl_parse(struct vmctl *v, int argc, char **argv, const struct vmctl_option *opts,
                const char **name, vmctl_option_fn *on_option, void *user);

/*
 * vmctl_parse() for options without values: any of opts sets *flag.
 */
int vmctl_parse_flag(struct vmctl *v, int argc, char **argv, const struct vmctl_option *opts,
                     const char **name, bool *flag);

int vmctl_usage_error(struct vmctl *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int vmctl_fail(struct vmctl *v, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int vmctl_fail_lib(struct vmctl *v, const char *name);
void vmctl_progress_end(struct vmctl *v);

int vmctl_parse_u32(struct vmctl *v, const char *flag, const char *text, uint32_t min,
                    uint32_t max, uint32_t *out);
int vmctl_parse_size(struct vmctl *v, const char *flag, const char *text, uint64_t *out);
char *vmctl_absolute(const char *path);

int vmctl_context(struct vmctl *v);
int vmctl_open(struct vmctl *v, const char *name, vmm_vm **out);
const char *vmctl_state_name(int32_t state);

/* Commands: each returns an exit status. argv[0] is the command's name. */
int cmd_create(struct vmctl *v, int argc, char **argv);
int cmd_start(struct vmctl *v, int argc, char **argv);
int cmd_stop(struct vmctl *v, int argc, char **argv);
int cmd_kill(struct vmctl *v, int argc, char **argv);
int cmd_delete(struct vmctl *v, int argc, char **argv);
int cmd_set(struct vmctl *v, int argc, char **argv);
int cmd_show(struct vmctl *v, int argc, char **argv);
int cmd_list(struct vmctl *v, int argc, char **argv);
int cmd_ssh(struct vmctl *v, int argc, char **argv);
int cmd_logs(struct vmctl *v, int argc, char **argv);

/* The key pair vmctl makes on first use; see vmctl-ssh.c. */
int vmctl_default_key(struct vmctl *v, const char *name, char **pub_path);

/* Reads a whole small file; NULL with errno set on failure. */
char *vmctl_read_file(const char *path, size_t max);

#endif /* VMCTL_H */
