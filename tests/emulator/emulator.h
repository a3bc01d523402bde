/*
 * fc-emulator: declarations shared by its modules.
 *
 *   main.c    command line, failure-injection knobs, event loop, logging
 *   http.c    HTTP/1.1 over the API Unix socket (connections, framing)
 *   api.c     Firecracker's endpoints: routing, state machine, VM config
 *   schema.c  request body schemas and a serde-like validator
 *   qemu.c    QEMU mode: the configured guest under qemu-system-x86_64
 *
 * The VM configuration lives in struct vm_config; in QEMU mode qemu.c
 * turns it into a qemu-system-x86_64 command line on InstanceStart.
 */
#ifndef FC_EMULATOR_H
#define FC_EMULATOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

/* The Firecracker release whose API and command line this emulates. */
#define FC_VERSION "1.16.1"
#define FC_DEFAULT_API_SOCK "/run/firecracker.socket"
#define FC_DEFAULT_INSTANCE_ID "anonymous-instance"
#define FC_DEFAULT_MAX_PAYLOAD 51200
#define FC_MAX_VCPUS 32
#define FC_DEFAULT_MEM_MIB 128
#define FC_CMDLINE_MAX 2048

/* Firecracker's own exit codes (FcExitCode), the ones the emulator uses. */
enum fc_exit {
	FC_EXIT_OK = 0,
	FC_EXIT_GENERIC = 1,
	FC_EXIT_BAD_CONFIGURATION = 152,
	FC_EXIT_ARG_PARSING = 153,
};

enum log_level { LOG_OFF, LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG, LOG_TRACE };

enum vm_state { VM_NOT_STARTED, VM_RUNNING, VM_PAUSED };

#define MAX_DRIVES 64
#define MAX_NETS 64

/*
 * Strings point into doc, the parsed request body that configured the
 * device; the device owns doc and frees it when replaced.
 */
struct drive_config {
	yajl_val doc;
	const char *drive_id;
	const char *path_on_host;
	const char *partuuid;
	const char *cache_type;
	const char *io_engine;
	char *patched_path;		/* PATCH's path_on_host, owned */
	bool is_root_device;
	bool is_read_only;
	yajl_val rate_limiter;
};

struct net_config {
	yajl_val doc;
	const char *iface_id;
	const char *host_dev_name;
	const char *guest_mac;
	long long mtu;			/* 0: not set */
	yajl_val rx_rate_limiter;
	yajl_val tx_rate_limiter;
};

struct machine_config {
	unsigned vcpu_count;
	uint64_t mem_size_mib;
	bool smt;
	bool track_dirty_pages;
	const char *cpu_template;	/* static string, NULL: none */
	const char *huge_pages;		/* static string */
};

/* Everything a guest boot needs, as configured through the API. */
struct vm_config {
	yajl_val boot_doc;		/* NULL until PUT /boot-source */
	const char *kernel_image_path;
	const char *initrd_path;
	const char *boot_args;

	struct machine_config machine;

	struct drive_config drives[MAX_DRIVES];	/* root device first */
	size_t n_drives;
	struct net_config nets[MAX_NETS];
	size_t n_nets;

	/* Devices the emulator only records: their request bodies. */
	yajl_val logger;
	yajl_val metrics;
	yajl_val vsock;
	yajl_val entropy;
	yajl_val balloon;
	yajl_val mmds_config;
	yajl_val serial;
	yajl_val cpu_config;
	yajl_val memory_hotplug;
	yajl_val mmds;
};

/* Process-wide emulator state; main.c owns the one instance. */
struct emulator {
	const char *api_sock;
	const char *instance_id;
	size_t max_payload;

	enum log_level log_level;
	bool show_level;
	bool show_log_origin;
	int log_fd;			/* -1: no logger */
	int metrics_fd;			/* -1: no metrics */
	int trace_fd;			/* -1: FCEMU_TRACE unset */

	/* Failure injection (FCEMU_*), see main.c. */
	const char *start_fault;
	const char *hang_on;		/* "METHOD /path" */
	double exit_after_start_s;	/* < 0: never */
	int exit_code;
	int exit_signal;		/* 0: exit with exit_code instead */
	long ctrl_alt_del_ms;		/* < 0: the guest ignores it */

