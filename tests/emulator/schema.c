/*
 * Request body schemas of Firecracker's API and a validator that rejects
 * what Firecracker's serde structs reject, in serde's words.
 *
 * The tables transcribe the definitions of the OpenAPI description
 * (firecracker-api.yaml) by hand: the emulator must not read the spec at
 * run time, and Firecracker itself validates with Rust types, not with the
 * spec. Where the two differ, Firecracker wins: optional fields accept
 * null (they are Option<T>), integers carry their Rust type's range, and
 * every struct denies unknown fields.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "emulator.h"

enum jtype {
	J_STRING,
	J_BOOL,
	J_INT,
	J_OBJECT,	/* nested struct: sub */
	J_ARRAY,	/* items: sub when set, else item_type */
	J_STRMAP,	/* object of strings (Metrics.properties) */
};

enum {
	JF_REQUIRED = 1 << 0,
	JF_NOT_NULL = 1 << 1,	/* #[serde(default)] T, not Option<T> */
	JF_ICASE = 1 << 2,	/* enum matched case-insensitively */
	JF_SPEC_MIN = 1 << 3,	/* spec minimum beyond the Rust type's */
	JF_SPEC_MAX = 1 << 4,
};

struct jint {
	const char *rust;	/* "u8", "usize": serde names the type */
	long long min;
	long long max;
};

struct jfield {
	const char *name;
	enum jtype type;
	unsigned flags;
	const struct jint *int_type;
	long long spec_min;
	long long spec_max;
	const char *const *variants;	/* NULL-terminated enum values */
	const struct jschema *sub;
	enum jtype item_type;
};

struct jschema {
	const char *rust_name;		/* serde's "expected struct X" */
	const struct jfield *fields;	/* ends with a NULL name */
};

static const struct jint t_u8 = { "u8", 0, 255 };
static const struct jint t_u16 = { "u16", 0, 65535 };
static const struct jint t_u32 = { "u32", 0, 4294967295LL };
static const struct jint t_u64 = { "u64", 0, INT64_MAX };
static const struct jint t_usize = { "usize", 0, INT64_MAX };
static const struct jint t_i32 = { "i32", INT32_MIN, INT32_MAX };

#define REQ JF_REQUIRED
#define F_STR(n, fl) { .name = (n), .type = J_STRING, .flags = (fl) }
#define F_BOOL(n, fl) { .name = (n), .type = J_BOOL, .flags = (fl) }
#define F_INT(n, t, fl) \
	{ .name = (n), .type = J_INT, .flags = (fl), .int_type = &(t) }
#define F_ENUM(n, v, fl) \
	{ .name = (n), .type = J_STRING, .flags = (fl), .variants = (v) }
#define F_OBJ(n, s, fl) \
	{ .name = (n), .type = J_OBJECT, .flags = (fl), .sub = &(s) }
#define F_ARR_OF(n, s, fl) \
	{ .name = (n), .type = J_ARRAY, .flags = (fl), .sub = &(s) }
#define F_ARR_STR(n, fl) \
	{ .name = (n), .type = J_ARRAY, .flags = (fl), .item_type = J_STRING }
#define F_END { .name = NULL }

static const char *const v_actions[] = {
	"FlushMetrics", "InstanceStart", "SendCtrlAltDel", NULL
};
static const char *const v_cpu_template[] = {
	"C3", "T2", "T2S", "T2CL", "T2A", "V1N1", "None", NULL
};
static const char *const v_huge_pages[] = { "None", "Transparent", "2M", NULL };
static const char *const v_cache_type[] = { "Unsafe", "Writeback", NULL };
static const char *const v_io_engine[] = { "Sync", "Async", NULL };
static const char *const v_log_level[] = {
	"Error", "Warning", "Info", "Debug", "Trace", "Off", NULL
};
static const char *const v_mmds_version[] = { "V1", "V2", NULL };
static const char *const v_register[] = { "eax", "ebx", "ecx", "edx", NULL };
static const char *const v_snapshot_type[] = { "Full", "Diff", NULL };
static const char *const v_backend_type[] = { "File", "Uffd", NULL };
static const char *const v_load_huge_pages[] = {
	"Snapshot", "None", "Transparent", "2M", NULL
};
static const char *const v_vm_state[] = { "Paused", "Resumed", NULL };

