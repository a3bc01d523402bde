/*
 * Firecracker's API endpoints: routing, the pre-boot/post-boot state
 * machine, and the VM configuration they build.
 *
 * Requests are checked in Firecracker's order: path and method, then the
 * body (serde), then path id against body id, then whether the operation
 * fits the VM's state, then the semantic checks of the VMM. Fault messages
 * repeat Firecracker's where they are known; the emulator's own refusals
 * say "by the Firecracker API emulator" so nobody mistakes them.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "emulator.h"

#define MSG_POST_BOOT \
	"The requested operation is not supported after starting the microVM."
#define MSG_PRE_BOOT \
	"The requested operation is not supported before starting the microVM."
#define MSG_SERDE \
	"An error occurred when deserializing the json body of a request: "
#define MSG_ID_MISMATCH \
	"The id from the path does not match the id from the body!"

/* One request as the handlers see it. */
struct req {
	const char *method;
	const char *path;	/* without the query */
	const char *seg[4];	/* path segments, NULL past the last */
	const char *body;
	yajl_val doc;		/* parsed body; a handler may keep it */
};

char *api_fault_body(const char *message)
{
	yajl_gen g = yajl_gen_alloc(NULL);
	const unsigned char *buf;
	size_t len;
	char *body = NULL;

	if (!g)
		return NULL;
	yajl_gen_map_open(g);
	yajl_gen_string(g, (const unsigned char *)"fault_message", 13);
	yajl_gen_string(g, (const unsigned char *)message, strlen(message));
	yajl_gen_map_close(g);
	if (yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok)
		body = strndup((const char *)buf, len);
	yajl_gen_free(g);
	return body;
}

typedef void handler_fn(struct emulator *emu, struct req *r,
			struct http_response *resp);

static void set_fault(struct http_response *resp, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_fault(struct http_response *resp, const char *fmt, ...)
{
	char *text = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&text, fmt, ap) < 0)
		text = NULL;
	va_end(ap);

	resp->status = 400;
	free(resp->body);
	resp->body = text ? api_fault_body(text) : NULL;
	free(text);
}

static void set_json(struct http_response *resp, yajl_gen g)
{
	const unsigned char *buf;
	size_t len;

	resp->status = 200;
	if (yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok)
		resp->body = strndup((const char *)buf, len);
	yajl_gen_free(g);
}

/* An io::Error as Rust prints it. */
static const char *os_error(int err)
{
	static char buf[160];

	snprintf(buf, sizeof(buf), "%s (os error %d)", strerror(err), err);
	return buf;
}

static void not_emulated(struct http_response *resp, struct req *r)
{
	set_fault(resp, "The requested operation is not supported by the "
		  "Firecracker API emulator: %s %s.", r->method, r->path);
}

/* --- small JSON output helpers ------------------------------------- */

static void g_str(yajl_gen g, const char *s)
{
	if (s)
		yajl_gen_string(g, (const unsigned char *)s, strlen(s));
	else
		yajl_gen_null(g);
}

static void g_key(yajl_gen g, const char *k)
{
	g_str(g, k);
}

static void g_val(yajl_gen g, yajl_val v)
{
	if (v)
		json_gen_value(g, v);
	else
		yajl_gen_null(g);
}

static yajl_gen g_new(void)
{
	return yajl_gen_alloc(NULL);
}

/* --- body access ----------------------------------------------------- */

static yajl_val field(yajl_val obj, const char *name)
{
	yajl_val v = yajl_tree_get(obj, (const char *[]){ name, NULL },
				   yajl_t_any);

	return v && !YAJL_IS_NULL(v) ? v : NULL;
}

static const char *field_str(yajl_val obj, const char *name)
{
	yajl_val v = field(obj, name);

	return v ? v->u.string : NULL;
}

static bool field_bool(yajl_val obj, const char *name, bool dflt)
{
	yajl_val v = field(obj, name);

	return v ? YAJL_IS_TRUE(v) : dflt;
}

/* Parse and check r->body against schema; false once resp holds a fault. */
static bool parse_body(struct req *r, const struct jschema *schema,
		       struct http_response *resp)
{
	char *err;

	if (!r->doc) {
		char errbuf[256];
		yajl_val doc = yajl_tree_parse(r->body, errbuf, sizeof(errbuf));
		size_t n;

		if (!doc) {
			/* yajl's message ends in a newline and a context. */
			n = strcspn(errbuf, "\n");
			errbuf[n] = '\0';
			while (n && errbuf[n - 1] == '.')
				errbuf[--n] = '\0';
			set_fault(resp, MSG_SERDE "%s.", errbuf);
			return false;
		}
		r->doc = doc;
	}
	if (!schema)
		return true;
	err = schema_check(schema, r->doc);
	if (err) {
		set_fault(resp, MSG_SERDE "%s.", err);
		free(err);
		return false;
	}
	return true;
}

/* Firecracker's checked_id() on a path parameter. */
static bool check_path_id(const char *id, struct http_response *resp)
{
	if (!id || !*id) {
		set_fault(resp, "The ID cannot be empty.");
		return false;
	}
	for (const char *p = id; *p; p++) {
		if (*p != '_' && !(*p >= 'a' && *p <= 'z') &&
		    !(*p >= 'A' && *p <= 'Z') && !(*p >= '0' && *p <= '9')) {
			set_fault(resp, "API Resource IDs can only contain "
				  "alphanumeric characters and underscores.");
			return false;
		}
	}
	return true;
}

static bool pre_boot(struct emulator *emu, struct http_response *resp)
{
	if (emu->state == VM_NOT_STARTED)
		return true;
	set_fault(resp, MSG_POST_BOOT);
	return false;
}

static bool post_boot(struct emulator *emu, struct http_response *resp)
{
	if (emu->state != VM_NOT_STARTED)
		return true;
	set_fault(resp, MSG_PRE_BOOT);
	return false;
}