	/* QEMU mode (FCEMU_QEMU=1): a real guest instead of none. */
	bool qemu_mode;
	const char *qemu_bin;		/* FCEMU_QEMU_BIN */
	const char *qemu_accel;		/* FCEMU_QEMU_ACCEL, default tcg */

	enum vm_state state;
	struct vm_config vm;

	/* Monotonic milliseconds at which to exit; 0: not scheduled. */
	uint64_t exit_at_ms;
	int scheduled_exit_code;
	int scheduled_exit_signal;
	bool ctrl_alt_del_pending;	/* arrived while paused */
};

/* main.c */
uint64_t now_ms(void);
void emu_log(struct emulator *emu, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void emu_schedule_exit(struct emulator *emu, uint64_t delay_ms, int code,
		       int sig);

/* http.c */
struct http_response {
	int status;		/* 0: never answer (FCEMU_HANG_ON) */
	char *body;		/* malloc'ed JSON or NULL */
};

int http_serve(struct emulator *emu, int listen_fd);

/* api.c */
void api_init(struct emulator *emu);
/* {"fault_message": message} as a malloc'ed string. */
char *api_fault_body(const char *message);
void api_handle(struct emulator *emu, const char *method, const char *path,
		const char *body, size_t body_len, struct http_response *resp);

/* qemu.c: one guest per process; all of these are no-ops without one. */
struct pollfd;

#define QEMU_POLL_FDS 3

/*
 * Boot emu->vm under QEMU. Returns 0 once QEMU has started and survived
 * its first moments, else -1 with a malloc'ed fault message in *fault
 * (QEMU's stderr tail included) and no QEMU left running.
 */
int qemu_start(struct emulator *emu, char **fault);
/* QMP stop/cont; -1 with a malloc'ed *fault on failure. */
int qemu_set_paused(struct emulator *emu, bool paused, char **fault);
/* Ctrl+Alt+Del into the guest's keyboard; -1 with *fault on failure. */
int qemu_ctrl_alt_del(struct emulator *emu, char **fault);
/* Set emu->state from QMP query-status. */
void qemu_refresh_state(struct emulator *emu);
/* Fill at most QEMU_POLL_FDS entries of fds; how many were filled. */
size_t qemu_poll_fds(struct pollfd *fds);
/* Handle poll() results for the entries qemu_poll_fds() filled. */
void qemu_poll_events(struct emulator *emu, const struct pollfd *fds,
		      size_t n);
/* SIGKILL and reap QEMU, if it runs. */
void qemu_stop(struct emulator *emu);

/* schema.c */
struct jschema;

extern const struct jschema schema_instance_action;
extern const struct jschema schema_boot_source;
extern const struct jschema schema_machine_config;
extern const struct jschema schema_machine_config_update;
extern const struct jschema schema_drive;
extern const struct jschema schema_partial_drive;
extern const struct jschema schema_net;
extern const struct jschema schema_partial_net;
extern const struct jschema schema_logger;
extern const struct jschema schema_metrics;
extern const struct jschema schema_vsock;
extern const struct jschema schema_entropy;
extern const struct jschema schema_serial;
extern const struct jschema schema_balloon;
extern const struct jschema schema_balloon_update;
extern const struct jschema schema_balloon_stats_update;
extern const struct jschema schema_balloon_start_cmd;
extern const struct jschema schema_cpu_config;
extern const struct jschema schema_pmem;
extern const struct jschema schema_partial_pmem;
extern const struct jschema schema_mmds_config;
extern const struct jschema schema_hotplug_config;
extern const struct jschema schema_hotplug_update;
extern const struct jschema schema_snapshot_create;
extern const struct jschema schema_snapshot_load;
extern const struct jschema schema_vm_state;

/*
 * Check v against schema the way serde with deny_unknown_fields would.
 * Returns NULL when it conforms, else a malloc'ed message in serde's words
 * ("missing field `drive_id`").
 */
char *schema_check(const struct jschema *schema, yajl_val v);

/* The canonical (static) spelling of an enum value of a checked body. */
const char *schema_variant(const struct jschema *schema, const char *field,
			   const char *value);

/* Emit v through g unchanged (numbers keep their text). */
void json_gen_value(yajl_gen g, yajl_val v);

#endif