static const struct jschema schema_token_bucket = {
	"TokenBucketConfig", (const struct jfield[]){
		F_INT("size", t_u64, REQ),
		F_INT("one_time_burst", t_u64, 0),
		F_INT("refill_time", t_u64, REQ),
		F_END,
	},
};

static const struct jschema schema_rate_limiter = {
	"RateLimiterConfig", (const struct jfield[]){
		F_OBJ("bandwidth", schema_token_bucket, 0),
		F_OBJ("ops", schema_token_bucket, 0),
		F_END,
	},
};

const struct jschema schema_instance_action = {
	"ActionBody", (const struct jfield[]){
		F_ENUM("action_type", v_actions, REQ),
		F_END,
	},
};

const struct jschema schema_boot_source = {
	"BootSourceConfig", (const struct jfield[]){
		F_STR("kernel_image_path", REQ),
		F_STR("initrd_path", 0),
		F_STR("boot_args", 0),
		F_END,
	},
};

/* vcpu_count's 1..32 is left to the semantic check, for its message. */
const struct jschema schema_machine_config = {
	"MachineConfig", (const struct jfield[]){
		F_INT("vcpu_count", t_u8, REQ),
		F_INT("mem_size_mib", t_usize, REQ),
		F_BOOL("smt", JF_NOT_NULL),
		F_ENUM("cpu_template", v_cpu_template, 0),
		F_BOOL("track_dirty_pages", JF_NOT_NULL),
		F_ENUM("huge_pages", v_huge_pages, JF_NOT_NULL),
		F_END,
	},
};

const struct jschema schema_machine_config_update = {
	"MachineConfigUpdate", (const struct jfield[]){
		F_INT("vcpu_count", t_u8, 0),
		F_INT("mem_size_mib", t_usize, 0),
		F_BOOL("smt", 0),
		F_ENUM("cpu_template", v_cpu_template, 0),
		F_BOOL("track_dirty_pages", 0),
		F_ENUM("huge_pages", v_huge_pages, 0),
		F_END,
	},
};

const struct jschema schema_drive = {
	"BlockDeviceConfig", (const struct jfield[]){
		F_STR("drive_id", REQ),
		F_STR("partuuid", 0),
		F_BOOL("is_root_device", REQ),
		F_ENUM("cache_type", v_cache_type, JF_NOT_NULL),
		F_BOOL("is_read_only", 0),
		F_STR("path_on_host", 0),
		F_OBJ("rate_limiter", schema_rate_limiter, 0),
		F_ENUM("io_engine", v_io_engine, 0),
		F_STR("socket", 0),
		F_END,
	},
};

const struct jschema schema_partial_drive = {
	"BlockDeviceUpdateConfig", (const struct jfield[]){
		F_STR("drive_id", REQ),
		F_STR("path_on_host", 0),
		F_OBJ("rate_limiter", schema_rate_limiter, 0),
		F_END,
	},
};

const struct jschema schema_net = {
	"NetworkInterfaceConfig", (const struct jfield[]){
		F_STR("iface_id", REQ),
		F_STR("host_dev_name", REQ),
		F_STR("guest_mac", 0),
		F_OBJ("rx_rate_limiter", schema_rate_limiter, 0),
		F_OBJ("tx_rate_limiter", schema_rate_limiter, 0),
		{ .name = "mtu", .type = J_INT, .int_type = &t_u16,
		  .flags = JF_SPEC_MIN | JF_SPEC_MAX,
		  .spec_min = 68, .spec_max = 65535 },
		F_END,
	},
};