/* Replace a recorded device body with the request's. */
static void keep_doc(yajl_val *slot, struct req *r)
{
	yajl_tree_free(*slot);
	*slot = r->doc;
	r->doc = NULL;
}

/* Firecracker opens a file when it is configured, not at boot. */
static int probe_file(const char *path, bool writable)
{
	int fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);

	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

/* --- GET ------------------------------------------------------------- */

static const char *state_name(enum vm_state s)
{
	switch (s) {
	case VM_RUNNING: return "Running";
	case VM_PAUSED: return "Paused";
	default: return "Not started";
	}
}

static void get_instance_info(struct emulator *emu, struct req *r,
			      struct http_response *resp)
{
	yajl_gen g = g_new();

	(void)r;
	if (emu->qemu_mode && emu->state != VM_NOT_STARTED)
		qemu_refresh_state(emu);
	yajl_gen_map_open(g);
	g_key(g, "id");
	g_str(g, emu->instance_id);
	g_key(g, "state");
	g_str(g, state_name(emu->state));
	g_key(g, "vmm_version");
	g_str(g, FC_VERSION);
	g_key(g, "app_name");
	g_str(g, "Firecracker");
	yajl_gen_map_close(g);
	set_json(resp, g);
}

static void get_version(struct emulator *emu, struct req *r,
			struct http_response *resp)
{
	yajl_gen g = g_new();

	(void)emu;
	(void)r;
	yajl_gen_map_open(g);
	g_key(g, "firecracker_version");
	g_str(g, FC_VERSION);
	yajl_gen_map_close(g);
	set_json(resp, g);
}

static void gen_machine_config(yajl_gen g, const struct machine_config *m)
{
	yajl_gen_map_open(g);
	g_key(g, "vcpu_count");
	yajl_gen_integer(g, m->vcpu_count);
	g_key(g, "mem_size_mib");
	yajl_gen_integer(g, (long long)m->mem_size_mib);
	g_key(g, "smt");
	yajl_gen_bool(g, m->smt);
	if (m->cpu_template) {
		g_key(g, "cpu_template");
		g_str(g, m->cpu_template);
	}
	g_key(g, "track_dirty_pages");
	yajl_gen_bool(g, m->track_dirty_pages);
	g_key(g, "huge_pages");
	g_str(g, m->huge_pages);
	yajl_gen_map_close(g);
}

static void get_machine_config(struct emulator *emu, struct req *r,
			       struct http_response *resp)
{
	yajl_gen g = g_new();

	(void)r;
	gen_machine_config(g, &emu->vm.machine);
	set_json(resp, g);
}

static void gen_drive(yajl_gen g, const struct drive_config *d)
{
	yajl_gen_map_open(g);
	g_key(g, "drive_id");
	g_str(g, d->drive_id);
	g_key(g, "partuuid");
	g_str(g, d->partuuid);
	g_key(g, "is_root_device");
	yajl_gen_bool(g, d->is_root_device);
	g_key(g, "cache_type");
	g_str(g, d->cache_type);
	g_key(g, "is_read_only");
	yajl_gen_bool(g, d->is_read_only);
	g_key(g, "path_on_host");
	g_str(g, d->path_on_host);
	g_key(g, "rate_limiter");
	g_val(g, d->rate_limiter);
	g_key(g, "io_engine");
	g_str(g, d->io_engine);
	g_key(g, "socket");
	yajl_gen_null(g);
	yajl_gen_map_close(g);
}

static void gen_net(yajl_gen g, const struct net_config *n)
{
	yajl_gen_map_open(g);
	g_key(g, "iface_id");
	g_str(g, n->iface_id);
	g_key(g, "host_dev_name");
	g_str(g, n->host_dev_name);
	g_key(g, "guest_mac");
	g_str(g, n->guest_mac);
	g_key(g, "rx_rate_limiter");
	g_val(g, n->rx_rate_limiter);
	g_key(g, "tx_rate_limiter");
	g_val(g, n->tx_rate_limiter);
	if (n->mtu) {
		g_key(g, "mtu");
		yajl_gen_integer(g, n->mtu);
	}
	yajl_gen_map_close(g);
}

static void get_vm_config(struct emulator *emu, struct req *r,
			  struct http_response *resp)
{
	const struct vm_config *vm = &emu->vm;
	yajl_gen g = g_new();

	(void)r;
	yajl_gen_map_open(g);
	g_key(g, "balloon");
	g_val(g, vm->balloon);

	g_key(g, "drives");
	yajl_gen_array_open(g);
	for (size_t i = 0; i < vm->n_drives; i++)
		gen_drive(g, &vm->drives[i]);
	yajl_gen_array_close(g);

	/* Firecracker shows an empty boot source before one is set. */
	g_key(g, "boot-source");
	yajl_gen_map_open(g);
	g_key(g, "kernel_image_path");
	g_str(g, vm->boot_doc ? vm->kernel_image_path : "");
	g_key(g, "initrd_path");
	g_str(g, vm->initrd_path);
	if (vm->boot_args) {
		g_key(g, "boot_args");
		g_str(g, vm->boot_args);
	}
	yajl_gen_map_close(g);

	g_key(g, "cpu-config");
	g_val(g, vm->cpu_config);
	g_key(g, "logger");
	g_val(g, vm->logger);
	g_key(g, "machine-config");
	gen_machine_config(g, &vm->machine);
	g_key(g, "metrics");
	g_val(g, vm->metrics);
	g_key(g, "memory-hotplug");
	g_val(g, vm->memory_hotplug);
	g_key(g, "mmds-config");
	g_val(g, vm->mmds_config);

	g_key(g, "network-interfaces");
	yajl_gen_array_open(g);
	for (size_t i = 0; i < vm->n_nets; i++)
		gen_net(g, &vm->nets[i]);
	yajl_gen_array_close(g);

	g_key(g, "pmem");
	yajl_gen_array_open(g);
	yajl_gen_array_close(g);
	g_key(g, "vsock");
	g_val(g, vm->vsock);
	g_key(g, "entropy");
	g_val(g, vm->entropy);
	yajl_gen_map_close(g);
	set_json(resp, g);
}

static void get_mmds(struct emulator *emu, struct req *r,
		     struct http_response *resp)
{
	yajl_gen g = g_new();

	(void)r;
	if (emu->vm.mmds) {
		json_gen_value(g, emu->vm.mmds);
	} else {
		yajl_gen_map_open(g);
		yajl_gen_map_close(g);
	}
	set_json(resp, g);
}

static void get_balloon(struct emulator *emu, struct req *r,
			struct http_response *resp)
{
	yajl_gen g;

	if (!emu->vm.balloon) {
		set_fault(resp, "No balloon device found.");
		return;
	}
	if (r->seg[1]) {
		not_emulated(resp, r);
		return;
	}
	g = g_new();
	json_gen_value(g, emu->vm.balloon);
	set_json(resp, g);
}

static void get_hotplug_memory(struct emulator *emu, struct req *r,
			       struct http_response *resp)
{
	yajl_val cfg = emu->vm.memory_hotplug;
	yajl_val v;
	yajl_gen g;

	(void)r;
	if (!cfg) {
		set_fault(resp, "The memory hotplug device is not configured.");
		return;
	}
	g = g_new();
	yajl_gen_map_open(g);
	g_key(g, "total_size_mib");
	v = field(cfg, "total_size_mib");
	yajl_gen_integer(g, v ? YAJL_GET_INTEGER(v) : 0);
	g_key(g, "slot_size_mib");
	v = field(cfg, "slot_size_mib");
	yajl_gen_integer(g, v ? YAJL_GET_INTEGER(v) : 128);
	g_key(g, "block_size_mib");
	v = field(cfg, "block_size_mib");
	yajl_gen_integer(g, v ? YAJL_GET_INTEGER(v) : 2);
	g_key(g, "plugged_size_mib");
	yajl_gen_integer(g, 0);
	g_key(g, "requested_size_mib");
	yajl_gen_integer(g, 0);
	yajl_gen_map_close(g);
	set_json(resp, g);
}

/* --- actions and VM state -------------------------------------------- */

/* Where the guest boots: nowhere in fast mode, under QEMU in QEMU mode. */
static int start_guest(struct emulator *emu, struct http_response *resp)
{
	char *fault = NULL;

	if (!emu->qemu_mode)
		return 0;
	if (qemu_start(emu, &fault) < 0) {
		set_fault(resp, "%s", fault ? fault : "Failed to start the "
			  "guest under QEMU.");
		free(fault);
		return -1;
	}
	return 0;
}

static void instance_start(struct emulator *emu, struct http_response *resp)
{
	if (!pre_boot(emu, resp))
		return;
	if (!emu->vm.boot_doc) {
		set_fault(resp, "Cannot start microvm without kernel "
			  "configuration.");
		return;
	}
	if (emu->start_fault) {
		set_fault(resp, "%s", emu->start_fault);
		return;
	}
	if (start_guest(emu, resp) < 0)
		return;

	emu->state = VM_RUNNING;
	emu_log(emu, LOG_INFO, "Successfully started microvm (%s: %u "
		"vCPUs, %llu MiB, %zu drives, %zu network interfaces)",
		emu->qemu_mode ? "under QEMU" : "emulated",
		emu->vm.machine.vcpu_count,
		(unsigned long long)emu->vm.machine.mem_size_mib,
		emu->vm.n_drives, emu->vm.n_nets);
	if (emu->exit_after_start_s >= 0)
		emu_schedule_exit(emu,
				  (uint64_t)(emu->exit_after_start_s * 1000),
				  emu->exit_code, emu->exit_signal);
	resp->status = 204;
}

static void send_ctrl_alt_del(struct emulator *emu,
			      struct http_response *resp)
{
	char *fault = NULL;

	if (!post_boot(emu, resp))
		return;
	if (emu->qemu_mode) {
		/*
		 * The guest decides; QEMU's exit ends the emulator. QEMU
		 * drops input while the VM is stopped, but firecracker's
		 * i8042 holds the keys until the vCPUs run again: so do we.
		 */
		if (emu->state == VM_PAUSED) {
			emu->ctrl_alt_del_pending = true;
			resp->status = 204;
			return;
		}
		if (qemu_ctrl_alt_del(emu, &fault) < 0) {
			set_fault(resp, "%s", fault ? fault : "Failed to "
				  "send Ctrl+Alt+Del.");
			free(fault);
			return;
		}
		resp->status = 204;
		return;
	}
	resp->status = 204;
	if (emu->ctrl_alt_del_ms < 0)
		return;
	/* A paused guest cannot see the keys until it is resumed. */
	if (emu->state == VM_PAUSED) {
		emu->ctrl_alt_del_pending = true;
		return;
	}
	emu_log(emu, LOG_INFO, "Guest received Ctrl+Alt+Del; shutting down "
		"as a guest booted with reboot=k does");
	emu_schedule_exit(emu, (uint64_t)emu->ctrl_alt_del_ms, 0, 0);
}

static void flush_metrics(struct emulator *emu, struct http_response *resp)
{
	char line[128];
	struct timespec ts;
	int n;

	if (!post_boot(emu, resp))
		return;
	if (emu->metrics_fd >= 0) {
		clock_gettime(CLOCK_REALTIME, &ts);
		n = snprintf(line, sizeof(line), "{\"utc_timestamp_ms\":%lld,"
			     "\"emulator\":true}\n",
			     (long long)ts.tv_sec * 1000 +
				     ts.tv_nsec / 1000000);
		if (write(emu->metrics_fd, line, (size_t)n) < 0)
			emu_log(emu, LOG_WARN, "Failed to write metrics: %s",
				strerror(errno));
	}
	resp->status = 204;
}

static void put_actions(struct emulator *emu, struct req *r,
			struct http_response *resp)
{
	const char *action;