const struct jschema schema_partial_net = {
	"NetworkInterfaceUpdateConfig", (const struct jfield[]){
		F_STR("iface_id", REQ),
		F_OBJ("rx_rate_limiter", schema_rate_limiter, 0),
		F_OBJ("tx_rate_limiter", schema_rate_limiter, 0),
		F_END,
	},
};

const struct jschema schema_logger = {
	"LoggerConfig", (const struct jfield[]){
		F_STR("log_path", 0),
		F_ENUM("level", v_log_level, JF_ICASE),
		F_BOOL("show_level", 0),
		F_BOOL("show_log_origin", 0),
		F_STR("module", 0),
		F_END,
	},
};

const struct jschema schema_metrics = {
	"MetricsConfig", (const struct jfield[]){
		F_STR("metrics_path", REQ),
		F_BOOL("emit_id", 0),
		{ .name = "properties", .type = J_STRMAP },
		F_END,
	},
};

const struct jschema schema_vsock = {
	"VsockDeviceConfig", (const struct jfield[]){
		F_STR("vsock_id", 0),
		{ .name = "guest_cid", .type = J_INT, .int_type = &t_u32,
		  .flags = REQ | JF_SPEC_MIN, .spec_min = 3 },
		F_STR("uds_path", REQ),
		F_END,
	},
};

const struct jschema schema_entropy = {
	"EntropyDeviceConfig", (const struct jfield[]){
		F_OBJ("rate_limiter", schema_rate_limiter, 0),
		F_END,
	},
};

const struct jschema schema_serial = {
	"SerialConfig", (const struct jfield[]){
		F_STR("serial_out_path", 0),
		F_OBJ("rate_limiter", schema_token_bucket, 0),
		F_END,
	},
};

const struct jschema schema_balloon = {
	"BalloonDeviceConfig", (const struct jfield[]){
		F_INT("amount_mib", t_u32, REQ),
		F_BOOL("deflate_on_oom", REQ),
		F_INT("stats_polling_interval_s", t_u16, JF_NOT_NULL),
		F_BOOL("free_page_hinting", JF_NOT_NULL),
		F_BOOL("free_page_reporting", JF_NOT_NULL),
		F_END,
	},
};

const struct jschema schema_balloon_update = {
	"BalloonUpdateConfig", (const struct jfield[]){
		F_INT("amount_mib", t_u32, REQ),
		F_END,
	},
};

const struct jschema schema_balloon_stats_update = {
	"BalloonUpdateStatsConfig", (const struct jfield[]){
		F_INT("stats_polling_interval_s", t_u16, REQ),
		F_END,
	},
};

const struct jschema schema_balloon_start_cmd = {
	"StartHintingCmd", (const struct jfield[]){
		F_BOOL("acknowledge_on_stop", JF_NOT_NULL),
		F_END,
	},
};

static const struct jschema schema_cpuid_register = {
	"CpuidRegisterModifier", (const struct jfield[]){
		F_ENUM("register", v_register, REQ),
		F_STR("bitmap", REQ),
		F_END,
	},
};

static const struct jschema schema_cpuid_leaf = {
	"CpuidLeafModifier", (const struct jfield[]){
		F_STR("leaf", REQ),
		F_STR("subleaf", REQ),
		F_INT("flags", t_i32, REQ),
		F_ARR_OF("modifiers", schema_cpuid_register, REQ),
		F_END,
	},
};

static const struct jschema schema_msr_modifier = {
	"RegisterModifier", (const struct jfield[]){
		F_STR("addr", REQ),
		F_STR("bitmap", REQ),
		F_END,
	},
};

static const struct jschema schema_vcpu_features = {
	"VcpuFeatures", (const struct jfield[]){
		F_INT("index", t_i32, REQ),
		F_STR("bitmap", REQ),
		F_END,
	},
};

const struct jschema schema_cpu_config = {
	"CustomCpuTemplate", (const struct jfield[]){
		F_ARR_STR("kvm_capabilities", 0),
		F_ARR_OF("cpuid_modifiers", schema_cpuid_leaf, 0),
		F_ARR_OF("msr_modifiers", schema_msr_modifier, 0),
		F_ARR_OF("reg_modifiers", schema_msr_modifier, 0),
		F_ARR_OF("vcpu_features", schema_vcpu_features, 0),
		F_END,
	},
};