	if (!parse_body(r, &schema_instance_action, resp))
		return;
	action = field_str(r->doc, "action_type");
	if (!strcmp(action, "InstanceStart"))
		instance_start(emu, resp);
	else if (!strcmp(action, "SendCtrlAltDel"))
		send_ctrl_alt_del(emu, resp);
	else
		flush_metrics(emu, resp);
}

static void patch_vm(struct emulator *emu, struct req *r,
		     struct http_response *resp)
{
	bool pause;
	char *fault = NULL;

	if (!parse_body(r, &schema_vm_state, resp) || !post_boot(emu, resp))
		return;
	pause = !strcmp(field_str(r->doc, "state"), "Paused");
	if (emu->qemu_mode) {
		if (qemu_set_paused(emu, pause, &fault) < 0) {
			set_fault(resp, "%s", fault ? fault : "Failed to "
				  "change the guest's state.");
			free(fault);
			return;
		}
		resp->status = 204;
		if (!pause && emu->ctrl_alt_del_pending) {
			emu->ctrl_alt_del_pending = false;
			if (qemu_ctrl_alt_del(emu, &fault) < 0) {
				emu_log(emu, LOG_ERROR, "%s", fault ? fault :
					"Failed to send Ctrl+Alt+Del.");
				free(fault);
			}
		}
		return;
	}
	if (pause) {
		emu->state = VM_PAUSED;
	} else {
		emu->state = VM_RUNNING;
		if (emu->ctrl_alt_del_pending) {
			emu->ctrl_alt_del_pending = false;
			emu_schedule_exit(emu, (uint64_t)emu->ctrl_alt_del_ms,
					  0, 0);
		}
	}
	resp->status = 204;
}

/* --- boot source and machine configuration --------------------------- */

static void put_boot_source(struct emulator *emu, struct req *r,
			    struct http_response *resp)
{
	const char *kernel, *initrd, *args;
	int err;

	if (!parse_body(r, &schema_boot_source, resp) || !pre_boot(emu, resp))
		return;
	kernel = field_str(r->doc, "kernel_image_path");
	initrd = field_str(r->doc, "initrd_path");
	args = field_str(r->doc, "boot_args");

	err = probe_file(kernel, false);
	if (err) {
		set_fault(resp, "The kernel file cannot be opened: %s",
			  os_error(err));
		return;
	}
	err = initrd ? probe_file(initrd, false) : 0;
	if (err) {
		set_fault(resp, "The initrd file cannot be opened due to "
			  "invalid path or invalid permissions. %s",
			  os_error(err));
		return;
	}
	if (args && strlen(args) >= FC_CMDLINE_MAX) {
		set_fault(resp, "The kernel command line is invalid: Command "
			  "line string is too long");
		return;
	}

	keep_doc(&emu->vm.boot_doc, r);
	emu->vm.kernel_image_path = kernel;
	emu->vm.initrd_path = initrd;
	emu->vm.boot_args = args;
	resp->status = 204;
}

/* Firecracker's VmConfig::update(): the whole update or nothing. */
static bool apply_machine_config(struct machine_config *m, yajl_val doc,
				 struct http_response *resp)
{
	struct machine_config next = *m;
	yajl_val v;
	const char *s;

	if ((v = field(doc, "vcpu_count")))
		next.vcpu_count = (unsigned)YAJL_GET_INTEGER(v);
	if ((v = field(doc, "mem_size_mib")))
		next.mem_size_mib = (uint64_t)YAJL_GET_INTEGER(v);
	if ((v = field(doc, "smt")))
		next.smt = YAJL_IS_TRUE(v);
	if ((v = field(doc, "track_dirty_pages")))
		next.track_dirty_pages = YAJL_IS_TRUE(v);
	if ((s = field_str(doc, "huge_pages")))
		next.huge_pages = schema_variant(&schema_machine_config,
						 "huge_pages", s);
	if ((s = field_str(doc, "cpu_template"))) {
		s = schema_variant(&schema_machine_config, "cpu_template", s);
		next.cpu_template = strcmp(s, "None") ? s : NULL;
	}

	if (next.vcpu_count == 0 || next.vcpu_count > FC_MAX_VCPUS ||
	    (next.smt && next.vcpu_count > 1 && next.vcpu_count % 2)) {
		set_fault(resp, "The number of vCPUs must be greater than 0, "
			  "less than %d and must be 1 or an even number if "
			  "SMT is enabled.", FC_MAX_VCPUS);
		return false;
	}
	if (next.mem_size_mib == 0 ||
	    (!strcmp(next.huge_pages, "2M") && next.mem_size_mib % 2)) {
		set_fault(resp, "The memory size (MiB) is either 0, or not a "
			  "multiple of the configured page size.");
		return false;
	}
	*m = next;
	return true;
}

static void put_machine_config(struct emulator *emu, struct req *r,
			       struct http_response *resp)
{
	/* PUT resets what it leaves out; PATCH keeps it. */
	struct machine_config base = {
		.vcpu_count = 1,
		.mem_size_mib = FC_DEFAULT_MEM_MIB,
		.huge_pages = "None",
	};

	if (!parse_body(r, &schema_machine_config, resp) ||
	    !pre_boot(emu, resp))
		return;
	if (!apply_machine_config(&base, r->doc, resp))
		return;
	emu->vm.machine = base;
	resp->status = 204;
}

static void patch_machine_config(struct emulator *emu, struct req *r,
				 struct http_response *resp)
{
	bool empty = true;

	if (!parse_body(r, &schema_machine_config_update, resp))
		return;
	for (size_t i = 0; i < r->doc->u.object.len; i++)
		empty &= YAJL_IS_NULL(r->doc->u.object.values[i]);
	if (empty) {
		set_fault(resp, "Empty PATCH request.");
		return;
	}
	if (!pre_boot(emu, resp))
		return;
	if (apply_machine_config(&emu->vm.machine, r->doc, resp))
		resp->status = 204;
}