const struct jschema schema_pmem = {
	"PmemConfig", (const struct jfield[]){
		F_STR("id", REQ),
		F_STR("path_on_host", REQ),
		F_BOOL("root_device", JF_NOT_NULL),
		F_BOOL("read_only", JF_NOT_NULL),
		F_OBJ("rate_limiter", schema_rate_limiter, 0),
		F_END,
	},
};

const struct jschema schema_partial_pmem = {
	"PmemUpdateConfig", (const struct jfield[]){
		F_STR("id", REQ),
		F_OBJ("rate_limiter", schema_rate_limiter, 0),
		F_END,
	},
};

const struct jschema schema_mmds_config = {
	"MmdsConfig", (const struct jfield[]){
		F_ENUM("version", v_mmds_version, JF_NOT_NULL),
		F_ARR_STR("network_interfaces", REQ),
		F_STR("ipv4_address", 0),
		F_BOOL("imds_compat", JF_NOT_NULL),
		F_END,
	},
};

const struct jschema schema_hotplug_config = {
	"MemoryHotplugConfig", (const struct jfield[]){
		F_INT("total_size_mib", t_u32, 0),
		{ .name = "slot_size_mib", .type = J_INT, .int_type = &t_u32,
		  .flags = JF_SPEC_MIN, .spec_min = 128 },
		{ .name = "block_size_mib", .type = J_INT, .int_type = &t_u32,
		  .flags = JF_SPEC_MIN, .spec_min = 2 },
		F_END,
	},
};

const struct jschema schema_hotplug_update = {
	"MemoryHotplugSizeUpdate", (const struct jfield[]){
		F_INT("requested_size_mib", t_u32, 0),
		F_END,
	},
};

const struct jschema schema_snapshot_create = {
	"CreateSnapshotParams", (const struct jfield[]){
		F_STR("mem_file_path", REQ),
		F_STR("snapshot_path", REQ),
		F_ENUM("snapshot_type", v_snapshot_type, JF_NOT_NULL),
		F_END,
	},
};

static const struct jschema schema_memory_backend = {
	"MemBackendConfig", (const struct jfield[]){
		F_ENUM("backend_type", v_backend_type, REQ),
		F_STR("backend_path", REQ),
		F_END,
	},
};

static const struct jschema schema_network_override = {
	"NetworkOverride", (const struct jfield[]){
		F_STR("iface_id", REQ),
		F_STR("host_dev_name", REQ),
		F_END,
	},
};

static const struct jschema schema_vsock_override = {
	"VsockOverride", (const struct jfield[]){
		F_STR("uds_path", REQ),
		F_END,
	},
};

const struct jschema schema_snapshot_load = {
	"LoadSnapshotConfig", (const struct jfield[]){
		F_BOOL("enable_diff_snapshots", JF_NOT_NULL),
		F_BOOL("track_dirty_pages", JF_NOT_NULL),
		F_STR("mem_file_path", 0),
		F_OBJ("mem_backend", schema_memory_backend, 0),
		F_STR("snapshot_path", REQ),
		F_BOOL("resume_vm", JF_NOT_NULL),
		F_ARR_OF("network_overrides", schema_network_override, 0),
		F_OBJ("vsock_override", schema_vsock_override, 0),
		F_BOOL("clock_realtime", JF_NOT_NULL),
		F_ENUM("huge_pages", v_load_huge_pages, 0),
		F_END,
	},
};

const struct jschema schema_vm_state = {
	"VmState", (const struct jfield[]){
		F_ENUM("state", v_vm_state, REQ),
		F_END,
	},
};