/* --- drives ---------------------------------------------------------- */

static struct drive_config *find_drive(struct vm_config *vm, const char *id)
{
	for (size_t i = 0; i < vm->n_drives; i++) {
		if (!strcmp(vm->drives[i].drive_id, id))
			return &vm->drives[i];
	}
	return NULL;
}

static void free_drive(struct drive_config *d)
{
	yajl_tree_free(d->doc);
	free(d->patched_path);
}

static void insert_drive(struct vm_config *vm, struct drive_config *d)
{
	struct drive_config *old = find_drive(vm, d->drive_id);
	size_t at;

	if (old) {
		free_drive(old);
		*old = *d;
		at = (size_t)(old - vm->drives);
	} else {
		at = vm->n_drives++;
		vm->drives[at] = *d;
	}
	/* Firecracker keeps the root device first. */
	if (d->is_root_device && at != 0) {
		struct drive_config root = vm->drives[at];

		memmove(&vm->drives[1], &vm->drives[0],
			at * sizeof(vm->drives[0]));
		vm->drives[0] = root;
	}
}

static void put_drive(struct emulator *emu, struct req *r,
		      struct http_response *resp)
{
	struct vm_config *vm = &emu->vm;
	struct drive_config d = { 0 };
	struct drive_config *old;
	int err;

	if (!check_path_id(r->seg[1], resp) ||
	    !parse_body(r, &schema_drive, resp))
		return;
	d.drive_id = field_str(r->doc, "drive_id");
	if (strcmp(d.drive_id, r->seg[1])) {
		set_fault(resp, MSG_ID_MISMATCH);
		return;
	}
	if (!pre_boot(emu, resp))
		return;
	if (field(r->doc, "socket")) {
		set_fault(resp, "vhost-user-block drives are not supported by "
			  "the Firecracker API emulator.");
		return;
	}
	d.path_on_host = field_str(r->doc, "path_on_host");
	d.partuuid = field_str(r->doc, "partuuid");
	d.is_root_device = field_bool(r->doc, "is_root_device", false);
	d.is_read_only = field_bool(r->doc, "is_read_only", false);
	d.cache_type = field_str(r->doc, "cache_type");
	d.cache_type = d.cache_type ? d.cache_type : "Unsafe";
	d.io_engine = field_str(r->doc, "io_engine");
	d.io_engine = d.io_engine ? d.io_engine : "Sync";
	d.rate_limiter = field(r->doc, "rate_limiter");

	if (!d.path_on_host) {
		set_fault(resp, "Unable to create the virtio block device: "
			  "path_on_host is required for a virtio-block drive");
		return;
	}
	old = find_drive(vm, d.drive_id);
	if (d.is_root_device && vm->n_drives && vm->drives[0].is_root_device &&
	    old != &vm->drives[0]) {
		set_fault(resp, "A root block device already exists!");
		return;
	}
	err = probe_file(d.path_on_host, !d.is_read_only);
	if (err) {
		set_fault(resp, "Unable to create the virtio block device: "
			  "Error manipulating the backing file: %s %s",
			  os_error(err), d.path_on_host);
		return;
	}
	if (!old && vm->n_drives == MAX_DRIVES) {
		set_fault(resp, "The Firecracker API emulator holds at most "
			  "%d drives.", MAX_DRIVES);
		return;
	}

	d.doc = r->doc;
	r->doc = NULL;
	insert_drive(vm, &d);
	resp->status = 204;
}

static void patch_drive(struct emulator *emu, struct req *r,
			struct http_response *resp)
{
	struct drive_config *d;
	const char *path;
	int err;

	if (!check_path_id(r->seg[1], resp) ||
	    !parse_body(r, &schema_partial_drive, resp))
		return;
	if (strcmp(field_str(r->doc, "drive_id"), r->seg[1])) {
		set_fault(resp, MSG_ID_MISMATCH);
		return;
	}
	if (!post_boot(emu, resp))
		return;
	d = find_drive(&emu->vm, r->seg[1]);
	if (!d) {
		set_fault(resp, "Invalid block device ID: %s.", r->seg[1]);
		return;
	}
	path = field_str(r->doc, "path_on_host");
	if (path) {
		err = probe_file(path, !d->is_read_only);
		if (err) {
			set_fault(resp, "The update operation failed: %s",
				  os_error(err));
			return;
		}
		free(d->patched_path);
		d->patched_path = strdup(path);
		d->path_on_host = d->patched_path;
	}
	resp->status = 204;
}

/* --- network interfaces ---------------------------------------------- */

static bool valid_mac(const char *s)
{
	for (int i = 0; i < 17; i++) {
		bool colon = i % 3 == 2;

		if (colon ? s[i] != ':' : !strchr("0123456789abcdefABCDEF",
						   s[i]) || !s[i])
			return false;
	}
	return s[17] == '\0';
}

static struct net_config *find_net(struct vm_config *vm, const char *id)
{
	for (size_t i = 0; i < vm->n_nets; i++) {
		if (!strcmp(vm->nets[i].iface_id, id))
			return &vm->nets[i];
	}
	return NULL;
}

static void put_net(struct emulator *emu, struct req *r,
		    struct http_response *resp)
{
	struct vm_config *vm = &emu->vm;
	struct net_config n = { 0 };
	struct net_config *old;
	yajl_val mtu;

	if (!check_path_id(r->seg[1], resp) ||
	    !parse_body(r, &schema_net, resp))
		return;
	n.iface_id = field_str(r->doc, "iface_id");
	n.host_dev_name = field_str(r->doc, "host_dev_name");
	n.guest_mac = field_str(r->doc, "guest_mac");
	if (n.guest_mac && !valid_mac(n.guest_mac)) {
		set_fault(resp, MSG_SERDE "invalid value: string \"%s\", "
			  "expected a MAC address.", n.guest_mac);
		return;
	}
	if (strcmp(n.iface_id, r->seg[1])) {
		set_fault(resp, MSG_ID_MISMATCH);
		return;
	}
	if (!pre_boot(emu, resp))
		return;

	for (size_t i = 0; i < vm->n_nets; i++) {
		const struct net_config *o = &vm->nets[i];

		if (!strcmp(o->iface_id, n.iface_id))
			continue;
		if (!strcmp(o->host_dev_name, n.host_dev_name)) {
			set_fault(resp, "The host device name %s is already "
				  "in use.", n.host_dev_name);
			return;
		}
		if (o->guest_mac && n.guest_mac &&
		    !strcasecmp(o->guest_mac, n.guest_mac)) {
			set_fault(resp, "The guest MAC address %s is already "
				  "in use.", n.guest_mac);
			return;
		}
	}
	/* The tap is not opened here; only a name Linux could have. */
	if (!*n.host_dev_name || strlen(n.host_dev_name) > 15) {
		set_fault(resp, "Could not create the network device: Open "
			  "tap device failed: Invalid interface name: %s",
			  n.host_dev_name);
		return;
	}
	old = find_net(vm, n.iface_id);
	if (!old && vm->n_nets == MAX_NETS) {
		set_fault(resp, "The Firecracker API emulator holds at most "
			  "%d network interfaces.", MAX_NETS);
		return;
	}

	mtu = field(r->doc, "mtu");
	n.mtu = mtu ? YAJL_GET_INTEGER(mtu) : 0;
	n.rx_rate_limiter = field(r->doc, "rx_rate_limiter");
	n.tx_rate_limiter = field(r->doc, "tx_rate_limiter");
	n.doc = r->doc;
	r->doc = NULL;
	if (old) {
		yajl_tree_free(old->doc);
		*old = n;
	} else {
		vm->nets[vm->n_nets++] = n;
	}
	resp->status = 204;
}

static void patch_net(struct emulator *emu, struct req *r,
		      struct http_response *resp)
{
	if (!check_path_id(r->seg[1], resp) ||
	    !parse_body(r, &schema_partial_net, resp))
		return;
	if (strcmp(field_str(r->doc, "iface_id"), r->seg[1])) {
		set_fault(resp, MSG_ID_MISMATCH);
		return;
	}
	if (!post_boot(emu, resp))
		return;
	if (!find_net(&emu->vm, r->seg[1])) {
		set_fault(resp, "Invalid interface ID - not found.");
		return;
	}
	resp->status = 204;
}

/* --- logger, metrics and recorded devices ---------------------------- */

static int open_target(const char *path)
{
	/* Like Firecracker: the file or FIFO must already exist. */
	return open(path, O_WRONLY | O_APPEND | O_NONBLOCK | O_CLOEXEC);
}

static void put_logger(struct emulator *emu, struct req *r,
		       struct http_response *resp)
{
	const char *path, *level;
	int fd = -1;

	if (!parse_body(r, &schema_logger, resp) || !pre_boot(emu, resp))
		return;
	path = field_str(r->doc, "log_path");
	if (path) {
		fd = open_target(path);
		if (fd < 0) {
			set_fault(resp, "Failed to open target file: %s",
				  os_error(errno));
			return;
		}
		if (emu->log_fd >= 0)
			close(emu->log_fd);
		emu->log_fd = fd;
	}
	level = field_str(r->doc, "level");
	if (level) {
		static const enum log_level by_index[] = {
			LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG, LOG_TRACE,
			LOG_OFF,
		};
		static const char *const names[] = {
			"Error", "Warning", "Info", "Debug", "Trace", "Off",
		};
		const char *canon = schema_variant(&schema_logger, "level",
						   level);

		for (size_t i = 0; i < 6; i++) {
			if (!strcmp(names[i], canon))
				emu->log_level = by_index[i];
		}
	}
	emu->show_level = field_bool(r->doc, "show_level", emu->show_level);
	emu->show_log_origin = field_bool(r->doc, "show_log_origin",
					  emu->show_log_origin);
	keep_doc(&emu->vm.logger, r);
	resp->status = 204;
}

static void put_metrics(struct emulator *emu, struct req *r,
			struct http_response *resp)
{
	int fd;

	if (!parse_body(r, &schema_metrics, resp) || !pre_boot(emu, resp))
		return;
	if (emu->metrics_fd >= 0) {
		set_fault(resp, "Reinitialization of metrics not allowed.");
		return;
	}
	fd = open_target(field_str(r->doc, "metrics_path"));
	if (fd < 0) {
		set_fault(resp, "Failed to open target file: %s",
			  os_error(errno));
		return;
	}
	emu->metrics_fd = fd;
	keep_doc(&emu->vm.metrics, r);
	resp->status = 204;
}

static void put_vsock(struct emulator *emu, struct req *r,
		      struct http_response *resp)
{
	if (!parse_body(r, &schema_vsock, resp) || !pre_boot(emu, resp))
		return;
	keep_doc(&emu->vm.vsock, r);
	resp->status = 204;
}

static void put_entropy(struct emulator *emu, struct req *r,
			struct http_response *resp)
{
	if (!parse_body(r, &schema_entropy, resp) || !pre_boot(emu, resp))
		return;
	keep_doc(&emu->vm.entropy, r);
	resp->status = 204;
}

static void put_serial(struct emulator *emu, struct req *r,
		       struct http_response *resp)
{
	if (!parse_body(r, &schema_serial, resp) || !pre_boot(emu, resp))
		return;
	keep_doc(&emu->vm.serial, r);
	resp->status = 204;
}

static void put_cpu_config(struct emulator *emu, struct req *r,
			   struct http_response *resp)
{
	if (!parse_body(r, &schema_cpu_config, resp) || !pre_boot(emu, resp))
		return;
	keep_doc(&emu->vm.cpu_config, r);
	resp->status = 204;
}