static char *msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *msg(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

/* What serde calls the value it got ("integer `5`", "map"). */
static char *describe(yajl_val v)
{
	if (YAJL_IS_STRING(v))
		return msg("string \"%s\"", v->u.string);
	if (YAJL_IS_INTEGER(v))
		return msg("integer `%s`", v->u.number.r);
	if (YAJL_IS_NUMBER(v))
		return msg("floating point `%s`", v->u.number.r);
	if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v))
		return msg("boolean `%s`", YAJL_IS_TRUE(v) ? "true" : "false");
	if (YAJL_IS_OBJECT(v))
		return msg("map");
	if (YAJL_IS_ARRAY(v))
		return msg("sequence");
	return msg("null");
}

static char *invalid_type(yajl_val v, const char *expected)
{
	char *got = describe(v);
	char *s = msg("invalid type: %s, expected %s", got ? got : "?",
		      expected);

	free(got);
	return s;
}

/* serde's list of alternatives: "`a`, `b`, `c`". */
static char *backticked(const char *const *names, size_t stride, size_t n)
{
	size_t len = 1;
	char *s, *p;

	for (size_t i = 0; i < n; i++)
		len += strlen(*(const char *const *)((const char *)names +
						     i * stride)) + 4;
	s = malloc(len);
	if (!s)
		return NULL;
	p = s;
	*p = '\0';
	for (size_t i = 0; i < n; i++) {
		const char *name = *(const char *const *)((const char *)names +
							  i * stride);

		p += sprintf(p, "%s`%s`", i ? ", " : "", name);
	}
	return s;
}

static char *expected_one_of(const char *const *names, size_t stride,
			     size_t n)
{
	char *list = backticked(names, stride, n);
	char *s;

	if (!list)
		return NULL;
	s = msg(n == 1 ? "expected %s" : "expected one of %s", list);
	free(list);
	return s;
}

static size_t variant_count(const char *const *variants)
{
	size_t n = 0;

	while (variants[n])
		n++;
	return n;
}

static const char *find_variant(const struct jfield *f, const char *value)
{
	for (const char *const *v = f->variants; *v; v++) {
		if (f->flags & JF_ICASE ? !strcasecmp(*v, value)
					: !strcmp(*v, value))
			return *v;
	}
	return NULL;
}

static char *check_object(const struct jschema *schema, yajl_val v);

static char *check_scalar(const struct jfield *f, enum jtype type,
			  const struct jschema *sub, yajl_val v)
{
	switch (type) {
	case J_STRING:
		if (!YAJL_IS_STRING(v))
			return invalid_type(v, f->variants
					       ? "variant identifier"
					       : "a string");
		if (f->variants && !find_variant(f, v->u.string)) {
			size_t n = variant_count(f->variants);
			char *alts = expected_one_of(f->variants,
						     sizeof(char *), n);
			char *s = msg("unknown variant `%s`, %s", v->u.string,
				      alts ? alts : "");

			free(alts);
			return s;
		}
		return NULL;
	case J_BOOL:
		if (!YAJL_IS_TRUE(v) && !YAJL_IS_FALSE(v))
			return invalid_type(v, "a boolean");
		return NULL;
	case J_INT: {
		const struct jint *t = f->int_type;
		long long n;

		if (!YAJL_IS_INTEGER(v))
			return invalid_type(v, t->rust);
		n = YAJL_GET_INTEGER(v);
		if (n < t->min || n > t->max)
			return msg("invalid value: integer `%lld`, expected %s",
				   n, t->rust);
		if ((f->flags & JF_SPEC_MIN) && n < f->spec_min)
			return msg("invalid value: integer `%lld` for `%s`, "
				   "expected at least %lld", n, f->name,
				   f->spec_min);
		if ((f->flags & JF_SPEC_MAX) && n > f->spec_max)
			return msg("invalid value: integer `%lld` for `%s`, "
				   "expected at most %lld", n, f->name,
				   f->spec_max);
		return NULL;
	}
	case J_OBJECT:
		return check_object(sub, v);
	case J_STRMAP:
		if (!YAJL_IS_OBJECT(v))
			return invalid_type(v, "a map");
		for (size_t i = 0; i < v->u.object.len; i++) {
			if (!YAJL_IS_STRING(v->u.object.values[i]))
				return invalid_type(v->u.object.values[i],
						    "a string");
		}
		return NULL;
	case J_ARRAY:
		if (!YAJL_IS_ARRAY(v))
			return invalid_type(v, "a sequence");
		for (size_t i = 0; i < v->u.array.len; i++) {
			yajl_val item = v->u.array.values[i];
			char *err = sub ? check_object(sub, item)
					: check_scalar(f, f->item_type, NULL,
						       item);

			if (err)
				return err;
		}
		return NULL;
	}
	return NULL;
}