static void put_balloon(struct emulator *emu, struct req *r,
			struct http_response *resp)
{
	if (!parse_body(r, &schema_balloon, resp) || !pre_boot(emu, resp))
		return;
	keep_doc(&emu->vm.balloon, r);
	resp->status = 204;
}

static void patch_balloon(struct emulator *emu, struct req *r,
			  struct http_response *resp)
{
	const char *sub = r->seg[1];
	const struct jschema *schema = &schema_balloon_update;

	if (sub && !strcmp(sub, "statistics")) {
		schema = &schema_balloon_stats_update;
	} else if (sub && !strcmp(sub, "hinting") && r->seg[2] &&
		   (!strcmp(r->seg[2], "start") ||
		    !strcmp(r->seg[2], "stop"))) {
		schema = !strcmp(r->seg[2], "start") ? &schema_balloon_start_cmd
						    : NULL;
		if (!schema && r->body) {
			set_fault(resp, "PATCH /balloon/hinting/stop takes "
				  "no body.");
			return;
		}
	} else if (sub) {
		set_fault(resp, "Invalid request method and/or path: PATCH "
			  "balloon.");
		return;
	}
	if (r->body && schema && !parse_body(r, schema, resp))
		return;
	if (!r->body && schema == &schema_balloon_update) {
		set_fault(resp, "Empty PATCH request.");
		return;
	}
	if (!post_boot(emu, resp))
		return;
	if (!emu->vm.balloon) {
		set_fault(resp, "No balloon device found.");
		return;
	}
	if (sub) {
		not_emulated(resp, r);
		return;
	}
	resp->status = 204;
}

static void put_pmem(struct emulator *emu, struct req *r,
		     struct http_response *resp)
{
	const char *path;
	int err;

	if (!check_path_id(r->seg[1], resp) ||
	    !parse_body(r, &schema_pmem, resp))
		return;
	if (strcmp(field_str(r->doc, "id"), r->seg[1])) {
		set_fault(resp, MSG_ID_MISMATCH);
		return;
	}
	if (!pre_boot(emu, resp))
		return;
	path = field_str(r->doc, "path_on_host");
	err = probe_file(path, !field_bool(r->doc, "read_only", false));
	if (err) {
		set_fault(resp, "Error opening the pmem backing file: %s %s",
			  os_error(err), path);
		return;
	}
	resp->status = 204;
}

static void patch_pmem(struct emulator *emu, struct req *r,
		       struct http_response *resp)
{
	if (!check_path_id(r->seg[1], resp) ||
	    !parse_body(r, &schema_partial_pmem, resp))
		return;
	if (strcmp(field_str(r->doc, "id"), r->seg[1])) {
		set_fault(resp, MSG_ID_MISMATCH);
		return;
	}
	if (post_boot(emu, resp))
		not_emulated(resp, r);
}

static void put_mmds(struct emulator *emu, struct req *r,
		     struct http_response *resp)
{
	yajl_val ifaces;

	if (r->seg[1] && strcmp(r->seg[1], "config")) {
		set_fault(resp, "Invalid request method and/or path: PUT "
			  "mmds.");
		return;
	}
	if (!r->seg[1]) {
		if (!parse_body(r, NULL, resp))
			return;
		if (!YAJL_IS_OBJECT(r->doc)) {
			set_fault(resp, "The MMDS data store accepts only a "
				  "JSON object.");
			return;
		}
		keep_doc(&emu->vm.mmds, r);
		resp->status = 204;
		return;
	}

	if (!parse_body(r, &schema_mmds_config, resp) || !pre_boot(emu, resp))
		return;
	ifaces = field(r->doc, "network_interfaces");
	if (ifaces->u.array.len == 0) {
		set_fault(resp, "The list of network interface IDs that allow "
			  "forwarding MMDS requests is empty.");
		return;
	}
	for (size_t i = 0; i < ifaces->u.array.len; i++) {
		if (!find_net(&emu->vm, ifaces->u.array.values[i]->u.string)) {
			set_fault(resp, "The list of network interface IDs "
				  "provided contains at least one ID that does "
				  "not correspond to any existing network "
				  "interface.");
			return;
		}
	}
	keep_doc(&emu->vm.mmds_config, r);
	resp->status = 204;
}

static void patch_mmds(struct emulator *emu, struct req *r,
		       struct http_response *resp)
{
	if (!parse_body(r, NULL, resp))
		return;
	if (!emu->vm.mmds) {
		set_fault(resp, "The MMDS data store is not initialized.");
		return;
	}
	not_emulated(resp, r);
}

static void put_hotplug_memory(struct emulator *emu, struct req *r,
			       struct http_response *resp)
{
	if (!parse_body(r, &schema_hotplug_config, resp) ||
	    !pre_boot(emu, resp))
		return;
	keep_doc(&emu->vm.memory_hotplug, r);
	resp->status = 204;
}

static void patch_hotplug_memory(struct emulator *emu, struct req *r,
				 struct http_response *resp)
{
	if (!parse_body(r, &schema_hotplug_update, resp) ||
	    !post_boot(emu, resp))
		return;
	not_emulated(resp, r);
}

static void put_snapshot(struct emulator *emu, struct req *r,
			 struct http_response *resp)
{
	const char *op = r->seg[1] ? r->seg[1] : "";

	if (!strcmp(op, "create")) {
		if (!parse_body(r, &schema_snapshot_create, resp) ||
		    !post_boot(emu, resp))
			return;
	} else if (!strcmp(op, "load")) {
		if (!parse_body(r, &schema_snapshot_load, resp) ||
		    !pre_boot(emu, resp))
			return;
	} else {
		set_fault(resp, "Invalid request method and/or path: PUT "
			  "snapshot.");
		return;
	}
	not_emulated(resp, r);
}

/* --- routing --------------------------------------------------------- */

struct route {
	const char *method;
	const char *first;	/* first path segment */
	const char *second;	/* required second segment, or NULL: any */
	handler_fn *fn;
};

static const struct route routes[] = {
	{ "GET", "", NULL, get_instance_info },
	{ "GET", "version", NULL, get_version },
	{ "GET", "machine-config", NULL, get_machine_config },
	{ "GET", "vm", "config", get_vm_config },
	{ "GET", "mmds", NULL, get_mmds },
	{ "GET", "balloon", NULL, get_balloon },
	{ "GET", "hotplug", "memory", get_hotplug_memory },
	{ "PUT", "actions", NULL, put_actions },
	{ "PUT", "balloon", NULL, put_balloon },
	{ "PUT", "boot-source", NULL, put_boot_source },
	{ "PUT", "cpu-config", NULL, put_cpu_config },
	{ "PUT", "drives", NULL, put_drive },
	{ "PUT", "pmem", NULL, put_pmem },
	{ "PUT", "logger", NULL, put_logger },
	{ "PUT", "serial", NULL, put_serial },
	{ "PUT", "machine-config", NULL, put_machine_config },
	{ "PUT", "metrics", NULL, put_metrics },
	{ "PUT", "mmds", NULL, put_mmds },
	{ "PUT", "network-interfaces", NULL, put_net },
	{ "PUT", "snapshot", NULL, put_snapshot },
	{ "PUT", "vsock", NULL, put_vsock },
	{ "PUT", "entropy", NULL, put_entropy },
	{ "PUT", "hotplug", "memory", put_hotplug_memory },
	{ "PATCH", "balloon", NULL, patch_balloon },
	{ "PATCH", "drives", NULL, patch_drive },
	{ "PATCH", "pmem", NULL, patch_pmem },
	{ "PATCH", "machine-config", NULL, patch_machine_config },
	{ "PATCH", "mmds", NULL, patch_mmds },
	{ "PATCH", "network-interfaces", NULL, patch_net },
	{ "PATCH", "vm", NULL, patch_vm },
	{ "PATCH", "hotplug", "memory", patch_hotplug_memory },
};

static void trace_request(struct emulator *emu, const char *method,
			  const char *path, const char *body)
{
	yajl_gen g;
	yajl_val doc = NULL;
	const unsigned char *buf;
	size_t len;
	char *line;

	if (emu->trace_fd < 0)
		return;
	g = g_new();
	if (!g)
		return;
	yajl_gen_map_open(g);
	g_key(g, "method");
	g_str(g, method);
	g_key(g, "path");
	g_str(g, path);
	if (body) {
		/* A body that is not JSON is kept as a string, to be seen. */
		doc = yajl_tree_parse(body, NULL, 0);
		g_key(g, "body");
		if (doc)
			json_gen_value(g, doc);
		else
			g_str(g, body);
	}
	yajl_gen_map_close(g);
	if (yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok) {
		/* One write() per line keeps lines whole in a shared file. */
		line = malloc(len + 1);
		if (line) {
			memcpy(line, buf, len);
			line[len] = '\n';
			if (write(emu->trace_fd, line, len + 1) < 0)
				emu_log(emu, LOG_WARN, "Failed to write the "
					"trace: %s", strerror(errno));
			free(line);
		}
	}
	yajl_gen_free(g);
	yajl_tree_free(doc);
}

static bool hang_matches(const char *hang_on, const char *method,
			 const char *path)
{
	size_t mlen = strlen(method);

	return hang_on && !strncmp(hang_on, method, mlen) &&
	       hang_on[mlen] == ' ' && !strcmp(hang_on + mlen + 1, path);
}

void api_init(struct emulator *emu)
{
	emu->vm.machine = (struct machine_config){
		.vcpu_count = 1,
		.mem_size_mib = FC_DEFAULT_MEM_MIB,
		.huge_pages = "None",
	};
}

void api_handle(struct emulator *emu, const char *method, const char *target,
		const char *body, size_t body_len, struct http_response *resp)
{
	char path[1024];
	char tokens[1024];
	struct req r = { .method = method, .path = path, .body = body };
	size_t n_seg = 0;
	char *save = NULL;

	(void)body_len;
	snprintf(path, sizeof(path), "%s", target);
	path[strcspn(path, "?")] = '\0';

	trace_request(emu, method, path, body);
	emu_log(emu, LOG_INFO, "The API server received a %s request on "
		"\"%s\"%s%s%s.", method, path, body ? " with body \"" : "",
		body ? body : "", body ? "\"" : "");

	if (hang_matches(emu->hang_on, method, path)) {
		emu_log(emu, LOG_WARN, "FCEMU_HANG_ON: never answering %s %s",
			method, path);
		resp->status = 0;
		return;
	}

	snprintf(tokens, sizeof(tokens), "%s", path);
	for (char *t = strtok_r(tokens, "/", &save); t && n_seg < 4;
	     t = strtok_r(NULL, "/", &save))
		r.seg[n_seg++] = t;
	const char *first = r.seg[0] ? r.seg[0] : "";

	/* Firecracker's first checks do not depend on the path. */
	if (!strcmp(method, "GET") && body) {
		set_fault(resp, "GET request cannot have a body.");
		goto out;
	}
	if (!strcmp(method, "PUT") && !body) {
		set_fault(resp, "Empty PUT request.");
		goto out;
	}
	if (!strcmp(method, "PATCH") && !body && strcmp(first, "balloon")) {
		set_fault(resp, "Empty PATCH request.");
		goto out;
	}

	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const struct route *rt = &routes[i];

		if (strcmp(rt->method, method) || strcmp(rt->first, first))
			continue;
		if (rt->second && (!r.seg[1] || strcmp(rt->second, r.seg[1])))
			continue;
		rt->fn(emu, &r, resp);
		goto out;
	}
	set_fault(resp, "Invalid request method and/or path: %s %s.", method,
		  first);
out:
	if (resp->status >= 400)
		emu_log(emu, LOG_ERROR, "Received Error. Status code: 400 Bad "
			"Request. Message: %s", resp->body ? resp->body : "");
	yajl_tree_free(r.doc);
}