static char *check_object(const struct jschema *schema, yajl_val v)
{
	const struct jfield *fields = schema->fields;
	size_t n_fields = 0;

	if (!YAJL_IS_OBJECT(v)) {
		char *expected = msg("struct %s", schema->rust_name);
		char *s = invalid_type(v, expected ? expected : "a struct");

		free(expected);
		return s;
	}
	while (fields[n_fields].name)
		n_fields++;

	/* serde reports the first offending key in document order... */
	for (size_t i = 0; i < v->u.object.len; i++) {
		const char *key = v->u.object.keys[i];
		yajl_val value = v->u.object.values[i];
		const struct jfield *f = NULL;

		for (size_t j = 0; j < n_fields; j++) {
			if (!strcmp(fields[j].name, key)) {
				f = &fields[j];
				break;
			}
		}
		if (!f) {
			char *alts = expected_one_of(&fields[0].name,
						     sizeof(fields[0]),
						     n_fields);
			char *s = msg("unknown field `%s`, %s", key,
				      alts ? alts : "");

			free(alts);
			return s;
		}
		for (size_t j = 0; j < i; j++) {
			if (!strcmp(v->u.object.keys[j], key))
				return msg("duplicate field `%s`", key);
		}
		if (YAJL_IS_NULL(value) &&
		    !(f->flags & (JF_REQUIRED | JF_NOT_NULL)))
			continue;

		char *err = check_scalar(f, f->type, f->sub, value);

		if (err)
			return err;
	}

	/* ...and a missing field only once the object has ended. */
	for (size_t j = 0; j < n_fields; j++) {
		if ((fields[j].flags & JF_REQUIRED) &&
		    !yajl_tree_get(v, (const char *[]){ fields[j].name, NULL },
				   yajl_t_any))
			return msg("missing field `%s`", fields[j].name);
	}
	return NULL;
}

char *schema_check(const struct jschema *schema, yajl_val v)
{
	return check_object(schema, v);
}

const char *schema_variant(const struct jschema *schema, const char *field,
			   const char *value)
{
	for (const struct jfield *f = schema->fields; f->name; f++) {
		if (!strcmp(f->name, field) && f->variants)
			return find_variant(f, value);
	}
	return NULL;
}

void json_gen_value(yajl_gen g, yajl_val v)
{
	if (YAJL_IS_STRING(v)) {
		yajl_gen_string(g, (const unsigned char *)v->u.string,
				strlen(v->u.string));
	} else if (YAJL_IS_NUMBER(v)) {
		yajl_gen_number(g, v->u.number.r, strlen(v->u.number.r));
	} else if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
		yajl_gen_bool(g, YAJL_IS_TRUE(v));
	} else if (YAJL_IS_OBJECT(v)) {
		yajl_gen_map_open(g);
		for (size_t i = 0; i < v->u.object.len; i++) {
			const char *k = v->u.object.keys[i];

			yajl_gen_string(g, (const unsigned char *)k, strlen(k));
			json_gen_value(g, v->u.object.values[i]);
		}
		yajl_gen_map_close(g);
	} else if (YAJL_IS_ARRAY(v)) {
		yajl_gen_array_open(g);
		for (size_t i = 0; i < v->u.array.len; i++)
			json_gen_value(g, v->u.array.values[i]);
		yajl_gen_array_close(g);
	} else {
		yajl_gen_null(g);
	}
}
